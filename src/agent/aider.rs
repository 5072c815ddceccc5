//! aider's room: the facts about the `aider` kind, its one argv per role, the files its run
//! writes in the attempt's own directory, its output reader ([`read_run`], in `parse`) and its
//! failure classifier ([`classify_aider`], in `classify`). Observed on aider-chat 0.86.2, the
//! one version this kind drives (doctor fails another).
//!
//! aider can drive any vendor's model, so an aider agent states its `family:` and `model:`
//! (with litellm's provider prefix, `openai/gpt-4o`) and takes its key through an `api` route
//! (`pass_as` names the variable its provider reads, `OPENAI_API_KEY`, `ANTHROPIC_API_KEY`…).
//! It has no JSON mode and exits 0 after every API failure, so a run is read from the files it
//! is told to write, never from its exit code: `--analytics-log` (exact tokens per request;
//! a request started and never answered is a failed run), `--llm-history-file` (the model's
//! last reply verbatim: the final message) and stdout's `litellm.<ErrorClass>:` lines (what
//! failed). A repository's `.aider.conf.yml` and `.env` override aider's environment, so every
//! behaviour that matters is on argv: headless (`--message-file`, `--yes-always`,
//! `--no-pretty`, `--no-stream`, `--no-fancy-input`), offline except for the model
//! (`--no-check-update`, `--no-analytics`, a generated `--model-metadata-file` so it never
//! fetches litellm's price list), nothing written into the repository but the edits (no
//! commits, no `.gitignore`, history files in the attempt's directory, `--map-tokens 0` so no
//! tag cache). Never spawns anything: the job wrapper runs the [`Invocation`] built here.

mod classify;
mod parse;

use std::path::{Path, PathBuf};

pub use classify::{classify_aider, classify_error_line};
pub use parse::{AiderSummary, last_error, last_response, read_events, read_run};

use super::{Doctor, ExitInfo, Invocation, InvokeCtx, LoginProbe, Parsed, Vendor};
use crate::config::{Agent, Auth};
use crate::ids::Role;

/// The one aider version this kind drives.
pub const AIDER_VERSION: &str = "0.86.2";

/// OpenAI's endpoint, put on argv when the agent names none.
pub const OPENAI_API_BASE: &str = "https://api.openai.com/v1";

/// Where a run's files go, under the attempt's own directory.
pub const RUN_DIR: &str = "aider-run";
/// The analytics log (JSON lines: one `message_send` per answered request).
pub const EVENTS_FILE: &str = "events.jsonl";
/// The raw model conversation; its last `LLM RESPONSE` block is the final message.
pub const LLM_HISTORY_FILE: &str = "llm.history";
/// The generated model metadata (context window, no prices: nightshift prices the usage).
pub const METADATA_FILE: &str = "model-metadata.json";

/// A git identity for aider's own checks, as command-line git configuration: without one
/// (an isolated HOME has no `~/.gitconfig`) aider writes `user.name` into the repository's
/// `.git/config`, which the kernel ruleset refuses (aider then dies). It makes no commit.
const GIT_IDENTITY: [(&str, &str); 5] = [
    ("GIT_CONFIG_COUNT", "2"),
    ("GIT_CONFIG_KEY_0", "user.name"),
    ("GIT_CONFIG_VALUE_0", "nightshift"),
    ("GIT_CONFIG_KEY_1", "user.email"),
    ("GIT_CONFIG_VALUE_1", "nightshift@localhost"),
];

/// The `aider` kind.
#[derive(Debug, Clone, Copy)]
pub struct Aider;

