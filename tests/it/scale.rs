//! Queues far longer than a night's: whatever `add-stage` accepts, every command reads back;
//! the one limit on a repository's size is enforced where stages enter.

use super::night::{Night, PASS, script, stderr, writes};

/// Queued cards in the test: 10,000, what a user's queue reaches (`NIGHTSHIFT_TEST_QUEUE`
/// overrides, for a quicker run while iterating). About a minute of a debug build.
fn queue_len() -> usize {
    std::env::var("NIGHTSHIFT_TEST_QUEUE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
}

/// Writes `count` cards (ids `c00000`…), each a worker that writes its own file and a passing
/// verifier, commits them in one commit, and returns their paths.
fn many_cards(n: &Night, count: usize) -> Vec<String> {
    (0..count)
        .map(|i| {
            let id = format!("c{i:05}");
            let rel = format!("stage-cards/{id}.md");
            let front = format!(
                "acceptance:\n  - test -f {id}.txt\n{}",
                script(&[writes(&format!("{id}.txt"), "x\n")], &[PASS])
            );
            n.write(
                &rel,
                &format!("---\nid: {id}\ntitle: Stage {id}\n{front}---\nDo {id}.\n"),
            );
            rel
        })
        .collect()
}

fn done(n: &Night) -> usize {
    n.status()["stages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["status"] == "done")
        .count()
}

#[test]
fn ten_thousand_queued_cards_are_read_back_by_every_command_and_drain() {
    queue_and_drain(queue_len());
}

fn queue_and_drain(count: usize) {
    let mut n = Night::new();
    n.init();
    let cards = many_cards(&n, count);
    n.commit_all("cards");
    let mut args = vec!["add-stage"];
    args.extend(cards.iter().map(String::as_str));
    n.ok(&args);
    let st = n.status();
    assert_eq!(st["stages"].as_array().unwrap().len(), count);
    // Drain the first few stages, one lane, tick by tick.
    for _ in 0..40 {
        let out = n.tick();
        assert!(out.status.success(), "tick failed: {}", stderr(&out));
        n.settle();
        if done(&n) >= 2 {
            break;
        }
    }
    assert!(done(&n) >= 2, "{:#}", n.stage("c00000"));
    assert_eq!(n.stage("c00002")["status"], "working");
    // Every other reader of the state takes it too.
    n.ok(&["log", "--json"]);
    n.ok(&["report", "--format", "json"]);
    let rep = n.ns(&["repair"]);
    assert!(rep.status.success(), "{}", stderr(&rep));
    n.ok(&["cancel", &format!("c{:05}", count - 1)]);
}

#[test]
fn add_stage_refuses_a_batch_over_the_stage_limit_and_enqueues_nothing() {
    let n = Night::new();
    n.init();
    let cards = many_cards(&n, 4);
    n.commit_all("cards");
    let limit = [("NIGHTSHIFT_MAX_STAGES", "3")];
    let out = n.ns_env(&["add-stage", &cards[0], &cards[1]], &limit);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = n.ns_env(&["add-stage", &cards[2], &cards[3]], &limit);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("limit of 3 stages"), "{err}");
    assert!(err.contains("nothing was enqueued"), "{err}");
    assert_eq!(n.status()["stages"].as_array().unwrap().len(), 2);
    // One more still fits.
    let out = n.ns_env(&["add-stage", &cards[2]], &limit);
    assert!(out.status.success(), "{}", stderr(&out));
}
