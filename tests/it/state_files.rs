//! Corrupt, missing and out-of-step state files: ticks refuse (never overwrite), name the
//! file and line, and `repair` restores from the ledger.

use super::night::{Night, PASS, script, stderr, writes};

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

/// A stage pack damaged on disk (a record that does not parse, one that does not match the
/// schema, one that is another stage than its head says, a record missing) is refused with the
/// pack and the line at fault and the repair hint; a tick never overwrites it; `repair` brings
/// back the committed pack.
#[test]
fn a_damaged_stage_pack_names_its_line_and_is_repaired() {
    let mut n = Night::new();
    n.init();
    let ids: Vec<String> = (0..20).map(|i| format!("p{i:02}")).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let cards = n.cards(&refs, "acceptance: [\"true\"]\n");
    let cards: Vec<&str> = cards.iter().map(String::as_str).collect();
    n.add(&cards);
    let rel = "state/stages/pack-0.jsonl";
    let good = n.read(rel);
    let line5 = good.lines().nth(4).unwrap().to_owned();
    assert!(line5.contains("\"id\":\"p03\""), "{line5}");
    let damaged: Vec<(String, &str)> = vec![
        (line5.replacen('{', "{[", 1), "(line 5)"),
        (line5.replacen("\"title\":", "\"titel\":", 1), "(line 5)"),
        (
            line5.replacen("\"id\":\"p03\"", "\"id\":\"p04\"", 1),
            "(line 5)",
        ),
        (String::new(), "holds 19 stage records; its head names 20"),
    ];
    for (bad_line, want) in damaged {
        let bad = if bad_line.is_empty() {
            good.replacen(&format!("{line5}\n"), "", 1)
        } else {
            good.replacen(&line5, &bad_line, 1)
        };
        // Saved as editors save (by rename): the stage files' cache sees the folder changed.
        n.save_by_rename(rel, &bad);
        let out = n.tick();
        assert_eq!(out.status.code(), Some(3), "{want}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains(rel) && err.contains(want), "{want}: {err}");
        assert!(err.contains("nightshift repair"), "{want}: {err}");
        assert_eq!(n.read(rel), bad, "{want}: a tick never overwrites it");
        let rep = n.ok(&["repair"]);
        assert!(rep.contains("stage files"), "{want}: {rep}");
        assert_eq!(n.read(rel), good, "{want}");
        assert_eq!(n.status()["stages"].as_array().unwrap().len(), 20);
    }
    assert!(n.tick().status.success());
    assert_eq!(n.stage("p00")["status"], "working");
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

/// Every on-disk file is versioned: a version this build does not know is refused with a
/// message naming the file, never guessed at.
#[test]
fn unknown_versions_of_state_and_config_are_refused() {
    let mut n = night_with_a_stage();
    let text = n
        .read("state/state.yaml")
        .replacen("version: 2", "version: 99", 1);
    n.write("state/state.yaml", &text);
    let out = n.tick();
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stderr(&out).contains("state/state.yaml: version 99 is not supported"),
        "{}",
        stderr(&out)
    );

    let mut n = night_with_a_stage();
    let cfg = n
        .read("nightshift.yaml")
        .replacen("version: 1", "version: 9", 1);
    n.write("nightshift.yaml", &cfg);
    let out = n.tick();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(
            "nightshift.yaml: version 9 is not supported (this nightshift reads version 1)"
        ),
        "{}",
        stderr(&out)
    );
}

