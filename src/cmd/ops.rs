//! `requeue`, `cancel` and `resume`: operator actions, applied under the tick lock through the
//! same persist path as a tick (one ledger commit each).

use std::path::Path;

use crate::engine::ops;
use crate::error::{NsError, NsResult};
use crate::ids::StageId;
use crate::{store, tick};

#[derive(Debug, clap::Args)]
pub struct StageArg {
    /// The stage id.
    pub stage: String,
}

#[derive(Debug, clap::Args)]
pub struct NoArgs {}

/// Runs an operator action under the tick lock. `kills`: a stage whose pending kills are
/// carried out again first (verified ones are then dropped by the action).
fn with_state<F>(repo: &Path, kills: Option<&StageId>, f: F) -> NsResult<i32>
where
    F: FnOnce(
        &mut crate::engine::state::State,
        &crate::engine::observe::Observations,
        jiff::Timestamp,
    ) -> Result<(Vec<crate::engine::Event>, Vec<crate::engine::Effect>), ops::OpError>,
{
    let super::Locked {
        paths,
        config,
        git,
        mut state,
        budget,
        lock: _guard,
    } = super::locked(repo)?;
    let mut seen = crate::observe::observe(&paths, &state);
    if let Some(stage) = kills {
        seen.kills_done = crate::kill::pending(&paths, &state, Some(stage));
    }
    let now = crate::now::now()?;
    let (events, effects) = f(&mut state, &seen, now).map_err(|e| {
        NsError::failure(e.to_string()).hint("`nightshift status` shows every stage and its status")
    })?;
    for e in &events {
        println!("{}", e.line());
    }
    store::persist(&paths, &git, state, budget, &events)?;
    tick::execute(&paths, &git, &config, &effects);
    Ok(0)
}

fn stage_id(s: &str) -> NsResult<StageId> {
    StageId::new(s).map_err(|e| NsError::failure(e.to_string()))
}

/// # Errors
/// When the stage does not exist or is not escalated, cancelled or done.
pub fn requeue(repo: &Path, a: &StageArg) -> NsResult<i32> {
    let id = stage_id(&a.stage)?;
    with_state(repo, None, |s, _, _| {
        ops::requeue(s, &id).map(|e| (e, Vec::new()))
    })
}

/// # Errors
/// When the stage does not exist or is already finished.
pub fn cancel(repo: &Path, a: &StageArg) -> NsResult<i32> {
    let id = stage_id(&a.stage)?;
    with_state(repo, Some(&id), |s, seen, now| {
        ops::cancel(s, seen, &id, now)
    })
}

/// # Errors
/// When the repo is not halted.
pub fn resume(repo: &Path, _a: &NoArgs) -> NsResult<i32> {
    with_state(repo, None, |s, _, _| {
        ops::resume(s).map(|e| (e, Vec::new()))
    })
}
