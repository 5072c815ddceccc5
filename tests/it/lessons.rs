//! One regression test per field failure in LESSONS (the `// Lesson:` line says which).

use std::time::{Duration, Instant};

use super::night::{Night, PASS, script, writes};

fn user_view(n: &Night) -> (String, String, Vec<u8>, String, String) {
    let head = n.git(&["rev-parse", "HEAD"]);
    let sym = std::process::Command::new("git")
        .args(["symbolic-ref", "-q", "HEAD"])
        .current_dir(&n.repo)
        .output()
        .unwrap();
    let index = std::fs::read(n.path(".git/index")).unwrap_or_default();
    let status = n.git(&["status", "--porcelain=v1", "--untracked-files=all"]);
    let dirty = n.read("README.md");
    (
        head,
        String::from_utf8_lossy(&sym.stdout).into_owned(),
        index,
        status,
        dirty,
    )
}

// Lesson: state commits switched the user's branch, left a detached HEAD, or swept the user's
// files into commits. The ledger and the stage work never touch HEAD, index or working tree.
#[test]
fn lesson_user_head_index_and_tree_untouched_normal_detached_dirty_rebase() {
    for mode in ["normal", "detached", "dirty", "rebase"] {
        let mut n = Night::new();
        n.init();
        let front = format!(
            "acceptance: [\"true\"]\n{}",
            script(&[writes("work.txt", "w")], &[PASS])
        );
        let c = n.card("s1", &front, "body");
        n.add(&[&c]);
        match mode {
            "detached" => {
                n.git(&["checkout", "-q", "--detach"]);
            }
            "dirty" => {
                n.write("README.md", "uncommitted edit\n");
                n.write("scratch.txt", "untracked\n");
                n.git(&["add", "scratch.txt"]);
                n.write("scratch.txt", "staged then edited\n");
            }
            "rebase" => {
                std::fs::create_dir_all(n.path(".git/rebase-merge")).unwrap();
                n.write(".git/rebase-merge/head-name", "refs/heads/main\n");
            }
            _ => {}
        }
        let before = user_view(&n);
        n.drain(20);
        assert_eq!(n.stage("s1")["status"], "done", "{mode}");
        assert_eq!(
            user_view(&n),
            before,
            "{mode}: the user's HEAD, index or working tree changed"
        );
        assert!(
            !n.path("work.txt").exists(),
            "{mode}: stage work leaked into the user's checkout"
        );
    }
}

