//! Agent adapters: one module ("room") per kind of agent CLI — [`claude`], [`codex`],
//! [`gemini`], [`aider`], [`command`], [`script`] — each owning how its CLI is invoked for a role (one
//! argv per role), how its structured output is read (never transcript prose), how a run's
//! failure is classified, and the facts about the kind (name, default family, API-key
//! variable, environment, doctor's checks). This module owns only the shared types, the
//! [`Vendor`] trait the rooms implement and the dispatch: [`AgentKind::vendor`] is the one
//! place that lists the kinds. Adapters never spawn anything themselves: the job wrapper
//! ([`crate::job`]) runs the [`Invocation`] they describe and `nightshift doctor` runs the
//! probes they name.

pub mod aider;
pub mod auth;
pub mod claude;
pub mod codex;
pub mod command;
pub mod failure;
pub mod gemini;
mod jsonl;
pub mod script;

use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::config::Agent;
use crate::ids::Role;

/// The kinds of agent nightshift can drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AgentKind {
    Claude,
    Codex,
    Gemini,
    Aider,
    Command,
    Script,
}

impl AgentKind {
    /// The module that knows this kind of agent: the only list of kinds (no `_` arm, so a new
    /// kind does not build until it is registered here).
    #[must_use]
    pub fn vendor(self) -> &'static dyn Vendor {
        match self {
            Self::Claude => &claude::Claude,
            Self::Codex => &codex::Codex,
            Self::Gemini => &gemini::Gemini,
            Self::Aider => &aider::Aider,
            Self::Command => &command::Command,
            Self::Script => &script::Script,
        }
    }
}

/// Everything nightshift knows about one kind of agent CLI. One implementation per kind, each
/// in its own module; every method is required, so a new kind states each fact.
pub trait Vendor: Sync {
    /// The kind's name as written in nightshift.yaml.
    fn name(&self) -> &'static str;
    /// The family an agent of this kind belongs to when the config does not say (`None`:
    /// `family:` is required).
    fn default_family(&self) -> Option<&'static str>;
    /// The variable the CLI reads its API key from (`None`: `auth.pass_as` is required).
    fn default_key_var(&self) -> Option<&'static str>;
    /// The executable looked up on PATH when the agent has no `command:` (`None`: the kind
    /// needs `command:` or runs no external CLI).
    fn default_command(&self) -> Option<&'static str>;
    /// Seconds a run may show no progress (log, output and workspace unchanged) before the
    /// heartbeat kills it as stalled, unless the agent sets `silence:`. A CLI that streams
    /// events is silent only when stuck; one that prints at the end is silent all along.
    fn default_silence_secs(&self) -> u64;
    /// Its runs report token usage; a kind that does not is unmetered (never charged the
    /// budget's estimate).
    fn reports_usage(&self) -> bool;
    /// Its runs call a paid model: with a USD cap, such an agent needs a priced `model:`.
    fn is_paid(&self) -> bool;
    /// It plays a recipe (`recipe:` is allowed).
    fn takes_recipe(&self) -> bool;
    /// Variables every run gets, to keep it non-interactive and quiet on the network.
    fn kind_env(&self) -> &'static [(&'static str, &'static str)];
    /// The variables that give a run a fresh CLI state under `dir` (creating what the CLI
    /// needs there); `tmp` is a temporary directory inside it, already created.
    ///
    /// # Errors
    /// When a directory or settings file cannot be written.
    fn isolation_env(&self, dir: &Path, tmp: &Path) -> std::io::Result<Vec<(String, String)>>;
    /// The user's own CLI state under `home` that a run sharing it writes: directories, and
    /// single files written in place. Under confinement these stay writable, which is the
    /// weaker mode (a hook planted there runs later, unconfined).
    fn shared_state(&self, home: &Path) -> (Vec<PathBuf>, Vec<PathBuf>);
    /// The one argv this kind uses for a role (without the agent's `env:`, added by
    /// [`invocation`]).
    ///
    /// # Errors
    /// When the program cannot be found, or the role needs something the config lacks.
    fn invocation(
        &self,
        agent: &Agent,
        role: Role,
        cx: &InvokeCtx<'_>,
    ) -> Result<Invocation, String>;
    /// What this kind requires of an agent's config beyond the shared rules, as the error
    /// naming the key at fault (`agents.NAME.KEY: …`).
    ///
    /// # Errors
    /// When the agent lacks something the kind needs.
    fn check_agent(&self, agent: &Agent) -> Result<(), String>;
    /// Reads a run's stdout (and, for a kind that writes its structured output to files, those
    /// files in `dir`, the attempt's own directory [`InvokeCtx::attempt_dir`]) and classifies
    /// how it ended.
    fn parse(&self, stdout: &[u8], dir: &Path, exit: ExitInfo, now: jiff::Timestamp) -> Parsed;
    /// What `nightshift doctor` checks for this kind, without spending a token.
    fn doctor(&self) -> Doctor;
}

