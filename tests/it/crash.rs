//! Crash safety: the tick is killed (SIGKILL, by failpoint) between each pair of its durable
//! steps, and the next ticks recover with no attempt lost or doubled. Plus: many concurrent
//! ticks dispatch each attempt exactly once.

use super::night::{Night, PASS, script, stderr, writes};

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
        assert!(
            n.tick_killed_at(point),
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
            // The intent was durable but no start was begun (the job has no log): the next
            // tick starts the same attempt, and nothing counts against the stage (nothing
            // silently lost, nothing run twice, no attempt spent on the dead tick).
            "after-state-write" | "after-ledger-commit" => {
                assert_eq!(s["attempts_used"], 1, "{point}: {s:#}");
                assert_eq!(s["attempt"], 1, "{point}: {events:#?}");
                assert!(
                    events.iter().any(|e| e
                        == "s1: a1 worker job was never started (the tick that dispatched it stopped first); starting it now"),
                    "{point}: {events:#?}"
                );
                assert!(
                    !events
                        .iter()
                        .any(|e| e.contains("never started; will retry")),
                    "{point}: {events:#?}"
                );
                let log = n.read("state/logs/s1/a1-worker.log");
                assert_eq!(
                    log.matches("\"subtype\":\"init\"").count(),
                    1,
                    "{point}: the worker ran once: {log}"
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
        let stage = n.stage(id);
        assert_eq!(
            stage["attempt"], 1,
            "{id} must not have needed a second attempt: {stage:#}\n{events:#?}"
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

/// `add-stage` killed at each of its durable steps: before the hot file (its commit point) the
/// command left no stage, and the files it had written are removed by the next writer, even
/// one that adds other cards; from the hot file on, the stages exist and reach the ledger.
#[test]
fn add_stage_killed_at_each_point_leaves_all_or_nothing() {
    for point in ADD_STAGE_POINTS {
        let mut n = Night::new();
        n.init();
        let cards = n.cards(&["a", "b", "c"], "acceptance: [\"true\"]\n");
        let refs: Vec<&str> = cards.iter().map(String::as_str).collect();
        let mut args = vec!["add-stage"];
        args.extend_from_slice(&refs);
        let out = n.ns_env(&args, &[("NIGHTSHIFT_FAILPOINT", point)]);
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&out.status),
            Some(9),
            "{point}: add-stage must die by SIGKILL"
        );
        let committed = matches!(point, "after-state-write" | "after-ledger-commit");
        let stages = n.status()["stages"].as_array().unwrap().len();
        assert_eq!(stages, if committed { 3 } else { 0 }, "{point}");
        // Another card goes in: its save removes the dead command's leftovers first.
        let d = n.card("d", "acceptance: [\"true\"]\n", "body");
        n.add(&[&d]);
        let ids: &[&str] = if committed {
            &["a", "b", "c", "d"]
        } else {
            &["d"]
        };
        let want =
            |ext: &str| -> Vec<String> { ids.iter().map(|i| format!("{i}.{ext}")).collect() };
        assert_eq!(names_in(&n, "state/stages"), want("yaml"), "{point}");
        // The dead command's card copies went with its stage files.
        assert_eq!(
            names_in(&n, "state/cards"),
            want("md"),
            "{point}: card copies"
        );
        assert!(!n.path("state/.adding").exists(), "{point}");
        if !committed {
            // The dead command's cards can be added again, after d.
            n.add(&refs);
        }
        let want = if committed {
            ["a", "b", "c", "d"]
        } else {
            ["d", "a", "b", "c"]
        };
        assert_eq!(stage_ids(&n), want, "{point}: the order stages were added");
        n.drain(40);
        // Every stage is whole in the ledger: `repair` on a deleted stage file restores it.
        let before = n.stage("b");
        std::fs::remove_file(n.path("state/stages/b.yaml")).unwrap();
        let rep = n.ok(&["repair"]);
        assert!(rep.contains("stage files"), "{point}: {rep}");
        assert_eq!(n.stage("b"), before, "{point}");
        n.assert_fsck_clean(point);
    }
}

/// The durable steps of `add-stage`, in order: the hot file (`after-state-write`) is its
/// commit point.
const ADD_STAGE_POINTS: [&str; 4] = [
    "after-stage-files",
    "after-budget-write",
    "after-state-write",
    "after-ledger-commit",
];

/// The ids of the stages `status` shows, in order.
fn stage_ids(n: &Night) -> Vec<String> {
    n.status()["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect()
}

/// The names of the files in `dir` (not dot-files), sorted.
fn names_in(n: &Night, dir: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(n.path(dir))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|f| !f.starts_with('.'))
        .collect();
    names.sort();
    names
}

/// `add-stage` onto a queue that already holds stages (the path that extends the stage files'
/// cache instead of rewriting it) killed at each point: the queue is the old one or the new
/// one, the caches agree with the files, and the next add sees every stage.
#[test]
fn add_stage_onto_a_queue_killed_at_each_point_leaves_all_or_nothing() {
    for point in ADD_STAGE_POINTS {
        let n = Night::new();
        n.init();
        let first = n.cards(&["a", "b"], "acceptance: [\"true\"]\n");
        n.add(&[&first[0], &first[1]]);
        let more = n.cards(&["c", "d"], "depends_on: [a]\nacceptance: [\"true\"]\n");
        let out = n.ns_env(
            &["add-stage", &more[0], &more[1]],
            &[("NIGHTSHIFT_FAILPOINT", point)],
        );
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&out.status),
            Some(9),
            "{point}: add-stage must die by SIGKILL"
        );
        let committed = matches!(point, "after-state-write" | "after-ledger-commit");
        let want: &[&str] = if committed {
            &["a", "b", "c", "d"]
        } else {
            &["a", "b"]
        };
        assert_eq!(stage_ids(&n), want, "{point}");
        let e = n.card("e", "depends_on: [b]\nacceptance: [\"true\"]\n", "body");
        n.add(&[&e]);
        let mut want = want.to_vec();
        want.push("e");
        assert_eq!(stage_ids(&n), want, "{point}");
        std::fs::remove_dir_all(n.path("state/.cache")).unwrap();
        assert_eq!(stage_ids(&n), want, "{point}: read from the files");
        assert!(!n.path("state/.adding").exists(), "{point}");
        n.assert_fsck_clean(point);
    }
}

