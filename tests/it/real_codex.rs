//! The real Codex CLI (`tests/agent-clis`, `npm install`) against the fake OpenAI Responses
//! API in `fake_api/openai.rs`, run directly (not through nightshift): stdin /dev/null, a temp
//! git repo as `-C`, HOME / CODEX_HOME / TMPDIR inside the temp dir, nothing else inherited but
//! PATH. Skipped when the binary is missing, unless `NIGHTSHIFT_REQUIRE_REAL_CLIS=1`.
//! `NIGHTSHIFT_CODEX_BIN` overrides the binary. The sandbox, the time-limited run, fixture
//! capture and the environment switches are `real_harness`'s.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use super::fake_api::openai::{self, FakeOpenAi, Turn};
use super::real_harness::{Lines, Run, Sandbox, now_unix, real_cli, save_fixture};

fn codex_bin() -> Option<PathBuf> {
    real_cli("codex")
}

fn run_codex(
    bin: &Path,
    sb: &Sandbox,
    fake: &FakeOpenAi,
    mode: &str,
    extra: &[&str],
    prompt: &str,
) -> Run {
    let mut cmd = sb.command(bin);
    cmd.arg("exec")
        .arg("--json")
        .arg("-C")
        .arg(&sb.repo)
        .args(["--sandbox", mode])
        .args(fake.codex_args())
        .args(extra)
        .arg(prompt)
        .env("CODEX_HOME", sb.root.join("home/.codex"))
        .envs(fake.env());
    let run = sb.run(
        &format!("codex exec --sandbox {mode}"),
        cmd,
        Lines::JsonOnly,
    );
    for r in fake.aux_requests() {
        eprintln!("auxiliary request: {} {}", r.method, r.path);
    }
    run
}

fn turn_failed_message(run: &Run) -> String {
    let last = run.last();
    assert_eq!(last["type"], "turn.failed", "{}", run.dump());
    assert!(
        last.get("usage").is_none(),
        "a failed turn has no usage: {last}"
    );
    last["error"]["message"]
        .as_str()
        .expect("turn.failed.error.message")
        .to_owned()
}

const WORKER_FINAL: &str = "Done: created out.txt and notes.md.\n\n```json\n{\"handoff\": {\"version\": 1, \"status\": \"done\", \"summary\": \"created out.txt and notes.md\", \"files_changed\": [\"out.txt\", \"notes.md\"]}}\n```";

#[test]
fn codex_worker_writes_files_and_reports_usage() {
    let Some(bin) = codex_bin() else { return };
    let sb = Sandbox::new(&["home/.codex"]);
    let fake = FakeOpenAi::start(vec![
        Turn::shell("echo hello > out.txt"),
        Turn::add_file("notes.md", "some notes"),
        Turn::Final(WORKER_FINAL.to_owned()),
    ]);
    let last_msg = sb.root.join("last-message.txt");
    let run = run_codex(
        &bin,
        &sb,
        &fake,
        "workspace-write",
        &["-o", last_msg.to_str().unwrap()],
        "Create out.txt and notes.md.",
    );

    assert_eq!(run.code, Some(0), "{}", run.dump());
    assert_eq!(sb.read("out.txt"), "hello\n");
    assert_eq!(sb.read("notes.md"), "some notes\n");

    assert_eq!(run.lines[0]["type"], "thread.started", "{}", run.dump());
    let cmds = run.items("item.completed", "command_execution");
    assert_eq!(cmds.len(), 1, "{}", run.dump());
    assert_eq!(
        cmds[0]["command"],
        "/bin/bash -lc 'echo hello > out.txt'",
        "{}",
        run.dump()
    );
    assert_eq!(cmds[0]["exit_code"], 0);
    assert_eq!(cmds[0]["status"], "completed");
    let changes = run.items("item.completed", "file_change");
    assert_eq!(changes.len(), 1, "{}", run.dump());
    assert_eq!(changes[0]["changes"][0]["kind"], "add");
    assert!(
        changes[0]["changes"][0]["path"]
            .as_str()
            .unwrap()
            .ends_with("/notes.md")
    );
    let msgs = run.items("item.completed", "agent_message");
    assert_eq!(msgs.last().unwrap()["text"], WORKER_FINAL);
    assert_eq!(std::fs::read_to_string(&last_msg).unwrap(), WORKER_FINAL);

    // Usage: summed over the three model requests of the turn.
    let done = run.last();
    assert_eq!(done["type"], "turn.completed", "{}", run.dump());
    let u = openai::USAGE;
    assert_eq!(done["usage"]["input_tokens"], 3 * u.input);
    assert_eq!(done["usage"]["cached_input_tokens"], 3 * u.cached);
    assert_eq!(done["usage"]["output_tokens"], 3 * u.output);
    assert_eq!(done["usage"]["reasoning_output_tokens"], 3 * u.reasoning);

    // What codex sent.
    let reqs = fake.turn_requests();
    assert_eq!(reqs.len(), 3);
    for r in &reqs {
        assert_eq!(r.path, "/v1/responses");
        assert_eq!(
            r.header("authorization"),
            Some(format!("Bearer {}", openai::KEY).as_str())
        );
        assert_eq!(
            r.header("content-encoding"),
            None,
            "request bodies must be plain JSON"
        );
        assert_eq!(r.json()["stream"], true);
        assert_eq!(r.json()["model"], openai::MODEL);
    }
    let tools: Vec<String> = reqs[0].json()["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str().map(str::to_owned))
        .collect();
    assert!(
        tools.contains(&"exec_command".to_owned()) && tools.contains(&"apply_patch".to_owned()),
        "{tools:?}"
    );
    let input = reqs[1].json()["input"].clone();
    let output = input
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["type"] == "function_call_output")
        .expect("function_call_output");
    assert_eq!(output["call_id"], "call_0");
    assert!(input.to_string().contains("Create out.txt and notes.md."));
    let input = reqs[2].json()["input"].clone();
    assert!(
        input
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["type"] == "custom_tool_call_output" && i["call_id"] == "call_1")
    );
    assert!(fake.aux_requests().is_empty(), "{:?}", fake.aux_requests());
}

