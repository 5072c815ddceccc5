//! What an aider run leaves behind, read into an [`AiderSummary`]: the analytics log's events
//! ([`read_events`]: usage summed over every answered request, whether the last request was
//! answered, whether aider reached its own exit), the model's last reply from the LLM history
//! ([`last_response`]) and the last `litellm.<ErrorClass>:` message on stdout ([`last_error`]).
//! Tolerant like the other readers: a missing file or a line that is not JSON is skipped,
//! never an error. Reads only the files it is handed.

use std::path::Path;

use serde_json::{Map, Value};

use crate::agent::Usage;
use crate::agent::jsonl::{for_each_object, str_field, u64_field};

/// One aider run, as far as nightshift cares.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AiderSummary {
    /// The analytics log existed and had at least one event.
    pub logged: bool,
    /// `message_send_starting` events: model requests aider started.
    pub requests: u32,
    /// `message_send` events: requests answered (aider logs none for a failed request).
    pub answered: u32,
    /// The last request started was never answered: the run ended on an API failure.
    pub last_unanswered: bool,
    /// The `exit` event's reason (`Completed --message-file`); `None`: aider never got there.
    pub exit_reason: Option<String>,
    /// Summed over every answered request (`prompt_tokens` → input, `completion_tokens` →
    /// output; aider reports no cache split). `None` when no request reported a token, which
    /// is what a server that sends no `usage` looks like (`0 sent, 0 received`): unknown, not
    /// free.
    pub usage: Option<Usage>,
    /// Summed `cost`, when the model metadata had prices (`None` when zero).
    pub cost_usd: Option<f64>,
    /// The `main_model` of the last answered request (`None` when aider redacted it).
    pub model: Option<String>,
    /// `Aider vX.Y.Z` on stdout.
    pub version: Option<String>,
    /// The model's last reply, verbatim.
    pub final_message: Option<String>,
    /// The last `litellm.<Class>:` line on stdout: `(class, message)`.
    pub error: Option<(String, String)>,
    /// stdout's last `SomethingError: …` line outside litellm's (an uncaught exception).
    pub exception: Option<String>,
}

/// Reads a run: `stdout`, and the files aider wrote in `run_dir`.
#[must_use]
pub fn read_run(stdout: &[u8], run_dir: &Path) -> AiderSummary {
    let events = std::fs::read(run_dir.join(super::EVENTS_FILE)).unwrap_or_default();
    let mut s = read_events(&events);
    let history = std::fs::read(run_dir.join(super::LLM_HISTORY_FILE)).unwrap_or_default();
    s.final_message = last_response(&String::from_utf8_lossy(&history));
    let out = String::from_utf8_lossy(stdout);
    s.error = last_error(&out);
    s.version = out
        .lines()
        .find_map(|l| l.strip_prefix("Aider v"))
        .map(|v| v.trim().to_owned());
    s.exception = out
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| is_exception(l))
        .map(str::to_owned);
    s
}

/// `ModuleNotFoundError: No module named 'scipy'`: a Python exception's last line.
fn is_exception(line: &str) -> bool {
    line.split_once(": ").is_some_and(|(name, _)| {
        (name.ends_with("Error") || name.ends_with("Exception"))
            && !name.starts_with("litellm.")
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_')
    })
}

/// Reads the analytics log (`--analytics-log`).
#[must_use]
pub fn read_events(bytes: &[u8]) -> AiderSummary {
    let mut s = AiderSummary::default();
    let mut usage = Usage::default();
    let mut cost = 0.0_f64;
    for_each_object(bytes, |line| {
        s.logged = true;
        let props = line.get("properties").and_then(Value::as_object);
        match line.get("event").and_then(Value::as_str) {
            Some("message_send_starting") => {
                s.requests += 1;
                s.last_unanswered = true;
            }
            Some("message_send") => {
                s.answered += 1;
                s.last_unanswered = false;
                if let Some(p) = props {
                    add_request(&mut usage, &mut cost, p);
                    // aider logs an unpriced model as `<provider>/REDACTED`.
                    let model = str_field(p, "main_model").filter(|m| !m.ends_with("/REDACTED"));
                    s.model = model.or(s.model.take());
                }
            }
            Some("exit") => {
                s.exit_reason = Some(
                    props
                        .and_then(|p| str_field(p, "reason"))
                        .unwrap_or_default(),
                );
            }
            _ => {}
        }
    });
    s.usage = (usage.total() > 0).then_some(usage);
    s.cost_usd = (cost > 0.0).then_some(cost);
    s
}

