//! `nightshift.yaml`: the raw on-disk shape ([`RawConfig`], strict: unknown keys are errors
//! naming the key and line) and the validated [`Config`] the rest of the crate uses. Reading
//! never guesses: a bad value is an error that names the file, the key and what was expected.

use std::collections::BTreeMap;
use std::path::Path;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::{NsError, NsResult};
use crate::schema;

pub const CONFIG_VERSION: u32 = 1;

/// `nightshift.yaml` as written on disk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub version: u32,
    #[serde(default = "default_lanes")]
    pub lanes: u32,
    #[serde(default = "default_base")]
    pub base: String,
    #[serde(default)]
    pub integration: RawIntegration,
    pub agents: BTreeMap<String, RawAgent>,
    pub defaults: RawDefaults,
    #[serde(default)]
    pub budget: RawBudget,
}

fn default_lanes() -> u32 {
    1
}
fn default_base() -> String {
    "main".into()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawIntegration {
    #[serde(default = "default_integration_branch")]
    pub branch: String,
    #[serde(default)]
    pub policy: Policy,
}

impl Default for RawIntegration {
    fn default() -> Self {
        Self {
            branch: default_integration_branch(),
            policy: Policy::default(),
        }
    }
}

fn default_integration_branch() -> String {
    "nightshift/integration".into()
}

/// How a verified stage branch reaches the integration branch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    #[default]
    FastForward,
    Merge,
    None,
}

/// The kinds of agent nightshift can drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AgentKind {
    Claude,
    Codex,
    Command,
    Script,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawAgent {
    pub kind: AgentKind,
    /// The executable (default: the kind's CLI name; the `script` kind runs nightshift itself).
    #[serde(default)]
    pub command: Option<String>,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub model: Option<String>,
    /// The model family, used to pair a worker with a verifier of another family.
    #[serde(default)]
    pub family: Option<String>,
    /// `script` kind only: a recipe file (relative to the repo root).
    #[serde(default)]
    pub recipe: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawDefaults {
    pub worker: String,
    #[serde(default)]
    pub verifier: Option<String>,
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    #[serde(default)]
    pub timeouts: RawTimeouts,
}

fn default_max_attempts() -> u32 {
    3
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawTimeouts {
    #[serde(default)]
    pub worker: Option<String>,
    #[serde(default)]
    pub verifier: Option<String>,
    #[serde(default)]
    pub acceptance: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawBudget {
    /// Total agent wall time (workers and verifiers) for the repo, e.g. `8h`.
    #[serde(default)]
    pub max_wall_time: Option<String>,
    /// Halt after this many failed attempts in a row (default 5).
    #[serde(default)]
    pub max_consecutive_failures: Option<u32>,
    /// Hard ceiling on attempts per stage, whatever a card asks for.
    #[serde(default)]
    pub max_attempts_per_stage: Option<u32>,
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
}

/// Parses a duration such as `45m`, `1h30m`, `90s` or `2d` into seconds.
///
/// # Errors
/// A message saying what was expected when the text is not such a duration or is zero.
pub fn parse_duration(text: &str) -> Result<u64, String> {
    let bad = || format!("`{text}` is not a duration (want e.g. 90s, 45m, 1h30m, 2d)");
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in text.trim().chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(bad()),
        };
        let n: u64 = digits.parse().map_err(|_| bad())?;
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
        digits.clear();
    }
    if !digits.is_empty() || total == 0 {
        return Err(bad());
    }
    Ok(total)
}

/// Formats seconds the way [`parse_duration`] reads them (`1h30m`, `45s`).
#[must_use]
pub fn format_duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    for (n, u) in [(d, 'd'), (h, 'h'), (m, 'm'), (s, 's')] {
        if n > 0 {
            out.push_str(&format!("{n}{u}"));
        }
    }
    if out.is_empty() { "0s".into() } else { out }
}

/// The family an agent kind belongs to when the config does not say.
fn default_family(kind: AgentKind) -> Option<&'static str> {
    match kind {
        AgentKind::Claude => Some("claude"),
        AgentKind::Codex => Some("codex"),
        AgentKind::Command | AgentKind::Script => None,
    }
}

