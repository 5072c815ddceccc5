//! Classifies an aider run from its [`AiderSummary`] and exit status. aider exits 0 after every
//! API failure (401, 429, 5xx, 404, a refused connection): the signal is a request started and
//! never answered in the analytics log, typed from stdout's last `litellm.<ErrorClass>:` line,
//! a fixed shape litellm prints for each OpenAI-style error class (read here and nowhere
//! else). A non-zero exit is an uncaught exception (1) or bad flags (2). Never reads the clock.

use jiff::Timestamp;

use super::AiderSummary;
use crate::agent::ExitInfo;
use crate::agent::failure::{AgentFailure, classify_exit, unfinished};

/// How an aider run ended: `None` for a clean run.
#[must_use]
pub fn classify_aider(s: &AiderSummary, exit: ExitInfo, _now: Timestamp) -> Option<AgentFailure> {
    if exit.code != Some(0) {
        let detail = s
            .exception
            .clone()
            .or_else(|| s.error.as_ref().map(|(c, m)| format!("litellm.{c}: {m}")))
            .unwrap_or_default();
        return classify_exit(exit, &detail);
    }
    if !s.logged {
        return Some(unfinished(exit, "aider wrote no analytics log"));
    }
    if s.last_unanswered {
        return Some(match &s.error {
            Some((class, message)) => classify_error_line(class, message),
            None => AgentFailure::ApiError {
                status: None,
                detail: "the last model request was never answered".into(),
            },
        });
    }
    if s.exit_reason.is_none() {
        return Some(unfinished(exit, "aider's analytics log has no exit event"));
    }
    None
}

/// Types one `litellm.<Class>: <message>` line. litellm names the class after the HTTP status
/// (`AuthenticationError` 401, `PermissionDeniedError` 403, `NotFoundError` 404,
/// `RateLimitError` 429, `InternalServerError` 5xx or a refused connection…); an exhausted
/// quota is a 429 like any other, told apart only by the API's message.
#[must_use]
pub fn classify_error_line(class: &str, message: &str) -> AgentFailure {
    let detail = message.trim().to_owned();
    let lower = detail.to_lowercase();
    let api = |status: Option<u16>, detail: String| AgentFailure::ApiError { status, detail };
    match class {
        "AuthenticationError" | "PermissionDeniedError" => AgentFailure::Auth { detail },
        "RateLimitError" if lower.contains("quota") => AgentFailure::UsageLimit {
            resets_at: None,
            detail,
        },
        "RateLimitError" => AgentFailure::RateLimited { detail },
        "NotFoundError" => api(Some(404), format!("model not found: {detail}")),
        "BadRequestError" | "ContextWindowExceededError" | "UnsupportedParamsError" => {
            api(Some(400), detail)
        }
        "InternalServerError" if lower.contains("connection error") => api(None, detail),
        "InternalServerError" => api(Some(500), detail),
        "ServiceUnavailableError" => api(Some(503), detail),
        _ => api(None, format!("litellm.{class}: {detail}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::aider::{last_error, read_events};

    const OK: ExitInfo = ExitInfo {
        code: Some(0),
        signal: None,
        timed_out: false,
    };

    fn fixture(name: &str) -> String {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/agent-cli-output/aider")
            .join(name);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn now() -> Timestamp {
        "2026-12-02T14:00:00Z".parse().unwrap()
    }

    /// A run whose events are `events` and whose stdout is `stdout`.
    fn run(events: &str, stdout: &str) -> AiderSummary {
        let mut s = read_events(fixture(events).as_bytes());
        s.error = last_error(&fixture(stdout));
        s
    }

    #[test]
    fn a_clean_run_is_no_failure() {
        let s = run("worker-diff.events.jsonl", "worker-diff.stdout.txt");
        assert_eq!(classify_aider(&s, OK, now()), None);
    }

    #[test]
    fn api_failures_exit_0_and_are_typed() {
        let auth = classify_aider(
            &run("fail-401.events.jsonl", "fail-401.stdout.txt"),
            OK,
            now(),
        );
        assert!(
            matches!(&auth, Some(AgentFailure::Auth { detail }) if detail.contains("Incorrect API key")),
            "{auth:?}"
        );
        let after = run(
            "fail-401-after-success.events.jsonl",
            "fail-401-after-success.stdout.txt",
        );
        assert!(matches!(
            classify_aider(&after, OK, now()),
            Some(AgentFailure::Auth { .. })
        ));
        // The 429s: aider's own retries exhausted (the events of a plain 429 run; the quota
        // run's stdout differs only in the API's message).
        let limited = run(
            "fail-429-retry-after.events.jsonl",
            "fail-429-retry-after.stdout.txt",
        );
        assert!(
            matches!(
                classify_aider(&limited, OK, now()),
                Some(AgentFailure::RateLimited { .. })
            ),
            "{limited:?}"
        );
        let quota = run(
            "fail-429-retry-after.events.jsonl",
            "fail-429-quota.stdout.txt",
        );
        assert!(matches!(
            classify_aider(&quota, OK, now()),
            Some(AgentFailure::UsageLimit {
                resets_at: None,
                ..
            })
        ));
        let missing = run("fail-401.events.jsonl", "fail-404-model.stdout.txt");
        assert!(
            matches!(classify_aider(&missing, OK, now()), Some(AgentFailure::ApiError { status: Some(404), detail }) if detail.starts_with("model not found")),
        );
        for (stdout, status) in [
            ("fail-500.stdout.txt", Some(500)),
            ("fail-refused.stdout.txt", None),
            ("fail-timeout-2s.stdout.txt", None),
        ] {
            let s = run("fail-401.events.jsonl", stdout);
            assert!(
                matches!(classify_aider(&s, OK, now()), Some(AgentFailure::ApiError { status: st, .. }) if st == status),
                "{stdout}: {s:?}"
            );
        }
        let no_key = run("fail-401.events.jsonl", "fail-no-key.stdout.txt");
        assert!(matches!(
            classify_aider(&no_key, OK, now()),
            Some(AgentFailure::Auth { .. })
        ));
    }

    #[test]
    fn an_unanswered_request_without_an_error_line_is_still_a_failure() {
        let s = read_events(fixture("fail-401.events.jsonl").as_bytes());
        assert!(matches!(
            classify_aider(&s, OK, now()),
            Some(AgentFailure::ApiError { status: None, .. })
        ));
        // No analytics log at all: it never got going.
        assert!(matches!(
            classify_aider(&AiderSummary::default(), OK, now()),
            Some(AgentFailure::Crashed { exit: Some(0), .. })
        ));
    }

    #[test]
    fn a_crash_names_its_exception() {
        let s = AiderSummary {
            exception: Some("ModuleNotFoundError: No module named 'scipy'".into()),
            ..AiderSummary::default()
        };
        let exit = ExitInfo {
            code: Some(1),
            ..OK
        };
        assert_eq!(
            classify_aider(&s, exit, now()),
            Some(AgentFailure::Crashed {
                exit: Some(1),
                detail: "ModuleNotFoundError: No module named 'scipy'".into()
            })
        );
    }
}
