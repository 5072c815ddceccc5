//! Gemini CLI's structured output (`gemini -p … --output-format stream-json`, and the single
//! pretty-printed object of `--output-format json`): the tolerant reader [`parse_stream`] that
//! sums a run up. Observed on @google/gemini-cli 0.61.0.
//!
//! `stream-json` is one JSON object per line: `init` (`session_id`, `model`), `message`
//! (`role` `user`|`assistant`, `content`, `delta: true` for assistant chunks), `tool_use`
//! (`tool_name`, `tool_id`, `parameters`), `tool_result` (`tool_id`, `status`
//! `success`|`error`, `output`, `error {type, message}`; a Plan-Mode refusal has
//! `error.type` `policy_violation`), `error` (non-fatal: `severity`, `message`) and a last
//! `result` (`status` `success`|`error`, `error {type, message}`, `stats`). Fatal API errors
//! end the stream with `result.status: error` on **stdout**; in `json` format the same error
//! object (with a `code`) goes to **stderr** and stdout stays empty, so `stream-json` is the
//! format to run.
//!
//! The final message is the assistant text after the last tool event (the CLI streams each
//! model turn's text in pieces; text before a tool call belongs to that turn). Usage comes from
//! the result's `stats` only, which the CLI sums over every model request of the run, the
//! failed last turn included (as zeros).
//!
//! API errors carry no structured status in `stream-json`: `result.error.type` is `unknown` and
//! `message` is `[API Error: <the API's JSON error body>]` for a plain HTTP error, or
//! `[API Error: <text>]` for the errors the CLI classifies itself (quota), with the fixed
//! suffix `Please wait and try again later. …` when the status was 429. [`GeminiError`] (in
//! `api_error`) reads those fixed shapes; the exit code (HTTP status mod 256, see
//! [`status_from_exit_code`](super::status_from_exit_code)) says the same. Never reads
//! transcript prose, never fails: any line that is not a JSON object is counted as garbage and
//! skipped. Never spawns or reads files; callers hand in bytes.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::api_error::{GeminiError, read_error};
use crate::agent::Usage;
use crate::agent::jsonl::{for_each_object, str_field, u64_field};

/// What one Gemini CLI run says, as far as nightshift cares.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct GeminiSummary {
    /// The input was `--output-format json` (one pretty-printed object), not `stream-json`.
    pub json_format: bool,
    /// A `result` line (stream-json) or a top-level object (json) was seen; none means the
    /// CLI died before the end.
    pub saw_result: bool,
    /// `result.status` is not `success` (fail closed when missing), or the json object has an
    /// `error`.
    pub is_error: bool,
    /// The last model turn's text (where the handoff block travels): the assistant text after
    /// the last tool event, or json's `response`. `None` when empty.
    pub final_message: Option<String>,
    /// From the final `stats`, summed over every model the run used (the router and utility
    /// calls included). `None` without stats or when they are unreadable.
    ///
    /// Mapping: Gemini's prompt count *includes* cached tokens, so `input` is
    /// `input_tokens - cached` (json: `prompt - cached + tool`), `cache_read` is `cached`,
    /// `cache_write` is 0 (implicit caching has no write charge). Its candidates count
    /// *excludes* thinking, which is billed as output: stream-json does not report thoughts
    /// separately, so `output` is `total_tokens - input_tokens` (= candidates + thoughts, plus
    /// tool-use prompt tokens, which only server-side tools such as search grounding produce);
    /// json's is `candidates + thoughts`. The four buckets add up to `total_tokens`, without
    /// double counting.
    pub usage: Option<Usage>,
    /// `init.session_id` (json: `session_id`).
    pub session_id: Option<String>,
    /// `init.model`, the model asked for (json: the model with the `main` role in `stats`).
    pub model: Option<String>,
    /// `stats.duration_ms` (stream-json only).
    pub duration_ms: Option<u64>,
    /// `tool_use` events (json: `stats.tools.totalCalls`).
    pub tool_calls: u32,
    /// `tool_result` events with `status: error` (json: `stats.tools.totalFail`).
    pub tool_errors: u32,
    /// Refused tool calls: `tool_result` errors of type `policy_violation` (Plan Mode, policy
    /// rules). The json format cannot tell them from other tool failures: 0 there.
    pub permission_denials: u32,
    /// Messages of non-fatal `error` events (loop detected, empty response, …) and json's
    /// `warnings`.
    pub warnings: Vec<String>,
    /// The fatal error the run ended with.
    pub error: Option<GeminiError>,
    /// Lines skipped because they were not a JSON object (a cut-off last line counts here).
    pub garbage_lines: u32,
}

