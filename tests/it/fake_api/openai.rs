//! A fake OpenAI Responses API (`POST /v1/responses`, server-sent events) for the real Codex
//! CLI. The main conversation's requests are answered with scripted [`Turn`]s, in order: a
//! tool call codex executes (`exec_command` → a `command_execution` item, `apply_patch` → a
//! `file_change` item), a final assistant message, an HTTP error or a hang-up. Anything else
//! is logged and answered without consuming a turn.
//!
//! Observed with codex-cli 0.169.0 (API-key provider, `wire_api = "responses"`): it sends
//! only `POST /v1/responses` (`stream: true`, `Authorization: Bearer <key>`, uncompressed JSON
//! body) — no `/v1/models`, no other host. Its tools are `exec_command` (function, `{"cmd"}`),
//! `write_stdin`, `apply_patch` (a *custom* freeform tool: the patch text is the input),
//! `view_image`, goal tools, `tool_search`, `web_search`. After a tool call it sends the next
//! request with the `function_call_output` / `custom_tool_call_output` appended to `input`.
//! `turn.completed.usage` in its JSONL is the sum over all requests of the turn:
//! `input_tokens`, `cached_input_tokens` (= `input_tokens_details.cached_tokens`),
//! `output_tokens`, `reasoning_output_tokens` (= `output_tokens_details.reasoning_tokens`).

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::conversation::Script;
use super::http::{Handler, Request, Response, Server};

/// The `model_providers.<id>` codex is pointed at.
pub const PROVIDER: &str = "nightshift_fake";
/// The env var codex reads the API key from (`env_key`), and the key the fake expects.
pub const KEY_VAR: &str = "NIGHTSHIFT_FAKE_OPENAI_KEY";
pub const KEY: &str = "sk-nightshift-fake";
/// A slug this codex version knows (`codex debug models`); unknown slugs get warnings.
pub const MODEL: &str = "gpt-5.5";

/// Usage reported by every scripted response (codex sums them per turn).
pub const USAGE: Usage = Usage {
    input: 1200,
    cached: 200,
    output: 60,
    reasoning: 10,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub input: u64,
    pub cached: u64,
    pub output: u64,
    pub reasoning: u64,
}

/// One answer to one main-conversation request. Each request consumes one turn; once the
/// script is used up, a trailing `Error`/`Hangup` is repeated (so codex's retries see the same
/// failure), anything else is followed by a plain final message.
#[derive(Debug, Clone)]
pub enum Turn {
    /// An `exec_command` function call: codex runs `/bin/bash -lc COMMAND` in its sandbox and
    /// reports a `command_execution` item (not when the sandbox denied it — see the tests).
    Shell { command: String },
    /// An `apply_patch` custom tool call (`*** Begin Patch` … `*** End Patch`, paths relative to
    /// the working directory): a `file_change` item.
    ApplyPatch { patch: String },
    /// An assistant message: an `agent_message` item, the final one of the run if last.
    Final(String),
    /// An HTTP error with a JSON body.
    Error {
        status: u16,
        headers: Vec<(String, String)>,
        body: Value,
    },
    /// Read the request, close the connection without answering.
    Hangup,
}

impl Turn {
    pub fn shell(command: &str) -> Self {
        Turn::Shell {
            command: command.to_owned(),
        }
    }

    /// A patch adding one file.
    pub fn add_file(path: &str, contents: &str) -> Self {
        let mut patch = format!("*** Begin Patch\n*** Add File: {path}\n");
        for line in contents.lines() {
            patch.push_str(&format!("+{line}\n"));
        }
        patch.push_str("*** End Patch\n");
        Turn::ApplyPatch { patch }
    }

    /// The 429 the ChatGPT Codex backend sends when a plan's usage limit is reached, as seen
    /// in the wild (headers and body). Codex does not retry it.
    pub fn usage_limit(resets_at: i64) -> Self {
        let now = unix_now();
        let in_secs = (resets_at - now).max(0).to_string();
        let at = resets_at.to_string();
        let headers = [
            ("x-codex-active-limit", "codex"),
            ("x-codex-plan-type", "plus"),
            ("x-codex-primary-used-percent", "100"),
            ("x-codex-primary-window-minutes", "300"),
            ("x-codex-primary-reset-after-seconds", &in_secs),
            ("x-codex-primary-reset-at", &at),
            ("x-codex-primary-over-secondary-limit-percent", "0"),
            ("x-codex-secondary-used-percent", "41"),
            ("x-codex-secondary-window-minutes", "10080"),
            ("x-codex-credits-has-credits", "False"),
            ("x-codex-credits-balance", "0"),
            ("x-codex-credits-unlimited", "False"),
            ("x-oai-request-id", "req_fake_usage_limit"),
        ];
        Turn::Error {
            status: 429,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: json!({"error": {
                "type": "usage_limit_reached",
                "message": "The usage limit has been reached",
                "plan_type": "plus",
                "resets_at": resets_at,
                "eligible_promo": null,
                "resets_in_seconds": resets_at - now,
            }}),
        }
    }

