//! Kernel confinement (`confine: strict`, Linux Landlock) through the real binary: `command`
//! agents running shell scripts try to write everywhere they must not (the real `state/`,
//! `nightshift.yaml`, the repository's `.git`, another stage's workspace, the user's checkout);
//! every write is refused, the stage ends as it would have without the attempt, and nothing
//! forged integrates. A kernel without Landlock (`NIGHTSHIFT_LANDLOCK=unsupported`) makes
//! `strict` refuse to dispatch and `doctor`/`status` say agents are not confined. These tests
//! need a kernel with Landlock (ABI 7 on the machines this suite runs on); they fail, never
//! skip, without one.

use sha2::{Digest, Sha256};

use super::night::{CONFIG, Night, PASS, script, stderr, stdout, writes};

/// Writes outside the workspace that an escaping agent tries, as `(label, path relative to the
/// repo, create)`: `create` files do not exist yet (a forger would create them).
const TARGETS: [(&str, &str, bool); 9] = [
    (
        "acceptance outcome",
        "state/handoffs/s1/a1/acceptance.json",
        true,
    ),
    (
        "verdict outcome",
        "state/handoffs/s1/a1/verifier.json",
        true,
    ),
    ("state.yaml", "state/state.yaml", false),
    ("stage file", "state/stages/s1.yaml", false),
    ("nightshift.yaml", "nightshift.yaml", false),
    ("hook", ".git/hooks/post-checkout", true),
    ("git config", ".git/config", false),
    ("tracked file", "README.md", false),
    ("new file", "planted.txt", true),
];

/// A shell script that tries every target (plus another stage's workspace, reached as a
/// sibling of its own) and reports each as `REFUSED` or `WROTE`, then prints `final`.
fn escape_script(n: &Night, name: &str, final_block: &str) -> String {
    let mut s = String::from("#!/bin/sh\nR=\"$NIGHTSHIFT_REPO\"\n");
    s.push_str(
        "try() { if ( mkdir -p \"$(dirname \"$1\")\" && printf '%s\\n' \"$2\" >> \"$1\" ) 2>>\"$TMPDIR/errors\"; then echo \"WROTE $1\"; else echo \"REFUSED $1\"; fi; }\n",
    );
    let forged = r#"{"forged":true}"#;
    for (_, rel, _) in TARGETS {
        s.push_str(&format!("try \"$R/{rel}\" '{forged}'\n"));
    }
    s.push_str("try \"$PWD/../s0/a.txt\" forged\n");
    s.push_str("cat \"$TMPDIR/errors\" >&2\n");
    s.push_str(&format!("cat <<'EOF'\n{final_block}\nEOF\n"));
    let path = n.root.join(name);
    std::fs::write(&path, s).unwrap();
    path.to_string_lossy().into_owned()
}

/// A card's `script:` section with only the (scripted) verifier, which passes.
const VERIFIER_PASSES: &str =
    "script:\n  verifier:\n    - steps:\n        - verdict: { verdict: pass }\n";

fn digests(n: &Night) -> Vec<(String, String)> {
    TARGETS
        .iter()
        .map(|(_, rel, _)| (*rel).to_owned())
        .chain(std::iter::once("other-stage".to_owned()))
        .map(|rel| {
            let path = if rel == "other-stage" {
                workspace(n, "s0").join("a.txt")
            } else {
                n.path(&rel)
            };
            let bytes = std::fs::read(&path).unwrap_or_default();
            (rel, format!("{:x}", Sha256::digest(&bytes)))
        })
        .collect()
}

/// Files nightshift itself writes (under `state/`) carry no forged line; every other target
/// is byte-identical.
fn assert_untouched(n: &Night, before: &[(String, String)], after: &[(String, String)]) {
    for ((rel, a), (_, b)) in before.iter().zip(after) {
        if rel.starts_with("state/") {
            let text = n.read(rel);
            assert!(
                !text.contains("forged"),
                "{rel} holds a forged write: {text}"
            );
        } else {
            assert_eq!(a, b, "{rel} was changed by a confined agent");
        }
    }
}