fn add_request(usage: &mut Usage, cost: &mut f64, p: &Map<String, Value>) {
    usage.input += u64_field(p, "prompt_tokens").unwrap_or(0);
    usage.output += u64_field(p, "completion_tokens").unwrap_or(0);
    *cost += p
        .get("cost")
        .and_then(Value::as_f64)
        .filter(|c| c.is_finite() && *c > 0.0)
        .unwrap_or(0.0);
}

/// The last `LLM RESPONSE <time>` block of an LLM history file, its `ASSISTANT ` prefixes
/// removed.
#[must_use]
pub fn last_response(history: &str) -> Option<String> {
    let start = history
        .lines()
        .enumerate()
        .filter(|(_, l)| l.starts_with("LLM RESPONSE "))
        .map(|(i, _)| i)
        .last()?;
    let body: Vec<&str> = history
        .lines()
        .skip(start + 1)
        .take_while(|l| !l.starts_with("TO LLM ") && !l.starts_with("LLM RESPONSE "))
        .filter_map(|l| {
            l.strip_prefix("ASSISTANT ")
                .or_else(|| (l == "ASSISTANT").then_some(""))
        })
        .collect();
    let text = body.join("\n").trim_end().to_owned();
    (!text.is_empty()).then_some(text)
}

/// The last `litellm.<Class>: <message>` on stdout, as `(Class, message)`. The message runs on
/// over wrapped lines until a blank line or one of aider's own follow-ups (its advice,
/// `Retrying in …`).
#[must_use]
pub fn last_error(stdout: &str) -> Option<(String, String)> {
    let lines: Vec<&str> = stdout.lines().collect();
    let at = lines.iter().rposition(|l| error_class(l).is_some())?;
    let (class, first) = error_class(lines[at])?;
    let mut message = first.trim().to_owned();
    for l in &lines[at + 1..] {
        let t = l.trim();
        let follow_up = t.is_empty()
            || t.starts_with("The API provider")
            || t.starts_with("Retrying in ")
            || error_class(t).is_some();
        if follow_up {
            break;
        }
        message.push(' ');
        message.push_str(t);
    }
    Some((class.to_owned(), message))
}

