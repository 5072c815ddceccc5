//! The gates an attempt must pass: envelope, protected paths, verdict, family pairing.

use super::night::{Night, PASS, script, stderr, writes};

#[test]
fn worker_that_edits_a_card_fails_the_attempt_naming_the_file() {
    let mut n = Night::new();
    n.init();
    let evil = "    - steps:\n        - write: { path: stage-cards/s1.md, content: \"easier card\" }\n        - envelope: { status: done, summary: done }\n";
    let front = format!(
        "max_attempts: 1\nacceptance:\n  - \"true\"\n{}",
        script(&[evil.to_owned()], &[PASS])
    );
    let c = n.card("s1", &front, "body");
    n.add(&[&c]);
    n.drain(10);
    let s = n.stage("s1");
    assert_eq!(s["status"], "escalated");
    assert_eq!(
        s["reason"],
        "failed 1 attempts; last: the worker changed protected path `stage-cards/s1.md`"
    );
}

#[test]
fn worker_that_writes_into_state_or_a_protected_glob_fails() {
    for (path, glob) in [
        ("state/state.yaml", ""),
        ("tests/golden/x.txt", "protected: [\"tests/golden/**\"]\n"),
        // Regression: braces and classes were accepted and matched nothing.
        ("notes.md", "protected: [\"*.{txt,md}\"]\n"),
        ("b.txt", "protected: [\"[ab].txt\"]\n"),
    ] {
        let mut n = Night::new();
        n.init();
        let w = format!(
            "    - steps:\n        - write: {{ path: {path}, content: \"forged\" }}\n        - envelope: {{ status: done, summary: done }}\n"
        );
        let front = format!("{glob}max_attempts: 1\n{}", script(&[w], &[PASS]));
        let c = n.card("s1", &front, "body");
        n.add(&[&c]);
        n.drain(10);
        let reason = n.stage("s1")["reason"].as_str().unwrap().to_owned();
        assert!(
            reason.ends_with(&format!("the worker changed protected path `{path}`")),
            "{reason}"
        );
    }
}

#[test]
fn unparseable_verdict_is_a_fail_never_a_pass() {
    let mut n = Night::new();
    n.init();
    let front = format!(
        "max_attempts: 1\n{}",
        script(&[writes("a", "a")], &["say: \"LGTM, ship it!\""])
    );
    let c = n.card("s1", &front, "body");
    n.add(&[&c]);
    n.drain(10);
    let s = n.stage("s1");
    assert_eq!(s["status"], "escalated");
    assert!(
        s["reason"].as_str().unwrap().contains("no valid verdict"),
        "{s:#}"
    );
    assert!(
        n.git(&["branch", "--list", "nightshift/integration"])
            .is_empty()
    );
}

#[test]
fn missing_envelope_and_wrong_attempt_envelope_fail() {
    let mut n = Night::new();
    n.init();
    let no_env = "    - steps:\n        - write: { path: a, content: a }\n        - say: \"all done, trust me\"\n".to_owned();
    let front = format!("max_attempts: 1\n{}", script(&[no_env], &[PASS]));
    let c = n.card("s1", &front, "body");
    n.add(&[&c]);
    n.drain(10);
    assert!(
        n.stage("s1")["reason"]
            .as_str()
            .unwrap()
            .contains("no handoff envelope"),
        "{:#}",
        n.stage("s1")
    );
}

#[test]
fn blocked_envelope_is_not_done() {
    let mut n = Night::new();
    n.init();
    let blocked =
        "    - steps:\n        - envelope: { status: blocked, summary: \"need a database\" }\n"
            .to_owned();
    let front = format!("max_attempts: 1\n{}", script(&[blocked], &[PASS]));
    let c = n.card("s1", &front, "body");
    n.add(&[&c]);
    n.drain(10);
    assert_eq!(
        n.stage("s1")["reason"],
        "failed 1 attempts; last: the worker said `blocked`: need a database"
    );
}