#[test]
fn codex_read_only_verifier_cannot_write_and_answers_in_its_final_message() {
    let Some(bin) = codex_bin() else { return };
    let sb = Sandbox::new(&["home/.codex"]);
    let verdict = "Review complete.\n\n```json\n{\"handoff\": {\"version\": 1, \"status\": \"done\", \"verdict\": \"pass\", \"findings\": []}}\n```";
    let fake = FakeOpenAi::start(vec![
        Turn::shell("git log --oneline && cat README.md"),
        Turn::shell("echo tampered > review.txt"),
        Turn::Final(verdict.to_owned()),
    ]);
    let last_msg = sb.root.join("last-message.txt");
    let run = run_codex(
        &bin,
        &sb,
        &fake,
        "read-only",
        &["-o", last_msg.to_str().unwrap()],
        "Review the work.",
    );

    assert_eq!(run.code, Some(0), "{}", run.dump());
    assert!(
        !sb.repo.join("review.txt").exists(),
        "the read-only sandbox let a write through"
    );
    let reqs = fake.turn_requests();
    assert_eq!(reqs.len(), 3, "{}", run.dump());
    let denied = reqs[2].json()["input"].to_string();
    assert!(denied.contains("Read-only file system"), "{denied}");

    let cmds = run.items("item.completed", "command_execution");
    assert!(
        cmds.iter().any(|c| c["aggregated_output"]
            .as_str()
            .unwrap_or("")
            .contains("hello readme")),
        "{}",
        run.dump()
    );
    // Observed with 0.169.0: the command the sandbox refused gets no command_execution item.
    eprintln!("command_execution items: {}", cmds.len());
    assert_eq!(
        run.items("item.completed", "agent_message").last().unwrap()["text"],
        verdict
    );
    assert_eq!(std::fs::read_to_string(&last_msg).unwrap(), verdict);
    assert_eq!(run.last()["type"], "turn.completed");
}

