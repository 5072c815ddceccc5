//! Smoke tests of the real Gemini CLI (tests/agent-clis, `npm ci`) against the fake Gemini API
//! in `fake_api::gemini`, run directly (not through nightshift): stdin /dev/null, a temp git
//! repo as cwd, HOME, GEMINI_CLI_HOME (with the settings of [`FakeGemini::settings`]) and
//! TMPDIR inside the temp dir, nothing else inherited but PATH. Skipped (with a message) when
//! the binary is not installed (`NIGHTSHIFT_GEMINI_BIN` overrides its path), unless
//! `NIGHTSHIFT_REQUIRE_REAL_CLIS=1`. The sandbox, the time-limited run, fixture capture and
//! the environment switches are `real_harness`'s.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nightshift::agent::gemini::{GeminiSummary, parse_stream, status_from_exit_code};
use serde_json::Value;

use super::fake_api::gemini::{FakeGemini, MODEL, Turn, function_responses, tool_names};
use super::real_harness::{Lines, Run, Sandbox, dead_port_url, real_cli, save_fixture};

/// Common to both roles: headless, all events on stdout, trust the worktree (headless runs in
/// an untrusted folder exit 55).
const COMMON_ARGS: &[&str] = &["--output-format", "stream-json", "--skip-trust"];
/// `yolo` is the only mode that offers `run_shell_command`; `auto_edit` offers the edit tools
/// only, `default` neither (headless "ask" means deny).
const WORKER_ARGS: &[&str] = &["--approval-mode", "yolo"];
/// Plan Mode: read-only tools; writes only to its own plans directory.
const VERIFIER_ARGS: &[&str] = &["--approval-mode", "plan"];
/// Lets Plan Mode run read-only git commands (a policy file, given with `--policy`).
const VERIFIER_POLICY: &str = r#"[[rule]]
toolName = "run_shell_command"
commandPrefix = ["git diff", "git log", "git show", "git status"]
decision = "allow"
priority = 100
modes = ["plan"]
"#;
/// The CLI's settings file, under GEMINI_CLI_HOME.
const SETTINGS: &str = "gemini-home/.gemini/settings.json";
/// The installed binary, or `None` after printing why the test is skipped.
fn gemini_bin() -> Option<PathBuf> {
    real_cli("gemini")
}

/// A [`Sandbox`] with the isolated Gemini home (`gemini-home/.gemini/settings.json`, which
/// the CLI needs), the verifier's policy file, and a decoy `.env` in the repo that must not
/// reach the CLI (advanced.ignoreLocalEnv).
fn sandbox(max_attempts: u32) -> Sandbox {
    let decoy = (".env", "GOOGLE_GEMINI_BASE_URL=http://127.0.0.1:9\n");
    let sb = Sandbox::with(&["gemini-home/.gemini"], &[decoy]);
    std::fs::write(
        sb.root.join(SETTINGS),
        FakeGemini::settings(max_attempts).to_string(),
    )
    .unwrap();
    std::fs::write(sb.root.join("verifier-policy.toml"), VERIFIER_POLICY).unwrap();
    sb
}

fn policy(sb: &Sandbox) -> String {
    sb.root.join("verifier-policy.toml").display().to_string()
}

/// A [`Run`] with nightshift's own reading of its output.
struct GeminiRun {
    run: Run,
    summary: GeminiSummary,
}

impl std::ops::Deref for GeminiRun {
    type Target = Run;
    fn deref(&self) -> &Run {
        &self.run
    }
}

/// Runs `gemini -p PROMPT -m MODEL COMMON_ARGS… ARGS…` in the sandbox's repo with `env` (plus
/// HOME, GEMINI_CLI_HOME, TMPDIR and PATH).
fn run_gemini(
    bin: &Path,
    sb: &Sandbox,
    env: &[(String, String)],
    args: &[&str],
    prompt: &str,
) -> GeminiRun {
    let mut cmd = sb.command(bin);
    cmd.args(["-p", prompt, "-m", MODEL])
        .args(if args.contains(&"--output-format") {
            &COMMON_ARGS[2..]
        } else {
            COMMON_ARGS
        })
        .args(args)
        .env("GEMINI_CLI_HOME", sb.root.join("gemini-home"))
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let lines = if args.contains(&"json") {
        Lines::Whole
    } else {
        Lines::Json
    };
    let run = sb.run(&format!("gemini {args:?}"), cmd, lines);
    GeminiRun {
        summary: parse_stream(run.stdout.as_bytes()),
        run,
    }
}

