//! The heartbeat (`nightshift heartbeat`): plain code, no model, cheap enough to run every
//! minute. For each registered attempt: is it alive (wrapper pid + start time, liveness lock),
//! did it make progress within its agent's silence window, is it past its deadline in awake
//! time (sleeps of the machine do not count)? Over its deadline or silent too long → its
//! processes are killed (identity proven, TERM, grace, KILL, verified gone) and a typed outcome
//! (`timeout`, `stalled`) is written for the next tick to judge; registered but gone with no
//! outcome (its wrapper dead, even while its agent lives) → `crashed`, and what is left killed.
//! Kill intents a tick recorded and could not verify are carried out again. Orphans are
//! reported, and reaped when their identity is proven. Writes the volatile
//! `state/heartbeat.json`. It never dispatches and never writes `state.yaml`:
//! after acting it only pokes the tick.

mod check;
mod progress;
mod reap;

use jiff::Timestamp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::awake::{By, SchedulerView, Sleep};
use crate::error::NsResult;
use crate::ids::Role;
use crate::paths::Paths;

pub const HEARTBEAT_VERSION: u32 = 1;

/// `state/heartbeat.json`, and what `heartbeat --json` prints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatDoc {
    pub version: u32,
    pub checked_at: Timestamp,
    pub attempts: Vec<AttemptCheck>,
    /// Live processes that belong to no running attempt.
    pub orphans: Vec<Orphan>,
    pub scheduler: SchedulerInfo,
    /// The sleep this run found (a gap in the awake record), if any.
    pub slept: Option<Sleep>,
}

/// The scheduler as the heartbeat saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SchedulerInfo {
    pub installed: bool,
    pub interval_secs: u64,
    pub last_tick: Option<Timestamp>,
    pub since_last_tick_secs: Option<i64>,
    pub stopped: bool,
}

impl From<SchedulerView> for SchedulerInfo {
    fn from(v: SchedulerView) -> Self {
        Self {
            installed: v.installed,
            interval_secs: v.interval_secs,
            last_tick: v.last_tick,
            since_last_tick_secs: v.since_last_tick_secs,
            stopped: v.stopped,
        }
    }
}

/// What the heartbeat made of one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Alive and within its limits, or finished.
    Ok,
    /// Past its deadline (awake time): killed.
    Timeout,
    /// No progress for longer than its silence window: killed.
    Stalled,
    /// Registered, its processes gone, no outcome.
    Crashed,
    /// Live processes or a registration that no running attempt owns.
    Orphan,
}

/// One registered attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AttemptCheck {
    pub stage: String,
    pub attempt: u32,
    pub role: Role,
    /// The agent (workers and verifiers).
    pub agent: Option<String>,
    /// The wrapper.
    pub pid: u32,
    pub pgid: i32,
    /// The agent or acceptance command's process group, once started.
    pub child_pgid: Option<i32>,
    /// Wrapper pid + start time match and its liveness lock is held.
    pub alive: bool,
    /// The last time its log, structured output or workspace changed (as far as the
    /// heartbeat has seen).
    pub last_progress: Option<Timestamp>,
    /// Awake seconds since then.
    pub silent_secs: Option<u64>,
    /// The silence window of its agent, if it has one.
    pub silence_window_secs: Option<u64>,
    /// Awake seconds left before its deadline (negative: past it).
    pub deadline_left_secs: Option<i64>,
    pub verdict: Verdict,
    /// What was done about it (killed, outcome written, reaped).
    pub action: Option<String>,
    /// The log, relative to the repo root.
    pub log: String,
    /// What progress looked like (sizes and times), to compare with the next run.
    pub progress_mark: String,
}

/// A live process (or group) that no running attempt owns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Orphan {
    pub pid: u32,
    pub pgid: i32,
    /// `stage/aN/role` when the process carries an attempt's environment.
    pub attempt: Option<String>,
    pub detail: String,
    /// Killed (its identity was proven).
    pub reaped: bool,
}

/// Seconds past the deadline the job's own wrapper gets to stop it before the heartbeat does.
pub const DEADLINE_GRACE_SECS: i64 = 30;

/// Runs one heartbeat over the repository.
///
/// # Errors
/// When the config or state is invalid, the clock override is malformed, or
/// `state/heartbeat.json` cannot be written.
pub fn run(paths: &Paths) -> NsResult<HeartbeatDoc> {
    let now = crate::now::now()?;
    let slept = crate::awake::record(By::Heartbeat, now).unwrap_or_else(|e| {
        eprintln!("nightshift: {e}");
        None
    });
    let sleeps = crate::awake::sleeps();
    // Registrations before state: a registration listed here was written after its state.
    let regs = check::registrations(paths);
    let config = crate::store::read_config(paths)?;
    let state = crate::store::read_state_file(paths)?;
    let prev = previous(paths);
    let cx = check::Cx {
        paths,
        config: &config,
        state: &state,
        sleeps: &sleeps,
        prev: &prev,
        now,
    };
    let attempts: Vec<AttemptCheck> = regs.iter().map(|r| check::one(&cx, r)).collect();
    let orphans = reap::scan(paths, &state, &attempts);
    // Kills a tick or `cancel` decided and could not verify: carried out again; the tick this
    // pokes drops the verified ones.
    let kills_done = crate::kill::pending(paths, &state, None);
    let acted = attempts
        .iter()
        .any(|a| a.verdict != Verdict::Ok && a.action.is_some())
        || orphans.iter().any(|o| o.reaped)
        || !kills_done.is_empty();
    let scheduler = crate::awake::scheduler_view(now);
    let last = scheduler
        .last_tick
        .map_or_else(|| "never".to_owned(), |t| t.to_string());
    let stopped: Vec<crate::notify::Happened> = scheduler
        .stopped
        .then(|| crate::notify::Happened {
            event: crate::notify::NotifyEvent::SchedulerStopped,
            stage: None,
            summary: format!("nightshift: the scheduler has not ticked since {last}"),
        })
        .into_iter()
        .collect();
    // Also sends what a burst held back, once its minute has passed.
    crate::notify::send(paths, config.notify.as_ref(), &stopped, Some(&last), now);
    let doc = HeartbeatDoc {
        version: HEARTBEAT_VERSION,
        checked_at: now,
        attempts,
        orphans,
        scheduler: scheduler.into(),
        slept,
    };
    crate::store::write_json(&heartbeat_file(paths), &doc)?;
    if acted {
        poke(paths);
    }
    Ok(doc)
}

fn heartbeat_file(paths: &Paths) -> std::path::PathBuf {
    paths.state_dir().join("heartbeat.json")
}

/// The last heartbeat's document (its progress marks), if readable.
#[must_use]
pub fn previous(paths: &Paths) -> Option<HeartbeatDoc> {
    let text = std::fs::read_to_string(heartbeat_file(paths)).ok()?;
    crate::schema::parse_json(&text, "state/heartbeat.json").ok()
}

/// Leaves a poke and starts a detached tick (unless chaining is off), so the outcome the
/// heartbeat wrote is judged now, not at the next scheduled tick.
fn poke(paths: &Paths) {
    let _ = std::fs::write(paths.poke_file(), b"");
    if !crate::tick::chaining() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("--repo")
        .arg(&paths.root)
        .arg("tick")
        .current_dir(&paths.root);
    if let Err(e) =
        crate::proc::spawn_detached(cmd, &paths.state_dir().join("logs/heartbeat-tick.log"))
    {
        eprintln!("nightshift: cannot start a tick: {e}");
    }
}