#[test]
fn codex_usage_limit_fails_fast_with_the_reset_time() {
    let Some(bin) = codex_bin() else { return };
    let sb = Sandbox::new(&["home/.codex"]);
    let resets_at = now_unix() + 2 * 3600 + 17 * 60;
    let fake = FakeOpenAi::start(vec![Turn::usage_limit(resets_at)]);
    let run = run_codex(&bin, &sb, &fake, "workspace-write", &[], "Do the task.");
    save_fixture("codex-usage-limit.stdout.jsonl", &sb, &run.stdout);

    assert_eq!(run.code, Some(1), "{}", run.dump());
    let msg = turn_failed_message(&run);
    // "You’ve hit your usage limit. Upgrade to Pro (…), visit … or try again at 8:05 PM."
    // (curly apostrophe; reset time in local time = TZ, minute precision, date prefixed as
    // "Nov 23rd, 2026 " when not today)
    assert!(
        msg.starts_with("You\u{2019}ve hit your usage limit."),
        "{msg}"
    );
    let secs = resets_at.rem_euclid(86_400);
    let (h, m) = (secs / 3600, secs % 3600 / 60);
    let clock = format!(
        "{}:{m:02} {}",
        if h % 12 == 0 { 12 } else { h % 12 },
        if h < 12 { "AM" } else { "PM" }
    );
    assert!(
        msg.contains(&format!("try again at {clock}.")) || msg.contains(&format!(" {clock}.")),
        "{msg} / {clock}"
    );
    // Same text as an `error` event just before, no retries.
    let errors: Vec<&Value> = run.of_type("error").collect();
    assert_eq!(errors.len(), 1, "{}", run.dump());
    assert_eq!(errors[0]["message"], msg.as_str());
    assert_eq!(
        fake.turn_requests().len(),
        1,
        "a usage limit is not retried"
    );
    assert!(run.elapsed < Duration::from_secs(30), "{:?}", run.elapsed);
}

#[test]
fn codex_unauthorized_fails_after_bounded_retries() {
    let Some(bin) = codex_bin() else { return };
    let sb = Sandbox::new(&["home/.codex"]);
    let fake = FakeOpenAi::start(vec![Turn::unauthorized()]);
    let run = run_codex(&bin, &sb, &fake, "workspace-write", &[], "Do the task.");
    save_fixture("codex-auth-401.stdout.jsonl", &sb, &run.stdout);

    assert_eq!(run.code, Some(1), "{}", run.dump());
    let msg = turn_failed_message(&run);
    assert!(
        msg.starts_with("unexpected status 401 Unauthorized: Incorrect API key provided"),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("url: {}/responses", fake.base_url())),
        "{msg}"
    );
    // stream_max_retries=1: one "Reconnecting... 1/1 (…)" notice, then the final error.
    let errors: Vec<&Value> = run.of_type("error").collect();
    assert_eq!(errors.len(), 2, "{}", run.dump());
    assert_eq!(errors[0]["message"], format!("Reconnecting... 1/1 ({msg})"));
    assert_eq!(
        fake.turn_requests().len(),
        2,
        "401 is retried per stream retry, not per transport retry"
    );
    assert!(run.elapsed < Duration::from_secs(30), "{:?}", run.elapsed);
}

#[test]
fn codex_gives_up_on_a_server_that_is_down() {
    let Some(bin) = codex_bin() else { return };
    let sb = Sandbox::new(&["home/.codex"]);
    let fake = FakeOpenAi::start(vec![]);
    fake.shut_down();
    let run = run_codex(&bin, &sb, &fake, "workspace-write", &[], "Do the task.");
    save_fixture("codex-down.stdout.jsonl", &sb, &run.stdout);

    assert_eq!(run.code, Some(1), "{}", run.dump());
    let msg = turn_failed_message(&run);
    assert_eq!(
        msg,
        "Connection failed: error sending request",
        "{}",
        run.dump()
    );
    assert_eq!(
        run.of_type("error").next().unwrap()["message"],
        format!("Reconnecting... 1/1 ({msg})")
    );
    assert!(run.elapsed < Duration::from_secs(60), "{:?}", run.elapsed);
}

#[test]
fn codex_reports_a_hang_up_as_a_disconnected_stream() {
    let Some(bin) = codex_bin() else { return };
    let sb = Sandbox::new(&["home/.codex"]);
    let fake = FakeOpenAi::start(vec![Turn::Hangup]);
    let run = run_codex(&bin, &sb, &fake, "read-only", &[], "Do the task.");

    assert_eq!(run.code, Some(1), "{}", run.dump());
    let msg = turn_failed_message(&run);
    assert_eq!(
        msg,
        "stream disconnected before completion: error sending request",
        "{}",
        run.dump()
    );
    // Two attempts per stream try (request_max_retries=1), two stream tries.
    assert_eq!(fake.turn_requests().len(), 4, "{}", run.dump());
}

