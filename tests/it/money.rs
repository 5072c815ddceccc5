//! Money caps through the binary: repo USD and token caps with reservations, a stage's own cap,
//! the host-wide cap across repositories, and the refusal of a USD cap with an unpriced model.

use super::night::{CONFIG, Night, PASS, script, stderr};

/// Scripted agents with priced models: each run reports 100k input + 10k output tokens.
fn priced(extra_budget: &str, extra: &str) -> String {
    CONFIG
        .replace(
            "  wclaude: { kind: script, family: claude }",
            "  wclaude: { kind: script, family: claude, model: test-model }",
        )
        .replace(
            "  vcodex: { kind: script, family: codex }",
            "  vcodex: { kind: script, family: codex, model: test-model }",
        )
        .replace(
            "budget:\n",
            &format!("budget:\n  estimate: {{ tokens: 120000, usd: 0.5 }}\n{extra_budget}"),
        )
        + "pricing:\n  test-model: { input: 2.0, output: 10.0, cache_read: 0.2, cache_write: 2.5 }\n"
        + extra
}

fn costly_card(n: &Night, id: &str, extra_front: &str) -> String {
    let worker = "    - steps:\n        - usage: { input: 100000, output: 10000, cache_read: 0, cache_write: 0 }\n        - write: { path: f.txt, content: x }\n        - envelope: { status: done, summary: ok }\n".to_owned();
    let front = format!("{extra_front}{}", script(&[worker], &[PASS]));
    let front = front.replace("        - verdict: { verdict: pass }", "        - usage: { input: 100000, output: 10000, cache_read: 0, cache_write: 0 }\n        - verdict: { verdict: pass }");
    n.card(id, &front, "body")
}

#[test]
fn usd_is_priced_per_family_and_the_repo_cap_halts_dispatch() {
    // One stage costs 2 runs x ($0.20 + $0.10) = $0.60. With a $1.00 cap the second stage's
    // worker does not fit ($0.60 spent + $0.50 estimate > $1.00): dispatch halts.
    let mut n = Night::with_config(&priced("  max_usd: 1.0\n", ""));
    n.init();
    let a = costly_card(&n, "a", "");
    let b = costly_card(&n, "b", "");
    n.add(&[&a, &b]);
    for _ in 0..12 {
        n.tick();
        n.settle();
    }
    let st = n.status();
    assert_eq!(st["stages"][0]["status"], "done", "{st:#}");
    assert_eq!(st["stages"][1]["status"], "queued", "{st:#}");
    assert!(
        (st["budget"]["usd"].as_f64().unwrap() - 0.6).abs() < 1e-9,
        "{st:#}"
    );
    assert!((st["budget"]["families"]["claude"]["usd"].as_f64().unwrap() - 0.3).abs() < 1e-9);
    assert!((st["budget"]["families"]["codex"]["usd"].as_f64().unwrap() - 0.3).abs() < 1e-9);
    assert_eq!(st["budget"]["tokens"], 220_000);
    assert_eq!(
        st["halted"]["reason"],
        "budget.max_usd: $0.60 spent + $0.00 reserved + $0.50 next > cap $1.00",
        "{st:#}"
    );
    assert!(n.ok(&["status"]).contains("$0.60"), "{}", n.ok(&["status"]));
}

#[test]
fn token_cap_counts_reservations_of_parallel_lanes() {
    // Three lanes, cap 300k tokens, estimate 120k per run: two dispatches fit (240k reserved),
    // the third would pass the cap (240k + 120k > 300k), so it is refused though a lane is free.
    let cfg = priced("  max_tokens: 300000\n", "").replace("lanes: 1", "lanes: 3");
    let mut n = Night::with_config(&cfg);
    n.init();
    let cards: Vec<String> = ["a", "b", "c"]
        .iter()
        .map(|id| costly_card(&n, id, ""))
        .collect();
    n.add(&[&cards[0], &cards[1], &cards[2]]);
    n.tick();
    let st = n.status();
    let working = st["stages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["status"] == "working")
        .count();
    assert_eq!(working, 2, "{st:#}");
    assert_eq!(
        st["halted"]["reason"],
        "budget.max_tokens: 0 spent + 240000 reserved + 120000 next > cap 300000"
    );
    n.settle();
}

#[test]
fn a_stage_cap_escalates_that_stage_only() {
    let mut n = Night::with_config(&priced("", ""));
    n.init();
    let a = costly_card(&n, "a", "budget: { max_usd: 0.5 }\n");
    let b = costly_card(&n, "b", "");
    n.add(&[&a, &b]);
    n.drain(20);
    assert_eq!(n.stage("a")["status"], "escalated");
    assert!(
        n.stage("a")["reason"]
            .as_str()
            .unwrap()
            .starts_with("stage cap: budget.max_usd"),
        "{:#}",
        n.stage("a")
    );
    assert_eq!(n.stage("b")["status"], "done");
}

#[test]
fn a_usd_cap_with_an_unpriced_model_is_a_config_error() {
    let cfg = CONFIG
        .replace(
            "  wclaude: { kind: script, family: claude }",
            "  wclaude: { kind: command, command: sh, family: claude, model: mystery-1 }",
        )
        .replace("budget:\n", "budget:\n  max_usd: 5\n");
    let n = Night::with_config(&cfg);
    let out = n.ns(&["init"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out)
            .contains("agents.wclaude.model: `mystery-1` has no price, and a USD cap is set"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn the_host_cap_counts_every_repository_on_the_machine() {
    let host = tempfile::tempdir().unwrap();
    let cfg = priced("", "host: { max_usd: 1.0 }\n");
    let mut first = Night::with_config(&cfg);
    first.extra_env.push((
        "NIGHTSHIFT_HOST_DIR".into(),
        host.path().display().to_string(),
    ));
    first.init();
    let a = costly_card(&first, "a", "");
    first.add(&[&a]);
    first.drain(20);
    assert_eq!(first.stage("a")["status"], "done");
    // A second repository on the same host sees the first one's $0.60.
    let mut second = Night::with_config(&cfg);
    second.extra_env.push((
        "NIGHTSHIFT_HOST_DIR".into(),
        host.path().display().to_string(),
    ));
    second.init();
    let b = costly_card(&second, "b", "");
    second.add(&[&b]);
    second.tick();
    let st = second.status();
    assert_eq!(st["stages"][0]["status"], "queued", "{st:#}");
    assert_eq!(
        st["halted"]["reason"],
        "host.max_usd: $0.60 spent + $0.00 reserved + $0.50 next > cap $1.00",
        "{st:#}"
    );
}
