//! A verifier panel through the real binary: three scripted members (each its own detached
//! job, each following its own agent's recipe), quorum 2. The tick dispatches members and
//! later collects their votes; it never waits for one.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::night::{Night, PASS, script, stderr, stdout, wait_for_child, writes};

/// Three panel members of three families other than the worker's, each with its own recipe.
const CONFIG: &str = "\
version: 1
lanes: 3
base: main
integration: { branch: nightshift/integration, policy: fast-forward }
agents:
  wclaude: { kind: script, family: claude }
  vcodex: { kind: script, family: codex }
  pa: { kind: script, family: codex, recipe: recipes/pa.yaml }
  pb: { kind: script, family: gemini, recipe: recipes/pb.yaml }
  pc: { kind: script, family: grok, recipe: recipes/pc.yaml }
defaults:
  worker: wclaude
  verifier: vcodex
  max_attempts: 2
  timeouts: { worker: 5m, verifier: 5m, acceptance: 2m }
budget:
  max_consecutive_failures: 50
";

/// A member recipe: run `r` plays entry `r` (the last repeats).
fn recipe(plays: &[&str]) -> String {
    let mut s = String::from("verifier:\n");
    for p in plays {
        s.push_str(&format!("  - steps:\n      - {p}\n"));
    }
    s
}

/// A repo with the panel config, the members' recipes, and a stage `s1` judged by the panel.
fn panel_night(pa: &[&str], pb: &[&str], pc: &[&str]) -> Night {
    let n = Night::with_config(CONFIG);
    n.write("recipes/pa.yaml", &recipe(pa));
    n.write("recipes/pb.yaml", &recipe(pb));
    n.write("recipes/pc.yaml", &recipe(pc));
    n.commit_all("recipes");
    n.init();
    let front = format!(
        "acceptance:\n  - \"true\"\npanel: {{ members: [pa, pb, pc], quorum: 2 }}\n{}",
        script(&[writes("a.txt", "a")], &[PASS])
    );
    let c = n.card("s1", &front, "body");
    n.add(&[&c]);
    n
}

fn member_dir(n: &Night, attempt: u32, member: &str, run: u32) -> std::path::PathBuf {
    n.path(&format!(
        "state/handoffs/s1/a{attempt}/panel/{member}/r{run}"
    ))
}

/// Waits (real time) until a member run's outcome file is there.
fn wait_outcome(n: &Night, attempt: u32, member: &str, run: u32) {
    let f = member_dir(n, attempt, member, run).join("verifier.json");
    let start = Instant::now();
    while !f.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{member} r{run} left no outcome: {:#}",
            n.status()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Ticks through the worker and acceptance: the tick after returns with the panel out.
fn to_panel(n: &mut Night) {
    for _ in 0..2 {
        assert!(n.tick().status.success());
        n.settle();
    }
    let out = n.tick();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(n.stage("s1")["status"], "verifying", "{:#}", n.status());
}

fn votes(n: &Night) -> Vec<(String, String)> {
    n.stage("s1")["panel"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["member"].as_str().unwrap().to_owned(),
                m["vote"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn member<'a>(stage: &'a Value, name: &str) -> &'a Value {
    stage["panel"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["member"] == name)
        .unwrap()
}

/// Whether a process group has a member that is not a zombie (a killed wrapper may wait to be
/// reaped by whoever adopted it).
fn pgid_alive(pgid: i64) -> bool {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .any(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
                let f: Vec<&str> = s[s.rfind(')').unwrap() + 1..].split_whitespace().collect();
                f.first() != Some(&"Z")
                    && f.get(2).and_then(|g| g.parse::<i64>().ok()) == Some(pgid)
            })
        })
}