#[test]
fn codex_retries_a_rate_limit_that_says_when_to_retry() {
    let Some(bin) = codex_bin() else { return };
    let sb = Sandbox::new(&["home/.codex"]);
    // Without `retry-after` codex gives up at once ("exceeded retry limit, last status: 429
    // Too Many Requests"); with it, it sleeps that long (uncapped) and reconnects.
    let fake = FakeOpenAi::start(vec![
        Turn::rate_limited(Some(1)),
        Turn::Final("recovered".to_owned()),
    ]);
    let run = run_codex(&bin, &sb, &fake, "read-only", &[], "Do the task.");

    assert_eq!(run.code, Some(0), "{}", run.dump());
    let errors: Vec<&Value> = run.of_type("error").collect();
    assert_eq!(errors.len(), 1, "{}", run.dump());
    assert_eq!(
        errors[0]["message"],
        "Reconnecting... 1/1 (exceeded retry limit, last status: 429 Too Many Requests)"
    );
    assert_eq!(
        run.items("item.completed", "agent_message").last().unwrap()["text"],
        "recovered"
    );
    assert_eq!(run.last()["type"], "turn.completed");
    assert_eq!(fake.turn_requests().len(), 2);
}

/// Under nightshift's kernel ruleset codex's own bubblewrap sandbox cannot start: every tool
/// call fails while codex exits 0 with `turn.completed`. nightshift therefore runs codex with
/// `danger-full-access` when confined, and a run whose tool calls all failed is typed
/// `tools_failed`, never a clean result (fixture `codex-sandbox-in-landlock.stdout.jsonl`,
/// captured with `NIGHTSHIFT_UPDATE_FIXTURES=1`).
#[test]
fn codex_own_sandbox_inside_landlock_fails_every_tool_call_and_is_typed() {
    let Some(bin) = codex_bin() else { return };
    let sb = Sandbox::new(&["home/.codex"]);
    let fake = FakeOpenAi::start(vec![
        Turn::shell("echo hello > out.txt"),
        Turn::add_file("notes.md", "some notes"),
        Turn::Final(WORKER_FINAL.to_owned()),
    ]);
    let mut grants = nightshift::confine::Grants::default();
    for d in ["repo", "tmp", "home/.codex"] {
        grants.dir(&sb.root.join(d)).unwrap();
    }
    let confined = |mut cmd: std::process::Command| {
        nightshift::confine::prepare(&grants)
            .unwrap()
            .apply(&mut cmd);
        cmd
    };
    let mut cmd = sb.command(&bin);
    cmd.arg("exec")
        .arg("--json")
        .arg("-C")
        .arg(&sb.repo)
        .args(["--sandbox", "workspace-write"])
        .args(fake.codex_args())
        .arg("Create out.txt.")
        .env("CODEX_HOME", sb.root.join("home/.codex"))
        .envs(fake.env());
    let run = sb.run(
        "codex exec --sandbox workspace-write, inside Landlock",
        confined(cmd),
        Lines::JsonOnly,
    );
    save_fixture("codex-sandbox-in-landlock.stdout.jsonl", &sb, &run.stdout);
    // Measured (codex 0.169): the shell call that bubblewrap refused leaves no event at all in
    // the stream (only the model sees `bwrap: setting up uid map: Permission denied`, or, on
    // a machine where codex cannot even set bubblewrap up under the ruleset, `error building
    // bubblewrap command: Permission denied`); the patch shows as a `file_change` item with
    // `status: failed`.
    let reqs = fake.turn_requests();
    let last_input = reqs.last().unwrap().json()["input"].to_string();
    assert!(
        last_input.contains("bwrap") || last_input.contains("bubblewrap"),
        "{last_input}"
    );
    assert!(run.items("item.completed", "command_execution").is_empty());
    let changes = run.items("item.completed", "file_change");
    assert_eq!(changes.len(), 1, "{}", run.dump());
    assert_eq!(changes[0]["status"], "failed");
    assert_eq!(run.code, Some(0), "{}", run.dump());
    assert_eq!(run.last()["type"], "turn.completed", "{}", run.dump());
    assert!(!sb.repo.join("out.txt").exists(), "{}", run.dump());
    let summary = nightshift::agent::codex::parse_stream(run.stdout.as_bytes());
    assert!(summary.tool_calls > 0, "{}", run.dump());
    let failure = nightshift::agent::codex::classify_codex(
        &summary,
        nightshift::agent::ExitInfo {
            code: run.code,
            signal: None,
            timed_out: false,
        },
        jiff::Timestamp::now(),
    );
    assert!(
        matches!(
            failure,
            Some(nightshift::agent::failure::AgentFailure::ToolsFailed { .. })
        ),
        "{failure:?}\n{}",
        run.dump()
    );
}
