//! The ledger's write side through the real binary: one git process per commit, object and
//! ref formats other than the defaults through a whole night, and `add-stage` batches.

use std::path::{Path, PathBuf};

use super::night::{Night, PASS, script, stderr, writes};

/// A git wrapper that logs `<parent pid> <args>` of every call to `log`, then runs git.
fn counting_git(n: &Night, log: &Path) -> PathBuf {
    let wrapper = n.root.join("git-counter");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\necho \"$PPID $*\" >> '{}'\nexec '{}' \"$@\"\n",
            log.display(),
            super::night::real_git().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    wrapper
}

/// The git subcommand of a logged argument list (global `-c k=v` and flags skipped).
fn subcommand(args: &str) -> String {
    let mut it = args.split(' ');
    while let Some(a) = it.next() {
        match a {
            "-c" | "-C" => {
                it.next();
            }
            a if a.starts_with('-') => {}
            a => return a.to_owned(),
        }
    }
    String::new()
}

/// Subcommands that write objects, an index or refs: how a ledger commit can be made.
const WRITERS: [&str; 10] = [
    "fast-import",
    "add",
    "rm",
    "read-tree",
    "write-tree",
    "commit-tree",
    "update-ref",
    "hash-object",
    "mktree",
    "update-index",
];

fn card(n: &Night, id: &str, front: &str) -> String {
    let f = format!(
        "acceptance:\n  - test -f {id}.txt\n{front}{}",
        script(&[writes(&format!("{id}.txt"), "done\n")], &[PASS])
    );
    n.card(id, &f, "# Objective\nWrite the file.")
}

/// A dispatch tick (state write, ledger commit, job spawn) writes the ledger with one git
/// process: `git fast-import`, which writes the changed blobs, the trees, the commit and moves
/// the ref by compare-and-swap.
#[test]
fn a_dispatch_tick_writes_the_ledger_with_one_git_process() {
    let n = Night::new();
    n.init();
    let a = card(&n, "a", "");
    n.add(&[&a]);
    // The first commit after add-stage has a cache; a later one too: count a steady tick.
    let log = n.root.join("git-calls.log");
    let wrapper = counting_git(&n, &log);
    let mut cmd = n.ns_command(&["tick"]);
    cmd.env("NIGHTSHIFT_GIT", &wrapper);
    let child = cmd.spawn().unwrap();
    let pid = child.id().to_string();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(n.stage("a")["status"], "working");
    let calls = std::fs::read_to_string(&log).unwrap_or_default();
    let mine: Vec<String> = calls
        .lines()
        .filter_map(|l| l.split_once(' '))
        .filter(|(ppid, _)| *ppid == pid)
        .map(|(_, args)| subcommand(args))
        .collect();
    let writers: Vec<&String> = mine
        .iter()
        .filter(|s| WRITERS.contains(&s.as_str()))
        .collect();
    assert_eq!(writers, ["fast-import"], "the tick's git calls: {mine:?}");
    n.settle();
    n.assert_fsck_clean("after the dispatch");
}

/// Re-initialises the night's repository with `args` (`--object-format`, `--ref-format`).
fn night_with(args: &[&str]) -> Night {
    let n = Night::new();
    std::fs::remove_dir_all(n.repo.join(".git")).unwrap();
    let mut init = vec!["init", "-q", "-b", "main"];
    init.extend(args);
    n.git(&init);
    n.commit_all("initial");
    n
}

