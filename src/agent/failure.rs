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
    /// No progress (log, structured output, workspace) for longer than the agent's silence
    /// window: the heartbeat killed it.
    Stalled { silent_secs: u64 },
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
fn unfinished(exit: crate::agent::ExitInfo, detail: &str) -> AgentFailure {
    classify_exit(exit, detail).unwrap_or(AgentFailure::Crashed {
        exit: exit.code,
        detail: detail.to_owned(),
    })
}

/// Classifies a Claude Code run from its stream-json summary (`is_error`,
/// `api_error_status`) and exit status.
#[must_use]
pub fn classify_claude(
    s: &crate::agent::claude::StreamSummary,
    exit: crate::agent::ExitInfo,
) -> Option<AgentFailure> {
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

/// Classifies a Codex run from its JSONL summary (`turn.failed`) and exit status. Codex has
/// no structured error codes in `--json` output: its `turn.failed.error.message` is the
/// structured channel, with a small set of fixed shapes (see [`classify_codex_message`]).
#[must_use]
pub fn classify_codex(
    s: &crate::agent::codex::CodexSummary,
    exit: crate::agent::ExitInfo,
    now: Timestamp,
) -> Option<AgentFailure> {
    match (&s.turn_failed, s.turn_completed) {
        (Some(message), _) => Some(classify_codex_message(message, now)),
        (None, true) => classify_exit(exit, ""),
        (None, false) => Some(unfinished(exit, "no turn.completed event")),
    }
}

/// Reads one of codex's fixed `turn.failed` message shapes (observed on codex 0.169):
/// `You’ve hit your usage limit. … try again at [Nov 23rd, 2026 ]8:01 PM.` (local time; nightshift
/// runs codex with `TZ=UTC`), `Quota exceeded. …`, `unexpected status NNN …`,
/// `exceeded retry limit, last status: 429 …`, `Connection failed: …`,
/// `stream disconnected before completion: …`. Anything else is an API error.
#[must_use]
pub fn classify_codex_message(message: &str, now: Timestamp) -> AgentFailure {
    let detail = message.to_owned();
    let lower = message.to_lowercase();
    if lower.contains("hit your usage limit") || lower.starts_with("quota exceeded") {
        return AgentFailure::UsageLimit {
            resets_at: codex_reset(message, now),
            detail,
        };
    }
    if lower.contains("last status: 429") {
        return AgentFailure::RateLimited { detail };
    }
    let status = lower
        .split("unexpected status ")
        .nth(1)
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse::<u16>().ok());
    match status {
        Some(401 | 403) => AgentFailure::Auth { detail },
        Some(429) => AgentFailure::RateLimited { detail },
        status => AgentFailure::ApiError { status, detail },
    }
}

/// The reset time in `… try again at [Mon Dth, YYYY ]H:MM AM|PM.`, read as UTC, rounded up to
/// the next minute (codex truncates); a time of day already past means tomorrow.
fn codex_reset(message: &str, now: Timestamp) -> Option<Timestamp> {
    let lower = message.to_lowercase();
    let at = lower.rfind("try again at ")? + "try again at ".len();
    let words: Vec<&str> = message
        .get(at..)?
        .trim_end_matches('.')
        .split_whitespace()
        .collect();
    let (date, time, ampm) = match words.as_slice() {
        [mon, day, year, time, ampm, ..] => {
            (Some((*mon, *day, year.trim_end_matches(','))), *time, *ampm)
        }
        [time, ampm, ..] => (None, *time, *ampm),
        _ => return None,
    };
    let (h, m) = time.split_once(':')?;
    let (mut h, m): (i8, i8) = (h.parse().ok()?, m.parse().ok()?);
    match ampm.trim_end_matches('.').to_ascii_uppercase().as_str() {
        "AM" if h == 12 => h = 0,
        "PM" if h < 12 => h += 12,
        "AM" | "PM" => {}
        _ => return None,
    }
    let day = match date {
        Some((mon, d, y)) => civil_date(mon, d, y)?,
        None => now.to_zoned(jiff::tz::TimeZone::UTC).date(),
    };
    let at = day
        .at(h, m, 0, 0)
        .to_zoned(jiff::tz::TimeZone::UTC)
        .ok()?
        .timestamp();
    let at = at.checked_add(jiff::SignedDuration::from_secs(60)).ok()?;
    if date.is_none() && at <= now {
        return at.checked_add(jiff::SignedDuration::from_hours(24)).ok();
    }
    Some(at)
}

