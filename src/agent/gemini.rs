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
//! suffix `Please wait and try again later. …` when the status was 429. [`GeminiError`] reads
//! those fixed shapes; the exit code (HTTP status mod 256, see [`status_from_exit_code`]) says
//! the same. Never reads transcript prose, never fails: any line that is not a JSON object is
//! counted as garbage and skipped. Never spawns or reads files; callers hand in bytes.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::Usage;
use super::claude::{for_each_object, str_field, u64_field};

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

/// A fatal error as the CLI reports it, with what its fixed message shapes say.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct GeminiError {
    /// `error.type`: `unknown` for every API error in stream-json; the error class in json
    /// (`Error`, `FatalTurnLimitedError`, …).
    pub error_type: String,
    /// `error.message`, as printed.
    pub message: String,
    /// json only: `error.code`, the exit code the CLI chose (an HTTP status for API errors,
    /// 41/42/52/53/54/55/130 for its own fatal errors).
    pub code: Option<i64>,
    /// The HTTP status: the embedded API error's `code`, json's `code` when it is one, or 429
    /// when the message carries the CLI's fixed rate-limit suffix.
    pub http_status: Option<u16>,
    /// The embedded API error's `status`, e.g. `RESOURCE_EXHAUSTED`, `UNAUTHENTICATED`,
    /// `INVALID_ARGUMENT`, `PERMISSION_DENIED`.
    pub api_status: Option<String>,
    /// The embedded API error's `ErrorInfo.reason`, e.g. `API_KEY_INVALID`.
    pub reason: Option<String>,
    /// "You have exhausted your daily quota on this model." (a `QuotaFailure` naming a
    /// per-day quota; the CLI does not retry it and drops the API's retry delay).
    pub daily_quota: bool,
    /// Seconds to wait, rounded up, when the message says (`Suggested retry after 12s.`,
    /// `Please retry in 11.5s.`, or the embedded `RetryInfo.retryDelay`).
    pub retry_after_secs: Option<u64>,
    /// The API was not reachable: `fetch failed` (refused, reset, hung up, DNS).
    pub connection_failed: bool,
}

/// The suffixes the CLI appends to an API error whose status was 429 (gemini-api-key,
/// vertex-ai, and every other auth type).
const RATE_LIMIT_SUFFIXES: [&str; 3] = [
    "Please wait and try again later. To increase your limits, request a quota increase through AI Studio",
    "Please wait and try again later. To increase your limits, request a quota increase through Vertex",
    "Possible quota limitations in place or slow response times detected.",
];