#[test]
fn two_passes_decide_while_the_third_runs_and_it_is_cancelled_with_its_spend_kept() {
    let mut n = panel_night(&[PASS], &[PASS], &["hang"]);
    to_panel(&mut n);
    let reg = wait_for_child(&n, "s1@a1-verifier+pc+r1");
    wait_outcome(&n, 1, "pa", 1);
    wait_outcome(&n, 1, "pb", 1);
    // Each member ran in its own folder with its own prompt and resolved recipe.
    for m in ["pa", "pb", "pc"] {
        let dir = member_dir(&n, 1, m, 1);
        assert!(dir.join("verifier-prompt.md").is_file(), "{m}");
        let recipe = std::fs::read_to_string(dir.join("verifier-recipe.json")).unwrap();
        assert_eq!(
            recipe.contains("hang"),
            m == "pc",
            "{m} plays its own recipe"
        );
    }
    let s = n.stage("s1");
    assert_eq!(s["job"], "running", "{s:#}");
    n.minute += 2;
    let out = n.tick();
    assert!(out.status.success(), "{}", stderr(&out));
    let s = n.stage("s1");
    assert_eq!(s["status"], "integrating", "{s:#}");
    assert_eq!(
        votes(&n),
        [
            ("pa".to_owned(), "pass".to_owned()),
            ("pb".to_owned(), "pass".to_owned()),
            ("pc".to_owned(), "cancelled".to_owned())
        ]
    );
    // The hanging member's job is gone, and what it spent so far is kept.
    for g in ["pgid", "child_pgid"] {
        let pgid = reg[g].as_i64().unwrap();
        assert!(!pgid_alive(pgid), "{g} {pgid} survived the cancel");
    }
    let pc = member(&s, "pc");
    assert!(pc["wall_secs"].as_u64().unwrap() >= 120, "{pc:#}");
    assert!(pc["tokens"].as_u64().unwrap() > 0, "{pc:#}");
    assert!(n.count_events("cancelled pc (still running)") == 1);
    let state = n.read("state/state.yaml");
    assert!(state.contains("kind: cancelled"), "{state}");
    // `status` and `log` show each member's vote.
    let text = n.ok(&["status"]);
    assert!(
        text.contains("pa pass") && text.contains("pc cancelled"),
        "{text}"
    );
    assert!(n.count_events("panel passed (pa pass, pb pass, pc cancelled)") == 1);
    assert!(n.tick().status.success());
    assert_eq!(n.stage("s1")["status"], "done");
    // The report shows each member's vote.
    let md = n.ok(&["report", "--since", "2026-01-01T00:00:00Z"]);
    assert!(
        md.contains("pass (panel: pa pass, pb pass, pc cancelled)"),
        "{md}"
    );
}

#[test]
fn a_crashed_member_alone_is_re_dispatched_and_its_vote_decides() {
    let fail = "verdict: { verdict: fail, findings: [\"no tests\"] }";
    let mut n = panel_night(&[PASS], &[fail], &["exit: 3", PASS]);
    to_panel(&mut n);
    for m in ["pa", "pb", "pc"] {
        wait_outcome(&n, 1, m, 1);
    }
    n.settle();
    let out = n.tick();
    assert!(out.status.success(), "{}", stderr(&out));
    // 1 pass, 1 fail, 1 crash: no decision; only the crashed member runs again.
    let s = n.stage("s1");
    assert_eq!(s["status"], "verifying", "{:#}", s["panel"]);
    assert_eq!(
        votes(&n),
        [
            ("pa".to_owned(), "pass".to_owned()),
            ("pb".to_owned(), "fail".to_owned()),
            ("pc".to_owned(), "running".to_owned())
        ]
    );
    assert_eq!(n.count_events("re-dispatching it alone"), 1);
    wait_outcome(&n, 1, "pc", 2);
    assert!(!member_dir(&n, 1, "pa", 2).exists());
    assert!(!member_dir(&n, 1, "pb", 2).exists());
    n.settle();
    let out = n.tick();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(n.stage("s1")["status"], "integrating");
    assert!(n.tick().status.success());
    let s = n.stage("s1");
    assert_eq!(s["status"], "done", "{s:#}");
    assert_eq!(member(&s, "pc")["vote"], "pass");
    assert_eq!(member(&s, "pc")["runs"], 2);
    assert_eq!(member(&s, "pb")["findings"][0], "no tests");
    assert_eq!(n.count_events("panel: dispatched pc (run 2)"), 1);
    assert_eq!(n.count_events("panel: dispatched pa"), 1);
}

