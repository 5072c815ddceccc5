//! The CLI tells the truth: one attempt number everywhere, `in_flight` counts running jobs,
//! a running job shows its elapsed time, deadline and log, a tick says what it did, `log`
//! and the `--json` outputs are structured, unpriced models are warned about, and every error
//! names the file at fault with a hint that works from where the user stands.

use serde_json::Value;

use super::night::{CONFIG, Night, PASS, script, stderr, stdout, wait_for_child, writes};

const HANG: &str = "    - steps:\n        - hang\n";

/// After `requeue`, `status` shows the attempt that runs (the `aN` of its handoff folder, log
/// and ledger line) with the count since the requeue beside it, never `1/3` for attempt 2.
#[test]
fn requeued_attempt_shows_one_number_everywhere() {
    let mut n = Night::new();
    n.init();
    let front = script(&[HANG.into(), HANG.into()], &[PASS]);
    let c = n.card("s1", &front, "body");
    n.add(&[&c]);
    n.tick();
    wait_for_child(&n, "s1@a1-worker");
    n.ok(&["cancel", "s1"]);
    n.ok(&["requeue", "s1"]);
    n.tick();
    wait_for_child(&n, "s1@a2-worker");
    let st = n.ok(&["status"]);
    let row = st
        .lines()
        .find(|l| l.starts_with("s1 "))
        .unwrap_or_default();
    assert!(row.contains(" 2 (1/3) "), "{st}");
    assert!(
        row.contains("1m elapsed, 4m left") && row.contains("state/logs/s1/a2-worker.log"),
        "{st}"
    );
    let s = n.stage("s1");
    assert_eq!(
        (&s["attempt"], &s["attempts_used"], &s["elapsed_secs"]),
        (&2.into(), &1.into(), &60.into()),
        "{s:#}"
    );
    assert_eq!(s["deadline_left_secs"], 240, "{s:#}");
    assert_eq!(s["log_path"], "state/logs/s1/a2-worker.log", "{s:#}");
    assert!(n.path("state/handoffs/s1/a2").is_dir());
    let log: Value = serde_json::from_str(&n.ok(&["log", "--json", "-n", "1"])).unwrap();
    let ev = log["entries"][0]["events"]
        .as_array()
        .and_then(|evs| evs.iter().find(|e| e["kind"] == "dispatched"))
        .unwrap_or(&Value::Null);
    assert_eq!(
        (&ev["stage"], &ev["attempt"], &ev["kind"]),
        (&"s1".into(), &2.into(), &"dispatched".into()),
        "{log:#}"
    );
    n.ok(&["cancel", "s1"]);
}

/// A stage in `retry` has no job: nothing is in flight.
#[test]
fn a_stage_waiting_to_retry_is_not_in_flight() {
    let mut n = Night::new();
    n.init();
    let front = format!(
        "acceptance: [\"false\"]\n{}",
        script(&[writes("a.txt", "a")], &[PASS])
    );
    let c = n.card("s1", &front, "body");
    n.add(&[&c]);
    for _ in 0..6 {
        n.tick();
        n.settle();
        if n.stage("s1")["status"] == "retry" {
            break;
        }
    }
    let st = n.status();
    assert_eq!(n.stage("s1")["status"], "retry", "{st:#}");
    assert_eq!(st["in_flight"], 0, "{st:#}");
    assert!(
        n.ok(&["status"]).contains("0 job(s) running on 1 lane(s)"),
        "{}",
        n.ok(&["status"])
    );
}

/// A tick prints one line per event it recorded (nothing with `--quiet`); `tick --json` and
/// `log --json` carry `{stage, attempt, kind, text}` events and numeric spend; `log` prints
/// the spend so far once.
#[test]
fn a_tick_says_what_it_did() {
    let mut n = Night::new();
    n.init();
    let c = n.card("s1", &script(&[writes("a.txt", "a")], &[PASS]), "body");
    let d = n.card("s2", &script(&[writes("b.txt", "b")], &[PASS]), "body");
    n.add(&[&c, &d]);
    let out = n.ns(&["tick", "--json"]);
    let j: Value = serde_json::from_str(&stdout(&out)).expect("tick json");
    assert_eq!(j["result"], "advanced", "{j:#}");
    let ev = &j["events"][0];
    assert_eq!(
        (&ev["stage"], &ev["attempt"], &ev["kind"]),
        (&"s1".into(), &1.into(), &"dispatched".into()),
        "{j:#}"
    );
    assert!(j["spent"]["tokens"].is_u64(), "{j:#}");
    n.minute += 1;
    n.settle();
    let out = n.tick();
    let text = stdout(&out);
    assert!(
        text.lines()
            .any(|l| l == "s1: a1 worker handed off; checking acceptance"),
        "{text}"
    );
    n.settle();
    let quiet = n.ns(&["tick", "--quiet"]);
    assert!(quiet.status.success(), "{}", stderr(&quiet));
    assert_eq!(stdout(&quiet), "");
    assert!(
        n.events()
            .iter()
            .any(|e| e == "s1: a1 acceptance passed; verifying with vcodex"),
        "the quiet tick still advanced: {:?}",
        n.events()
    );
    n.drain(20);
    let idle = n.tick();
    assert_eq!(stdout(&idle), "", "an idle tick prints nothing");
    let log = n.ok(&["log"]);
    assert_eq!(log.matches("spent so far").count(), 1, "{log}");
    let j: Value = serde_json::from_str(&n.ok(&["log", "--json"])).unwrap();
    let kinds: Vec<&str> = j["entries"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|e| e["events"].as_array().unwrap())
        .filter_map(|e| e["kind"].as_str())
        .collect();
    for k in [
        "added",
        "dispatched",
        "handed_off",
        "verified",
        "integrated",
    ] {
        assert!(kinds.contains(&k), "{k} missing: {kinds:?}");
    }
    assert!(j["entries"][0]["spent"]["wall_secs"].is_u64(), "{j:#}");
}

