//! The escape suite: `command` agents (shell scripts) that try to write where an attempt must
//! not, one case each, as the worker and as the verifier. Without kernel confinement every
//! write is detected, the attempt fails naming the file, and nothing the attempt made ever
//! reaches a branch.

use std::time::{Duration, Instant};

use super::night::Night;

/// Two shell agents of different families running `$HOME/agent.sh`, with no kernel ruleset
/// (`confine: detect`): what is tested here is the detection, which holds in every mode
/// (`confine.rs` tests the same writes refused under `strict`).
pub const SH_CONFIG: &str = "\
version: 1
confine: detect
lanes: 1
base: main
integration: { branch: nightshift/integration, policy: fast-forward }
agents:
  wsh: { kind: command, command: sh, family: claude, args: [\"-c\", \". \\\"$HOME/agent.sh\\\"\"] }
  vsh: { kind: command, command: sh, family: codex, args: [\"-c\", \". \\\"$HOME/agent.sh\\\"\"] }
defaults:
  worker: wsh
  verifier: vsh
  max_attempts: 1
  timeouts: { worker: 5m, verifier: 5m, acceptance: 2m }
budget:
  max_consecutive_failures: 50
";

/// The agent script: the worker writes `work-<stage>.txt` and hands off `done`, the verifier
/// says `pass`; on stage `s1` the role named by `who` first runs `escape` (`$FORGE` names the
/// next gate's outcome file: the acceptance's for the worker, its own for the verifier).
pub fn agent_script(who: &str, escape: &str) -> String {
    format!(
        r#"R="$NIGHTSHIFT_REPO"; S="$NIGHTSHIFT_STAGE"; A="$NIGHTSHIFT_ATTEMPT"; H="$R/state/handoffs/$S/a$A"
FORGE=acceptance.json; [ "$NIGHTSHIFT_ROLE" = verifier ] && FORGE=verifier.json
if [ "$S" = s1 ] && [ "$NIGHTSHIFT_ROLE" = {who} ]; then
{escape}
fi
if [ "$NIGHTSHIFT_ROLE" = worker ]; then
  echo "work of $S" > "work-$S.txt"
  printf '```json\n{{"version":1,"stage":"%s","attempt":%s,"status":"done","summary":"did %s"}}\n```\n' "$S" "$A" "$S"
else
  printf '```json\n{{"version":1,"stage":"%s","attempt":%s,"verdict":"pass","criteria":[],"findings":[]}}\n```\n' "$S" "$A"
fi
"#
    )
}

/// A parseable acceptance or verifier outcome saying everything passed, as an agent forges it.
pub const FORGED_PASS: &str = r#"{"version":1,"stage":"s1","attempt":1,"finished_at":"2027-01-01T01:00:00Z","wall_secs":0,"result":{"role":"acceptance","commands":[],"setup_error":null}}"#;

/// A night with the shell agents, `s0` escalated first (its acceptance fails: its workspace
/// stays for a person to inspect, idle) and `s1` after it with acceptance `acceptance`.
fn night_with(who: &str, escape: &str, acceptance: &str) -> Night {
    let mut n = Night::with_config(SH_CONFIG);
    std::fs::write(n.root.join("home/agent.sh"), agent_script(who, escape)).unwrap();
    n.init();
    let c0 = n.card("s0", "acceptance: [\"false\"]\nmax_attempts: 1\n", "first");
    n.add(&[&c0]);
    n.drain(30);
    let c1 = n.card("s1", &format!("acceptance: [{acceptance:?}]\n"), "second");
    n.add(&[&c1]);
    n.drain(30);
    n
}

/// `s1` failed with `reason` and none of its work reached a branch.
fn assert_caught(n: &Night, reason_tail: &str, case: &str) {
    assert_eq!(n.stage("s0")["status"], "escalated", "{case}");
    let s1 = n.stage("s1");
    assert_eq!(s1["status"], "escalated", "{case}: {s1:#}");
    let reason = s1["reason"].as_str().unwrap_or_default();
    assert!(reason.ends_with(reason_tail), "{case}: {reason}");
    for branch in ["nightshift/integration", "nightshift/stage/s1", "main"] {
        let spec = format!("{branch}:work-s1.txt");
        let out = std::process::Command::new("git")
            .args(["rev-parse", "--verify", "-q", &spec])
            .current_dir(&n.repo)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{case}: s1's work is on {branch}");
    }
}

/// One case per forbidden place: the shell line that writes there and the path reported.
fn cases() -> Vec<(&'static str, String, &'static str)> {
    vec![
        (
            "outcome file",
            format!("mkdir -p \"$H\"; printf '%s' '{FORGED_PASS}' > \"$H/$FORGE\""),
            "state/handoffs/s1/a1/acceptance.json",
        ),
        (
            "state.yaml",
            "echo '# forged' >> \"$R/state/state.yaml\"".into(),
            "state/state.yaml",
        ),
        (
            "stage file",
            "echo '# forged' >> \"$R/state/stages/s1.yaml\"".into(),
            "state/stages/s1.yaml",
        ),
        (
            "stage pack planted",
            "echo '{\"first\":2,\"ids\":[]}' > \"$R/state/stages/pack-2.jsonl\"".into(),
            "state/stages/pack-2.jsonl",
        ),
        (
            "nightshift.yaml",
            "echo '# forged' >> \"$R/nightshift.yaml\"".into(),
            "nightshift.yaml",
        ),
        (
            "hook",
            "printf '#!/bin/sh\\ntouch \"%s/HOOK_RAN\"\\n' \"$R\" > \"$R/.git/hooks/post-checkout\"; chmod +x \"$R/.git/hooks/post-checkout\"".into(),
            ".git/hooks/post-checkout",
        ),
        (
            "git config",
            "echo '# forged' >> \"$R/.git/config\"".into(),
            ".git/config",
        ),
        (
            "other workspace",
            // Workspaces are siblings outside the checkout: s0's is next to this one.
            "echo planted > \"$PWD/../s0/planted.txt\"".into(),
            "/s0/planted.txt",
        ),
        (
            "checkout, tracked file",
            "echo forged >> \"$R/README.md\"".into(),
            "README.md",
        ),
        (
            "checkout, new file",
            "echo planted > \"$R/planted.txt\"".into(),
            "planted.txt",
        ),
    ]
}

#[test]
fn worker_escapes_are_detected_and_never_integrate() {
    every_escape_caught("worker");
}

#[test]
fn verifier_escapes_are_detected_and_never_integrate() {
    every_escape_caught("verifier");
}

/// Each case of [`cases`] run by `role`: caught, naming the file, and no planted hook ran.
fn every_escape_caught(role: &str) {
    for (case, escape, path) in cases() {
        let n = night_with(role, &escape, "true");
        let path = if role == "verifier" {
            path.replace("acceptance.json", "verifier.json")
        } else {
            path.to_owned()
        };
        assert_caught(&n, &format!("{path}`"), case);
        let reason = n.stage("s1")["reason"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let says = format!("the {role} wrote outside its workspace: `");
        assert!(reason.contains(&says), "{reason}");
        assert!(!n.path("HOOK_RAN").exists(), "{case}: a planted hook ran");
    }
}

// A forged gate outcome written after the handoff. A daemon the worker starts to do it (it
// leaves the worker's process group and session) dies with the attempt: the job wrapper
// adopts it. A process outside nightshift's reach that writes the same forgery (here: the
// test itself) is refused: the acceptance command is `false`, the forged acceptance says
// pass, and the attempt fails naming the forged file.
#[test]
fn forged_outcomes_written_after_handoff_never_pass() {
    let late = format!(
        "setsid sh -c 'while [ ! -f \"$0/worker.json\" ]; do sleep 0.05; done; printf \"%s\" \"$1\" > \"$0/acceptance.json\"; echo late > \"$2/late.txt\"' \"$H\" '{FORGED_PASS}' \"$PWD\" </dev/null >/dev/null 2>&1 &"
    );
    let mut n = Night::with_config(SH_CONFIG);
    std::fs::write(n.root.join("home/agent.sh"), agent_script("worker", &late)).unwrap();
    n.init();
    let c1 = n.card("s1", "acceptance: [\"false\"]\n", "second");
    n.add(&[&c1]);
    n.tick();
    n.settle();
    let forged = n.path("state/handoffs/s1/a1/acceptance.json");
    let start = Instant::now();
    while !n.path("state/handoffs/s1/a1/worker.json").exists() {
        assert!(start.elapsed() < Duration::from_secs(20), "no handoff");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !forged.exists(),
        "the worker's daemon outlived its attempt and forged"
    );
    assert!(!n.workspace("s1").join("late.txt").exists());
    std::fs::write(&forged, FORGED_PASS).unwrap();
    n.drain(20);
    let s1 = n.stage("s1");
    assert_eq!(s1["status"], "escalated", "{s1:#}");
    let reason = s1["reason"].as_str().unwrap();
    assert!(
        reason.ends_with(
            "the acceptance wrote outside its workspace: `state/handoffs/s1/a1/acceptance.json`"
        ) || reason.ends_with(
            "refused `state/handoffs/s1/a1/acceptance.json`: not written by its own job"
        ),
        "{reason}"
    );
    let out = std::process::Command::new("git")
        .args(["rev-parse", "--verify", "-q", "nightshift/integration"])
        .current_dir(&n.repo)
        .output()
        .unwrap();
    assert!(!out.status.success(), "something integrated");
}

// A verifier that runs the code it reviews leaves build artefacts, and a process it leaves
// behind writes into the workspace after its handoff: its verdict is void, naming the
// artefact, and nothing lands.
#[test]
fn a_verifier_leaving_build_artefacts_is_void_and_late_writes_never_land() {
    let verifier = "echo 'X = 1' > probe.py; python3 -c 'import sys; sys.path.insert(0, \".\"); import probe' ; rm probe.py; setsid sh -c 'sleep 1; echo late > \"$0/late.txt\"' \"$PWD\" </dev/null >/dev/null 2>&1 &";
    let mut n = Night::with_config(SH_CONFIG);
    std::fs::write(
        n.root.join("home/agent.sh"),
        agent_script("verifier", verifier),
    )
    .unwrap();
    n.init();
    let c1 = n.card("s1", "acceptance: [\"true\"]\n", "second");
    n.add(&[&c1]);
    n.drain(20);
    let s1 = n.stage("s1");
    assert_eq!(s1["status"], "escalated", "{s1:#}");
    let reason = s1["reason"].as_str().unwrap();
    assert!(
        reason.contains("the verifier changed the workspace (verdict void): `__pycache__/probe."),
        "{reason}"
    );
    std::thread::sleep(Duration::from_millis(1500));
    for spec in ["nightshift/stage/s1:late.txt", "nightshift/integration"] {
        let out = std::process::Command::new("git")
            .args(["rev-parse", "--verify", "-q", spec])
            .current_dir(&n.repo)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{spec} exists");
    }
}
