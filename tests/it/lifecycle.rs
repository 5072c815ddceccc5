//! The stage lifecycle through the real binary: dispatch, acceptance, cross-family
//! verification, integration, retry, escalation, dependencies and lanes.

use super::night::{Night, PASS, script, writes};

fn one_card(
    n: &Night,
    id: &str,
    acceptance: &str,
    workers: &[String],
    verifiers: &[&str],
) -> String {
    let front = format!(
        "acceptance:\n  - {acceptance}\n{}",
        script(workers, verifiers)
    );
    n.card(id, &front, "# Objective\nDo the thing.")
}

#[test]
fn full_lifecycle_ends_on_the_integration_branch() {
    let mut n = Night::new();
    n.init();
    let c = one_card(
        &n,
        "s1",
        "grep -q hi out.txt",
        &[writes("out.txt", "hi\n")],
        &[PASS],
    );
    n.add(&[&c]);
    // queued -> working -> checking -> verifying -> integrating -> done: one step per tick.
    let mut seen = Vec::new();
    for _ in 0..6 {
        n.tick();
        n.settle();
        seen.push(n.stage("s1")["status"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        seen,
        [
            "working",
            "checking",
            "verifying",
            "integrating",
            "done",
            "done"
        ]
    );
    let s = n.stage("s1");
    assert_eq!(s["attempt"], 1);
    assert_eq!(s["branch"], "nightshift/stage/s1");
    assert_eq!(n.git(&["show", "nightshift/integration:out.txt"]), "hi");
    let author = n.git(&["log", "-1", "--format=%an", "nightshift/stage/s1"]);
    assert_eq!(author, "wclaude (nightshift worker)");
    let msg = n.git(&["log", "-1", "--format=%B", "nightshift/stage/s1"]);
    assert!(msg.contains("Nightshift-Attempt: s1/a1"), "{msg}");
    assert!(msg.contains("Nightshift-Verifier: vcodex"), "{msg}");
    for needle in [
        "a1 dispatched to wclaude",
        "a1 worker handed off",
        "a1 acceptance passed; verifying with vcodex",
        "a1 verifier said pass",
        "a1 done",
    ] {
        assert_eq!(n.count_events(needle), 1, "{needle}: {:#?}", n.events());
    }
    // The envelope, acceptance results and verdict are recorded in the ledger too.
    let tree = n.git(&["ls-tree", "-r", "--name-only", "nightshift/ledger"]);
    for f in [
        "state/handoffs/s1/a1/worker.json",
        "state/handoffs/s1/a1/acceptance.json",
        "state/handoffs/s1/a1/verifier.json",
    ] {
        assert!(tree.contains(f), "{f} not in ledger:\n{tree}");
    }
    // Card copies are sharded in the ledger's tree: state/cards/<xx>/s1.md.
    assert!(
        tree.lines()
            .any(|l| l.starts_with("state/cards/") && l.ends_with("/s1.md")),
        "no card copy in the ledger:\n{tree}"
    );
    assert!(
        !tree.contains("active-agents") && !tree.contains("logs/"),
        "{tree}"
    );
}

#[test]
fn retry_after_failed_acceptance_then_pass_with_findings_in_prompt() {
    let mut n = Night::new();
    n.init();
    let c = one_card(
        &n,
        "s1",
        "grep -q right out.txt",
        &[writes("out.txt", "wrong\n"), writes("out.txt", "right\n")],
        &[PASS],
    );
    n.add(&[&c]);
    n.drain(20);
    let s = n.stage("s1");
    assert_eq!(s["status"], "done");
    assert_eq!(s["attempt"], 2);
    assert_eq!(
        n.count_events("a1 failed: acceptance `grep -q right out.txt` exited 1; will retry"),
        1,
        "{:#?}",
        n.events()
    );
    let prompt = n.read("state/handoffs/s1/a2/worker-prompt.md");
    assert!(
        prompt.contains("acceptance `grep -q right out.txt` exited 1"),
        "{prompt}"
    );
    assert_eq!(n.git(&["show", "nightshift/integration:out.txt"]), "right");
}

#[test]
fn verifier_revise_findings_reach_the_next_attempt() {
    let mut n = Night::new();
    n.init();
    let c = one_card(
        &n,
        "s1",
        "true",
        &[writes("a.txt", "1")],
        &[
            "verdict: { verdict: revise, findings: [\"name the file\"] }",
            PASS,
        ],
    );
    n.add(&[&c]);
    n.drain(20);
    assert_eq!(n.stage("s1")["attempt"], 2);
    assert!(
        n.read("state/handoffs/s1/a2/worker-prompt.md")
            .contains("name the file")
    );
}

#[test]
fn escalates_after_max_attempts_with_typed_reason() {
    let mut n = Night::new();
    n.init();
    let front = format!(
        "max_attempts: 2\nacceptance:\n  - \"false\"\n{}",
        script(&[writes("x", "x")], &[PASS])
    );
    let c = n.card("bad", &front, "body");
    n.add(&[&c]);
    n.drain(20);
    let s = n.stage("bad");
    assert_eq!(s["status"], "escalated");
    assert_eq!(s["attempts_used"], 2);
    assert_eq!(
        s["reason"],
        "failed 2 attempts; last: acceptance `false` exited 1"
    );
    let human = n.ok(&["status"]);
    assert!(human.contains("nightshift requeue bad"), "{human}");
    // Nothing of it reached the integration branch.
    assert!(
        n.git(&["branch", "--list", "nightshift/integration"])
            .is_empty()
    );
}

#[test]
fn dependencies_order_dispatch_and_build_on_the_dependency() {
    let mut n = Night::with_config(&super::night::CONFIG.replace("lanes: 1", "lanes: 2"));
    n.init();
    let a = one_card(&n, "a", "test -f a.txt", &[writes("a.txt", "a")], &[PASS]);
    let front = format!(
        "depends_on: [a]\nacceptance:\n  - test -f a.txt && test -f b.txt\n{}",
        script(&[writes("b.txt", "b")], &[PASS])
    );
    let b = n.card("b", &front, "body");
    n.add(&[&b, &a]); // order on the command line does not matter
    n.tick();
    n.settle();
    assert_eq!(n.stage("a")["status"], "working");
    assert_eq!(
        n.stage("b")["status"],
        "queued",
        "b must wait for a even with a free lane"
    );
    n.drain(30);
    assert_eq!(n.stage("b")["status"], "done");
    let events = n.events();
    let a_done = events
        .iter()
        .position(|e| e.starts_with("a: a1 done"))
        .unwrap();
    let b_sent = events
        .iter()
        .position(|e| e.starts_with("b: a1 dispatched"))
        .unwrap();
    assert!(a_done < b_sent, "{events:#?}");
    // b's acceptance ran a's too (regression gate) and both are integrated.
    assert_eq!(n.git(&["show", "nightshift/integration:a.txt"]), "a");
    assert_eq!(n.git(&["show", "nightshift/integration:b.txt"]), "b");
}

#[test]
fn two_lanes_work_in_parallel() {
    let mut n = Night::with_config(&super::night::CONFIG.replace("lanes: 1", "lanes: 2"));
    n.init();
    let slow = |f: &str| {
        format!(
            "    - steps:\n        - sleep: 2s\n        - write: {{ path: {f}, content: x }}\n        - envelope: {{ status: done, summary: ok }}\n"
        )
    };
    let p = one_card(&n, "p", "true", &[slow("p.txt")], &[PASS]);
    let q = one_card(&n, "q", "true", &[slow("q.txt")], &[PASS]);
    let r = one_card(&n, "r", "true", &[slow("r.txt")], &[PASS]);
    n.add(&[&p, &q, &r]);
    n.tick();
    let st = n.status();
    let working: Vec<_> = st["stages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["status"] == "working")
        .map(|s| s["id"].clone())
        .collect();
    assert_eq!(working, ["p", "q"], "{st:#}");
    assert_eq!(st["in_flight"], 2);
    assert_eq!(n.stage("r")["status"], "queued");
    n.drain(40);
}

/// Waits (a minute at most) for `stage` to be done with no scheduler tick.
fn wait_done(n: &Night, stage: &str) {
    let start = std::time::Instant::now();
    while n.stage(stage)["status"] != "done" {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(60),
            "{:#}",
            n.status()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn chained_ticks_drain_without_the_scheduler() {
    let mut n = Night::new();
    n.chain = true;
    n.init();
    let c = one_card(&n, "s1", "true", &[writes("o", "o")], &[PASS]);
    n.add(&[&c]);
    n.tick(); // one scheduler tick; the jobs' chained ticks do the rest
    wait_done(&n, "s1");
}

/// Regression: after a verifier's `revise` the stage sat in `retry` until the next scheduler
/// tick; the tick that records the revise now dispatches the retry itself.
#[test]
fn a_revise_is_retried_without_waiting_for_the_scheduler() {
    let mut n = Night::new();
    n.chain = true;
    n.init();
    let revise = "verdict: { verdict: revise, findings: [\"again\"] }";
    let c = one_card(&n, "s1", "true", &[writes("o", "o")], &[revise, PASS]);
    n.add(&[&c]);
    n.tick(); // the only scheduler tick
    wait_done(&n, "s1");
    assert_eq!(n.stage("s1")["attempt"], 2);
}

#[test]
fn idle_tick_writes_and_commits_nothing() {
    let mut n = Night::new();
    n.init();
    let head = n.ledger_head();
    let state = std::fs::read(n.path("state/state.yaml")).unwrap();
    let mtime = std::fs::metadata(n.path("state/state.yaml"))
        .unwrap()
        .modified()
        .unwrap();
    for _ in 0..3 {
        let out = n.tick();
        assert!(out.status.success());
        assert!(out.stdout.is_empty(), "an idle tick is quiet");
    }
    assert_eq!(n.ledger_head(), head);
    assert_eq!(std::fs::read(n.path("state/state.yaml")).unwrap(), state);
    assert_eq!(
        std::fs::metadata(n.path("state/state.yaml"))
            .unwrap()
            .modified()
            .unwrap(),
        mtime
    );
}

/// Under the default `fast-forward` policy two independent stages both start from `base`:
/// the second cannot fast-forward, so its commit is replayed on top, keeping the integration
/// branch linear (it used to escalate).
#[test]
fn independent_stages_both_land_linearly_under_fast_forward() {
    let mut n = Night::new();
    n.init();
    let a = one_card(&n, "a", "test -f a.txt", &[writes("a.txt", "a")], &[PASS]);
    let b = one_card(&n, "b", "test -f b.txt", &[writes("b.txt", "b")], &[PASS]);
    n.add(&[&a, &b]);
    n.drain(30);
    assert_eq!(
        (
            n.stage("a")["status"].as_str(),
            n.stage("b")["status"].as_str()
        ),
        (Some("done"), Some("done"))
    );
    let log = n.git(&[
        "log",
        "--format=%s|%an",
        "--first-parent",
        "nightshift/integration",
    ]);
    assert!(
        log.starts_with(
            "b: Stage b|wclaude (nightshift worker)\na: Stage a|wclaude (nightshift worker)\n"
        ),
        "{log}"
    );
    assert_eq!(
        n.git(&["rev-list", "--merges", "--count", "nightshift/integration"]),
        "0"
    );
    assert!(
        n.events()
            .iter()
            .any(|e| e == "b: a1 done: nightshift/stage/b replayed onto nightshift/integration"),
        "{:#?}",
        n.events()
    );
}

/// An idle tick reads the state, sees the ledger cache in step, and spawns no git at all.
#[test]
fn idle_tick_spawns_no_git() {
    let mut n = Night::new();
    n.init();
    let log = n.root.join("git-calls.log");
    let wrapper = n.root.join("git-wrapper");
    let git = crate::it::night::real_git();
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\necho \"$@\" >> '{}'\nexec '{}' \"$@\"\n",
            log.display(),
            git.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    n.extra_env
        .push(("NIGHTSHIFT_GIT".into(), wrapper.display().to_string()));
    assert!(n.tick().status.success());
    assert!(
        !log.exists(),
        "an idle tick ran git: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    // A lost cache is repaired through git (the ledger is the truth).
    std::fs::remove_file(n.path("state/.ledger-seq")).unwrap();
    assert!(n.tick().status.success());
    assert!(log.exists(), "the reconcile must consult the ledger");
}
