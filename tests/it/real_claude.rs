//! Smoke tests of the real Claude Code CLI (tests/agent-clis, `npm ci`) against the fake
//! Anthropic API in `fake_api::anthropic`, run directly (not through nightshift): stdin
//! /dev/null, a temp git repo as cwd, HOME / CLAUDE_CONFIG_DIR / CLAUDE_CODE_TMPDIR inside the
//! temp dir, nothing else inherited but PATH. Skipped (with a message) when the binary is not
//! installed (`NIGHTSHIFT_CLAUDE_BIN` overrides its path), unless
//! `NIGHTSHIFT_REQUIRE_REAL_CLIS=1`. The sandbox, the time-limited run, fixture capture and
//! the environment switches are `real_harness`'s.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use super::fake_api::anthropic::{FakeAnthropic, Turn};
use super::real_harness::{Lines, Run, Sandbox, dead_port_url, now_unix, real_cli, save_fixture};

const MODEL: &str = "claude-sonnet-4-5";
const WORKER_ARGS: &[&str] = &[
    "--permission-mode",
    "acceptEdits",
    "--allowedTools",
    "Bash,Read,Edit,Write,Glob,Grep",
];
const VERIFIER_ARGS: &[&str] = &["--permission-mode", "plan"];

/// The installed binary, or `None` after printing why the test is skipped.
fn claude_bin() -> Option<PathBuf> {
    real_cli("claude")
}

/// Runs `claude -p PROMPT --output-format stream-json --verbose --model MODEL ARGS…` in the
/// sandbox's repo with `env` (plus HOME, CLAUDE_CONFIG_DIR, CLAUDE_CODE_TMPDIR and PATH).
fn run_claude(
    bin: &Path,
    sb: &Sandbox,
    env: &[(String, String)],
    args: &[&str],
    prompt: &str,
) -> Run {
    let mut cmd = sb.command(bin);
    cmd.args([
        "-p",
        prompt,
        "--output-format",
        "stream-json",
        "--verbose",
        "--model",
        MODEL,
    ])
    .args(args)
    .env("CLAUDE_CONFIG_DIR", sb.root.join("config"))
    .env("CLAUDE_CODE_TMPDIR", sb.root.join("tmp"))
    .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    sb.run(&format!("claude {args:?}"), cmd, Lines::Json)
}

fn with(mut env: Vec<(String, String)>, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env
}

fn log_requests(fake: &FakeAnthropic) {
    for r in fake.server.requests() {
        let b = r.json();
        eprintln!(
            "  {} {} stream={} tools={} model={}",
            r.method,
            r.path,
            b["stream"],
            b["tools"].as_array().map_or(0, Vec::len),
            b["model"]
        );
    }
}

const HANDOFF: &str = "Done: wrote notes.md and bash.txt.\n\n```json\n{\"handoff\": {\"version\": 1, \"status\": \"done\", \"summary\": \"wrote notes.md\", \"files_changed\": [\"notes.md\", \"bash.txt\"]}}\n```";