/// Reads a whole run's stdout, either format. Several result lines: the last one wins.
/// Invalid UTF-8 is decoded lossily.
///
/// ```
/// use nightshift::agent::gemini::parse_stream;
/// let s = parse_stream(br#"{"type":"message","role":"assistant","content":"hi","delta":true}
/// {"type":"result","status":"success","stats":{"total_tokens":12,"input_tokens":10,"output_tokens":1,"cached":4}}"#);
/// assert!(s.saw_result && !s.is_error);
/// assert_eq!(s.final_message.as_deref(), Some("hi"));
/// assert_eq!(s.usage.map(|u| (u.input, u.cache_read, u.output)), Some((6, 4, 2)));
/// ```
#[must_use]
pub fn parse_stream(bytes: &[u8]) -> GeminiSummary {
    if let Some(object) = json_object(bytes) {
        return parse_json_object(&object);
    }
    let mut acc = Accumulator::default();
    let garbage = for_each_object(bytes, |line| acc.line(line));
    acc.finish(garbage)
}

/// The object of `--output-format json`: from a line that is exactly `{` through the next line
/// that is exactly `}` (stream-json lines are compact and never look like that). Works on
/// stderr too, where json-format errors go after other messages.
fn json_object(bytes: &[u8]) -> Option<Map<String, Value>> {
    let text = String::from_utf8_lossy(bytes);
    let mut start = None;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_end();
        if start.is_none() && trimmed == "{" {
            start = Some(offset);
        } else if let (Some(s), "}") = (start, trimmed) {
            let candidate = text.get(s..offset + line.len())?;
            match serde_json::from_str::<Value>(candidate) {
                Ok(Value::Object(o)) if o.get("type").is_none() => return Some(o),
                _ => start = None,
            }
        }
        offset += line.len();
    }
    None
}