    /// The OpenAI API's answer to a wrong API key.
    pub fn unauthorized() -> Self {
        Turn::Error {
            status: 401,
            headers: vec![],
            body: json!({"error": {
                "message": "Incorrect API key provided: sk-nigh***********fake. You can find your API key at https://platform.openai.com/account/api-keys.",
                "type": "invalid_request_error",
                "param": null,
                "code": "invalid_api_key",
            }}),
        }
    }

    /// The OpenAI API's per-minute rate limit. Codex retries a 429 only when it carries
    /// `retry-after`, and then sleeps that long (uncapped) up to `stream_max_retries` times.
    pub fn rate_limited(retry_after_secs: Option<u64>) -> Self {
        let mut headers = vec![
            ("x-ratelimit-limit-requests".to_owned(), "500".to_owned()),
            ("x-ratelimit-remaining-requests".to_owned(), "0".to_owned()),
            (
                "x-ratelimit-reset-requests".to_owned(),
                format!("{}s", retry_after_secs.unwrap_or(20)),
            ),
        ];
        if let Some(s) = retry_after_secs {
            headers.push(("retry-after".to_owned(), s.to_string()));
        }
        Turn::Error {
            status: 429,
            headers,
            body: json!({"error": {
                "message": format!("Rate limit reached for {MODEL} in organization org-fake on requests per min (RPM): Limit 500, Used 500, Requested 1. Please try again in {}s.", retry_after_secs.unwrap_or(20)),
                "type": "requests",
                "param": null,
                "code": "rate_limit_exceeded",
            }}),
        }
    }
}

pub struct FakeOpenAi {
    pub server: Server,
    /// The requests that consumed a turn, in order (index = turn number).
    pub turn_requests: Arc<Mutex<Vec<Request>>>,
}

impl FakeOpenAi {
    pub fn start(turns: Vec<Turn>) -> Self {
        let script = Arc::new(Mutex::new(Script::new(turns)));
        let turn_requests = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&turn_requests);
        let handler: Handler = Arc::new(move |req: &Request| {
            if !is_main_request(req) {
                return aux_response(req);
            }
            let (n, turn) = {
                let mut s = script.lock().unwrap();
                s.next(
                    |t| matches!(t, Turn::Error { .. } | Turn::Hangup),
                    || Turn::Final("fake-openai: the script has no more turns".to_owned()),
                )
            };
            log.lock().unwrap().push(req.clone());
            respond(n, &turn)
        });
        Self {
            server: Server::start(handler),
            turn_requests,
        }
    }

    /// `http://127.0.0.1:PORT/v1`
    pub fn base_url(&self) -> String {
        format!("{}/v1", self.server.url())
    }

    /// Flags that point codex at this fake, fully offline, with retries bounded (one
    /// reconnect, one transport retry: a dead or failing server ends the run in seconds).
    /// Later `-c` flags override earlier ones, so callers can append other retry counts.
    pub fn codex_args(&self) -> Vec<String> {
        let p = format!("model_providers.{PROVIDER}");
        let mut args: Vec<String> = [
            "--disable",
            "unbounded_connection_retries",
            "--disable",
            "plugins",
            "--disable",
            "enable_request_compression",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for kv in [
            "analytics.enabled=false".to_owned(),
            format!("model_provider=\"{PROVIDER}\""),
            format!("{p}.name=\"nightshift fake\""),
            format!("{p}.base_url=\"{}\"", self.base_url()),
            format!("{p}.env_key=\"{KEY_VAR}\""),
            format!("{p}.wire_api=\"responses\""),
            format!("{p}.stream_max_retries=1"),
            format!("{p}.request_max_retries=1"),
            format!("model=\"{MODEL}\""),
        ] {
            args.push("-c".to_owned());
            args.push(kv);
        }
        args
    }

    /// Env vars codex needs for this fake besides HOME / CODEX_HOME / TMPDIR. `TZ=UTC`: codex
    /// prints a usage limit's reset time in local time ("try again at 6:38 PM").
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            (KEY_VAR.to_owned(), KEY.to_owned()),
            ("TZ".to_owned(), "UTC".to_owned()),
        ]
    }

    /// Every request received, main and auxiliary.
    pub fn requests(&self) -> Vec<Request> {
        self.server.requests()
    }

    pub fn turn_requests(&self) -> Vec<Request> {
        self.turn_requests
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    /// Requests that were not main-conversation turns.
    pub fn aux_requests(&self) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|r| !is_main_request(r))
            .collect()
    }

    /// Close the listening socket: from now on connections are refused (a server that is
    /// down).
    pub fn shut_down(&self) {
        self.server.shutdown();
    }
}

