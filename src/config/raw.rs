//! The raw on-disk shape of `nightshift.yaml` (like ripgrep's `LowArgs`): serde structs that
//! are strict (unknown keys are errors naming the key and line) and carry the defaults serde
//! fills in. Their doc comments are the generated schema's descriptions. Never validates
//! across keys (that is `validate`'s job) and never holds a per-kind fact of an agent CLI.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Price;
use crate::agent::AgentKind;

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
    /// How agents and acceptance commands are confined: `strict` runs every process of an
    /// attempt under a kernel ruleset (Linux Landlock) and refuses to dispatch where the kernel
    /// has none; `detect` and `off` apply no kernel ruleset. Default: `strict` where the
    /// kernel supports Landlock, else `detect`.
    #[serde(default)]
    pub confine: Option<ConfineMode>,
    /// Extra directories workers and acceptance commands may write under `confine: strict`
    /// (tool caches such as `~/.cargo` or `~/.npm`); `~/` is the home directory.
    #[serde(default)]
    pub confine_writable: Vec<String>,
    /// Where stage workspaces live (default: `workspaces/<repo>-<hash>/` under the host state
    /// directory, outside the checkout); `~/` is the home directory. Must be outside the
    /// repository.
    #[serde(default)]
    pub workspaces: Option<String>,
    /// Environment variables whose values are secrets: written as `[redacted:NAME]` in every
    /// file nightshift writes (the auth routes' variables are always redacted).
    #[serde(default)]
    pub redact: Vec<String>,
}

/// `confine:` of nightshift.yaml.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConfineMode {
    /// Every process of an attempt runs under a kernel ruleset; no dispatch without one.
    Strict,
    /// No kernel ruleset; writes outside the workspace are only detected afterwards.
    Detect,
    /// No kernel ruleset.
    Off,
}

impl ConfineMode {
    /// The name as written in nightshift.yaml.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Strict => "strict",
            Self::Detect => "detect",
            Self::Off => "off",
        }
    }
}

/// `prompts:` paths relative to the repo root. Placeholders are `{{name}}`; an unknown or
/// unfilled one fails the attempt before any agent starts (`nightshift template worker-prompt`
/// and `nightshift template verifier-prompt` print the built-in ones with every name).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawPrompts {
    #[serde(default)]
    pub worker: Option<String>,
    #[serde(default)]
    pub verifier: Option<String>,
}

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
    /// A verifier panel: several verifiers, `quorum` of which must pass. Judges the cards that
    /// say `verify: panel`, and (with `panel_when`) every attempt whose deliverable touches
    /// one of its paths.
    #[serde(default)]
    pub panel: Option<RawPanel>,
    /// When `defaults.panel` judges a stage without `verify: panel`: any deliverable path
    /// matching one of `paths` (globs).
    #[serde(default)]
    pub panel_when: Option<RawPanelWhen>,
}

/// `panel:` (under `defaults:` or in a card's front matter).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawPanel {
    /// The members' agent names (each its own verifier job).
    pub members: Vec<String>,
    /// How many members must say `pass` (more passes than votes against, too: a tie is not a
    /// pass).
    pub quorum: u32,
    /// Allow members of the worker's own family.
    #[serde(default)]
    pub allow_same_family: bool,
}

/// `panel_when:` under `defaults:`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawPanelWhen {
    /// Globs of deliverable paths (e.g. `migrations/**`).
    pub paths: Vec<String>,
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
