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
    /// Caps shared by every repository on this machine.
    #[serde(default)]
    pub host: RawHost,
    /// USD per million tokens, by model id; added to (and overriding) the built-in table.
    #[serde(default)]
    pub pricing: BTreeMap<String, Price>,
    /// Prompt templates of this repository, overriding the built-in ones.
    #[serde(default)]
    pub prompts: RawPrompts,
    /// A command to run on the events you pick (see `crate::notify`).
    #[serde(default)]
    pub notify: Option<crate::notify::RawNotify>,
}

/// `prompts:` paths relative to the repo root. Placeholders are `{{name}}`; an unknown or
/// unfilled one fails the attempt before any agent starts (see templates/*.md for the names).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawPrompts {
    #[serde(default)]
    pub worker: Option<String>,
    #[serde(default)]
    pub verifier: Option<String>,
}

/// USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub input: f64,
    pub output: f64,
    pub cache_read: f64,
    pub cache_write: f64,
}

impl Price {
    /// The cost of some usage at this price.
    #[must_use]
    pub fn cost(&self, u: &crate::agent::Usage) -> f64 {
        #[expect(
            clippy::cast_precision_loss,
            reason = "token counts are far below 2^52"
        )]
        let m = |n: u64, p: f64| n as f64 * p / 1_000_000.0;
        m(u.input, self.input)
            + m(u.output, self.output)
            + m(u.cache_read, self.cache_read)
            + m(u.cache_write, self.cache_write)
    }
}

/// List prices of current models (USD per million tokens) at the time of this release. Check
/// them against your provider and override or extend them with `pricing:`.
pub const DEFAULT_PRICES: [(&str, Price); 9] = [
    (
        "claude-opus-4-1",
        Price {
            input: 15.0,
            output: 75.0,
            cache_read: 1.5,
            cache_write: 18.75,
        },
    ),
    (
        "claude-opus-4-5",
        Price {
            input: 5.0,
            output: 25.0,
            cache_read: 0.5,
            cache_write: 6.25,
        },
    ),
    (
        "claude-sonnet-4-5",
        Price {
            input: 3.0,
            output: 15.0,
            cache_read: 0.3,
            cache_write: 3.75,
        },
    ),
    (
        "claude-haiku-4-5",
        Price {
            input: 1.0,
            output: 5.0,
            cache_read: 0.1,
            cache_write: 1.25,
        },
    ),
    (
        "gpt-5",
        Price {
            input: 1.25,
            output: 10.0,
            cache_read: 0.125,
            cache_write: 0.0,
        },
    ),
    (
        "gpt-5-codex",
        Price {
            input: 1.25,
            output: 10.0,
            cache_read: 0.125,
            cache_write: 0.0,
        },
    ),
    (
        "gpt-5.1",
        Price {
            input: 1.25,
            output: 10.0,
            cache_read: 0.125,
            cache_write: 0.0,
        },
    ),
    (
        "gpt-5.1-codex",
        Price {
            input: 1.25,
            output: 10.0,
            cache_read: 0.125,
            cache_write: 0.0,
        },
    ),
    (
        "gpt-5-mini",
        Price {
            input: 0.25,
            output: 2.0,
            cache_read: 0.025,
            cache_write: 0.0,
        },
    ),
];

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawHost {
    /// Tokens all repositories on this machine may spend together.
    #[serde(default)]
    pub max_tokens: Option<u64>,
    /// USD all repositories on this machine may spend together.
    #[serde(default)]
    pub max_usd: Option<f64>,
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
    Gemini,
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
    /// How the agent authenticates (default: its CLI's own login).
    #[serde(default)]
    pub auth: Option<RawAuth>,
    /// Let attempts use your normal CLI state (`~/.claude`, `~/.codex`) instead of a fresh
    /// per-attempt one. Default: true for the `subscription` route (the login lives there),
    /// false for `api` (so a stored login can never be billed instead of the key).
    #[serde(default)]
    pub share_cli_state: Option<bool>,
    /// How long the agent may show no progress (log, structured output and workspace all
    /// unchanged) before the heartbeat kills it as stalled, e.g. `20m` (default by kind: 20m
    /// for CLIs that stream events, 60m for `command`, which may print only at the end).
    #[serde(default)]
    pub silence: Option<String>,
}

