//! A fake Gemini API (`generativelanguage.googleapis.com`, `v1beta`) for the real Gemini CLI
//! (observed on @google/gemini-cli 0.61.0, authenticated with an API key).
//!
//! With `-m MODEL` and [`FakeGemini::settings`] the CLI sends nothing but the main
//! conversation: `POST /v1beta/models/MODEL:streamGenerateContent?alt=sse` with the key in
//! `x-goog-api-key`, a JSON body with `contents`, `systemInstruction`, `generationConfig`
//! (`thinkingConfig.includeThoughts`) and a non-empty `tools[0].functionDeclarations` (which
//! tools depends on the approval mode: `write_file {file_path, content}`, `replace`,
//! `run_shell_command {command, description}` only in `yolo`, `read_file {file_path}`, …).
//! Each such request is answered with the next scripted [`Turn`] as server-sent events shaped
//! like the real API's stream: a thought part (`"thought": true`, which the CLI never shows),
//! then the answer's parts, the last chunk with `finishReason: STOP` and the full
//! `usageMetadata`. After a tool call the next request carries a `functionResponse` part.
//!
//! Anything else is answered without consuming a turn: a streaming request without tools
//! (e.g. history compression) gets a short text, `:generateContent` (the model router when no
//! `-m` is given, loop detection, web search) a JSON object built from the request's
//! `responseJsonSchema` or a short text, `:countTokens` an estimate, `GET /v1beta/models` a
//! list, anything else Google's 404 envelope.
//!
//! Usage is realistic: `promptTokenCount` is estimated from the request body (bytes / 4) and
//! *includes* `cachedContentTokenCount` (the part already seen by the previous request, as
//! implicit caching reports it; omitted when 0); `candidatesTokenCount` follows the length of
//! the answer and *excludes* `thoughtsTokenCount`; `totalTokenCount` is the sum of prompt,
//! candidates and thoughts — the real API's arithmetic.
//!
//! When the script runs out, a trailing `Error`/`Hangup` turn repeats (an outage stays down
//! through the CLI's retries); otherwise further turns are a plain text answer.

use std::sync::Mutex;

use serde_json::{Value, json};

use super::conversation::{Conversation, Fake, env_vars, random_id, split_chunks};
use super::http::{Request, Response};

/// The API key the fake hands the CLI (shaped like a real one; the fake does not check it).
pub const API_KEY: &str = "AIzaSyA-nightshift-fake-test-key-000000";
/// A model whose policy chain is a single model (no silent fallback to another one).
pub const MODEL: &str = "gemini-2.5-pro";

/// One scripted answer to a main-conversation request.
#[derive(Debug, Clone)]
pub enum Turn {
    /// A `functionCall` of the CLI's `write_file` tool, args `{"file_path", "content"}`; a
    /// relative `path` is made absolute with the workspace directory the CLI announces in its
    /// first message ("Workspace Directories: - …"), as real models do.
    WriteFile { path: String, content: String },
    /// A `functionCall` of `run_shell_command`, args `{"command", "description"}`.
    Shell { command: String },
    /// A `functionCall` of `read_file`, args `{"file_path"}` (made absolute like `WriteFile`).
    ReadFile { path: String },
    /// A `functionCall` of any tool with these args, as given.
    Call { name: String, args: Value },
    /// A text answer with `finishReason: STOP`: the end of the run.
    Final(String),
    /// An HTTP error answer (a JSON body, as the real API sends even to `alt=sse`).
    Error {
        status: u16,
        headers: Vec<(String, String)>,
        body: Value,
    },
    /// Close the connection without answering.
    Hangup,
}

/// Google's error envelope: `{"error": {"code", "message", "status", "details"}}`.
fn google_error(code: u16, status: &str, message: &str, details: Value) -> Value {
    let mut error = json!({"code": code, "message": message, "status": status});
    if details.as_array().is_some_and(|d| !d.is_empty()) {
        error["details"] = details;
    }
    json!({ "error": error })
}

const QUOTA_MESSAGE: &str = "You exceeded your current quota, please check your plan and billing details. For more information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits. To monitor your current usage, head to: https://ai.dev/usage?tab=rate-limit. ";