/// `litellm.Class: rest` → `(Class, rest)`.
fn error_class(line: &str) -> Option<(&str, &str)> {
    let rest = line.trim_start().strip_prefix("litellm.")?;
    let (class, message) = rest.split_once(':')?;
    class
        .chars()
        .all(|c| c.is_ascii_alphanumeric())
        .then_some((class, message))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIR: &str = "tests/fixtures/agent-cli-output/aider";

    fn fixture(name: &str) -> String {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(DIR).join(name);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    #[test]
    fn usage_is_summed_over_every_answered_request() {
        // Two requests (the reply named a file, aider added it and asked again): 2 × 1234 in.
        let s = read_events(fixture("worker-diff.events.jsonl").as_bytes());
        assert_eq!((s.requests, s.answered, s.last_unanswered), (2, 2, false));
        assert_eq!(
            s.usage,
            Some(Usage {
                input: 2468,
                output: 112,
                ..Usage::default()
            }),
            "the sum, not the last request"
        );
        assert_eq!(s.cost_usd, Some(0.004542 * 2.0));
        assert_eq!(s.exit_reason.as_deref(), Some("Completed --message-file"));
        assert_eq!(s.model.as_deref(), Some("openai/fake-model"));
    }

    #[test]
    fn a_request_never_answered_is_seen_and_earlier_usage_kept() {
        let s = read_events(fixture("fail-401.events.jsonl").as_bytes());
        assert!(s.logged && s.last_unanswered);
        assert_eq!((s.requests, s.answered, s.usage), (1, 0, None));
        assert_eq!(s.exit_reason.as_deref(), Some("Completed --message-file"));
        let s = read_events(fixture("fail-401-after-success.events.jsonl").as_bytes());
        assert!(s.last_unanswered);
        assert_eq!(s.usage.map(|u| (u.input, u.output)), Some((1234, 56)));
    }

    #[test]
    fn no_usage_from_the_server_is_unknown_not_zero() {
        let s = read_events(fixture("no-usage.events.jsonl").as_bytes());
        assert_eq!((s.answered, s.usage, s.cost_usd), (1, None, None));
        assert!(!read_events(b"").logged);
        assert!(!read_events(b"not json\n").logged);
        let redacted = br#"{"event": "message_send", "properties": {"main_model": "openai/REDACTED", "prompt_tokens": 5}}"#;
        assert_eq!(
            read_events(redacted).model,
            None,
            "a redacted name is no model"
        );
    }

    #[test]
    fn the_final_message_is_the_last_llm_response_verbatim() {
        let m = last_response(&fixture("worker-final.llm-history.txt")).unwrap();
        assert!(
            m.starts_with("Updating greet.py.\n\ngreet.py\n```python\n"),
            "{m}"
        );
        assert!(m.ends_with("```json\n{\"handoff\": \"done\"}\n```"), "{m}");
        assert_eq!(last_response("TO LLM x\nUSER hi\n"), None);
    }

    #[test]
    fn the_last_litellm_error_is_read_with_its_wrapped_lines() {
        let (class, msg) = last_error(&fixture("fail-401.stdout.txt")).unwrap();
        assert_eq!(class, "AuthenticationError");
        assert_eq!(
            msg,
            "AuthenticationError: OpenAIException - Incorrect API key provided: sk-test. You can find your API key at https://platform.openai.com/account/api-keys."
        );
        let (class, msg) = last_error(&fixture("fail-429-quota.stdout.txt")).unwrap();
        assert_eq!(class, "RateLimitError");
        assert!(
            msg.ends_with(
                "You exceeded your current quota, please check your plan and billing details."
            ),
            "{msg}"
        );
        let (class, msg) = last_error(&fixture("fail-404-columns1000.stdout.txt")).unwrap();
        assert_eq!(class, "NotFoundError");
        assert!(msg.contains("does not exist"), "{msg}");
        assert_eq!(last_error(&fixture("worker-final.stdout.txt")), None);
    }

    #[test]
    fn a_run_is_read_from_stdout_and_its_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(crate::agent::aider::EVENTS_FILE),
            fixture("worker-final.events.jsonl"),
        )
        .unwrap();
        std::fs::write(
            dir.path().join(crate::agent::aider::LLM_HISTORY_FILE),
            fixture("worker-final.llm-history.txt"),
        )
        .unwrap();
        let s = read_run(fixture("worker-final.stdout.txt").as_bytes(), dir.path());
        assert_eq!(s.version.as_deref(), Some("0.86.2"));
        assert!(s.final_message.unwrap().contains("\"handoff\""));
        assert_eq!(s.usage.map(|u| u.input), Some(1234));
        assert_eq!((s.error, s.exception), (None, None));
        let crash = read_run(
            fixture("crash-missing-scipy.stdout.txt").as_bytes(),
            dir.path(),
        );
        assert_eq!(
            crash.exception.as_deref(),
            Some("ModuleNotFoundError: No module named 'scipy'")
        );
        // Nothing written: nothing known.
        let empty = tempfile::tempdir().unwrap();
        let s = read_run(b"", empty.path());
        assert!(!s.logged && s.final_message.is_none() && s.usage.is_none());
    }
}
