//! Whole nights through nightshift with the REAL agent CLIs (installed by `npm ci` in
//! `tests/agent-clis/`) against fake model APIs served by this test suite on 127.0.0.1.
//! Skipped with a message when the CLIs are missing, unless `NIGHTSHIFT_REQUIRE_REAL_CLIS=1`
//! (`.ci/run` sets it).

use std::path::Path;

use super::fake_api::anthropic::{self, FakeAnthropic};
use super::fake_api::gemini::{self as gem, FakeGemini};
use super::fake_api::openai::{self, FakeOpenAi, Turn};
use super::night::{Night, PASS};
use super::real_harness::real_cli;

/// The secret the tick holds; it must reach only the agent's process.
const SECRET_VAR: &str = "NIGHTSHIFT_TEST_OPENAI_SECRET";
const CLAUDE_SECRET_VAR: &str = "NIGHTSHIFT_TEST_ANTHROPIC_SECRET";
const GEMINI_SECRET_VAR: &str = "NIGHTSHIFT_TEST_GEMINI_SECRET";

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

/// `cx`, the real codex pointed at `fake`, works; `wclaude`, a scripted claude-family agent,
/// verifies.
fn codex_config(codex: &Path, fake: &FakeOpenAi) -> String {
    config(
        &[
            codex_agent("cx", codex, fake),
            "wclaude: { kind: script, family: claude }".into(),
        ],
        "cx",
        "wclaude",
        "",
    )
}