impl Turn {
    /// The 429 the real API sends when a model's requests-per-day quota is used up: a
    /// `QuotaFailure` whose `quotaId` names `PerDay`, and a `RetryInfo`. The CLI turns it into
    /// "You have exhausted your daily quota on this model." and does not retry (it drops the
    /// retry delay; the quota resets at midnight Pacific time).
    pub fn daily_quota(model: &str, limit: u32) -> Turn {
        let message = format!(
            "{QUOTA_MESSAGE}\n* Quota exceeded for metric: generativelanguage.googleapis.com/generate_content_free_tier_requests, limit: {limit}, model: {model}\nPlease retry in 39.971219471s."
        );
        Turn::Error {
            status: 429,
            headers: vec![],
            body: google_error(
                429,
                "RESOURCE_EXHAUSTED",
                &message,
                json!([
                    {"@type": "type.googleapis.com/google.rpc.Help", "links": [{
                        "description": "Learn more about Gemini API quotas",
                        "url": "https://ai.google.dev/gemini-api/docs/rate-limits"}]},
                    {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{
                        "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
                        "quotaId": "GenerateRequestsPerDayPerProjectPerModel-FreeTier",
                        "quotaDimensions": {"location": "global", "model": model},
                        "quotaValue": limit.to_string()}]},
                    {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "39s"}
                ]),
            ),
        }
    }

    /// A requests-per-minute 429 with `RetryInfo.retryDelay` `SECSs`: the CLI retries after
    /// max(5 s, SECS) (up to `general.maxAttempts` attempts; a delay over 300 s is terminal).
    pub fn rate_limited(model: &str, retry_secs: u64) -> Turn {
        let message = format!(
            "{QUOTA_MESSAGE}\n* Quota exceeded for metric: generativelanguage.googleapis.com/generate_content_free_tier_requests, limit: 5, model: {model}\nPlease retry in {retry_secs}.5s."
        );
        Turn::Error {
            status: 429,
            headers: vec![],
            body: google_error(
                429,
                "RESOURCE_EXHAUSTED",
                &message,
                json!([
                    {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{
                        "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
                        "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
                        "quotaDimensions": {"location": "global", "model": model},
                        "quotaValue": "5"}]},
                    {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": format!("{retry_secs}s")}
                ]),
            ),
        }
    }

    /// 401 `UNAUTHENTICATED` (bad or expired credentials on an OAuth-style route).
    pub fn unauthenticated() -> Turn {
        Turn::Error {
            status: 401,
            headers: vec![],
            body: google_error(
                401,
                "UNAUTHENTICATED",
                "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.",
                json!([{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "ACCESS_TOKEN_TYPE_UNSUPPORTED",
                    "metadata": {"service": "generativelanguage.googleapis.com",
                                 "method": "google.ai.generativelanguage.v1beta.GenerativeService.StreamGenerateContent"}}]),
            ),
        }
    }

    /// What the real API answers to a wrong API key: **400** `INVALID_ARGUMENT` with
    /// `ErrorInfo.reason` `API_KEY_INVALID` (not a 401).
    pub fn invalid_api_key() -> Turn {
        Turn::Error {
            status: 400,
            headers: vec![],
            body: google_error(
                400,
                "INVALID_ARGUMENT",
                "API key not valid. Please pass a valid API key.",
                json!([
                    {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
                     "domain": "googleapis.com",
                     "metadata": {"service": "generativelanguage.googleapis.com"}},
                    {"@type": "type.googleapis.com/google.rpc.LocalizedMessage", "locale": "en-US",
                     "message": "API key not valid. Please pass a valid API key."}
                ]),
            ),
        }
    }

    /// 403 `PERMISSION_DENIED` (e.g. a key whose project has the API disabled).
    pub fn permission_denied() -> Turn {
        Turn::Error {
            status: 403,
            headers: vec![],
            body: google_error(
                403,
                "PERMISSION_DENIED",
                "Generative Language API has not been used in project 123456789012 before or it is disabled. Enable it by visiting https://console.developers.google.com/apis/api/generativelanguage.googleapis.com/overview?project=123456789012 then retry.",
                json!([{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "SERVICE_DISABLED", "domain": "googleapis.com",
                    "metadata": {"service": "generativelanguage.googleapis.com",
                                 "consumer": "projects/123456789012"}}]),
            ),
        }
    }

    /// A 5xx (`INTERNAL` for 500, `UNAVAILABLE` otherwise).
    pub fn server_error(status: u16) -> Turn {
        let (name, message) = if status == 500 {
            (
                "INTERNAL",
                "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting",
            )
        } else {
            (
                "UNAVAILABLE",
                "The model is overloaded. Please try again later.",
            )
        };
        Turn::Error {
            status,
            headers: vec![],
            body: google_error(status, name, message, json!([])),
        }
    }
}

