//! The views for people and scripts through the real binary: `agents`, `logs` (rendered,
//! raw, followed) and `watch` (exit codes for pass, failure and timeout).

use serde_json::Value;

use super::night::{Night, PASS, script, stdout};

fn slow_worker() -> String {
    "    - steps:\n        - write: { path: out.txt, content: \"x\" }\n        - sleep: 3s\n        - envelope: { status: done, summary: \"wrote out.txt\" }\n".to_owned()
}

#[test]
fn agents_logs_and_watch_follow_a_running_attempt() {
    let mut n = Night::new();
    n.chain = true;
    n.init();
    let front = format!(
        "acceptance: [\"test -f out.txt\"]\n{}",
        script(&[slow_worker()], &[PASS])
    );
    let c = n.card("s1", &front, "body");
    n.add(&[&c]);
    n.tick();
    super::night::wait_for_child(&n, "s1@a1-worker");
    let agents: Value = serde_json::from_str(&n.ok(&["agents", "--json"])).unwrap();
    let a = &agents["agents"][0];
    assert_eq!(a["stage"], "s1", "{agents:#}");
    assert_eq!(a["role"], "worker");
    assert_eq!(a["agent"], "wclaude");
    assert_eq!(a["alive"], true);
    assert_eq!(a["log"], "state/logs/s1/a1-worker.log");
    assert!(a["deadline_left_secs"].as_i64().unwrap() > 0);
    assert!(n.ok(&["agents"]).contains("s1/a1/worker"));
    let st = n.status();
    assert_eq!(st["stages"][0]["log_path"], "state/logs/s1/a1-worker.log");
    assert!(st["stages"][0]["elapsed_secs"].is_u64(), "{st:#}");
    // Scripts: a timeout that expires is exit 5, and the attempt goes on.
    let out = n.ns(&["watch", "s1", "--timeout", "1s"]);
    assert_eq!(out.status.code(), Some(5), "{}", stdout(&out));
    // Following the log ends when the job does.
    let followed = n.ok(&["logs", "s1", "--follow"]);
    assert!(followed.contains("agent: write out.txt: ok"), "{followed}");
    assert!(followed.contains("── result: ok"), "{followed}");
    assert!(
        !followed.contains("\"type\""),
        "rendered, not raw: {followed}"
    );
    let out = n.ns(&["watch", "s1", "--timeout", "60s"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert_eq!(stdout(&out).trim(), "s1: a1 passed");
    assert_eq!(n.stage("s1")["status"], "done");
    let raw = n.ok(&["logs", "s1", "--attempt", "1", "--role", "worker", "--raw"]);
    assert!(raw.contains("\"type\":\"result\""), "{raw}");
    assert!(
        n.ok(&["logs", "s1"]).contains("agent: write out.txt: ok"),
        "the worker's by default"
    );
    let verifier = n.ok(&["logs", "s1", "--role", "verifier"]);
    assert!(verifier.contains("agent: Review complete."), "{verifier}");
    assert!(n.ok(&["agents"]).contains("no registered attempts"));
}

#[test]
fn watch_exits_non_zero_for_a_failed_attempt_and_logs_names_a_missing_log() {
    let mut n = Night::new();
    n.chain = true;
    n.init();
    let c = n.card(
        "bad",
        "max_attempts: 1\nscript:\n  worker:\n    - steps:\n        - exit: 3\n",
        "body",
    );
    n.add(&[&c]);
    n.tick();
    let out = n.ns(&["watch", "bad", "--timeout", "60s"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stdout(&out).starts_with("bad: a1 failed: "),
        "{}",
        stdout(&out)
    );
    let human = n.ok(&["status"]);
    assert!(
        human.starts_with("nightshift:")
            && human.contains("NEEDS YOU\n  ESCALATED: `bad` escalated"),
        "{human}"
    );
    assert!(human.contains("next: read the evidence in state/handoffs/bad/ (`nightshift logs bad`), then `nightshift requeue bad`"), "{human}");
    let missing = n.ns(&["logs", "bad", "--role", "verifier"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(super::night::stderr(&missing).contains("no verifier log for `bad` attempt 1"));
    let out = n.ns(&["watch", "nope"]);
    assert_eq!(out.status.code(), Some(1));
}
