//! Classifies a Claude Code run from its stream-json summary (`is_error`, `api_error`,
//! `api_error_status`, `api_error_type`, a rejected `rate_limit_event`) and exit status.
//! Never reads the final message's prose: it is only carried along as the failure's detail.

use jiff::Timestamp;

use super::StreamSummary;
use crate::agent::ExitInfo;
use crate::agent::failure::{AgentFailure, classify_exit, unfinished};

/// Classifies a Claude Code run from its stream-json summary (`is_error`,
/// `api_error_status`) and exit status.
#[must_use]
pub fn classify_claude(s: &StreamSummary, exit: ExitInfo) -> Option<AgentFailure> {
    if !s.saw_result {
        return Some(unfinished(exit, "the stream ended without a result event"));
    }
    if !s.is_error {
        return classify_exit(exit, "");
    }
    let detail = s.final_message.clone().unwrap_or_default();
    if s.api_error.as_deref() == Some("usage_limit_reached") || s.limit_resets_at.is_some() {
        let resets_at = s
            .limit_resets_at
            .and_then(|t| Timestamp::from_second(t).ok());
        return Some(AgentFailure::UsageLimit { resets_at, detail });
    }
    if s.api_error_type.as_deref() == Some("authentication_error") {
        return Some(AgentFailure::Auth { detail });
    }
    Some(match s.api_error_status {
        Some(401 | 403) => AgentFailure::Auth { detail },
        Some(429) => AgentFailure::RateLimited { detail },
        Some(status) => AgentFailure::ApiError {
            status: Some(status),
            detail,
        },
        None if s.terminal_reason.as_deref() == Some("api_error") || s.api_error.is_some() => {
            AgentFailure::ApiError {
                status: None,
                detail,
            }
        }
        None => AgentFailure::Crashed {
            exit: exit.code,
            detail: format!(
                "the CLI reported an error ({})",
                s.terminal_reason.clone().unwrap_or_default()
            ),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claude_fixtures_classify() {
        let exit = crate::agent::ExitInfo {
            code: Some(1),
            signal: None,
            timed_out: false,
        };
        for (file, want) in [
            (
                include_str!(
                    "../../../tests/fixtures/agent-cli-output/claude-usage-limit.stdout.jsonl"
                ),
                "usage_limit",
            ),
            (
                include_str!(
                    "../../../tests/fixtures/agent-cli-output/claude-auth-401.stdout.jsonl"
                ),
                "auth",
            ),
            (
                include_str!("../../../tests/fixtures/agent-cli-output/claude-down.stdout.jsonl"),
                "api_error",
            ),
            (
                include_str!(
                    "../../../tests/fixtures/agent-cli-output/claude-fail-500.stdout.jsonl"
                ),
                "api_error",
            ),
        ] {
            let s = crate::agent::claude::parse_stream(file.as_bytes());
            let f = classify_claude(&s, exit).unwrap();
            assert_eq!(serde_json::to_value(&f).unwrap()["kind"], want, "{f:?}");
        }
        let s = crate::agent::claude::parse_stream(
            include_str!(
                "../../../tests/fixtures/agent-cli-output/claude-usage-limit.stdout.jsonl"
            )
            .as_bytes(),
        );
        assert!(
            matches!(
                classify_claude(&s, exit),
                Some(AgentFailure::UsageLimit {
                    resets_at: Some(_),
                    ..
                })
            ),
            "the reset time is read from rate_limit_event"
        );
        let ok = crate::agent::claude::parse_stream(
            include_str!("../../../tests/fixtures/agent-cli-output/claude-worker.stdout.jsonl")
                .as_bytes(),
        );
        assert_eq!(
            classify_claude(
                &ok,
                crate::agent::ExitInfo {
                    code: Some(0),
                    ..exit
                }
            ),
            None
        );
    }
}
