//! An idle tick only looks (no git, no write), yet notices a new card; the derived state
//! cache is ignored when stale, corrupt or forged.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;

use super::night::{Night, real_git, stderr};

/// Every file under `state/` with its size and modification time.
fn listing(n: &Night) -> BTreeMap<String, (u64, std::time::SystemTime)> {
    fn walk(dir: &std::path::Path, out: &mut BTreeMap<String, (u64, std::time::SystemTime)>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let m = e.metadata().unwrap();
            if m.is_dir() {
                walk(&e.path(), out);
            } else {
                out.insert(
                    e.path().display().to_string(),
                    (m.len(), m.modified().unwrap()),
                );
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(&n.path("state"), &mut out);
    out
}

/// Puts a `git` first on PATH that logs each call, then runs the real one.
fn git_shim(n: &mut Night) -> std::path::PathBuf {
    let dir = n.root.join("shim");
    std::fs::create_dir_all(&dir).unwrap();
    let log = n.root.join("git-calls.log");
    let shim = dir.join("git");
    std::fs::write(
        &shim,
        format!(
            "#!/bin/sh\necho \"$*\" >> '{}'\nexec '{}' \"$@\"\n",
            log.display(),
            real_git().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&shim, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", dir.display(), std::env::var("PATH").unwrap());
    n.extra_env.push(("PATH".into(), path));
    log
}

#[test]
fn an_idle_tick_spawns_no_git_writes_nothing_and_still_sees_a_new_card() {
    let mut n = Night::new();
    n.init();
    assert!(n.tick().status.success());
    // This tick finds nothing to do and summarises that.
    assert!(n.tick().status.success());
    let head = n.ledger_head();
    let log = git_shim(&mut n);
    let before = listing(&n);
    let out = n.tick();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&log).unwrap_or_default(), "");
    n.extra_env.clear();
    assert_eq!(listing(&n), before, "an idle tick wrote under state/");
    assert_eq!(n.ledger_head(), head);
    // A new card is noticed by the next tick.
    let c = n.card("s1", "", "body");
    n.add(&[&c]);
    assert!(n.tick().status.success());
    assert_eq!(n.stage("s1")["status"], "working");
}

#[test]
fn a_config_change_ends_the_idle_look() {
    let mut n = Night::new();
    n.init();
    n.tick();
    n.tick();
    // An invalid config is refused at once, not skipped as idle.
    let cfg = n.read("nightshift.yaml");
    n.write("nightshift.yaml", &format!("{cfg}surprise: 1\n"));
    let out = n.tick();
    assert!(!out.status.success(), "an idle look hid a config change");
}

#[test]
fn a_stale_corrupt_or_forged_state_cache_is_ignored() {
    let n = Night::new();
    n.init();
    let c = n.card("s1", "", "body");
    n.add(&[&c]);
    // A queued stage lives in its own file; its record is cached in `stages.json`.
    for name in ["stages.json", "state.json"] {
        assert!(n.path(&format!("state/.cache/{name}")).exists(), "{name}");
    }
    let cache = n.path("state/.cache/stages.json");
    let good = std::fs::read_to_string(&cache).unwrap();
    let (head, json) = good.split_once('\n').unwrap();
    // Forged: the right key, other content, the old seal.
    let forged = json.replace("Stage s1", "Forged s1");
    std::fs::write(&cache, format!("{head}\n{forged}")).unwrap();
    assert_eq!(n.stage("s1")["title"], "Stage s1");
    // Corrupt.
    std::fs::write(&cache, "garbage").unwrap();
    assert_eq!(n.stage("s1")["title"], "Stage s1");
    // Stale: the stage file saved by hand (by rename, as editors save) after the cache was made.
    n.ok(&["status"]);
    let yaml = n
        .read("state/stages/s1.yaml")
        .replace("Stage s1", "Renamed s1");
    n.save_by_rename("state/stages/s1.yaml", &yaml);
    assert_eq!(n.stage("s1")["title"], "Renamed s1");
    // The hot file's cache: forged, then stale.
    let hot = n.path("state/.cache/state.json");
    let good = std::fs::read_to_string(&hot).unwrap();
    let (head, json) = good.split_once('\n').unwrap();
    let forged = json.replace("\"consecutive_failures\":0", "\"consecutive_failures\":7");
    assert_ne!(forged, json);
    std::fs::write(&hot, format!("{head}\n{forged}")).unwrap();
    let status = n.ok(&["status", "--json"]);
    assert!(status.contains("\"consecutive_failures\": 0"), "{status}");
    let text = n
        .read("state/state.yaml")
        .replace("consecutive_failures: 0", "consecutive_failures: 2");
    n.write("state/state.yaml", &text);
    let status = n.ok(&["status", "--json"]);
    assert!(status.contains("\"consecutive_failures\": 2"), "{status}");
    // The ledger never holds the cache.
    let tree = n.git(&[
        "ls-tree",
        "-r",
        "--name-only",
        "refs/heads/nightshift/ledger",
    ]);
    assert!(!tree.contains(".cache"), "{tree}");
}

/// `nightshift.yaml` and `budget.json` are parsed and validated once per content: the value is
/// remembered in `state/.cache/` under the digest of the bytes (and of the schema), sealed. A
/// forged cache is ignored, and bytes never seen are validated as before.
#[test]
fn a_config_or_budget_is_validated_once_per_content_and_its_cache_cannot_be_forged() {
    let n = Night::new();
    n.init();
    let c = n.card("s1", "", "body");
    n.add(&[&c]);
    let status = n.status();
    let lanes = status["lanes"].clone();
    let attempts = status["budget"]["attempts"].clone();
    for (name, key, value) in [("config", "lanes", 7), ("budget", "attempts", 99)] {
        let cache = n.path(&format!("state/.cache/{name}.json"));
        let good = std::fs::read_to_string(&cache)
            .unwrap_or_else(|e| panic!("{name} is not remembered: {e}"));
        let (head, json) = good.split_once('\n').unwrap();
        assert!(head.contains(" schema sha256:"), "{head}");
        // Forged: the right key, another value, the old seal.
        let mut v: serde_json::Value = serde_json::from_str(json).unwrap();
        v[key] = value.into();
        std::fs::write(&cache, format!("{head}\n{v}\n")).unwrap();
    }
    let status = n.status();
    assert_eq!(status["lanes"], lanes);
    assert_eq!(status["budget"]["attempts"], attempts);
    // A config never seen is read and validated: an unknown key is refused, naming the file.
    let cfg = n.read("nightshift.yaml");
    n.write("nightshift.yaml", &format!("{cfg}surprise: 1\n"));
    let out = n.ns(&["status"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("nightshift.yaml") && err.contains("surprise"),
        "{err}"
    );
    // So is a budget.
    n.write("nightshift.yaml", &cfg);
    let budget = n.read("state/budget.json");
    n.write(
        "state/budget.json",
        &budget.replacen('{', "{\"surprise\": 1,", 1),
    );
    let out = n.ns(&["status"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("state/budget.json"),
        "{}",
        stderr(&out)
    );
}

/// A tick prints the events of the ledger commits it made from their messages: it writes the
/// ledger once per change and never reads it back.
#[test]
fn a_dispatch_tick_reports_its_commits_without_reading_the_ledger_back() {
    let mut n = Night::new();
    n.init();
    let c = n.card("s1", "", "body");
    n.add(&[&c]);
    let log = git_shim(&mut n);
    let out = n.ns(&["tick", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["result"], "advanced");
    let texts: Vec<&str> = report["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["text"].as_str())
        .collect();
    assert!(texts.iter().any(|t| t.contains("dispatched")), "{report}");
    assert!(report["spent"].is_object(), "{report}");
    let calls = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        !calls
            .lines()
            .any(|l| l.contains(" log ") || l.starts_with("log ")),
        "the tick read the ledger back:\n{calls}"
    );
    assert_eq!(
        calls.lines().filter(|l| l.contains("fast-import")).count(),
        1,
        "{calls}"
    );
    n.extra_env.clear();
}
