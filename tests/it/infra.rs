//! Infrastructure that must never cost work: parallel lanes never lose an attempt to each other
//! (git's worktree admin is serialised), a tick killed with its whole process group at any
//! point leaves nothing that wedges the repository (stale git locks are cleared under the tick
//! lock; an integration that meets a lock is retried), setup failures are typed and do not
//! count against a stage, and what nightshift leaves behind is bounded (workspaces of finished
//! stages, `gc`, refused commands, huge final messages).
//!
//! Sizes: `NIGHTSHIFT_INFRA_NIGHTS` (lanes nights, default 8) and `NIGHTSHIFT_INFRA_KILLS`
//! (tick kills, default 30); `NIGHTSHIFT_INFRA_SEED` replays a kill run (the seed is printed in
//! every failure).

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::night::{CONFIG, Night, PASS, script, stdout, writes};

fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn lanes_config(lanes: u32, max_attempts: u32) -> String {
    CONFIG
        .replace("lanes: 1", &format!("lanes: {lanes}"))
        .replace("max_attempts: 3", &format!("max_attempts: {max_attempts}"))
}

/// Every stage of the night.
fn stages(n: &Night) -> Vec<Value> {
    n.status()["stages"].as_array().unwrap().clone()
}

/// Lock files left anywhere in the repository's git directory.
fn lock_files(n: &Night) -> Vec<String> {
    fn walk(dir: &std::path::Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "lock") {
                out.push(p.display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(&n.repo.join(".git"), &mut out);
    out
}

// Lesson: with `lanes: 6`, 12 of 60 first attempts were lost to concurrent `git worktree
// prune`/`add` ("failed to read .git/worktrees/<id>/commondir"), each counted against the
// stage and recorded as an `ok` run.
#[test]
fn regression_six_lanes_never_lose_an_attempt_to_each_other() {
    let nights = env_count("NIGHTSHIFT_INFRA_NIGHTS", 8);
    for night in 0..nights {
        let mut n = Night::with_config(&lanes_config(6, 3));
        n.init();
        let cards: Vec<String> = (1..=6)
            .map(|i| {
                let file = format!("f{i}.txt");
                n.card(
                    &format!("s{i}"),
                    &script(&[writes(&file, "work")], &[PASS]),
                    "independent",
                )
            })
            .collect();
        let refs: Vec<&str> = cards.iter().map(String::as_str).collect();
        n.add(&refs);
        n.drain(20);
        for s in stages(&n) {
            assert_eq!(s["status"], "done", "night {night}: {s:#}");
            assert_eq!(
                s["attempts_used"], 1,
                "night {night}: an attempt was lost: {s:#}"
            );
        }
        let failed = n.count_events("failed");
        assert_eq!(failed, 0, "night {night}: {:#?}", n.events());
    }
}

/// Runs one tick in its own process group and kills the whole group with SIGKILL after
/// `delay` (what `timeout`, systemd and the OOM killer do).
fn killed_tick(n: &mut Night, delay: Duration) {
    let mut cmd = n.ns_command(&["tick"]);
    cmd.process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().expect("tick");
    std::thread::sleep(delay);
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .stderr(Stdio::null())
        .status();
    let _ = child.wait();
    n.minute += 1;
}

/// A small deterministic generator (xorshift64*), so a failing run can be replayed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

// Lesson: a kill of the tick's whole process group mid-git left
// `refs/heads/nightshift/ledger.lock` (every later tick failed), and a leftover integration-ref
// or worktree lock escalated work that had already passed verification.
#[test]
fn regression_ticks_killed_at_random_points_never_wedge_or_escalate_verified_work() {
    let kills = env_count("NIGHTSHIFT_INFRA_KILLS", 30);
    let seed = std::env::var("NIGHTSHIFT_INFRA_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
                | 1
        });
    let mut rng = Rng(seed);
    let mut done_kills = 0;
    while done_kills < kills {
        let mut n = Night::with_config(&lanes_config(2, 20));
        n.init();
        let cards: Vec<String> = (1..=3)
            .map(|i| {
                n.card(
                    &format!("k{i}"),
                    &script(&[writes(&format!("k{i}.txt"), "work")], &[PASS]),
                    "killed around",
                )
            })
            .collect();
        let refs: Vec<&str> = cards.iter().map(String::as_str).collect();
        n.add(&refs);
        for round in 0..80 {
            if done_kills < kills {
                killed_tick(&mut n, Duration::from_millis(rng.below(400)));
                done_kills += 1;
            }
            n.settle();
            let out = n.tick();
            assert!(
                out.status.success(),
                "seed {seed}, round {round}: the repository is wedged: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            n.settle();
            let all = stages(&n);
            for s in &all {
                assert_ne!(s["status"], "escalated", "seed {seed}: {s:#}");
            }
            if all.iter().all(|s| s["status"] == "done") {
                break;
            }
        }
        for s in stages(&n) {
            assert_eq!(s["status"], "done", "seed {seed}: not drained: {s:#}");
        }
        let locks = lock_files(&n);
        assert!(locks.is_empty(), "seed {seed}: stale locks: {locks:?}");
        n.assert_fsck_clean(&format!("seed {seed}"));
    }
}

/// Ticks one stage `s1` until its verifier has finished (the next tick integrates).
fn until_verified(n: &mut Night) {
    for _ in 0..10 {
        let out = n.tick();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        n.settle();
        if n.path("state/handoffs/s1/a1/verifier.json").exists() {
            return;
        }
    }
    panic!("the verifier never finished: {:#}", n.status());
}

fn one_stage() -> Night {
    let n = Night::new();
    n.init();
    let c = n.card("s1", &script(&[writes("a.txt", "work")], &[PASS]), "b");
    n.add(&[&c]);
    n
}

/// The workspace admin directory of `s1` in the repository's `.git/worktrees/`.
fn admin_of_s1(n: &Night) -> std::path::PathBuf {
    let gitfile = std::fs::read_to_string(n.workspace("s1").join(".git")).unwrap();
    std::path::PathBuf::from(gitfile.trim_end().strip_prefix("gitdir: ").unwrap())
}

/// Where a planted lock goes, given the night.
type LockAt = fn(&Night) -> std::path::PathBuf;

// Each lock a killed git leaves, planted where it stops the next step: the night drains, the
// verified work lands, the lock is gone and the removal is in the ledger's journal.
#[test]
fn regression_planted_git_locks_are_cleared_and_never_escalate_verified_work() {
    let cases: [(&str, LockAt); 6] = [
        ("ledger ref", |n| {
            n.path(".git/refs/heads/nightshift/ledger.lock")
        }),
        ("stage ref", |n| {
            n.path(".git/refs/heads/nightshift/stage/s1.lock")
        }),
        ("integration ref", |n| {
            n.path(".git/refs/heads/nightshift/integration.lock")
        }),
        ("workspace index", |n| admin_of_s1(n).join("index.lock")),
        ("workspace HEAD", |n| admin_of_s1(n).join("HEAD.lock")),
        ("maintenance", |n| n.path(".git/objects/maintenance.lock")),
    ];
    for (case, lock) in cases {
        let mut n = one_stage();
        until_verified(&mut n);
        let path = lock(&n);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "").unwrap();
        let doctor: Value = serde_json::from_str(&stdout(&n.ns(&["doctor", "--json"]))).unwrap();
        let check = doctor["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "git locks")
            .cloned()
            .unwrap();
        assert_eq!(check["ok"], false, "{case}: doctor sees it: {check:#}");
        n.drain(10);
        let s1 = n.stage("s1");
        assert_eq!(s1["status"], "done", "{case}: {s1:#}");
        assert!(!path.exists(), "{case}: {} is still there", path.display());
        assert_eq!(n.git(&["show", "nightshift/integration:a.txt"]), "work");
        assert_eq!(
            n.count_events("removed stale git lock"),
            1,
            "{case}: {:#?}",
            n.events()
        );
    }
}

#[test]
fn repair_clears_a_stale_ledger_lock_and_a_busy_repository_ticks_again() {
    let mut n = one_stage();
    let lock = n.path(".git/refs/heads/nightshift/ledger.lock");
    std::fs::write(&lock, "").unwrap();
    let out = n.ok(&["repair"]);
    assert!(
        out.contains("removed stale git lock .git/refs/heads/nightshift/ledger.lock"),
        "{out}"
    );
    assert!(!lock.exists());
    n.drain(10);
    assert_eq!(n.stage("s1")["status"], "done");
}

const GHOST: &str = "  ghost: { kind: command, family: ghost, command: /nonexistent/bin/agent }\n";

// Lesson: an agent command that was not on PATH escalated as "the stage worktree could not be
// prepared", its run showed `outcome: "ok"`, and `doctor` said `ok` for an absolute path that
// does not exist.
#[test]
fn regression_a_missing_agent_command_is_typed_uncounted_and_doctor_fails() {
    let cfg = CONFIG.replace(
        "  vcodex: { kind: script, family: codex }\n",
        &format!("  vcodex: {{ kind: script, family: codex }}\n{GHOST}"),
    );
    let mut n = Night::with_config(&cfg);
    n.init();
    let c = n.card("s1", "worker: ghost\n", "b");
    n.add(&[&c]);
    n.drain(20);
    let s1 = n.stage("s1");
    assert_eq!(s1["status"], "escalated", "{s1:#}");
    assert_eq!(
        s1["attempts_used"], 0,
        "setup failures do not count: {s1:#}"
    );
    let reason = s1["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("could not be set up 3 times") && reason.contains("agent_missing"),
        "{reason}"
    );
    let outcome: Value = serde_json::from_str(&n.read("state/handoffs/s1/a1/worker.json")).unwrap();
    assert_eq!(outcome["result"]["setup_error"]["cause"], "agent_missing");
    assert_eq!(outcome["result"]["run"]["agent"], "ghost");
    assert_eq!(outcome["result"]["run"]["is_error"], true);
    let view = n.ok(&["status", "--json"]);
    assert!(!view.contains("\"outcome\": \"ok\""), "{view}");
    let doctor = n.ns(&["doctor", "--json"]);
    assert!(!doctor.status.success());
    let doctor: Value = serde_json::from_str(&stdout(&doctor)).unwrap();
    let ghost = doctor["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "agent ghost")
        .cloned()
        .unwrap();
    assert_eq!(ghost["ok"], false, "{ghost:#}");
}

// Lesson: finished stages kept their worktrees forever.
#[test]
fn regression_a_done_stages_workspace_is_removed_and_gc_collects_what_is_left() {
    let mut n = one_stage();
    n.drain(10);
    assert_eq!(n.stage("s1")["status"], "done");
    let root = n.root.join("home/.local/state/nightshift/workspaces");
    let repo_dir = std::fs::read_dir(&root)
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    assert!(
        !repo_dir.join("s1").exists(),
        "the done stage's workspace is gone"
    );
    assert!(
        !n.git(&["rev-parse", "nightshift/stage/s1"]).is_empty(),
        "its branch stays"
    );
    let list = n.git(&["worktree", "list", "--porcelain"]);
    assert!(!list.contains("/s1\n"), "{list}");
    // An orphan: a workspace of a stage nightshift no longer knows, and an old log.
    let orphan = repo_dir.join("gone");
    n.git(&[
        "worktree",
        "add",
        "-q",
        "--detach",
        orphan.to_str().unwrap(),
        "main",
    ]);
    let log = n.path("state/logs/s1/a1-worker.log");
    assert!(log.exists());
    let touched = Command::new("touch")
        .args(["-d", "30 days ago"])
        .arg(&log)
        .status()
        .unwrap();
    assert!(touched.success());
    let young = n.path("state/logs/s1/a1-verifier.log");
    let gc: Value =
        serde_json::from_str(&n.ok(&["gc", "--logs-older-than", "7d", "--json"])).unwrap();
    assert_eq!(
        gc["workspaces_removed"],
        serde_json::json!(["gone"]),
        "{gc:#}"
    );
    assert_eq!(
        gc["logs_removed"],
        serde_json::json!(["state/logs/s1/a1-worker.log"]),
        "{gc:#}"
    );
    assert_eq!(gc["ledger_packed"], true);
    assert!(!orphan.exists() && !log.exists() && young.exists());
    let list = n.git(&["worktree", "list", "--porcelain"]);
    assert!(!list.contains("/gone\n"), "{list}");
    let bad = n.ns(&["gc", "--logs-older-than", "soon"]);
    assert_eq!(bad.status.code(), Some(2));
}

// Lesson: a refused `add-stage` (two cards with one id) left `state/cards/<id>.md` behind.
#[test]
fn regression_a_refused_add_stage_leaves_nothing_behind() {
    let n = Night::new();
    n.init();
    let a = n.card("dup", "", "one");
    n.write(
        "stage-cards/dup2.md",
        "---\nid: dup\ntitle: Again\n---\ntwo\n",
    );
    n.commit_all("a second card with the same id");
    let out = n.ns(&["add-stage", &a, "stage-cards/dup2.md"]);
    assert!(!out.status.success());
    assert!(!n.path("state/cards/dup.md").exists());
    assert!(stages(&n).is_empty());
}

const BIG_CONFIG: &str = "\
version: 1
lanes: 1
base: main
integration: { branch: nightshift/integration, policy: fast-forward }
agents:
  wsh: { kind: command, command: sh, family: claude, args: [\"-c\", \". \\\"$HOME/agent.sh\\\"\"] }
  vcodex: { kind: script, family: codex }
defaults:
  worker: wsh
  verifier: vcodex
  max_attempts: 1
  timeouts: { worker: 5m, verifier: 5m, acceptance: 2m }
";

// Lesson: an 8 MB final message was stored whole in the outcome and committed to the ledger.
#[test]
fn regression_an_8_mb_final_message_is_stored_bounded_with_the_full_text_in_the_log() {
    let mut n = Night::with_config(BIG_CONFIG);
    std::fs::write(
        n.root.join("home/agent.sh"),
        "echo work > big.txt\nhead -c 8388608 /dev/zero | tr '\\0' x\necho\necho THE-END\nprintf '```json\\n{\"version\":1,\"stage\":\"s1\",\"attempt\":1,\"status\":\"done\",\"summary\":\"big\"}\\n```\\n'\n",
    )
    .unwrap();
    n.init();
    let c = n.card(
        "s1",
        "script:\n  verifier:\n    - steps:\n        - verdict: { verdict: pass }\n",
        "b",
    );
    n.add(&[&c]);
    n.drain(10);
    assert_eq!(n.stage("s1")["status"], "done", "{:#}", n.stage("s1"));
    let outcome: Value = serde_json::from_str(&n.read("state/handoffs/s1/a1/worker.json")).unwrap();
    let message = outcome["result"]["run"]["final_message"].as_str().unwrap();
    assert!(message.len() < 70 * 1024, "{} bytes stored", message.len());
    assert!(
        message.contains("state/logs/s1/a1-worker.log"),
        "names the full text"
    );
    let blob = n.git(&[
        "cat-file",
        "-s",
        "nightshift/ledger:state/handoffs/s1/a1/worker.json",
    ]);
    assert!(
        blob.parse::<u64>().unwrap() < 100_000,
        "{blob} bytes in the ledger"
    );
    let log = std::fs::read(n.path("state/logs/s1/a1-worker.log")).unwrap();
    assert!(log.len() > 8_000_000, "the log keeps the whole output");
    assert!(String::from_utf8_lossy(&log).contains("THE-END"));
}