/// Stage `a`: create out.txt saying hello (checked by acceptance).
fn hello_card(n: &Night, extra_front: &str) -> String {
    let front = format!("acceptance: [\"grep -q hello out.txt\"]\n{extra_front}");
    n.card("a", &front, "# Objective\nCreate out.txt saying hello.")
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

/// A night whose tick holds every agent's route secret (a test can push another value for one
/// variable: the later entry wins) and a parent-only canary.
fn night_with(config: &str) -> Night {
    let mut n = Night::with_config(config);
    n.extra_env.push((SECRET_VAR.into(), openai::KEY.into()));
    n.extra_env
        .push((CLAUDE_SECRET_VAR.into(), anthropic::API_KEY.into()));
    n.extra_env
        .push((GEMINI_SECRET_VAR.into(), gem::API_KEY.into()));
    n.extra_env
        .push(("CANARY_PARENT_ONLY".into(), "canary-parent-secret".into()));
    n.init();
    // `confine: strict` is the default: every real CLI below runs under the kernel ruleset.
    assert!(!config.contains("confine:"), "{config}");
    assert_eq!(n.status()["confinement"]["confined"], true);
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
    let cfg = codex_config(&codex, &fake);
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
    let cfg = codex_config(&codex, &fake);
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
    let cfg = codex_config(&codex, &fake);
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
    let cfg = codex_config(&codex, &fake);
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
fn real_codex_down_model_api_is_a_typed_api_error_retried_then_escalated() {
    let Some(codex) = real_cli("codex") else {
        return;
    };
    // The API stays down (the fake repeats its last turn): every attempt fails with a typed
    // api_error, and the stage escalates after its attempts.
    let fake = FakeOpenAi::start(vec![Turn::Hangup]);
    let cfg = codex_config(&codex, &fake);
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
    assert_eq!(s["status"], "escalated", "{s:#}");
    assert!(
        s["reason"]
            .as_str()
            .unwrap()
            .contains("model API unreachable"),
        "{s:#}"
    );
    assert_eq!(s["attempts_used"], 2, "{s:#}");
}

/// A claude agent pointed at the fake; its key (or subscription token) comes through an
/// `api` route from the tick's environment.
fn claude_agent(name: &str, bin: &Path, fake: &FakeAnthropic, pass_as: &str) -> String {
    let json = serde_json::json!({
        "kind": "claude",
        "command": bin,
        "model": "claude-sonnet-4-5",
        "env": { "ANTHROPIC_BASE_URL": fake.base_url() },
        "auth": { "route": "api", "env": CLAUDE_SECRET_VAR, "pass_as": pass_as },
    });
    format!("{name}: {json}")
}

#[test]
fn real_cross_family_night_claude_and_codex_both_ways_with_a_revise() {
    let (Some(claude), Some(codex)) = (real_cli("claude"), real_cli("codex")) else {
        return;
    };
    // a: claude works, codex verifies. b (after a): codex works, claude verifies and asks for a
    // revision once.
    let cf = FakeAnthropic::start(vec![
        anthropic::Turn::Write {
            path: "out.txt".into(),
            content: "hello\n".into(),
        },
        anthropic::Turn::Final(envelope("a", 1)),
        anthropic::Turn::Final(verdict("b", 1, "revise")),
        anthropic::Turn::Final(verdict("b", 2, "pass")),
    ]);
    let xf = FakeOpenAi::start(vec![
        Turn::Final(verdict("a", 1, "pass")),
        Turn::add_file("b.txt", "b1\n"),
        Turn::Final(envelope("b", 1)),
        Turn::add_file("b.txt", "b2\n"),
        Turn::Final(envelope("b", 2)),
    ]);
    let cfg = config(
        &[
            claude_agent("cl", &claude, &cf, "ANTHROPIC_API_KEY"),
            codex_agent("cx", &codex, &xf),
        ],
        "cl",
        "cx",
        "budget:\n  max_usd: 50\n",
    );
    let mut n = night_with(&cfg);
    let a = hello_card(&n, "");
    let b = n.card(
        "b",
        "worker: cx\ndepends_on: [a]\nacceptance: [\"test -f b.txt\"]\n",
        "# Objective\nCreate b.txt.",
    );
    n.add(&[&a, &b]);
    assert_eq!(
        n.stage("b")["verifier"],
        "cl",
        "the default verifier is of the other family"
    );
    n.drain(40);
    let st = n.status();
    assert_eq!(
        (
            st["stages"][0]["status"].as_str(),
            st["stages"][1]["status"].as_str()
        ),
        (Some("done"), Some("done")),
        "{st:#}"
    );
    assert_eq!(
        n.stage("b")["attempts_used"],
        2,
        "the revise cost one attempt"
    );
    assert!(
        n.read("state/handoffs/b/a2/worker-prompt.md")
            .contains("out.txt must say hello"),
        "findings reach the retry"
    );
    assert_eq!(n.git(&["show", "nightshift/integration:b.txt"]), "b2");
    // Both families' usage is counted, with the CLI's own cost for claude.
    let families = &st["budget"]["families"];
    for f in ["claude", "codex"] {
        assert!(
            families[f]["usage"]["input"].as_u64().unwrap_or(0) > 0,
            "{f}: {families:#}"
        );
        assert!(
            families[f]["usd"].as_f64().unwrap_or(0.0) > 0.0,
            "{f}: {families:#}"
        );
    }
    let claude_run = &n.stage("a")["attempts"][0]["runs"][0];
    assert_eq!(
        (
            claude_run["agent"].as_str(),
            claude_run["cost_reported_by_cli"].as_bool()
        ),
        (Some("cl"), Some(true)),
        "{claude_run}"
    );
    assert!(
        claude_run["usage"]["cache_read"].is_u64(),
        "cache tokens kept apart: {claude_run}"
    );
    // The deliverable is authored by the worker, with the verifier in its trailers.
    let msg = n.git(&["log", "-1", "--format=%an%n%B", "nightshift/stage/a"]);
    assert!(
        msg.starts_with("cl (nightshift worker)") && msg.contains("Nightshift-Verifier: cx"),
        "{msg}"
    );

    assert_no_leaks(&n);
    let ledger = n.git(&["log", "-p", "nightshift/ledger"]);
    assert!(
        !ledger.contains(anthropic::API_KEY),
        "the claude key leaked"
    );
}

#[test]
fn real_claude_subscription_usage_limit_pauses_until_its_reset() {
    let Some(claude) = real_cli("claude") else {
        return;
    };
    let base = 1_798_765_200; // the Night clock's start, 2027-01-01T01:00:00Z
    let cf = FakeAnthropic::start(vec![
        anthropic::Turn::usage_limit(base + 3 * 3600),
        anthropic::Turn::Write {
            path: "out.txt".into(),
            content: "hello\n".into(),
        },
        anthropic::Turn::Final(envelope("a", 2)),
    ]);
    let cfg = config(
        &[
            claude_agent("cl", &claude, &cf, "CLAUDE_CODE_OAUTH_TOKEN"),
            "vx: { kind: script, family: codex }".into(),
        ],
        "cl",
        "vx",
        "",
    );
    let mut n = night_with(&cfg);
    n.extra_env
        .push((CLAUDE_SECRET_VAR.into(), anthropic::OAUTH_TOKEN.into()));
    let a = n.card(
        "a",
        &format!("script:\n  verifier:\n    - steps:\n        - {PASS}\n"),
        "body",
    );
    n.add(&[&a]);
    n.tick();
    n.settle();
    n.tick();
    let st = n.status();
    assert_eq!(st["stages"][0]["status"], "paused", "{st:#}");
    assert_eq!(
        st["paused"]["claude"]["until"], "2027-01-01T04:00:00Z",
        "{st:#}"
    );
    n.minute = 185;
    n.drain(20);
    let s = n.stage("a");
    assert_eq!(
        (s["status"].as_str(), s["attempts_used"].as_u64()),
        (Some("done"), Some(1)),
        "{s:#}"
    );
    let ledger = n.git(&["log", "-p", "nightshift/ledger"]);
    assert!(!ledger.contains(anthropic::OAUTH_TOKEN));
}

/// A gemini agent pointed at the fake, its key through an `api` route (so it gets an
/// isolated home with the settings nightshift writes).
fn gemini_agent(name: &str, bin: &Path, fake: &FakeGemini) -> String {
    let json = serde_json::json!({
        "kind": "gemini",
        "command": bin,
        "model": gem::MODEL,
        "env": { "GOOGLE_GEMINI_BASE_URL": fake.base_url() },
        "auth": { "route": "api", "env": GEMINI_SECRET_VAR },
    });
    format!("{name}: {json}")
}

#[test]
fn real_gemini_works_and_verifies_in_a_night_with_codex() {
    let (Some(gemini), Some(codex)) = (real_cli("gemini"), real_cli("codex")) else {
        return;
    };
    // a: gemini works (write_file), codex verifies. b: codex works, gemini verifies (plan mode).
    let gf = FakeGemini::start(vec![
        gem::Turn::WriteFile {
            path: "out.txt".into(),
            content: "hello\n".into(),
        },
        gem::Turn::Final(envelope("a", 1)),
        gem::Turn::Final(verdict("b", 1, "pass")),
    ]);
    let xf = FakeOpenAi::start(vec![
        Turn::Final(verdict("a", 1, "pass")),
        Turn::add_file("b.txt", "b\n"),
        Turn::Final(envelope("b", 1)),
    ]);
    let cfg = config(
        &[
            gemini_agent("gm", &gemini, &gf),
            codex_agent("cx", &codex, &xf),
        ],
        "gm",
        "cx",
        "",
    );
    let mut n = night_with(&cfg);
    let a = hello_card(&n, "");
    let b = n.card(
        "b",
        "worker: cx\nverifier: gm\ndepends_on: [a]\nacceptance: [\"test -f b.txt\"]\n",
        "# Objective\nCreate b.txt.",
    );
    n.add(&[&a, &b]);
    n.drain(30);
    let st = n.status();
    assert_eq!(
        (
            st["stages"][0]["status"].as_str(),
            st["stages"][1]["status"].as_str()
        ),
        (Some("done"), Some("done")),
        "{st:#}"
    );
    let run = &n.stage("a")["attempts"][0]["runs"][0];
    assert_eq!(
        (run["agent"].as_str(), run["outcome"].as_str()),
        (Some("gm"), Some("ok")),
        "{run}"
    );
    assert!(run["usage"]["output"].as_u64().unwrap_or(0) > 0, "{run}");
    assert!(
        st["budget"]["families"]["gemini"]["runs"]
            .as_u64()
            .unwrap_or(0)
            == 2,
        "{st:#}"
    );
    assert_eq!(n.git(&["show", "nightshift/integration:out.txt"]), "hello");
    let ledger = n.git(&["log", "-p", "nightshift/ledger"]);
    assert!(!ledger.contains(gem::API_KEY), "the gemini key leaked");
}

#[test]
fn real_gemini_daily_quota_pauses_the_family() {
    let Some(gemini) = real_cli("gemini") else {
        return;
    };
    let gf = FakeGemini::start(vec![gem::Turn::daily_quota(gem::MODEL, 100)]);
    let cfg = config(
        &[
            gemini_agent("gm", &gemini, &gf),
            "vx: { kind: script, family: codex }".into(),
        ],
        "gm",
        "vx",
        "",
    );
    let mut n = night_with(&cfg);
    let a = n.card("a", "", "body");
    n.add(&[&a]);
    n.tick();
    n.settle();
    n.tick();
    let st = n.status();
    assert_eq!(st["stages"][0]["status"], "paused", "{st:#}");
    assert_eq!(
        st["stages"][0]["attempts"][0]["runs"][0]["outcome"], "usage_limit",
        "{st:#}"
    );
    // Midnight Pacific after the Night clock's 2027-01-01T01:00Z (17:00 PST on Dec 31).
    assert_eq!(
        st["paused"]["gemini"]["until"], "2027-01-01T08:00:00Z",
        "{st:#}"
    );
}
