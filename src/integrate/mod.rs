//! The `Integrate` effect: commits a verified attempt's deliverable (exactly the snapshot tree
//! the worker's sealed outcome names) on its stage branch
//! (authored by the worker, committed by nightshift, with trailers naming the stage, attempt,
//! agents and usage), brings the branch into the integration branch under the configured
//! policy ([`refs`]), and records the result as an outcome file for the next tick to observe.
//!
//! It never changes `state.yaml` or `budget.json` (ticks do, from the recorded outcome), and
//! never touches the user's checkout.

mod refs;

pub use refs::{IntegrateError, Integrated, integrate};

use crate::config::Config;
use crate::engine::observe::{OUTCOME_VERSION, Outcome, OutcomeResult};
use crate::git::Git;
use crate::ids::{JobKey, Role, StageId, stage_branch};
use crate::paths::Paths;
use crate::{store, worktree};

/// Commits the attempt's deliverable on the stage branch (authored by the worker), applies
/// the integration policy, and records the result for the next tick. Idempotent.
///
/// A failure on a git lock (a killed git's leftover, or a lock held for a moment) is no verdict
/// on the work: the stale locks are cleared (the caller holds the tick lock) and the
/// integration tried once more; if the lock is still there no outcome is recorded, so the next
/// tick asks for the integration again. Verified work is never escalated for a lock.
pub fn run(paths: &Paths, git: &Git, config: &Config, stage: &StageId, attempt: u32) {
    let mut result = integrate_inner(paths, git, config, stage, attempt);
    if let Err(e) = &result
        && crate::gitlocks::is_lock_failure(e)
    {
        let ws_paths = paths.clone().with_workspaces(config.workspaces.as_deref());
        if let Ok(removed) = crate::gitlocks::clear(&ws_paths, git, &config.integration_branch) {
            for l in &removed {
                eprintln!("nightshift: {}", l.removed_text());
            }
        }
        result = integrate_inner(paths, git, config, stage, attempt);
    }
    let (commit, error, detail) = match result {
        Ok((c, d)) => (Some(c), None, d),
        Err(e) if crate::gitlocks::is_lock_failure(&e) => {
            eprintln!(
                "nightshift: the integration of {stage} a{attempt} waits for a git lock: {e}"
            );
            return;
        }
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
    let path = paths.integration_file(stage, attempt);
    let written = serde_json::to_vec_pretty(&outcome)
        .map_err(std::io::Error::other)
        .and_then(|t| crate::seal::write_sealed(paths, &path, &t));
    if let Err(e) = written {
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
    let worker = crate::observe::read_sealed(
        paths,
        &paths.outcome_file(&JobKey {
            stage: stage.clone(),
            attempt,
            role: Role::Worker,
            member: None,
        }),
    )
    .map_err(|path| format!("refused `{path}`: not written by its own job"))?;
    let (summary, usage, base, tree) = match worker.map(|o| o.result) {
        Some(OutcomeResult::Worker {
            envelope: Some(e),
            run,
            base: Some(base),
            snapshot: Some(tree),
            ..
        }) => (e.summary, run.usage.unwrap_or_default(), base, tree),
        _ => {
            return Err(format!(
                "{stage} a{attempt}: the worker recorded no snapshot"
            ));
        }
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
            format!("passed ({} commands)", state.regression_commands(s).len()),
        ),
        ("Nightshift-Tree".to_owned(), tree.clone()),
        (
            "Nightshift-Tokens".to_owned(),
            format!(
                "input={} output={} cache_read={} cache_write={}",
                usage.input, usage.output, usage.cache_read, usage.cache_write
            ),
        ),
    ];
    let wt = paths
        .clone()
        .with_workspaces(config.workspaces.as_deref())
        .worktree(stage);
    let subject = format!("{}: {}", stage, s.title);
    let branch = stage_branch(stage);
    let deliverable = worktree::Deliverable {
        branch: &branch,
        base: &base,
        tree: &tree,
    };
    let commit = worktree::commit_deliverable(
        git,
        &wt,
        &deliverable,
        &author,
        (&subject, &summary),
        &trailers,
    )
    .map_err(|e| e.to_string())?;
    let how = integrate(
        git,
        &branch,
        &config.integration_branch,
        &config.base,
        config.policy,
    )
    .map_err(|e| e.to_string())?;
    let detail = match how {
        Integrated::FastForwarded { .. } => {
            format!("{branch} fast-forwarded into {}", config.integration_branch)
        }
        Integrated::Replayed { .. } => {
            format!("{branch} replayed onto {}", config.integration_branch)
        }
        Integrated::Merged { .. } => {
            format!("{branch} merged into {}", config.integration_branch)
        }
        Integrated::AlreadyIntegrated { .. } => {
            format!("{branch} already in {}", config.integration_branch)
        }
        Integrated::LeftAsBranch { .. } => format!("left on {branch}"),
    };
    Ok((commit, detail))
}