/// `auth:` of an agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    pub route: AuthRoute,
    /// `api` route: the variable of nightshift's own environment that holds the secret.
    #[serde(default)]
    pub env: Option<String>,
    /// `api` route: a command that prints the secret (e.g. a password manager's CLI).
    #[serde(default)]
    pub command: Option<String>,
    /// The variable the agent receives the secret in (default by kind: `ANTHROPIC_API_KEY`
    /// for claude, `OPENAI_API_KEY` for codex).
    #[serde(default)]
    pub pass_as: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuthRoute {
    /// The CLI's own login (`claude auth login`, `codex login`).
    Subscription,
    /// An API key, passed only to this agent's process and never written anywhere.
    Api,
}

/// A validated auth route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    Subscription,
    ApiEnv { source: String, pass_as: String },
    ApiCommand { command: String, pass_as: String },
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
    /// Tokens (input + output + cache) this repository may spend.
    #[serde(default)]
    pub max_tokens: Option<u64>,
    /// USD this repository may spend (every agent then needs a priced `model`).
    #[serde(default)]
    pub max_usd: Option<f64>,
    /// What one agent run is assumed to cost until it reports: reserved for every agent job in
    /// flight, and charged for a run whose usage is unknown (never zero).
    #[serde(default)]
    pub estimate: Option<RawEstimate>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawEstimate {
    #[serde(default)]
    pub tokens: Option<u64>,
    #[serde(default)]
    pub usd: Option<f64>,
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

/// Seconds an agent may show no progress before the heartbeat kills it as stalled.
#[must_use]
pub fn silence_window(agent: &Agent) -> u64 {
    agent.silence_secs.unwrap_or(match agent.kind {
        AgentKind::Claude | AgentKind::Codex | AgentKind::Gemini | AgentKind::Script => 20 * 60,
        AgentKind::Command => 60 * 60,
    })
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
        AgentKind::Gemini => Some("gemini"),
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
        let money = validate_money(&raw)?;
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
        let mut prices: BTreeMap<String, Price> = DEFAULT_PRICES
            .iter()
            .map(|(m, p)| ((*m).to_owned(), *p))
            .collect();
        for (m, p) in &raw.pricing {
            if [p.input, p.output, p.cache_read, p.cache_write]
                .iter()
                .any(|v| !v.is_finite() || *v < 0.0)
            {
                return Err(format!(
                    "pricing.{m}: prices are USD per million tokens, zero or more"
                ));
            }
            prices.insert(m.clone(), *p);
        }
        if money.max_usd.is_some() || money.host_max_usd.is_some() {
            for a in agents.values().filter(|a| a.kind != AgentKind::Script) {
                match &a.model {
                    None => {
                        return Err(format!(
                            "agents.{}.model: a USD cap is set, so every agent needs a model with a price (set `model:`)",
                            a.name
                        ));
                    }
                    Some(m) if !prices.contains_key(m) => {
                        return Err(format!(
                            "agents.{}.model: `{m}` has no price, and a USD cap is set; add it under `pricing:`",
                            a.name
                        ));
                    }
                    Some(_) => {}
                }
            }
        }
        let notify = match &raw.notify {
            Some(n) => Some(crate::notify::validate(n)?),
            None => None,
        };
        Ok(Self {
            notify,
            prompt_worker: raw.prompts.worker.clone(),
            prompt_verifier: raw.prompts.verifier.clone(),
            money,
            prices,
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
        let auth = validate_auth(&name, a.kind, a.auth.as_ref())?;
        let share_cli_state = a.share_cli_state.unwrap_or(auth == Auth::Subscription);
        let silence_secs = match &a.silence {
            Some(t) => Some(parse_duration(t).map_err(|e| format!("agents.{name}.silence: {e}"))?),
            None => None,
        };
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
                auth,
                share_cli_state,
                silence_secs,
            },
        );
    }
    Ok(out)
}

fn validate_money(raw: &RawConfig) -> Result<Money, String> {
    let b = &raw.budget;
    let usd = |key: &str, v: Option<f64>| match v {
        Some(x) if !x.is_finite() || x < 0.0 => {
            Err(format!("{key}: must be a number of dollars, zero or more"))
        }
        other => Ok(other),
    };
    let est = b.estimate.clone().unwrap_or_default();
    Ok(Money {
        max_tokens: b.max_tokens,
        max_usd: usd("budget.max_usd", b.max_usd)?,
        host_max_tokens: raw.host.max_tokens,
        host_max_usd: usd("host.max_usd", raw.host.max_usd)?,
        estimate_tokens: est.tokens.unwrap_or(DEFAULT_ESTIMATE_TOKENS),
        estimate_usd: usd("budget.estimate.usd", est.usd)?.unwrap_or(DEFAULT_ESTIMATE_USD),
    })
}