/// `nightshift doctor`'s checks for a kind, as data (doctor runs them).
#[derive(Debug, Clone, Copy)]
pub enum Doctor {
    /// Built into nightshift: nothing to find on PATH; the text says so.
    BuiltIn(&'static str),
    /// An executable on PATH.
    Cli {
        /// The hint when it is not on PATH.
        install_hint: &'static str,
        /// Arguments that print its version (`None`: show its path only).
        version_args: Option<&'static [&'static str]>,
        /// The one version nightshift drives (its output and flags were measured on it):
        /// another version fails the check. `None`: any version.
        pinned: Option<&'static str>,
        /// How a subscription login is checked.
        login: LoginProbe,
    },
}

/// How doctor checks a subscription login.
#[derive(Debug, Clone, Copy)]
pub enum LoginProbe {
    /// Run the CLI with `args` and let `judge` read its exit code and output (stdout, or
    /// stderr when stdout is empty); `probe_hint` is the hint when it cannot be run at all.
    Status {
        args: &'static [&'static str],
        judge: fn(Option<i32>, &str) -> LoginStatus,
        probe_hint: &'static str,
    },
    /// Inspect the CLI's settings (reads files, runs nothing).
    Inspect(fn() -> LoginStatus),
    /// The command's own business: nothing to check.
    Own,
}

/// A login check's verdict; `hint` is shown only when not `ok`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginStatus {
    pub ok: bool,
    pub detail: String,
    pub hint: String,
}

/// Token usage of one agent run, with cache tokens kept apart (LESSONS: never fold them in).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Usage {
    pub input: u64,
    pub output: u64,
    pub cache_read: u64,
    pub cache_write: u64,
}

impl Usage {
    #[must_use]
    pub fn total(&self) -> u64 {
        self.input + self.output + self.cache_read + self.cache_write
    }
}

/// How to start an agent: program, argv and the variables it needs beyond the allow-list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
}

/// What an adapter needs to build an invocation.
#[derive(Debug, Clone, Copy)]
pub struct InvokeCtx<'a> {
    pub prompt: &'a str,
    /// The same prompt, in a file (for agents that take a path).
    pub prompt_file: &'a Path,
    pub worktree: &'a Path,
    /// The attempt's own directory (writable to the agent in every role, confined or not):
    /// where a kind keeps the files its CLI writes besides stdout.
    pub attempt_dir: &'a Path,
    /// `script` kind: the recipe the job resolved for this role.
    pub recipe_file: Option<&'a Path>,
    /// nightshift's own executable (the `script` kind runs it).
    pub self_exe: &'a Path,
    /// The run is confined by the kernel ruleset (`confine: strict`): a CLI whose own sandbox
    /// cannot start inside it runs without one.
    pub confined: bool,
}

/// Builds the one argv an agent kind uses for a role, plus the agent's own `env:`.
///
/// # Errors
/// When the agent's program cannot be found on PATH, or the role needs something the config
/// lacks (a `script` agent with no recipe).
pub fn invocation(agent: &Agent, role: Role, cx: &InvokeCtx<'_>) -> Result<Invocation, String> {
    let mut inv = agent.kind.vendor().invocation(agent, role, cx)?;
    inv.env
        .extend(agent.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    Ok(inv)
}

/// The agent's program: its `command:`, else `default`, looked up on PATH.
fn resolve(agent: &Agent, default: &str) -> Result<PathBuf, String> {
    let name = agent.command.as_deref().unwrap_or(default);
    crate::proc::which(name).ok_or_else(|| {
        format!(
            "agent `{}`: `{name}` is not on PATH (set `command:` to its absolute path)",
            agent.name
        )
    })
}

/// How an agent process ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExitInfo {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    /// nightshift killed it at its deadline.
    pub timed_out: bool,
}

