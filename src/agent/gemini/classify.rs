//! Classifies a Gemini CLI run from its stream-json summary (`result.error`, which carries
//! the API's error JSON, read by [`GeminiError`](super::GeminiError)) and exit status (the HTTP
//! status modulo 256; observed on 0.61). Never reads the clock: `now` is handed in.

use jiff::Timestamp;

use super::{GeminiSummary, status_from_exit_code};
use crate::agent::ExitInfo;
use crate::agent::failure::{AgentFailure, classify_exit, unfinished};

/// Classifies a Gemini CLI run from its stream-json summary (`result.error`, which carries
/// the API's error JSON) and exit status (the HTTP status modulo 256; observed on 0.61).
#[must_use]
pub fn classify_gemini(s: &GeminiSummary, exit: ExitInfo, now: Timestamp) -> Option<AgentFailure> {
    if !s.saw_result {
        // SIGTERM can end it with exit 0 and no result line: never a success.
        return Some(unfinished(exit, "the stream ended without a result event"));
    }
    let Some(e) = &s.error else {
        return classify_exit(exit, "");
    };
    let detail = e.message.clone();
    let status = e
        .http_status
        .or_else(|| exit.code.and_then(status_from_exit_code));
    Some(match status {
        _ if e.daily_quota => AgentFailure::UsageLimit {
            resets_at: next_pacific_midnight(now),
            detail,
        },
        Some(429) => AgentFailure::RateLimited { detail },
        Some(401 | 403) => AgentFailure::Auth { detail },
        Some(400) if e.reason.as_deref() == Some("API_KEY_INVALID") => {
            AgentFailure::Auth { detail }
        }
        _ if e.connection_failed => AgentFailure::ApiError {
            status: None,
            detail,
        },
        status => AgentFailure::ApiError { status, detail },
    })
}

/// Gemini's daily quotas reset at midnight Pacific time (the CLI does not say when).
fn next_pacific_midnight(now: Timestamp) -> Option<Timestamp> {
    let tz = jiff::tz::TimeZone::get("America/Los_Angeles").ok()?;
    let today = now.to_zoned(tz.clone()).date();
    let tomorrow = today.tomorrow().ok()?;
    Some(tomorrow.to_zoned(tz).ok()?.timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn gemini_fixtures_classify() {
        let now = ts("2026-11-22T17:00:00Z");
        let run = |file: &str, code: i32| {
            let s = crate::agent::gemini::parse_stream(file.as_bytes());
            classify_gemini(
                &s,
                crate::agent::ExitInfo {
                    code: Some(code),
                    signal: None,
                    timed_out: false,
                },
                now,
            )
        };
        let quota = run(
            include_str!("../../../tests/fixtures/agent-cli-output/gemini-quota-429.stdout.jsonl"),
            173,
        );
        // 2026-11-23T00:00 in Los Angeles (PST, UTC-8) when the zone database is present.
        assert!(
            matches!(quota, Some(AgentFailure::UsageLimit { .. })),
            "{quota:?}"
        );
        if let Some(AgentFailure::UsageLimit {
            resets_at: Some(t), ..
        }) = quota
        {
            assert_eq!(t, ts("2026-11-23T08:00:00Z"));
        }
        assert!(matches!(
            run(
                include_str!(
                    "../../../tests/fixtures/agent-cli-output/gemini-auth-401.stdout.jsonl"
                ),
                145
            ),
            Some(AgentFailure::Auth { .. })
        ));
        assert!(matches!(
            run(
                include_str!(
                    "../../../tests/fixtures/agent-cli-output/gemini-auth-400.stdout.jsonl"
                ),
                144
            ),
            Some(AgentFailure::Auth { .. })
        ));
        assert!(matches!(
            run(
                include_str!("../../../tests/fixtures/agent-cli-output/gemini-down.stdout.jsonl"),
                1
            ),
            Some(AgentFailure::ApiError { status: None, .. })
        ));
        assert!(matches!(
            run(
                include_str!(
                    "../../../tests/fixtures/agent-cli-output/gemini-fail-500.stdout.jsonl"
                ),
                244
            ),
            Some(AgentFailure::ApiError {
                status: Some(500),
                ..
            })
        ));
        assert_eq!(
            run(
                include_str!("../../../tests/fixtures/agent-cli-output/gemini-worker.stdout.jsonl"),
                0
            ),
            None
        );
        assert!(
            matches!(run("", 0), Some(AgentFailure::Crashed { .. })),
            "no result line is never a success"
        );
    }
}
