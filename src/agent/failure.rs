//! Typed agent failures, classified from exit status and structured events only (never by
//! grepping transcript prose for words like "limit"): what the engine needs to decide between
//! retry, pause and escalation.

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

/// Classifies a Claude Code run from its stream-json summary (`is_error`,
/// `api_error_status`) and exit status.
#[must_use]
pub fn classify_claude(
    s: &crate::agent::claude::StreamSummary,
    exit: crate::agent::ExitInfo,
) -> Option<AgentFailure> {
    if !s.saw_result {
        return classify_exit(exit, "the stream ended without a result event").or(Some(
            AgentFailure::Crashed {
                exit: exit.code,
                detail: "the stream ended without a result event".into(),
            },
        ));
    }
    if !s.is_error {
        return classify_exit(exit, "");
    }
    let detail = s.final_message.clone().unwrap_or_default();
    Some(match s.api_error_status {
        Some(401 | 403) => AgentFailure::Auth { detail },
        Some(429) => AgentFailure::RateLimited { detail },
        Some(status) => AgentFailure::ApiError {
            status: Some(status),
            detail,
        },
        None => AgentFailure::Crashed {
            exit: exit.code,
            detail: format!(
                "the CLI reported an error ({})",
                s.terminal_reason.clone().unwrap_or_default()
            ),
        },
    })
}

/// Classifies a Codex run from its JSONL summary (`turn.failed`) and exit status.
#[must_use]
pub fn classify_codex(
    s: &crate::agent::codex::CodexSummary,
    exit: crate::agent::ExitInfo,
) -> Option<AgentFailure> {
    match (&s.turn_failed, s.turn_completed) {
        (Some(message), _) => Some(AgentFailure::ApiError {
            status: None,
            detail: message.clone(),
        }),
        (None, true) => classify_exit(exit, ""),
        (None, false) => {
            classify_exit(exit, "no turn.completed event").or(Some(AgentFailure::Crashed {
                exit: exit.code,
                detail: "no turn.completed event".into(),
            }))
        }
    }
}

/// The hint a human needs for a failure, if any.
#[must_use]
pub fn hint(failure: &AgentFailure, agent: &str) -> Option<String> {
    match failure {
        AgentFailure::Auth { .. } => Some(format!(
            "check agent `{agent}`'s auth route in nightshift.yaml and run `nightshift doctor`; then `nightshift requeue <stage>`"
        )),
        AgentFailure::PermissionDenied { .. } => Some(format!(
            "give agent `{agent}` the tools it needs (`args` in nightshift.yaml)"
        )),
        _ => None,
    }
}
