//! Codex's room: the facts about the `codex` kind, its one argv per role (`codex exec --json`,
//! a `workspace-write` sandbox for the worker, `read-only` for the verifier, and
//! `danger-full-access` for both when nightshift's kernel ruleset confines the run, since
//! codex's own sandbox cannot start inside it; run with `TZ=UTC`),
//! its output reader ([`parse_stream`], in `parse`), its failure classifier
//! ([`classify_codex`], in `classify`) and doctor's checks (`codex login status`). Never
//! spawns anything: the job wrapper runs the [`Invocation`] built here and doctor runs the
//! probes named here.

mod classify;
mod parse;

use std::path::Path;

pub use classify::{classify_codex, classify_codex_message};
pub use parse::{CodexSummary, parse_stream};

use super::{Doctor, ExitInfo, Invocation, InvokeCtx, LoginProbe, LoginStatus, Parsed, Vendor};
use crate::config::Agent;
use crate::ids::Role;

/// The `codex` kind.
#[derive(Debug, Clone, Copy)]
pub struct Codex;

impl Vendor for Codex {
    fn name(&self) -> &'static str {
        "codex"
    }

    fn default_family(&self) -> Option<&'static str> {
        Some("codex")
    }

    fn default_silence_secs(&self) -> u64 {
        20 * 60 // JSONL events as it works
    }

    fn default_key_var(&self) -> Option<&'static str> {
        Some("OPENAI_API_KEY")
    }

    fn default_command(&self) -> Option<&'static str> {
        Some("codex")
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
        &[]
    }

    fn shared_state(&self, home: &Path) -> (Vec<std::path::PathBuf>, Vec<std::path::PathBuf>) {
        (vec![home.join(".codex")], Vec::new())
    }

    fn isolation_env(&self, dir: &Path, tmp: &Path) -> std::io::Result<Vec<(String, String)>> {
        let home = dir.join("codex");
        std::fs::create_dir_all(&home)?;
        Ok(vec![
            super::auth::path_var("CODEX_HOME", &home),
            super::auth::path_var("TMPDIR", tmp),
        ])
    }

    fn invocation(
        &self,
        agent: &Agent,
        role: Role,
        cx: &InvokeCtx<'_>,
    ) -> Result<Invocation, String> {
        // Codex's bubblewrap cannot start inside a Landlock domain (every tool call would
        // fail while codex exits 0): confined, the kernel ruleset is the sandbox.
        let sandbox = match role {
            _ if cx.confined => "danger-full-access",
            Role::Verifier => "read-only",
            Role::Worker | Role::Acceptance => "workspace-write",
        };
        let mut args: Vec<String> = vec![
            "exec".into(),
            "--json".into(),
            "--sandbox".into(),
            sandbox.into(),
            "-C".into(),
            cx.worktree.to_string_lossy().into_owned(),
            // Give up on an unreachable server instead of retrying for ever; no plugin sync, no
            // analytics linger, no compressed request bodies.
            "--disable".into(),
            "unbounded_connection_retries".into(),
            "--disable".into(),
            "plugins".into(),
            "--disable".into(),
            "enable_request_compression".into(),
            "-c".into(),
            "analytics.enabled=false".into(),
        ];
        if let Some(m) = &agent.model {
            args.extend(["-c".into(), format!("model=\"{m}\"")]);
        }
        args.extend(agent.args.iter().cloned());
        args.push(cx.prompt.into());
        // Codex prints usage-limit reset times in local time: make that UTC.
        Ok(Invocation {
            program: super::resolve(agent, "codex")?,
            args,
            env: vec![("TZ".into(), "UTC".into())],
        })
    }

    fn check_agent(&self, _agent: &Agent) -> Result<(), String> {
        Ok(())
    }

    fn parse(&self, stdout: &[u8], _dir: &Path, exit: ExitInfo, now: jiff::Timestamp) -> Parsed {
        let s = parse_stream(stdout);
        Parsed {
            failure: classify_codex(&s, exit, now),
            final_message: s.final_message,
            usage: s.usage,
            session_id: s.thread_id,
            ..Parsed::default()
        }
    }

    fn doctor(&self) -> Doctor {
        Doctor::Cli {
            install_hint: "npm install -g @openai/codex, or set `command:` to its absolute path",
            pinned: None,
            version_args: Some(&["--version"]),
            login: LoginProbe::Status {
                args: &["login", "status"],
                judge: judge_login,
                probe_hint: "run `codex login status` yourself to see why",
            },
        }
    }
}

/// `codex login status`: exit 0 means logged in.
fn judge_login(code: Option<i32>, out: &str) -> LoginStatus {
    LoginStatus {
        ok: code == Some(0),
        detail: format!("subscription login: {}", out.trim()),
        hint: "run `codex login`, or use `auth: { route: api, env: ... }`".into(),
    }
}