/// Tokens one agent run is assumed to use until it reports.
pub const DEFAULT_ESTIMATE_TOKENS: u64 = 200_000;
/// USD one agent run is assumed to cost until it reports.
pub const DEFAULT_ESTIMATE_USD: f64 = 2.0;

/// The variable an agent kind reads its API key from.
#[must_use]
pub fn default_key_var(kind: AgentKind) -> Option<&'static str> {
    match kind {
        AgentKind::Claude => Some("ANTHROPIC_API_KEY"),
        AgentKind::Codex => Some("OPENAI_API_KEY"),
        AgentKind::Gemini => Some("GEMINI_API_KEY"),
        AgentKind::Command | AgentKind::Script => None,
    }
}

fn validate_auth(name: &str, kind: AgentKind, raw: Option<&RawAuth>) -> Result<Auth, String> {
    let Some(raw) = raw else {
        return Ok(Auth::Subscription);
    };
    let at = format!("agents.{name}.auth");
    match raw.route {
        AuthRoute::Subscription => {
            if raw.env.is_some() || raw.command.is_some() || raw.pass_as.is_some() {
                return Err(format!(
                    "{at}: route `subscription` uses the CLI's own login and takes no env, command or pass_as"
                ));
            }
            Ok(Auth::Subscription)
        }
        AuthRoute::Api => {
            let pass_as = raw
                .pass_as
                .clone()
                .or_else(|| default_key_var(kind).map(str::to_owned))
                .ok_or_else(|| format!("{at}.pass_as: required for kind `{}` (the variable the agent reads its key from)", kind_name(kind)))?;
            match (&raw.env, &raw.command) {
                (Some(source), None) if !source.is_empty() => Ok(Auth::ApiEnv {
                    source: source.clone(),
                    pass_as,
                }),
                (None, Some(command)) if !command.trim().is_empty() => Ok(Auth::ApiCommand {
                    command: command.clone(),
                    pass_as,
                }),
                _ => Err(format!(
                    "{at}: route `api` needs exactly one of `env` (a variable holding the key) or `command` (prints the key)"
                )),
            }
        }
    }
}

/// The kind's name as written in nightshift.yaml.
#[must_use]
pub fn kind_name(kind: AgentKind) -> &'static str {
    match kind {
        AgentKind::Claude => "claude",
        AgentKind::Codex => "codex",
        AgentKind::Gemini => "gemini",
        AgentKind::Command => "command",
        AgentKind::Script => "script",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(yaml: &str) -> Result<Config, String> {
        let text = format!(
            "version: 1\nagents:\n  a: {yaml}\n  b: {{ kind: codex }}\ndefaults: {{ worker: a }}\n"
        );
        let raw: RawConfig =
            crate::schema::parse_yaml(&text, "nightshift.yaml", crate::schema::Doc::Config)
                .map_err(|e| e.to_string())?;
        Config::validate(raw)
    }

    #[test]
    fn auth_routes() {
        let c = agent("{ kind: claude }").unwrap();
        assert_eq!(c.agents["a"].auth, Auth::Subscription);
        assert!(c.agents["a"].share_cli_state);
        let c = agent("{ kind: claude, auth: { route: api, env: MY_KEY } }").unwrap();
        assert_eq!(
            c.agents["a"].auth,
            Auth::ApiEnv {
                source: "MY_KEY".into(),
                pass_as: "ANTHROPIC_API_KEY".into()
            }
        );
        assert!(
            !c.agents["a"].share_cli_state,
            "an api route never shares the stored login"
        );
        let c =
            agent("{ kind: codex, auth: { route: api, command: \"pass show openai\" } }").unwrap();
        assert_eq!(
            c.agents["a"].auth,
            Auth::ApiCommand {
                command: "pass show openai".into(),
                pass_as: "OPENAI_API_KEY".into()
            }
        );
        for bad in [
            "{ kind: claude, auth: { route: api } }",
            "{ kind: claude, auth: { route: api, env: A, command: b } }",
            "{ kind: claude, auth: { route: subscription, env: A } }",
            "{ kind: command, command: x, family: f, auth: { route: api, env: A } }",
        ] {
            assert!(agent(bad).is_err(), "{bad}");
        }
    }

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
