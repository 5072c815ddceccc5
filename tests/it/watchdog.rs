//! The heartbeat through the real binary: deadlines in awake time, stalls, crashes, pid reuse,
//! orphans, sleeps of the machine, a stopped scheduler, and notifications. Real processes and
//! real signals; only the clock is moved by hand (`NIGHTSHIFT_NOW`).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::night::{Night, stdout, wait_for_child};

// Tests here move the clock by hand and run `heartbeat` as the scheduler would.

/// One `command` agent running a shell snippet, with a long deadline unless the test says.
fn config(snippet: &str, timeout: &str, extra: &str) -> String {
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
  max_attempts: 2
  timeouts: {{ worker: {timeout}, verifier: 5m, acceptance: 2m }}
budget:
  max_consecutive_failures: 50
{extra}"
    )
}

fn started(snippet: &str, timeout: &str, extra: &str) -> (Night, Value) {
    let mut n = Night::with_config(&config(snippet, timeout, extra));
    n.init();
    let c = n.card("s1", "", "do it");
    n.add(&[&c]);
    assert!(n.tick().status.success());
    let reg = wait_for_child(&n, "s1@a1-worker");
    (n, reg)
}

fn heartbeat(n: &Night) -> Value {
    serde_json::from_str(&n.ok(&["heartbeat", "--json"])).expect("heartbeat json")
}

fn check<'a>(doc: &'a Value, stem: &str) -> &'a Value {
    doc["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| {
            format!(
                "{}@a{}-{}",
                a["stage"].as_str().unwrap(),
                a["attempt"],
                a["role"].as_str().unwrap()
            ) == stem
        })
        .unwrap_or_else(|| panic!("{stem} not in {doc:#}"))
}

fn group_alive(pgid: i64) -> bool {
    Command::new("kill")
        .args(["-0", "--", &format!("-{pgid}")])
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
        && members(pgid).iter().any(|p| !zombie(*p))
}

fn members(pgid: i64) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
                let f: Vec<&str> = s[s.rfind(')').unwrap() + 1..].split_whitespace().collect();
                f.get(2).and_then(|g| g.parse::<i64>().ok()) == Some(pgid)
            })
        })
        .collect()
}

fn zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| {
        s[s.rfind(')').unwrap() + 1..].split_whitespace().next() == Some("Z")
    })
}

fn pid_alive(pid: u32) -> bool {
    std::fs::metadata(format!("/proc/{pid}")).is_ok() && !zombie(pid)
}

fn outcome(n: &Night, stem_role: &str) -> Value {
    serde_json::from_str(&n.read(&format!("state/handoffs/s1/a1/{stem_role}.json"))).unwrap()
}

/// Installs a scheduler description as `nightshift install` writes it.
fn install_scheduler(n: &Night) {
    let dir = n.root.join("home/.config/nightshift");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("scheduler.json"),
        r#"{"version":1,"kind":"cron","binary":"nightshift","nightshift_version":"0.1.0","interval_secs":300,"heartbeat_secs":60,"installed_at":"2027-01-01T00:00:00Z"}"#,
    )
    .unwrap();
}

// Lesson: killing only the pid leaves grandchildren running; a stopped wrapper past its
// deadline is killed like any other.
#[test]
fn heartbeat_kills_a_term_ignoring_agent_and_its_grandchild_past_the_deadline() {
    let (mut n, reg) = started("trap '' TERM; sleep 600 & sleep 600", "10m", "");
    let (wrapper, child) = (
        reg["pid"].as_i64().unwrap(),
        reg["child_pgid"].as_i64().unwrap(),
    );
    let start = Instant::now();
    while members(child).len() < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the agent never started its grandchild"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The wrapper is stopped: it cannot enforce its own deadline.
    Command::new("kill")
        .args(["-STOP", &wrapper.to_string()])
        .status()
        .unwrap();
    n.minute = 5;
    let early = heartbeat(&n);
    assert_eq!(check(&early, "s1@a1-worker")["verdict"], "ok", "{early:#}");
    assert!(
        check(&early, "s1@a1-worker")["deadline_left_secs"]
            .as_i64()
            .unwrap()
            > 0
    );
    n.minute = 12;
    let doc = heartbeat(&n);
    let a = check(&doc, "s1@a1-worker");
    assert_eq!(a["verdict"], "timeout", "{doc:#}");
    assert!(
        !group_alive(child),
        "the agent's group (with its grandchild) is empty"
    );
    assert!(!group_alive(wrapper), "the stopped wrapper is gone");
    let o = outcome(&n, "worker");
    assert_eq!(o["result"]["run"]["timed_out"], true, "{o:#}");
    assert!(
        n.path("state/.poke").exists(),
        "the heartbeat pokes the tick"
    );
    n.tick();
    let s = n.stage("s1");
    assert_eq!(s["attempts"][0]["runs"][0]["outcome"], "timeout", "{s:#}");
    assert_eq!(
        n.count_events("s1: a1 failed: the worker ran past its 10m timeout"),
        1
    );
}

