//! What the verifier saw is what lands: the deliverable is the tree snapshotted at the worker's
//! handoff; acceptance artefacts and a verifier's writes never land; nightshift's own git runs
//! no hook, filter, fsmonitor or driver the repository plants; known secrets never leave.

use serde_json::Value;

use super::escape::{SH_CONFIG, agent_script};
use super::night::Night;

fn git_ok(n: &Night, args: &[&str]) -> Option<String> {
    let out = std::process::Command::new("git")
        .args(args)
        .current_dir(&n.repo)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", n.root.join("home"))
        .output()
        .unwrap();
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn outcome(n: &Night, stage: &str, role: &str) -> Value {
    serde_json::from_str(&n.read(&format!("state/handoffs/{stage}/a1/{role}.json"))).unwrap()
}

// Lesson: running a Python project's tests committed its `__pycache__/*.pyc` (a repository with
// no `.gitignore` for them) into the deliverable. Acceptance now runs on the snapshot and only
// the snapshot lands, byte-identical.
#[test]
fn regression_acceptance_artefacts_never_land_and_the_snapshot_is_the_commit() {
    let mut n = Night::with_config(SH_CONFIG);
    let worker = "echo 'def f():\n    return 1' > mod.py; git add mod.py; git -c user.name=a -c user.email=a@example.invalid commit -q -m \"agent's own commit\"; git log -1 --format=own:%s";
    std::fs::write(n.root.join("home/agent.sh"), agent_script("worker", worker)).unwrap();
    n.init();
    let acceptance = "python3 -c 'import sys; sys.path.insert(0, \".\"); import mod; assert mod.f() == 1' && echo touched >> work-s1.txt";
    let c = n.card("s1", &format!("acceptance: [{acceptance:?}]\n"), "body");
    n.add(&[&c]);
    n.drain(20);
    assert_eq!(n.stage("s1")["status"], "done", "{:#}", n.stage("s1"));
    let w = outcome(&n, "s1", "worker");
    let snapshot = w["result"]["snapshot"].as_str().unwrap().to_owned();
    let landed = git_ok(&n, &["rev-parse", "nightshift/stage/s1^{tree}"]).unwrap();
    assert_eq!(
        landed, snapshot,
        "the stage branch holds exactly the snapshot"
    );
    let integrated = git_ok(&n, &["rev-parse", "nightshift/integration^{tree}"]).unwrap();
    assert_eq!(integrated, snapshot);
    let files = git_ok(
        &n,
        &["ls-tree", "-r", "--name-only", "nightshift/integration"],
    )
    .unwrap();
    assert!(
        files.contains("mod.py") && files.contains("work-s1.txt"),
        "{files}"
    );
    assert!(!files.contains("__pycache__"), "{files}");
    let body = git_ok(
        &n,
        &["cat-file", "-p", "nightshift/integration:work-s1.txt"],
    )
    .unwrap();
    assert_eq!(
        body, "work of s1",
        "acceptance's edit of a tracked file never lands"
    );
    let a = outcome(&n, "s1", "acceptance");
    let changed: Vec<&str> = a["result"]["changed_files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(changed.contains(&"work-s1.txt"), "{changed:?}");
    assert!(
        changed.iter().any(|p| p.starts_with("__pycache__/")),
        "{changed:?}"
    );
    let prompt = n.read("state/handoffs/s1/a1/verifier-prompt.md");
    assert!(
        prompt.contains("b/mod.py") && !prompt.contains("b/__pycache__"),
        "{prompt}"
    );
    assert!(prompt.contains("not part of the deliverable"), "{prompt}");
    let subjects = git_ok(&n, &["log", "--format=%s", "main..nightshift/stage/s1"]).unwrap();
    assert_eq!(subjects, "s1: Stage s1", "one commit, base → snapshot");
    // The agent did commit, in its own git view of the workspace (outside the repository),
    // which went with the workspace once the stage was done.
    let log = n.read("state/logs/s1/a1-worker.log");
    assert!(
        log.contains("own:agent's own commit"),
        "the agent did commit: {log}"
    );
    let views = std::fs::read_dir(n.root.join("home/.local/state/nightshift/workspaces"))
        .unwrap()
        .flatten()
        .any(|d| d.path().join(".agent-git/s1").exists());
    assert!(!views, "the agent's own view is removed with the workspace");
    let msg = git_ok(&n, &["log", "-1", "--format=%B", "nightshift/stage/s1"]).unwrap();
    assert!(
        msg.contains(&format!("Nightshift-Tree: {snapshot}")),
        "{msg}"
    );
}

#[test]
fn a_verifier_that_writes_has_its_verdict_voided_and_nothing_lands() {
    let mut n = Night::with_config(SH_CONFIG);
    let verifier = "echo 'fixed it myself' > review-fix.txt; echo more >> work-s1.txt";
    std::fs::write(
        n.root.join("home/agent.sh"),
        agent_script("verifier", verifier),
    )
    .unwrap();
    n.init();
    let c = n.card("s1", "max_attempts: 1\nacceptance: [\"true\"]\n", "body");
    n.add(&[&c]);
    n.drain(20);
    let s = n.stage("s1");
    assert_eq!(s["status"], "escalated", "{s:#}");
    assert!(
        s["reason"].as_str().unwrap().ends_with(
            "the verifier changed the workspace (verdict void): `review-fix.txt`, `work-s1.txt`"
        ),
        "{s:#}"
    );
    assert!(
        git_ok(
            &n,
            &["rev-parse", "--verify", "-q", "nightshift/integration"]
        )
        .is_none()
    );
    let log = n.events().join("\n");
    assert!(
        log.contains("verifier_wrote") || log.contains("verdict void"),
        "{log}"
    );
}

/// Every hook name git 2.47 runs in the commands nightshift uses.
const HOOKS: [&str; 9] = [
    "post-checkout",
    "pre-commit",
    "post-commit",
    "commit-msg",
    "prepare-commit-msg",
    "reference-transaction",
    "post-merge",
    "post-index-change",
    "pre-auto-gc",
];

#[test]
fn nightshift_git_runs_no_hook_filter_fsmonitor_or_driver_planted_in_the_repository() {
    let mut n = Night::with_config(SH_CONFIG);
    std::fs::write(n.root.join("home/agent.sh"), agent_script("nobody", ":")).unwrap();
    n.init();
    let c0 = n.card("s0", "acceptance: [\"true\"]\n", "first");
    let c1 = n.card("s1", "depends_on: [s0]\nacceptance: [\"true\"]\n", "second");
    n.write(".gitattributes", "* filter=evil merge=evil diff=evil\n");
    n.commit_all("attributes");
    // Planted after the harness's own last commit: from here on only nightshift runs git.
    let marks = n.root.join("marks");
    std::fs::create_dir_all(&marks).unwrap();
    let m = marks.display();
    let planted = n.root.join("planted-hooks");
    std::fs::create_dir_all(&planted).unwrap();
    for dir in [n.path(".git/hooks"), planted.clone()] {
        for hook in HOOKS {
            let p = dir.join(hook);
            std::fs::write(&p, format!("#!/bin/sh\ntouch {m}/hook-{hook}\n")).unwrap();
            std::process::Command::new("chmod")
                .arg("+x")
                .arg(&p)
                .status()
                .unwrap();
        }
    }
    std::fs::write(n.path(".git/info/attributes"), "* filter=evil merge=evil\n").unwrap();
    let config = format!(
        "[core]\n\thooksPath = {}\n\tfsmonitor = touch {m}/fsmonitor\n\tsshCommand = touch {m}/ssh\n[diff]\n\texternal = touch {m}/diff-external\n[diff \"evil\"]\n\ttextconv = touch {m}/textconv\n\tcommand = touch {m}/diff-command\n[filter \"evil\"]\n\tclean = touch {m}/clean; cat\n\tsmudge = touch {m}/smudge; cat\n\tprocess = touch {m}/process\n[merge \"evil\"]\n\tdriver = touch {m}/merge-driver\n",
        planted.display()
    );
    let mut text = std::fs::read_to_string(n.path(".git/config")).unwrap();
    text.push_str(&config);
    std::fs::write(n.path(".git/config"), text).unwrap();
    n.add(&[&c0, &c1]);
    n.drain(30);
    assert_eq!(n.stage("s0")["status"], "done", "{:#}", n.status());
    assert_eq!(n.stage("s1")["status"], "done", "{:#}", n.status());
    let ran: Vec<String> = std::fs::read_dir(&marks)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(ran.is_empty(), "planted programs ran: {ran:?}");
}

#[test]
fn a_canary_secret_never_leaves() {
    const ROUTE_KEY: &str = "sk-canary-route-0123456789abcdef";
    const LISTED: &str = "tok-canary-listed-9876543210";
    let cfg = SH_CONFIG
        .replace(
            "family: claude, args:",
            "family: claude, auth: { route: api, env: CANARY_KEY, pass_as: AGENT_KEY }, args:",
        )
        .replace("budget:", "redact: [LISTED_TOKEN]\nbudget:");
    let mut n = Night::with_config(&cfg);
    n.extra_env.push(("CANARY_KEY".into(), ROUTE_KEY.into()));
    n.extra_env.push(("LISTED_TOKEN".into(), LISTED.into()));
    // s1 leaks the route key into a file, its output and its log; s2 prints the value of a
    // variable listed under `redact:` (which agents are never given; it reads it from a file).
    std::fs::write(n.root.join("home/token.txt"), LISTED).unwrap();
    let leak =
        "echo \"$AGENT_KEY\" > leak.txt; echo \"key $AGENT_KEY\"; echo \"err $AGENT_KEY\" >&2";
    let script = agent_script("worker", leak).replace(
        "if [ \"$NIGHTSHIFT_ROLE\" = worker ]; then\n",
        "if [ \"$NIGHTSHIFT_ROLE\" = worker ]; then\n  [ \"$S\" = s2 ] && echo \"listed $(cat \"$HOME/token.txt\")\" && cat \"$HOME/token.txt\" >&2\n",
    );
    std::fs::write(n.root.join("home/agent.sh"), script).unwrap();
    n.init();
    let c1 = n.card("s1", "max_attempts: 1\nacceptance: [\"true\"]\n", "body");
    let c2 = n.card("s2", "acceptance: [\"echo $LISTED_TOKEN; true\"]\n", "body");
    n.add(&[&c1, &c2]);
    n.drain(30);
    let s1 = n.stage("s1");
    assert_eq!(s1["status"], "escalated", "{s1:#}");
    assert!(
        s1["reason"]
            .as_str()
            .unwrap()
            .ends_with("the deliverable holds the secret $CANARY_KEY in `leak.txt`"),
        "{s1:#}"
    );
    assert_eq!(n.stage("s2")["status"], "done", "{:#}", n.stage("s2"));
    let all = git_ok(&n, &["log", "-p", "--all"]).unwrap();
    for secret in [ROUTE_KEY, LISTED] {
        assert!(!all.contains(secret), "a secret is in git log -p --all");
    }
    let mut files = vec![n.path("state")];
    let mut seen = 0;
    while let Some(p) = files.pop() {
        if p.ends_with("worktrees") {
            continue; // the workspace itself (never on a branch)
        }
        if p.is_dir() {
            files.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
            continue;
        }
        let bytes = std::fs::read(&p).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        for secret in [ROUTE_KEY, LISTED] {
            assert!(!text.contains(secret), "a secret is in {}", p.display());
        }
        seen += 1;
    }
    assert!(seen > 10, "only {seen} files looked at");
    let log = n.read("state/logs/s1/a1-worker.log");
    assert!(log.contains("key [redacted:CANARY_KEY]"), "{log}");
    assert!(
        n.read("state/logs/s2/a1-worker.log")
            .contains("[redacted:LISTED_TOKEN]")
    );
}