/// A whole night (two stages, one depending on the other) on a repository of the given format:
/// every stage done, the ledger readable by `log` and `report`, fsck clean.
fn whole_night(mut n: Night) -> Night {
    n.init();
    let a = card(&n, "a", "");
    let b = card(&n, "b", "depends_on: [a]\n");
    n.add(&[&a, &b]);
    n.drain(30);
    for id in ["a", "b"] {
        assert_eq!(n.stage(id)["status"], "done", "{:#}", n.status());
    }
    assert_eq!(n.git(&["show", "nightshift/integration:b.txt"]), "done");
    assert!(n.count_events("b: a1 done") >= 1, "{:#?}", n.events());
    assert!(
        n.git(&["rev-list", "--count", "nightshift/ledger"])
            .parse::<u32>()
            .unwrap()
            > 5
    );
    let tree = n.git(&["ls-tree", "-r", "--name-only", "nightshift/ledger"]);
    assert!(tree.contains("state/handoffs/b/a1/verifier.json"), "{tree}");
    n.ok(&["report", "--json"]);
    n.ok(&["repair"]);
    n.assert_fsck_clean("after the night");
    n
}

#[test]
fn a_sha256_repository_runs_a_whole_night() {
    let n = whole_night(night_with(&["--object-format=sha256"]));
    assert_eq!(n.ledger_head().len(), 64);
    assert_eq!(n.git(&["rev-parse", "--show-object-format"]), "sha256");
}

#[test]
fn a_reftable_repository_runs_a_whole_night() {
    let n = whole_night(night_with(&["--ref-format=reftable"]));
    assert!(n.repo.join(".git/reftable").is_dir());
    assert_eq!(n.git(&["rev-parse", "--show-ref-format"]), "reftable");
}

/// `add-stage` of many cards writes every copy, then makes them durable with one flush: the
/// fsync-family calls of the process do not grow with the number of cards.
#[test]
fn add_stage_of_many_cards_flushes_once() {
    let n = Night::new();
    n.init();
    let mut cards = Vec::new();
    for i in 0..40 {
        let id = format!("c{i:02}");
        let rel = format!("stage-cards/{id}.md");
        n.write(
            &rel,
            &format!("---\nid: {id}\ntitle: Stage {id}\nacceptance:\n  - \"true\"\n---\nbody\n"),
        );
        cards.push(rel);
    }
    n.commit_all("cards");
    let strace = Path::new("/usr/bin/strace");
    let counts = n.root.join("strace.txt");
    let mut args: Vec<&str> = vec!["add-stage"];
    args.extend(cards.iter().map(String::as_str));
    let traced = strace.exists()
        && std::process::Command::new(strace)
            .args(["-o", "/dev/null", "true"])
            .status()
            .is_ok_and(|s| s.success());
    if traced {
        let ns = n.ns_command(&args);
        let mut cmd = std::process::Command::new(strace);
        cmd.args(["-c", "-e", "trace=fsync,fdatasync,syncfs", "-o"])
            .arg(&counts)
            .arg(ns.get_program())
            .args(ns.get_args())
            .current_dir(&n.repo)
            .env_clear()
            .envs(ns.get_envs().filter_map(|(k, v)| v.map(|v| (k, v))));
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let table = std::fs::read_to_string(&counts).unwrap();
        let calls: u64 = table
            .lines()
            .filter(|l| l.ends_with("fsync") || l.ends_with("fdatasync") || l.ends_with("syncfs"))
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.get(3).and_then(|c| c.parse::<u64>().ok())
            })
            .sum();
        assert!(calls <= 10, "40 cards took {calls} fsync calls:\n{table}");
    } else {
        eprintln!("strace is not usable here: the fsync count is not checked");
        n.ok(&args);
    }
    let st = n.status();
    assert_eq!(st["stages"].as_array().unwrap().len(), 40);
    // The copies are one file, the batch's pack.
    let names: Vec<String> = std::fs::read_dir(n.path("state/cards"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|f| !f.starts_with('.'))
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    assert!(names[0].starts_with("batch-") && names[0].ends_with(".json"));
    let pack = n.read(&format!("state/cards/{}", names[0]));
    for i in [0, 39] {
        assert!(pack.contains(&format!("id: c{i:02}")), "{pack}");
    }
    let tree = n.git(&["ls-tree", "-r", "--name-only", "nightshift/ledger"]);
    let copies: Vec<&str> = tree
        .lines()
        .filter(|l| l.starts_with("state/cards/"))
        .collect();
    assert_eq!(copies.len(), 1, "{tree}");
    assert!(copies[0].ends_with(&names[0]), "{tree}");
    assert!(!tree.contains(".tmp-"), "{tree}");
}