impl Vendor for Aider {
    fn name(&self) -> &'static str {
        "aider"
    }

    fn default_family(&self) -> Option<&'static str> {
        None // it drives any vendor's model
    }

    fn default_silence_secs(&self) -> u64 {
        30 * 60 // `--no-stream`: it prints once per answered request, and retries for minutes
    }

    fn default_key_var(&self) -> Option<&'static str> {
        None // the model's provider decides (`OPENAI_API_KEY`, `ANTHROPIC_API_KEY`, …)
    }

    fn default_command(&self) -> Option<&'static str> {
        Some("aider")
    }

    fn reports_usage(&self) -> bool {
        true
    }

    fn is_paid(&self) -> bool {
        true
    }

    fn takes_recipe(&self) -> bool {
        false
    }

    fn kind_env(&self) -> &'static [(&'static str, &'static str)] {
        // No line wrapping of error messages; a "open this URL?" answer opens nothing.
        &[("COLUMNS", "1000"), ("BROWSER", "true")]
    }

    fn shared_state(&self, home: &Path) -> (Vec<PathBuf>, Vec<PathBuf>) {
        (vec![home.join(".aider")], Vec::new())
    }

    /// A fresh HOME: aider reads `~/.aider.conf.yml` and `~/.env` and writes `~/.aider/`.
    fn isolation_env(&self, dir: &Path, tmp: &Path) -> std::io::Result<Vec<(String, String)>> {
        let home = dir.join("aider-home");
        std::fs::create_dir_all(home.join(".aider"))?;
        Ok(vec![
            super::auth::path_var("HOME", &home),
            super::auth::path_var("TMPDIR", tmp),
        ])
    }

    fn check_agent(&self, agent: &Agent) -> Result<(), String> {
        let at = format!("agents.{}", agent.name);
        if agent.auth == Auth::Subscription {
            return Err(format!(
                "{at}.auth: kind `aider` has no login of its own; use `auth: {{ route: api, env: VAR, pass_as: OPENAI_API_KEY }}` (pass_as: the variable the model's provider reads)"
            ));
        }
        match agent.model.as_deref() {
            None | Some("") => Err(format!(
                "{at}.model: required for kind `aider`, with litellm's provider prefix (e.g. `openai/gpt-4o`, `anthropic/claude-sonnet-4-5`)"
            )),
            Some(_) => Ok(()),
        }
    }

    /// Writes the run's directory (the model metadata; earlier logs of the same attempt
    /// removed so they are never read as this run's).
    fn invocation(
        &self,
        agent: &Agent,
        role: Role,
        cx: &InvokeCtx<'_>,
    ) -> Result<Invocation, String> {
        let model = agent
            .model
            .as_deref()
            .ok_or_else(|| format!("agent `{}`: kind `aider` needs `model:`", agent.name))?;
        let run = cx.attempt_dir.join(RUN_DIR);
        prepare_run_dir(&run, model)
            .map_err(|e| format!("cannot prepare {}: {e}", run.display()))?;
        let path = |name: &str| run.join(name).to_string_lossy().into_owned();
        let mut args: Vec<String> = [
            "--model",
            model,
            "--message-file",
            &cx.prompt_file.to_string_lossy(),
            // Headless: accept aider's own questions, plain output printed once per request.
            "--yes-always",
            "--no-pretty",
            "--no-stream",
            "--no-fancy-input",
            "--no-show-model-warnings",
            "--no-show-release-notes",
            // Offline but for the model.
            "--no-check-update",
            "--no-analytics",
            "--no-detect-urls",
            "--model-metadata-file",
            &path(METADATA_FILE),
            // nightshift owns the commit; nothing but the edits in the repository.
            "--no-auto-commits",
            "--no-dirty-commits",
            "--no-gitignore",
            "--map-tokens",
            "0",
            "--no-auto-lint",
            "--no-auto-test",
            "--no-suggest-shell-commands",
            // What nightshift reads back.
            "--analytics-log",
            &path(EVENTS_FILE),
            "--llm-history-file",
            &path(LLM_HISTORY_FILE),
            "--chat-history-file",
            &path("chat.md"),
            "--input-history-file",
            &path("input.history"),
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        match role {
            // aider's own read-only mode (no edit applied, none even proposed); the kernel
            // ruleset is what keeps a verifier's hands off the workspace.
            Role::Verifier => args.extend(["--chat-mode".into(), "ask".into(), "--dry-run".into()]),
            Role::Worker | Role::Acceptance => {
                args.extend(["--edit-format".into(), "diff".into()]);
            }
        }
        // A repository's `.env` overrides aider's environment: an OpenAI endpoint taken from
        // the environment could be redirected, key and all. argv is the one thing it cannot
        // override, so the endpoint is always there (the agent's own in `args:` comes later
        // and wins).
        let base_given = agent
            .args
            .iter()
            .any(|a| a == "--openai-api-base" || a.starts_with("--openai-api-base="));
        if provider(model) == "openai" && !base_given {
            args.extend(["--openai-api-base".into(), OPENAI_API_BASE.into()]);
        }
        args.extend(agent.args.iter().cloned());
        Ok(Invocation {
            program: super::resolve(agent, "aider")?,
            args,
            env: GIT_IDENTITY
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        })
    }

    fn parse(&self, stdout: &[u8], dir: &Path, exit: ExitInfo, now: jiff::Timestamp) -> Parsed {
        let s = read_run(stdout, &dir.join(RUN_DIR));
        Parsed {
            failure: classify_aider(&s, exit, now),
            final_message: s.final_message,
            usage: s.usage,
            cost_usd: s.cost_usd,
            model: s.model,
            cli_version: s.version,
            ..Parsed::default()
        }
    }

    fn doctor(&self) -> Doctor {
        Doctor::Cli {
            install_hint: "python3 -m venv ~/.aider-venv && ~/.aider-venv/bin/pip install aider-chat==0.86.2 (Python 3.10-3.12), then set `command:` to ~/.aider-venv/bin/aider",
            version_args: Some(&["--version"]),
            pinned: Some(AIDER_VERSION),
            login: LoginProbe::Own,
        }
    }
}