/// A large `add-stage` (its stages in one pack, its card copies in one file) onto a queue,
/// killed at each point, on the path that appends (caches in step) and on the one that reads
/// everything (no cache): before the hot file nothing of it is left once the next writer has
/// run, and its ids are free again; from the hot file on, its stages are found through the
/// pack (a duplicate is refused, a dependency on one is accepted), and a pack deleted by
/// accident comes back from the ledger with `repair`.
#[test]
fn a_packed_add_stage_killed_at_each_point_leaves_all_or_nothing() {
    for point in ADD_STAGE_POINTS {
        for whole in [false, true] {
            let at = format!("{point}, {}", if whole { "whole" } else { "append" });
            let n = Night::new();
            n.init();
            let first = n.cards(&["a", "b"], "acceptance: [\"true\"]\n");
            n.add(&[&first[0], &first[1]]);
            let batch: Vec<String> = (0..20).map(|i| format!("p{i:02}")).collect();
            let refs: Vec<&str> = batch.iter().map(String::as_str).collect();
            let cards = n.cards(&refs, "depends_on: [a]\nacceptance: [\"true\"]\n");
            if whole {
                std::fs::remove_dir_all(n.path("state/.cache")).unwrap();
            }
            let mut args = vec!["add-stage"];
            args.extend(cards.iter().map(String::as_str));
            let out = n.ns_env(&args, &[("NIGHTSHIFT_FAILPOINT", point)]);
            assert_eq!(
                std::os::unix::process::ExitStatusExt::signal(&out.status),
                Some(9),
                "{at}: add-stage must die by SIGKILL"
            );
            let committed = matches!(point, "after-state-write" | "after-ledger-commit");
            let mut want: Vec<String> = vec!["a".into(), "b".into()];
            if committed {
                want.extend(batch.iter().cloned());
            }
            assert_eq!(stage_ids(&n), want, "{at}");
            // The next writer clears what the dead one left, or finds its stages in the pack.
            let dep = n.card("q", "depends_on: [p07]\nacceptance: [\"true\"]\n", "body");
            let out = n.ns(&["add-stage", &dep]);
            assert_eq!(
                out.status.success(),
                committed,
                "{at}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let mut files = vec!["a.yaml", "b.yaml"];
            if committed {
                files.extend(["pack-2.jsonl", "q.yaml"]);
                want.push("q".into());
                let dup = n.card("p13", "acceptance: [\"true\"]\n", "body");
                let out = n.ns(&["add-stage", &dup]);
                assert_eq!(out.status.code(), Some(1), "{at}: a duplicate is refused");
                assert!(stderr(&out).contains("p13"), "{at}: {}", stderr(&out));
            }
            assert_eq!(names_in(&n, "state/stages"), files, "{at}");
            let copies = names_in(&n, "state/cards");
            assert_eq!(
                copies.iter().filter(|c| c.starts_with("batch-")).count(),
                usize::from(committed),
                "{at}: {copies:?}"
            );
            assert!(!n.path("state/.adding").exists(), "{at}");
            assert_eq!(stage_ids(&n), want, "{at}");
            if committed {
                let before = n.status()["stages"].clone();
                std::fs::remove_file(n.path("state/stages/pack-2.jsonl")).unwrap();
                let rep = n.ok(&["repair"]);
                assert!(rep.contains("stage files"), "{at}: {rep}");
                assert_eq!(n.status()["stages"], before, "{at}");
            } else {
                // Its ids are free: the same batch goes in whole.
                n.add(&args[1..]);
                assert_eq!(stage_ids(&n).len(), 22, "{at}");
            }
            n.assert_fsck_clean(&at);
        }
    }
}

/// A tick killed after writing the file of a stage that ended, before its hot file: the next
/// tick finds the stage still hot and ends it once.
#[test]
fn a_tick_killed_after_a_stage_file_ends_the_stage_once() {
    let mut n = Night::new();
    n.init();
    let c = card(&n);
    n.add(&[&c]);
    let mut killed = false;
    for _ in 0..20 {
        if n.tick_killed_at("after-stage-files") {
            killed = true;
            break;
        }
        n.settle();
    }
    assert!(killed, "no tick wrote a stage file");
    // Killed with the file written and the hot file not: still hot, not yet done.
    assert!(n.read("state/stages/s1.yaml").contains("kind: done"));
    assert!(n.read("state/state.yaml").contains("id: s1"));
    assert_ne!(n.stage("s1")["status"], "done");
    n.drain(10);
    assert_eq!(n.stage("s1")["status"], "done");
    assert_eq!(n.count_events("s1: a1 done"), 1, "{:#?}", n.events());
    assert!(!n.read("state/state.yaml").contains("id: s1"));
    n.assert_fsck_clean("after the recovery");
}

#[test]
fn a_start_begun_but_failed_counts_as_never_started_and_is_not_begun_again() {
    let mut n = Night::new();
    n.init();
    let c = card(&n);
    n.add(&[&c]);
    // The wrapper starts but cannot register: a directory stands where its registration goes.
    std::fs::create_dir_all(n.repo.join("state/active-agents/s1@a1-worker.json")).unwrap();
    n.tick();
    n.settle();
    assert_eq!(n.stage("s1")["job"], "starting", "begun: its log is there");
    n.drain(20);
    let s = n.stage("s1");
    assert_eq!(s["status"], "done", "{s:#}");
    assert_eq!(s["attempt"], 2, "{s:#}");
    let events = n.events();
    assert!(
        events
            .iter()
            .any(|e| e == "s1: a1 failed: the worker job never started; will retry (not counted)"),
        "{events:#?}"
    );
    assert!(
        !events.iter().any(|e| e.contains("was never started")),
        "a start that was begun is not begun again: {events:#?}"
    );
    let log = n.read("state/logs/s1/a1-worker.log");
    assert!(log.contains("s1@a1-worker.json"), "the log says why: {log}");
}