fn log_requests(fake: &FakeGemini) {
    for r in fake.server.requests() {
        eprintln!(
            "  {} {} tools={:?}",
            r.method,
            r.path,
            tool_names(&r.json())
        );
    }
}

const HANDOFF: &str = "Done: wrote notes.md and shell.txt.\n\n```json\n{\"handoff\": {\"version\": 1, \"status\": \"done\", \"summary\": \"wrote notes.md\", \"files_changed\": [\"notes.md\", \"shell.txt\"]}}\n```";

#[test]
fn worker_writes_files_and_reports_usage() {
    let Some(bin) = gemini_bin() else { return };
    let sb = sandbox(2);
    let fake = FakeGemini::start(vec![
        Turn::WriteFile {
            path: "notes.md".into(),
            content: "written by write_file\n".into(),
        },
        Turn::Shell {
            command: "echo from-shell > shell.txt && git status --short".into(),
        },
        Turn::Final(HANDOFF.into()),
    ]);
    let run = run_gemini(&bin, &sb, &fake.env(), WORKER_ARGS, "Write notes.md.");
    log_requests(&fake);
    save_fixture("gemini-worker.stdout.jsonl", &sb, &run.stdout);
    assert_eq!(run.code, Some(0), "{}", run.dump());
    assert!(run.elapsed < Duration::from_secs(60));
    assert_eq!(sb.read("notes.md"), "written by write_file\n");
    assert_eq!(sb.read("shell.txt"), "from-shell\n");

    let init = run.of_type("init").next().expect("init");
    assert_eq!(init["model"], MODEL);
    let uses: Vec<&Value> = run.of_type("tool_use").collect();
    assert_eq!(uses.len(), 2, "{}", run.dump());
    assert_eq!(uses[0]["tool_name"], "write_file");
    assert_eq!(
        Path::new(uses[0]["parameters"]["file_path"].as_str().unwrap()),
        sb.repo.join("notes.md")
    );
    assert_eq!(uses[1]["tool_name"], "run_shell_command");
    let results: Vec<&Value> = run.of_type("tool_result").collect();
    assert!(
        results.iter().all(|r| r["status"] == "success"),
        "{results:?}"
    );
    assert_eq!(results[1]["output"], "?? notes.md\n?? shell.txt");
    let r = run.result();
    assert_eq!(r["status"], "success", "{r}");
    let stats = &r["stats"];
    assert_eq!(stats["tool_calls"], 2);
    for k in ["input_tokens", "output_tokens", "cached", "input"] {
        assert!(stats[k].as_u64().unwrap() > 0, "stats.{k} is zero: {stats}");
    }
    // Thinking is in total_tokens only.
    let (total, prompt, out) = (
        stats["total_tokens"].as_u64().unwrap(),
        stats["input_tokens"].as_u64().unwrap(),
        stats["output_tokens"].as_u64().unwrap(),
    );
    assert!(total > prompt + out, "{stats}");
    assert_eq!(
        stats["input"].as_u64().unwrap() + stats["cached"].as_u64().unwrap(),
        prompt
    );

    let s = &run.summary;
    assert!(s.saw_result && !s.is_error, "{s:?}");
    assert!(
        s.final_message
            .as_deref()
            .is_some_and(|m| m.starts_with("Done: wrote") && m.contains("```json\n{\"handoff\"")),
        "{s:?}"
    );
    let u = s.usage.expect("usage");
    assert_eq!(u.total(), total);
    assert_eq!(u.cache_read, stats["cached"].as_u64().unwrap());
    assert_eq!(
        (s.tool_calls, s.tool_errors, s.permission_denials),
        (2, 0, 0)
    );
    assert_eq!(s.session_id.as_deref(), init["session_id"].as_str());
    assert_eq!(s.model.as_deref(), Some(MODEL));

    assert_eq!(fake.turns_served(), 3);
    assert!(
        fake.auxiliary_requests().is_empty(),
        "unexpected requests: {:?}",
        fake.auxiliary_requests()
    );
    let main = fake.main_requests();
    assert_eq!(
        main[0].header("x-goog-api-key"),
        Some(super::fake_api::gemini::API_KEY)
    );
    assert!(main[0].path.ends_with(":streamGenerateContent?alt=sse"));
    assert!(tool_names(&main[0].json()).contains(&"run_shell_command".to_owned()));
    // The shell output went back to the model.
    assert!(function_responses(&main[2].json()).contains("?? shell.txt"));
}