// Lesson: killing only the pid leaves grandchildren running and writing after the stage was
// marked stalled. Timeouts are enforced from outside, on the whole process group.
#[test]
fn lesson_grandchild_dies_with_a_timed_out_worker() {
    let mut n = Night::new();
    n.init();
    let hang = "    - steps:\n        - spawn_grandchild\n        - hang\n".to_owned();
    let front = format!(
        "max_attempts: 1\ntimeouts: {{ worker: 2s }}\n{}",
        script(&[hang], &[PASS])
    );
    let c = n.card("s1", &front, "body");
    n.add(&[&c]);
    n.tick();
    n.settle();
    let log = n.read("state/logs/s1/a1-worker.log");
    let pid: u32 = log
        .split("grandchild pid ")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no grandchild pid in log:\n{log}"));
    assert!(!alive(pid), "grandchild {pid} survived the timeout");
    n.drain(5);
    assert_eq!(
        n.stage("s1")["reason"],
        "failed 1 attempts; last: the worker ran past its 2s timeout"
    );
    let outcome: serde_json::Value =
        serde_json::from_str(&n.read("state/handoffs/s1/a1/worker.json")).unwrap();
    assert_eq!(outcome["result"]["run"]["timed_out"], true);
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !s.rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

// Lesson: a CLI that reads stdin blocks for ever when stdin is an open pipe. Agents get
// /dev/null. Lesson: children got the whole parent environment, leaking secrets. Agents get an
// allow-list plus their configured env and the NIGHTSHIFT_* variables.
#[test]
fn lesson_agents_get_devnull_stdin_and_an_allow_listed_environment() {
    let cfg = super::night::CONFIG.replace(
        "  vcodex: { kind: script, family: codex }",
        "  vcodex: { kind: script, family: codex }\n  probe: { kind: command, family: probe, command: sh, args: [\"-c\", \"cat; env | sort > $TMPDIR/env-seen.txt; printf '```json\\\\n{\\\"version\\\":1,\\\"stage\\\":\\\"%s\\\",\\\"attempt\\\":%s,\\\"status\\\":\\\"done\\\",\\\"summary\\\":\\\"probed\\\"}\\\\n```\\\\n' $NIGHTSHIFT_STAGE $NIGHTSHIFT_ATTEMPT\"], env: { CONFIGURED: yes } }",
    );
    let mut n = Night::with_config(&cfg);
    n.extra_env
        .push(("CANARY_SECRET".into(), "sk-canary-123".into()));
    n.extra_env
        .push(("ANTHROPIC_API_KEY".into(), "sk-ant-canary".into()));
    n.init();
    let front = format!(
        "worker: probe\nverifier: vcodex\nacceptance: [\"env | grep -c CANARY > /dev/null && exit 1 || exit 0\"]\nscript:\n  verifier:\n    - steps:\n        - {PASS}\n"
    );
    let c = n.card("s1", &front, "body");
    n.add(&[&c]);
    let start = Instant::now();
    n.drain(20);
    assert!(
        start.elapsed() < Duration::from_secs(60),
        "cat on stdin must not block"
    );
    assert_eq!(n.stage("s1")["status"], "done", "{:#}", n.stage("s1"));
    // The attempt's private temp dir (the agent may write nowhere outside it and its workspace).
    let env = n.read("state/agent-state/s1/a1-worker/tmp/env-seen.txt");
    assert!(
        !env.contains("CANARY") && !env.contains("sk-ant-canary"),
        "secrets leaked:\n{env}"
    );
    for want in [
        "CONFIGURED=yes",
        "NIGHTSHIFT_STAGE=s1",
        "NIGHTSHIFT_ATTEMPT=1",
        "NIGHTSHIFT_ROLE=worker",
        "NIGHTSHIFT_REPO=",
        "HOME=",
    ] {
        assert!(env.contains(want), "{want} missing:\n{env}");
    }
    // No canary anywhere in the ledger either.
    let ledger = n.git(&["log", "-p", "nightshift/ledger"]);
    assert!(!ledger.contains("sk-canary-123") && !ledger.contains("sk-ant-canary"));
}

// Lesson: the tick's own lock leaked into children, so every later tick saw "busy" until the
// agent exited. The lock is close-on-exec.
#[test]
fn lesson_tick_lock_is_not_inherited_by_agents() {
    let mut n = Night::new();
    n.init();
    let hang = "    - steps:\n        - hang\n".to_owned();
    let c = n.card("s1", &script(&[hang], &[PASS]), "body");
    n.add(&[&c]);
    n.tick();
    let start = Instant::now();
    while n.stage("s1")["job"] != "running" {
        assert!(start.elapsed() < Duration::from_secs(20));
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = n.tick();
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("another tick"),
        "the hung agent holds the tick lock"
    );
    n.ok(&["cancel", "s1"]);
}

// Lesson: pid alone is not an identity, and a dead attempt must not be waited on for ever. A
// job whose processes were all killed without an outcome is a crash, and the stage retries.
#[test]
fn lesson_killed_job_is_seen_as_a_crash_and_retried() {
    let mut n = Night::new();
    n.init();
    let hang = "    - steps:\n        - hang\n".to_owned();
    let c = n.card("s1", &script(&[hang, writes("a", "a")], &[PASS]), "body");
    n.add(&[&c]);
    n.tick();
    let reg = super::night::wait_for_child(&n, "s1@a1-worker");
    for key in ["pgid", "child_pgid"] {
        let g = reg[key].as_i64().unwrap();
        std::process::Command::new("kill")
            .args(["-KILL", "--", &format!("-{g}")])
            .status()
            .unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(n.stage("s1")["job"], "vanished");
    n.drain(20);
    assert!(
        n.events().contains(
            &"s1: a1 failed: the worker job died without an outcome; will retry".to_owned()
        ),
        "{:#?}",
        n.events()
    );
    assert_eq!(n.stage("s1")["status"], "done");
}

// Lesson: placeholders left unfilled broke the handoff silently. Prompts are rendered strictly
// and carry the stage and attempt the envelope must name.
#[test]
fn lesson_prompt_names_stage_and_attempt_and_has_no_placeholders() {
    let mut n = Night::new();
    n.init();
    let c = n.card(
        "s1",
        &script(&[writes("a", "a")], &[PASS]),
        "# Objective\nX",
    );
    n.add(&[&c]);
    n.drain(10);
    for role in ["worker", "verifier"] {
        let p = n.read(&format!("state/handoffs/s1/a1/{role}-prompt.md"));
        assert!(
            p.contains("\"stage\": \"s1\"") && p.contains("\"attempt\": 1"),
            "{p}"
        );
        assert!(!p.contains("{{"), "{p}");
    }
}