/// Where the night's repository keeps its workspaces by default (one directory per repository).
fn workspaces_root(n: &Night) -> std::path::PathBuf {
    n.root.join("home/.local/state/nightshift/workspaces")
}

/// The stage's workspace, found through git's own list of worktrees.
fn workspace(n: &Night, stage: &str) -> std::path::PathBuf {
    let list = n.git(&["worktree", "list", "--porcelain"]);
    let suffix = format!("/{stage}");
    list.lines()
        .filter_map(|l| l.strip_prefix("worktree "))
        .find(|p| p.ends_with(&suffix))
        .map(std::path::PathBuf::from)
        .unwrap_or_default()
}

fn envelope(stage: &str) -> String {
    format!(
        "```json\n{{\"version\":1,\"stage\":\"{stage}\",\"attempt\":1,\"status\":\"done\",\"summary\":\"tried to escape\"}}\n```"
    )
}

fn verdict_pass(stage: &str) -> String {
    format!(
        "```json\n{{\"version\":1,\"stage\":\"{stage}\",\"attempt\":1,\"verdict\":\"pass\",\"criteria\":[],\"findings\":[]}}\n```"
    )
}

/// A night whose first stage `s0` is escalated (its workspace stays for a person to inspect,
/// and is there to be attacked), with the
/// agent `escape` (a `command` agent running `script_path`) configured.
fn night_with(agent_line: &str) -> Night {
    let cfg = CONFIG.replace(
        "  vcodex: { kind: script, family: codex }",
        &format!("  vcodex: {{ kind: script, family: codex }}\n{agent_line}"),
    );
    let mut n = Night::with_config(&cfg);
    n.init();
    let c0 = n.card(
        "s0",
        &format!(
            "acceptance: [\"false\"]\nmax_attempts: 1\n{}",
            script(&[writes("a.txt", "s0 work")], &[PASS])
        ),
        "first",
    );
    n.add(&[&c0]);
    n.drain(20);
    assert_eq!(n.stage("s0")["status"], "escalated", "{:#}", n.stage("s0"));
    n
}

#[test]
fn a_confined_worker_cannot_forge_its_gates_or_write_outside_its_workspace() {
    let mut n = night_with(
        "  escape: { kind: command, family: evil, command: /bin/sh, args: [\"-c\", \"exec sh \\\"$NIGHTSHIFT_REPO/../escape.sh\\\"\"] }",
    );
    escape_script(&n, "escape.sh", &envelope("s1"));
    let before = digests(&n);
    // (None yet: `s0` escalated. `for-each-ref` prints nothing for a missing branch.)
    let integration_before = n.git(&["for-each-ref", "refs/heads/nightshift/integration"]);
    let front =
        format!("worker: escape\nmax_attempts: 1\nacceptance: [\"false\"]\n{VERIFIER_PASSES}");
    let c1 = n.card("s1", &front, "escape");
    let before_card = digests(&n);
    n.add(&[&c1]);
    n.drain(20);
    let s = n.stage("s1");
    assert_eq!(s["status"], "escalated", "{s:#}");
    assert!(
        s["reason"].as_str().unwrap().contains("acceptance"),
        "the real acceptance result decided: {s:#}"
    );
    // Every write was refused: the files are byte-identical (the card commit only touched
    // stage-cards/), and the agent saw ordinary permission errors.
    assert_eq!(before, before_card);
    let after = digests(&n);
    assert_untouched(&n, &before, &after);
    let acceptance = n.read("state/handoffs/s1/a1/acceptance.json");
    assert!(!acceptance.contains("forged"), "{acceptance}");
    let log = n.read("state/logs/s1/a1-worker.log");
    for (_, rel, _) in TARGETS {
        assert!(
            log.contains(&format!("REFUSED {}", n.path(rel).display())),
            "{rel}: {log}"
        );
    }
    assert!(!log.contains("WROTE"), "{log}");
    assert!(log.contains("Permission denied"), "{log}");
    assert!(!n.path("planted.txt").exists());
    assert_eq!(
        n.git(&["for-each-ref", "refs/heads/nightshift/integration"]),
        integration_before,
        "nothing integrated"
    );
}

