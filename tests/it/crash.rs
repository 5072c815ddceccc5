//! Crash safety: the tick is killed (SIGKILL, by failpoint) between each pair of its durable
//! steps, and the next ticks recover with no attempt lost or doubled. Plus: many concurrent
//! ticks dispatch each attempt exactly once.

use super::night::{Night, PASS, script, writes};

fn card(n: &Night) -> String {
    let front = format!(
        "acceptance: [\"test -f out.txt\"]\n{}",
        script(&[writes("out.txt", "x")], &[PASS])
    );
    n.card("s1", &front, "body")
}

#[test]
fn tick_killed_at_each_failpoint_recovers_without_losing_or_doubling_attempts() {
    for point in [
        "after-budget-write",
        "after-state-write",
        "after-ledger-commit",
        "after-effects",
        "before-exit",
    ] {
        let mut n = Night::new();
        n.init();
        let c = card(&n);
        n.add(&[&c]);
        let out = n.ns_env(&["tick"], &[("NIGHTSHIFT_FAILPOINT", point)]);
        n.minute += 1;
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&out.status),
            Some(9),
            "{point}: the tick must die by SIGKILL"
        );
        n.settle();
        n.drain(20);
        let s = n.stage("s1");
        assert_eq!(s["status"], "done", "{point}: {s:#}");
        let events = n.events();
        for a in 1..=s["attempt"].as_u64().unwrap() {
            let sent = events
                .iter()
                .filter(|e| e.starts_with(&format!("s1: a{a} dispatched")))
                .count();
            assert_eq!(
                sent, 1,
                "{point}: attempt a{a} dispatched {sent} times: {events:#?}"
            );
        }
        match point {
            // The intent was durable but the spawn never ran: recorded as a failed spawn (an
            // infrastructure failure: no attempt of the stage's allowance used), then the next
            // attempt runs (nothing silently lost, nothing run twice).
            "after-state-write" | "after-ledger-commit" => {
                assert_eq!(s["attempts_used"], 1, "{point}: {s:#}");
                assert_eq!(s["attempt"], 2, "{point}");
                assert!(
                    events.iter().any(|e| e
                        == "s1: a1 failed: the worker job never started; will retry (not counted)"),
                    "{point}: {events:#?}"
                );
            }
            // Nothing durable happened (budget rolled back), or the spawn did run.
            _ => assert_eq!(s["attempt"], 1, "{point}: {events:#?}"),
        }
        if point == "after-state-write" {
            let log = n.git(&["log", "--format=%B", "nightshift/ledger"]);
            assert!(log.contains("committed on recovery"), "{log}");
        }
        n.assert_fsck_clean(point);
    }
}

#[test]
fn twenty_concurrent_ticks_dispatch_each_attempt_once() {
    let mut n = Night::with_config(&super::night::CONFIG.replace("lanes: 1", "lanes: 3"));
    n.init();
    let slow = |f: &str| {
        format!(
            "    - steps:\n        - sleep: 1s\n        - write: {{ path: {f}, content: x }}\n        - envelope: {{ status: done, summary: ok }}\n"
        )
    };
    let cards: Vec<String> = ["a", "b", "c", "d"]
        .iter()
        .map(|id| n.card(id, &script(&[slow(&format!("{id}.txt"))], &[PASS]), "body"))
        .collect();
    let refs: Vec<&str> = cards.iter().map(String::as_str).collect();
    n.add(&refs);
    for round in 0..8 {
        let children: Vec<_> = (0..20)
            .map(|_| {
                let mut cmd = std::process::Command::new(super::night::BIN);
                cmd.env_clear()
                    .env("PATH", std::env::var("PATH").unwrap_or_default())
                    .env("HOME", n.root.join("home"))
                    .env("NIGHTSHIFT_NOW", n.now())
                    .env("NIGHTSHIFT_CHAIN", "1")
                    .arg("--repo")
                    .arg(&n.repo)
                    .arg("tick")
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped());
                cmd.spawn().unwrap()
            })
            .collect();
        let mut busy = 0;
        for c in children {
            let out = c.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            busy += usize::from(
                String::from_utf8_lossy(&out.stdout).contains("another tick is running"),
            );
        }
        if round == 0 {
            assert!(
                busy < 20,
                "one of the first twenty must have taken the lock"
            );
        }
        n.minute += 1;
        n.settle();
    }
    n.drain(40);
    let events = n.events();
    for id in ["a", "b", "c", "d"] {
        let sent = events
            .iter()
            .filter(|e| e.starts_with(&format!("{id}: a1 dispatched")))
            .count();
        assert_eq!(sent, 1, "{id}: {events:#?}");
        assert_eq!(
            n.stage(id)["attempt"],
            1,
            "{id} must not have needed a second attempt"
        );
    }
    // Never more jobs than lanes at once: every worker log has one run.
    for id in ["a", "b", "c", "d"] {
        let log = n.read(&format!("state/logs/{id}/a1-worker.log"));
        assert_eq!(
            log.matches("\"subtype\":\"init\"").count(),
            1,
            "{id}: the worker ran more than once:\n{log}"
        );
    }
}
