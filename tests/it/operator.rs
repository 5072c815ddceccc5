//! Operator commands and add-stage validation: requeue, cancel, resume; duplicates, unknown
//! and cyclic dependencies; the card copy taken at add-stage.

use super::night::{Night, PASS, script, stderr, writes};

#[test]
fn add_stage_refuses_duplicates_unknown_and_cyclic_dependencies() {
    let n = Night::new();
    n.init();
    let a = n.card("a", "", "body");
    n.add(&[&a]);
    let dup = n.ns(&["add-stage", &a]);
    assert!(
        stderr(&dup).contains("refused: stage `a` already exists"),
        "{}",
        stderr(&dup)
    );
    let u = n.card("u", "depends_on: [nope]\n", "body");
    assert!(
        stderr(&n.ns(&["add-stage", &u]))
            .contains("stage `u` depends on `nope`, which is not a stage")
    );
    let x = n.card("x", "depends_on: [y]\n", "body");
    let y = n.card("y", "depends_on: [x]\n", "body");
    let cyc = n.ns(&["add-stage", &x, &y]);
    assert!(
        stderr(&cyc).contains("dependency cycle"),
        "{}",
        stderr(&cyc)
    );
    let selfdep = n.card("z", "depends_on: [z]\n", "body");
    assert!(stderr(&n.ns(&["add-stage", &selfdep])).contains("cycle"));
    let ids: Vec<_> = n.status()["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].clone())
        .collect();
    assert_eq!(ids, ["a"]);
}

#[test]
fn bad_card_errors_name_the_file_and_line() {
    let n = Night::new();
    n.init();
    n.write(
        "stage-cards/bad.md",
        "---\nid: bad\ntitle: t\nacceptence: [x]\n---\nbody\n",
    );
    let out = n.ns(&["add-stage", "stage-cards/bad.md"]);
    let err = stderr(&out);
    assert!(err.contains("stage-cards/bad.md"), "{err}");
    assert!(err.contains("acceptence"), "{err}");
    assert!(err.contains("line 3") || err.contains("3:"), "{err}");
}

/// A batch large enough to be parsed in several threads names the first bad card in the
/// order given (not the first thread to finish), and enqueues nothing.
#[test]
fn a_large_batch_names_its_first_bad_card_in_order() {
    let n = Night::new();
    n.init();
    let mut cards = Vec::new();
    for i in 0..200 {
        let id = format!("p{i:03}");
        let front = match i {
            70 => "acceptence: [x]\n".to_owned(),
            130 => "worker: nobody\n".to_owned(),
            _ => String::new(),
        };
        let rel = format!("stage-cards/{id}.md");
        n.write(
            &rel,
            &format!("---\nid: {id}\ntitle: t\n{front}---\nbody\n"),
        );
        cards.push(rel);
    }
    let mut args = vec!["add-stage"];
    args.extend(cards.iter().map(String::as_str));
    let out = n.ns(&args);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("stage-cards/p070.md"), "{err}");
    assert!(!err.contains("p130"), "{err}");
    // The later card alone at fault is named when the earlier one is left out.
    let rest: Vec<&str> = args
        .iter()
        .copied()
        .filter(|a| !a.contains("p070"))
        .collect();
    let err = stderr(&n.ns(&rest));
    assert!(
        err.contains("stage-cards/p130.md") && err.contains("nobody"),
        "{err}"
    );
    assert!(
        !n.path("state/stages").exists()
            || std::fs::read_dir(n.path("state/stages"))
                .unwrap()
                .next()
                .is_none()
    );
    assert!(n.status()["stages"].as_array().unwrap().is_empty());
}

