//! The real aider (aider-chat 0.86.2 in `tests/agent-clis/.venv`, installed by `.ci/run`)
//! driven by nightshift as an `aider` agent against the fake Chat Completions API in
//! `fake_api/chat.rs`, confined by the kernel ruleset like every real CLI here. Skipped when
//! it is missing, unless `NIGHTSHIFT_REQUIRE_REAL_CLIS=1`; `NIGHTSHIFT_AIDER_BIN` overrides it.
//!
//! aider retries a 429 for over a minute on its own (eight sleeps doubling up to 32 s, each
//! attempt retried by the SDK too), so the 429 cases replay recorded real output
//! (`tests/fixtures/agent-cli-output/aider/fail-429-*`) through nightshift with a stand-in
//! executable (these run without aider installed), besides the unit tests in `agent::aider`;
//! 401 and 404 fail on the first request and run the real aider here.

use std::path::Path;

use super::fake_api::chat::{self, FakeChat, Turn};
use super::night::{Night, PASS};
use super::real_harness::real_cli;

/// The secret the tick holds; only aider's process gets it, as `OPENAI_API_KEY`.
const SECRET_VAR: &str = "NIGHTSHIFT_TEST_AIDER_SECRET";

/// `ai`, the real aider (family `gpt`) pointed at `fake`; `wclaude`, a scripted agent of
/// another family, verifies its work and works for it to verify.
fn config(bin: &Path, fake: &FakeChat) -> String {
    let agent = serde_json::json!({
        "kind": "aider",
        "command": bin,
        "family": "gpt",
        "model": chat::MODEL,
        "args": ["--openai-api-base", fake.api_base(), "--timeout", "20"],
        "auth": { "route": "api", "env": SECRET_VAR, "pass_as": chat::KEY_VAR },
    });
    format!(
        "version: 1\nlanes: 1\nbase: main\nagents:\n  ai: {agent}\n  wclaude: {{ kind: script, family: claude }}\ndefaults:\n  worker: ai\n  verifier: wclaude\n  max_attempts: 2\n  timeouts: {{ worker: 3m, verifier: 3m, acceptance: 1m }}\npricing:\n  {}: {{ input: 1.0, output: 8.0, cache_read: 0.0, cache_write: 0.0 }}\n",
        chat::MODEL
    )
}

fn night(bin: &Path, fake: &FakeChat) -> Night {
    let mut n = Night::with_config(&config(bin, fake));
    n.extra_env.push((SECRET_VAR.into(), chat::KEY.into()));
    n.init();
    assert_eq!(n.status()["confinement"]["confined"], true);
    n
}

/// The demo stage's worker reply in aider's `diff` format: create hello.txt, then the
/// handoff.
fn worker_reply() -> String {
    "I will create the file.\n\nhello.txt\n```\n<<<<<<< SEARCH\n=======\nhello, night\n>>>>>>> REPLACE\n```\n\n```json\n{\"version\": 1, \"stage\": \"hello\", \"attempt\": 1, \"status\": \"done\", \"summary\": \"greeted the night\", \"files_changed\": [\"hello.txt\"]}\n```".into()
}

/// The exit code of stage `a`'s first worker run, from its sealed outcome.
fn worker_exit(n: &Night) -> Option<i64> {
    let outcome: serde_json::Value =
        serde_json::from_str(&n.read("state/handoffs/a/a1/worker.json")).unwrap();
    outcome["result"]["run"]["exit"].as_i64()
}

fn hello_card(n: &Night) -> String {
    n.card(
        "a",
        &format!(
            "acceptance: [\"grep -q hello out.txt\"]\nscript:\n  verifier:\n    - steps:\n        - {PASS}\n"
        ),
        "# Objective\nCreate out.txt saying hello.",
    )
}

/// The demo's first stage (`stage-cards/hello.md`, as `nightshift demo` runs it), committed
/// into `n`'s repository: its worker is the default one (aider), its verifier the card's
/// scripted pass.
fn demo_hello_card(n: &Night) -> String {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("stage-cards/hello.md"))
            .unwrap();
    n.write("stage-cards/hello.md", &text);
    n.commit_all("card hello");
    "stage-cards/hello.md".into()
}