#[test]
fn worker_json_format_prints_one_object() {
    let Some(bin) = gemini_bin() else { return };
    let sb = sandbox(2);
    let fake = FakeGemini::start(vec![
        Turn::WriteFile {
            path: "notes.md".into(),
            content: "written by write_file\n".into(),
        },
        Turn::Final(HANDOFF.into()),
    ]);
    let run = run_gemini(
        &bin,
        &sb,
        &fake.env(),
        &["--output-format", "json", "--approval-mode", "yolo"],
        "Write notes.md.",
    );
    save_fixture("gemini-worker.stdout.json", &sb, &run.stdout);
    assert_eq!(run.code, Some(0), "{}", run.dump());
    let v: Value = serde_json::from_str(&run.stdout).expect("one JSON object");
    assert_eq!(v["response"], HANDOFF);
    let tokens = &v["stats"]["models"][MODEL]["tokens"];
    assert!(tokens["thoughts"].as_u64().unwrap() > 0, "{tokens}");
    let s = &run.summary;
    assert!(s.json_format && s.saw_result && !s.is_error, "{s:?}");
    assert_eq!(s.final_message.as_deref(), Some(HANDOFF));
    assert_eq!(
        s.usage.map(|u| u.total()),
        tokens["total"].as_u64(),
        "{tokens}"
    );
    assert_eq!(s.model.as_deref(), Some(MODEL));
    assert_eq!(s.tool_calls, 1);
}

