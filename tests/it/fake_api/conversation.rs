//! What the Anthropic and Gemini fakes share besides HTTP: the [`Script`] of turns, a
//! [`Fake`] server that answers main-conversation requests from it while remembering the last
//! prompt's size (what prompt caching would have seen), the split of main from auxiliary
//! requests, and small helpers (environment pairs, random ids, chunked text). It never knows
//! an API's wire format: each API module supplies `is_main` and the handler.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::http::{Handler, Request, Response, Server};

/// Scripted answers of a fake model API, served in order. When they run out, a trailing outage
/// turn (an HTTP error or a hang-up, as `is_outage` says) keeps being served, so an outage stays
/// down through the CLI's retries; otherwise `done()` is served.
pub struct Script<T> {
    turns: std::collections::VecDeque<T>,
    last: Option<T>,
    served: usize,
}

impl<T: Clone> Script<T> {
    pub fn new(turns: Vec<T>) -> Self {
        Self {
            turns: turns.into(),
            last: None,
            served: 0,
        }
    }

    /// The next turn and its 0-based index among the requests served.
    pub fn next(&mut self, is_outage: impl Fn(&T) -> bool, done: impl FnOnce() -> T) -> (usize, T) {
        let turn = match self.turns.pop_front() {
            Some(t) => t,
            None => match &self.last {
                Some(t) if is_outage(t) => t.clone(),
                _ => done(),
            },
        };
        self.last = Some(turn.clone());
        self.served += 1;
        (self.served - 1, turn)
    }

    pub fn served(&self) -> usize {
        self.served
    }
}

/// A fake API's state across requests: its script, and the prompt size of the last main
/// request that was answered.
pub struct Conversation<T> {
    pub script: Script<T>,
    pub prev_prompt_tokens: u64,
}

/// A fake model API on 127.0.0.1: its [`Server`] and its [`Conversation`].
pub struct Fake<T> {
    pub server: Server,
    state: Arc<Mutex<Conversation<T>>>,
    is_main: fn(&Request) -> bool,
}

impl<T: Clone + Send + 'static> Fake<T> {
    /// Serves `turns`: `handle` answers every request, with the conversation to take the
    /// main ones' turns from; `is_main` tells the main conversation's requests from the rest.
    pub fn serve(
        turns: Vec<T>,
        is_main: fn(&Request) -> bool,
        handle: fn(&Mutex<Conversation<T>>, &Request) -> Response,
    ) -> Self {
        let state = Arc::new(Mutex::new(Conversation {
            script: Script::new(turns),
            prev_prompt_tokens: 0,
        }));
        let st = Arc::clone(&state);
        let handler: Handler = Arc::new(move |req: &Request| handle(&st, req));
        Self {
            server: Server::start(handler),
            state,
            is_main,
        }
    }

    /// `http://127.0.0.1:PORT`: the server root, as `ANTHROPIC_BASE_URL` and
    /// `GOOGLE_GEMINI_BASE_URL` want it (no `/v1`: the CLIs append the API's path).
    pub fn base_url(&self) -> String {
        self.server.url()
    }

    /// How many main-conversation requests were answered (scripted or not).
    pub fn turns_served(&self) -> usize {
        self.state.lock().map(|s| s.script.served()).unwrap_or(0)
    }

    /// The main-conversation requests received, in order.
    pub fn main_requests(&self) -> Vec<Request> {
        self.server
            .requests()
            .into_iter()
            .filter(self.is_main)
            .collect()
    }

    /// Every request that was not part of the main conversation.
    pub fn auxiliary_requests(&self) -> Vec<Request> {
        let is_main = self.is_main;
        self.server
            .requests()
            .into_iter()
            .filter(|r| !is_main(r))
            .collect()
    }
}

/// Environment variables as owned pairs.
pub fn env_vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

static SEQ: AtomicU64 = AtomicU64::new(1);

/// `n` pseudo-random characters from `alphabet` (unique per call within the process).
pub fn random_id(n: usize, alphabet: &[u8]) -> String {
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut x = nanos ^ seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (std::process::id() as u64) << 32;
    let mut s = String::with_capacity(n);
    while s.len() < n {
        // splitmix64
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        for _ in 0..8 {
            if s.len() < n {
                s.push(alphabet[(z % alphabet.len() as u64) as usize] as char);
                z /= alphabet.len() as u64;
            }
        }
    }
    s
}

/// Lowercase hex digits, for [`random_id`].
pub const HEX: &[u8] = b"0123456789abcdef";

/// `s` in up to `n` pieces, split on char boundaries.
pub fn split_chunks(s: &str, n: usize) -> Vec<String> {
    let chars: Vec<char> = s.chars().collect();
    if chars.is_empty() {
        return vec![String::new()];
    }
    let size = chars.len().div_ceil(n.max(1));
    chars.chunks(size).map(|c| c.iter().collect()).collect()
}