/// The HTTP status behind an exit code: the CLI exits with an API error's status, which the
/// OS truncates to 8 bits (429 → 173, 401 → 145). Only the statuses the Gemini API sends are
/// mapped; the CLI's own codes (1, 41, 42, 44, 52, 53, 54, 55, 130) give `None`.
///
/// ```
/// use nightshift::agent::gemini::status_from_exit_code;
/// assert_eq!(status_from_exit_code(173), Some(429));
/// assert_eq!(status_from_exit_code(1), None);
/// ```
#[must_use]
pub fn status_from_exit_code(code: i32) -> Option<u16> {
    const STATUSES: [u16; 11] = [400, 401, 403, 404, 408, 429, 499, 500, 502, 503, 504];
    STATUSES
        .into_iter()
        .find(|s| i32::from(*s) & 0xff == code && code != 0)
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

fn read_error(error: &Map<String, Value>) -> GeminiError {
    let message = str_field(error, "message").unwrap_or_default();
    let code = error.get("code").and_then(Value::as_i64);
    let mut out = GeminiError {
        error_type: str_field(error, "type").unwrap_or_else(|| "unknown".to_owned()),
        code,
        daily_quota: message.contains("exhausted your daily quota"),
        connection_failed: message.contains("fetch failed"),
        retry_after_secs: retry_after(&message),
        ..GeminiError::default()
    };
    if let Some(api) = embedded_api_error(&message) {
        out.http_status = u64_field(&api, "code").and_then(|c| u16::try_from(c).ok());
        out.api_status = str_field(&api, "status");
        let details = api.get("details").and_then(Value::as_array);
        let detail = |kind: &str| {
            details.and_then(|d| {
                d.iter().find(|x| {
                    x.get("@type")
                        .and_then(Value::as_str)
                        .is_some_and(|t| t.ends_with(kind))
                })
            })
        };
        out.reason = detail("google.rpc.ErrorInfo")
            .and_then(|d| d.get("reason"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        if out.retry_after_secs.is_none() {
            out.retry_after_secs = detail("google.rpc.RetryInfo")
                .and_then(|d| d.get("retryDelay"))
                .and_then(Value::as_str)
                .and_then(duration_secs);
        }
    }
    if out.http_status.is_none() {
        out.http_status = code
            .filter(|c| (100..=599).contains(c))
            .and_then(|c| u16::try_from(c).ok())
            .or_else(|| {
                RATE_LIMIT_SUFFIXES
                    .iter()
                    .any(|s| message.contains(s))
                    .then_some(429)
            });
    }
    out.message = message;
    out
}

/// The API's `{"error": {…}}` body inside `[API Error: …]` (or a bare json-format message),
/// unwrapped once more when its message is itself such a body.
fn embedded_api_error(message: &str) -> Option<Map<String, Value>> {
    let start = message.find('{')?;
    let end = message.rfind('}')?;
    let Ok(Value::Object(mut body)) = serde_json::from_str::<Value>(message.get(start..=end)?)
    else {
        return None;
    };
    let Some(Value::Object(mut error)) = body.remove("error") else {
        return None;
    };
    if let Some(inner) = error
        .get("message")
        .and_then(Value::as_str)
        .and_then(embedded_api_error)
    {
        error = inner;
    }
    Some(error)
}

/// `Suggested retry after 12s.` or `Please retry in 11.5s.`, in whole seconds rounded up.
fn retry_after(message: &str) -> Option<u64> {
    ["Suggested retry after ", "Please retry in "]
        .iter()
        .find_map(|marker| {
            let rest = &message[message.find(marker)? + marker.len()..];
            let word = rest.split_whitespace().next()?;
            duration_secs(word.trim_end_matches(['.', ',', ']']))
        })
}

/// A protobuf duration (`39s`, `11.5s`, `500ms`) in whole seconds, rounded up.
fn duration_secs(text: &str) -> Option<u64> {
    let (number, scale) = match text.strip_suffix("ms") {
        Some(n) => (n, 1000.0),
        None => (text.strip_suffix('s')?, 1.0),
    };
    let value: f64 = number.parse().ok()?;
    if !(0.0..=1e12).contains(&value) {
        return None;
    }
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "bounded to 0..=1e12 above, so the cast cannot saturate"
    )]
    let secs = (value / scale).ceil() as u64;
    Some(secs)
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
        include_str!("../../tests/fixtures/agent-cli-output/gemini-worker.stdout.jsonl");
    const WORKER_JSON: &str =
        include_str!("../../tests/fixtures/agent-cli-output/gemini-worker.stdout.json");
    const VERIFIER: &str =
        include_str!("../../tests/fixtures/agent-cli-output/gemini-verifier.stdout.jsonl");
    const QUOTA_429: &str =
        include_str!("../../tests/fixtures/agent-cli-output/gemini-quota-429.stdout.jsonl");
    const RETRY_429: &str =
        include_str!("../../tests/fixtures/agent-cli-output/gemini-retry-429.stdout.jsonl");
    const AUTH_401: &str =
        include_str!("../../tests/fixtures/agent-cli-output/gemini-auth-401.stdout.jsonl");
    const AUTH_400: &str =
        include_str!("../../tests/fixtures/agent-cli-output/gemini-auth-400.stdout.jsonl");
    const FAIL_500: &str =
        include_str!("../../tests/fixtures/agent-cli-output/gemini-fail-500.stdout.jsonl");
    const DOWN: &str =
        include_str!("../../tests/fixtures/agent-cli-output/gemini-down.stdout.jsonl");

    /// What `--output-format json` printed to stderr for a daily-quota 429 (stdout was empty).
    const JSON_QUOTA_STDERR: &str = "YOLO mode is enabled. All tool calls will be automatically approved.\nError when talking to Gemini API Full report available at: /tmp/run/tmp/gemini-client-error-Turn.run-sendMessageStream-2026-11-22T17-56-55-292Z.json TerminalQuotaError: You have exhausted your daily quota on this model.\n  cause: { code: 429, message: 'quota', details: [ [Object] ] },\n  retryDelayMs: undefined,\n  reason: undefined,\n  status: 429\n}\n{\n  \"session_id\": \"c1b8d556-6be6-4107-933c-a85ea344a674\",\n  \"error\": {\n    \"type\": \"Error\",\n    \"message\": \"You have exhausted your daily quota on this model.\",\n    \"code\": 429\n  }\n}\n";

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
    fn auth_fixtures_carry_the_api_error() {
        let e = parse_stream(AUTH_401.as_bytes()).error.unwrap_or_default();
        assert_eq!(e.http_status, Some(401));
        assert_eq!(e.api_status.as_deref(), Some("UNAUTHENTICATED"));
        assert_eq!(e.reason.as_deref(), Some("ACCESS_TOKEN_TYPE_UNSUPPORTED"));
        let e = parse_stream(AUTH_400.as_bytes()).error.unwrap_or_default();
        assert_eq!(e.http_status, Some(400));
        assert_eq!(e.api_status.as_deref(), Some("INVALID_ARGUMENT"));
        assert_eq!(e.reason.as_deref(), Some("API_KEY_INVALID"));
        assert!(!e.daily_quota && !e.connection_failed);
    }

    #[test]
    fn server_error_and_down_fixtures() {
        let s = parse_stream(FAIL_500.as_bytes());
        assert!(s.is_error);
        let e = s.error.unwrap_or_default();
        assert_eq!(e.http_status, Some(500));
        assert_eq!(e.api_status.as_deref(), Some("INTERNAL"));
        let s = parse_stream(DOWN.as_bytes());
        let e = s.error.unwrap_or_default();
        assert!(e.connection_failed);
        assert_eq!(e.http_status, None);
        assert_eq!(
            e.message,
            "[API Error: exception TypeError: fetch failed sending request]"
        );
    }

    #[test]
    fn json_format_error_is_read_from_stderr() {
        let s = parse_stream(JSON_QUOTA_STDERR.as_bytes());
        assert!(s.json_format && s.saw_result && s.is_error);
        assert_eq!(s.usage, None);
        assert_eq!(
            s.session_id.as_deref(),
            Some("c1b8d556-6be6-4107-933c-a85ea344a674")
        );
        let e = s.error.unwrap_or_default();
        assert_eq!(e.error_type, "Error");
        assert_eq!(e.code, Some(429));
        assert_eq!(e.http_status, Some(429));
        assert!(e.daily_quota);
        // A CLI exit code is not an HTTP status.
        let s = parse_stream(
            b"{\n\"session_id\": \"s\",\n\"error\": {\"type\": \"FatalTurnLimitedError\", \"message\": \"Reached max session turns\", \"code\": 53}\n}\n",
        );
        let e = s.error.unwrap_or_default();
        assert_eq!((e.code, e.http_status), (Some(53), None));
    }

    #[test]
    fn exit_codes_map_back_to_statuses() {
        for (code, status) in [
            (144, Some(400)),
            (145, Some(401)),
            (147, Some(403)),
            (173, Some(429)),
            (244, Some(500)),
            (247, Some(503)),
            (0, None),
            (1, None),
            (41, None),
            (42, None),
            (53, None),
            (55, None),
            (130, None),
        ] {
            assert_eq!(status_from_exit_code(code), status, "exit {code}");
        }
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
    fn nested_api_error_is_unwrapped() {
        let inner = r#"{"error":{"code":429,"message":"inner","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"7.2s"}]}}"#;
        let outer =
            serde_json::json!({"error": {"code": 500, "message": inner, "status": "INTERNAL"}});
        let line = serde_json::json!({"type": "result", "status": "error",
            "error": {"type": "unknown", "message": format!("[API Error: {outer}]")}});
        let e = parse_stream(line.to_string().as_bytes())
            .error
            .unwrap_or_default();
        assert_eq!(e.http_status, Some(429));
        assert_eq!(e.api_status.as_deref(), Some("RESOURCE_EXHAUSTED"));
        assert_eq!(e.retry_after_secs, Some(8));
    }

    #[test]
    fn durations() {
        for (text, secs) in [
            ("39s", Some(39)),
            ("1.5s", Some(2)),
            ("500ms", Some(1)),
            ("0s", Some(0)),
            ("-1s", None),
            ("1e300s", None),
            ("NaNs", None),
            ("12", None),
            ("s", None),
        ] {
            assert_eq!(duration_secs(text), secs, "{text}");
        }
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
