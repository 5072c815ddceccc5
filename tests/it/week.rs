//! A simulated week: everything at once, through the real binary. Sixty stages with
//! dependencies on three lanes; scripted agents that pass, revise, fail acceptance, hang,
//! crash, hit a usage limit or an auth error (chosen per attempt by a seeded RNG); ticks killed
//! by SIGKILL mid-run (their whole process group, at a random moment, or at a failpoint), job
//! groups killed, two ticks at once, and the clock jumping over sleeps of the machine. At the
//! end, from durable evidence only (`state/state.yaml`, the ledger branch's history, the
//! handoff folders, the attempt logs and the integration branch):
//!
//! * every stage is `done`, or escalated for a typed reason the plan (or an injected crash)
//!   explains: never a lock, a lost spawn or any other infrastructure;
//! * every attempt's failure is the one its play or an injected kill explains;
//! * no attempt dispatched twice, never more jobs than lanes, no attempt number skipped;
//! * no verified work lost: an attempt whose acceptance and verifier passed is the one `done`,
//!   and its deliverable (exactly that attempt's) is on the integration branch, once;
//! * `git fsck` clean; no lock file left anywhere (git's, or the liveness lock of a job that
//!   ended); no process of the night left alive (by working directory, command line or
//!   environment naming the night's temp dir).
//!
//! Seeds: `NIGHTSHIFT_WEEK_SEEDS` (comma-separated; default [`DEFAULT_SEEDS`]); stages per
//! seed: `NIGHTSHIFT_WEEK_STAGES` (default 60). A failure names the seed, the stage, the
//! attempt and the invariant, and prints the command that replays that seed alone. A seed
//! fixes the plan exactly and the sequence of injected faults; where they land against the
//! running jobs is the machine's timing. The clock moves only when no job holds it (a job
//! starting, or running and not a planned hang), so a slow machine never becomes a timeout.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::Write as _;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::night::{Night, stderr};

const DEFAULT_SEEDS: &[u64] = &[1, 2];
const LANES: usize = 3;
const MAX_ATTEMPTS: u32 = 5;
/// Simulated time the week may take, in minutes.
const WEEK_MINUTES: i64 = 7 * 24 * 60;
/// Same epoch as `Night` (its minute 0).
const BASE_TIME: i64 = 1_798_765_200;
const FAILPOINTS: [&str; 5] = [
    "after-budget-write",
    "after-state-write",
    "after-ledger-commit",
    "after-effects",
    "before-exit",
];

/// SplitMix64: small, seedable, the same everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// What one attempt's agents do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Play {
    Pass,
    Revise,
    FailAcceptance,
    HangWorker,
    HangVerifier,
    Crash,
    UsageLimit,
    Auth,
}

struct Plan {
    id: String,
    deps: Vec<String>,
    /// Attempt `n` plays `plays[n-1]`; the last one repeats.
    plays: Vec<Play>,
}

impl Plan {
    fn play(&self, attempt: u32) -> Play {
        let i = usize::try_from(attempt.max(1) - 1).unwrap_or(usize::MAX);
        *self.plays.get(i).unwrap_or(self.plays.last().unwrap())
    }
    fn index(&self, attempt: u32) -> usize {
        usize::try_from(attempt.max(1) - 1)
            .unwrap_or(usize::MAX)
            .min(self.plays.len() - 1)
    }
    /// The deliverable attempt `attempt` writes (the play's index names it).
    fn content(&self, attempt: u32, ok: bool) -> String {
        let word = if ok { "ok" } else { "bad" };
        format!("{} p{} {word}", self.id, self.index(attempt) + 1)
    }
}

fn plans(rng: &mut Rng, count: usize) -> Vec<Plan> {
    let ids: Vec<String> = (0..count).map(|i| format!("s{i:02}")).collect();
    let mut out = Vec::new();
    let failing = [
        Play::Revise,
        Play::FailAcceptance,
        Play::HangWorker,
        Play::HangVerifier,
        Play::Crash,
        Play::UsageLimit,
        Play::Revise,
        Play::FailAcceptance,
        Play::Crash,
    ];
    for (i, id) in ids.iter().enumerate() {
        let mut deps = Vec::new();
        for _ in 0..rng.below(3) {
            if i == 0 {
                break;
            }
            let lo = i.saturating_sub(8);
            let d = lo + usize::try_from(rng.below((i - lo) as u64)).unwrap();
            if !deps.contains(&ids[d]) {
                deps.push(ids[d].clone());
            }
        }
        let mut plays = Vec::new();
        let roll = rng.below(100);
        let failures = match roll {
            0..=44 => 0,
            45..=74 => 1,
            _ => 2,
        };
        for _ in 0..failures {
            plays.push(failing[usize::try_from(rng.below(failing.len() as u64)).unwrap()]);
        }
        let end = rng.below(100);
        plays.push(match end {
            0..=2 => Play::Auth,
            3..=6 => Play::FailAcceptance, // repeats: escalates after max_attempts
            _ => Play::Pass,
        });
        out.push(Plan {
            id: id.clone(),
            deps,
            plays,
        });
    }
    out
}

