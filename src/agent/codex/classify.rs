//! Classifies a Codex run from its JSONL summary (`turn.failed`, `turn.completed`) and exit
//! status. Codex has no structured error codes in `--json` output: its
//! `turn.failed.error.message` is the structured channel, with a small set of fixed shapes read
//! here (and nowhere else). Never reads the clock: `now` is handed in.

use jiff::Timestamp;

use super::CodexSummary;
use crate::agent::ExitInfo;
use crate::agent::failure::{AgentFailure, classify_exit, unfinished};

/// Classifies a Codex run from its JSONL summary (`turn.failed`) and exit status. Codex has
/// no structured error codes in `--json` output: its `turn.failed.error.message` is the
/// structured channel, with a small set of fixed shapes (see [`classify_codex_message`]).
#[must_use]
pub fn classify_codex(s: &CodexSummary, exit: ExitInfo, now: Timestamp) -> Option<AgentFailure> {
    match (&s.turn_failed, s.turn_completed) {
        (Some(message), _) => Some(classify_codex_message(message, now)),
        (None, true) => classify_exit(exit, "").or_else(|| all_tools_failed(s)),
        (None, false) => Some(unfinished(exit, "no turn.completed event")),
    }
}

/// A finished turn whose tool calls all failed is no clean result: under a kernel ruleset
/// codex's own sandbox cannot start, every call fails, and codex still exits 0. Measured on
/// codex 0.169: a refused patch is a `file_change` item with `status: failed`, but a shell
/// call whose sandbox could not start leaves no event in the stream at all, which is why a
/// confined codex runs with `danger-full-access` and never reaches this state by design.
fn all_tools_failed(s: &CodexSummary) -> Option<AgentFailure> {
    let all_failed = s.tool_calls > 0 && s.failed_tools.len() >= s.tool_calls as usize;
    all_failed.then(|| AgentFailure::ToolsFailed {
        calls: s.tool_calls,
        detail: s.failed_tools.first().cloned().unwrap_or_default(),
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    const OK: ExitInfo = ExitInfo {
        code: Some(0),
        signal: None,
        timed_out: false,
    };

    #[test]
    fn a_turn_whose_tool_calls_all_failed_is_tools_failed() {
        let now = ts("2026-11-22T17:00:00Z");
        let stream = include_str!(
            "../../../tests/fixtures/agent-cli-output/codex-sandbox-in-landlock.stdout.jsonl"
        );
        let s = super::super::parse_stream(stream.as_bytes());
        assert!(s.turn_completed);
        assert_eq!(s.tool_calls, 1);
        assert_eq!(
            classify_codex(&s, OK, now),
            Some(AgentFailure::ToolsFailed {
                calls: 1,
                detail: "/tmp/run/repo/notes.md".into()
            })
        );
        // One failed command among good ones is the agent's business, not a failure.
        let reviewer =
            include_str!("../../../tests/fixtures/agent-cli-output/codex-reviewer.stdout.jsonl");
        let s = super::super::parse_stream(reviewer.as_bytes());
        assert_eq!((s.tool_calls, s.failed_tools.len()), (2, 1));
        assert!(s.failed_tools[0].ends_with("review.txt: Read-only file system"));
        assert_eq!(classify_codex(&s, OK, now), None);
        // No tool call at all is no failure either.
        let worker =
            include_str!("../../../tests/fixtures/agent-cli-output/codex-worker.stdout.jsonl");
        assert_eq!(
            classify_codex(&super::super::parse_stream(worker.as_bytes()), OK, now),
            None
        );
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
                    "../../../tests/fixtures/agent-cli-output/codex-usage-limit.stdout.jsonl"
                ),
                "usage_limit",
            ),
            (
                include_str!(
                    "../../../tests/fixtures/agent-cli-output/codex-auth-401.stdout.jsonl"
                ),
                "auth",
            ),
            (
                include_str!("../../../tests/fixtures/agent-cli-output/codex-down.stdout.jsonl"),
                "api_error",
            ),
        ] {
            let s = crate::agent::codex::parse_stream(file.as_bytes());
            let f = classify_codex(&s, exit, now).unwrap();
            assert_eq!(serde_json::to_value(&f).unwrap()["kind"], want, "{f:?}");
        }
    }
}