/// Regression: a glob that cannot compile was accepted and silently matched nothing.
#[test]
fn a_protected_glob_that_cannot_compile_is_refused_naming_card_field_and_pattern() {
    let n = Night::new();
    n.init();
    n.write(
        "stage-cards/g.md",
        "---\nid: g\ntitle: t\nprotected: [\"src/**\", \"[ab.txt\"]\n---\nbody\n",
    );
    let out = n.ns(&["add-stage", "stage-cards/g.md"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    for needle in ["stage-cards/g.md", "protected[1]", "[ab.txt"] {
        assert!(err.contains(needle), "{needle}: {err}");
    }
    assert!(n.status()["stages"].as_array().unwrap().is_empty());
}

#[test]
fn a_dispatched_attempt_uses_the_card_as_added_not_as_edited_later() {
    let mut n = Night::new();
    n.init();
    let front = format!(
        "acceptance: [\"true\"]\n{}",
        script(&[writes("a", "a")], &[PASS])
    );
    let c = n.card("s1", &front, "# Objective\nORIGINAL TEXT");
    n.add(&[&c]);
    n.write(
        &c,
        &std::fs::read_to_string(n.path(&c))
            .unwrap()
            .replace("ORIGINAL TEXT", "EDITED TEXT"),
    );
    n.drain(10);
    let prompt = n.read("state/handoffs/s1/a1/worker-prompt.md");
    assert!(
        prompt.contains("ORIGINAL TEXT") && !prompt.contains("EDITED TEXT"),
        "{prompt}"
    );
}

#[test]
fn cancel_kills_the_running_job_and_requeue_runs_it_again() {
    let mut n = Night::new();
    n.init();
    let hang = "    - steps:\n        - spawn_grandchild\n        - hang\n".to_owned();
    let front = script(&[hang, writes("a", "a")], &[PASS]);
    let c = n.card("s1", &front, "body");
    n.add(&[&c]);
    n.tick();
    let reg = super::night::wait_for_child(&n, "s1@a1-worker");
    let pgid = reg["child_pgid"].as_i64().unwrap();
    n.ok(&["cancel", "s1"]);
    assert_eq!(n.stage("s1")["status"], "cancelled");
    assert!(
        !group_alive(pgid),
        "the agent's process group must be gone after cancel"
    );
    n.ok(&["requeue", "s1"]);
    assert_eq!(n.stage("s1")["status"], "queued");
    n.drain(20);
    let s = n.stage("s1");
    assert_eq!(
        (
            s["status"].as_str(),
            s["attempt"].as_u64(),
            s["attempts_used"].as_u64()
        ),
        (Some("done"), Some(2), Some(1))
    );
    let bad = n.ns(&["requeue", "nope"]);
    assert!(stderr(&bad).contains("no stage `nope`"));
}

fn group_alive(pgid: i64) -> bool {
    let out = std::process::Command::new("ps")
        .args(["-eo", "pgid=,stat="])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).lines().any(|l| {
        let mut it = l.split_whitespace();
        it.next().and_then(|g| g.parse::<i64>().ok()) == Some(pgid)
            && !it.next().unwrap_or("").starts_with('Z')
    })
}

#[test]
fn consecutive_failures_halt_keeps_the_first_reason_and_resume_resets_the_counter() {
    let cfg = super::night::CONFIG.replace(
        "max_consecutive_failures: 50",
        "max_consecutive_failures: 2",
    );
    let mut n = Night::with_config(&cfg);
    n.init();
    let front = format!(
        "max_attempts: 5\nacceptance: [\"false\"]\n{}",
        script(&[writes("a", "a")], &[PASS])
    );
    let c = n.card("s1", &front, "body");
    n.add(&[&c]);
    for _ in 0..12 {
        n.tick();
        n.settle();
    }
    let st = n.status();
    assert_eq!(
        st["halted"]["reason"],
        "budget.max_consecutive_failures: 2 attempts failed in a row (cap 2)",
        "{st:#}"
    );
    assert_eq!(st["stages"][0]["status"], "retry");
    let human = n.ok(&["status"]);
    assert!(
        human.contains("HALTED") && human.contains("nightshift resume"),
        "{human}"
    );
    n.ok(&["resume"]);
    assert!(n.status()["halted"].is_null());
    n.tick();
    assert_eq!(
        n.stage("s1")["status"],
        "working",
        "resume must not halt again at once"
    );
}

#[test]
fn wall_time_cap_stops_dispatch_and_names_the_cap() {
    let cfg = super::night::CONFIG.replace("budget:\n", "budget:\n  max_wall_time: 3m\n");
    let mut n = Night::with_config(&cfg);
    n.init();
    let c = n.card("s1", "", "body");
    n.add(&[&c]);
    n.tick();
    let st = n.status();
    assert_eq!(st["stages"][0]["status"], "queued");
    assert_eq!(
        st["halted"]["reason"],
        "budget.max_wall_time: 0s spent + 0s reserved + 5m next > cap 3m"
    );
}

/// Regression: from a subdirectory, `status` hinted `nightshift --repo . init`, which then
/// failed. Commands find the top of the work tree as git does, and the hint works as printed.
#[test]
fn commands_work_from_a_subdirectory_and_the_init_hint_works_as_printed() {
    let n = Night::new();
    std::fs::create_dir_all(n.path("src/deep")).unwrap();
    let sub = n.path("src/deep");
    let in_sub = |args: &[&str]| n.ns_at(&sub, args);
    let out = in_sub(&["status"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let err = stderr(&out);
    let hint = err
        .lines()
        .find_map(|l| l.trim().strip_prefix("hint: run `"))
        .and_then(|h| h.strip_suffix('`'))
        .unwrap_or_else(|| panic!("no hint: {err}"))
        .to_owned();
    let words: Vec<&str> = hint.split_whitespace().skip(1).collect();
    let out = in_sub(&words);
    assert!(out.status.success(), "`{hint}`: {}", stderr(&out));
    let out = in_sub(&["status", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
}