fn card_text(p: &Plan, resets_at: i64) -> String {
    let file = format!("out/{}.txt", p.id);
    let mut acceptance = format!("grep -q ok {file}");
    for d in &p.deps {
        let _ = write!(acceptance, " && grep -q ok out/{d}.txt");
    }
    let mut worker = String::new();
    let mut verifier = String::new();
    for (i, play) in p.plays.iter().enumerate() {
        let attempt = u32::try_from(i + 1).unwrap();
        let write = |ok: bool| {
            format!(
                "        - write: {{ path: {file}, content: \"{}\\n\" }}\n        - envelope: {{ status: done, summary: \"wrote {file}\" }}\n",
                p.content(attempt, ok)
            )
        };
        let (w, v) = match play {
            Play::Pass => (write(true), "verdict: { verdict: pass }".to_owned()),
            Play::Revise => (
                write(true),
                "verdict: { verdict: revise, findings: [\"say it again\"] }".to_owned(),
            ),
            Play::FailAcceptance => (write(false), "verdict: { verdict: pass }".to_owned()),
            // With a grandchild in its group: the timeout kill must take it too.
            Play::HangWorker => (
                "        - spawn_grandchild\n        - hang\n".to_owned(),
                "hang".to_owned(),
            ),
            Play::HangVerifier => (write(true), "hang".to_owned()),
            Play::Crash => (
                format!(
                    "        - write: {{ path: {file}, content: \"half\" }}\n        - exit: 3\n"
                ),
                "verdict: { verdict: pass }".to_owned(),
            ),
            Play::UsageLimit => (
                format!("        - usage_limit: {{ resets_at: {resets_at} }}\n"),
                "verdict: { verdict: pass }".to_owned(),
            ),
            Play::Auth => (
                "        - auth_failure\n".to_owned(),
                "verdict: { verdict: pass }".to_owned(),
            ),
        };
        let _ = write!(worker, "    - steps:\n{w}");
        let _ = write!(verifier, "    - steps:\n        - {v}\n");
    }
    let deps = if p.deps.is_empty() {
        String::new()
    } else {
        format!("depends_on: [{}]\n", p.deps.join(", "))
    };
    format!(
        "---\nid: {id}\ntitle: Stage {id}\n{deps}acceptance:\n  - {acceptance:?}\nscript:\n  worker:\n{worker}  verifier:\n{verifier}---\n# Objective\nWrite {file}.\n",
        id = p.id
    )
}

fn config() -> String {
    format!(
        "version: 1
lanes: {LANES}
base: main
integration: {{ branch: nightshift/integration, policy: fast-forward }}
agents:
  wclaude: {{ kind: script, family: claude }}
  vcodex: {{ kind: script, family: codex }}
defaults:
  worker: wclaude
  verifier: vcodex
  max_attempts: {MAX_ATTEMPTS}
  timeouts: {{ worker: 5m, verifier: 5m, acceptance: 2m }}
budget:
  max_consecutive_failures: 1000
"
    )
}

/// What the driver did to the night, for the explanations and the report.
#[derive(Default)]
struct Injected {
    /// (stage, attempt, role) whose job groups got SIGKILL.
    job_kills: BTreeSet<(String, u32, String)>,
    tick_kills: usize,
    failpoints: usize,
    double_ticks: usize,
    sleeps: usize,
    ticks: usize,
    /// Real time spent in ticks and heartbeats, and waiting for jobs.
    driving: Duration,
    waiting: Duration,
    /// Ticks or heartbeats that exited non-zero (not killed by us).
    command_failures: Vec<String>,
}

/// The night, driven as a scheduler, a flaky machine and a careless operator would.
struct Week {
    n: Night,
    seed: u64,
    plans: Vec<Plan>,
    rng: Rng,
    injected: Injected,
    log: Vec<String>,
    /// Plain ticks that failed in a row (a wedged repository).
    failing_ticks: usize,
}

fn terminal(status: &str) -> bool {
    matches!(status, "done" | "escalated" | "cancelled")
}

impl Week {
    fn plan(&self, id: &str) -> &Plan {
        self.plans.iter().find(|p| p.id == id).unwrap()
    }

    fn note(&mut self, line: String) {
        self.log.push(format!("[min {}] {line}", self.n.minute));
    }

    fn tick_command(&self) -> Command {
        let mut cmd = self.n.ns_command(&["tick"]);
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        cmd
    }

    fn record_failure(&mut self, what: &str, out: &std::process::Output) {
        if !out.status.success() {
            let line = format!(
                "[min {}] {what} exited {:?}: {}",
                self.n.minute,
                out.status.code(),
                stderr(out).trim()
            );
            self.injected.command_failures.push(line);
        }
    }

    fn plain_tick(&mut self) {
        self.injected.ticks += 1;
        let out = self.tick_command().output().unwrap();
        self.record_failure("tick", &out);
        if out.status.success() {
            self.failing_ticks = 0;
        } else {
            self.failing_ticks += 1;
        }
    }