#[test]
fn unknown_config_key_names_the_key_and_line() {
    let n = Night::with_config(&super::night::CONFIG.replace("lanes: 1", "lanes: 1\nlaness: 2"));
    let out = n.ns(&["init"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("laness") && err.contains("line 3"), "{err}");
}

#[test]
fn log_shows_events_and_spend() {
    let n = night_with_a_stage();
    let log = n.ok(&["log"]);
    assert!(
        log.contains("s1: added") && log.contains("repo: initialised"),
        "{log}"
    );
    assert!(
        log.starts_with("spent so far: 0s agent wall time, 0 tokens, $0.00\n"),
        "{log}"
    );
    assert_eq!(log.matches("spent so far").count(), 1, "{log}");
    let json: serde_json::Value =
        serde_json::from_str(&n.ok(&["log", "--json", "-n", "1"])).unwrap();
    assert_eq!(json["entries"].as_array().unwrap().len(), 1);
    let ev = &json["entries"][0]["events"][0];
    assert_eq!(
        (&ev["stage"], &ev["kind"]),
        (&"s1".into(), &"added".into()),
        "{ev}"
    );
    assert!(ev["text"].as_str().unwrap().starts_with("added"), "{ev}");
    assert_eq!(json["entries"][0]["spent"]["tokens"], 0, "{json}");
}

/// Git plumbing never runs `gc --auto`, and every ledger commit is one small pack: every N
/// ledger commits a detached geometric `git repack -d` rolls them up.
#[test]
fn ledger_objects_get_packed_every_n_commits() {
    let mut n = Night::new();
    n.extra_env
        .push(("NIGHTSHIFT_PACK_EVERY".into(), "3".into()));
    n.init();
    // The cards are committed before any ledger commit can start a repack: the user's own
    // `git add` beside `repack -d` can lose git's race with `prune-packed` removing an empty
    // object folder ("unable to create temporary file"), as it can beside `gc --auto`.
    let cards = n.cards(&["a", "b", "c"], "");
    for c in &cards {
        n.add(&[c]);
    }
    let start = std::time::Instant::now();
    loop {
        let counts = n.git(&["count-objects", "-v"]);
        let packs: u64 = counts
            .lines()
            .find_map(|l| l.strip_prefix("packs: "))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let commits: u64 = n
            .git(&["rev-list", "--count", "nightshift/ledger"])
            .trim()
            .parse()
            .unwrap();
        if packs > 0 && packs < commits {
            break;
        }
        assert!(
            start.elapsed().as_secs() < 30,
            "no pack after 30 s: {counts}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // fsck reads loose objects the repack's `prune-packed` may still be deleting: it waits
    // for the repack to end.
    while repack_running(&n.root) {
        assert!(
            start.elapsed().as_secs() < 60,
            "the repack still runs after 60 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    n.assert_fsck_clean("after packing");
    n.tick();
    // The repack leaves `.git/info` alone: detection watches it beside running attempts.
    std::thread::sleep(std::time::Duration::from_secs(1));
    assert!(
        !n.path(".git/info/refs").exists(),
        "the ledger repack wrote .git/info/refs (update-server-info)"
    );
}

/// Whether a `git repack` runs in `root` (its working directory there, per `/proc`).
fn repack_running(root: &std::path::Path) -> bool {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return false;
    };
    let root = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
    dir.flatten().any(|e| {
        let p = e.path();
        std::fs::read_link(p.join("cwd")).is_ok_and(|cwd| cwd == root)
            && std::fs::read(p.join("cmdline"))
                .is_ok_and(|c| c.split(|b| *b == 0).any(|arg| arg == b"repack"))
    })
}

/// A version-1 `state.yaml` (every stage inline, no `state/stages/`) is read as it is; the next
/// change writes the split layout: a small hot file and one file per stage, the same stages.
#[test]
fn a_version_one_state_is_read_then_written_split() {
    use serde_json::Value;
    let mut n = Night::new();
    n.init();
    let cards = n.cards(&["a", "b", "c"], "acceptance: [\"true\"]\n");
    let refs: Vec<&str> = cards.iter().map(String::as_str).collect();
    n.add(&refs);
    let before = n.status()["stages"].clone();
    // Rewrite the state as version 1 wrote it: the stages inline, no stage files.
    let mut hot: Value = serde_saphyr::from_str(&n.read("state/state.yaml")).unwrap();
    let mut stages: Vec<(u64, Value)> = std::fs::read_dir(n.path("state/stages"))
        .unwrap()
        .map(|e| {
            let f: Value =
                serde_saphyr::from_str(&std::fs::read_to_string(e.unwrap().path()).unwrap())
                    .unwrap();
            (f["order"].as_u64().unwrap(), f["stage"].clone())
        })
        .collect();
    stages.sort_by_key(|(o, _)| *o);
    hot["version"] = 1.into();
    hot["stages"] = Value::Array(stages.into_iter().map(|(_, s)| s).collect());
    let obj = hot.as_object_mut().unwrap();
    obj.remove("stage_count");
    obj.remove("cold_stamp");
    n.write("state/state.yaml", &serde_saphyr::to_string(&hot).unwrap());
    std::fs::remove_dir_all(n.path("state/stages")).unwrap();
    std::fs::remove_dir_all(n.path("state/.cache")).unwrap();
    assert_eq!(n.status()["stages"], before, "version 1 is read as it is");
    // The next change (a dispatch) writes version 2: a file per stage, the hot file small.
    let out = n.tick();
    assert!(out.status.success(), "{}", stderr(&out));
    let hot = n.read("state/state.yaml");
    assert!(hot.starts_with("version: 2\n"), "{hot}");
    assert!(hot.contains("stage_count: 3"), "{hot}");
    assert!(hot.contains("id: a") && !hot.contains("id: b"), "{hot}");
    for id in ["a", "b", "c"] {
        assert!(n.path(&format!("state/stages/{id}.yaml")).exists(), "{id}");
    }
    assert_eq!(n.stage("b"), before[1]);
    n.drain(30);
    n.assert_fsck_clean("after the migration");
}

/// A stage that changes while it stays in its own file (queued, cancelled, queued again,
/// cancelled again, never run) is written each time: its file, the state read back without the
/// caches, and the ledger agree after every command.
#[test]
fn a_stage_that_changes_without_running_is_written_each_time() {
    let n = Night::new();
    n.init();
    let a = n.card("a", "acceptance: [\"true\"]\n", "body");
    let b = n.card("b", "acceptance: [\"true\"]\n", "body");
    n.add(&[&a, &b]);
    for (cmd, want) in [
        ("cancel", "cancelled"),
        ("requeue", "queued"),
        ("cancel", "cancelled"),
    ] {
        n.ok(&[cmd, "b"]);
        assert_eq!(n.stage("b")["status"], want, "{cmd}");
        let file = n.read("state/stages/b.yaml");
        assert!(file.contains(&format!("kind: {want}")), "{cmd}: {file}");
        std::fs::remove_dir_all(n.path("state/.cache")).unwrap();
        assert_eq!(n.stage("b")["status"], want, "{cmd}: read from the files");
        let listing = ledger_stage_files(&n);
        let path = listing
            .lines()
            .find(|l| l.ends_with("/b.yaml"))
            .expect("b's file in the ledger");
        let committed = n.git(&["show", &format!("nightshift/ledger:{path}")]);
        assert!(
            committed.contains(&format!("kind: {want}")),
            "{cmd}: {committed}"
        );
    }
    assert_eq!(n.stage("a")["status"], "queued");
}

/// One card into a long queue reads and writes only what it adds: the cold stages' cache is
/// extended, not rewritten; the ledger does not walk the folders of stage files and card
/// copies (their side files stay as they are); the commit holds the new stage's file and card
/// copy, the hot file and the budget. Every command still reads the whole queue back, in
/// order. A stage file changed by hand makes the next add read everything again; a long run of
/// appended stages is folded back into the cache by the next reader.
#[test]
fn one_card_into_a_long_queue_touches_only_what_it_adds() {
    use std::os::unix::fs::MetadataExt;
    let n = Night::new();
    n.init();
    let write_cards = |ids: &[String], front: &str| -> Vec<String> {
        let rels: Vec<String> = ids
            .iter()
            .map(|id| {
                let rel = format!("stage-cards/{id}.md");
                n.write(
                    &rel,
                    &format!("---\nid: {id}\ntitle: Stage {id}\n{front}---\nbody\n"),
                );
                rel
            })
            .collect();
        n.commit_all("cards");
        rels
    };
    let add = |rels: &[String]| {
        let refs: Vec<&str> = rels.iter().map(String::as_str).collect();
        n.add(&refs);
    };
    let ids: Vec<String> = (0..40).map(|i| format!("q{i:02}")).collect();
    add(&write_cards(&ids, "acceptance: [\"true\"]\n"));
    let ino = |rel: &str| std::fs::metadata(n.path(rel)).map(|m| m.ino()).ok();
    let watched = [
        "state/.cache/stages.json",
        "state/.ledger-index.stages",
        "state/.ledger-index.cards",
    ];
    let before: Vec<_> = watched.iter().map(|r| ino(r)).collect();
    assert!(before.iter().all(Option::is_some), "{before:?}");
    let changed = || {
        n.git(&[
            "diff-tree",
            "-r",
            "--name-only",
            "nightshift/ledger~1",
            "nightshift/ledger",
        ])
    };
    for (i, id) in ["x1", "x2"].iter().enumerate() {
        // Depends on a cold stage: found in the pack's head.
        add(&write_cards(
            &[(*id).to_owned()],
            "depends_on: [q05]\nacceptance: [\"true\"]\n",
        ));
        let after: Vec<_> = watched.iter().map(|r| ino(r)).collect();
        assert_eq!(after, before, "{id}: rewritten");
        let files = changed();
        let mut names: Vec<&str> = files
            .lines()
            .map(|l| l.rsplit('/').next().unwrap_or(l))
            .collect();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "budget.json",
                "state.yaml",
                &format!("{id}.md"),
                &format!("{id}.yaml")
            ],
            "{id}: {files}"
        );
        let stages = n.status()["stages"].as_array().unwrap().clone();
        assert_eq!(stages.len(), 41 + i, "{id}");
        assert_eq!(stages[40 + i]["id"], *id);
        assert_eq!(stages[5]["id"], "q05");
    }
    // Refusals on the same path: a taken id (cold), an unknown dependency. Nothing moves.
    let head = n.git(&["rev-parse", "nightshift/ledger"]);
    let dup = write_cards(&["q03".into()], "acceptance: [\"false\"]\n");
    let out = n.ns(&["add-stage", &dup[0]]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("q03"), "{}", stderr(&out));
    let orphan = write_cards(&["y1".into()], "depends_on: [nope]\n");
    let out = n.ns(&["add-stage", &orphan[0]]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("nope"), "{}", stderr(&out));
    assert_eq!(n.git(&["rev-parse", "nightshift/ledger"]), head);
    assert!(!n.path("state/cards/y1.md").exists());
    // The pack saved again by hand (same bytes, new inode): the next add reads it all.
    let pack = n.read("state/stages/pack-0.jsonl");
    n.save_by_rename("state/stages/pack-0.jsonl", &pack);
    add(&write_cards(&["x3".into()], "acceptance: [\"true\"]\n"));
    assert_ne!(ino("state/.cache/stages.json"), before[0], "rebuilt");
    assert!(!n.path("state/.cache/stages.add.json").exists());
    // Hundreds appended at once: the next reader folds them into the cache.
    let many: Vec<String> = (0..300).map(|i| format!("m{i:03}")).collect();
    add(&write_cards(&many, "acceptance: [\"true\"]\n"));
    assert!(n.path("state/.cache/stages.add.json").exists());
    let stages = n.status()["stages"].as_array().unwrap().clone();
    assert_eq!(stages.len(), 343);
    assert_eq!(stages[342]["id"], "m299");
    assert!(!n.path("state/.cache/stages.add.json").exists(), "folded");
    // The files alone (no cache) say the same, and so does the ledger.
    std::fs::remove_dir_all(n.path("state/.cache")).unwrap();
    assert_eq!(n.status()["stages"].as_array().unwrap(), &stages);
    n.assert_fsck_clean("after the appends");
    // Two packs (the 40, the 300) and a file each for the three added alone.
    let mut names: Vec<String> = ledger_stage_files(&n)
        .lines()
        .map(|l| l.rsplit('/').next().unwrap_or(l).to_owned())
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "pack-0.jsonl",
            "pack-43.jsonl",
            "x1.yaml",
            "x2.yaml",
            "x3.yaml"
        ]
    );
}

