//! Whole nights through nightshift with the REAL agent CLIs (installed by `npm ci` in
//! `tests/agent-clis/`) against fake model APIs served by this test suite on 127.0.0.1.
//! Skipped with a message when the CLIs are missing, unless `NIGHTSHIFT_REQUIRE_REAL_CLIS=1`
//! (`.ci/run` sets it).

use std::path::{Path, PathBuf};

use super::fake_api::openai::{self, FakeOpenAi, Turn};
use super::night::{Night, PASS, stderr};

/// The secret the tick holds; it must reach only the agent's process.
const SECRET_VAR: &str = "NIGHTSHIFT_TEST_OPENAI_SECRET";

pub fn real_cli(name: &str) -> Option<PathBuf> {
    let bin = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/agent-clis/node_modules/.bin")
        .join(name);
    if bin.exists() {
        return Some(bin);
    }
    assert!(
        std::env::var("NIGHTSHIFT_REQUIRE_REAL_CLIS").as_deref() != Ok("1"),
        "NIGHTSHIFT_REQUIRE_REAL_CLIS=1 but {} is missing (run `npm ci` in tests/agent-clis)",
        bin.display()
    );
    eprintln!(
        "SKIP: the real {name} CLI is not installed at {} (run `npm ci` in tests/agent-clis)",
        bin.display()
    );
    None
}

/// A codex agent pointed at the fake, authenticated through an `api` route.
fn codex_agent(name: &str, bin: &Path, fake: &FakeOpenAi) -> String {
    let args: Vec<String> = fake.codex_args();
    let json = serde_json::json!({
        "kind": "codex",
        "command": bin,
        "model": openai::MODEL,
        "args": args,
        "auth": { "route": "api", "env": SECRET_VAR, "pass_as": openai::KEY_VAR },
    })
    .to_string();
    format!("{name}: {json}")
}

fn config(agents: &[String], worker: &str, verifier: &str, extra: &str) -> String {
    format!(
        "version: 1\nlanes: 1\nbase: main\nagents:\n{}\ndefaults:\n  worker: {worker}\n  verifier: {verifier}\n  max_attempts: 2\n  timeouts: {{ worker: 3m, verifier: 3m, acceptance: 1m }}\npricing:\n  {}: {{ input: 1.0, output: 8.0, cache_read: 0.1, cache_write: 0.0 }}\n{extra}",
        agents
            .iter()
            .map(|a| format!("  {a}"))
            .collect::<Vec<_>>()
            .join("\n"),
        openai::MODEL
    )
}

fn envelope(stage: &str, attempt: u32) -> String {
    format!(
        "Created out.txt.\n\n```json\n{{\"version\": 1, \"stage\": \"{stage}\", \"attempt\": {attempt}, \"status\": \"done\", \"summary\": \"created out.txt\", \"files_changed\": [\"out.txt\"]}}\n```"
    )
}

fn verdict(stage: &str, attempt: u32, verdict: &str) -> String {
    format!(
        "Reviewed.\n\n```json\n{{\"version\": 1, \"stage\": \"{stage}\", \"attempt\": {attempt}, \"verdict\": \"{verdict}\", \"criteria\": [], \"findings\": [\"out.txt must say hello\"]}}\n```"
    )
}

fn night_with(config: &str) -> Night {
    let mut n = Night::with_config(config);
    n.extra_env.push((SECRET_VAR.into(), openai::KEY.into()));
    n.extra_env
        .push(("CANARY_PARENT_ONLY".into(), "canary-parent-secret".into()));
    n.init();
    n
}

/// No secret or inherited variable in any ledger file or log.
fn assert_no_leaks(n: &Night) {
    let ledger = n.git(&["log", "-p", "nightshift/ledger"]);
    for secret in [openai::KEY, "canary-parent-secret"] {
        assert!(!ledger.contains(secret), "{secret} leaked into the ledger");
        let logs = std::process::Command::new("grep")
            .args([
                "-r",
                "-l",
                secret,
                "state/logs",
                "state/handoffs",
                "state/state.yaml",
            ])
            .current_dir(&n.repo)
            .output()
            .unwrap();
        assert!(
            logs.stdout.is_empty(),
            "{secret} leaked into {}",
            String::from_utf8_lossy(&logs.stdout)
        );
    }
}

