//! A fake OpenAI Chat Completions API (`POST /v1/chat/completions`, plain JSON answers) for the
//! real aider. Each request consumes one scripted [`Turn`]: a reply (with [`USAGE`]) or an HTTP
//! error; a trailing error keeps being served (so aider's retries see the same failure), and
//! after a reply a plain `Done.` follows. Anything else is answered 404 without consuming a
//! turn.
//!
//! Observed with aider-chat 0.86.2 (litellm 1.81.10, `--no-stream`): it sends only
//! `POST /v1/chat/completions` with `{messages, model, temperature: 0}`, `Authorization:
//! Bearer <key>`, the model without litellm's `openai/` prefix, and reads `usage` from the
//! answer.

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use super::conversation::Script;
use super::http::{Handler, Request, Response, Server};

/// The model as aider is told it (litellm's provider prefix) and as it reaches the wire.
pub const MODEL: &str = "openai/fake-model";
pub const WIRE_MODEL: &str = "fake-model";
/// The variable aider reads the key from, and the key the fake expects.
pub const KEY_VAR: &str = "OPENAI_API_KEY";
pub const KEY: &str = "sk-nightshift-fake-chat";

/// The usage of every scripted reply.
pub const USAGE: (u64, u64) = (1234, 56);

#[derive(Debug, Clone)]
pub enum Turn {
    /// An assistant reply.
    Reply(String),
    /// An HTTP error with an OpenAI-style JSON body.
    Error { status: u16, body: Value },
}

impl Turn {
    /// The OpenAI API's answer to a wrong key.
    pub fn unauthorized() -> Self {
        Turn::Error {
            status: 401,
            body: json!({"error": {
                "message": "Incorrect API key provided: sk-nigh****chat. You can find your API key at https://platform.openai.com/account/api-keys.",
                "type": "invalid_request_error", "param": null, "code": "invalid_api_key"}}),
        }
    }

    /// The OpenAI API's answer for a model that does not exist.
    pub fn model_not_found() -> Self {
        Turn::Error {
            status: 404,
            body: json!({"error": {
                "message": "The model `fake-model` does not exist or you do not have access to it.",
                "type": "invalid_request_error", "param": null, "code": "model_not_found"}}),
        }
    }
}

pub struct FakeChat {
    pub server: Server,
    script: Arc<Mutex<Script<Turn>>>,
}

impl FakeChat {
    pub fn start(turns: Vec<Turn>) -> Self {
        let script = Arc::new(Mutex::new(Script::new(turns)));
        let s = Arc::clone(&script);
        let handler: Handler = Arc::new(move |req: &Request| handle(&s, req));
        Self {
            server: Server::start(handler),
            script,
        }
    }

    /// `http://127.0.0.1:PORT/v1`, as `--openai-api-base` wants it.
    pub fn api_base(&self) -> String {
        format!("{}/v1", self.server.url())
    }

    /// How many completion requests were answered (scripted or not).
    pub fn served(&self) -> usize {
        self.script.lock().map(|s| s.served()).unwrap_or(0)
    }

    /// The completion requests received, in order.
    pub fn completions(&self) -> Vec<Request> {
        self.server
            .requests()
            .into_iter()
            .filter(|r| r.method == "POST" && r.path.ends_with("/chat/completions"))
            .collect()
    }

    /// Every other request.
    pub fn others(&self) -> Vec<Request> {
        self.server
            .requests()
            .into_iter()
            .filter(|r| !(r.method == "POST" && r.path.ends_with("/chat/completions")))
            .collect()
    }
}

fn handle(script: &Mutex<Script<Turn>>, req: &Request) -> Response {
    if !(req.method == "POST" && req.path.ends_with("/chat/completions")) {
        return Response::Json {
            status: 404,
            headers: vec![],
            body: json!({"error": {"message": format!("unknown path {}", req.path)}}),
        };
    }
    let turn = match script.lock() {
        Ok(mut s) => {
            s.next(
                |t| matches!(t, Turn::Error { .. }),
                || Turn::Reply("Done.".into()),
            )
            .1
        }
        Err(_) => Turn::Reply("Done.".into()),
    };
    match turn {
        Turn::Error { status, body } => Response::Json {
            status,
            headers: vec![],
            body,
        },
        Turn::Reply(content) => Response::Json {
            status: 200,
            headers: vec![],
            body: json!({
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "created": 1_796_220_000,
                "model": req.json()["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                             "finish_reason": "stop"}],
                "usage": {"prompt_tokens": USAGE.0, "completion_tokens": USAGE.1,
                          "total_tokens": USAGE.0 + USAGE.1},
            }),
        },
    }
}