/// A main-conversation model request: `POST …/responses` whose turn metadata (if any) says
/// `request_kind: "turn"` (codex also labels e.g. compaction requests there).
fn is_main_request(req: &Request) -> bool {
    if req.method != "POST"
        || !req
            .path
            .split('?')
            .next()
            .unwrap_or("")
            .ends_with("/responses")
    {
        return false;
    }
    match req
        .header("x-codex-turn-metadata")
        .and_then(|m| serde_json::from_str::<Value>(m).ok())
    {
        Some(meta) => meta["request_kind"].as_str().is_none_or(|k| k == "turn"),
        None => true,
    }
}

fn aux_response(req: &Request) -> Response {
    let path = req.path.split('?').next().unwrap_or("");
    if req.method == "POST" && path.ends_with("/responses") {
        // Auxiliary model calls (never seen from 0.169.0 exec): a short answer.
        return Response::Sse {
            events: message_events(9999, "ok"),
        };
    }
    if req.method == "GET" && path.ends_with("/models") {
        return Response::Json {
            status: 200,
            headers: vec![],
            body: json!({"object": "list", "data": [{"id": MODEL, "object": "model", "created": 0, "owned_by": "openai"}]}),
        };
    }
    Response::Json {
        status: 404,
        headers: vec![],
        body: json!({"error": {"message": format!("fake-openai: no route {} {}", req.method, req.path), "type": "invalid_request_error", "code": null}}),
    }
}

fn respond(n: usize, turn: &Turn) -> Response {
    match turn {
        Turn::Error {
            status,
            headers,
            body,
        } => Response::Json {
            status: *status,
            headers: headers.clone(),
            body: body.clone(),
        },
        Turn::Hangup => Response::Hangup,
        Turn::Final(text) => Response::Sse {
            events: message_events(n, text),
        },
        Turn::Shell { command } => {
            let item = json!({
                "type": "function_call",
                "id": format!("fc_{n}"),
                "call_id": format!("call_{n}"),
                "name": "exec_command",
                "arguments": json!({"cmd": command}).to_string(),
                "status": "completed",
            });
            Response::Sse {
                events: item_events(n, item, None),
            }
        }
        Turn::ApplyPatch { patch } => {
            let item = json!({
                "type": "custom_tool_call",
                "id": format!("ctc_{n}"),
                "call_id": format!("call_{n}"),
                "name": "apply_patch",
                "input": patch,
                "status": "completed",
            });
            Response::Sse {
                events: item_events(n, item, None),
            }
        }
    }
}

fn message_events(n: usize, text: &str) -> Vec<(Option<String>, String)> {
    let item = json!({
        "type": "message",
        "id": format!("msg_{n}"),
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    });
    item_events(n, item, Some(text))
}

/// `response.created`, `response.output_item.added`, (`response.output_text.delta`),
/// `response.output_item.done`, `response.completed` with usage.
fn item_events(n: usize, item: Value, text: Option<&str>) -> Vec<(Option<String>, String)> {
    let id = format!("resp_{n}");
    let created = unix_now();
    let response = |status: &str, output: Value, usage: Value| {
        json!({"id": id, "object": "response", "created_at": created, "status": status,
               "model": MODEL, "output": output, "usage": usage})
    };
    let mut added = item.clone();
    if text.is_some() {
        added["content"] = json!([]);
        added["status"] = json!("in_progress");
    }
    let mut events = vec![
        json!({"type": "response.created", "sequence_number": 0, "response": response("in_progress", json!([]), Value::Null)}),
        json!({"type": "response.output_item.added", "sequence_number": 1, "output_index": 0, "item": added}),
    ];
    if let Some(text) = text {
        events.push(
            json!({"type": "response.output_text.delta", "sequence_number": 2, "output_index": 0,
                           "content_index": 0, "item_id": item["id"], "delta": text}),
        );
    }
    let u = USAGE;
    let usage = json!({
        "input_tokens": u.input,
        "input_tokens_details": {"cached_tokens": u.cached},
        "output_tokens": u.output,
        "output_tokens_details": {"reasoning_tokens": u.reasoning},
        "total_tokens": u.input + u.output,
    });
    events.push(json!({"type": "response.output_item.done", "sequence_number": 3, "output_index": 0, "item": item}));
    events.push(json!({"type": "response.completed", "sequence_number": 4,
                       "response": response("completed", json!([item]), usage)}));
    events
        .into_iter()
        .map(|e| (e["type"].as_str().map(str::to_owned), e.to_string()))
        .collect()
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