#[test]
fn real_codex_worker_then_codex_verifier_of_a_scripted_claude_worker() {
    let Some(codex) = real_cli("codex") else {
        return;
    };
    // Stage `a`: codex works (apply_patch + envelope), a scripted claude-family agent verifies.
    // Stage `b`: a scripted claude-family agent works, codex verifies (read-only).
    let fake = FakeOpenAi::start(vec![
        Turn::add_file("out.txt", "hello\n"),
        Turn::Final(envelope("a", 1)),
        Turn::Final(verdict("b", 1, "pass")),
    ]);
    let cfg = config(
        &[
            codex_agent("cx", &codex, &fake),
            "wclaude: { kind: script, family: claude }".into(),
        ],
        "cx",
        "wclaude",
        "",
    );
    let mut n = night_with(&cfg);
    let a = n.card("a", &format!("acceptance: [\"grep -q hello out.txt\"]\nscript:\n  verifier:\n    - steps:\n        - {PASS}\n"), "# Objective\nCreate out.txt saying hello.");
    let b = n.card("b", "worker: wclaude\nverifier: cx\ndepends_on: [a]\nscript:\n  worker:\n    - steps:\n        - write: { path: b.txt, content: b }\n        - envelope: { status: done, summary: wrote b.txt }\n", "# Objective\nWrite b.txt.");
    n.add(&[&a, &b]);
    n.drain(30);
    let st = n.status();
    for s in st["stages"].as_array().unwrap() {
        assert_eq!(s["status"], "done", "{st:#}");
    }
    assert_eq!(n.git(&["show", "nightshift/integration:out.txt"]), "hello");
    // Usage and cost of the real codex run are recorded per attempt and family.
    let run = &n.stage("a")["attempts"][0]["runs"][0];
    assert_eq!(run["agent"], "cx");
    assert_eq!(run["outcome"], "ok");
    assert!(run["usage"]["input"].as_u64().unwrap() > 0, "{run}");
    assert!(
        run["usd"].as_f64().unwrap() > 0.0,
        "priced from the table: {run}"
    );
    assert!(
        st["budget"]["families"]["codex"]["usage"]["output"]
            .as_u64()
            .unwrap()
            > 0,
        "{st:#}"
    );
    let verifier = &n.stage("b")["attempts"][0]["runs"][1];
    assert_eq!(
        (verifier["role"].as_str(), verifier["outcome"].as_str()),
        (Some("verifier"), Some("ok"))
    );
    // The verifier ran read-only and saw the diff.
    let reqs = fake.turn_requests();
    assert!(
        reqs.last().unwrap().json().to_string().contains("b.txt"),
        "the verifier prompt carries the diff"
    );
    assert_no_leaks(&n);
}

#[test]
fn real_codex_usage_limit_pauses_the_family_then_resumes_after_the_reset() {
    let Some(codex) = real_cli("codex") else {
        return;
    };
    let base = 1_798_765_200; // the Night clock's start, 2027-01-01T01:00:00Z
    let fake = FakeOpenAi::start(vec![
        Turn::usage_limit(base + 2 * 3600),
        Turn::add_file("out.txt", "hello\n"),
        Turn::Final(envelope("a", 2)),
    ]);
    let cfg = config(
        &[
            codex_agent("cx", &codex, &fake),
            "wclaude: { kind: script, family: claude }".into(),
        ],
        "cx",
        "wclaude",
        "",
    );
    let mut n = night_with(&cfg);
    let a = n.card("a", &format!("acceptance: [\"grep -q hello out.txt\"]\nscript:\n  verifier:\n    - steps:\n        - {PASS}\n"), "body");
    n.add(&[&a]);
    n.tick();
    n.settle();
    n.tick();
    let st = n.status();
    assert_eq!(st["stages"][0]["status"], "paused", "{st:#}");
    assert_eq!(
        st["paused"]["codex"]["until"], "2027-01-01T03:01:00Z",
        "{st:#}"
    );
    assert_eq!(st["paused"]["codex"]["reported"], true);
    assert_eq!(
        st["stages"][0]["attempts"][0]["runs"][0]["outcome"],
        "usage_limit"
    );
    assert!(
        n.ok(&["status"]).contains("PAUSED: codex"),
        "{}",
        n.ok(&["status"])
    );
    // Before the reset nothing is dispatched, however often the scheduler ticks.
    for _ in 0..3 {
        n.tick();
        n.settle();
    }
    assert_eq!(n.stage("a")["status"], "paused");
    // Past the reset the family resumes by itself; the paused attempt did not count.
    n.minute = 125;
    n.drain(20);
    let s = n.stage("a");
    assert_eq!(
        (
            s["status"].as_str(),
            s["attempt"].as_u64(),
            s["attempts_used"].as_u64()
        ),
        (Some("done"), Some(2), Some(1)),
        "{s:#}"
    );
    assert!(
        n.events()
            .iter()
            .any(|e| e == "repo: codex usage limit reset; resuming"),
        "{:#?}",
        n.events()
    );
    assert_eq!(n.status()["budget"]["consecutive_failures"], 0);
    assert_no_leaks(&n);
}

