//! The environment an agent gets for its auth route and its CLI state: the API key (read from
//! nightshift's environment or printed by a command) goes only into that child's environment
//! and is never written anywhere; with `share_cli_state: false` the CLI gets a fresh config
//! dir under `state/agent-state/`, so a stored login can never be used (and billed) instead of
//! the key. A misconfigured route fails closed, as an `auth` failure. What an isolated CLI
//! state holds and which variables a kind needs belong to that kind's module; this module only
//! applies them. Never writes or logs a secret.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::agent::failure::AgentFailure;
use crate::config::{Agent, AgentKind, Auth};

/// Variables every run of a kind gets, to keep it non-interactive and quiet on the network.
#[must_use]
pub fn kind_env(kind: AgentKind) -> Vec<(String, String)> {
    kind.vendor()
        .kind_env()
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// The variables that give an agent its isolated CLI state under `dir` (created here; what
/// goes in it is the agent kind's business).
///
/// # Errors
/// When the directory cannot be created.
pub fn isolation_env(agent: &Agent, dir: &Path) -> std::io::Result<Vec<(String, String)>> {
    if agent.share_cli_state {
        return Ok(Vec::new());
    }
    let tmp = dir.join("tmp");
    std::fs::create_dir_all(&tmp)?;
    agent.kind.vendor().isolation_env(dir, &tmp)
}

/// `(name, path)` as an environment pair.
pub(crate) fn path_var(name: &str, path: &Path) -> (String, String) {
    (name.to_owned(), path.to_string_lossy().into_owned())
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
