//! `nightshift.yaml`: the validated [`Config`] the rest of the crate uses, read from the raw
//! on-disk shape ([`RawConfig`], strict: unknown keys are errors naming the key and line).
//! Reading never guesses: a bad value is an error that names the file, the key and what was
//! expected. Owns the validated types and what is derived from them (the engine's
//! [`Limits`](crate::engine::Limits)); the raw shape is in `raw`, the checks in `validate`,
//! prices in `price` and durations in `duration`. Facts about one kind of agent CLI (its
//! default family, key variable, name) are never written here: they live in that kind's module
//! under `agent/`. Reads only the file it is handed; never writes a file, never runs a process.

mod duration;
mod price;
mod raw;
mod validate;

use std::collections::BTreeMap;
use std::path::Path;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::{NsError, NsResult};
use crate::schema;

pub use crate::agent::AgentKind;
pub use duration::{format_duration, parse_duration};
pub use price::{DEFAULT_PRICES, Price};
pub use raw::{
    AuthRoute, ConfineMode, Policy, RawAgent, RawAuth, RawBudget, RawConfig, RawDefaults,
    RawEstimate, RawHost, RawIntegration, RawPanel, RawPanelWhen, RawPrompts, RawTimeouts,
};
pub use validate::check_panel;

pub const CONFIG_VERSION: u32 = 1;

/// How long a usage limit pauses a family when the CLI did not say when it resets.
pub const DEFAULT_PAUSE_SECS: u64 = 3600;

/// Tokens one agent run is assumed to use until it reports.
pub const DEFAULT_ESTIMATE_TOKENS: u64 = 200_000;
/// USD one agent run is assumed to cost until it reports.
pub const DEFAULT_ESTIMATE_USD: f64 = 2.0;

/// A validated auth route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    Subscription,
    ApiEnv { source: String, pass_as: String },
    ApiCommand { command: String, pass_as: String },
}

/// Money caps and estimates, validated.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Money {
    pub max_tokens: Option<u64>,
    pub max_usd: Option<f64>,
    pub host_max_tokens: Option<u64>,
    pub host_max_usd: Option<f64>,
    pub estimate_tokens: u64,
    pub estimate_usd: f64,
}

/// One validated agent.
#[derive(Debug, Clone, PartialEq)]
pub struct Agent {
    pub name: String,
    pub kind: AgentKind,
    pub command: Option<String>,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub model: Option<String>,
    pub family: String,
    pub recipe: Option<String>,
    pub auth: Auth,
    pub share_cli_state: bool,
    /// `silence:` in seconds, when set (see [`silence_window`]).
    pub silence_secs: Option<u64>,
}

/// Seconds an agent may show no progress before the heartbeat kills it as stalled: its
/// `silence:`, else its kind's default.
#[must_use]
pub fn silence_window(agent: &Agent) -> u64 {
    agent
        .silence_secs
        .unwrap_or_else(|| agent.kind.vendor().default_silence_secs())
}

/// Per-role timeouts in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Timeouts {
    pub worker: u64,
    pub verifier: u64,
    pub acceptance: u64,
}

/// The validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub lanes: u32,
    pub base: String,
    pub integration_branch: String,
    pub policy: Policy,
    pub agents: BTreeMap<String, Agent>,
    pub default_worker: String,
    pub default_verifier: Option<String>,
    pub max_attempts: u32,
    pub timeouts: Timeouts,
    pub max_wall_secs: Option<u64>,
    pub max_consecutive_failures: u32,
    pub max_attempts_per_stage: Option<u32>,
    pub money: Money,
    /// Model id -> price (built-in table plus `pricing:`).
    pub prices: BTreeMap<String, Price>,
    pub prompt_worker: Option<String>,
    pub prompt_verifier: Option<String>,
    pub notify: Option<crate::notify::Notify>,
    pub confine: ConfineMode,
    /// Absolute extra directories workers and acceptance may write when confined.
    pub confine_writable: Vec<std::path::PathBuf>,
    /// The configured workspace directory (absolute), `None` for the default.
    pub workspaces: Option<std::path::PathBuf>,
    /// `redact:`: variables whose values never appear in a file nightshift writes.
    pub redact: Vec<String>,
    /// `defaults.panel`, checked against `defaults.worker`.
    pub panel: Option<RawPanel>,
    /// `defaults.panel_when.paths`: the defaults' panel judges any deliverable touching these.
    pub panel_when: Vec<String>,
}