/// Creates the run's directory with the model's metadata, and removes the logs an earlier run
/// of the same attempt left (aider appends to them).
fn prepare_run_dir(run: &Path, model: &str) -> std::io::Result<()> {
    std::fs::create_dir_all(run)?;
    for name in [EVENTS_FILE, LLM_HISTORY_FILE, "chat.md", "input.history"] {
        match std::fs::remove_file(run.join(name)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    std::fs::write(run.join(METADATA_FILE), model_metadata(model))
}

/// litellm's provider of `model`: its prefix (`openai/gpt-4o`), `openai` without one.
fn provider(model: &str) -> &str {
    model.split_once('/').map_or("openai", |(p, _)| p)
}

/// litellm model metadata for `model`: a context window, no prices (nightshift prices the
/// usage from its own table; priced metadata of the user's own, passed in `args:`, wins). With
/// it aider never fetches litellm's price list from the network.
#[must_use]
pub fn model_metadata(model: &str) -> String {
    let provider = provider(model);
    serde_json::json!({
        model: {
            "max_input_tokens": 128_000,
            "max_output_tokens": 8192,
            "input_cost_per_token": 0.0,
            "output_cost_per_token": 0.0,
            "litellm_provider": provider,
            "mode": "chat",
        }
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AgentKind;

    fn agent() -> Agent {
        Agent {
            name: "ai".into(),
            kind: AgentKind::Aider,
            command: Some("/bin/aider".into()),
            args: Vec::new(),
            env: std::collections::BTreeMap::new(),
            model: Some("anthropic/claude-sonnet-4-5".into()),
            family: "claude".into(),
            recipe: None,
            auth: Auth::ApiEnv {
                source: "K".into(),
                pass_as: "ANTHROPIC_API_KEY".into(),
            },
            share_cli_state: false,
            silence_secs: None,
        }
    }

    #[test]
    fn a_run_starts_with_fresh_logs_and_metadata_for_its_model() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join(RUN_DIR);
        std::fs::create_dir_all(&run).unwrap();
        // An earlier run of the same attempt (re-dispatched) left its log behind.
        std::fs::write(run.join(EVENTS_FILE), "{\"event\": \"message_send\"}\n").unwrap();
        let prompt = dir.path().join("worker-prompt.md");
        let cx = InvokeCtx {
            prompt: "P",
            prompt_file: &prompt,
            worktree: dir.path(),
            attempt_dir: dir.path(),
            recipe_file: None,
            self_exe: Path::new("/bin/nightshift"),
            confined: true,
        };
        let inv = Aider.invocation(&agent(), Role::Worker, &cx).unwrap();
        assert!(!run.join(EVENTS_FILE).exists(), "the stale log is gone");
        let meta: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(run.join(METADATA_FILE)).unwrap())
                .unwrap();
        let m = &meta["anthropic/claude-sonnet-4-5"];
        assert_eq!(m["litellm_provider"], "anthropic");
        assert_eq!(m["input_cost_per_token"], 0.0);
        let at = |flag: &str| {
            let i = inv.args.iter().position(|a| a == flag).unwrap();
            inv.args[i + 1].clone()
        };
        assert_eq!(
            at("--model-metadata-file"),
            run.join(METADATA_FILE).to_string_lossy()
        );
        assert_eq!(
            at("--analytics-log"),
            run.join(EVENTS_FILE).to_string_lossy()
        );
        assert_eq!(at("--message-file"), prompt.to_string_lossy());
        assert!(
            !inv.args.iter().any(|a| a == "P"),
            "the prompt never goes on argv"
        );
        assert!(
            !inv.args.iter().any(|a| a == "--openai-api-base"),
            "not an OpenAI model"
        );
    }

    #[test]
    fn an_openai_endpoint_is_always_on_argv() {
        let dir = tempfile::tempdir().unwrap();
        let prompt = dir.path().join("worker-prompt.md");
        let cx = InvokeCtx {
            prompt: "P",
            prompt_file: &prompt,
            worktree: dir.path(),
            attempt_dir: dir.path(),
            recipe_file: None,
            self_exe: Path::new("/bin/nightshift"),
            confined: true,
        };
        let bases = |a: &Agent| {
            let inv = Aider.invocation(a, Role::Verifier, &cx).unwrap();
            inv.args
                .windows(2)
                .filter(|w| w[0] == "--openai-api-base")
                .map(|w| w[1].clone())
                .collect::<Vec<_>>()
        };
        let mut a = agent();
        for model in ["openai/gpt-4o", "gpt-4o"] {
            a.model = Some(model.into());
            assert_eq!(bases(&a), [OPENAI_API_BASE], "{model}");
        }
        a.args = vec!["--openai-api-base".into(), "http://127.0.0.1:9/v1".into()];
        assert_eq!(
            bases(&a),
            ["http://127.0.0.1:9/v1"],
            "the agent's own, once"
        );
    }

    #[test]
    fn the_config_states_model_and_key_route() {
        assert_eq!(Aider.check_agent(&agent()), Ok(()));
        let mut a = agent();
        a.model = None;
        assert!(
            Aider
                .check_agent(&a)
                .unwrap_err()
                .starts_with("agents.ai.model: ")
        );
        let mut a = agent();
        a.auth = Auth::Subscription;
        assert!(
            Aider
                .check_agent(&a)
                .unwrap_err()
                .starts_with("agents.ai.auth: ")
        );
    }
}