#[test]
fn heartbeat_kills_a_silent_agent_as_stalled() {
    let (mut n, reg) = started("sleep 600", "3h", "");
    let child = reg["child_pgid"].as_i64().unwrap();
    n.minute = 1;
    let first = heartbeat(&n);
    assert_eq!(check(&first, "s1@a1-worker")["verdict"], "ok", "{first:#}");
    n.minute = 15;
    assert_eq!(check(&heartbeat(&n), "s1@a1-worker")["verdict"], "ok");
    n.minute = 22;
    let doc = heartbeat(&n);
    let a = check(&doc, "s1@a1-worker");
    assert_eq!(a["verdict"], "stalled", "{doc:#}");
    assert_eq!(a["silent_secs"], 21 * 60);
    assert!(!group_alive(child));
    let o = outcome(&n, "worker");
    assert_eq!(o["result"]["run"]["failure"]["kind"], "stalled", "{o:#}");
    n.tick();
    assert_eq!(
        n.count_events("s1: a1 failed: the worker agent failed: stalled: no progress for 21m; killed by the heartbeat"),
        1,
        "{:#?}",
        n.events()
    );
    assert_eq!(
        n.stage("s1")["attempts"][0]["runs"][0]["outcome"],
        "stalled"
    );
}

// Lesson: a pid alone is not an identity.
#[test]
fn a_crash_with_no_outcome_is_recorded_and_a_reused_pid_is_not_life() {
    let (mut n, reg) = started("echo working; sleep 600", "1h", "");
    // The log has the agent's line before the job dies (else there is nothing to keep).
    let start = Instant::now();
    while !n.read(reg["log"].as_str().unwrap()).contains("working") {
        assert!(start.elapsed() < Duration::from_secs(20), "no log line");
        std::thread::sleep(Duration::from_millis(25));
    }
    for g in [
        reg["pgid"].as_i64().unwrap(),
        reg["child_pgid"].as_i64().unwrap(),
    ] {
        Command::new("kill")
            .args(["-KILL", "--", &format!("-{g}")])
            .status()
            .unwrap();
    }
    std::thread::sleep(Duration::from_millis(200));
    // An unrelated live process now has the wrapper's pid, as far as the registration says.
    let mut stranger = Command::new("sleep").arg("600").spawn().unwrap();
    let mut forged = reg.clone();
    forged["pid"] = stranger.id().into();
    std::fs::write(
        n.path("state/active-agents/s1@a1-worker.json"),
        serde_json::to_string(&forged).unwrap(),
    )
    .unwrap();
    assert_eq!(n.stage("s1")["job"], "vanished", "a reused pid is not life");
    n.minute = 2;
    let doc = heartbeat(&n);
    let a = check(&doc, "s1@a1-worker");
    assert_eq!(a["verdict"], "crashed", "{doc:#}");
    assert_eq!(a["alive"], false);
    assert!(pid_alive(stranger.id()), "the stranger was not signalled");
    let o = outcome(&n, "worker");
    let detail = o["result"]["run"]["error_detail"].as_str().unwrap();
    assert!(detail.contains("working"), "last log lines kept: {detail}");
    assert_eq!(o["result"]["run"]["failure"]["kind"], "crashed");
    n.tick();
    assert_eq!(n.count_events("s1: a1 failed: the worker agent failed: ended abnormally: its processes are gone and it left no outcome"), 1, "{:#?}", n.events());
    let _ = stranger.kill();
    let _ = stranger.wait();
}