impl Config {
    /// Reads, schema-validates and validates `nightshift.yaml`.
    ///
    /// # Errors
    /// When the file is missing, is not valid YAML, has unknown keys or wrong types (naming the
    /// line), or fails validation (naming the key).
    pub fn load(path: &Path) -> NsResult<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            NsError::new(
                crate::error::EXIT_NOT_INIT,
                format!("cannot read {}", path.display()),
            )
            .cause(e.to_string())
            .hint("run `nightshift init` in the repository first")
        })?;
        let raw: RawConfig = schema::parse_yaml(&text, "nightshift.yaml", schema::Doc::Config)?;
        Self::validate(raw).map_err(|m| {
            NsError::failure(format!("nightshift.yaml: {m}"))
                .hint("fix nightshift.yaml; `templates/config.yaml` documents every key")
        })
    }

    /// Turns a raw config into a validated one.
    ///
    /// # Errors
    /// A message naming the key at fault.
    pub fn validate(raw: RawConfig) -> Result<Self, String> {
        if raw.version != CONFIG_VERSION {
            return Err(format!(
                "version {} is not supported (this nightshift reads version {CONFIG_VERSION})",
                raw.version
            ));
        }
        if raw.lanes == 0 {
            return Err("lanes must be at least 1".into());
        }
        let agents = validate_agents(raw.agents)?;
        let d = &raw.defaults;
        if !agents.contains_key(&d.worker) {
            return Err(format!("defaults.worker: no agent named `{}`", d.worker));
        }
        if let Some(v) = d.verifier.as_ref().filter(|v| !agents.contains_key(*v)) {
            return Err(format!("defaults.verifier: no agent named `{v}`"));
        }
        if d.max_attempts == 0 {
            return Err("defaults.max_attempts must be at least 1".into());
        }
        let t = &d.timeouts;
        let dur = |key: &str, v: &Option<String>, default: u64| match v {
            Some(s) => parse_duration(s).map_err(|e| format!("{key}: {e}")),
            None => Ok(default),
        };
        let timeouts = Timeouts {
            worker: dur("defaults.timeouts.worker", &t.worker, 45 * 60)?,
            verifier: dur("defaults.timeouts.verifier", &t.verifier, 20 * 60)?,
            acceptance: dur("defaults.timeouts.acceptance", &t.acceptance, 15 * 60)?,
        };
        let b = &raw.budget;
        let max_wall_secs = match &b.max_wall_time {
            Some(s) => Some(parse_duration(s).map_err(|e| format!("budget.max_wall_time: {e}"))?),
            None => None,
        };
        Ok(Self {
            lanes: raw.lanes,
            base: raw.base,
            integration_branch: raw.integration.branch,
            policy: raw.integration.policy,
            agents,
            default_worker: d.worker.clone(),
            default_verifier: d.verifier.clone(),
            max_attempts: d.max_attempts,
            timeouts,
            max_wall_secs,
            max_consecutive_failures: b.max_consecutive_failures.unwrap_or(5).max(1),
            max_attempts_per_stage: b.max_attempts_per_stage,
        })
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

fn validate_agents(raw: BTreeMap<String, RawAgent>) -> Result<BTreeMap<String, Agent>, String> {
    if raw.is_empty() {
        return Err("agents: at least one agent is needed".into());
    }
    let mut out = BTreeMap::new();
    for (name, a) in raw {
        if crate::ids::StageId::new(&name).is_err() {
            return Err(format!(
                "agents.{name}: agent names use a-z 0-9 . _ - and start with a letter or digit"
            ));
        }
        let family = a
            .family
            .clone()
            .or_else(|| default_family(a.kind).map(str::to_owned))
            .ok_or_else(|| {
                format!("agents.{name}.family: required for kind `{:?}`", a.kind).to_lowercase()
            })?;
        if a.recipe.is_some() && a.kind != AgentKind::Script {
            return Err(format!(
                "agents.{name}.recipe: only the `script` kind takes a recipe"
            ));
        }
        for key in a.env.keys() {
            if key.is_empty() || key.contains('=') {
                return Err(format!("agents.{name}.env: `{key}` is not a variable name"));
            }
        }
        out.insert(
            name.clone(),
            Agent {
                name,
                kind: a.kind,
                command: a.command,
                args: a.args,
                env: a.env,
                model: a.model,
                family,
                recipe: a.recipe,
            },
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("45m"), Ok(2700));
        assert_eq!(parse_duration("1h30m"), Ok(5400));
        assert_eq!(parse_duration("90s"), Ok(90));
        assert_eq!(parse_duration("2d"), Ok(172_800));
        for bad in ["", "0s", "5", "m", "1x", "1.5h", "-1m"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(format_duration(5400), "1h30m");
        assert_eq!(format_duration(0), "0s");
    }
}
