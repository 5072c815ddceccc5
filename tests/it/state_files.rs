//! Corrupt, missing and out-of-step state files: ticks refuse (never overwrite), name the
//! file and line, and `repair` restores from the ledger.

use super::night::{Night, stderr};

fn night_with_a_stage() -> Night {
    let n = Night::new();
    n.init();
    let c = n.card("s1", "", "body");
    n.add(&[&c]);
    n
}

#[test]
fn corrupt_state_yaml_is_refused_with_file_line_and_repair_hint_then_repaired() {
    let mut n = night_with_a_stage();
    let good = n.read("state/state.yaml");
    let bad = good.replacen("seq:", "seq: [oops\nseq:", 1);
    n.write("state/state.yaml", &bad);
    let out = n.tick();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("state/state.yaml"), "{err}");
    assert!(err.contains("line"), "{err}");
    assert!(err.contains("nightshift repair"), "{err}");
    assert_eq!(
        n.read("state/state.yaml"),
        bad,
        "a tick never overwrites a corrupt state file"
    );
    let rep = n.ok(&["repair"]);
    assert!(rep.contains("restored state/state.yaml"), "{rep}");
    assert_eq!(n.read("state/state.yaml"), good);
    assert!(n.tick().status.success());
    assert_eq!(n.stage("s1")["status"], "working");
}

#[test]
fn unknown_key_and_duplicate_key_in_state_are_refused() {
    for (from, to) in [
        (
            "consecutive_failures:",
            "surprise: 1\nconsecutive_failures:",
        ),
        (
            "consecutive_failures: 0",
            "consecutive_failures: 0\nconsecutive_failures: 1",
        ),
    ] {
        let mut n = night_with_a_stage();
        let text = n.read("state/state.yaml").replacen(from, to, 1);
        n.write("state/state.yaml", &text);
        let out = n.tick();
        assert_eq!(out.status.code(), Some(3), "{from}: {}", stderr(&out));
    }
}

#[test]
fn missing_state_or_budget_is_refused_then_repaired() {
    for file in ["state/state.yaml", "state/budget.json"] {
        let mut n = night_with_a_stage();
        let good = n.read(file);
        std::fs::remove_file(n.path(file)).unwrap();
        let out = n.tick();
        assert_eq!(out.status.code(), Some(3));
        assert!(
            stderr(&out).contains(&format!("{file} is missing")),
            "{}",
            stderr(&out)
        );
        n.ok(&["repair"]);
        assert_eq!(n.read(file), good);
    }
}

#[test]
fn corrupt_budget_json_names_line_and_column() {
    let mut n = night_with_a_stage();
    n.write("state/budget.json", "{\n  \"version\": 1,\n  \"seq\": \n}");
    let out = n.tick();
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stderr(&out).contains("state/budget.json"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("line 4"), "{}", stderr(&out));
}

#[test]
fn repair_with_nothing_wrong_says_so() {
    let n = night_with_a_stage();
    assert!(n.ok(&["repair"]).contains("nothing to repair"));
}

#[test]
fn commands_before_init_say_to_run_init() {
    let n = Night::new();
    let out = n.ns(&["tick"]);
    assert_eq!(out.status.code(), Some(4));
    assert!(
        stderr(&out).contains("nightshift") && stderr(&out).contains("init"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn init_is_idempotent() {
    let n = Night::new();
    n.ok(&["init"]);
    let head = n.ledger_head();
    let again = n.ok(&["init"]);
    assert!(again.contains("already set up"), "{again}");
    assert_eq!(n.ledger_head(), head);
    assert_eq!(n.read(".gitignore").matches("/state/").count(), 1);
}