#[test]
fn a_confined_verifier_writes_nothing_and_its_workspace_edit_never_lands() {
    let mut n = night_with(
        "  judge: { kind: command, family: codex, command: /bin/sh, args: [\"-c\", \"exec sh \\\"$NIGHTSHIFT_REPO/../verify.sh\\\"\"] }",
    );
    let path = n.root.join("verify.sh");
    let mut text = escape_script(&n, "verify-base.sh", &verdict_pass("s1"));
    text = std::fs::read_to_string(text).unwrap();
    // Also try the stage's own workspace (tracked and new file) before the verdict.
    text = text.replacen(
        "cat \"$TMPDIR/errors\"",
        "try \"$PWD/work.txt\" tampered\ntry \"$PWD/verifier-note.txt\" new\ncat \"$TMPDIR/errors\"",
        1,
    );
    std::fs::write(&path, text).unwrap();
    let before = digests(&n);
    let front = format!(
        "verifier: judge\nmax_attempts: 1\nacceptance: [\"true\"]\nscript:\n  worker:\n{}",
        writes("work.txt", "the work")
    );
    let c1 = n.card("s1", &front, "verified");
    n.add(&[&c1]);
    n.drain(20);
    let s = n.stage("s1");
    assert_eq!(s["status"], "done", "{s:#}");
    let log = n.read("state/logs/s1/a1-verifier.log");
    assert!(!log.contains("WROTE"), "{log}");
    assert!(log.contains("REFUSED"), "{log}");
    let after = digests(&n);
    assert_untouched(&n, &before, &after);
    let landed = n.git(&["show", "nightshift/integration:work.txt"]);
    assert_eq!(landed, "the work");
    let files = n.git(&["ls-tree", "-r", "--name-only", "nightshift/integration"]);
    assert!(!files.contains("verifier-note.txt"), "{files}");
}

#[test]
fn descendants_of_a_confined_agent_are_confined_too() {
    let cfg = CONFIG.replace(
        "  vcodex: { kind: script, family: codex }",
        "  vcodex: { kind: script, family: codex }\n  forker: { kind: command, family: evil, command: /bin/sh, args: [\"-c\", \"sh -c 'sleep 1; echo x > ../forbidden 2>/dev/null; a=$?; echo x > \\\"$NIGHTSHIFT_REPO/forbidden\\\" 2>/dev/null; echo $a $? > grandchild-exit' & wait; printf '```json\\\\n{\\\"version\\\":1,\\\"stage\\\":\\\"s1\\\",\\\"attempt\\\":1,\\\"status\\\":\\\"done\\\",\\\"summary\\\":\\\"forked\\\"}\\\\n```\\\\n'\"] }",
    );
    let mut n = Night::with_config(&cfg);
    n.init();
    let front = format!("worker: forker\nmax_attempts: 1\n{VERIFIER_PASSES}");
    let c = n.card("s1", &front, "fork");
    n.add(&[&c]);
    n.drain(20);
    assert!(!n.path("forbidden").exists(), "a grandchild escaped");
    let escaped = std::fs::read_dir(workspaces_root(&n))
        .into_iter()
        .flatten()
        .flatten()
        .any(|d| d.path().join("forbidden").exists());
    assert!(!escaped, "a grandchild escaped");
    assert_eq!(n.stage("s1")["status"], "done", "{:#}", n.stage("s1"));
    let exit = n.git(&["show", "nightshift/integration:grandchild-exit"]);
    assert_eq!(
        exit.trim(),
        "2 2",
        "both of the grandchild's writes must have failed"
    );
}