#[test]
fn verifier_in_plan_mode_reads_but_cannot_write() {
    let Some(bin) = gemini_bin() else { return };
    let sb = sandbox(2);
    let verdict = "Review complete.\n\n```json\n{\"handoff\": {\"version\": 1, \"status\": \"done\", \"verdict\": \"pass\", \"findings\": []}}\n```";
    let fake = FakeGemini::start(vec![
        Turn::ReadFile {
            path: "README.md".into(),
        },
        Turn::Shell {
            command: "git log --oneline -1".into(),
        },
        Turn::WriteFile {
            path: "review.txt".into(),
            content: "must be refused\n".into(),
        },
        Turn::Call {
            name: "write_file".into(),
            args: serde_json::json!({"file_path": "review.txt", "content": "must be refused\n"}),
        },
        Turn::Shell {
            command: "git log -1 && touch pwned.txt".into(),
        },
        Turn::Final(verdict.into()),
    ]);
    let policy = policy(&sb);
    let args = [VERIFIER_ARGS, &["--policy", policy.as_str()]].concat();
    let run = run_gemini(&bin, &sb, &fake.env(), &args, "Review the change.");
    log_requests(&fake);
    save_fixture("gemini-verifier.stdout.jsonl", &sb, &run.stdout);
    assert_eq!(run.code, Some(0), "{}", run.dump());
    assert!(
        !sb.repo.join("review.txt").exists(),
        "plan mode let write_file through"
    );
    assert!(
        !sb.repo.join("pwned.txt").exists(),
        "policy let a chain through"
    );
    let tools = tool_names(&fake.main_requests()[0].json());
    assert!(tools.contains(&"read_file".to_owned()), "{tools:?}");
    // Offered, for plan files only.
    assert!(tools.contains(&"write_file".to_owned()), "{tools:?}");
    let results: Vec<&Value> = run.of_type("tool_result").collect();
    let statuses: Vec<&str> = results
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        ["success", "success", "error", "error", "error"],
        "{}",
        run.dump()
    );
    // An absolute path outside the plans directory fails the tool's own check…
    assert_eq!(
        results[2]["error"]["type"], "invalid_tool_params",
        "{}",
        results[2]
    );
    assert!(
        results[2]["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("Access denied: plan path ("),
        "{}",
        results[2]
    );
    // …a relative one, and a command chain the policy does not cover, the policy.
    for denied in &results[3..] {
        assert_eq!(denied["error"]["type"], "policy_violation", "{denied}");
    }
    assert!(
        results[3]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("You are in Plan Mode and cannot modify source code"),
        "{}",
        results[3]
    );
    // README contents and the git log output went back to the model.
    let main = fake.main_requests();
    assert!(function_responses(&main[1].json()).contains("hello readme"));
    assert!(function_responses(&main[2].json()).contains(" init"));
    let r = run.result();
    assert_eq!(r["status"], "success", "{r}");
    let s = &run.summary;
    assert!(!s.is_error);
    assert_eq!(
        (s.tool_calls, s.tool_errors, s.permission_denials),
        (5, 3, 2)
    );
    assert!(
        s.final_message
            .as_deref()
            .is_some_and(|m| m.contains("\"verdict\": \"pass\"")),
        "{s:?}"
    );
}

#[test]
fn plan_mode_without_policy_has_no_shell() {
    let Some(bin) = gemini_bin() else { return };
    let sb = sandbox(2);
    let fake = FakeGemini::start(vec![
        Turn::Shell {
            command: "git log --oneline -1".into(),
        },
        Turn::Final("ok".into()),
    ]);
    let run = run_gemini(&bin, &sb, &fake.env(), VERIFIER_ARGS, "Review.");
    assert_eq!(run.code, Some(0), "{}", run.dump());
    let tools = tool_names(&fake.main_requests()[0].json());
    assert!(
        !tools.contains(&"run_shell_command".to_owned()),
        "{tools:?}"
    );
    let result = run.of_type("tool_result").next().unwrap();
    assert_eq!(result["error"]["type"], "tool_not_registered", "{result}");
    // Not a policy refusal: the tool does not exist in this mode.
    assert_eq!(run.summary.permission_denials, 0);
}

#[test]
fn daily_quota_429_fails_at_once() {
    let Some(bin) = gemini_bin() else { return };
    let sb = sandbox(2);
    let fake = FakeGemini::start(vec![
        Turn::WriteFile {
            path: "notes.md".into(),
            content: "first step\n".into(),
        },
        Turn::daily_quota(MODEL, 50),
    ]);
    let run = run_gemini(&bin, &sb, &fake.env(), WORKER_ARGS, "Write notes.md.");
    log_requests(&fake);
    save_fixture("gemini-quota-429.stdout.jsonl", &sb, &run.stdout);
    // process.exit(429), truncated to 8 bits.
    assert_eq!(run.code, Some(173), "{}", run.dump());
    assert_eq!(status_from_exit_code(173), Some(429));
    assert!(run.elapsed < Duration::from_secs(30));
    assert_eq!(fake.turns_served(), 2, "a daily quota must not be retried");
    let r = run.result();
    assert_eq!(r["status"], "error");
    assert_eq!(r["error"]["type"], "unknown");
    assert_eq!(
        r["error"]["message"],
        "[API Error: You have exhausted your daily quota on this model.]\nPlease wait and try again later. To increase your limits, request a quota increase through AI Studio, or switch to another /auth method"
    );
    // Usage of the turn that did run is kept.
    assert!(r["stats"]["input_tokens"].as_u64().unwrap() > 0, "{r}");
    let s = &run.summary;
    assert!(s.saw_result && s.is_error);
    let e = s.error.clone().expect("error");
    assert!(e.daily_quota, "{e:?}");
    assert_eq!(e.http_status, Some(429));
    assert_eq!(e.retry_after_secs, None, "the CLI drops the retry delay");
    assert!(s.usage.is_some_and(|u| u.input > 0));
    assert!(run.stderr.contains("TerminalQuotaError"), "{}", run.stderr);
}

#[test]
fn daily_quota_in_json_format_goes_to_stderr() {
    let Some(bin) = gemini_bin() else { return };
    let sb = sandbox(2);
    let fake = FakeGemini::start(vec![Turn::daily_quota(MODEL, 50)]);
    let run = run_gemini(
        &bin,
        &sb,
        &fake.env(),
        &["--output-format", "json", "--approval-mode", "yolo"],
        "Do it.",
    );
    assert_eq!(run.code, Some(173), "{}", run.dump());
    assert_eq!(run.stdout, "", "json errors are not on stdout");
    let e = parse_stream(run.stderr.as_bytes())
        .error
        .expect("a json error object on stderr");
    assert_eq!(e.error_type, "Error");
    assert_eq!(
        e.message,
        "You have exhausted your daily quota on this model."
    );
    assert_eq!(e.code, Some(429));
    assert_eq!(e.http_status, Some(429));
    assert!(e.daily_quota);
}

#[test]
fn short_rate_limit_is_retried_then_succeeds() {
    let Some(bin) = gemini_bin() else { return };
    let sb = sandbox(2);
    let fake = FakeGemini::start(vec![
        Turn::rate_limited(MODEL, 1),
        Turn::Final("all good".into()),
    ]);
    let run = run_gemini(&bin, &sb, &fake.env(), WORKER_ARGS, "Do it.");
    assert_eq!(run.code, Some(0), "{}", run.dump());
    assert_eq!(fake.turns_served(), 2);
    // The first retry waits at least 5 s whatever the API suggests.
    assert!(run.elapsed > Duration::from_secs(5), "{:?}", run.elapsed);
    assert!(run.elapsed < Duration::from_secs(30), "{:?}", run.elapsed);
    // Retries are on stderr only: stream-json has no retry event.
    assert!(run.stderr.contains("Attempt 1 failed"), "{}", run.stderr);
    assert_eq!(run.summary.final_message.as_deref(), Some("all good"));
    assert!(!run.summary.is_error);
}

#[test]
fn persistent_rate_limit_gives_up_after_max_attempts() {
    let Some(bin) = gemini_bin() else { return };
    let sb = sandbox(2);
    let fake = FakeGemini::start(vec![Turn::rate_limited(MODEL, 1)]);
    let run = run_gemini(&bin, &sb, &fake.env(), WORKER_ARGS, "Do it.");
    save_fixture("gemini-retry-429.stdout.jsonl", &sb, &run.stdout);
    assert_eq!(run.code, Some(173), "{}", run.dump());
    assert_eq!(fake.turns_served(), 2, "general.maxAttempts = 2");
    assert!(run.elapsed < Duration::from_secs(30), "{:?}", run.elapsed);
    let e = run.summary.error.clone().expect("error");
    assert_eq!(e.http_status, Some(429));
    assert!(!e.daily_quota);
    assert_eq!(e.retry_after_secs, Some(1), "{e:?}");
    assert!(
        e.message.contains("\nSuggested retry after 1s.]"),
        "{}",
        e.message
    );
}

#[test]
fn auth_failure_401() {
    let Some(bin) = gemini_bin() else { return };
    let sb = sandbox(2);
    let fake = FakeGemini::start(vec![Turn::unauthenticated()]);
    let run = run_gemini(&bin, &sb, &fake.env(), WORKER_ARGS, "Do it.");
    log_requests(&fake);
    save_fixture("gemini-auth-401.stdout.jsonl", &sb, &run.stdout);
    assert_eq!(run.code, Some(145), "{}", run.dump());
    assert_eq!(fake.turns_served(), 1, "a 401 is not retried");
    let r = run.result();
    assert_eq!(r["status"], "error");
    assert_eq!(r["error"]["type"], "unknown");
    let message = r["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("[API Error: {\"error\":{\"code\":401,"),
        "{message}"
    );
    let e = run.summary.error.clone().expect("error");
    assert_eq!(e.http_status, Some(401));
    assert_eq!(e.api_status.as_deref(), Some("UNAUTHENTICATED"));
    assert_eq!(e.reason.as_deref(), Some("ACCESS_TOKEN_TYPE_UNSUPPORTED"));
    assert!(!e.connection_failed && !e.daily_quota);
}

#[test]
fn invalid_api_key_400_and_forbidden_403() {
    let Some(bin) = gemini_bin() else { return };
    for (turn, code, status, api_status, reason) in [
        (
            Turn::invalid_api_key(),
            144,
            400,
            "INVALID_ARGUMENT",
            "API_KEY_INVALID",
        ),
        (
            Turn::permission_denied(),
            147,
            403,
            "PERMISSION_DENIED",
            "SERVICE_DISABLED",
        ),
    ] {
        let sb = sandbox(2);
        let fake = FakeGemini::start(vec![turn]);
        let run = run_gemini(&bin, &sb, &fake.env(), WORKER_ARGS, "Do it.");
        if status == 400 {
            save_fixture("gemini-auth-400.stdout.jsonl", &sb, &run.stdout);
        }
        assert_eq!(run.code, Some(code), "{}", run.dump());
        assert_eq!(fake.turns_served(), 1, "not retried");
        let e = run.summary.error.clone().expect("error");
        assert_eq!(e.http_status, Some(status));
        assert_eq!(e.api_status.as_deref(), Some(api_status));
        assert_eq!(e.reason.as_deref(), Some(reason));
    }
}

#[test]
fn server_error_500_is_retried_then_fails() {
    let Some(bin) = gemini_bin() else { return };
    let sb = sandbox(2);
    let fake = FakeGemini::start(vec![Turn::server_error(500)]);
    let run = run_gemini(&bin, &sb, &fake.env(), WORKER_ARGS, "Do it.");
    save_fixture("gemini-fail-500.stdout.jsonl", &sb, &run.stdout);
    assert_eq!(run.code, Some(244), "{}", run.dump());
    assert_eq!(fake.turns_served(), 2, "general.maxAttempts = 2");
    assert!(run.elapsed < Duration::from_secs(30), "{:?}", run.elapsed);
    let e = run.summary.error.clone().expect("error");
    assert_eq!(e.http_status, Some(500));
    assert_eq!(e.api_status.as_deref(), Some("INTERNAL"));
}

#[test]
fn server_down_gives_up_quickly() {
    let Some(bin) = gemini_bin() else { return };
    let sb = sandbox(2);
    let env = FakeGemini::env_for(&dead_port_url());
    let run = run_gemini(&bin, &sb, &env, WORKER_ARGS, "Do it.");
    save_fixture("gemini-down.stdout.jsonl", &sb, &run.stdout);
    assert_eq!(run.code, Some(1), "{}", run.dump());
    assert!(run.elapsed < Duration::from_secs(30), "{:?}", run.elapsed);
    let r = run.result();
    assert_eq!(r["status"], "error");
    assert_eq!(
        r["error"]["message"],
        "[API Error: exception TypeError: fetch failed sending request]"
    );
    let e = run.summary.error.clone().expect("error");
    assert!(e.connection_failed);
    assert_eq!(e.http_status, None);
    assert!(run.stderr.contains("Attempt 1 failed"), "{}", run.stderr);
}

#[test]
fn server_hangup_gives_up_quickly() {
    let Some(bin) = gemini_bin() else { return };
    let sb = sandbox(2);
    let fake = FakeGemini::start(vec![Turn::Hangup]);
    let run = run_gemini(&bin, &sb, &fake.env(), WORKER_ARGS, "Do it.");
    assert_eq!(run.code, Some(1), "{}", run.dump());
    assert_eq!(
        fake.turns_served(),
        2,
        "the hang-up repeats through the retry"
    );
    let e = run.summary.error.clone().expect("error");
    assert!(e.connection_failed, "{e:?}");
}

#[test]
fn without_auth_setting_the_base_url_is_rejected() {
    let Some(bin) = gemini_bin() else { return };
    let sb = sandbox(2);
    std::fs::write(sb.root.join(SETTINGS), "{}").unwrap();
    let fake = FakeGemini::start(vec![Turn::Final("unused".into())]);
    let run = run_gemini(&bin, &sb, &fake.env(), WORKER_ARGS, "Do it.");
    // GOOGLE_GEMINI_BASE_URL makes the auth type `gateway`, which validation then refuses,
    // before the stream starts: nothing on stdout.
    assert_eq!(run.code, Some(41), "{}", run.dump());
    assert_eq!(fake.server.requests().len(), 0);
    assert_eq!(run.stdout, "");
    assert!(
        run.stderr.contains("Invalid auth method selected."),
        "{}",
        run.dump()
    );
}