fn parse_json_object(object: &Map<String, Value>) -> GeminiSummary {
    let stats = object.get("stats").and_then(Value::as_object);
    let tools = stats
        .and_then(|s| s.get("tools"))
        .and_then(Value::as_object);
    let count = |key: &str| {
        tools
            .and_then(|t| u64_field(t, key))
            .map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX))
    };
    let models = stats
        .and_then(|s| s.get("models"))
        .and_then(Value::as_object);
    let model = models.and_then(|m| {
        m.iter()
            .find(|(_, v)| v.get("roles").and_then(|r| r.get("main")).is_some())
            .or_else(|| m.iter().next())
            .map(|(k, _)| k.clone())
    });
    let error = object
        .get("error")
        .and_then(Value::as_object)
        .map(read_error);
    GeminiSummary {
        json_format: true,
        saw_result: true,
        is_error: error.is_some() || object.get("response").is_none(),
        final_message: str_field(object, "response").filter(|r| !r.is_empty()),
        usage: models.and_then(json_usage),
        session_id: str_field(object, "session_id"),
        model,
        duration_ms: None,
        tool_calls: count("totalCalls"),
        tool_errors: count("totalFail"),
        permission_denials: 0,
        warnings: object
            .get("warnings")
            .and_then(Value::as_array)
            .map(|w| {
                w.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default(),
        error,
        garbage_lines: 0,
    }
}

/// json's per-model `tokens {prompt, candidates, total, cached, thoughts, tool}`, summed.
/// `prompt` and `candidates` are required (else the usage is unknown, not zero).
fn json_usage(models: &Map<String, Value>) -> Option<Usage> {
    let mut usage = Usage::default();
    for model in models.values() {
        let tokens = model.get("tokens").and_then(Value::as_object)?;
        let prompt = u64_field(tokens, "prompt")?;
        let candidates = u64_field(tokens, "candidates")?;
        let cached = u64_field(tokens, "cached").unwrap_or(0).min(prompt);
        let thoughts = u64_field(tokens, "thoughts").unwrap_or(0);
        let tool = u64_field(tokens, "tool").unwrap_or(0);
        usage.input = usage.input.saturating_add(prompt - cached + tool);
        usage.cache_read = usage.cache_read.saturating_add(cached);
        usage.output = usage
            .output
            .saturating_add(candidates.saturating_add(thoughts));
    }
    Some(usage)
}

/// stream-json's `stats {total_tokens, input_tokens, output_tokens, cached}`; `input_tokens`
/// and `output_tokens` are required.
fn stream_usage(stats: &Map<String, Value>) -> Option<Usage> {
    let prompt = u64_field(stats, "input_tokens")?;
    let candidates = u64_field(stats, "output_tokens")?;
    let cached = u64_field(stats, "cached").unwrap_or(0).min(prompt);
    let total = u64_field(stats, "total_tokens").unwrap_or(0);
    let hidden = total.saturating_sub(prompt.saturating_add(candidates));
    Some(Usage {
        input: prompt - cached,
        output: candidates.saturating_add(hidden),
        cache_read: cached,
        cache_write: 0,
    })
}

#[derive(Debug, Default)]
struct Accumulator {
    summary: GeminiSummary,
    /// Assistant text since the last tool event.
    text: String,
    result: Option<ResultLine>,
}

#[derive(Debug)]
struct ResultLine {
    is_error: bool,
    usage: Option<Usage>,
    duration_ms: Option<u64>,
    error: Option<GeminiError>,
}

impl Accumulator {
    fn line(&mut self, object: &Map<String, Value>) {
        let s = &mut self.summary;
        match object.get("type").and_then(Value::as_str) {
            Some("init") => {
                s.session_id = str_field(object, "session_id");
                s.model = str_field(object, "model");
            }
            Some("message") if object.get("role").and_then(Value::as_str) == Some("assistant") => {
                let content = object.get("content").and_then(Value::as_str).unwrap_or("");
                if object.get("delta").and_then(Value::as_bool) != Some(true) {
                    self.text.clear();
                }
                self.text.push_str(content);
            }
            Some("tool_use") => {
                s.tool_calls = s.tool_calls.saturating_add(1);
                self.text.clear();
            }
            Some("tool_result") => {
                self.text.clear();
                if object.get("status").and_then(Value::as_str) == Some("error") {
                    s.tool_errors = s.tool_errors.saturating_add(1);
                    let kind = object
                        .get("error")
                        .and_then(|e| e.get("type"))
                        .and_then(Value::as_str);
                    if kind == Some("policy_violation") {
                        s.permission_denials = s.permission_denials.saturating_add(1);
                    }
                }
            }
            Some("error") => {
                if let Some(m) = str_field(object, "message") {
                    s.warnings.push(m);
                }
            }
            Some("result") => {
                let stats = object.get("stats").and_then(Value::as_object);
                self.result = Some(ResultLine {
                    is_error: object.get("status").and_then(Value::as_str) != Some("success"),
                    usage: stats.and_then(stream_usage),
                    duration_ms: stats.and_then(|s| u64_field(s, "duration_ms")),
                    error: object
                        .get("error")
                        .and_then(Value::as_object)
                        .map(read_error),
                });
            }
            _ => {}
        }
    }

    fn finish(self, garbage_lines: u32) -> GeminiSummary {
        let mut s = self.summary;
        s.garbage_lines = garbage_lines;
        if let Some(r) = self.result {
            s.saw_result = true;
            s.is_error = r.is_error;
            s.usage = r.usage;
            s.duration_ms = r.duration_ms;
            s.error = r.error;
            s.final_message = Some(self.text).filter(|t| !t.is_empty());
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WORKER: &str =
        include_str!("../../../tests/fixtures/agent-cli-output/gemini-worker.stdout.jsonl");
    const WORKER_JSON: &str =
        include_str!("../../../tests/fixtures/agent-cli-output/gemini-worker.stdout.json");
    const VERIFIER: &str =
        include_str!("../../../tests/fixtures/agent-cli-output/gemini-verifier.stdout.jsonl");
    const QUOTA_429: &str =
        include_str!("../../../tests/fixtures/agent-cli-output/gemini-quota-429.stdout.jsonl");
    const RETRY_429: &str =
        include_str!("../../../tests/fixtures/agent-cli-output/gemini-retry-429.stdout.jsonl");

    fn usage(input: u64, output: u64, cache_read: u64) -> Option<Usage> {
        Some(Usage {
            input,
            output,
            cache_read,
            cache_write: 0,
        })
    }

    #[test]
    fn worker_fixture() {
        let s = parse_stream(WORKER.as_bytes());
        assert!(s.saw_result && !s.is_error && !s.json_format);
        assert_eq!(s.error, None);
        // stats: total 37583, input_tokens 37031 (of which cached 24542), output_tokens 184;
        // the 368 thinking tokens are only in the total.
        assert_eq!(s.usage, usage(12489, 552, 24542));
        assert_eq!(s.usage.map(|u| u.total()), Some(37583));
        assert_eq!(
            s.session_id.as_deref(),
            Some("db0e503f-626e-45ca-b31d-b6be943ddaf8")
        );
        assert_eq!(s.model.as_deref(), Some("gemini-2.5-pro"));
        assert_eq!(s.duration_ms, Some(733));
        assert_eq!(
            (s.tool_calls, s.tool_errors, s.permission_denials),
            (2, 0, 0)
        );
        assert_eq!((s.garbage_lines, s.warnings.len()), (0, 0));
        // The three streamed pieces of the last turn, joined.
        let message = s.final_message.unwrap_or_default();
        assert!(
            message.starts_with("Done: wrote notes.md and shell.txt.\n\n```json\n{\"handoff\": {")
        );
        assert!(message.ends_with("\"shell.txt\"]}}\n```"));
    }

    #[test]
    fn worker_json_fixture() {
        let s = parse_stream(WORKER_JSON.as_bytes());
        assert!(s.json_format && s.saw_result && !s.is_error);
        // tokens: prompt 24542 (cached 12202), candidates 114, thoughts 228, total 24884.
        assert_eq!(s.usage, usage(12340, 342, 12202));
        assert_eq!(s.usage.map(|u| u.total()), Some(24884));
        assert_eq!(s.model.as_deref(), Some("gemini-2.5-pro"));
        assert_eq!(
            s.session_id.as_deref(),
            Some("50c6c62c-eb4d-421e-a59e-5721128325cc")
        );
        assert_eq!((s.tool_calls, s.tool_errors), (1, 0));
        assert!(
            s.final_message
                .is_some_and(|m| m.starts_with("Done: wrote") && m.ends_with("```"))
        );
    }

    #[test]
    fn verifier_fixture_counts_refusals() {
        let s = parse_stream(VERIFIER.as_bytes());
        assert!(s.saw_result && !s.is_error);
        // Five calls: read_file and git log ran; an absolute write failed the tool's own
        // plans-directory check (invalid_tool_params), a relative write and a command chain
        // were refused by policy.
        assert_eq!(
            (s.tool_calls, s.tool_errors, s.permission_denials),
            (5, 3, 2)
        );
        assert!(s.final_message.is_some_and(
            |m| m.starts_with("Review complete.") && m.contains("\"verdict\": \"pass\"")
        ));
        assert_eq!(s.usage.map(|u| u.cache_read), Some(48093));
    }

    #[test]
    fn daily_quota_fixture() {
        let s = parse_stream(QUOTA_429.as_bytes());
        assert!(s.saw_result && s.is_error);
        assert_eq!(s.final_message, None);
        let e = s.error.unwrap_or_default();
        assert_eq!(e.error_type, "unknown");
        assert!(
            e.message
                .starts_with("[API Error: You have exhausted your daily quota")
        );
        assert!(e.daily_quota);
        assert_eq!(e.http_status, Some(429));
        assert_eq!((e.api_status, e.reason, e.code), (None, None, None));
        assert_eq!(e.retry_after_secs, None);
        assert!(!e.connection_failed);
        // The turn that ran before the 429 keeps its usage.
        assert_eq!(s.usage, usage(12202, 168, 0));
        assert_eq!(s.tool_calls, 1);
    }

    #[test]
    fn rate_limit_fixture_has_retry_delay() {
        let s = parse_stream(RETRY_429.as_bytes());
        let e = s.error.unwrap_or_default();
        assert_eq!(e.http_status, Some(429));
        assert!(!e.daily_quota);
        // "Suggested retry after 1s." wins over the API's "Please retry in 1.5s.".
        assert_eq!(e.retry_after_secs, Some(1));
        assert_eq!(s.usage, Some(Usage::default()));
    }

    #[test]
    fn truncated_stream_has_no_result() {
        let cut = &WORKER.as_bytes()[..WORKER.len() - 100];
        let s = parse_stream(cut);
        assert!(!s.saw_result && !s.is_error);
        assert_eq!((s.usage, s.final_message), (None, None));
        assert_eq!(s.garbage_lines, 1);
        assert!(s.session_id.is_some() && s.model.is_some());
        assert_eq!(s.tool_calls, 2);
    }

    #[test]
    fn text_before_a_tool_call_is_not_the_final_message() {
        let stream = [
            r#"{"type":"message","role":"assistant","content":"Let me ","delta":true}"#,
            r#"{"type":"message","role":"assistant","content":"look.","delta":true}"#,
            r#"{"type":"tool_use","tool_name":"read_file","tool_id":"t1","parameters":{}}"#,
            r#"{"type":"message","role":"assistant","content":"still in the tool turn","delta":true}"#,
            r#"{"type":"tool_result","tool_id":"t1","status":"success"}"#,
            r#"{"type":"message","role":"assistant","content":"stale","delta":true}"#,
            r#"{"type":"message","role":"assistant","content":"Fin"}"#,
            r#"{"type":"message","role":"assistant","content":"al.","delta":true}"#,
            r#"{"type":"message","role":"user","content":"ignored"}"#,
            r#"{"type":"error","severity":"warning","message":"Loop detected, stopping execution"}"#,
            r#"{"type":"result","status":"success"}"#,
        ]
        .join("\n");
        let s = parse_stream(stream.as_bytes());
        assert_eq!(s.final_message.as_deref(), Some("Final."));
        assert_eq!(s.warnings, ["Loop detected, stopping execution"]);
        assert_eq!(s.usage, None);
    }

    #[test]
    fn last_result_wins_whole() {
        let stream = [
            r#"{"type":"result","status":"error","error":{"type":"unknown","message":"[API Error: x]"},"stats":{"input_tokens":1,"output_tokens":1}}"#,
            r#"{"type":"result","status":"success"}"#,
        ]
        .join("\n");
        let s = parse_stream(stream.as_bytes());
        assert!(!s.is_error);
        assert_eq!((s.error, s.usage), (None, None));
    }

    #[test]
    fn odd_fields_fail_closed() {
        let s = parse_stream(
            br#"{"type":"result","stats":{"input_tokens":"9","output_tokens":1,"cached":-1}}"#,
        );
        assert!(s.saw_result && s.is_error, "no status is an error");
        assert_eq!(s.usage, None);
        // More cached than prompt tokens, a total below the parts: clamped, never negative.
        let s = parse_stream(
            br#"{"type":"result","status":"success","stats":{"total_tokens":1,"input_tokens":5,"output_tokens":2,"cached":9}}"#,
        );
        assert_eq!(s.usage, usage(0, 2, 5));
        let s = parse_stream(br#"{"type":"result","status":"error","error":{"message":7}}"#);
        let e = s.error.unwrap_or_default();
        assert_eq!((e.error_type.as_str(), e.message.as_str()), ("unknown", ""));
    }

    #[test]
    fn garbage_is_counted_and_skipped() {
        let mut input = b"hello\n[1,2]\n\"str\"\n{\n\n   \n".to_vec();
        input.extend_from_slice(b"\xff\xfe not utf8\n");
        input.extend_from_slice(
            b"{\"type\":\"message\",\"role\":\"assistant\",\"content\":\"x\xffy\",\"delta\":true}\n",
        );
        input.extend_from_slice(b"{\"type\":\"result\",\"status\":\"success\"}\r\n{\"type\":");
        let s = parse_stream(&input);
        assert!(!s.json_format);
        assert_eq!(s.garbage_lines, 6);
        assert_eq!(s.final_message.as_deref(), Some("x\u{fffd}y"));
    }

    #[test]
    fn one_huge_line_is_fine() {
        let line = serde_json::json!({"type": "message", "role": "assistant",
            "content": "y".repeat(20_000_000), "delta": true});
        let input = format!("{line}\n{{\"type\":\"result\",\"status\":\"success\"}}\n");
        let s = parse_stream(input.as_bytes());
        assert_eq!(s.final_message.map(|m| m.len()), Some(20_000_000));
    }

    #[test]
    fn empty_input() {
        assert_eq!(parse_stream(b""), GeminiSummary::default());
    }
}
