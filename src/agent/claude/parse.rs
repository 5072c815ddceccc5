//! Claude Code's structured output (`claude -p … --output-format stream-json --verbose`): the
//! tolerant reader [`parse_stream`] that sums a run up.
//!
//! Owns the meaning of the CLI's fields (docs: `AGENT-CLIS.md`): `result.is_error` is trusted,
//! never `subtype`; usage comes from `result.usage` only and assistant events' partial usage is
//! never added up. Never reads transcript prose, never fails: any line that is not a JSON
//! object is counted as garbage and skipped. Never spawns or reads files; callers hand in bytes.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::agent::Usage;
use crate::agent::jsonl::{for_each_object, str_field, u64_field};

/// What one run's stream says, as far as nightshift cares.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StreamSummary {
    /// A `{"type":"result"}` line was seen (the CLI always ends with one; none means it died).
    pub saw_result: bool,
    /// `result.is_error`; `true` when the result line lacks a boolean there (fail closed).
    pub is_error: bool,
    /// `result.result`: the final message, where the handoff block travels.
    pub final_message: Option<String>,
    /// `result.terminal_reason`, e.g. `completed` or `api_error`.
    pub terminal_reason: Option<String>,
    /// `result.api_error_status`, e.g. 500.
    pub api_error_status: Option<u16>,
    /// `result.usage`, summed over the run by the CLI; `None` if absent or unreadable.
    pub usage: Option<Usage>,
    /// `result.total_cost_usd`, the CLI's own estimate.
    pub cost_usd: Option<f64>,
    /// The result's `session_id`, else the init line's, else the first one seen on any line.
    pub session_id: Option<String>,
    /// `system/init` `model`.
    pub model: Option<String>,
    /// `system/init` `claude_code_version`.
    pub cli_version: Option<String>,
    /// `result.num_turns`.
    pub num_turns: Option<u32>,
    /// Number of `system/api_retry` events.
    pub retries: u32,
    /// Refused tool calls: the larger of the result's `permission_denials` length and the
    /// number of `system/permission_denied` events (both report the same refusals, so they
    /// are not added; the larger survives a run that died before its result line).
    pub permission_denials: u32,
    /// Lines skipped because they were not a JSON object (a cut-off last line counts here).
    pub garbage_lines: u32,
    /// `result.api_error`, e.g. `usage_limit_reached`, `connection_failed`.
    #[serde(default)]
    pub api_error: Option<String>,
    /// `result.api_error_type`, e.g. `authentication_error`, `rate_limit_error`.
    #[serde(default)]
    pub api_error_type: Option<String>,
    /// Unix time a usage limit resets, from a `rate_limit_event` whose status is `rejected`
    /// (subscription logins only; API-key runs never say).
    #[serde(default)]
    pub limit_resets_at: Option<i64>,
}

/// Reads a whole stream. Several result lines: the last one wins. Invalid UTF-8 is decoded
/// lossily; memory stays linear in the longest line, as the input is read line by line.
///
/// ```
/// use nightshift::agent::claude::parse_stream;
/// let s = parse_stream(b"{\"type\":\"result\",\"is_error\":false,\"result\":\"hi\"}\nnot json");
/// assert!(s.saw_result && !s.is_error);
/// assert_eq!(s.final_message.as_deref(), Some("hi"));
/// assert_eq!(s.garbage_lines, 1);
/// ```
#[must_use]
pub fn parse_stream(bytes: &[u8]) -> StreamSummary {
    let mut acc = Accumulator::default();
    let garbage = for_each_object(bytes, |line| acc.line(line));
    acc.finish(garbage)
}

#[derive(Debug, Default)]
struct Accumulator {
    summary: StreamSummary,
    result: Option<ResultLine>,
    init_session: Option<String>,
    first_session: Option<String>,
    denial_events: u32,
}

/// The fields of the last result line, replaced whole by a later one.
#[derive(Debug)]
struct ResultLine {
    is_error: bool,
    final_message: Option<String>,
    terminal_reason: Option<String>,
    api_error_status: Option<u16>,
    usage: Option<Usage>,
    cost_usd: Option<f64>,
    session_id: Option<String>,
    num_turns: Option<u32>,
    denials: u32,
    api_error: Option<String>,
    api_error_type: Option<String>,
}

impl Accumulator {
    fn line(&mut self, object: &Map<String, Value>) {
        if self.first_session.is_none() {
            self.first_session = str_field(object, "session_id");
        }
        match object.get("type").and_then(Value::as_str) {
            Some("system") => self.system(object),
            Some("rate_limit_event") => {
                let info = object.get("rate_limit_info");
                if info.and_then(|i| i.get("status")).and_then(Value::as_str) == Some("rejected") {
                    self.summary.limit_resets_at =
                        info.and_then(|i| i.get("resetsAt")).and_then(Value::as_i64);
                }
            }
            Some("result") => self.result = Some(ResultLine::read(object)),
            _ => {}
        }
    }

