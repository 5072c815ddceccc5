//! The detached job wrapper (`nightshift __job`): one process per worker, acceptance run or
//! verifier. It holds `state/active-agents/<job>.lock` for its whole life (and passes the
//! descriptor to the agent, so the lock means "this attempt still has processes"), registers
//! itself, runs its role with a deadline enforced from outside the agent, writes the outcome
//! under `state/handoffs/`, deregisters, and pokes the repo with a chained tick (which its
//! caller supplies: this module never runs a tick itself). It never writes `state.yaml` or
//! `budget.json`: only ticks do.

pub mod brief;
mod error;
mod guard;
mod roles;
mod run;

pub use error::JobError;

use std::path::{Path, PathBuf};
use std::time::Instant;

use jiff::Timestamp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::engine::observe::{OUTCOME_VERSION, Outcome, OutcomeResult, SetupError};
use crate::error::{NsError, NsResult};
use crate::ids::{JobKey, Role};
use crate::paths::Paths;
use crate::store;

pub const REGISTRATION_VERSION: u32 = 1;

/// `state/active-agents/<job>.json`: who is running an attempt, so ticks, `status` and the
/// watchdog can find and kill it. Volatile (not in the ledger).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Registration {
    pub version: u32,
    pub stage: crate::ids::StageId,
    pub attempt: u32,
    pub role: Role,
    /// A panel member's agent and run (`None` for every other job).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<crate::ids::Member>,
    /// The wrapper (leader of its own session and process group).
    pub pid: u32,
    pub pgid: i32,
    /// Start time of the wrapper (clock ticks since boot), so a recycled pid is not mistaken
    /// for it.
    pub start_time: Option<u64>,
    /// The agent or acceptance command, once started (its own process group).
    pub child_pid: Option<u32>,
    pub child_pgid: Option<i32>,
    /// Start time of the agent or acceptance command (clock ticks since boot).
    #[serde(default)]
    pub child_start_time: Option<u64>,
    pub command: Vec<String>,
    /// Log path relative to the repo root.
    pub log: String,
    pub started_at: Timestamp,
}

impl Registration {
    /// The job this registration is of.
    #[must_use]
    pub fn key(&self) -> JobKey {
        JobKey {
            stage: self.stage.clone(),
            attempt: self.attempt,
            role: self.role,
            member: self.member.clone(),
        }
    }

    /// Process groups to kill for this job.
    #[must_use]
    pub fn pgids(&self) -> Vec<i32> {
        let mut v = vec![self.pgid];
        v.extend(self.child_pgid);
        v
    }
}

/// The arguments of `nightshift __job`.
#[derive(Debug, Clone)]
pub struct JobArgs {
    pub repo: PathBuf,
    pub job: JobKey,
    pub timeout_secs: u64,
    pub start_point: Option<String>,
}

/// Runs one job to its end, then calls `poke` (the caller's chained tick). Returns the
/// process exit code.
///
/// # Errors
/// When the job cannot even register (its lock or registry cannot be written); every other
/// failure is recorded in the outcome instead.
pub fn run_job(args: &JobArgs, poke: impl FnOnce(&Paths)) -> NsResult<i32> {
    let paths = Paths::new(&args.repo);
    let job = &args.job;
    std::fs::create_dir_all(paths.agents_dir())
        .map_err(|e| NsError::failure("cannot create state/active-agents").cause(e.to_string()))?;
    // Daemons its agent starts in a session of their own are re-parented to this wrapper, so
    // they die with the attempt.
    crate::kill::become_subreaper();
    let alive = crate::lock::lock(&paths.alive_file(job)).map_err(|e| {
        NsError::failure(format!("cannot lock the registry of {job}")).cause(e.to_string())
    })?;
    // A sealed outcome: a duplicate wrapper, the job already ran. An unsealed one was forged
    // (e.g. by an earlier role's leftover process): this job runs and reports it.
    let forged = match crate::observe::read_sealed(&paths, &paths.outcome_file(job)) {
        Ok(Some(_)) => {
            // Its lock file is this wrapper's own re-creation: leave nothing behind.
            let _ = std::fs::remove_file(paths.alive_file(job));
            return Ok(0);
        }
        Ok(None) => None,
        Err(path) => Some(path),
    };
    let mut reg = registration(&paths, job)?;
    store::write_json(&paths.registry_file(job), &reg)?;
    let clock = Instant::now();
    let ctx = roles::RoleCtx {
        paths: &paths,
        args,
        alive: &alive,
        reg: &mut reg,
    };
    let mut result = roles::run_role(ctx);
    if let Some(path) = forged {
        note_escape(&mut result, path);
    }
    let outcome = Outcome {
        version: OUTCOME_VERSION,
        stage: job.stage.clone(),
        attempt: job.attempt,
        finished_at: crate::now::now().unwrap_or_else(|_| Timestamp::now()),
        wall_secs: clock.elapsed().as_secs(),
        result,
    };
    write_outcome(&paths, job, &outcome)?;
    let _ = std::fs::remove_file(paths.registry_file(job));
    let _ = std::fs::remove_file(paths.alive_file(job));
    drop(alive);
    poke(&paths);
    Ok(0)
}

