//! A fake Anthropic Messages API for the real Claude Code CLI (observed on 2.1.330).
//!
//! The CLI's main conversation is a series of `POST /v1/messages?beta=true` requests with
//! `"stream": true` and a non-empty `tools` list; each one is answered with the next scripted
//! [`Turn`] as server-sent events shaped like the real API's (message_start, ping,
//! content_block_*, message_delta with `stop_reason` and usage, message_stop). Anything else
//! the CLI may ask is answered without consuming a turn: a streaming request without tools or
//! a non-streaming `/v1/messages` (side queries, quota probes) gets a short text reply,
//! `/v1/messages/count_tokens` an estimate, `HEAD` anything (the `/api/hello` connectivity
//! check) and `/api/…` a 200, and other paths the API's 404 envelope. With [`FakeAnthropic::env`]
//! 2.1.330 in `-p` mode sends nothing but the main conversation.
//!
//! Usage is realistic: the prompt size is estimated from the request body (bytes / 4) and
//! split, as prompt caching does, into `cache_read_input_tokens` (the part already seen by the
//! previous request), `cache_creation_input_tokens` and a small uncached `input_tokens`;
//! `output_tokens` follows the length of the reply. The CLI therefore reports non-zero
//! `usage` and `total_cost_usd` in its `result` line.
//!
//! When the script runs out, a trailing `Error`/`Hangup` turn repeats (an outage stays down
//! through the CLI's retries); otherwise further turns are a plain `end_turn` text.

#![expect(
    dead_code,
    reason = "helpers for the end-to-end tests, not all used here"
)]

use std::sync::Mutex;

use serde_json::{Value, json};

use super::conversation::{Conversation, Fake, HEX, env_vars, random_id, split_chunks};
use super::http::{Request, Response};

/// The API key the fake hands the CLI (any value works; the fake does not check it).
pub const API_KEY: &str = "sk-ant-api03-fake-nightshift-test-key";
/// An OAuth token for [`FakeAnthropic::env_subscriber`] (the CLI then acts as a signed-in
/// Pro/Max subscriber: it parses `anthropic-ratelimit-unified-*` headers on a 429).
pub const OAUTH_TOKEN: &str = "sk-ant-oat01-fake-nightshift-test-token";

/// One scripted answer to a main-conversation request.
#[derive(Debug, Clone)]
pub enum Turn {
    /// A `tool_use` of the CLI's Write tool, input `{"file_path": cwd + "/" + path, "content"}`
    /// (the cwd is read from the request's prompt, "Primary working directory: …";
    /// an absolute `path` is used as is).
    Write { path: String, content: String },
    /// A `tool_use` of the CLI's Bash tool, input `{"command", "description"}`.
    Bash { command: String },
    /// `stop_reason: end_turn` with this text.
    Final(String),
    /// An HTTP error answer (a `request-id` header is added unless given).
    Error {
        status: u16,
        headers: Vec<(String, String)>,
        body: serde_json::Value,
    },
    /// Close the connection without answering.
    Hangup,
}

impl Turn {
    /// The 429 api.anthropic.com sends a subscriber whose 5-hour usage limit is used up, resetting
    /// at `reset_unix` (Unix seconds). With [`FakeAnthropic::env_subscriber`] the CLI turns it into
    /// a `rate_limit_event` and "You've hit your 5-hour limit · resets …"; with an API key into
    /// "API Error: Request rejected (429) · …". Either way it does not retry.
    pub fn usage_limit(reset_unix: i64) -> Turn {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let reset = reset_unix.to_string();
        let h = |k: &str, v: &str| (k.to_owned(), v.to_owned());
        Turn::Error {
            status: 429,
            headers: vec![
                h("retry-after", &(reset_unix - now).max(1).to_string()),
                h("anthropic-ratelimit-unified-status", "rejected"),
                h("anthropic-ratelimit-unified-reset", &reset),
                h(
                    "anthropic-ratelimit-unified-representative-claim",
                    "five_hour",
                ),
                h("anthropic-ratelimit-unified-5h-status", "rejected"),
                h("anthropic-ratelimit-unified-5h-reset", &reset),
                h("anthropic-ratelimit-unified-5h-utilization", "1.0"),
                h("anthropic-ratelimit-unified-fallback", "unavailable"),
                h("anthropic-ratelimit-unified-overage-status", "rejected"),
                h(
                    "anthropic-ratelimit-unified-overage-disabled-reason",
                    "org_level_disabled",
                ),
            ],
            body: json!({"type": "error", "error": {"type": "rate_limit_error",
                "message": "This request would exceed your account's rate limit. Please try again later."}}),
        }
    }

    /// A plain API throttle: 429 `rate_limit_error` with `retry-after: SECS` (the CLI waits that
    /// long and retries when it is short; a long one ends the run at once).
    pub fn rate_limited(retry_after_secs: u64) -> Turn {
        Turn::Error {
            status: 429,
            headers: vec![("retry-after".into(), retry_after_secs.to_string())],
            body: json!({"type": "error", "error": {"type": "rate_limit_error",
                "message": "This request would exceed the rate limit for your organization of 50 requests per minute. Please try again later."}}),
        }
    }