/// `Nov`, `23rd,`, `2026` as a date.
fn civil_date(mon: &str, day: &str, year: &str) -> Option<jiff::civil::Date> {
    const MONTHS: [&str; 12] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    let month = MONTHS
        .iter()
        .position(|x| mon.to_lowercase().starts_with(x))?;
    let d: i8 = day
        .trim_end_matches(',')
        .trim_end_matches(|c: char| c.is_ascii_alphabetic())
        .parse()
        .ok()?;
    jiff::civil::Date::new(year.parse().ok()?, i8::try_from(month + 1).ok()?, d).ok()
}

/// Classifies a Gemini CLI run from its stream-json summary (`result.error`, which carries
/// the API's error JSON) and exit status (the HTTP status modulo 256; observed on 0.61).
#[must_use]
pub fn classify_gemini(
    s: &crate::agent::gemini::GeminiSummary,
    exit: crate::agent::ExitInfo,
    now: Timestamp,
) -> Option<AgentFailure> {
    if !s.saw_result {
        // SIGTERM can end it with exit 0 and no result line: never a success.
        return Some(unfinished(exit, "the stream ended without a result event"));
    }
    let Some(e) = &s.error else {
        return classify_exit(exit, "");
    };
    let detail = e.message.clone();
    let status = e.http_status.or_else(|| {
        exit.code
            .and_then(crate::agent::gemini::status_from_exit_code)
    });
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

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn codex_usage_limit_with_time_of_day() {
        let now = ts("2026-11-22T17:00:00Z");
        let m = "You\u{2019}ve hit your usage limit. Upgrade to Pro (https://chatgpt.com/explore/pro), visit https://chatgpt.com/settings/usage to purchase more credits or try again at 8:01 PM.";
        assert_eq!(
            classify_codex_message(m, now),
            AgentFailure::UsageLimit {
                resets_at: Some(ts("2026-11-22T20:02:00Z")),
                detail: m.into()
            }
        );
        // A time already past today means tomorrow.
        let early = "You\u{2019}ve hit your usage limit. Try again at 3:38 AM.";
        assert!(
            matches!(classify_codex_message(early, now), AgentFailure::UsageLimit { resets_at: Some(t), .. } if t == ts("2026-11-23T03:39:00Z"))
        );
    }

    #[test]
    fn codex_usage_limit_with_date_and_without_time() {
        let now = ts("2026-11-22T17:00:00Z");
        let m = "You\u{2019}ve hit your usage limit. Try again at Nov 23rd, 2026 6:38 PM.";
        assert!(
            matches!(classify_codex_message(m, now), AgentFailure::UsageLimit { resets_at: Some(t), .. } if t == ts("2026-11-23T18:39:00Z"))
        );
        let later = "You\u{2019}ve hit your usage limit. Try again later.";
        assert!(matches!(
            classify_codex_message(later, now),
            AgentFailure::UsageLimit {
                resets_at: None,
                ..
            }
        ));
    }

    #[test]
    fn codex_other_failures() {
        let now = ts("2026-11-22T17:00:00Z");
        let auth = "unexpected status 401 Unauthorized: Incorrect API key provided: sk-nigh***********fake., url: http://127.0.0.1:1/v1/responses";
        assert!(matches!(
            classify_codex_message(auth, now),
            AgentFailure::Auth { .. }
        ));
        assert!(matches!(
            classify_codex_message(
                "exceeded retry limit, last status: 429 Too Many Requests",
                now
            ),
            AgentFailure::RateLimited { .. }
        ));
        assert!(matches!(
            classify_codex_message("Connection failed: error sending request", now),
            AgentFailure::ApiError { status: None, .. }
        ));
        assert!(matches!(
            classify_codex_message("unexpected status 500 Internal Server Error", now),
            AgentFailure::ApiError {
                status: Some(500),
                ..
            }
        ));
        assert!(matches!(
            classify_codex_message("Quota exceeded. Check your plan and billing details.", now),
            AgentFailure::UsageLimit {
                resets_at: None,
                ..
            }
        ));
    }

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
            include_str!("../../tests/fixtures/agent-cli-output/gemini-quota-429.stdout.jsonl"),
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
                include_str!("../../tests/fixtures/agent-cli-output/gemini-auth-401.stdout.jsonl"),
                145
            ),
            Some(AgentFailure::Auth { .. })
        ));
        assert!(matches!(
            run(
                include_str!("../../tests/fixtures/agent-cli-output/gemini-auth-400.stdout.jsonl"),
                144
            ),
            Some(AgentFailure::Auth { .. })
        ));
        assert!(matches!(
            run(
                include_str!("../../tests/fixtures/agent-cli-output/gemini-down.stdout.jsonl"),
                1
            ),
            Some(AgentFailure::ApiError { status: None, .. })
        ));
        assert!(matches!(
            run(
                include_str!("../../tests/fixtures/agent-cli-output/gemini-fail-500.stdout.jsonl"),
                244
            ),
            Some(AgentFailure::ApiError {
                status: Some(500),
                ..
            })
        ));
        assert_eq!(
            run(
                include_str!("../../tests/fixtures/agent-cli-output/gemini-worker.stdout.jsonl"),
                0
            ),
            None
        );
        assert!(
            matches!(run("", 0), Some(AgentFailure::Crashed { .. })),
            "no result line is never a success"
        );
    }

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
                    "../../tests/fixtures/agent-cli-output/claude-usage-limit.stdout.jsonl"
                ),
                "usage_limit",
            ),
            (
                include_str!("../../tests/fixtures/agent-cli-output/claude-auth-401.stdout.jsonl"),
                "auth",
            ),
            (
                include_str!("../../tests/fixtures/agent-cli-output/claude-down.stdout.jsonl"),
                "api_error",
            ),
            (
                include_str!("../../tests/fixtures/agent-cli-output/claude-fail-500.stdout.jsonl"),
                "api_error",
            ),
        ] {
            let s = crate::agent::claude::parse_stream(file.as_bytes());
            let f = classify_claude(&s, exit).unwrap();
            assert_eq!(serde_json::to_value(&f).unwrap()["kind"], want, "{f:?}");
        }
        let s = crate::agent::claude::parse_stream(
            include_str!("../../tests/fixtures/agent-cli-output/claude-usage-limit.stdout.jsonl")
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
            include_str!("../../tests/fixtures/agent-cli-output/claude-worker.stdout.jsonl")
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

    #[test]
    fn codex_fixtures_classify() {
        let now = ts("2026-11-22T17:00:00Z");
        let exit = crate::agent::ExitInfo {
            code: Some(1),
            signal: None,
            timed_out: false,
        };
        for (file, want) in [
            (
                include_str!(
                    "../../tests/fixtures/agent-cli-output/codex-usage-limit.stdout.jsonl"
                ),
                "usage_limit",
            ),
            (
                include_str!("../../tests/fixtures/agent-cli-output/codex-auth-401.stdout.jsonl"),
                "auth",
            ),
            (
                include_str!("../../tests/fixtures/agent-cli-output/codex-down.stdout.jsonl"),
                "api_error",
            ),
        ] {
            let s = crate::agent::codex::parse_stream(file.as_bytes());
            let f = classify_codex(&s, exit, now).unwrap();
            assert_eq!(serde_json::to_value(&f).unwrap()["kind"], want, "{f:?}");
        }
    }
}