    /// A tick whose whole process group gets SIGKILL after a random delay (what `timeout`,
    /// systemd and the OOM killer do), git children included.
    fn killed_tick(&mut self) {
        let delay = self.rng.below(400);
        let mut cmd = self.tick_command();
        cmd.process_group(0);
        let child = cmd.spawn().unwrap();
        std::thread::sleep(Duration::from_millis(delay));
        let pgid = child.id();
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pgid}")])
            .stderr(Stdio::null())
            .status();
        let out = child.wait_with_output().unwrap();
        if std::os::unix::process::ExitStatusExt::signal(&out.status) == Some(9) {
            self.injected.tick_kills += 1;
            self.note(format!("tick group killed after {delay} ms"));
        } else {
            self.record_failure("tick (killed late)", &out);
        }
    }

    fn failpoint_tick(&mut self) {
        let point = FAILPOINTS[usize::try_from(self.rng.below(5)).unwrap()];
        let mut cmd = self.tick_command();
        cmd.env("NIGHTSHIFT_FAILPOINT", point);
        let out = cmd.output().unwrap();
        if std::os::unix::process::ExitStatusExt::signal(&out.status) == Some(9) {
            self.injected.failpoints += 1;
            self.note(format!("tick died at failpoint {point}"));
        } else {
            // An idle tick passes no failpoint.
            self.record_failure("tick (failpoint)", &out);
        }
    }

    fn two_ticks(&mut self) {
        self.injected.double_ticks += 1;
        let a = self.tick_command().spawn().unwrap();
        let b = self.tick_command().spawn().unwrap();
        for c in [a, b] {
            let out = c.wait_with_output().unwrap();
            self.record_failure("tick (one of two at once)", &out);
        }
    }

    /// SIGKILL to both process groups of a random registered job.
    fn kill_a_job(&mut self) {
        let regs = registrations(&self.n.repo);
        if regs.is_empty() {
            return;
        }
        let r = &regs[usize::try_from(self.rng.below(regs.len() as u64)).unwrap()];
        let key = (
            r["stage"].as_str().unwrap_or("").to_owned(),
            u32::try_from(r["attempt"].as_u64().unwrap_or(0)).unwrap(),
            r["role"].as_str().unwrap_or("").to_owned(),
        );
        for g in ["pgid", "child_pgid"].iter().filter_map(|k| r[*k].as_i64()) {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{g}")])
                .stderr(Stdio::null())
                .status();
        }
        self.note(format!("killed job {}/a{}/{}", key.0, key.1, key.2));
        self.injected.job_kills.insert(key);
    }

    fn heartbeat(&mut self) {
        let out = self.n.ns(&["heartbeat"]);
        self.record_failure("heartbeat", &out);
    }

    /// What the night looks like now, from its files (no nightshift process).
    fn observe(&self) -> Seen {
        let state = disk_state(&self.n);
        let jobs = job_processes(&self.n.repo);
        let mut seen = Seen {
            all_terminal: true,
            ..Seen::default()
        };
        for s in state["stages"].as_array().into_iter().flatten() {
            let id = s["id"].as_str().unwrap_or("").to_owned();
            let status = &s["status"];
            let k = kind(status).to_owned();
            let attempt = u32::try_from(status["attempt"].as_u64().unwrap_or(0)).unwrap();
            let role = match k.as_str() {
                "working" => Some("worker"),
                "checking" => Some("acceptance"),
                "verifying" => Some("verifier"),
                _ => None,
            };
            if k == "paused"
                && let Some(until) = status["until"]
                    .as_str()
                    .and_then(|t| t.parse::<jiff::Timestamp>().ok())
            {
                let minute = (until.as_second() - BASE_TIME + 59) / 60;
                seen.paused_until = Some(seen.paused_until.map_or(minute, |m| m.min(minute)));
            }
            let job = role.map(|role| {
                let stem = format!("{id}@a{attempt}-{role}");
                let alive = jobs.contains(&(id.clone(), attempt, role.to_owned()));
                if self
                    .n
                    .path(&format!("state/active-agents/{stem}.json"))
                    .exists()
                {
                    if alive { Job::Running } else { Job::Gone }
                } else if self
                    .n
                    .path(&format!("state/handoffs/{id}/a{attempt}/{role}.json"))
                    .exists()
                {
                    Job::Finished
                } else if alive {
                    Job::Starting
                } else {
                    Job::Gone
                }
            });
            seen.all_terminal &= terminal(&k);
            seen.stages.push((id, k, attempt, job));
        }
        seen.all_terminal &= !seen.stages.is_empty();
        seen
    }

    /// The registrations, the poke and the live wrappers: what changes when a job starts or
    /// ends.
    fn jobs_fingerprint(&self) -> (Vec<String>, bool, BTreeSet<(String, u32, String)>) {
        let mut names: Vec<String> = std::fs::read_dir(self.n.path("state/active-agents"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        (
            names,
            self.n.path("state/.poke").exists(),
            job_processes(&self.n.repo),
        )
    }

    /// Whether a job keeps the clock still: it is starting or running and is not a planned
    /// hang (a slow machine must not turn into an unplanned timeout).
    fn holds_clock(&self, id: &str, status: &str, attempt: u32, job: Job) -> bool {
        let play = self.plan(id).play(attempt);
        let hang = matches!(
            (status, play),
            ("working", Play::HangWorker) | ("verifying", Play::HangVerifier)
        );
        match job {
            Job::Starting => true,
            Job::Running => !hang,
            Job::Finished | Job::Gone => false,
        }
    }

    /// Runs the week. Returns the violations found during the run (a stuck night).
    fn run(&mut self) -> Vec<String> {
        let started = Instant::now();
        // When each job first held the clock: one that holds it for long stops holding it.
        let mut holding_since: BTreeMap<String, Instant> = BTreeMap::new();
        loop {
            let seen = self.observe();
            if seen.all_terminal && registrations(&self.n.repo).is_empty() {
                return Vec::new();
            }
            let wedged = self.failing_ticks >= 15;
            if wedged
                || self.n.minute > WEEK_MINUTES
                || started.elapsed() > Duration::from_secs(3600)
            {
                let mut v: Vec<String> = seen
                    .stages
                    .iter()
                    .filter(|s| !terminal(&s.1))
                    .map(|(id, k, a, job)| {
                        format!(
                            "stuck: {id} is `{k}` at a{a} (job {job:?}) after {} simulated minutes",
                            self.n.minute
                        )
                    })
                    .collect();
                for r in registrations(&self.n.repo) {
                    v.push(format!(
                        "stuck: registration {}/a{}/{} still there",
                        r["stage"], r["attempt"], r["role"]
                    ));
                }
                if wedged {
                    v.push(format!(
                        "wedged: the last {} ticks failed; the last: {:?}",
                        self.failing_ticks,
                        self.injected.command_failures.last()
                    ));
                }
                return v;
            }

            // The scheduler (and the chaos around it).
            let t = Instant::now();
            match self.rng.below(100) {
                0..=5 => self.killed_tick(),
                6..=8 => self.failpoint_tick(),
                9..=13 => self.two_ticks(),
                14..=17 => {
                    self.kill_a_job();
                    self.plain_tick();
                }
                _ => self.plain_tick(),
            }
            self.injected.driving += t.elapsed();

            // The clock moves only when no job holds it; until then, wait for a job to
            // change (start, end) and tick again, as its poke would.
            let seen = self.observe();
            let holding: Vec<String> = seen
                .stages
                .iter()
                .filter_map(|(id, k, a, job)| {
                    let job = (*job)?;
                    self.holds_clock(id, k, *a, job)
                        .then(|| format!("{id}/{k}/a{a}/{job:?}"))
                })
                .collect();
            holding_since.retain(|k, _| holding.contains(k));
            let still: Vec<&String> = holding
                .iter()
                .filter(|k| {
                    let since = *holding_since
                        .entry((*k).clone())
                        .or_insert_with(Instant::now);
                    since.elapsed() < Duration::from_secs(90)
                })
                .collect();
            if !still.is_empty() {
                // Jobs only change their registrations, outcomes and processes: watch those
                // (cheaply), not the state.
                let before = self.jobs_fingerprint();
                let wait = Instant::now();
                while wait.elapsed() < Duration::from_secs(3) && self.jobs_fingerprint() == before {
                    std::thread::sleep(Duration::from_millis(100));
                }
                self.injected.waiting += wait.elapsed();
                continue;
            }
            let in_flight = seen.stages.iter().any(|s| s.3.is_some());
            let step = if self.rng.chance(3) {
                // The machine sleeps: a jump far past twice the scheduler interval.
                let hours = 1 + i64::try_from(self.rng.below(16)).unwrap();
                self.injected.sleeps += 1;
                self.note(format!("machine slept {hours} h"));
                hours * 60
            } else if let (false, Some(until)) = (in_flight, seen.paused_until) {
                // Nothing runs and work waits for a usage limit's reset: sleep until then.
                (until - self.n.minute).max(1)
            } else {
                1
            };
            self.n.minute += step;
            let t = Instant::now();
            self.heartbeat();
            self.injected.driving += t.elapsed();
        }
    }
}

/// A job as its files and processes show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Job {
    /// Its `__job` process lives, not yet registered.
    Starting,
    /// Registered, its `__job` process lives.
    Running,
    /// Its outcome is written.
    Finished,
    /// No process and no outcome (a lost spawn or a killed job: the tick judges it).
    Gone,
}

