//! The registered attempts, for `nightshift agents` and the attach cockpit: who runs, since
//! when, whether they live (pid + start time and the liveness lock), when they last made
//! progress (as the last heartbeat saw it), their deadline in awake time, and their log.
//! Reads only; never signals a process.

use jiff::Timestamp;
use schemars::JsonSchema;
use serde::Serialize;

use crate::engine::observe::Sleep;
use crate::engine::state::State;
use crate::ids::Role;
use crate::paths::Paths;

/// One registered attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct AgentView {
    pub stage: String,
    pub attempt: u32,
    pub role: Role,
    /// The agent (workers and verifiers).
    pub agent: Option<String>,
    pub pid: u32,
    pub pgid: i32,
    pub child_pid: Option<u32>,
    pub child_pgid: Option<i32>,
    /// Wrapper pid + start time match and its liveness lock is held.
    pub alive: bool,
    pub started_at: Timestamp,
    /// Awake seconds since it started.
    pub age_secs: u64,
    /// When the last heartbeat saw it make progress.
    pub last_progress: Option<Timestamp>,
    /// Awake seconds left before its deadline, while the stage waits on it.
    pub deadline_left_secs: Option<i64>,
    /// Its log, relative to the repo root.
    pub log: String,
}

/// Every registered attempt, in a stable order.
#[must_use]
pub fn agents(paths: &Paths, state: &State, sleeps: &[Sleep], now: Timestamp) -> Vec<AgentView> {
    let beat = crate::watchdog::previous(paths);
    let mut out = std::fs::read_dir(paths.agents_dir())
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .filter_map(|e| crate::job::read_registration(&e.path()))
        .map(|r| {
            let key = r.key();
            let stage = state.stage(&r.stage);
            let timing = stage
                .and_then(|s| s.waiting_jobs().into_iter().find(|(k, ..)| *k == key))
                .and_then(|(_, since, deadline)| {
                    let status = crate::engine::state::Status::Verifying {
                        attempt: r.attempt,
                        since,
                        deadline,
                    };
                    super::job_timing(&status, sleeps, now)
                });
            let slept = crate::engine::observe::slept_secs(sleeps, r.started_at, now);
            let age = now.as_second() - r.started_at.as_second() - slept;
            let last_progress = beat.as_ref().and_then(|b| {
                b.attempts
                    .iter()
                    .find(|a| {
                        a.stage == r.stage.as_str() && a.attempt == r.attempt && a.role == r.role
                    })
                    .and_then(|a| a.last_progress)
            });
            AgentView {
                stage: r.stage.to_string(),
                attempt: r.attempt,
                role: r.role,
                agent: stage.and_then(|s| match r.role {
                    Role::Worker => Some(s.worker.clone()),
                    Role::Verifier => Some(s.verifier.clone()),
                    Role::Acceptance => None,
                }),
                pid: r.pid,
                pgid: r.pgid,
                child_pid: r.child_pid,
                child_pgid: r.child_pgid,
                alive: crate::proc::alive(r.pid, r.start_time)
                    && crate::lock::is_held(&paths.alive_file(&key)).unwrap_or(false),
                started_at: r.started_at,
                age_secs: u64::try_from(age).unwrap_or(0),
                last_progress,
                deadline_left_secs: timing.map(|t| t.deadline_left_secs),
                log: r.log,
            }
        })
        .collect::<Vec<_>>();
    out.sort_by(|a, b| (&a.stage, a.attempt, a.role).cmp(&(&b.stage, b.attempt, b.role)));
    out
}