/// Starts the detached `nightshift __job` wrapper that runs `plan` (stdin /dev/null, its own
/// session, output to the job's log). Returns the wrapper's pid.
///
/// The job's log is created first, before anything can fail: it is the record that a tick
/// began this start. A job with neither a log, a registration nor an outcome was never begun
/// ([`JobSeen::Unstarted`](crate::engine::observe::JobSeen::Unstarted)), and the next tick
/// starts it; one with a log that never registered failed to start, and counts as such.
///
/// # Errors
/// When the log cannot be created, the binary cannot be found or the process cannot be
/// started.
pub fn spawn(paths: &Paths, plan: &crate::engine::SpawnPlan) -> std::io::Result<u32> {
    let log = crate::proc::open_log(&paths.log_file(&plan.job))?;
    let exe = std::env::current_exe()?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("__job")
        .arg("--repo")
        .arg(&paths.root)
        .args([
            "--stage",
            plan.job.stage.as_str(),
            "--attempt",
            &plan.job.attempt.to_string(),
            "--role",
            plan.job.role.as_str(),
        ])
        .args(["--timeout-secs", &plan.timeout_secs.to_string()])
        .current_dir(&paths.root)
        .env_remove(crate::failpoint::FAILPOINT_ENV);
    if let Some(sp) = &plan.start_point {
        cmd.args(["--start-point", sp]);
    }
    if let Some(m) = &plan.job.member {
        cmd.args(["--member", &m.name, "--run", &m.run.to_string()]);
    }
    crate::proc::spawn_detached_to(cmd, log)
}

/// Adds `path` to the files the job's result reports as written outside its workspace.
fn note_escape(result: &mut OutcomeResult, path: String) {
    match result {
        OutcomeResult::Worker { escaped, .. }
        | OutcomeResult::Acceptance { escaped, .. }
        | OutcomeResult::Verifier { escaped, .. } => {
            escaped.insert(0, path);
        }
        OutcomeResult::Integration { .. } => {}
    }
}

/// Writes a job's outcome, redacted and sealed (the seal first, so a tick never sees an
/// outcome without its seal). The job wrapper writes its own; the watchdog writes the one a
/// job it killed, or that died, could not.
///
/// # Errors
/// When it cannot be serialised or written.
pub fn write_outcome(paths: &Paths, job: &JobKey, outcome: &Outcome) -> NsResult<()> {
    let path = paths.outcome_file(job);
    let mut text = serde_json::to_vec_pretty(outcome)
        .map_err(|e| NsError::bug(format!("cannot serialise {}: {e}", path.display())))?;
    text.push(b'\n');
    crate::seal::write_sealed(paths, &path, &text).map_err(|e| {
        NsError::failure(format!("cannot write {}", paths.rel(&path))).cause(e.to_string())
    })
}

fn registration(paths: &Paths, job: &JobKey) -> NsResult<Registration> {
    let pid = std::process::id();
    let pgid = rustix::process::getpgrp().as_raw_nonzero().get();
    Ok(Registration {
        version: REGISTRATION_VERSION,
        stage: job.stage.clone(),
        attempt: job.attempt,
        role: job.role,
        member: job.member.clone(),
        pid,
        pgid,
        start_time: crate::proc::start_time(pid),
        child_pid: None,
        child_pgid: None,
        child_start_time: None,
        command: Vec::new(),
        log: paths.rel(&paths.log_file(job)),
        started_at: crate::now::now()?,
    })
}

/// Reads a registration, if any (a missing or half-written one is `None`).
#[must_use]
pub fn read_registration(path: &Path) -> Option<Registration> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

/// An outcome result for a role whose job could not start its work at all. `agent` is the
/// agent the role would have run (so the run record names it, failed, never an `ok` run).
#[must_use]
pub fn setup_failure(role: Role, error: SetupError, agent: Option<String>) -> OutcomeResult {
    let run = crate::engine::observe::AgentRun {
        agent: agent.unwrap_or_default(),
        is_error: true,
        error_detail: Some(error.detail.clone()),
        ..Default::default()
    };
    match role {
        Role::Worker => OutcomeResult::Worker {
            run,
            envelope: None,
            envelope_error: None,
            protected_changed: Vec::new(),
            setup_error: Some(error),
            base: None,
            snapshot: None,
            escaped: Vec::new(),
            secret: None,
        },
        Role::Acceptance => OutcomeResult::Acceptance {
            deliverable: Vec::new(),
            commands: Vec::new(),
            setup_error: Some(error),
            snapshot: None,
            changed_files: Vec::new(),
            escaped: Vec::new(),
        },
        Role::Verifier => OutcomeResult::Verifier {
            verdict: None,
            verdict_error: Some(error.detail.clone()),
            run,
            setup_error: Some(error),
            wrote: Vec::new(),
            escaped: Vec::new(),
        },
    }
}

pub use run::ALLOWED_ENV;