    /// The real API's answer to a bad API key.
    pub fn auth_failed() -> Turn {
        Turn::Error {
            status: 401,
            headers: vec![],
            body: json!({"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}}),
        }
    }

    /// A 5xx `api_error`.
    pub fn server_error(status: u16) -> Turn {
        Turn::Error {
            status,
            headers: vec![],
            body: json!({"type": "error", "error": {"type": "api_error", "message": "Internal server error"}}),
        }
    }
}

/// The fake Anthropic Messages API; see the module docs.
pub type FakeAnthropic = Fake<Turn>;

impl Fake<Turn> {
    pub fn start(turns: Vec<Turn>) -> Self {
        Self::serve(turns, is_main, handle)
    }

    /// Everything the CLI needs to talk to this fake with an API key and to make no other
    /// connection (no telemetry, error reporting, auto-update, `/api/hello` check or DNS);
    /// HOME, CLAUDE_CONFIG_DIR (and CLAUDE_CODE_TMPDIR, CLAUDE_CODE_MAX_RETRIES) are the
    /// caller's.
    pub fn env(&self) -> Vec<(String, String)> {
        Self::env_for(&self.base_url(), ("ANTHROPIC_API_KEY", API_KEY))
    }

    /// Like [`env`](Self::env) but authenticated as a claude.ai subscriber
    /// (`CLAUDE_CODE_OAUTH_TOKEN` instead of `ANTHROPIC_API_KEY`): the only way to see how the
    /// CLI reports a subscription usage limit and its reset time.
    pub fn env_subscriber(&self) -> Vec<(String, String)> {
        Self::env_for(&self.base_url(), ("CLAUDE_CODE_OAUTH_TOKEN", OAUTH_TOKEN))
    }

    /// The environment for a base URL of your choice (e.g. one with no listener).
    pub fn env_for(base_url: &str, auth: (&str, &str)) -> Vec<(String, String)> {
        env_vars(&[
            ("ANTHROPIC_BASE_URL", base_url),
            auth,
            ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1"),
            ("DISABLE_TELEMETRY", "1"),
            ("DISABLE_AUTOUPDATER", "1"),
            ("DISABLE_ERROR_REPORTING", "1"),
        ])
    }
}

fn is_messages(req: &Request) -> bool {
    let path = req.path.split('?').next().unwrap_or("");
    req.method == "POST" && path == "/v1/messages"
}

fn is_main(req: &Request) -> bool {
    if !is_messages(req) {
        return false;
    }
    let body = req.json();
    body["stream"] == json!(true) && body["tools"].as_array().is_some_and(|t| !t.is_empty())
}

fn handle(state: &Mutex<Conversation<Turn>>, req: &Request) -> Response {
    let path = req.path.split('?').next().unwrap_or("");
    if req.method == "HEAD" {
        return Response::Empty {
            status: 200,
            headers: vec![],
        };
    }
    if path == "/v1/messages/count_tokens" {
        return Response::Json {
            status: 200,
            headers: vec![],
            body: json!({"input_tokens": (req.body.len() / 4).max(1)}),
        };
    }
    if is_main(req) {
        let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
        let (_, turn) = st.script.next(is_outage, || {
            Turn::Final("(fake Anthropic API: no more scripted turns)".into())
        });
        let body = req.json();
        let prompt = (req.body.len() as u64 / 4).max(100);
        let cached = st.prev_prompt_tokens.min(prompt);
        if !matches!(turn, Turn::Error { .. } | Turn::Hangup) {
            st.prev_prompt_tokens = prompt;
        }
        drop(st);
        return answer(&turn, &body, prompt, cached);
    }
    if is_messages(req) {
        let body = req.json();
        let prompt = (req.body.len() as u64 / 4).max(10);
        let text = Turn::Final("OK".into());
        if body["stream"] == json!(true) {
            return answer(&text, &body, prompt, 0);
        }
        return Response::Json {
            status: 200,
            headers: vec![("request-id".into(), format!("req_{}", random_id(24, HEX)))],
            body: json!({
                "id": format!("msg_{}", random_id(24, HEX)), "type": "message", "role": "assistant",
                "model": body["model"].as_str().unwrap_or("claude-sonnet-4-5"),
                "content": [{"type": "text", "text": "OK"}],
                "stop_reason": "end_turn", "stop_sequence": null,
                "usage": {"input_tokens": prompt, "output_tokens": 1,
                          "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0},
            }),
        };
    }
    if path.starts_with("/api/") {
        return Response::Json {
            status: 200,
            headers: vec![],
            body: json!({}),
        };
    }
    Response::Json {
        status: 404,
        headers: vec![],
        body: json!({"type": "error", "error": {"type": "not_found_error", "message": format!("Not found: {path}")}}),
    }
}

/// The cwd the CLI announces in its prompt ("Primary working directory: …", in the system
/// prompt for some models and in the first user message for others).
fn cwd_of(body: &Value) -> Option<String> {
    const MARKER: &str = "Primary working directory: ";
    match body {
        Value::String(t) => {
            let rest = &t[t.find(MARKER)? + MARKER.len()..];
            Some(rest.lines().next()?.trim().to_owned())
        }
        Value::Array(a) => a.iter().find_map(cwd_of),
        Value::Object(o) => ["system", "messages", "content", "text"]
            .iter()
            .find_map(|k| cwd_of(o.get(*k)?)),
        _ => None,
    }
}

fn answer(turn: &Turn, req: &Value, prompt: u64, cached: u64) -> Response {
    let request_id = format!("req_{}", random_id(24, HEX));
    let (block, stop_reason, out_chars) = match turn {
        Turn::Hangup => return Response::Hangup,
        Turn::Error {
            status,
            headers,
            body,
        } => {
            let mut headers = headers.clone();
            if !headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("request-id"))
            {
                headers.push(("request-id".into(), request_id));
            }
            return Response::Json {
                status: *status,
                headers,
                body: body.clone(),
            };
        }
        Turn::Final(text) => (
            json!({"type": "text", "text": text}),
            "end_turn",
            text.len(),
        ),
        Turn::Write { path, content } => {
            let file_path = if path.starts_with('/') {
                path.clone()
            } else {
                match cwd_of(req) {
                    Some(cwd) => format!("{}/{}", cwd.trim_end_matches('/'), path),
                    None => path.clone(),
                }
            };
            let input = json!({"file_path": file_path, "content": content});
            let n = input.to_string().len();
            (tool_use("Write", input), "tool_use", n)
        }
        Turn::Bash { command } => {
            let input = json!({"command": command, "description": "Run a shell command"});
            let n = input.to_string().len();
            (tool_use("Bash", input), "tool_use", n)
        }
    };
    let model = req["model"].as_str().unwrap_or("claude-sonnet-4-5");
    let uncached = prompt - cached;
    let input_tokens = uncached.clamp(1, 8);
    let creation = uncached.saturating_sub(input_tokens);
    let output_tokens =
        (out_chars as u64 / 4).max(1) + if stop_reason == "tool_use" { 20 } else { 0 };
    let mut events: Vec<(Option<String>, String)> = Vec::new();
    // Written by hand to keep the real API's key order (serde_json sorts keys), which the CLI
    // passes through to its `assistant` events.
    events.push((
        Some("message_start".into()),
        format!(
            r#"{{"type":"message_start","message":{{"id":"msg_{}","type":"message","role":"assistant","model":{},"content":[],"stop_reason":null,"stop_sequence":null,"usage":{{"input_tokens":{input_tokens},"cache_creation_input_tokens":{creation},"cache_read_input_tokens":{cached},"output_tokens":1,"service_tier":"standard"}}}}}}"#,
            random_id(24, HEX),
            Value::from(model)
        ),
    ));
    ev(&mut events, "ping", json!({"type": "ping"}));
    match block["type"].as_str() {
        Some("text") => {
            let text = block["text"].as_str().unwrap_or("");
            ev(
                &mut events,
                "content_block_start",
                json!({"type": "content_block_start", "index": 0,
                "content_block": {"type": "text", "text": ""}}),
            );
            for chunk in split_chunks(text, 3) {
                ev(
                    &mut events,
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": 0,
                    "delta": {"type": "text_delta", "text": chunk}}),
                );
            }
        }
        _ => {
            // By hand, in the real API's key order (the CLI keeps the block object).
            events.push((
                Some("content_block_start".into()),
                format!(
                    r#"{{"type":"content_block_start","index":0,"content_block":{{"type":"tool_use","id":{},"name":{},"input":{{}}}}}}"#,
                    block["id"], block["name"]
                ),
            ));
            let input = block["input"].to_string();
            for chunk in split_chunks(&input, 2) {
                ev(
                    &mut events,
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": 0,
                    "delta": {"type": "input_json_delta", "partial_json": chunk}}),
                );
            }
        }
    }
    ev(
        &mut events,
        "content_block_stop",
        json!({"type": "content_block_stop", "index": 0}),
    );
    ev(
        &mut events,
        "message_delta",
        json!({"type": "message_delta",
        "delta": {"stop_reason": stop_reason, "stop_sequence": null},
        "usage": {"input_tokens": input_tokens, "cache_creation_input_tokens": creation,
                  "cache_read_input_tokens": cached, "output_tokens": output_tokens}}),
    );
    ev(&mut events, "message_stop", json!({"type": "message_stop"}));
    Response::SseWith {
        headers: vec![("request-id".into(), request_id)],
        events,
    }
}

fn ev(events: &mut Vec<(Option<String>, String)>, name: &str, data: Value) {
    events.push((Some(name.to_owned()), data.to_string()));
}

fn tool_use(name: &str, input: Value) -> Value {
    json!({"type": "tool_use", "id": format!("toolu_{}", random_id(24, HEX)), "name": name, "input": input})
}

fn is_outage(t: &Turn) -> bool {
    matches!(t, Turn::Error { .. } | Turn::Hangup)
}