    fn system(&mut self, object: &Map<String, Value>) {
        let s = &mut self.summary;
        match object.get("subtype").and_then(Value::as_str) {
            Some("init") => {
                self.init_session = str_field(object, "session_id");
                s.model = str_field(object, "model");
                s.cli_version = str_field(object, "claude_code_version");
            }
            Some("api_retry") => s.retries = s.retries.saturating_add(1),
            Some("permission_denied") => self.denial_events = self.denial_events.saturating_add(1),
            _ => {}
        }
    }

    fn finish(self, garbage_lines: u32) -> StreamSummary {
        let mut s = self.summary;
        s.garbage_lines = garbage_lines;
        s.permission_denials = self.denial_events;
        let mut session = None;
        if let Some(r) = self.result {
            s.saw_result = true;
            s.is_error = r.is_error;
            s.final_message = r.final_message;
            s.terminal_reason = r.terminal_reason;
            s.api_error_status = r.api_error_status;
            s.usage = r.usage;
            s.cost_usd = r.cost_usd;
            s.num_turns = r.num_turns;
            s.permission_denials = s.permission_denials.max(r.denials);
            s.api_error = r.api_error;
            s.api_error_type = r.api_error_type;
            session = r.session_id;
        }
        s.session_id = session.or(self.init_session).or(self.first_session);
        s
    }
}

impl ResultLine {
    fn read(object: &Map<String, Value>) -> Self {
        let denials = object
            .get("permission_denials")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        Self {
            is_error: object
                .get("is_error")
                .and_then(Value::as_bool)
                .unwrap_or(true),
            final_message: str_field(object, "result"),
            terminal_reason: str_field(object, "terminal_reason"),
            api_error_status: u64_field(object, "api_error_status")
                .and_then(|v| u16::try_from(v).ok()),
            usage: object
                .get("usage")
                .and_then(Value::as_object)
                .and_then(read_usage),
            cost_usd: object
                .get("total_cost_usd")
                .and_then(Value::as_f64)
                .filter(|c| c.is_finite() && *c >= 0.0),
            session_id: str_field(object, "session_id"),
            num_turns: u64_field(object, "num_turns").and_then(|v| u32::try_from(v).ok()),
            denials: u32::try_from(denials).unwrap_or(u32::MAX),
            api_error: str_field(object, "api_error"),
            api_error_type: str_field(object, "api_error_type"),
        }
    }
}