/// The paths a ledger commit changed against its parent.
fn changed(n: &Night, commit: &str) -> Vec<String> {
    n.git(&["diff-tree", "-r", "--name-only", "--no-commit-id", commit])
        .lines()
        .map(str::to_owned)
        .collect()
}

/// A commit rewrites only what changed: with a long queue, a dispatch commits the hot file and
/// the budget and nothing of the queued stages; adding one card commits its file, its copy and
/// the hot file; a stage that ends commits its own file. Every state is read back whole from
/// the ledger by `report`.
#[test]
fn commits_carry_only_the_stages_that_changed() {
    let mut n = Night::new();
    n.init();
    let cards: Vec<String> = (0..40).map(|i| card(&n, &format!("q{i:02}"), "")).collect();
    let refs: Vec<&str> = cards.iter().map(String::as_str).collect();
    n.add(&refs);
    // The hot file holds no queued stage; the batch is one pack.
    let hot = n.read("state/state.yaml");
    assert!(!hot.contains("id: q"), "{hot}");
    assert!(hot.contains("stage_count: 40"), "{hot}");
    assert!(hot.contains("packs:\n- 0\n"), "{hot}");
    let names: Vec<String> = std::fs::read_dir(n.path("state/stages"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["pack-0.jsonl"]);
    let out = n.tick();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(n.stage("q00")["status"], "working");
    let head = n.ledger_head();
    assert_eq!(
        changed(&n, &head),
        ["state/budget.json", "state/state.yaml"],
        "a dispatch commits the hot file and the budget only"
    );
    assert!(n.read("state/state.yaml").contains("id: q00"));
    let extra = card(&n, "late", "");
    n.add(&[&extra]);
    let mut added = changed(&n, &n.ledger_head());
    let copies = added
        .iter()
        .filter(|p| p.starts_with("state/cards/"))
        .count();
    assert_eq!(copies, 1, "one card copy: {added:?}");
    // (and the handoff files the dispatched job wrote meanwhile)
    added.retain(|p| !p.starts_with("state/cards/") && !p.starts_with("state/handoffs/"));
    assert_eq!(added.len(), 3, "{added:?}");
    assert_eq!(added[0], "state/budget.json");
    assert!(
        added[1].starts_with("state/stages/") && added[1].ends_with("/late.yaml"),
        "{added:?}"
    );
    assert_eq!(added[2], "state/state.yaml");
    n.settle();
    let out = n.tick();
    assert!(out.status.success(), "{}", stderr(&out));
    n.settle();
    // Drain q00 (the others wait on the lane) and look at the commit that ended it.
    for _ in 0..20 {
        if n.stage("q00")["status"] == "done" {
            break;
        }
        let out = n.tick();
        assert!(out.status.success(), "{}", stderr(&out));
        n.settle();
    }
    assert_eq!(n.stage("q00")["status"], "done");
    let ended = n.git(&[
        "log",
        "--format=%H",
        "-G",
        "kind: done",
        "nightshift/ledger",
        "--",
        "state/stages",
    ]);
    let first = ended
        .lines()
        .last()
        .expect("a commit wrote the done stage's file");
    let files: Vec<String> = changed(&n, first)
        .into_iter()
        .filter(|p| p.starts_with("state/stages/"))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].ends_with("/q00.yaml"), "{files:?}");
    assert!(!n.read("state/state.yaml").contains("id: q00"));
    // The report reads the whole state back from the ledger.
    let report = n.ok(&[
        "report",
        "--format",
        "json",
        "--since",
        "2000-01-01T00:00:00Z",
    ]);
    let r: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert!(report.contains("q00"), "{r:#}");
    n.assert_fsck_clean("after the split commits");
}
