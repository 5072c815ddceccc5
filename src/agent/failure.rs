//! Typed agent failures ([`AgentFailure`]) and the rules every vendor's classifier shares:
//! a run classified from its exit status alone ([`classify_exit`]), a run whose structured
//! output never said it finished ([`unfinished`]) and refused tool calls ([`refused_tools`]).
//! Classification reads exit status and structured events only, never transcript prose
//! (never grep for words like "limit"); what a vendor's events mean belongs to its own
//! `classify` module. Never spawns, never reads files.

use jiff::Timestamp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Why an agent run failed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum AgentFailure {
    /// The credentials were refused or missing (401/403, not logged in, a misconfigured auth
    /// route). Escalates at once: retrying cannot help.
    Auth { detail: String },
    /// The account's usage limit: the family pauses until `resets_at` (when the CLI said).
    UsageLimit {
        resets_at: Option<Timestamp>,
        detail: String,
    },
    /// A rate limit that outlasted the CLI's own retries.
    RateLimited { detail: String },
    /// The model API failed (5xx, overloaded, unreachable).
    ApiError { status: Option<u16>, detail: String },
    /// Killed by a signal nightshift did not send for a timeout.
    Killed { signal: i32 },
    /// Exited non-zero with no structured error.
    Crashed { exit: Option<i32>, detail: String },
    /// The CLI refused tool calls the role needed and produced no handoff.
    PermissionDenied { detail: String },
    /// No progress (log, structured output, workspace) for longer than the agent's silence
    /// window: the heartbeat killed it.
    Stalled { silent_secs: u64 },
    /// Every tool call of the run failed (for example a CLI sandbox that cannot start inside
    /// the kernel ruleset), although the CLI said it finished: never a clean result.
    ToolsFailed {
        /// How many tool calls ended, all failed.
        calls: u32,
        /// The first failed call and what it printed last.
        detail: String,
    },
}

impl std::fmt::Display for AgentFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Auth { detail } => write!(f, "authentication failed: {detail}"),
            Self::UsageLimit {
                resets_at: Some(t), ..
            } => write!(f, "usage limit reached (resets {t})"),
            Self::UsageLimit {
                resets_at: None,
                detail,
            } => write!(f, "usage limit reached: {detail}"),
            Self::RateLimited { detail } => write!(f, "rate limited: {detail}"),
            Self::ApiError {
                status: Some(s),
                detail,
            } => write!(f, "model API error {s}: {detail}"),
            Self::ApiError {
                status: None,
                detail,
            } => write!(f, "model API unreachable: {detail}"),
            Self::Killed { signal } => write!(f, "killed by signal {signal}"),
            Self::Crashed {
                exit: Some(c),
                detail,
            } if detail.is_empty() => write!(f, "exited {c}"),
            Self::Crashed { exit, detail } => match exit {
                Some(c) => write!(f, "exited {c}: {detail}"),
                None => write!(f, "ended abnormally: {detail}"),
            },
            Self::PermissionDenied { detail } => write!(f, "permission denied: {detail}"),
            Self::Stalled { silent_secs } => write!(
                f,
                "stalled: no progress for {}; killed by the heartbeat",
                crate::config::format_duration(*silent_secs)
            ),
            Self::ToolsFailed { calls, detail } => {
                write!(f, "all {calls} tool call(s) failed; first: {detail}")
            }
        }
    }
}

/// Classifies a process that printed no structured error from its exit status alone.
#[must_use]
pub fn classify_exit(exit: crate::agent::ExitInfo, detail: &str) -> Option<AgentFailure> {
    match (exit.code, exit.signal) {
        (Some(0), _) => None,
        (None, Some(signal)) if !exit.timed_out => Some(AgentFailure::Killed { signal }),
        (code, _) => Some(AgentFailure::Crashed {
            exit: code,
            detail: detail.to_owned(),
        }),
    }
}

/// A run whose structured output never said it finished: a failure whatever its exit code
/// (killed, crashed, or exit 0 with the stream cut short).
#[must_use]
pub fn unfinished(exit: crate::agent::ExitInfo, detail: &str) -> AgentFailure {
    classify_exit(exit, detail).unwrap_or(AgentFailure::Crashed {
        exit: exit.code,
        detail: detail.to_owned(),
    })
}

/// A run that ended "successfully" but left no valid handoff while the CLI refused tool calls
/// failed because of the refusals (Claude's acceptEdits mode denies test runners and still
/// exits 0): say so, rather than "no envelope".
#[must_use]
pub fn refused_tools(
    failure: Option<AgentFailure>,
    denials: u32,
    handoff_ok: bool,
) -> Option<AgentFailure> {
    match failure {
        None if denials > 0 && !handoff_ok => Some(AgentFailure::PermissionDenied {
            detail: format!(
                "the CLI refused {denials} tool call(s) and no valid handoff came back; allow the tools the role needs"
            ),
        }),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_without_a_handoff_are_permission_denied() {
        assert!(matches!(
            refused_tools(None, 2, false),
            Some(AgentFailure::PermissionDenied { .. })
        ));
        assert_eq!(
            refused_tools(None, 2, true),
            None,
            "a valid handoff despite refusals goes on to the gates"
        );
        assert_eq!(refused_tools(None, 0, false), None);
        let auth = AgentFailure::Auth { detail: "x".into() };
        assert_eq!(refused_tools(Some(auth.clone()), 3, false), Some(auth));
        // The real reviewer fixture (plan mode refusing writes) has refusals.
        let s = crate::agent::claude::parse_stream(
            include_str!("../../tests/fixtures/agent-cli-output/claude-reviewer.stdout.jsonl")
                .as_bytes(),
        );
        assert!(s.permission_denials > 0);
    }
}