#[test]
fn real_codex_auth_failure_escalates_at_once_with_a_hint() {
    let Some(codex) = real_cli("codex") else {
        return;
    };
    let fake = FakeOpenAi::start(vec![Turn::unauthorized()]);
    let cfg = config(
        &[
            codex_agent("cx", &codex, &fake),
            "wclaude: { kind: script, family: claude }".into(),
        ],
        "cx",
        "wclaude",
        "",
    );
    let mut n = night_with(&cfg);
    let a = n.card("a", "", "body");
    n.add(&[&a]);
    n.drain(10);
    let s = n.stage("a");
    assert_eq!(s["status"], "escalated");
    assert_eq!(s["attempts_used"], 1, "an auth failure is not retried");
    assert!(
        s["reason"]
            .as_str()
            .unwrap()
            .starts_with("agent `cx` could not authenticate: unexpected status 401"),
        "{s:#}"
    );
    assert_eq!(s["attempts"][0]["runs"][0]["failure"]["kind"], "auth");
}

#[test]
fn api_route_with_its_variable_unset_fails_closed() {
    let Some(codex) = real_cli("codex") else {
        return;
    };
    let fake = FakeOpenAi::start(vec![Turn::Final(envelope("a", 1))]);
    let cfg = config(
        &[
            codex_agent("cx", &codex, &fake),
            "wclaude: { kind: script, family: claude }".into(),
        ],
        "cx",
        "wclaude",
        "",
    );
    let mut n = Night::with_config(&cfg); // no secret in the environment
    n.init();
    let a = n.card("a", "", "body");
    n.add(&[&a]);
    n.drain(10);
    let s = n.stage("a");
    assert!(
        s["reason"]
            .as_str()
            .unwrap()
            .contains(&format!("${SECRET_VAR} is not set")),
        "{s:#}"
    );
    assert!(
        fake.turn_requests().is_empty(),
        "the agent must not run at all"
    );
}

#[test]
fn real_codex_down_model_api_is_a_typed_api_error_then_retry() {
    let Some(codex) = real_cli("codex") else {
        return;
    };
    let fake = FakeOpenAi::start(vec![
        Turn::Hangup,
        Turn::add_file("out.txt", "hello\n"),
        Turn::Final(envelope("a", 2)),
    ]);
    let cfg = config(
        &[
            codex_agent("cx", &codex, &fake),
            "wclaude: { kind: script, family: claude }".into(),
        ],
        "cx",
        "wclaude",
        "",
    );
    let mut n = night_with(&cfg);
    let a = n.card(
        "a",
        &format!("script:\n  verifier:\n    - steps:\n        - {PASS}\n"),
        "body",
    );
    n.add(&[&a]);
    n.drain(20);
    let s = n.stage("a");
    assert_eq!(
        s["attempts"][0]["runs"][0]["failure"]["kind"], "api_error",
        "{s:#}"
    );
    assert_eq!(s["status"], "done", "{s:#}");
    let _ = stderr;
}