const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const BASE64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// The fake Gemini API; see the module docs.
pub type FakeGemini = Fake<Turn>;

impl Fake<Turn> {
    pub fn start(turns: Vec<Turn>) -> Self {
        Self::serve(turns, is_main, handle)
    }

    /// The variables that point the CLI at this fake with an API key. They are not enough on
    /// their own: see [`FakeGemini::settings`].
    pub fn env(&self) -> Vec<(String, String)> {
        Self::env_for(&self.base_url())
    }

    /// Like [`env`](Self::env) for a base URL of your choice (e.g. one with no listener).
    /// `GEMINI_CLI_NO_RELAUNCH` keeps the CLI in one process (by default it re-spawns itself
    /// with a bigger heap).
    pub fn env_for(base_url: &str) -> Vec<(String, String)> {
        env_vars(&[
            ("GEMINI_API_KEY", API_KEY),
            ("GOOGLE_GEMINI_BASE_URL", base_url),
            ("GEMINI_CLI_NO_RELAUNCH", "true"),
        ])
    }

    /// The settings to write to `$GEMINI_CLI_HOME/.gemini/settings.json` (a repository's
    /// `.gemini/settings.json` may override them; `GEMINI_CLI_SYSTEM_SETTINGS_PATH`, which
    /// would not, is no use: the CLI skips a system settings file unless it and every parent
    /// directory are owned by root and not group- or world-writable):
    /// - `security.auth.selectedType: gemini-api-key` is required: with only the variables, the
    ///   CLI derives auth type `gateway` from `GOOGLE_GEMINI_BASE_URL` and then rejects it
    ///   ("Invalid auth method selected.", exit 41);
    /// - `privacy.usageStatisticsEnabled: false` stops the only outside connection it makes
    ///   (Clearcut usage logging to play.googleapis.com); telemetry is off by default, the
    ///   auto-update check and IDE integration are interactive-only, but are switched off too;
    /// - `general.maxAttempts` bounds its retries (default 10, at most 10; the first retry
    ///   waits 5 s, doubling up to 30 s);
    /// - `advanced.ignoreLocalEnv` keeps it from loading a `.env` from the repository.
    pub fn settings(max_attempts: u32) -> Value {
        json!({
            "security": {"auth": {"selectedType": "gemini-api-key"}},
            "privacy": {"usageStatisticsEnabled": false},
            "telemetry": {"enabled": false},
            "general": {
                "enableAutoUpdate": false,
                "enableAutoUpdateNotification": false,
                "maxAttempts": max_attempts
            },
            "ide": {"enabled": false},
            "advanced": {"ignoreLocalEnv": true}
        })
    }
}

/// `(model, method)` of `/v1beta/models/MODEL:METHOD[?…]`.
fn model_method(req: &Request) -> Option<(String, String)> {
    let path = req.path.split('?').next().unwrap_or("");
    let rest = path
        .strip_prefix("/v1beta/models/")
        .or_else(|| path.strip_prefix("/v1/models/"))?;
    let (model, method) = rest.split_once(':')?;
    Some((model.to_owned(), method.to_owned()))
}

