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
    /// Environment variables whose values are secrets: written as `[redacted:NAME]` in every
    /// file nightshift writes (the auth routes' variables are always redacted).
    #[serde(default)]
    pub redact: Vec<String>,
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