impl Config {
    /// One warning per agent of a paid kind whose model has no price (none set, or not in
    /// the table nor under `pricing:`): its runs count $0.00 unless its CLI reports the cost
    /// itself. Under a USD cap such an agent is a configuration error instead (see
    /// `validate`); without one, `status` and `doctor` say this.
    #[must_use]
    pub fn unpriced_agents(&self) -> Vec<String> {
        self.agents
            .values()
            .filter(|a| a.kind.vendor().is_paid())
            .filter_map(|a| {
                let what = match &a.model {
                    Some(m) if self.prices.contains_key(m) => return None,
                    Some(m) => format!("model `{m}` has no price"),
                    None => "no `model:` is set, so it has no price".to_owned(),
                };
                Some(format!(
                    "agent `{}`: {what}; its runs count $0.00 unless its CLI reports the cost (add the model under `pricing:` in nightshift.yaml)",
                    a.name
                ))
            })
            .collect()
    }

    /// Reads, schema-validates and validates `nightshift.yaml`.
    ///
    /// # Errors
    /// When the file is missing, is not valid YAML, has unknown keys or wrong types (naming the
    /// line), or fails validation (naming the key).
    pub fn load(path: &Path) -> NsResult<Self> {
        Self::from_raw(Self::parse_raw(&Self::read_text(path)?)?)
    }

    /// The text of `nightshift.yaml` at `path`.
    ///
    /// # Errors
    /// When it cannot be read (the hint says `init`) or is not UTF-8 (the hint says how to get
    /// a good one).
    pub fn read_text(path: &Path) -> NsResult<String> {
        let root = path.parent().unwrap_or(path);
        std::fs::read_to_string(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::InvalidData {
                // The file is there, so `init` would keep it: say how to get a good one.
                return NsError::failure(format!(
                    "{} is not a text file (it is not valid UTF-8)",
                    path.display()
                ))
                .hint(format!(
                    "restore it with `git -C {} checkout -- nightshift.yaml`, or move it away and run `nightshift --repo {} init` to write a fresh one (`nightshift template config` prints the example)",
                    root.display(),
                    root.display()
                ));
            }
            NsError::new(
                crate::error::EXIT_NOT_INIT,
                format!("cannot read {}", path.display()),
            )
            .cause(e.to_string())
            .hint(format!("run `nightshift --repo {} init`", root.display()))
        })
    }

    /// Parses and schema-validates the text of `nightshift.yaml` (strict YAML; errors name the
    /// line).
    ///
    /// # Errors
    /// When it is not valid YAML, has unknown keys or wrong types, or breaks the schema.
    pub fn parse_raw(text: &str) -> NsResult<RawConfig> {
        schema::parse_yaml(text, "nightshift.yaml")
    }

    /// Validates a parsed `nightshift.yaml` (the checks no schema can say: names, families,
    /// prices, durations).
    ///
    /// # Errors
    /// Naming the key at fault.
    pub fn from_raw(raw: RawConfig) -> NsResult<Self> {
        Self::validate(raw).map_err(|m| {
            NsError::failure(format!("nightshift.yaml: {m}"))
                .hint("fix nightshift.yaml; `nightshift template config` prints an example that documents every key")
        })
    }

    /// The engine's limits, from the config.
    #[must_use]
    pub fn limits(&self) -> crate::engine::Limits {
        crate::engine::Limits {
            lanes: self.lanes,
            base: self.base.clone(),
            integration_branch: self.integration_branch.clone(),
            policy: self.policy,
            max_wall_secs: self.max_wall_secs,
            max_consecutive_failures: self.max_consecutive_failures,
            max_attempts_per_stage: self.max_attempts_per_stage,
            families: self
                .agents
                .iter()
                .map(|(name, a)| (name.clone(), a.family.clone()))
                .collect(),
            default_pause_secs: DEFAULT_PAUSE_SECS,
            money: self.money,
            prices: self
                .agents
                .iter()
                .filter_map(|(name, a)| {
                    Some((name.clone(), *self.prices.get(a.model.as_deref()?)?))
                })
                .collect(),
            unmetered: self
                .agents
                .iter()
                .filter(|(_, a)| !a.kind.vendor().reports_usage())
                .map(|(name, _)| name.clone())
                .collect(),
        }
    }

    /// The verifier for a worker: the named one, else the default verifier when it is of
    /// another family, else the first agent (by name) of another family.
    #[must_use]
    pub fn pick_verifier(&self, worker: &str, named: Option<&str>) -> Option<String> {
        if let Some(n) = named {
            return Some(n.to_owned());
        }
        let family = &self.agents.get(worker)?.family;
        let other = |name: &str| self.agents.get(name).is_some_and(|a| &a.family != family);
        if let Some(v) = self.default_verifier.as_deref().filter(|v| other(v)) {
            return Some(v.to_owned());
        }
        self.agents.keys().find(|n| other(n)).cloned()
    }
}
