//! A fatal Gemini CLI error as reported ([`GeminiError`]), read from the fixed shapes of its
//! message: the API's JSON error body inside `[API Error: …]` (status, `ErrorInfo.reason`,
//! `RetryInfo.retryDelay`), the CLI's fixed rate-limit suffixes, its daily-quota and
//! `fetch failed` texts, and the HTTP status behind an exit code ([`status_from_exit_code`]).
//! Never classifies (that is `classify`'s job), never fails: an unreadable field is `None`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::agent::jsonl::{str_field, u64_field};

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

pub(super) fn read_error(error: &Map<String, Value>) -> GeminiError {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::gemini::parse_stream;

    const AUTH_401: &str =
        include_str!("../../../tests/fixtures/agent-cli-output/gemini-auth-401.stdout.jsonl");
    const AUTH_400: &str =
        include_str!("../../../tests/fixtures/agent-cli-output/gemini-auth-400.stdout.jsonl");
    const FAIL_500: &str =
        include_str!("../../../tests/fixtures/agent-cli-output/gemini-fail-500.stdout.jsonl");
    const DOWN: &str =
        include_str!("../../../tests/fixtures/agent-cli-output/gemini-down.stdout.jsonl");

    /// What `--output-format json` printed to stderr for a daily-quota 429 (stdout was empty).
    const JSON_QUOTA_STDERR: &str = "YOLO mode is enabled. All tool calls will be automatically approved.\nError when talking to Gemini API Full report available at: /tmp/run/tmp/gemini-client-error-Turn.run-sendMessageStream-2026-11-22T17-56-55-292Z.json TerminalQuotaError: You have exhausted your daily quota on this model.\n  cause: { code: 429, message: 'quota', details: [ [Object] ] },\n  retryDelayMs: undefined,\n  reason: undefined,\n  status: 429\n}\n{\n  \"session_id\": \"c1b8d556-6be6-4107-933c-a85ea344a674\",\n  \"error\": {\n    \"type\": \"Error\",\n    \"message\": \"You have exhausted your daily quota on this model.\",\n    \"code\": 429\n  }\n}\n";

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
}