#[test]
fn orphans_are_reaped_when_proven_and_reported_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("escaped.pid");
    let snippet = format!(
        "setsid sleep 600 >/dev/null 2>&1 & p=$!; echo $p > {}; \
         while [ \"$(cut -d' ' -f5 /proc/$p/stat)\" != \"$p\" ]; do sleep 0.05; done; echo done",
        pidfile.display()
    );
    // The attempt ends at once: wait for its outcome, not for its registration. The daemon
    // reports its pid in a file outside the workspace, so this night runs without a kernel
    // ruleset (`confine: detect`).
    let mut n = Night::with_config(&config(&snippet, "1h", "confine: detect\n"));
    n.init();
    let c = n.card("s1", "", "do it");
    n.add(&[&c]);
    assert!(n.tick().status.success());
    let start = Instant::now();
    while !n.path("state/handoffs/s1/a1/worker.json").exists() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the job never ended"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let daemon: u32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // The job wrapper adopts daemons (it is their subreaper) and kills them as it ends.
    assert!(
        !pid_alive(daemon),
        "the daemon in a session of its own died with its attempt"
    );
    // A process of the ended attempt that escaped anyway (started outside the wrapper's
    // tree, carrying the attempt's tag): the heartbeat reaps it.
    let repo = n.repo.canonicalize().unwrap();
    let mut escaped_child = Command::new("sleep")
        .arg("600")
        .env_clear()
        .env("NIGHTSHIFT_REPO", &repo)
        .env("NIGHTSHIFT_STAGE", "s1")
        .env("NIGHTSHIFT_ATTEMPT", "1")
        .env("NIGHTSHIFT_ROLE", "worker")
        .spawn()
        .unwrap();
    let escaped = escaped_child.id();
    // A process working in the stage worktree that is nobody's attempt (maybe a person's shell).
    let mut shell = Command::new("sleep")
        .arg("600")
        .current_dir(n.workspace("s1"))
        .env_clear()
        .spawn()
        .unwrap();
    // A registration nobody owns, whose process is long gone.
    let stale = r#"{"version":1,"stage":"s1","attempt":9,"role":"verifier","pid":999999,"pgid":999999,"start_time":1,"child_pid":null,"child_pgid":null,"command":[],"log":"state/logs/s1/a9-verifier.log","started_at":"2027-01-01T01:00:00Z"}"#;
    std::fs::write(n.path("state/active-agents/s1@a9-verifier.json"), stale).unwrap();
    n.minute = 3;
    let doc = heartbeat(&n);
    let orphans = doc["orphans"].as_array().unwrap();
    let reaped = orphans
        .iter()
        .find(|o| o["pid"] == escaped)
        .unwrap_or_else(|| panic!("{doc:#}"));
    assert_eq!(reaped["reaped"], true);
    assert_eq!(reaped["attempt"], "s1/a1/worker");
    assert!(!pid_alive(escaped));
    let reported = orphans
        .iter()
        .find(|o| o["pid"] == shell.id())
        .unwrap_or_else(|| panic!("{doc:#}"));
    assert_eq!(reported["reaped"], false);
    assert!(pid_alive(shell.id()), "an unproven process is left alone");
    let a9 = check(&doc, "s1@a9-verifier");
    assert_eq!(a9["verdict"], "orphan");
    assert!(!n.path("state/active-agents/s1@a9-verifier.json").exists());
    let _ = shell.kill();
    let _ = shell.wait();
    let _ = escaped_child.wait();
}

// Lesson: laptops sleep; budgets and heartbeats measured in wall time go wrong across a sleep.
#[test]
fn a_sleep_of_the_machine_is_not_counted_against_the_deadline() {
    let mut n = Night::with_config(&config("sleep 600", "10m", ""));
    install_scheduler(&n);
    n.init();
    let c = n.card("s1", "", "do it");
    n.add(&[&c]);
    n.tick();
    wait_for_child(&n, "s1@a1-worker");
    n.minute = 3;
    heartbeat(&n);
    // The clock jumps three hours: far past 2 × the 5-minute interval.
    n.minute = 183;
    let doc = heartbeat(&n);
    assert!(doc["slept"].is_object(), "{doc:#}");
    let a = check(&doc, "s1@a1-worker");
    assert_eq!(a["verdict"], "ok", "{doc:#}");
    assert_eq!(a["deadline_left_secs"], 7 * 60, "three minutes were awake");
    assert_eq!(a["silent_secs"], 0);
    let st = n.status();
    assert_eq!(st["stages"][0]["deadline_left_secs"], 7 * 60, "{st:#}");
    assert_eq!(st["sleeps"].as_array().unwrap().len(), 1);
    n.tick();
    let st = n.status();
    assert_eq!(
        st["stages"][0]["status"], "working",
        "the tick did not kill it: {st:#}"
    );
    let slept = n
        .events()
        .into_iter()
        .filter(|e| e.starts_with("repo: slept from "))
        .collect::<Vec<_>>();
    assert_eq!(
        slept,
        vec!["repo: slept from 2027-01-01T01:03:00Z to 2027-01-01T04:03:00Z".to_owned()]
    );
    assert!(
        n.ok(&["status"]).contains("slept "),
        "{}",
        n.ok(&["status"])
    );
    // Recorded once: the next tick does not journal it again.
    n.minute = 184;
    n.tick();
    assert_eq!(n.count_events("slept from"), 1);
}

