//! One tick: take the lock (busy → exit quietly), load and reconcile state, observe, call the
//! pure [`engine::step`], persist the new state and commit it to the ledger *before* executing
//! any effect, then execute the effects. Results of effects are never fed back into the same
//! step; a finished job pokes the repo to run the next tick at once (event chaining).

use std::process::Command;
use std::time::Duration;

use crate::config::Config;
use crate::engine::budget::Budget;
use crate::engine::effect::Event;
use crate::engine::observe::{OUTCOME_VERSION, Outcome, OutcomeResult};
use crate::engine::state::State;
use crate::engine::{self, Effect, Limits, SpawnPlan};
use crate::error::{NsError, NsResult};
use crate::git::Git;
use crate::ids::StageId;
use crate::paths::{Paths, stage_branch};
use crate::{failpoint, lock, store, worktree};

/// How long a usage limit pauses a family when the CLI did not say when it resets.
pub const DEFAULT_PAUSE_SECS: u64 = 3600;

/// Most steps one tick process takes while pokes keep arriving.
const MAX_ROUNDS: usize = 50;

/// What a tick did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TickReport {
    /// Another tick holds the lock.
    Busy,
    /// Nothing changed.
    Idle,
    /// This many state changes were committed.
    Advanced(usize),
}

/// The engine's limits, from the config.
#[must_use]
pub fn limits(c: &Config) -> Limits {
    Limits {
        lanes: c.lanes,
        base: c.base.clone(),
        integration_branch: c.integration_branch.clone(),
        policy: c.policy,
        max_wall_secs: c.max_wall_secs,
        max_consecutive_failures: c.max_consecutive_failures,
        max_attempts_per_stage: c.max_attempts_per_stage,
        families: c
            .agents
            .iter()
            .map(|(name, a)| (name.clone(), a.family.clone()))
            .collect(),
        default_pause_secs: DEFAULT_PAUSE_SECS,
        money: c.money,
        prices: c
            .agents
            .iter()
            .filter_map(|(name, a)| Some((name.clone(), *c.prices.get(a.model.as_deref()?)?)))
            .collect(),
        unmetered: c
            .agents
            .iter()
            .filter(|(_, a)| a.kind == crate::config::AgentKind::Command)
            .map(|(name, _)| name.clone())
            .collect(),
    }
}

/// Runs a tick.
///
/// # Errors
/// When the config or state is invalid, git fails, or the clock override is malformed.
pub fn run(paths: &Paths) -> NsResult<TickReport> {
    let mut changes = 0;
    let mut took_lock = false;
    if let Err(e) = crate::awake::record(crate::awake::By::Tick, crate::now::now()?) {
        eprintln!("nightshift: {e}");
    }
    for _ in 0..MAX_ROUNDS {
        let Some(guard) = lock::try_lock(&paths.lock_file())
            .map_err(|e| NsError::failure("cannot take the tick lock").cause(e.to_string()))?
        else {
            if took_lock {
                break; // a chained tick took over
            }
            return Ok(TickReport::Busy);
        };
        took_lock = true;
        let _ = std::fs::remove_file(paths.poke_file());
        changes += usize::from(once(paths)?);
        failpoint::hit("before-exit");
        drop(guard);
        if !paths.poke_file().exists() {
            break;
        }
    }
    Ok(if changes == 0 {
        TickReport::Idle
    } else {
        TickReport::Advanced(changes)
    })
}

/// One locked round: load, observe, step, persist, execute. Returns true if state changed.
fn once(paths: &Paths) -> NsResult<bool> {
    let config = Config::load(&paths.config())?;
    let git = LazyGit::new(paths);
    let (state, budget) = store::load_reconciled(paths, || git.get())?;
    let mut seen = crate::observe::observe(paths, &state);
    let host_caps = config.money.host_max_tokens.is_some() || config.money.host_max_usd.is_some();
    if host_caps {
        seen.host_others = crate::host::others(&paths.root);
    }
    let now = crate::now::now()?;
    seen.sleeps = crate::awake::sleeps();
    let slept = crate::awake::unrecorded(paths, now);
    let step = engine::step(&state, &budget, &limits(&config), &seen, now);
    if step.is_idle(&state, &budget) && slept.is_empty() {
        return Ok(false);
    }
    let mut events = step.events.clone();
    events.extend(
        slept
            .iter()
            .map(|s| Event::repo(crate::awake::event_text(s))),
    );
    let changed = step.state != state || step.budget != budget || !events.is_empty();
    if changed {
        if host_caps && step.budget != budget {
            crate::host::record(&paths.root, &step.budget)?;
        }
        let new = persist(paths, git.get()?, step.state, step.budget, &events)?;
        crate::awake::mark_recorded(paths, &slept);
        let told = crate::notify::changes(&state, &new);
        crate::notify::send(paths, config.notify.as_ref(), &told, None, now);
    }
    execute(paths, git.get()?, &config, &step.effects);
    failpoint::hit("after-effects");
    // An integration finishes inside this tick: observe its outcome in another round, as a
    // finished job's poke would.
    if step
        .effects
        .iter()
        .any(|e| matches!(e, Effect::Integrate { .. }))
        && chaining()
    {
        let _ = std::fs::write(paths.poke_file(), b"");
    }
    Ok(changed)
}