#[test]
fn worker_writes_files_and_reports_usage() {
    let Some(bin) = claude_bin() else { return };
    let sb = Sandbox::new(&["config"]);
    let fake = FakeAnthropic::start(vec![
        Turn::Write {
            path: "notes.md".into(),
            content: "written by the Write tool\n".into(),
        },
        Turn::Bash {
            command: "echo from-bash > bash.txt && git status --short".into(),
        },
        Turn::Final(HANDOFF.into()),
    ]);
    let run = run_claude(
        &bin,
        &sb,
        &with(fake.env(), &[("CLAUDE_CODE_MAX_RETRIES", "1")]),
        WORKER_ARGS,
        "Write notes.md.",
    );
    log_requests(&fake);
    assert_eq!(run.code, Some(0), "{}", run.dump());
    assert!(run.elapsed < Duration::from_secs(60));
    assert_eq!(sb.read("notes.md"), "written by the Write tool\n");
    assert_eq!(sb.read("bash.txt"), "from-bash\n");

    let init = run
        .of_subtype("system", "init")
        .next()
        .expect("system/init");
    assert_eq!(init["permissionMode"], "acceptEdits");
    assert_eq!(init["model"], MODEL);
    assert_eq!(init["apiKeySource"], "ANTHROPIC_API_KEY");
    let write = run
        .of_type("assistant")
        .find(|l| l["message"]["content"][0]["name"] == "Write")
        .unwrap();
    let file_path = write["message"]["content"][0]["input"]["file_path"]
        .as_str()
        .unwrap();
    assert_eq!(
        Path::new(file_path),
        sb.repo.canonicalize().unwrap().join("notes.md")
    );
    let r = run.result();
    assert_eq!(r["is_error"], false, "{r}");
    assert_eq!(r["terminal_reason"], "completed");
    assert_eq!(r["num_turns"], 3);
    assert!(
        r["result"]
            .as_str()
            .unwrap()
            .contains("```json\n{\"handoff\""),
        "{r}"
    );
    assert_eq!(r["permission_denials"], serde_json::json!([]), "{r}");
    let u = &r["usage"];
    for k in [
        "input_tokens",
        "output_tokens",
        "cache_read_input_tokens",
        "cache_creation_input_tokens",
    ] {
        assert!(u[k].as_u64().unwrap() > 0, "usage.{k} is zero: {u}");
    }
    assert!(r["total_cost_usd"].as_f64().unwrap() > 0.0, "{r}");
    assert!(
        r["modelUsage"][MODEL]["costUSD"].as_f64().unwrap() > 0.0,
        "{r}"
    );
    assert_eq!(fake.turns_served(), 3);
    assert!(
        fake.auxiliary_requests().is_empty(),
        "unexpected requests: {:?}",
        fake.auxiliary_requests()
    );
    // The tool results went back to the model.
    let last_req = fake.main_requests().last().unwrap().json();
    assert!(last_req.to_string().contains("tool_result"));
}