#[test]
fn acceptance_under_the_ruleset_builds_and_tests_a_python_like_project() {
    let mut n = Night::new();
    n.init();
    n.write("calc.py", "def add(a, b):\n    return a + b\n");
    n.commit_all("a python project");
    let acceptance = "acceptance:\n  - \"python3 -c 'import calc; assert calc.add(2, 3) == 5'\"\n  - \"test -d __pycache__\"\n  - \"d=$(mktemp -d) && echo ok > $d/f && cat $d/f && case $d in $TMPDIR/*) ;; *) exit 9;; esac\"\n  - \"mkdir -p build && echo obj > build/out.o && mv build/out.o build/moved.o\"\n";
    let front = format!(
        "max_attempts: 1\n{acceptance}{}",
        script(&[writes("test_calc.py", "import calc")], &[PASS])
    );
    let c = n.card("s1", &front, "python");
    n.add(&[&c]);
    n.drain(20);
    let s = n.stage("s1");
    assert_eq!(s["status"], "done", "{s:#}");
}

#[test]
fn strict_without_landlock_refuses_to_dispatch_and_says_so() {
    let mut n = Night::with_config(&format!("{CONFIG}confine: strict\n"));
    n.extra_env
        .push(("NIGHTSHIFT_LANDLOCK".into(), "unsupported".into()));
    n.init();
    let c = n.card("s1", &script(&[writes("a", "a")], &[PASS]), "b");
    n.add(&[&c]);
    let out = n.tick();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("agents are NOT confined"), "{err}");
    assert!(err.contains("confine: detect"), "{err}");
    assert_eq!(n.stage("s1")["status"], "queued");
    let status = n.ok(&["status"]);
    assert!(status.contains("agents are NOT confined"), "{status}");
    let json = n.status();
    assert_eq!(json["confinement"]["confined"], false);
    assert_eq!(json["confinement"]["mode"], "strict");
    let doctor = n.ns(&["doctor"]);
    let text = stdout(&doctor);
    assert!(
        text.lines()
            .any(|l| l.starts_with("FAIL") && l.contains("NOT confined")),
        "{text}"
    );
    // Without a `confine:` key the default on such a kernel is `detect`: agents run, and
    // status says plainly that they are not confined.
    let cfg = n.read("nightshift.yaml").replace("confine: strict\n", "");
    n.write("nightshift.yaml", &cfg);
    n.drain(20);
    assert_eq!(n.stage("s1")["status"], "done");
    let status = n.ok(&["status"]);
    assert!(
        status.contains("agents are NOT confined by the kernel (`confine: detect`; NIGHTSHIFT_LANDLOCK=unsupported"),
        "{status}"
    );
    assert_eq!(n.status()["confinement"]["mode"], "detect");
    // `off` is the user's explicit call, and says so.
    n.write("nightshift.yaml", &(cfg + "confine: off\n"));
    let status = n.ok(&["status"]);
    assert!(status.contains("NOT confined (`confine: off`)"), "{status}");
}

#[test]
fn doctor_and_status_show_the_confinement_in_force() {
    let cfg = CONFIG.replace(
        "  vcodex: { kind: script, family: codex }",
        "  vcodex: { kind: script, family: codex }\n  sub: { kind: claude, family: claude }",
    );
    let n = Night::with_config(&cfg);
    n.init();
    let text = stdout(&n.ns(&["doctor", "--json"]));
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let check = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "confinement")
        .cloned()
        .unwrap();
    assert_eq!(check["ok"], true);
    assert!(
        check["detail"]
            .as_str()
            .unwrap()
            .contains("Landlock ruleset"),
        "{check}"
    );
    assert_eq!(n.status()["confinement"]["confined"], true);
    // A subscription agent shares the user's own CLI state: doctor names the weaker mode.
    let shared = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "agent sub state")
        .cloned()
        .unwrap();
    assert!(
        shared["detail"]
            .as_str()
            .unwrap()
            .starts_with("weaker mode"),
        "{shared}"
    );
    assert!(
        !text.contains("agent wclaude state"),
        "script agents keep no CLI state"
    );
}