#[test]
fn a_stopped_scheduler_is_reported_by_status_and_heartbeat() {
    let mut n = Night::new();
    n.init();
    n.tick();
    assert!(
        n.status()["needs_you"].as_array().unwrap().is_empty(),
        "no scheduler, no nag"
    );
    install_scheduler(&n);
    n.minute = 1;
    n.tick();
    for m in [5, 10, 15, 20] {
        n.minute = m;
        heartbeat(&n);
    }
    let doc = heartbeat(&n);
    assert_eq!(doc["scheduler"]["stopped"], true, "{doc:#}");
    let st = n.status();
    let needs = st["needs_you"].as_array().unwrap();
    assert_eq!(needs[0]["kind"], "scheduler_stopped", "{st:#}");
    let human = n.ok(&["status"]);
    assert!(
        human.starts_with("nightshift:") && human.contains("NEEDS YOU\n  SCHEDULER STOPPED:"),
        "{human}"
    );
    let doctor: Value = serde_json::from_str(&stdout(&n.ns(&["doctor", "--json"]))).unwrap();
    let ticking = doctor["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "scheduler ticking")
        .cloned()
        .unwrap_or_else(|| panic!("{doctor:#}"));
    assert_eq!(ticking["ok"], false, "{ticking:#}");
    n.tick();
    assert!(!n.status()["scheduler"]["stopped"].as_bool().unwrap());
}

fn wait_for_lines(path: &std::path::Path, n: usize) -> Vec<String> {
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        if lines.len() >= n || start.elapsed() > Duration::from_secs(15) {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn notifications_arrive_for_each_event_kind_and_bursts_are_coalesced() {
    let extra = "notify: { command: [sh, notify.sh], events: [escalated, halted, auth, paused, drained, scheduler_stopped] }\n";
    let cfg = "version: 1\nlanes: 3\nagents:\n  wclaude: { kind: script, family: claude }\n  vcodex: { kind: script, family: codex }\ndefaults:\n  worker: wclaude\n  verifier: vcodex\n  max_attempts: 1\nbudget:\n  max_consecutive_failures: 2\n"
        .to_owned()
        + extra;
    let mut n = Night::with_config(&cfg);
    let record = n.root.join("calls.txt");
    n.write(
        "notify.sh",
        &format!(
            "read -r json\nprintf '%s|%s\\n' \"$1\" \"$json\" >> {}\n",
            record.display()
        ),
    );
    n.init();
    let crash = "script:\n  worker:\n    - steps:\n        - exit: 3\n";
    let auth = "script:\n  worker:\n    - steps:\n        - auth_failure\n";
    let limit =
        "script:\n  worker:\n    - steps:\n        - usage_limit: { resets_at: 1798779600 }\n";
    let cards = [
        n.card("c1", crash, "x"),
        n.card("c2", crash, "x"),
        n.card("au", auth, "x"),
    ];
    n.add(&[&cards[0], &cards[1], &cards[2]]);
    n.drain(10);
    let lines = wait_for_lines(&record, 4);
    let kinds: Vec<String> = lines
        .iter()
        .map(|l| {
            let json: Value = serde_json::from_str(l.split_once('|').unwrap().1).unwrap();
            json["event"].as_str().unwrap().to_owned()
        })
        .collect();
    for k in ["escalated", "auth", "halted", "drained"] {
        assert!(kinds.iter().any(|x| x == k), "{k} missing: {lines:#?}");
    }
    assert_eq!(
        kinds.iter().filter(|k| *k == "escalated").count(),
        1,
        "two escalations in one minute, one call: {lines:#?}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("nightshift: `c")),
        "summary first arg: {lines:#?}"
    );
    // The escalation the burst held back is sent a minute later, by the next heartbeat.
    n.minute += 2;
    heartbeat(&n);
    let lines = wait_for_lines(&record, kinds.len() + 1);
    let held = lines.last().unwrap();
    assert!(held.starts_with("nightshift: `c"), "{lines:#?}");
    assert!(held.contains("\"event\":\"escalated\""), "{lines:#?}");
    let kinds: Vec<String> = lines.iter().map(|l| l.to_owned()).collect();
    // paused, on a fresh night.
    n.ok(&["resume"]);
    let l = n.card("lim", limit, "x");
    n.add(&[&l]);
    n.minute += 2;
    n.tick();
    n.settle();
    n.tick();
    let lines = wait_for_lines(&record, kinds.len() + 1);
    assert!(
        lines.iter().any(|l| l.contains("\"event\":\"paused\"")),
        "{lines:#?}"
    );
    // scheduler_stopped, once per stop.
    install_scheduler(&n);
    for _ in 0..5 {
        n.minute += 5;
        heartbeat(&n);
    }
    let before = lines.len();
    let lines = wait_for_lines(&record, before + 1);
    std::thread::sleep(Duration::from_millis(300));
    let stopped = std::fs::read_to_string(&record)
        .unwrap()
        .lines()
        .filter(|l| l.contains("\"event\":\"scheduler_stopped\""))
        .count();
    assert_eq!(stopped, 1, "{lines:#?}");
}
