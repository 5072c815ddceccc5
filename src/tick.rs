//! One tick: take the lock (busy → exit quietly), load and reconcile state, observe, call the
//! pure [`engine::step`], persist the new state and commit it to the ledger *before* executing
//! any effect, then execute the effects. Results of effects are never fed back into the same
//! step; a finished job pokes the repo to run the next tick at once (event chaining).

use crate::config::Config;
use crate::engine::state::Status;
use crate::engine::{self, Effect, Event};
use crate::error::{NsError, NsResult};
use crate::git::Git;
use crate::paths::Paths;
use crate::{failpoint, lock, store};

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
    // An idle tick only looks: nothing the last idle step depended on has changed.
    if crate::idle::looks(paths, crate::now::now()?) {
        return Ok(false);
    }
    // This round reads the whole state and will likely write it: the validators its writes
    // check against are built while it reads.
    crate::schema::prebuild(|| {
        use crate::schema::compiles;
        let _ = [
            compiles::<crate::engine::state::State>(),
            compiles::<crate::engine::budget::Budget>(),
            compiles::<crate::job::Registration>(),
        ];
    });
    let before = crate::idle::before(paths);
    let config = crate::store::read_config(paths)?;
    crate::confine::check_dispatch(paths, &config)?;
    crate::redact::install(&config);
    let git = LazyGit::new(paths);
    // Under the tick lock a lock file on a ref only nightshift writes is a killed git's
    // leftover: clear it before anything writes the ledger.
    let cleared = clear_stale_locks(paths, &git, &config);
    let (state, budget) = store::load_reconciled(paths, || git.get())?;
    // Kills decided earlier are durable: carry them out again before deciding anything.
    let kills_done = crate::kill::pending(paths, &state, None);
    let mut seen = crate::observe::observe(paths, &state);
    seen.kills_done = kills_done;
    let host_caps = config.money.host_max_tokens.is_some() || config.money.host_max_usd.is_some();
    if host_caps {
        seen.host_others = crate::host::others(&paths.root);
    }
    let now = crate::now::now()?;
    seen.sleeps = crate::awake::sleeps();
    let slept = crate::awake::unrecorded(paths, now);
    let step = engine::step(&state, &budget, &config.limits(), &seen, now);
    if step.is_idle(&state, &budget) && slept.is_empty() && cleared.is_empty() {
        // Pending kills are re-executed by every tick until verified: never skip them.
        if state.kills.is_empty() {
            crate::idle::record(paths, &before, &state, &seen, now, host_caps);
        }
        return Ok(false);
    }
    let mut events = step.events.clone();
    events.extend(cleared.iter().map(|l| Event::repo(l.removed_text())));
    events.extend(
        slept
            .iter()
            .map(|s| Event::repo(crate::awake::event_text(s))),
    );
    let changed = step.state != state || step.budget != budget || !events.is_empty();
    // A stage sent to `retry` in this step is dispatched by the next one: run it at once
    // rather than waiting for the scheduler (an idle next round ends the chain).
    let retry_waits = step
        .state
        .stages
        .iter()
        .any(|s| matches!(s.status, Status::Retry { .. }));
    // Stages done or cancelled in this step: their workspaces go once the effects ran (the
    // branch stays). An escalated stage keeps its workspace for the person it waits for.
    let ended: Vec<crate::ids::StageId> = step
        .state
        .stages
        .iter()
        .enumerate()
        .filter(|(_, s)| matches!(s.status, Status::Done { .. } | Status::Cancelled { .. }))
        .filter(|(i, s)| {
            state
                .same_stage(*i, &s.id)
                .is_none_or(|o| o.status != s.status)
        })
        .map(|(_, s)| s.id.clone())
        .collect();
    if changed {
        if host_caps && step.budget != budget {
            crate::host::record(&paths.root, &step.budget)?;
        }
        let new = store::persist(paths, git.get()?, step.state, step.budget, &events)?;
        crate::awake::mark_recorded(paths, &slept);
        let told = crate::notify::changes(&state, &new);
        crate::notify::send(paths, config.notify.as_ref(), &told, None, now);
    }
    execute(paths, git.get()?, &config, &step.effects);
    failpoint::hit("after-effects");
    remove_workspaces(paths, git.get()?, &config, &ended);
    // An integration finishes inside this tick: observe its outcome in another round, as a
    // finished job's poke would; likewise dispatch a retry.
    let integrating = step
        .effects
        .iter()
        .any(|e| matches!(e, Effect::Integrate { .. }));
    if (integrating || retry_waits) && chaining() {
        let _ = std::fs::write(paths.poke_file(), b"");
    }
    Ok(changed)
}

/// Removes the workspaces of stages that ended done or cancelled; their branches stay. A failure is only reported: `nightshift gc` removes what is left.
fn remove_workspaces(paths: &Paths, git: &Git, config: &Config, ended: &[crate::ids::StageId]) {
    let paths = paths.clone().with_workspaces(config.workspaces.as_deref());
    for id in ended {
        if let Err(e) = crate::worktree::remove(git, &paths, id) {
            eprintln!("nightshift: cannot remove the workspace of {id}: {e}");
        }
    }
}

/// Removes the stale git locks ([`crate::gitlocks`]) and says so on stderr; returns them so
/// the round records them in the ledger. A failure to look is only reported.
fn clear_stale_locks(
    paths: &Paths,
    git: &LazyGit<'_>,
    config: &Config,
) -> Vec<crate::gitlocks::StaleLock> {
    if !crate::gitlocks::any_candidate(paths, &config.integration_branch) {
        return Vec::new();
    }
    let Ok(git) = git.get() else {
        return Vec::new();
    };
    let paths = paths.clone().with_workspaces(config.workspaces.as_deref());
    match crate::gitlocks::clear(&paths, git, &config.integration_branch) {
        Ok(removed) => {
            for l in &removed {
                eprintln!("nightshift: {}", l.removed_text());
            }
            removed
        }
        Err(e) => {
            eprintln!("nightshift: cannot look for stale git locks: {e}");
            Vec::new()
        }
    }
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
        let g = store::open_git(self.paths)?;
        Ok(self.git.get_or_init(|| g))
    }
}

/// Executes effects. Failures are logged, not returned: their consequences are observed by
/// the next tick (a spawn that failed shows up as a job that never registered; one this tick
/// never began, because it stopped first, as a job without a log, which the next tick starts).
pub fn execute(paths: &Paths, git: &Git, config: &Config, effects: &[Effect]) {
    for effect in effects {
        match effect {
            Effect::Spawn(plan) => {
                if let Err(e) = crate::job::spawn(paths, plan) {
                    let line = format!("nightshift: cannot start the {} job: {e}", plan.job);
                    eprintln!("{line}");
                    // The job's own log says why it never ran (`nightshift logs`).
                    if let Ok(mut log) = crate::proc::open_log(&paths.log_file(&plan.job)) {
                        use std::io::Write as _;
                        let _ = writeln!(log, "{line}");
                    }
                }
            }
            Effect::Kill { job } => {
                let report = crate::kill::kill_job(paths, job, crate::kill::GRACE);
                if !report.killed.is_empty() || !report.unproven.is_empty() || !report.verified() {
                    eprintln!("nightshift: {}", report.describe(job));
                }
                // Verified: another round drops its intent (and may run the next attempt).
                if report.verified() && chaining() {
                    let _ = std::fs::write(paths.poke_file(), b"");
                }
            }
            Effect::Integrate { stage, attempt } => {
                crate::integrate::run(paths, git, config, stage, *attempt);
            }
        }
    }
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