/// A paid agent whose model has no price: `status` and `doctor` say so (without a USD cap;
/// with one it stays a configuration error).
#[test]
fn an_unpriced_model_is_warned_about() {
    let config = CONFIG.replace(
        "  vcodex: { kind: script, family: codex }\n",
        "  vcodex: { kind: script, family: codex }\n  cx: { kind: codex, model: gpt-nowhere-1 }\n",
    );
    let n = Night::with_config(&config);
    n.init();
    let st = n.ok(&["status"]);
    assert!(
        st.contains("warning: agent `cx`: model `gpt-nowhere-1` has no price"),
        "{st}"
    );
    assert_eq!(n.status()["warnings"].as_array().map(Vec::len), Some(1));
    let doc: Value = serde_json::from_str(&stdout(&n.ns(&["doctor", "--json"]))).unwrap();
    assert!(
        doc["warnings"][0]
            .as_str()
            .is_some_and(|w| w.contains("gpt-nowhere-1") && w.contains("pricing:")),
        "{doc:#}"
    );
    let capped = config.replace("budget:\n", "budget:\n  max_usd: 5\n");
    n.write("nightshift.yaml", &capped);
    let out = n.ns(&["status"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("`gpt-nowhere-1` has no price"),
        "{}",
        stderr(&out)
    );
}

/// Every error names the file (and line) at fault, once, in words a person reads.
#[test]
fn errors_name_the_file_and_say_what_is_wrong() {
    let n = Night::new();
    n.init();
    let good = n.read("state/state.yaml");
    n.write(
        "state/state.yaml",
        &good
            .lines()
            .map(|l| if l.starts_with("seq:") { "seq: [3]" } else { l })
            .collect::<Vec<_>>()
            .join("\n"),
    );
    let err = stderr(&n.ns(&["status"]));
    assert!(
        err.contains("--> state/state.yaml:") && !err.contains("<input>"),
        "{err}"
    );
    assert!(
        err.contains("expected a single value here") && !err.contains("string scalar"),
        "{err}"
    );
    assert!(!err.contains("caused by: error:"), "{err}");
    n.write("state/state.yaml", &good);
    let budget = n.read("state/budget.json");
    n.write("state/budget.json", "{\"version\": 1,");
    let err = stderr(&n.ns(&["status"]));
    assert!(err.contains("state/budget.json is not valid"), "{err}");
    assert_eq!(err.matches(" line ").count(), 1, "{err}");
    n.write("state/budget.json", &budget);

    n.write(
        "c/a.md",
        "---\nid: a\ntitle: A\ndepends_on: [b]\n---\nbody\n",
    );
    n.write(
        "c/b.md",
        "---\nid: b\ntitle: B\ndepends_on: [a]\n---\nbody\n",
    );
    n.write(
        "c/d.md",
        "---\nid: d\ntitle: D\ndepends_on: [zz]\n---\nbody\n",
    );
    n.write("c/e.md", "---\nid: e\ntitle: E\n---\nbody\n");
    let err = stderr(&n.ns(&["add-stage", "c/a.md", "c/b.md"]));
    assert!(
        err.contains("c/a.md, c/b.md: refused:") && err.contains("cycle"),
        "{err}"
    );
    let err = stderr(&n.ns(&["add-stage", "c/d.md"]));
    assert!(
        err.contains("c/d.md: refused:") && err.contains("`zz`"),
        "{err}"
    );
    n.ok(&["add-stage", "c/e.md"]);
    let err = stderr(&n.ns(&["add-stage", "c/e.md"]));
    assert!(err.contains("c/e.md: refused:"), "{err}");

    std::fs::write(n.path("nightshift.yaml"), [0xff, 0xfe, 0x00, 0x80, 0x81]).unwrap();
    let out = n.ns(&["status"]);
    let err = stderr(&out);
    assert!(err.contains("nightshift.yaml is not a text file"), "{err}");
    assert!(
        err.contains("checkout -- nightshift.yaml") && !err.contains("run `nightshift init`"),
        "{err}"
    );
    // The hint works: restoring the file from git makes the repository usable again.
    n.git(&["checkout", "--", "nightshift.yaml"]);
    n.ok(&["status"]);
}

/// The templates built into the binary are reachable from the CLI, and neither `--help` nor
/// an error points at a `templates/` file an installed binary does not have.
#[test]
fn templates_are_reachable_from_the_cli() {
    let n = Night::new();
    n.init();
    let list = n.ok(&["template"]);
    for name in ["card", "config", "worker-prompt", "verifier-prompt"] {
        assert!(list.contains(name), "{list}");
        assert!(!n.ok(&["template", name]).is_empty());
    }
    // The example card parses: add-stage gets as far as its agents, which it names after
    // the example config's (this test's config has others).
    n.write("c/example.md", &n.ok(&["template", "card"]));
    let err = stderr(&n.ns(&["add-stage", "c/example.md"]));
    assert!(err.contains("is not an agent in nightshift.yaml"), "{err}");
    let cfg = n.ok(&["template", "config"]);
    assert!(cfg.contains("agents:") && !cfg.contains("{{"), "{cfg}");
    let bad = n.ns(&["template", "nope"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        stderr(&bad).contains("one of: card, config"),
        "{}",
        stderr(&bad)
    );
    for args in [&["--help"][..], &["add-stage", "--help"]] {
        let help = n.ok(args);
        assert!(!help.contains("templates/"), "{args:?}: {help}");
        assert!(
            help.contains("nightshift template card"),
            "{args:?}: {help}"
        );
    }
    n.write("c/bad.md", "no front matter\n");
    let err = stderr(&n.ns(&["add-stage", "c/bad.md"]));
    assert!(
        err.contains("nightshift template card") && !err.contains("templates/"),
        "{err}"
    );
}

/// `init` keeps an existing `.gitignore`'s mode and creates `nightshift.yaml` as an editor
/// would (0666 less the umask), not 0600.
#[test]
fn init_keeps_modes_and_honours_the_umask() {
    use std::os::unix::fs::PermissionsExt as _;
    let n = Night::new();
    std::fs::remove_file(n.path("nightshift.yaml")).unwrap();
    n.write(".gitignore", "target/\n");
    std::fs::set_permissions(n.path(".gitignore"), std::fs::Permissions::from_mode(0o640)).unwrap();
    // The umask of the test process (022 in CI) is what `init` inherits.
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg("umask 022 && exec \"$@\"")
        .arg("sh")
        .arg(super::night::BIN)
        .arg("--repo")
        .arg(&n.repo)
        .arg("init")
        .env("HOME", n.root.join("home"))
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let mode = |p: &str| std::fs::metadata(n.path(p)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(".gitignore"), 0o640);
    assert!(n.read(".gitignore").contains("/state/"));
    assert_eq!(mode("nightshift.yaml"), 0o644);
}

/// The verifier's prompt carries the card's protected globs, and not the card's front matter
/// (a script agent's recipe is the worker's business).
#[test]
fn the_verifier_sees_the_protected_globs_not_the_recipe() {
    let mut n = Night::new();
    n.init();
    let front = format!(
        "protected: [\"docs/**/*.md\"]\n{}",
        script(&[writes("a.txt", "a")], &["verdict: { verdict: pass }"])
    );
    let c = n.card("s1", &front, "The objective.");
    n.add(&[&c]);
    n.drain(20);
    assert_eq!(n.stage("s1")["status"], "done");
    let prompt = find_prompt(&n.path("state"), "verifier").expect("the verifier's prompt");
    assert!(prompt.contains("- docs/**/*.md"), "{prompt}");
    assert!(prompt.contains("The objective."), "{prompt}");
    assert!(!prompt.contains("write: {"), "{prompt}");
}

/// The verifier's prompt as nightshift wrote it for the agent (under state/).
fn find_prompt(dir: &std::path::Path, role: &str) -> Option<String> {
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let p = e.path();
        if p.is_dir() {
            if let Some(t) = find_prompt(&p, role) {
                return Some(t);
            }
        } else if p.to_string_lossy().contains(role)
            && let Ok(t) = std::fs::read_to_string(&p)
            && t.contains("You are the verifier")
        {
            return Some(t);
        }
    }
    None
}
