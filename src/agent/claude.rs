//! Claude Code's room: the facts about the `claude` kind, its one argv per role
//! (`claude -p PROMPT --output-format stream-json --verbose`, acceptEdits for the worker, plan
//! mode for the verifier), its output reader ([`parse_stream`], in `parse`), the emitters the
//! built-in scripted agent prints the same shape with (`emit`), its failure classifier
//! ([`classify_claude`], in `classify`) and doctor's checks (`claude auth status --json`).
//! Never spawns anything: the job wrapper runs the [`Invocation`] built here and doctor runs
//! the probes named here.

mod classify;
mod emit;
mod parse;

use std::path::Path;

pub use classify::classify_claude;
pub use emit::{
    api_error_result_line, assistant_text_line, init_line, permission_denied_line, result_line,
};
pub use parse::{StreamSummary, parse_stream};

use super::{Doctor, ExitInfo, Invocation, InvokeCtx, LoginProbe, LoginStatus, Parsed, Vendor};
use crate::config::Agent;
use crate::ids::Role;

/// The `claude` kind.
#[derive(Debug, Clone, Copy)]
pub struct Claude;

impl Vendor for Claude {
    fn name(&self) -> &'static str {
        "claude"
    }

    fn default_family(&self) -> Option<&'static str> {
        Some("claude")
    }

    fn default_silence_secs(&self) -> u64 {
        20 * 60 // stream-json: one event per step
    }

    fn default_key_var(&self) -> Option<&'static str> {
        Some("ANTHROPIC_API_KEY")
    }

    fn default_command(&self) -> Option<&'static str> {
        Some("claude")
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
        &[
            ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1"),
            ("DISABLE_AUTOUPDATER", "1"),
            ("DISABLE_TELEMETRY", "1"),
            ("DISABLE_ERROR_REPORTING", "1"),
            // Its default (10 retries, ~3 minutes) holds a lane on a 401 or a dead API; the
            // agent's own `env:` can raise it.
            ("CLAUDE_CODE_MAX_RETRIES", "2"),
        ]
    }

    fn shared_state(&self, home: &Path) -> (Vec<std::path::PathBuf>, Vec<std::path::PathBuf>) {
        (vec![home.join(".claude")], vec![home.join(".claude.json")])
    }

    fn isolation_env(&self, dir: &Path, tmp: &Path) -> std::io::Result<Vec<(String, String)>> {
        let home = dir.join("claude");
        std::fs::create_dir_all(&home)?;
        Ok(vec![
            super::auth::path_var("CLAUDE_CONFIG_DIR", &home),
            super::auth::path_var("CLAUDE_CODE_TMPDIR", tmp),
            super::auth::path_var("TMPDIR", tmp),
        ])
    }

    fn invocation(
        &self,
        agent: &Agent,
        role: Role,
        cx: &InvokeCtx<'_>,
    ) -> Result<Invocation, String> {
        let mut args: Vec<String> = vec![
            "-p".into(),
            cx.prompt.into(),
            "--output-format".into(),
            "stream-json".into(),
            "--verbose".into(),
        ];
        match role {
            Role::Verifier => args.extend(["--permission-mode".into(), "plan".into()]),
            Role::Worker | Role::Acceptance => args.extend([
                "--permission-mode".into(),
                "acceptEdits".into(),
                "--allowedTools".into(),
                "Bash,Read,Edit,Write,Glob,Grep".into(),
            ]),
        }
        if let Some(m) = &agent.model {
            args.extend(["--model".into(), m.clone()]);
        }
        args.extend(agent.args.iter().cloned());
        Ok(Invocation {
            program: super::resolve(agent, "claude")?,
            args,
            env: Vec::new(),
        })
    }

    fn check_agent(&self, _agent: &Agent) -> Result<(), String> {
        Ok(())
    }

    fn parse(&self, stdout: &[u8], _dir: &Path, exit: ExitInfo, _now: jiff::Timestamp) -> Parsed {
        parsed(stdout, exit)
    }

    fn doctor(&self) -> Doctor {
        Doctor::Cli {
            install_hint: "npm install -g @anthropic-ai/claude-code, or set `command:` to its absolute path",
            pinned: None,
            version_args: Some(&["--version"]),
            login: LoginProbe::Status {
                args: &["auth", "status", "--json"],
                judge: judge_login,
                probe_hint: "run `claude auth status` yourself to see why",
            },
        }
    }
}

/// Reads a stream-json run (Claude Code's, or the scripted agent's, which prints the same).
pub(super) fn parsed(stdout: &[u8], exit: ExitInfo) -> Parsed {
    let s = parse_stream(stdout);
    Parsed {
        failure: classify_claude(&s, exit),
        final_message: s.final_message,
        usage: s.usage,
        cost_usd: s.cost_usd,
        session_id: s.session_id,
        model: s.model,
        cli_version: s.cli_version,
        permission_denials: s.permission_denials,
    }
}

/// `claude auth status --json`: logged in, and not through an API key.
fn judge_login(_code: Option<i32>, out: &str) -> LoginStatus {
    let v: serde_json::Value = serde_json::from_str(out).unwrap_or_default();
    let method = v["authMethod"].as_str().unwrap_or("none");
    LoginStatus {
        ok: v["loggedIn"].as_bool() == Some(true) && method != "api_key",
        detail: format!(
            "subscription login: loggedIn={}, authMethod={method}",
            v["loggedIn"]
        ),
        hint: "run `claude auth login`, or use `auth: { route: api, env: ... }`".into(),
    }
}