#[derive(Default)]
struct Seen {
    /// (stage, status kind, attempt, the job it waits on).
    stages: Vec<(String, String, u32, Option<Job>)>,
    /// The first minute a paused stage may go on.
    paused_until: Option<i64>,
    all_terminal: bool,
}

/// Live `nightshift __job` wrappers of this repository: (stage, attempt, role).
fn job_processes(repo: &Path) -> BTreeSet<(String, u32, String)> {
    let repo = repo.to_string_lossy().into_owned();
    let mut out = BTreeSet::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args: Vec<String> = raw
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if args.get(1).map(String::as_str) != Some("__job")
            || args.get(3) != Some(&repo)
            || zombie(pid)
        {
            continue;
        }
        let arg = |name: &str| {
            args.iter()
                .position(|a| a == name)
                .and_then(|i| args.get(i + 1))
                .cloned()
                .unwrap_or_default()
        };
        out.insert((
            arg("--stage"),
            arg("--attempt").parse().unwrap_or(0),
            arg("--role"),
        ));
    }
    out
}

fn zombie(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat
        .rfind(')')
        .and_then(|i| stat[i + 1..].split_whitespace().next());
    matches!(state, None | Some("Z" | "X"))
}

fn registrations(repo: &Path) -> Vec<Value> {
    let mut out = Vec::new();
    let dir = repo.join("state/active-agents");
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.path().extension().is_some_and(|x| x == "json")
            && let Ok(text) = std::fs::read_to_string(e.path())
            && let Ok(v) = serde_json::from_str::<Value>(&text)
        {
            out.push(v);
        }
    }
    out
}

fn yaml(text: &str) -> Option<Value> {
    serde_saphyr::from_str::<Value>(text).ok()
}