/// The names of the function declarations a request offers.
pub fn tool_names(body: &Value) -> Vec<String> {
    body["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|t| t["functionDeclarations"].as_array().into_iter().flatten())
        .filter_map(|f| f["name"].as_str().map(str::to_owned))
        .collect()
}

/// The text of the `functionResponse` parts a request sends back.
pub fn function_responses(req: &Value) -> String {
    req["contents"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| c["parts"].as_array().into_iter().flatten())
        .filter(|p| p.get("functionResponse").is_some())
        .map(|p| p["functionResponse"].to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_main(req: &Request) -> bool {
    req.method == "POST"
        && model_method(req).is_some_and(|(_, m)| m == "streamGenerateContent")
        && !tool_names(&req.json()).is_empty()
}

fn handle(state: &Mutex<Conversation<Turn>>, req: &Request) -> Response {
    let path = req.path.split('?').next().unwrap_or("");
    let body = req.json();
    if let Some((model, method)) = model_method(req) {
        let prompt = (req.body.len() as u64 / 4).max(10);
        match method.as_str() {
            "streamGenerateContent" if is_main(req) => {
                let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
                let (_, turn) = st.script.next(is_outage, || {
                    Turn::Final("(fake Gemini API: no more scripted turns)".into())
                });
                let prompt = prompt.max(100);
                let cached = st.prev_prompt_tokens.min(prompt);
                if !matches!(turn, Turn::Error { .. } | Turn::Hangup) {
                    st.prev_prompt_tokens = prompt;
                }
                drop(st);
                return answer(&turn, &body, &model, prompt, cached);
            }
            "streamGenerateContent" => {
                return answer(&Turn::Final("OK".into()), &body, &model, prompt, 0);
            }
            "generateContent" => {
                let config = &body["generationConfig"];
                let schema = config
                    .get("responseJsonSchema")
                    .or_else(|| config.get("responseSchema"));
                let text = match schema {
                    Some(s) => sample_for_schema(s).to_string(),
                    None => "OK".to_owned(),
                };
                let usage = usage_metadata(prompt, 0, (text.len() as u64 / 4).max(1), 0);
                return Response::Json {
                    status: 200,
                    headers: vec![],
                    body: json!({
                        "candidates": [{"content": {"parts": [{"text": text}], "role": "model"},
                                        "finishReason": "STOP", "index": 0}],
                        "usageMetadata": usage,
                        "modelVersion": model,
                        "responseId": random_id(22, ALNUM),
                    }),
                };
            }
            "countTokens" => {
                return Response::Json {
                    status: 200,
                    headers: vec![],
                    body: json!({"totalTokens": prompt}),
                };
            }
            _ => {}
        }
    }
    if req.method == "GET" && (path == "/v1beta/models" || path == "/v1/models") {
        return Response::Json {
            status: 200,
            headers: vec![],
            body: json!({"models": [{"name": format!("models/{MODEL}"), "displayName": "Gemini 2.5 Pro",
                "supportedGenerationMethods": ["generateContent", "countTokens"]}]}),
        };
    }
    Response::Json {
        status: 404,
        headers: vec![],
        body: google_error(
            404,
            "NOT_FOUND",
            &format!("Requested entity was not found: {path}"),
            json!([]),
        ),
    }
}

/// A value matching a (Gemini-style, upper- or lower-case `type`) JSON schema.
fn sample_for_schema(schema: &Value) -> Value {
    let ty = schema["type"].as_str().unwrap_or("object").to_lowercase();
    match ty.as_str() {
        "object" => {
            let mut out = serde_json::Map::new();
            if let Some(props) = schema["properties"].as_object() {
                for (k, v) in props {
                    out.insert(k.clone(), sample_for_schema(v));
                }
            }
            Value::Object(out)
        }
        "array" => json!([]),
        "integer" | "number" => json!(1),
        "boolean" => json!(false),
        _ => match schema["enum"].as_array().and_then(|e| e.first()) {
            Some(v) => v.clone(),
            None => json!("fake"),
        },
    }
}

/// The workspace directory the CLI announces in its first message.
fn workspace_of(body: &Value) -> Option<String> {
    const MARKER: &str = "Workspace Directories:**\n";
    match body {
        Value::String(t) => {
            let rest = &t[t.find(MARKER)? + MARKER.len()..];
            let line = rest.lines().next()?.trim();
            Some(line.strip_prefix("- ")?.trim().to_owned())
        }
        Value::Array(a) => a.iter().find_map(workspace_of),
        Value::Object(o) => ["contents", "parts", "text"]
            .iter()
            .find_map(|k| workspace_of(o.get(*k)?)),
        _ => None,
    }
}

fn absolute(path: &str, req: &Value) -> String {
    if path.starts_with('/') {
        return path.to_owned();
    }
    match workspace_of(req) {
        Some(ws) => format!("{}/{}", ws.trim_end_matches('/'), path),
        None => path.to_owned(),
    }
}

/// The real API's `usageMetadata`; `cachedContentTokenCount` is left out when 0, as the API
/// does.
fn usage_metadata(prompt: u64, cached: u64, candidates: u64, thoughts: u64) -> Value {
    let mut u = json!({
        "promptTokenCount": prompt,
        "candidatesTokenCount": candidates,
        "totalTokenCount": prompt + candidates + thoughts,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}],
    });
    if cached > 0 {
        u["cachedContentTokenCount"] = json!(cached);
        u["cacheTokensDetails"] = json!([{"modality": "TEXT", "tokenCount": cached}]);
    }
    if thoughts > 0 {
        u["thoughtsTokenCount"] = json!(thoughts);
    }
    u
}

fn answer(turn: &Turn, req: &Value, model: &str, prompt: u64, cached: u64) -> Response {
    let (parts, thought): (Vec<Value>, &str) = match turn {
        Turn::Hangup => return Response::Hangup,
        Turn::Error {
            status,
            headers,
            body,
        } => {
            return Response::Json {
                status: *status,
                headers: headers.clone(),
                body: body.clone(),
            };
        }
        Turn::Final(text) => (
            split_chunks(text, 3)
                .into_iter()
                .map(|t| json!({"text": t}))
                .collect(),
            "**Wrapping up**\n\nThe work is done; I will report back.",
        ),
        Turn::WriteFile { path, content } => (
            vec![function_call(
                "write_file",
                json!({"file_path": absolute(path, req), "content": content}),
            )],
            "**Writing the file**\n\nI will create the file with the requested content.",
        ),
        Turn::ReadFile { path } => (
            vec![function_call(
                "read_file",
                json!({"file_path": absolute(path, req)}),
            )],
            "**Reading the file**\n\nI need to look at the file first.",
        ),
        Turn::Call { name, args } => (
            vec![function_call(name, args.clone())],
            "**Using a tool**\n\nThis tool will help.",
        ),
        Turn::Shell { command } => (
            vec![function_call(
                "run_shell_command",
                json!({"command": command, "description": "Run a shell command in the repository."}),
            )],
            "**Running a command**\n\nA shell command will tell me more.",
        ),
    };
    let out_chars: usize = parts.iter().map(|p| p.to_string().len()).sum();
    let candidates = (out_chars as u64 / 4).max(1);
    let thoughts = (candidates * 2).max(48);
    let response_id = random_id(22, ALNUM);
    let chunk = |parts: Vec<Value>, last: bool| {
        let mut candidate = json!({"content": {"parts": parts, "role": "model"}, "index": 0});
        let usage = if last {
            candidate["finishReason"] = json!("STOP");
            usage_metadata(prompt, cached, candidates, thoughts)
        } else {
            // Intermediate chunks carry the prompt side and the thoughts so far.
            json!({"promptTokenCount": prompt, "totalTokenCount": prompt + thoughts,
                   "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}],
                   "thoughtsTokenCount": thoughts})
        };
        let data = json!({
            "candidates": [candidate],
            "usageMetadata": usage,
            "modelVersion": model,
            "responseId": response_id,
        });
        (None, data.to_string())
    };
    let mut events = vec![chunk(
        vec![json!({"text": thought, "thought": true})],
        false,
    )];
    let n = parts.len();
    for (i, part) in parts.into_iter().enumerate() {
        events.push(chunk(vec![part], i + 1 == n));
    }
    Response::Sse { events }
}

/// A `functionCall` part with the opaque `thoughtSignature` thinking models attach to it.
fn function_call(name: &str, args: Value) -> Value {
    json!({"functionCall": {"name": name, "args": args},
           "thoughtSignature": random_id(88, BASE64)})
}

fn is_outage(t: &Turn) -> bool {
    matches!(t, Turn::Error { .. } | Turn::Hangup)
}
