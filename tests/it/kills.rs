//! Kills through the real binary: a decided kill is an intent in the state, re-executed until
//! the job's processes are verified gone (a tick that dies between the ledger commit and the
//! kill loses nothing); only processes whose identity is proven are signalled (a recycled pid
//! is left alone); a wrapper that died while its agent lives is judged at once; a daemon an
//! agent starts in a session of its own dies with its attempt. Real processes, real signals.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::night::{Night, wait_for_child};

/// One `command` agent running a shell snippet.
fn config(snippet: &str, timeout: &str, max_attempts: u32, extra: &str) -> String {
    format!(
        "version: 1
lanes: 1
base: main
agents:
  w: {{ kind: command, command: sh, args: [\"-c\", {snippet:?}], family: fam1, silence: 20m }}
  v: {{ kind: script, family: fam2 }}
defaults:
  worker: w
  verifier: v
  max_attempts: {max_attempts}
  timeouts: {{ worker: {timeout}, verifier: 5m, acceptance: 2m }}
budget:
  max_consecutive_failures: 50
{extra}"
    )
}

fn started(snippet: &str, timeout: &str, max_attempts: u32) -> (Night, Value) {
    let mut n = Night::with_config(&config(snippet, timeout, max_attempts, ""));
    n.init();
    let c = n.card("s1", "", "do it");
    n.add(&[&c]);
    assert!(n.tick().status.success());
    let reg = wait_for_child(&n, "s1@a1-worker");
    (n, reg)
}

fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some(
        s[s.rfind(')')? + 1..]
            .split_whitespace()
            .map(str::to_owned)
            .collect(),
    )
}

fn pid_alive(pid: u32) -> bool {
    stat_fields(pid).is_some_and(|f| f[0] != "Z" && f[0] != "X")
}

fn pid_of(v: &Value) -> u32 {
    u32::try_from(v.as_u64().unwrap()).unwrap()
}

/// Waits (real time) until `pid` is gone; false if it outlives `secs`.
fn gone_within(pid: u32, secs: u64) -> bool {
    let start = Instant::now();
    while pid_alive(pid) {
        if start.elapsed() > Duration::from_secs(secs) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}

fn kills(n: &Night) -> Vec<Value> {
    n.status()["kills"].as_array().cloned().unwrap_or_default()
}

/// The tick that decides the timeout dies right after its ledger commit (failpoint): the
/// intent is durable, the hung job still runs.
fn timeout_decided_then_tick_killed(max_attempts: u32) -> (Night, u32, u32) {
    let (mut n, reg) = started("echo hung; sleep 600", "10m", max_attempts);
    let (wrapper, agent) = (pid_of(&reg["pid"]), pid_of(&reg["child_pid"]));
    n.minute = 12;
    assert!(
        n.tick_killed_at("after-ledger-commit"),
        "the tick must die by SIGKILL"
    );
    assert!(
        n.events()
            .iter()
            .any(|e| e.contains("the worker ran past its 10m timeout")),
        "{:#?}",
        n.events()
    );
    assert!(
        pid_alive(wrapper) && pid_alive(agent),
        "the kill did not happen"
    );
    let k = kills(&n);
    assert_eq!(k.len(), 1, "the kill is pending: {k:#?}");
    assert_eq!(k[0]["stage"], "s1");
    assert_eq!(k[0]["attempt"], 1);
    assert_eq!(k[0]["reason"], "timeout");
    assert!(
        n.ok(&["status"]).contains("killing s1@a1-worker (timeout"),
        "{}",
        n.ok(&["status"])
    );
    (n, wrapper, agent)
}

#[test]
fn a_kill_the_dying_tick_decided_is_carried_out_by_the_next_tick_before_the_retry() {
    let (mut n, wrapper, agent) = timeout_decided_then_tick_killed(2);
    assert!(n.tick().status.success());
    assert!(!pid_alive(wrapper), "the hung wrapper is dead");
    assert!(!pid_alive(agent), "the hung agent is dead");
    assert!(kills(&n).is_empty(), "the verified kill is dropped");
    assert_eq!(
        n.count_events("s1: a1 worker: its processes are gone (kill verified)"),
        1,
        "{:#?}",
        n.events()
    );
    // The retry runs, and nothing of a1 beside it.
    let reg2 = wait_for_child(&n, "s1@a2-worker");
    assert!(!pid_alive(wrapper) && !pid_alive(agent));
    let a2 = pid_of(&reg2["child_pid"]);
    n.ok(&["cancel", "s1"]);
    assert!(gone_within(a2, 10), "cancel kills the running attempt");
    assert!(kills(&n).len() <= 1);
    n.tick();
    assert!(kills(&n).is_empty(), "{:#?}", kills(&n));
}

#[test]
fn cancel_reaches_a_job_whose_kill_was_decided_but_not_done() {
    // One attempt: the timeout escalates the stage, which is then finished ("already done"
    // before kills were intents), yet its hung job lives.
    let (n, wrapper, agent) = timeout_decided_then_tick_killed(1);
    assert_eq!(n.stage("s1")["status"], "escalated");
    let out = n.ns(&["cancel", "s1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!pid_alive(wrapper), "cancel killed the wrapper");
    assert!(!pid_alive(agent), "cancel killed the agent");
    assert!(kills(&n).is_empty(), "{:#?}", kills(&n));
    assert_eq!(
        n.stage("s1")["status"],
        "escalated",
        "its fate is unchanged"
    );
    let refused = n.ns(&["cancel", "s1"]);
    assert!(
        !refused.status.success(),
        "nothing left to reach: already escalated"
    );
}

#[test]
fn a_recycled_wrapper_pid_is_never_signalled() {
    let (n, reg) = started("echo working; sleep 600", "1h", 2);
    let (wrapper, agent) = (pid_of(&reg["pid"]), pid_of(&reg["child_pid"]));
    Command::new("kill")
        .args(["-KILL", &wrapper.to_string()])
        .status()
        .unwrap();
    assert!(gone_within(wrapper, 10));
    // An unrelated process now has the wrapper's pid (and leads its own group), as far as
    // the registration can tell.
    let mut stranger = {
        use std::os::unix::process::CommandExt;
        Command::new("sleep")
            .arg("600")
            .process_group(0)
            .spawn()
            .unwrap()
    };
    let mut forged = reg.clone();
    forged["pid"] = stranger.id().into();
    forged["pgid"] = stranger.id().into();
    std::fs::write(
        n.path("state/active-agents/s1@a1-worker.json"),
        serde_json::to_string(&forged).unwrap(),
    )
    .unwrap();
    let out = n.ns(&["cancel", "s1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(pid_alive(stranger.id()), "the stranger was not signalled");
    assert!(gone_within(agent, 10), "the attempt's own agent was killed");
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        said.contains("left alone (not proven to be the attempt's")
            && said.contains(&stranger.id().to_string()),
        "the stranger is reported: {said}"
    );
    let _ = stranger.kill();
    let _ = stranger.wait();
}

#[test]
fn a_wrapper_killed_while_its_agent_runs_is_judged_by_the_next_tick() {
    let (mut n, reg) = started("echo working; sleep 600", "1h", 2);
    let (wrapper, agent) = (pid_of(&reg["pid"]), pid_of(&reg["child_pid"]));
    Command::new("kill")
        .args(["-KILL", &wrapper.to_string()])
        .status()
        .unwrap();
    assert!(gone_within(wrapper, 10));
    assert!(pid_alive(agent), "the agent lives on, headless");
    assert_eq!(n.stage("s1")["job"], "vanished", "status sees it at once");
    // What a wrapper killed during `git add` leaves in its scratch folder.
    let scratch = n.path("state/.scratch/s1-a1-worker/index-x");
    std::fs::create_dir_all(&scratch).unwrap();
    std::fs::write(scratch.join("index.lock"), "").unwrap();
    assert!(n.tick().status.success());
    assert!(!pid_alive(agent), "the headless agent was killed");
    assert!(
        !n.path("state/.scratch/s1-a1-worker").exists(),
        "the verified kill removes the job's scratch folder"
    );
    assert_eq!(
        n.count_events("s1: a1 failed: the worker job died without an outcome; will retry"),
        1,
        "{:#?}",
        n.events()
    );
    let s = n.stage("s1");
    assert_eq!(s["attempts"][0]["result"], "failed", "{s:#}");
    // Tidy up the retry.
    n.tick();
    n.ok(&["cancel", "s1"]);
    n.tick();
}

#[test]
fn a_wrapper_killed_while_its_agent_runs_is_judged_by_the_next_heartbeat() {
    let (mut n, reg) = started("echo working; sleep 600", "1h", 2);
    let (wrapper, agent) = (pid_of(&reg["pid"]), pid_of(&reg["child_pid"]));
    Command::new("kill")
        .args(["-KILL", &wrapper.to_string()])
        .status()
        .unwrap();
    assert!(gone_within(wrapper, 10));
    n.minute = 1;
    let doc: Value = serde_json::from_str(&n.ok(&["heartbeat", "--json"])).unwrap();
    let a = &doc["attempts"][0];
    assert_eq!(a["verdict"], "crashed", "{doc:#}");
    assert!(!pid_alive(agent), "the headless agent was killed");
    n.tick();
    let s = n.stage("s1");
    assert_eq!(s["attempts"][0]["runs"][0]["outcome"], "crashed", "{s:#}");
    n.tick();
    n.ok(&["cancel", "s1"]);
    n.tick();
}

#[test]
fn a_setsid_daemon_dies_with_its_attempt_at_the_timeout() {
    let snippet = "setsid sleep 120 >/dev/null 2>&1 & echo $! > daemon.pid; sleep 600";
    let mut n = Night::with_config(&config(snippet, "2s", 1, ""));
    n.init();
    let c = n.card("s1", "", "do it");
    n.add(&[&c]);
    assert!(n.tick().status.success());
    wait_for_child(&n, "s1@a1-worker");
    let pidfile = n.workspace("s1").join("daemon.pid");
    let start = Instant::now();
    let daemon: u32 = loop {
        if let Some(p) = std::fs::read_to_string(&pidfile)
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .filter(|p| stat_fields(*p).is_some_and(|f| f[3] == p.to_string()))
        {
            break p;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the daemon never started its own session"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    while !n.path("state/handoffs/s1/a1/worker.json").exists() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the job never ended"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !pid_alive(daemon),
        "the daemon in a session of its own died with its attempt"
    );
    n.tick();
    let s = n.stage("s1");
    assert_eq!(s["attempts"][0]["runs"][0]["outcome"], "timeout", "{s:#}");
}