/// The whole state on disk: the hot file `state/state.yaml`, the stage packs and the stage
/// files under `state/stages/` (each `{order, stage}`), a stage's own file winning over its
/// pack entry and the hot file's record over both.
fn disk_state(n: &Night) -> Value {
    let Some(hot) = yaml(&n.read("state/state.yaml")) else {
        return Value::Null;
    };
    let mut packed = Vec::new();
    let mut own = Vec::new();
    for e in std::fs::read_dir(n.path("state/stages"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = e.file_name().to_string_lossy().into_owned();
        let Ok(text) = std::fs::read_to_string(e.path()) else {
            continue;
        };
        if name.starts_with("pack-") && name.ends_with(".jsonl") {
            packed.extend(pack_entries(&text));
        } else if name.ends_with(".yaml") {
            own.extend(yaml(&text));
        }
    }
    packed.extend(own);
    merged(hot, packed)
}

/// The `{order, stage}` records of a stage pack: one JSON value a line after its head.
fn pack_entries(text: &str) -> Vec<Value> {
    text.lines()
        .skip(1)
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The stages of the stage records in their order (of two with the same number, the later in
/// `files`), each replaced by the hot file's record when it holds one; only the records
/// numbered within the hot file's `stage_count` count.
fn merged(mut hot: Value, files: Vec<Value>) -> Value {
    let count = hot["stage_count"].as_u64().unwrap_or(0);
    let cold: std::collections::BTreeMap<u64, Value> = files
        .into_iter()
        .filter_map(|f| Some((f["order"].as_u64()?, f["stage"].clone())))
        .filter(|(o, _)| *o < count)
        .collect();
    let hot_stages = hot["stages"].as_array().cloned().unwrap_or_default();
    let mut stages: Vec<Value> = cold.into_values().collect();
    for h in hot_stages {
        match stages.iter_mut().find(|s| s["id"] == h["id"]) {
            Some(s) => *s = h,
            None => stages.push(h),
        }
    }
    hot["stages"] = Value::Array(stages);
    hot
}

/// The path in the ledger's tree of the file `name` of `state/stages/` (sharded).
fn ledger_stage_path(name: &str) -> String {
    use sha2::Digest;
    let shard = sha2::Sha256::digest(name.as_bytes())[0];
    format!("state/stages/{shard:02x}/{name}")
}

/// Every whole state the ledger branch ever held (its `state.yaml`, the packs `packs` (by
/// their first number) and the stage files of `ids`), oldest first (one `git cat-file
/// --batch`).
fn ledger_states(n: &Night, ids: &[String], packs: &[u64]) -> Vec<(String, Value)> {
    let commits = n.git(&["rev-list", "--reverse", "nightshift/ledger"]);
    let commits: Vec<&str> = commits.lines().collect();
    let mut child = Command::new("git")
        .args(["cat-file", "--batch"])
        .current_dir(&n.repo)
        .env("HOME", n.root.join("home"))
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = String::new();
    for c in &commits {
        let _ = writeln!(input, "{c}:state/state.yaml");
        for first in packs {
            let _ = writeln!(
                input,
                "{c}:{}",
                ledger_stage_path(&format!("pack-{first}.jsonl"))
            );
        }
        for id in ids {
            let _ = writeln!(input, "{c}:{}", ledger_stage_path(&format!("{id}.yaml")));
        }
    }
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().unwrap();
    let _ = writer.join();
    let mut rest: &[u8] = &out.stdout;
    let mut next = || -> Option<Option<String>> {
        let nl = rest.iter().position(|b| *b == b'\n')?;
        let header = String::from_utf8_lossy(&rest[..nl]).into_owned();
        rest = &rest[nl + 1..];
        if header.ends_with("missing") {
            return Some(None);
        }
        let size: usize = header
            .rsplit(' ')
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = String::from_utf8_lossy(&rest[..size.min(rest.len())]).into_owned();
        rest = &rest[(size + 1).min(rest.len())..];
        Some(Some(body))
    };
    let mut states = Vec::new();
    for c in commits {
        let Some(hot) = next() else { break };
        let mut files: Vec<Value> = packs
            .iter()
            .filter_map(|_| next().flatten())
            .flat_map(|b| pack_entries(&b))
            .collect();
        files.extend(
            ids.iter()
                .filter_map(|_| next().flatten())
                .filter_map(|b| yaml(&b)),
        );
        let Some(hot) = hot else { continue };
        // An unreadable state is kept as Null: the caller names the commit.
        states.push((
            c.to_owned(),
            yaml(&hot).map_or(Value::Null, |h| merged(h, files)),
        ));
    }
    states
}

fn kind(v: &Value) -> &str {
    v["kind"].as_str().unwrap_or("")
}

/// Whether a failed attempt's typed reason is what its play, or an injected kill, explains.
fn explained(plan: &Plan, attempt: u32, reason: &Value, killed: bool) -> bool {
    let role = reason["role"].as_str().unwrap_or("");
    let failure = kind(&reason["failure"]);
    let planned = match plan.play(attempt) {
        Play::Pass => false,
        Play::Revise => kind(reason) == "revise",
        Play::FailAcceptance => kind(reason) == "acceptance_failed",
        Play::HangWorker => kind(reason) == "timed_out" && role == "worker",
        Play::HangVerifier => kind(reason) == "timed_out" && role == "verifier",
        Play::Crash => kind(reason) == "agent" && role == "worker" && failure == "crashed",
        Play::UsageLimit => kind(reason) == "agent" && failure == "usage_limit",
        Play::Auth => kind(reason) == "agent" && failure == "auth",
    };
    let by_kill = killed
        && (kind(reason) == "crashed"
            || (kind(reason) == "agent" && matches!(failure, "killed" | "crashed")));
    planned || by_kill
}

/// Checks every invariant on the drained night; returns the violations.
fn verify(w: &Week) -> Vec<String> {
    let n = &w.n;
    let mut v = Vec::new();
    let state = disk_state(n);
    let stages = state["stages"].as_array().cloned().unwrap_or_default();
    if stages.len() != w.plans.len() {
        v.push(format!(
            "state.yaml holds {} stages, {} were added",
            stages.len(),
            w.plans.len()
        ));
    }
    if !state["halted"].is_null() {
        v.push(format!("the repo halted: {}", state["halted"]));
    }
    let by_id: BTreeMap<&str, &Value> = stages
        .iter()
        .map(|s| (s["id"].as_str().unwrap_or(""), s))
        .collect();
    let integration_log = n
        .git_maybe(&["log", "--format=%B%x00", "nightshift/integration"])
        .unwrap_or_default();
    let mut spawn_failed = 0;
    for plan in &w.plans {
        let id = plan.id.as_str();
        let Some(s) = by_id.get(id) else {
            v.push(format!("{id}: missing from state.yaml"));
            continue;
        };
        let status = &s["status"];
        let attempt = u32::try_from(s["attempt"].as_u64().unwrap_or(0)).unwrap();
        // The attempts: each number once, none skipped, each failure explained.
        let history = s["history"].as_array().cloned().unwrap_or_default();
        let numbers: Vec<u32> = history
            .iter()
            .map(|h| u32::try_from(h["attempt"].as_u64().unwrap_or(0)).unwrap())
            .collect();
        let expected: Vec<u32> = (1..=attempt).collect();
        if numbers != expected {
            v.push(format!(
                "{id}: attempt history {numbers:?}, expected each of 1..={attempt} once (lost or doubled attempt)"
            ));
        }
        for h in &history {
            let a = u32::try_from(h["attempt"].as_u64().unwrap_or(0)).unwrap();
            let result = &h["result"];
            if kind(result) != "failed" {
                continue;
            }
            let reason = &result["reason"];
            let killed = w
                .injected
                .job_kills
                .iter()
                .any(|(st, at, _)| st == id && *at == a);
            if kind(reason) == "spawn_failed" {
                spawn_failed += 1;
                continue;
            }
            if !explained(plan, a, reason, killed) {
                v.push(format!(
                    "{id}/a{a}: failed for {reason} but played {:?}{} (an attempt lost to something neither planned nor injected)",
                    plan.play(a),
                    if killed { " and its job was killed" } else { "" }
                ));
            }
        }
        // The verdicts on disk: an attempt that passed acceptance and verification is the
        // one that is done (no verified work lost).
        let mut verified = Vec::new();
        for a in 1..=attempt {
            let dir = format!("state/handoffs/{id}/a{a}");
            let verdict: Value = serde_json::from_str(&n.read(&format!("{dir}/verifier.json")))
                .unwrap_or(Value::Null);
            let acc: Value = serde_json::from_str(&n.read(&format!("{dir}/acceptance.json")))
                .unwrap_or(Value::Null);
            let acc_ok = acc["result"]["commands"]
                .as_array()
                .is_some_and(|c| !c.is_empty() && c.iter().all(|c| c["exit"] == 0))
                && acc["result"]["setup_error"].is_null();
            if verdict["result"]["verdict"]["verdict"] == "pass" && acc_ok {
                verified.push(a);
            }
        }
        let file = format!("out/{id}.txt");
        let integrated = n.git_maybe(&["show", &format!("nightshift/integration:{file}")]);
        let trailer = format!("Nightshift-Attempt: {id}/a");
        let landed = integration_log
            .split('\0')
            .filter(|m| m.contains(&trailer))
            .count();
        match kind(status) {
            "done" => {
                let a = u32::try_from(status["attempt"].as_u64().unwrap_or(0)).unwrap();
                if verified != [a] {
                    v.push(format!(
                        "{id}: done with a{a}, but attempts that passed acceptance and verification are {verified:?}"
                    ));
                }
                if plan.play(a) != Play::Pass {
                    v.push(format!(
                        "{id}: done with a{a}, which played {:?}",
                        plan.play(a)
                    ));
                }
                let want = plan.content(a, true);
                if integrated.as_deref().map(str::trim) != Some(want.as_str()) {
                    v.push(format!(
                        "{id}: done with a{a} but nightshift/integration:{file} is {integrated:?}, expected {want:?} (verified work lost)"
                    ));
                }
                if landed != 1 {
                    v.push(format!(
                        "{id}: {landed} commits of it on nightshift/integration, expected 1"
                    ));
                }
                for d in &plan.deps {
                    if by_id.get(d.as_str()).map(|s| kind(&s["status"])) != Some("done") {
                        v.push(format!("{id}: done although its dependency {d} is not"));
                    }
                }
            }
            "escalated" => {
                let reason = &status["reason"];
                if let Some(a) = verified.last() {
                    v.push(format!(
                        "{id}: escalated ({reason}) although a{a} passed acceptance and verification (verified work lost)"
                    ));
                }
                if integrated.is_some() || landed != 0 {
                    v.push(format!(
                        "{id}: escalated but its deliverable is on nightshift/integration"
                    ));
                }
                let ok = match kind(reason) {
                    "auth" => plan.play(attempt) == Play::Auth,
                    "dependency_failed" => {
                        let d = reason["dependency"].as_str().unwrap_or("");
                        plan.deps.iter().any(|x| x == d)
                            && by_id
                                .get(d)
                                .is_some_and(|s| kind(&s["status"]) == "escalated")
                    }
                    // Each failure was checked above; a spawn lost to a killed tick counts
                    // as an attempt, the rest must be the plan's or an injected kill's.
                    "max_attempts" => kind(&reason["last"]) != "spawn_failed",
                    _ => false,
                };
                if !ok {
                    v.push(format!(
                        "{id}: escalated for {reason} at a{attempt} (played {:?}): not a reason the plan or the injected faults explain",
                        plan.play(attempt)
                    ));
                }
            }
            other => v.push(format!("{id}: ended `{other}`, neither done nor escalated")),
        }
        // Each attempt's agents ran once: one init line per role log.
        for a in 1..=attempt {
            for role in ["worker", "verifier"] {
                let log = n.read(&format!("state/logs/{id}/a{a}-{role}.log"));
                let runs = log.matches("\"subtype\":\"init\"").count();
                if runs > 1 {
                    v.push(format!(
                        "{id}/a{a}: the {role} ran {runs} times (double dispatch)"
                    ));
                }
            }
        }
    }
    // A tick that dies at a failpoint has either started all its jobs or begun none (the
    // next tick starts those, as the same attempts). Only a kill landing inside one start, after
    // its log is created and before the wrapper leaves the tick's process group, leaves a job
    // that never started: one per killed tick at most.
    if spawn_failed > w.injected.tick_kills {
        v.push(format!(
            "{spawn_failed} attempts failed as `spawn_failed` but only {} tick groups were killed",
            w.injected.tick_kills
        ));
    }
    v.extend(ledger_invariants(n));
    // git fsck, including every workspace's view.
    let fsck = Command::new("git")
        .args(["fsck", "--no-dangling"])
        .current_dir(&n.repo)
        .env("HOME", n.root.join("home"))
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .unwrap();
    if !fsck.status.success() {
        v.push(format!("git fsck: {}", stderr(&fsck).trim()));
    }
    for lock in stale_locks(&n.root) {
        v.push(format!("stale lock file left: {}", lock.display()));
    }
    v
}

/// From the ledger's history: each dispatch of a (stage, role, attempt) happened once, never
/// more jobs in flight than lanes, attempt numbers never go back, terminal stays terminal.
fn ledger_invariants(n: &Night) -> Vec<String> {
    let mut v = Vec::new();
    let ids: Vec<String> = disk_state(n)["stages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["id"].as_str().map(str::to_owned))
        .collect();
    let packs: Vec<u64> = yaml(&n.read("state/state.yaml"))
        .and_then(|h| h["packs"].as_array().cloned())
        .into_iter()
        .flatten()
        .filter_map(|p| p.as_u64())
        .collect();
    let states = ledger_states(n, &ids, &packs);
    if states.is_empty() {
        v.push("the ledger branch holds no state.yaml".into());
    }
    let mut dispatches: BTreeMap<(String, String, u64), BTreeSet<String>> = BTreeMap::new();
    let mut last: BTreeMap<String, (u64, String)> = BTreeMap::new();
    for (commit, st) in &states {
        let short = &commit[..10.min(commit.len())];
        if st.is_null() {
            v.push(format!("ledger {short}: state/state.yaml does not parse"));
        }
        let mut running = 0;
        for s in st["stages"].as_array().into_iter().flatten() {
            let id = s["id"].as_str().unwrap_or("").to_owned();
            let status = &s["status"];
            let k = kind(status).to_owned();
            let attempt = s["attempt"].as_u64().unwrap_or(0);
            if matches!(k.as_str(), "working" | "checking" | "verifying") {
                running += 1;
                let since = status["since"].as_str().unwrap_or("").to_owned();
                dispatches
                    .entry((
                        id.clone(),
                        k.clone(),
                        status["attempt"].as_u64().unwrap_or(0),
                    ))
                    .or_default()
                    .insert(since);
            }
            if let Some((prev, prev_kind)) = last.get(&id) {
                if attempt < *prev {
                    v.push(format!(
                        "ledger {short}: {id} went back from a{prev} to a{attempt}"
                    ));
                }
                if terminal(prev_kind) && !terminal(&k) {
                    v.push(format!("ledger {short}: {id} left `{prev_kind}` for `{k}`"));
                }
            }
            last.insert(id, (attempt, k));
        }
        if running > LANES {
            v.push(format!(
                "ledger {short}: {running} jobs in flight on {LANES} lanes"
            ));
        }
    }
    // A job no tick began to start (its tick died after the commit) is started again by the
    // next tick, which journals it: one more `since` each. That it still ran once is checked
    // on its log.
    let events = n.events();
    for ((id, k, a), sinces) in &dispatches {
        let role = match k.as_str() {
            "working" => "worker",
            "checking" => "acceptance",
            _ => "verifier",
        };
        let again = format!("{id}: a{a} {role} job was never started");
        let restarts = events.iter().filter(|e| e.starts_with(&again)).count();
        if sinces.len() > 1 + restarts {
            v.push(format!(
                "{id}/a{a}: `{k}` dispatched {} times (at {sinces:?}) and started again {restarts} times: double dispatch",
                sinces.len()
            ));
        }
    }
    // Every job that left an outcome was dispatched through the ledger, and no handoff
    // folder belongs to an attempt the state never reached.
    let state = disk_state(n);
    for s in state["stages"].as_array().into_iter().flatten() {
        let id = s["id"].as_str().unwrap_or("");
        let attempt = s["attempt"].as_u64().unwrap_or(0);
        let dir = n.path(&format!("state/handoffs/{id}"));
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(a) = name.strip_prefix('a').and_then(|x| x.parse::<u64>().ok()) else {
                continue;
            };
            if a > attempt {
                v.push(format!(
                    "{id}: handoff folder a{a} but the stage is at a{attempt}"
                ));
            }
            for (role, k) in [
                ("worker", "working"),
                ("acceptance", "checking"),
                ("verifier", "verifying"),
            ] {
                let key = (id.to_owned(), k.to_owned(), a);
                if e.path().join(format!("{role}.json")).exists() && !dispatches.contains_key(&key)
                {
                    v.push(format!(
                        "{id}/a{a}: a {role} outcome, but the ledger never recorded its dispatch"
                    ));
                }
            }
        }
    }
    v
}

/// Lock files left anywhere under the night's directory (repository, workspaces, host state):
/// git's, and a job's liveness lock outliving its job. The tick lock and the host's own
/// `flock` files live for good and are skipped.
fn stale_locks(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let p = e.path();
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                stack.push(p);
                continue;
            }
            let name = e.file_name().to_string_lossy().into_owned();
            // flock(2) files nightshift keeps by design: the tick lock and the worktree
            // admin lock (no owner is no lock), and the host-level ones.
            let flock = p.ends_with("repo/state/.lock")
                || p.ends_with("repo/state/.worktrees.lock")
                || (p
                    .parent()
                    .is_some_and(|d| d.ends_with(".local/state/nightshift"))
                    && name.ends_with(".lock"));
            if name.ends_with(".lock") && !flock {
                out.push(p);
            }
        }
    }
    out
}