#[test]
fn real_aider_drains_the_demo_stage_with_tokens_counted_and_verifies_another() {
    let Some(aider) = real_cli("aider") else {
        return;
    };
    // hello: aider works (one request, an edit creating hello.txt); b: a scripted worker,
    // aider verifies in ask mode.
    let fake = FakeChat::start(vec![
        Turn::Reply(worker_reply()),
        Turn::Reply(
            "Looks right.\n\n```json\n{\"version\": 1, \"stage\": \"b\", \"attempt\": 1, \"verdict\": \"pass\", \"criteria\": [], \"findings\": []}\n```".into(),
        ),
    ]);
    let mut n = night(&aider, &fake);
    let hello = demo_hello_card(&n);
    let b = n.card(
        "b",
        "worker: wclaude\nverifier: ai\ndepends_on: [hello]\nscript:\n  worker:\n    - steps:\n        - write: { path: b.txt, content: b }\n        - envelope: { status: done, summary: wrote b }\n",
        "# Objective\nWrite b.txt.",
    );
    n.add(&[&hello, &b]);
    n.drain(30);
    let st = n.status();
    for s in st["stages"].as_array().unwrap() {
        assert_eq!(s["status"], "done", "{st:#}");
    }
    assert_eq!(
        n.git(&["show", "nightshift/integration:hello.txt"]),
        "hello, night"
    );
    // Only the edit landed: no history files, tag cache or `.gitignore` line of aider's.
    let landed = n.git(&[
        "log",
        "--format=",
        "--name-only",
        "--grep=^hello: ",
        "nightshift/integration",
    ]);
    assert_eq!(landed.trim(), "hello.txt");
    let ws = n.git(&["ls-tree", "-r", "--name-only", "nightshift/integration"]);
    assert!(!ws.contains(".aider"), "{ws}");
    // Tokens from aider's analytics log, priced from the table.
    let run = &n.stage("hello")["attempts"][0]["runs"][0];
    assert_eq!(
        (run["agent"].as_str(), run["outcome"].as_str()),
        (Some("ai"), Some("ok")),
        "{run}"
    );
    let requests = fake.served() as u64 - 1; // the verifier's one
    assert!(requests >= 1);
    assert_eq!(run["usage"]["input"], requests * chat::USAGE.0, "{run}");
    assert_eq!(run["usage"]["output"], requests * chat::USAGE.1, "{run}");
    assert!(run["usd"].as_f64().unwrap() > 0.0, "{run}");
    assert!(
        st["budget"]["families"]["gpt"]["usage"]["input"]
            .as_u64()
            .unwrap()
            >= 2 * chat::USAGE.0,
        "worker and verifier runs both counted: {st:#}"
    );
    let verifier = &n.stage("b")["attempts"][0]["runs"][1];
    assert_eq!(
        (verifier["role"].as_str(), verifier["outcome"].as_str()),
        (Some("verifier"), Some("ok")),
        "{verifier}"
    );
    // What aider sent: the key from the route, the model without litellm's prefix, nothing
    // but completions (no price-list fetch reaches the network either: it has the metadata).
    let reqs = fake.completions();
    for r in &reqs {
        assert_eq!(
            r.header("authorization"),
            Some(format!("Bearer {}", chat::KEY).as_str())
        );
        assert_eq!(r.json()["model"], chat::WIRE_MODEL);
    }
    assert!(
        reqs.last().unwrap().json().to_string().contains("b.txt"),
        "the verifier prompt carries the diff"
    );
    assert!(fake.others().is_empty(), "{:?}", fake.others());
    // The key reached aider's environment only: not its argv, log or outcome.
    let leaks = std::process::Command::new("grep")
        .args([
            "-r",
            "-l",
            chat::KEY,
            "state/logs",
            "state/handoffs",
            "state/active-agents",
        ])
        .current_dir(&n.repo)
        .output()
        .unwrap();
    assert!(
        leaks.stdout.is_empty(),
        "the key leaked into {}",
        String::from_utf8_lossy(&leaks.stdout)
    );
}

#[test]
fn real_aider_401_is_an_auth_failure_although_aider_exits_0() {
    let Some(aider) = real_cli("aider") else {
        return;
    };
    let fake = FakeChat::start(vec![Turn::unauthorized()]);
    let mut n = night(&aider, &fake);
    let a = hello_card(&n);
    n.add(&[&a]);
    n.drain(10);
    let s = n.stage("a");
    assert_eq!(s["status"], "escalated", "{s:#}");
    assert_eq!(
        s["attempts_used"], 1,
        "an auth failure is not retried: {s:#}"
    );
    let run = &s["attempts"][0]["runs"][0];
    assert_eq!(worker_exit(&n), Some(0), "aider exits 0 on an API failure");
    assert_eq!(run["failure"]["kind"], "auth", "{run}");
    assert!(
        run["failure"]["detail"]
            .as_str()
            .unwrap()
            .contains("Incorrect API key provided"),
        "{run}"
    );
    assert_eq!(fake.served(), 1, "aider does not retry a 401");
}