/// `input_tokens` and `output_tokens` are required (else the usage is unknown, not zero);
/// the cache fields default to 0. Anthropic's `input_tokens` already excludes cache reads and
/// writes, so the four buckets add up without double counting.
fn read_usage(usage: &Map<String, Value>) -> Option<Usage> {
    Some(Usage {
        input: u64_field(usage, "input_tokens")?,
        output: u64_field(usage, "output_tokens")?,
        cache_read: u64_field(usage, "cache_read_input_tokens").unwrap_or(0),
        cache_write: u64_field(usage, "cache_creation_input_tokens").unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::claude::{assistant_text_line, result_line};

    const WORKER: &str =
        include_str!("../../../tests/fixtures/agent-cli-output/claude-worker.stdout.jsonl");
    const REVIEWER: &str =
        include_str!("../../../tests/fixtures/agent-cli-output/claude-reviewer.stdout.jsonl");
    const RETRY_429: &str =
        include_str!("../../../tests/fixtures/agent-cli-output/claude-retry-429.stdout.jsonl");
    const FAIL_500: &str =
        include_str!("../../../tests/fixtures/agent-cli-output/claude-fail-500.stdout.jsonl");

    #[test]
    fn worker_fixture() {
        let s = parse_stream(WORKER.as_bytes());
        assert!(s.saw_result);
        assert!(!s.is_error);
        assert_eq!(s.terminal_reason.as_deref(), Some("completed"));
        assert_eq!(s.api_error_status, None);
        // result.usage, not the sum of the assistant events' partial snapshots.
        assert_eq!(
            s.usage,
            Some(Usage {
                input: 4700,
                output: 210,
                cache_read: 600,
                cache_write: 0
            })
        );
        assert_eq!(s.cost_usd, Some(0.02312));
        assert_eq!(
            s.session_id.as_deref(),
            Some("7407272f-f38b-4d54-a405-8c12c4ff51be")
        );
        assert_eq!(s.model.as_deref(), Some("claude-opus-5-5"));
        assert_eq!(s.cli_version.as_deref(), Some("2.1.330"));
        assert_eq!(s.num_turns, Some(3));
        assert_eq!(
            (s.retries, s.permission_denials, s.garbage_lines),
            (0, 0, 0)
        );
        let message = s.final_message.unwrap_or_default();
        assert!(message.starts_with("Done: created out.txt"));
        assert!(message.ends_with("```"));
    }

    #[test]
    fn reviewer_fixture_counts_denials_once() {
        let s = parse_stream(REVIEWER.as_bytes());
        assert!(s.saw_result && !s.is_error);
        // Two system/permission_denied events and the same two in result.permission_denials.
        assert_eq!(s.permission_denials, 2);
        assert_eq!(s.num_turns, Some(5));
        assert_eq!(s.usage.map(|u| u.input), Some(2700));
    }

    #[test]
    fn retry_429_fixture_counts_retries() {
        let s = parse_stream(RETRY_429.as_bytes());
        assert_eq!(s.retries, 1);
        assert!(s.saw_result && !s.is_error);
        assert_eq!(s.terminal_reason.as_deref(), Some("completed"));
    }

    #[test]
    fn fail_500_fixture_trusts_is_error_not_subtype() {
        assert!(FAIL_500.contains(r#""subtype":"success","api_error_status":500"#));
        let s = parse_stream(FAIL_500.as_bytes());
        assert!(s.saw_result);
        assert!(s.is_error);
        assert_eq!(s.terminal_reason.as_deref(), Some("api_error"));
        assert_eq!(s.api_error_status, Some(500));
        assert_eq!(s.retries, 1);
        // Usage is kept on failure.
        assert_eq!(s.usage.map(|u| (u.input, u.output)), Some((1500, 60)));
        assert_eq!(s.cost_usd, Some(0.00724));
        assert!(
            s.final_message
                .is_some_and(|m| m.starts_with("API Error: 500"))
        );
    }

    #[test]
    fn truncated_stream_has_no_result_and_one_garbage_line() {
        let cut = &WORKER.as_bytes()[..WORKER.len() - 200];
        let s = parse_stream(cut);
        assert!(!s.saw_result);
        assert!(!s.is_error);
        assert_eq!(s.usage, None);
        assert_eq!(s.garbage_lines, 1);
        // The session and model are still known from the init line.
        assert!(s.session_id.is_some() && s.model.is_some());
    }

    #[test]
    fn garbage_is_counted_and_skipped() {
        let mut input = b"hello\n[1,2]\n\"str\"\n42\n\n   \n".to_vec();
        input.extend_from_slice(
            b"{\"type\":\"result\",\"is_error\":false,\"result\":\"x\xff\xfey\"}\n",
        );
        input.extend_from_slice(
            b"\xff\xfe not utf8\n{\"type\":\"system\",\"subtype\":\"api_retry\"}\r\n{\"type\":",
        );
        let s = parse_stream(&input);
        assert_eq!(s.garbage_lines, 6);
        assert_eq!(s.retries, 1);
        assert_eq!(s.final_message.as_deref(), Some("x\u{fffd}\u{fffd}y"));
    }

    #[test]
    fn last_result_wins_whole() {
        let first = result_line(
            "a",
            "first",
            false,
            Usage {
                input: 1,
                output: 2,
                cache_read: 0,
                cache_write: 0,
            },
            Some(1.0),
            1,
            5,
        );
        let second = r#"{"type":"result","result":"second","is_error":true}"#;
        let s = parse_stream(format!("{first}\n{second}\n").as_bytes());
        assert_eq!(s.final_message.as_deref(), Some("second"));
        assert!(s.is_error);
        // Nothing of the first result survives.
        assert_eq!((s.usage, s.cost_usd, s.num_turns), (None, None, None));
        assert_eq!(s.session_id.as_deref(), Some("a"));
    }

    #[test]
    fn odd_result_fields_fail_closed() {
        let line = r#"{"type":"result","is_error":"no","usage":{"input_tokens":-1,"output_tokens":3},"num_turns":99999999999,"api_error_status":70000,"total_cost_usd":"1"}"#;
        let s = parse_stream(line.as_bytes());
        assert!(s.saw_result && s.is_error);
        assert_eq!(
            (s.usage, s.num_turns, s.api_error_status, s.cost_usd),
            (None, None, None, None)
        );
    }

    #[test]
    fn partial_usage_in_assistant_events_is_never_summed() {
        let assistant =
            r#"{"type":"assistant","message":{"usage":{"input_tokens":100,"output_tokens":100}}}"#;
        let s = parse_stream(format!("{assistant}\n{assistant}\n").as_bytes());
        assert_eq!(s.usage, None);
    }

    #[test]
    fn huge_input_is_parsed_line_by_line() {
        let text = "x".repeat(10_000);
        let line = assistant_text_line("s", &text);
        let mut input = String::with_capacity(51_000_000);
        while input.len() < 50_000_000 {
            input.push_str(&line);
            input.push('\n');
            input.push_str("garbage line\n");
        }
        input.push_str(&result_line("s", "ok", false, Usage::default(), None, 1, 1));
        let s = parse_stream(input.as_bytes());
        assert!(s.saw_result);
        assert!(s.garbage_lines > 4_000);
    }

    #[test]
    fn one_huge_line_is_fine() {
        let line = result_line(
            "s",
            &"y".repeat(20_000_000),
            false,
            Usage::default(),
            None,
            1,
            1,
        );
        let s = parse_stream(line.as_bytes());
        assert_eq!(s.final_message.map(|m| m.len()), Some(20_000_000));
    }

    #[test]
    fn empty_input() {
        assert_eq!(parse_stream(b""), StreamSummary::default());
    }
}