/// Processes (not zombies) whose working directory, command line or environment names the
/// night's directory.
fn live_processes(root: &Path) -> Vec<(u32, String)> {
    let needle = root.to_string_lossy().into_owned();
    let me = std::process::id();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        if zombie(pid) {
            continue;
        }
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let cwd = std::fs::read_link(format!("/proc/{pid}/cwd"))
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        let environ = String::from_utf8_lossy(&environ);
        if cmdline.contains(&needle) || cwd.contains(&needle) || environ.contains(&needle) {
            out.push((pid, format!("{} (cwd {cwd})", cmdline.trim())));
        }
    }
    out
}

impl Night {
    /// `git` that may fail: `None` then.
    fn git_maybe(&self, args: &[&str]) -> Option<String> {
        let out = Command::new("git")
            .args(args)
            .current_dir(&self.repo)
            .env("HOME", self.root.join("home"))
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .stderr(Stdio::null())
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// One seed's week; returns its violations (empty: all held) and a one-line summary.
fn week(seed: u64, count: usize) -> (Vec<String>, String) {
    let mut rng = Rng(seed);
    let plans = plans(&mut rng, count);
    let resets: Vec<i64> = plans
        .iter()
        .map(|_| BASE_TIME + 3600 * (1 + i64::try_from(rng.below(6)).unwrap()))
        .collect();
    let n = Night::with_config(&config());
    // A scheduler is installed (every five minutes, heartbeat every minute), so clock jumps
    // are sleeps of the machine.
    let sched = n.root.join("home/.config/nightshift");
    std::fs::create_dir_all(&sched).unwrap();
    std::fs::write(
        sched.join("scheduler.json"),
        r#"{"version":1,"kind":"cron","binary":"nightshift","nightshift_version":"0.1.0","interval_secs":300,"heartbeat_secs":60,"installed_at":"2027-01-01T00:00:00Z"}"#,
    )
    .unwrap();
    n.init();
    let mut cards = Vec::new();
    for (p, resets_at) in plans.iter().zip(resets) {
        let rel = format!("stage-cards/{}.md", p.id);
        n.write(&rel, &card_text(p, resets_at));
        cards.push(rel);
    }
    n.commit_all("cards");
    let refs: Vec<&str> = cards.iter().map(String::as_str).collect();
    n.add(&refs);
    let mut w = Week {
        n,
        seed,
        plans,
        // The faults draw from their own stream: the same seed injects the same sequence
        // (their timing against the jobs is the machine's).
        rng: Rng(seed ^ 0x5EED_FA17_0000_0000),
        injected: Injected::default(),
        log: Vec::new(),
        failing_ticks: 0,
    };
    let started = Instant::now();
    let mut violations = w.run();
    // What is left must die on its own: jobs end, detached git maintenance finishes.
    let wait = Instant::now();
    let mut left = live_processes(&w.n.root);
    while !left.is_empty() && wait.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(200));
        left = live_processes(&w.n.root);
    }
    if violations.is_empty() {
        violations.extend(verify(&w));
    }
    for (pid, what) in &left {
        violations.push(format!("process {pid} still alive: {what}"));
    }
    for line in w.injected.command_failures.iter().take(5) {
        violations.push(format!("command failed: {line}"));
    }
    for (pid, _) in &left {
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .stderr(Stdio::null())
            .status();
    }
    let i = &w.injected;
    let done = disk_state(&w.n)["stages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| kind(&s["status"]) == "done")
        .count();
    let summary = format!(
        "seed {seed}: {} stages ({done} done), {} ticks, {} tick groups killed, {} failpoints, {} double ticks, {} jobs killed, {} sleeps, {} simulated minutes, {:.0?} real ({:.0?} in ticks and heartbeats, {:.0?} waiting for jobs)",
        w.plans.len(),
        i.ticks,
        i.tick_kills,
        i.failpoints,
        i.double_ticks,
        i.job_kills.len(),
        i.sleeps,
        w.n.minute,
        started.elapsed(),
        i.driving,
        i.waiting
    );
    if !violations.is_empty() {
        let tail: Vec<&String> = w.log.iter().rev().take(15).collect();
        violations.push(format!("last injections (newest first): {tail:#?}"));
        violations.push(format!(
            "seed {}: KEEP_TEMP_DIR=1 keeps the night's directory for a look",
            w.seed
        ));
    }
    (violations, summary)
}

#[test]
fn a_simulated_week_loses_nothing_and_leaves_nothing_behind() {
    let seeds: Vec<u64> = std::env::var("NIGHTSHIFT_WEEK_SEEDS").map_or_else(
        |_| DEFAULT_SEEDS.to_vec(),
        |s| {
            s.split(',')
                .filter(|x| !x.trim().is_empty())
                .map(|x| {
                    x.trim()
                        .parse()
                        .expect("NIGHTSHIFT_WEEK_SEEDS: comma-separated u64")
                })
                .collect()
        },
    );
    let count: usize = std::env::var("NIGHTSHIFT_WEEK_STAGES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let mut failed = Vec::new();
    for seed in seeds {
        let (violations, summary) = week(seed, count);
        eprintln!("{summary}");
        if !violations.is_empty() {
            failed.push(format!(
                "{summary}\n  {}\n  replay: NIGHTSHIFT_WEEK_SEEDS={seed} NIGHTSHIFT_WEEK_STAGES={count} KEEP_TEMP_DIR=1 cargo test --test lib it::week:: -- --nocapture",
                violations.join("\n  ")
            ));
        }
    }
    assert!(
        failed.is_empty(),
        "the week failed:\n{}",
        failed.join("\n\n")
    );
}