#[test]
fn real_aider_unknown_model_is_a_typed_404() {
    let Some(aider) = real_cli("aider") else {
        return;
    };
    let fake = FakeChat::start(vec![Turn::model_not_found()]);
    let mut n = night(&aider, &fake);
    let a = hello_card(&n);
    n.add(&[&a]);
    n.drain(10);
    let s = n.stage("a");
    assert_eq!(s["status"], "escalated", "{s:#}");
    let run = &s["attempts"][0]["runs"][0];
    assert_eq!(worker_exit(&n), Some(0), "aider exits 0 on an API failure");
    assert_eq!(run["failure"]["kind"], "api_error", "{run}");
    assert_eq!(run["failure"]["status"], 404, "{run}");
    assert!(
        run["failure"]["detail"]
            .as_str()
            .unwrap()
            .starts_with("model not found: "),
        "{run}"
    );
}

/// A stand-in for aider that replays a recorded real 429 run (`fail-429-*` in
/// `tests/fixtures/agent-cli-output/aider/`): its stdout, and its analytics log written where
/// `--analytics-log` says, exit 0 like aider. The real 429 takes aider 64 s or more of its own
/// retries, too long for the suite.
fn replay_429(dir: &Path, stdout_fixture: &str) -> std::path::PathBuf {
    let fixtures =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/agent-cli-output/aider");
    let script = format!(
        "#!/bin/sh\nwhile [ $# -gt 0 ]; do\n  case \"$1\" in --analytics-log) log=\"$2\"; shift;; esac\n  shift\ndone\ncp '{}' \"$log\"\ncat '{}'\n",
        fixtures.join("fail-429-retry-after.events.jsonl").display(),
        fixtures.join(stdout_fixture).display()
    );
    let path = dir.join("aider-replay");
    std::fs::write(&path, script).unwrap();
    let mut p = std::fs::metadata(&path).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut p, 0o755);
    std::fs::set_permissions(&path, p).unwrap();
    path
}

#[test]
fn aider_429_after_its_own_retries_is_rate_limited_and_retried_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let bin = replay_429(dir.path(), "fail-429-retry-after.stdout.txt");
    let fake = FakeChat::start(vec![]);
    let mut n = night(&bin, &fake);
    let a = hello_card(&n);
    n.add(&[&a]);
    n.drain(10);
    let s = n.stage("a");
    assert_eq!(s["status"], "escalated", "{s:#}");
    assert_eq!(s["attempts_used"], 2, "a rate limit is retried: {s:#}");
    let run = &s["attempts"][0]["runs"][0];
    assert_eq!(worker_exit(&n), Some(0));
    assert_eq!(run["failure"]["kind"], "rate_limited", "{run}");
    assert!(
        run["failure"]["detail"]
            .as_str()
            .unwrap()
            .contains("Rate limit reached"),
        "{run}"
    );
}

#[test]
fn aider_429_for_an_exhausted_quota_pauses_the_family_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let bin = replay_429(dir.path(), "fail-429-quota.stdout.txt");
    let fake = FakeChat::start(vec![]);
    let mut n = night(&bin, &fake);
    let a = hello_card(&n);
    n.add(&[&a]);
    n.tick();
    n.settle();
    n.tick();
    let st = n.status();
    assert_eq!(st["stages"][0]["status"], "paused", "{st:#}");
    assert!(st["paused"]["gpt"]["until"].is_string(), "{st:#}");
    assert_eq!(
        st["stages"][0]["attempts"][0]["runs"][0]["outcome"], "usage_limit",
        "{st:#}"
    );
}

#[test]
fn real_aider_ignores_a_repositorys_env_and_aider_config_where_argv_decides() {
    let Some(aider) = real_cli("aider") else {
        return;
    };
    let fake = FakeChat::start(vec![Turn::Reply(worker_reply())]);
    let elsewhere = FakeChat::start(vec![Turn::Reply(worker_reply())]);
    let mut n = night(&aider, &fake);
    // The repository tries to send aider (and its key) to another server, and to turn its
    // commits, `.gitignore` edits and tag cache back on.
    n.write(
        ".env",
        &format!("OPENAI_API_BASE={}\n", elsewhere.api_base()),
    );
    n.write(
        ".aider.conf.yml",
        "auto-commits: true\ndirty-commits: true\ngitignore: true\nmap-tokens: 1024\n",
    );
    n.commit_all("the repository configures aider");
    let hello = demo_hello_card(&n);
    n.add(&[&hello]);
    n.drain(10);
    assert_eq!(n.stage("hello")["status"], "done", "{:#}", n.status());
    assert!(
        elsewhere.server.requests().is_empty(),
        "the repository's .env redirected aider"
    );
    assert!(fake.served() >= 1);
    let landed = n.git(&[
        "log",
        "--format=",
        "--name-only",
        "--grep=^hello: ",
        "nightshift/integration",
    ]);
    assert_eq!(landed.trim(), "hello.txt", "only the edit landed");
}