#[test]
fn a_confined_worker_uses_git_in_its_workspace_without_touching_the_repositorys_git() {
    let cfg = CONFIG.replace(
        "  vcodex: { kind: script, family: codex }",
        "  vcodex: { kind: script, family: codex }\n  gitter: { kind: command, family: evil, command: /bin/sh, args: [\"-c\", \"exec sh \\\"$NIGHTSHIFT_REPO/../git.sh\\\"\"] }",
    );
    let mut n = Night::with_config(&cfg);
    n.init();
    std::fs::write(
        n.root.join("git.sh"),
        "set -e\necho work > feature.txt\ngit status --porcelain\ngit add -A\ngit commit -q -m 'my own commit'\ngit log --format=%s -1\ngit status --porcelain\nprintf '```json\\n{\"version\":1,\"stage\":\"s1\",\"attempt\":1,\"status\":\"done\",\"summary\":\"committed\"}\\n```\\n'\n",
    )
    .unwrap();
    let front = format!("worker: gitter\nmax_attempts: 1\n{VERIFIER_PASSES}");
    let c = n.card("s1", &front, "git");
    n.add(&[&c]);
    n.drain(20);
    let log = n.read("state/logs/s1/a1-worker.log");
    assert!(log.contains("?? feature.txt"), "{log}");
    assert!(log.contains("my own commit"), "{log}");
    assert_eq!(
        n.stage("s1")["status"],
        "done",
        "{:#}\n{log}",
        n.stage("s1")
    );
    // nightshift committed the deliverable itself; the agent's commit stayed in its own view.
    assert_eq!(
        n.git(&["show", "nightshift/integration:feature.txt"]),
        "work"
    );
    let subjects = n.git(&["log", "--format=%s", "nightshift/integration"]);
    assert!(!subjects.contains("my own commit"), "{subjects}");
    // Workspaces live outside the checkout; a done stage's is removed.
    assert!(!workspaces_root(&n).starts_with(&n.repo));
    assert_eq!(workspace(&n, "s1"), std::path::PathBuf::new());
    n.assert_fsck_clean("after an agent committed in its own view");
}

#[test]
fn the_workspace_directory_is_configurable_and_never_inside_the_repository() {
    let mut n = Night::new();
    let outside = n.root.join("elsewhere");
    let cfg = n.read("nightshift.yaml") + &format!("workspaces: {}\n", outside.display());
    n.write("nightshift.yaml", &cfg);
    n.init();
    let c = n.card("s1", &script(&[writes("a.txt", "a")], &[PASS]), "b");
    n.add(&[&c]);
    n.drain(20);
    assert_eq!(n.stage("s1")["status"], "done");
    // The workspace went with the done stage; its repository's directory is under `outside`.
    let dirs: Vec<_> = std::fs::read_dir(&outside).unwrap().flatten().collect();
    assert_eq!(dirs.len(), 1, "{}", outside.display());
    assert!(!dirs[0].path().join("s1").exists());
    // Inside the checkout: refused before anything is dispatched.
    let inside = n.repo.join("ws");
    let cfg = n.read("nightshift.yaml").replace(
        &format!("workspaces: {}", outside.display()),
        &format!("workspaces: {}", inside.display()),
    );
    n.write("nightshift.yaml", &cfg);
    let c2 = n.card("s2", &script(&[writes("b.txt", "b")], &[PASS]), "b");
    n.add(&[&c2]);
    let out = n.tick();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("is inside the repository"),
        "{}",
        stderr(&out)
    );
    assert!(!inside.exists());
}

#[test]
fn a_refused_write_in_acceptance_fails_the_attempt_naming_the_path() {
    let mut n = Night::new();
    n.init();
    let front = format!(
        "max_attempts: 1\nacceptance: [\"echo x > \\\"$NIGHTSHIFT_REPO/forbidden\\\"\"]\n{}",
        script(&[writes("a.txt", "a")], &[PASS])
    );
    let c = n.card("s1", &front, "b");
    n.add(&[&c]);
    n.drain(20);
    let s = n.stage("s1");
    assert_eq!(s["status"], "escalated", "{s:#}");
    assert!(!n.path("forbidden").exists());
    let want = format!("{}: Permission denied", n.path("forbidden").display());
    let reason = s["reason"].as_str().unwrap();
    assert!(
        reason.contains("write refused: ") && reason.contains(&want),
        "{reason}"
    );
    let log = n.ok(&["log"]);
    assert!(log.contains(&want), "{log}");
}