#[test]
fn verifier_in_plan_mode_reads_but_cannot_write() {
    let Some(bin) = claude_bin() else { return };
    let sb = Sandbox::new(&["config"]);
    let verdict = "Review complete.\n\n```json\n{\"handoff\": {\"version\": 1, \"status\": \"done\", \"verdict\": \"pass\", \"findings\": []}}\n```";
    let fake = FakeAnthropic::start(vec![
        Turn::Bash {
            command: "git log --oneline -1".into(),
        },
        Turn::Write {
            path: "review.txt".into(),
            content: "must be refused\n".into(),
        },
        Turn::Final(verdict.into()),
    ]);
    let run = run_claude(
        &bin,
        &sb,
        &with(fake.env(), &[("CLAUDE_CODE_MAX_RETRIES", "1")]),
        VERIFIER_ARGS,
        "Review the change.",
    );
    log_requests(&fake);
    assert_eq!(run.code, Some(0), "{}", run.dump());
    assert!(
        !sb.repo.join("review.txt").exists(),
        "plan mode let Write through"
    );
    let init = run
        .of_subtype("system", "init")
        .next()
        .expect("system/init");
    assert_eq!(init["permissionMode"], "plan");
    let r = run.result();
    assert_eq!(r["is_error"], false, "{r}");
    assert!(
        r["result"]
            .as_str()
            .unwrap()
            .contains("\"verdict\": \"pass\""),
        "{r}"
    );
    let denied: Vec<&str> = r["permission_denials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["tool_name"].as_str().unwrap())
        .collect();
    assert_eq!(denied, ["Write"], "{r}");
    assert!(
        run.of_subtype("system", "permission_denied")
            .any(|l| l["tool_name"] == "Write")
    );
    // The read-only git command ran: its output went back to the model.
    assert!(
        fake.main_requests()[1].json().to_string().contains(" init"),
        "git log output missing"
    );
}

#[test]
fn subscription_usage_limit_reports_reset_time() {
    let Some(bin) = claude_bin() else { return };
    let sb = Sandbox::new(&["config"]);
    let reset = now_unix() + 2 * 3600;
    let fake = FakeAnthropic::start(vec![
        Turn::Write {
            path: "notes.md".into(),
            content: "first step\n".into(),
        },
        Turn::usage_limit(reset),
    ]);
    let env = with(fake.env_subscriber(), &[("CLAUDE_CODE_MAX_RETRIES", "2")]);
    let run = run_claude(&bin, &sb, &env, WORKER_ARGS, "Write notes.md.");
    log_requests(&fake);
    save_fixture("claude-usage-limit.stdout.jsonl", &sb, &run.stdout);
    assert_eq!(run.code, Some(1), "{}", run.dump());
    assert!(run.elapsed < Duration::from_secs(30));
    assert_eq!(fake.turns_served(), 2, "a usage limit must not be retried");
    assert_eq!(run.of_subtype("system", "api_retry").count(), 0);
    // A subscriber's successful turn is followed by a rate_limit_event with status "allowed".
    let events: Vec<&Value> = run.of_type("rate_limit_event").collect();
    assert_eq!(
        events[0]["rate_limit_info"]["status"],
        "allowed",
        "{}",
        run.dump()
    );
    let ev = events.last().unwrap();
    let info = &ev["rate_limit_info"];
    assert_eq!(info["status"], "rejected");
    assert_eq!(info["resetsAt"], reset);
    assert_eq!(info["rateLimitType"], "five_hour");
    let r = run.result();
    assert_eq!(r["is_error"], true);
    assert_eq!(r["terminal_reason"], "api_error");
    assert_eq!(r["api_error_status"], 429);
    assert_eq!(r["api_error_type"], "rate_limit_error");
    assert_eq!(r["api_error"], "usage_limit_reached");
    let text = r["result"].as_str().unwrap();
    assert!(
        text.starts_with("You've hit your 5-hour limit · resets "),
        "{text}"
    );
    // Usage of the turn that did run is kept.
    assert!(r["usage"]["input_tokens"].as_u64().unwrap() > 0, "{r}");
    let msg = run.of_type("assistant").last().unwrap();
    assert_eq!(msg["error"], "rate_limit");
    assert_eq!(
        msg["api_error_params"]["rate_limit_info"]["resetsAt"],
        reset
    );
}

#[test]
fn api_key_rate_limit_has_no_reset_time() {
    let Some(bin) = claude_bin() else { return };
    let sb = Sandbox::new(&["config"]);
    let reset = now_unix() + 2 * 3600;
    let fake = FakeAnthropic::start(vec![Turn::usage_limit(reset)]);
    let run = run_claude(
        &bin,
        &sb,
        &with(fake.env(), &[("CLAUDE_CODE_MAX_RETRIES", "2")]),
        WORKER_ARGS,
        "Do it.",
    );
    log_requests(&fake);
    assert_eq!(run.code, Some(1), "{}", run.dump());
    assert_eq!(
        fake.turns_served(),
        1,
        "a long retry-after must not be retried"
    );
    assert_eq!(run.of_type("rate_limit_event").count(), 0);
    let r = run.result();
    assert_eq!(r["is_error"], true);
    assert_eq!(r["api_error_status"], 429);
    assert_eq!(r["api_error_type"], "rate_limit_error");
    assert!(r.get("api_error").is_none(), "{r}");
    assert_eq!(
        r["result"],
        "API Error: Request rejected (429) · This request would exceed your account's rate limit. Please try again later."
    );
}

#[test]
fn short_throttle_is_retried_then_succeeds() {
    let Some(bin) = claude_bin() else { return };
    let sb = Sandbox::new(&["config"]);
    let fake = FakeAnthropic::start(vec![Turn::rate_limited(1), Turn::Final("all good".into())]);
    let run = run_claude(
        &bin,
        &sb,
        &with(fake.env(), &[("CLAUDE_CODE_MAX_RETRIES", "2")]),
        WORKER_ARGS,
        "Do it.",
    );
    assert_eq!(run.code, Some(0), "{}", run.dump());
    let retry = run
        .of_subtype("system", "api_retry")
        .next()
        .expect("api_retry");
    assert_eq!(retry["error_status"], 429);
    assert_eq!(retry["error"], "rate_limit");
    assert!(
        retry["retry_delay_ms"].as_u64().unwrap() >= 1000,
        "retry-after ignored: {retry}"
    );
    let r = run.result();
    assert_eq!(r["is_error"], false);
    assert_eq!(r["result"], "all good");
}

#[test]
fn auth_failure_401() {
    let Some(bin) = claude_bin() else { return };
    let sb = Sandbox::new(&["config"]);
    let fake = FakeAnthropic::start(vec![Turn::auth_failed()]);
    let run = run_claude(
        &bin,
        &sb,
        &with(fake.env(), &[("CLAUDE_CODE_MAX_RETRIES", "1")]),
        WORKER_ARGS,
        "Do it.",
    );
    log_requests(&fake);
    save_fixture("claude-auth-401.stdout.jsonl", &sb, &run.stdout);
    assert_eq!(run.code, Some(1), "{}", run.dump());
    assert_eq!(
        fake.turns_served(),
        2,
        "401 is retried CLAUDE_CODE_MAX_RETRIES times"
    );
    let retry = run
        .of_subtype("system", "api_retry")
        .next()
        .expect("api_retry");
    assert_eq!(retry["error_status"], 401);
    assert_eq!(retry["error"], "authentication_failed");
    let msg = run.of_type("assistant").last().unwrap();
    assert_eq!(msg["error"], "authentication_failed");
    let r = run.result();
    assert_eq!(r["is_error"], true);
    assert_eq!(r["terminal_reason"], "api_error");
    assert_eq!(r["api_error_status"], 401);
    assert_eq!(r["api_error_type"], "authentication_error");
    assert_eq!(r["result"], "Invalid API key · Fix external API key");
}

#[test]
fn server_down_gives_up_quickly() {
    let Some(bin) = claude_bin() else { return };
    let sb = Sandbox::new(&["config"]);
    let base = dead_port_url();
    let env = with(
        FakeAnthropic::env_for(
            &base,
            ("ANTHROPIC_API_KEY", super::fake_api::anthropic::API_KEY),
        ),
        &[("CLAUDE_CODE_MAX_RETRIES", "2")],
    );
    let run = run_claude(&bin, &sb, &env, WORKER_ARGS, "Do it.");
    save_fixture("claude-down.stdout.jsonl", &sb, &run.stdout);
    assert_eq!(run.code, Some(1), "{}", run.dump());
    assert!(run.elapsed < Duration::from_secs(30), "{:?}", run.elapsed);
    let retries: Vec<&Value> = run.of_subtype("system", "api_retry").collect();
    assert_eq!(retries.len(), 2);
    assert!(
        retries
            .iter()
            .all(|r| r["error_status"].is_null() && r["error"] == "unknown")
    );
    let r = run.result();
    assert_eq!(r["is_error"], true);
    assert_eq!(r["terminal_reason"], "api_error");
    assert!(r["api_error_status"].is_null());
    assert_eq!(r["api_error"], "connection_failed");
    assert!(
        r["result"].as_str().unwrap().contains("ECONNREFUSED"),
        "{r}"
    );
}

#[test]
fn server_hangup_gives_up_quickly() {
    let Some(bin) = claude_bin() else { return };
    let sb = Sandbox::new(&["config"]);
    let fake = FakeAnthropic::start(vec![Turn::Hangup]);
    let run = run_claude(
        &bin,
        &sb,
        &with(fake.env(), &[("CLAUDE_CODE_MAX_RETRIES", "1")]),
        WORKER_ARGS,
        "Do it.",
    );
    assert_eq!(run.code, Some(1), "{}", run.dump());
    assert_eq!(
        fake.turns_served(),
        2,
        "the hang-up repeats through the retry"
    );
    let r = run.result();
    assert_eq!(r["is_error"], true);
    assert_eq!(r["api_error"], "connection_failed");
    assert!(r["result"].as_str().unwrap().contains("ECONNRESET"), "{r}");
}