/// What nightshift reads from an agent's structured output.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Parsed {
    pub final_message: Option<String>,
    pub failure: Option<failure::AgentFailure>,
    pub usage: Option<Usage>,
    pub cost_usd: Option<f64>,
    pub session_id: Option<String>,
    pub model: Option<String>,
    pub cli_version: Option<String>,
    pub permission_denials: u32,
}

/// Parses an agent's stdout (and the files its kind keeps in the attempt's directory `dir`)
/// by its kind and classifies how it ended.
#[must_use]
pub fn parse(
    kind: AgentKind,
    stdout: &[u8],
    dir: &Path,
    exit: ExitInfo,
    now: jiff::Timestamp,
) -> Parsed {
    let mut p = kind.vendor().parse(stdout, dir, exit, now);
    if exit.timed_out {
        p.failure = None; // the engine reports the timeout itself
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Agent, Auth};

    fn agent(kind: AgentKind, command: &str, model: Option<&str>, args: &[&str]) -> Agent {
        Agent {
            name: "a".into(),
            kind,
            command: Some(command.into()),
            args: args.iter().map(|s| (*s).to_owned()).collect(),
            env: [("EXTRA".to_owned(), "1".to_owned())].into_iter().collect(),
            model: model.map(str::to_owned),
            family: "f".into(),
            recipe: None,
            auth: Auth::Subscription,
            share_cli_state: true,
            silence_secs: None,
        }
    }

    fn show(a: &Agent, role: Role, confined: bool) -> String {
        let dir = tempfile::tempdir().unwrap();
        let prompt_file = dir.path().join("worker-prompt.md");
        let attempt_dir = dir.path().join("a1-worker");
        let cx = InvokeCtx {
            prompt: "PROMPT",
            prompt_file: &prompt_file,
            worktree: Path::new("/w"),
            attempt_dir: &attempt_dir,
            recipe_file: Some(Path::new("/h/worker-recipe.json")),
            self_exe: Path::new("/bin/nightshift"),
            confined,
        };
        let inv = invocation(a, role, &cx).unwrap();
        let env: Vec<String> = inv.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let tmp = dir.path().to_string_lossy().into_owned();
        format!(
            "{} {}\nenv: {}",
            inv.program.display(),
            inv.args.join(" "),
            env.join(" ")
        )
        .replace(&tmp, "$TMP")
    }

    /// One argv per kind and role (the adapters' whole contract with each CLI).
    #[test]
    fn argv_per_kind_and_role() {
        let claude = agent(
            AgentKind::Claude,
            "/bin/claude",
            Some("claude-sonnet-4-5"),
            &["--max-turns", "40"],
        );
        let codex = agent(AgentKind::Codex, "/bin/codex", Some("gpt-5-codex"), &[]);
        let gemini = agent(
            AgentKind::Gemini,
            "/bin/gemini",
            Some("gemini-2.5-pro"),
            &[],
        );
        let command = agent(
            AgentKind::Command,
            "/bin/sh",
            None,
            &["-c", "my-agent --prompt {prompt_file}"],
        );
        let aider = agent(
            AgentKind::Aider,
            "/bin/aider",
            Some("openai/gpt-4o"),
            &["--openai-api-base", "http://127.0.0.1:9/v1"],
        );
        let script = agent(AgentKind::Script, "unused", None, &[]);
        let mut out = String::new();
        for (name, a) in [
            ("claude", &claude),
            ("codex", &codex),
            ("gemini", &gemini),
            ("aider", &aider),
            ("command", &command),
            ("script", &script),
        ] {
            for role in [Role::Worker, Role::Verifier] {
                out.push_str(&format!("## {name} {role}\n{}\n", show(a, role, false)));
            }
        }
        // Under the kernel ruleset codex's own bubblewrap sandbox cannot start (its uid_map
        // write is refused, so every tool call fails while codex still exits 0): it runs with
        // `danger-full-access` and the Landlock ruleset does the confining.
        for role in [Role::Worker, Role::Verifier] {
            let line = show(&codex, role, true);
            out.push_str(&format!("## codex {role}, confined\n{line}\n"));
        }
        insta::assert_snapshot!(out);
    }
}