/// The stage files at the ledger's head, one path a line.
fn ledger_stage_files(n: &Night) -> String {
    n.git(&[
        "ls-tree",
        "-r",
        "--name-only",
        "nightshift/ledger",
        "state/stages",
    ])
}

/// A batch of many cards keeps their copies in one file, `state/cards/batch-<seq>.json`, which
/// each of its stages names: the ledger holds that file; a dispatched stage gets its card from
/// it; a card changed in it is refused like a changed copy (`card_changed`) while the others
/// still run.
#[test]
fn a_large_batch_keeps_its_card_copies_in_one_file() {
    use serde_json::Value;
    let mut n = Night::new();
    n.init();
    let ids: Vec<String> = (0..20).map(|i| format!("p{i:02}")).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let front = format!(
        "acceptance: [\"test -f out.txt\"]\n{}",
        script(&[writes("out.txt", "x")], &[PASS])
    );
    let cards = n.cards(&refs, &front);
    let cards: Vec<&str> = cards.iter().map(String::as_str).collect();
    n.add(&cards);
    let names: Vec<String> = std::fs::read_dir(n.path("state/cards"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    let pack = names[0].clone();
    assert!(
        pack.starts_with("batch-") && pack.ends_with(".json"),
        "{pack}"
    );
    assert!(
        n.read("state/stages/pack-0.jsonl")
            .contains(&format!("\"card_pack\":\"{pack}\""))
    );
    let tree = ledger_card_files(&n);
    assert_eq!(tree.len(), 1, "{tree:?}");
    assert!(tree[0].ends_with(&pack), "{tree:?}");
    // Only p00 and p01 run; p01's card is changed inside the pack.
    for id in &ids[2..] {
        n.ok(&["cancel", id]);
    }
    let file = format!("state/cards/{pack}");
    let mut copies: Value = serde_json::from_str(&n.read(&file)).unwrap();
    let edited = copies["p01"]
        .as_str()
        .unwrap()
        .replace("body", "edited body");
    copies["p01"] = Value::String(edited);
    n.write(&file, &serde_json::to_string_pretty(&copies).unwrap());
    n.drain(40);
    let p00 = n.stage("p00");
    assert_eq!(p00["status"], "done", "{p00:#}");
    let p01 = n.stage("p01");
    assert_eq!(p01["status"], "escalated", "{p01:#}");
    let reason = p01["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("card_changed"), "{reason}");
}

/// The card copies at the ledger's head.
fn ledger_card_files(n: &Night) -> Vec<String> {
    n.git(&[
        "ls-tree",
        "-r",
        "--name-only",
        "nightshift/ledger",
        "state/cards",
    ])
    .lines()
    .map(str::to_owned)
    .collect()
}

/// A new stage's file is created under its own name (the intent names it); a stray file that
/// already has that name (a stage file numbered past the count, which no stage is) is
/// replaced, and the new stage is read back whole.
#[test]
fn a_stray_file_at_a_new_stages_name_is_replaced() {
    let n = Night::new();
    n.init();
    let a = n.card("a", "", "body");
    n.add(&[&a]);
    // The whole-state path (no stage cache) takes the ids from the state, not the folder.
    std::fs::remove_file(n.path("state/.cache/stages.json")).unwrap();
    let stray = n
        .read("state/stages/a.yaml")
        .replace("order: 0", "order: 7")
        .replace("id: a\n", "id: b\n");
    assert!(
        stray.contains("order: 7") && stray.contains("id: b\n"),
        "{stray}"
    );
    n.write("state/stages/b.yaml", &stray);
    let b = n.card("b", "", "body b");
    n.add(&[&b]);
    assert_eq!(n.stage("b")["title"], "Stage b");
    let text = n.read("state/stages/b.yaml");
    assert!(text.contains("order: 1"), "{text}");
    assert!(!n.path("state/.adding").exists());
    let leftovers: Vec<String> = std::fs::read_dir(n.path("state/stages"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|f| f.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let repair = n.ok(&["repair"]);
    assert!(repair.contains("nothing to repair"), "{repair}");
}