/// The repository's git, opened on first use.
struct LazyGit<'a> {
    paths: &'a Paths,
    git: std::cell::OnceCell<Git>,
}

impl<'a> LazyGit<'a> {
    fn new(paths: &'a Paths) -> Self {
        Self {
            paths,
            git: std::cell::OnceCell::new(),
        }
    }

    fn get(&self) -> NsResult<&Git> {
        if let Some(g) = self.git.get() {
            return Ok(g);
        }
        let g = open_git(self.paths)?;
        Ok(self.git.get_or_init(|| g))
    }
}

/// Opens the repository's git.
///
/// # Errors
/// When git is missing or the path is not a repository root.
pub fn open_git(paths: &Paths) -> NsResult<Git> {
    Git::open(&paths.root).map_err(|e| {
        NsError::failure(format!(
            "{} is not a usable git repository",
            paths.root.display()
        ))
        .cause(e.to_string())
    })
}

/// Persists a new state (seq + 1, journal = events) and commits it to the ledger. The one
/// path by which ticks and operator commands change state.
///
/// # Errors
/// When validation, a write, or the ledger commit fails.
pub fn persist(
    paths: &Paths,
    git: &Git,
    mut state: State,
    mut budget: Budget,
    events: &[Event],
) -> NsResult<State> {
    state.seq += 1;
    budget.seq = state.seq;
    state.journal = events.iter().map(Event::line).collect();
    store::save(paths, &state, &budget)?;
    store::commit(paths, git, &state, &budget, false)?;
    failpoint::hit("after-ledger-commit");
    if state.seq.is_multiple_of(pack_every()) {
        pack_ledger(paths, git);
    }
    Ok(state)
}

/// Executes effects. Failures are logged, not returned: their consequences are observed by
/// the next tick (a spawn that failed shows up as a job that never registered).
pub fn execute(paths: &Paths, git: &Git, config: &Config, effects: &[Effect]) {
    for effect in effects {
        match effect {
            Effect::Spawn(plan) => {
                if let Err(e) = spawn_job(paths, plan) {
                    eprintln!("nightshift: cannot start the {} job: {e}", plan.job);
                }
            }
            Effect::KillGroup { job, pgids } => {
                for pgid in pgids {
                    if !crate::proc::kill_group(*pgid, Duration::from_secs(3)) {
                        eprintln!("nightshift: process group {pgid} of {job} survived KILL");
                    }
                }
            }
            Effect::Integrate { stage, attempt } => integrate(paths, git, config, stage, *attempt),
        }
    }
}

fn spawn_job(paths: &Paths, plan: &SpawnPlan) -> std::io::Result<u32> {
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new(exe);
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
        .env_remove(failpoint::FAILPOINT_ENV);
    if let Some(sp) = &plan.start_point {
        cmd.args(["--start-point", sp]);
    }
    crate::proc::spawn_detached(cmd, &paths.log_file(&plan.job))
}

/// Commits the attempt's deliverable on the stage branch (authored by the worker), applies
/// the integration policy, and records the result for the next tick. Idempotent.
fn integrate(paths: &Paths, git: &Git, config: &Config, stage: &StageId, attempt: u32) {
    let (commit, error, detail) = match integrate_inner(paths, git, config, stage, attempt) {
        Ok((c, d)) => (Some(c), None, d),
        Err(e) => (None, Some(e.clone()), e),
    };
    let outcome = Outcome {
        version: OUTCOME_VERSION,
        stage: stage.clone(),
        attempt,
        finished_at: crate::now::now().unwrap_or_else(|_| jiff::Timestamp::now()),
        wall_secs: 0,
        result: OutcomeResult::Integration {
            commit,
            error,
            detail,
        },
    };
    if let Err(e) = store::write_json(&paths.integration_file(stage, attempt), &outcome) {
        eprintln!("nightshift: cannot record the integration of {stage} a{attempt}: {e}");
    }
}