#[test]
fn a_panel_against_fails_at_once_and_the_retry_gets_every_dissent_labelled() {
    let fail = "verdict: { verdict: fail, findings: [\"the migration drops a column\"] }";
    let revise = "verdict: { verdict: revise, findings: [\"add a down migration\"] }";
    let mut n = panel_night(&[fail], &[revise], &["hang"]);
    to_panel(&mut n);
    wait_for_child(&n, "s1@a1-verifier+pc+r1");
    wait_outcome(&n, 1, "pa", 1);
    wait_outcome(&n, 1, "pb", 1);
    let out = n.tick();
    assert!(out.status.success(), "{}", stderr(&out));
    // A pass quorum became impossible: decided without waiting for pc.
    let s = n.stage("s1");
    assert_eq!(s["status"], "retry", "{s:#}");
    assert_eq!(member(&s, "pc")["vote"], "cancelled");
    assert!(n.tick().status.success());
    assert_eq!(n.stage("s1")["attempt"], 2);
    n.settle();
    let prompt = n.read("state/handoffs/s1/a2/worker-prompt.md");
    assert!(
        prompt.contains("[pa] the migration drops a column")
            && prompt.contains("[pb] add a down migration"),
        "{prompt}"
    );
    let state = n.read("state/state.yaml");
    assert!(state.contains("decided: fail"), "{state}");
}