#[test]
fn same_family_verifier_is_refused_unless_allowed() {
    let n = Night::new();
    n.init();
    let c = n.card("s1", "verifier: wclaude\n", "body");
    let out = n.ns(&["add-stage", &c]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("worker `wclaude` and verifier `wclaude` are both of family `claude`"),
        "{err}"
    );
    assert!(
        n.status()["stages"].as_array().unwrap().is_empty(),
        "nothing enqueued"
    );
    let ok = n.card("s2", "verifier: wclaude\nallow_same_family: true\n", "body");
    n.add(&[&ok]);
}

#[test]
fn default_verifier_is_of_the_other_family() {
    let n = Night::new();
    n.init();
    let a = n.card("a", "worker: vcodex\n", "body");
    n.add(&[&a]);
    assert_eq!(n.stage("a")["verifier"], "wclaude");
}

/// Lesson: some permission modes make a headless CLI refuse tools and still exit 0. A run with
/// refused tool calls and no handoff is a typed `permission_denied`, not a bare "no envelope".
#[test]
fn lesson_refused_tools_without_a_handoff_is_permission_denied() {
    let mut n = Night::new();
    n.init();
    let denied = "    - steps:\n        - deny_tool: Bash\n        - deny_tool: Bash\n        - say: \"I could not run the tests.\"\n".to_owned();
    let front = format!("max_attempts: 1\n{}", script(&[denied], &[PASS]));
    let c = n.card("s1", &front, "body");
    n.add(&[&c]);
    n.drain(10);
    let s = n.stage("s1");
    assert_eq!(
        s["attempts"][0]["runs"][0]["failure"]["kind"], "permission_denied",
        "{s:#}"
    );
    assert!(
        s["reason"]
            .as_str()
            .unwrap()
            .contains("refused 2 tool call(s)"),
        "{s:#}"
    );
}

/// A usage limit hit by the worker switches the stage to the card's fallback worker (of a
/// third family) instead of waiting; the limited family stays paused for everyone else.
#[test]
fn usage_limit_switches_to_the_cards_fallback_worker() {
    let cfg = super::night::CONFIG.replace(
        "  vcodex: { kind: script, family: codex }",
        "  vcodex: { kind: script, family: codex }\n  wgemini: { kind: script, family: gemini }",
    );
    let mut n = Night::with_config(&cfg);
    n.init();
    // 2027-01-01T05:00:00Z, four hours after the Night clock's start.
    let limited = "    - steps:\n        - usage_limit: { resets_at: 1798779600 }\n".to_owned();
    let front = format!(
        "fallback: wgemini\n{}",
        script(&[limited, writes("out.txt", "x")], &[PASS])
    );
    let c = n.card("s1", &front, "body");
    let other = n.card("s2", &script(&[writes("o.txt", "o")], &[PASS]), "body");
    n.add(&[&c, &other]);
    for _ in 0..12 {
        n.tick();
        n.settle();
    }
    let s = n.stage("s1");
    assert_eq!(
        (
            s["status"].as_str(),
            s["worker"].as_str(),
            s["attempts_used"].as_u64()
        ),
        (Some("done"), Some("wgemini"), Some(1)),
        "{s:#}"
    );
    assert!(n.events().iter().any(|e| e == "s1: a1 hit the claude usage limit; switching to fallback worker wgemini"), "{:#?}", n.events());
    // s2's worker is of the limited family: it waits for the reset.
    let st = n.status();
    assert_eq!(
        st["paused"]["claude"]["until"], "2027-01-01T05:00:00Z",
        "{st:#}"
    );
    assert_eq!(st["stages"][1]["status"], "queued", "{st:#}");
}

#[test]
fn a_fallback_of_the_verifiers_family_is_refused() {
    let n = Night::new();
    n.init();
    let c = n.card("s1", "fallback: vcodex\n", "body");
    let out = n.ns(&["add-stage", &c]);
    assert!(
        stderr(&out).contains("fallback `vcodex` is of family `codex`: it must differ"),
        "{}",
        stderr(&out)
    );
}