fn integrate_inner(
    paths: &Paths,
    git: &Git,
    config: &Config,
    stage: &StageId,
    attempt: u32,
) -> Result<(String, String), String> {
    let state = store::read_state_file(paths).map_err(|e| e.to_string())?;
    let s = state
        .stage(stage)
        .ok_or_else(|| format!("stage `{stage}` is gone from state.yaml"))?;
    let worker = config.agents.get(&s.worker);
    let author = worktree::Identity {
        name: format!("{} (nightshift worker)", s.worker),
        email: format!(
            "{}@{}.nightshift.invalid",
            s.worker,
            worker.map_or("agent", |a| a.family.as_str())
        ),
    };
    let outcome_of = |role| {
        crate::observe::read_outcome(&paths.outcome_file(&crate::ids::JobKey {
            stage: stage.clone(),
            attempt,
            role,
        }))
    };
    let (summary, usage) = match outcome_of(crate::ids::Role::Worker).map(|o| o.result) {
        Some(OutcomeResult::Worker {
            envelope: Some(e),
            run,
            ..
        }) => (e.summary, run.usage.unwrap_or_default()),
        _ => (String::new(), Default::default()),
    };
    let trailers = vec![
        ("Nightshift-Stage".to_owned(), stage.to_string()),
        (
            "Nightshift-Attempt".to_owned(),
            format!("{stage}/a{attempt}"),
        ),
        ("Nightshift-Worker".to_owned(), s.worker.clone()),
        ("Nightshift-Verifier".to_owned(), s.verifier.clone()),
        (
            "Nightshift-Acceptance".to_owned(),
            format!(
                "passed ({} commands)",
                crate::job::regression_commands(&state, s).len()
            ),
        ),
        (
            "Nightshift-Tokens".to_owned(),
            format!(
                "input={} output={} cache_read={} cache_write={}",
                usage.input, usage.output, usage.cache_read, usage.cache_write
            ),
        ),
    ];
    let wt = paths.worktree(stage);
    let subject = format!("{}: {}", stage, s.title);
    let commit = worktree::commit_deliverable(git, &wt, &author, &subject, &summary, &trailers)
        .map_err(|e| e.to_string())?;
    let branch = stage_branch(stage);
    let policy = match config.policy {
        crate::config::Policy::FastForward => worktree::Policy::FastForward,
        crate::config::Policy::Merge => worktree::Policy::Merge,
        crate::config::Policy::None => worktree::Policy::None,
    };
    let how = worktree::integrate(
        git,
        &branch,
        &config.integration_branch,
        &config.base,
        policy,
    )
    .map_err(|e| e.to_string())?;
    let detail = match how {
        worktree::Integrated::FastForwarded { .. } => {
            format!("{branch} fast-forwarded into {}", config.integration_branch)
        }
        worktree::Integrated::Replayed { .. } => {
            format!("{branch} replayed onto {}", config.integration_branch)
        }
        worktree::Integrated::Merged { .. } => {
            format!("{branch} merged into {}", config.integration_branch)
        }
        worktree::Integrated::AlreadyIntegrated { .. } => {
            format!("{branch} already in {}", config.integration_branch)
        }
        worktree::Integrated::LeftAsBranch { .. } => format!("left on {branch}"),
    };
    Ok((commit, detail))
}

/// The chained tick a finished job runs: if another tick holds the lock, leave a poke for it.
pub fn chained(paths: &Paths) {
    if !chaining() {
        return;
    }
    let _ = std::fs::write(paths.poke_file(), b"");
    match run(paths) {
        Ok(_) => {}
        Err(e) => eprintln!("{e}"),
    }
}

/// Event chaining is on unless `NIGHTSHIFT_CHAIN=0` (tests that step ticks by hand turn it off).
#[must_use]
pub fn chaining() -> bool {
    std::env::var("NIGHTSHIFT_CHAIN").map_or(true, |v| v != "0")
}

/// Ledger commits between two packings of loose objects (`NIGHTSHIFT_PACK_EVERY` overrides).
fn pack_every() -> u64 {
    std::env::var("NIGHTSHIFT_PACK_EVERY")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(1000)
}

/// Starts a detached `git repack -d -q`: git plumbing never runs `gc --auto`, so without this
/// every ledger commit stays a handful of loose objects (10,000 commits left ~200 MiB). The
/// repack is incremental (only loose objects), outlives the tick, and never blocks it; git
/// keeps it safe beside later commits.
fn pack_ledger(paths: &Paths, git: &Git) {
    let mut cmd = Command::new(git.bin());
    cmd.args(["-c", "core.fsmonitor=false", "repack", "-d", "-q"])
        .current_dir(&paths.root)
        .env_clear()
        .env("LC_ALL", "C");
    for key in ["PATH", "HOME"] {
        if let Ok(v) = std::env::var(key) {
            cmd.env(key, v);
        }
    }
    if let Err(e) = crate::proc::spawn_detached(cmd, &paths.state_dir().join("logs/repack.log")) {
        eprintln!("nightshift: cannot start git repack: {e}");
    }
}