#[test]
fn a_member_of_the_workers_family_is_refused_naming_the_key() {
    let config = CONFIG.replace(
        "  max_attempts: 2\n",
        "  max_attempts: 2\n  panel: { members: [pa, wclaude, pb], quorum: 2 }\n",
    );
    let n = Night::with_config(CONFIG);
    n.init();
    n.write("nightshift.yaml", &config);
    let out = n.ns(&["tick"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("nightshift.yaml: defaults.panel.members[1]: `wclaude` is of family `claude`"),
        "{err}"
    );
    // The panel may say so.
    n.write(
        "nightshift.yaml",
        &config.replace("quorum: 2 }", "quorum: 2, allow_same_family: true }"),
    );
    n.ok(&["status"]);

    // A card's own panel is checked against its worker at add-stage.
    let n = Night::with_config(CONFIG);
    n.init();
    let c = n.card(
        "s1",
        &format!(
            "panel: {{ members: [pa, pb, wclaude], quorum: 2 }}\n{}",
            script(&[writes("a", "a")], &[PASS])
        ),
        "body",
    );
    let out = n.ns(&["add-stage", &c]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("stage-cards/s1.md: panel.members[2]: `wclaude` is of family `claude`"),
        "{err}"
    );
    assert!(
        n.stage("s1").is_null(),
        "nothing enqueued: {:#}",
        n.status()
    );
}

#[test]
fn verify_panel_picks_the_defaults_panel_and_panel_when_matches_deliverable_paths() {
    let config = CONFIG.replace(
        "  max_attempts: 2\n",
        "  max_attempts: 2\n  panel: { members: [pa, pb], quorum: 2 }\n  panel_when: { paths: [\"migrations/**\"] }\n",
    );
    let mut n = Night::with_config(&config);
    n.write("recipes/pa.yaml", &recipe(&[PASS]));
    n.write("recipes/pb.yaml", &recipe(&[PASS]));
    n.write("recipes/pc.yaml", &recipe(&[PASS]));
    n.commit_all("recipes");
    n.init();
    let plain = n.card("plain", &script(&[writes("a.txt", "a")], &[PASS]), "body");
    let risky = n.card(
        "risky",
        &format!(
            "depends_on: [plain]\n{}",
            script(&[writes("migrations/1.sql", "x")], &[PASS])
        ),
        "body",
    );
    let asked = n.card(
        "asked",
        &format!(
            "depends_on: [risky]\nverify: panel\n{}",
            script(&[writes("c.txt", "c")], &[PASS])
        ),
        "body",
    );
    n.add(&[&plain, &risky, &asked]);
    n.drain(30);
    assert_eq!(n.stage("plain")["status"], "done");
    assert_eq!(n.stage("risky")["status"], "done");
    assert_eq!(n.stage("asked")["status"], "done");
    assert_eq!(n.stage("asked")["panel"][1]["vote"], "pass");
    assert!(n.stage("plain")["panel"].as_array().unwrap().is_empty());
    assert_eq!(
        n.stage("risky")["panel"].as_array().unwrap().len(),
        2,
        "{:#}",
        n.stage("risky")
    );
    assert_eq!(
        n.count_events("verifying with the panel pa, pb (quorum 2)"),
        2
    );
}

#[test]
fn another_repos_tick_proceeds_while_a_panel_runs() {
    let mut a = panel_night(&["hang"], &["hang"], &["hang"]);
    to_panel(&mut a);
    for m in ["pa", "pb", "pc"] {
        wait_for_child(&a, &format!("s1@a1-verifier+{m}+r1"));
    }
    // The tick that dispatched the panel has exited: no lock is held across the members.
    let lock = a.path("state/.lock");
    let out = std::process::Command::new("flock")
        .args(["-n", "-E", "99"])
        .arg(&lock)
        .arg("true")
        .output()
        .expect("flock");
    assert!(out.status.success(), "state/.lock is held: {out:?}");
    let again = a.tick();
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(a.stage("s1")["status"], "verifying");
    // `logs` of a stage waiting on its panel follows a member's log.
    let log = a.stage("s1")["log_path"].as_str().unwrap().to_owned();
    assert!(log.ends_with("a1-verifier-pa-r1.log"), "{log}");
    a.ok(&["logs", "s1", "--raw"]);

    let mut b = Night::new();
    b.init();
    let c = b.card("s1", &script(&[writes("b.txt", "b")], &[PASS]), "body");
    b.add(&[&c]);
    b.drain(10);
    assert_eq!(b.stage("s1")["status"], "done", "{}", stdout(&b.tick()));
    assert_eq!(a.stage("s1")["job"], "running");
}

#[test]
fn members_a_dead_tick_never_started_are_started_as_the_same_runs() {
    let mut n = panel_night(&[PASS], &[PASS], &[PASS]);
    for _ in 0..2 {
        assert!(n.tick().status.success());
        n.settle();
    }
    // The tick that dispatches the panel dies right after its commit: no member was begun.
    assert!(n.tick_killed_at("after-ledger-commit"));
    assert_eq!(n.stage("s1")["job"], "not started", "{:#}", n.status());
    let out = n.tick();
    assert!(out.status.success(), "{}", stderr(&out));
    for m in ["pa", "pb", "pc"] {
        assert_eq!(
            n.count_events(&format!(
                "panel: {m} r1 was never started (the tick that dispatched it stopped first); starting it now"
            )),
            1
        );
        wait_outcome(&n, 1, m, 1);
    }
    n.settle();
    assert!(n.tick().status.success());
    assert!(n.tick().status.success());
    let s = n.stage("s1");
    assert_eq!(s["status"], "done", "{s:#}");
    for m in ["pa", "pb", "pc"] {
        assert_eq!(member(&s, m)["runs"], 1, "{m}: {s:#}");
        assert_eq!(member(&s, m)["vote"], "pass", "{m}: {s:#}");
    }
    assert_eq!(n.count_events("gave no vote"), 0);
}
