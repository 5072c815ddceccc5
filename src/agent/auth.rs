//! The environment an agent gets for its auth route and its CLI state: the API key (read from
//! nightshift's environment or printed by a command) goes only into that child's environment
//! and is never written anywhere; with `share_cli_state: false` the CLI gets a fresh config
//! dir under `state/agent-state/`, so a stored login can never be used (and billed) instead of
//! the key. A misconfigured route fails closed, as an `auth` failure.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::agent::failure::AgentFailure;
use crate::config::{Agent, AgentKind, Auth};

/// Variables every run of a kind gets, to keep it non-interactive and quiet on the network.
#[must_use]
pub fn kind_env(kind: AgentKind) -> Vec<(String, String)> {
    let pairs: &[(&str, &str)] = match kind {
        AgentKind::Claude => &[
            ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1"),
            ("DISABLE_AUTOUPDATER", "1"),
            ("DISABLE_TELEMETRY", "1"),
            ("DISABLE_ERROR_REPORTING", "1"),
            // Its default (10 retries, ~3 minutes) holds a lane on a 401 or a dead API; the
            // agent's own `env:` can raise it.
            ("CLAUDE_CODE_MAX_RETRIES", "2"),
        ],
        // One process (the relaunching parent ignores SIGTERM).
        AgentKind::Gemini => &[("GEMINI_CLI_NO_RELAUNCH", "true")],
        AgentKind::Codex | AgentKind::Command | AgentKind::Script => &[],
    };
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Gemini CLI settings for an isolated home: API-key auth (the environment alone makes it pick
/// a gateway auth type and refuse), no usage statistics or telemetry (its only outside
/// traffic), no auto-update or IDE, bounded retries, and a repo's `.env` ignored.
pub const GEMINI_SETTINGS: &str = r#"{"security":{"auth":{"selectedType":"gemini-api-key"}},"privacy":{"usageStatisticsEnabled":false},"telemetry":{"enabled":false},"general":{"enableAutoUpdate":false,"enableAutoUpdateNotification":false,"maxAttempts":2},"ide":{"enabled":false},"advanced":{"ignoreLocalEnv":true}}"#;

/// The variables that give an agent its isolated CLI state under `dir` (created here).
///
/// # Errors
/// When the directory cannot be created.
pub fn isolation_env(agent: &Agent, dir: &Path) -> std::io::Result<Vec<(String, String)>> {
    if agent.share_cli_state {
        return Ok(Vec::new());
    }
    let tmp = dir.join("tmp");
    std::fs::create_dir_all(&tmp)?;
    let var = |k: &str, p: &Path| (k.to_owned(), p.to_string_lossy().into_owned());
    Ok(match agent.kind {
        AgentKind::Claude => {
            let home = dir.join("claude");
            std::fs::create_dir_all(&home)?;
            vec![
                var("CLAUDE_CONFIG_DIR", &home),
                var("CLAUDE_CODE_TMPDIR", &tmp),
                var("TMPDIR", &tmp),
            ]
        }
        AgentKind::Codex => {
            let home = dir.join("codex");
            std::fs::create_dir_all(&home)?;
            vec![var("CODEX_HOME", &home), var("TMPDIR", &tmp)]
        }
        AgentKind::Gemini => {
            let home = dir.join("gemini");
            std::fs::create_dir_all(home.join(".gemini"))?;
            std::fs::write(home.join(".gemini/settings.json"), GEMINI_SETTINGS)?;
            vec![var("GEMINI_CLI_HOME", &home), var("TMPDIR", &tmp)]
        }
        AgentKind::Command | AgentKind::Script => vec![var("TMPDIR", &tmp)],
    })
}

/// The secret for an agent's auth route, as `(variable, value)`, or `None` for a
/// subscription route.
///
/// # Errors
/// An [`AgentFailure::Auth`] when the variable is unset or empty, or the command fails or
/// prints nothing (fail closed: never fall back to another route).
pub fn secret(agent: &Agent) -> Result<Option<(String, String)>, AgentFailure> {
    let fail = |detail: String| AgentFailure::Auth {
        detail: format!("agent `{}`: {detail}", agent.name),
    };
    match &agent.auth {
        Auth::Subscription => Ok(None),
        Auth::ApiEnv { source, pass_as } => match std::env::var(source) {
            Ok(v) if !v.trim().is_empty() => Ok(Some((pass_as.clone(), v.trim().to_owned()))),
            _ => Err(fail(format!(
                "route `api`: ${source} is not set in nightshift's environment"
            ))),
        },
        Auth::ApiCommand { command, pass_as } => {
            let value = run_secret_command(command)
                .map_err(|e| fail(format!("route `api`: the key command failed: {e}")))?;
            Ok(Some((pass_as.clone(), value)))
        }
    }
}

/// Runs a secret command (allow-listed environment, 30 s limit) and returns its trimmed
/// stdout. Its output is never logged.
fn run_secret_command(command: &str) -> Result<String, String> {
    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-c", command]);
    let out = crate::proc::run_bounded(cmd, &[], Duration::from_secs(30))?;
    let value = out.stdout.trim().to_owned();
    match (out.code, value.is_empty()) {
        (Some(0), false) => Ok(value),
        (Some(0), true) => Err("it printed nothing".into()),
        (code, _) => Err(format!(
            "it exited {}",
            code.map_or_else(|| "on a signal".into(), |c| c.to_string())
        )),
    }
}
