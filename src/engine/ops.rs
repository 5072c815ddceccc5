//! Operator actions as pure functions over the state: add a stage, requeue, cancel, resume.
//! Commands run them under the tick lock and persist the result through the same writer path
//! as a tick, so nobody edits `state.yaml` by hand. Each returns the events to journal.

use jiff::Timestamp;

use crate::engine::effect::{Effect, Event};
use crate::engine::observe::Observations;
use crate::engine::state::{
    AttemptRecord, AttemptResult, KillIntent, KillReason, Stage, State, Status,
};
use crate::ids::StageId;

/// Why an operator action was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpError {
    #[error("no stage `{0}`")]
    NoSuchStage(StageId),
    #[error("stage `{0}` already exists")]
    Duplicate(StageId),
    #[error("stage `{stage}` depends on `{dependency}`, which is not a stage")]
    UnknownDependency { stage: StageId, dependency: StageId },
    #[error("stage `{stage}` would close a dependency cycle: {cycle}")]
    Cycle { stage: StageId, cycle: String },
    #[error("stage `{0}` is {1}; only escalated, cancelled or done stages can be requeued")]
    NotRequeueable(StageId, &'static str),
    #[error("stage `{0}` is already {1}")]
    AlreadyTerminal(StageId, &'static str),
    #[error("the repo is not halted")]
    NotHalted,
    #[error(
        "{adding} more stage(s) would make {total}, over the limit of {limit} stages a repository holds"
    )]
    TooManyStages {
        adding: usize,
        total: usize,
        limit: usize,
    },
}

/// Refuses a batch that would take the repository over `limit` stages: the limit is enforced
/// here, where input enters, so a tick never meets a state larger than the readers expect.
///
/// # Errors
/// [`OpError::TooManyStages`].
pub fn check_room(have: usize, adding: usize, limit: usize) -> Result<(), OpError> {
    let total = have.saturating_add(adding);
    if total > limit {
        return Err(OpError::TooManyStages {
            adding,
            total,
            limit,
        });
    }
    Ok(())
}

/// Adds a new stage, refusing duplicates, unknown dependencies and cycles.
///
/// # Errors
/// [`OpError::Duplicate`], [`OpError::UnknownDependency`] or [`OpError::Cycle`].
pub fn add_stage(state: &mut State, stage: Stage) -> Result<Vec<Event>, OpError> {
    let event = admit(&|id| state.stage(id).is_some(), &stage)?;
    state.stages.push(stage);
    Ok(vec![event])
}

/// Whether `stage` may join a queue in which `exists` tells which ids are taken, and the event
/// that records it: refused when its id is taken, a dependency is not, or it depends on itself.
///
/// # Errors
/// [`OpError::Duplicate`], [`OpError::UnknownDependency`] or [`OpError::Cycle`].
pub fn admit(exists: &dyn Fn(&StageId) -> bool, stage: &Stage) -> Result<Event, OpError> {
    if exists(&stage.id) {
        return Err(OpError::Duplicate(stage.id.clone()));
    }
    for d in &stage.depends_on {
        if d == &stage.id {
            return Err(OpError::Cycle {
                stage: stage.id.clone(),
                cycle: format!("{d} -> {d}"),
            });
        }
        if !exists(d) {
            return Err(OpError::UnknownDependency {
                stage: stage.id.clone(),
                dependency: d.clone(),
            });
        }
    }
    // Dependencies can only name existing stages, so a new stage cannot close a cycle among
    // them; the check above (self-reference) is the only cycle a single add can create.
    Ok(Event::stage(
        &stage.id,
        format!(
            "added ({}, card {})",
            stage.title,
            short_hash(&stage.card_hash)
        ),
    ))
}

fn short_hash(h: &str) -> &str {
    let hex = h.strip_prefix("sha256:").unwrap_or(h);
    hex.get(..12).unwrap_or(hex)
}

/// Puts a finished, escalated or cancelled stage back in the queue with a fresh attempt count
/// (numbering continues, so earlier attempts' evidence stays where it is).
///
/// # Errors
/// [`OpError::NoSuchStage`] or [`OpError::NotRequeueable`].
pub fn requeue(state: &mut State, id: &StageId) -> Result<Vec<Event>, OpError> {
    let stage = find(state, id)?;
    if !stage.status.terminal() {
        return Err(OpError::NotRequeueable(id.clone(), stage.status.name()));
    }
    let from = stage.status.name();
    stage.status = Status::Queued;
    stage.attempt_floor = stage.attempt;
    stage.findings.clear();
    Ok(vec![Event::stage(
        id,
        format!("requeued by operator (was {from})"),
    )])
}

/// Cancels a stage; if a job of it is waited on, its processes are killed (an intent, kept
/// until they are verified gone). A finished stage with kills still pending is not refused:
/// its verified kills are dropped and the rest executed again.
///
/// # Errors
/// [`OpError::NoSuchStage`] or [`OpError::AlreadyTerminal`] (with no kill pending).
pub fn cancel(
    state: &mut State,
    seen: &Observations,
    id: &StageId,
    now: Timestamp,
) -> Result<(Vec<Event>, Vec<Effect>), OpError> {
    let mut events = Vec::new();
    let mut effects = Vec::new();
    let pending: Vec<KillIntent> = state
        .kills
        .iter()
        .filter(|k| &k.stage == id)
        .cloned()
        .collect();
    state
        .kills
        .retain(|k| &k.stage != id || !seen.kills_done.contains(&k.job()));
    for k in &pending {
        if seen.kills_done.contains(&k.job()) {
            events.push(Event::stage(
                id,
                format!(
                    "a{} {}: its processes are gone (kill verified)",
                    k.attempt, k.role
                ),
            ));
        } else {
            effects.push(Effect::Kill { job: k.job() });
        }
    }
    let stage = find(state, id)?;
    if stage.status.terminal() {
        if pending.is_empty() {
            return Err(OpError::AlreadyTerminal(id.clone(), stage.status.name()));
        }
        return Ok((events, effects));
    }
    let mut intents = Vec::new();
    if let Some((_, attempt)) = stage.status.waiting_on() {
        for (job, ..) in stage.waiting_jobs() {
            intents.push(KillIntent::new(job.clone(), KillReason::Cancelled, now));
            effects.push(Effect::Kill { job });
        }
        if let Some(round) = stage.panel_round_mut() {
            for m in &mut round.members {
                if matches!(
                    m.state,
                    crate::engine::state::MemberState::Pending
                        | crate::engine::state::MemberState::Running { .. }
                ) {
                    m.state = crate::engine::state::MemberState::Cancelled;
                }
            }
            round.decided = Some(crate::engine::state::PanelOutcome::Void);
        }
        stage.history.push(AttemptRecord {
            attempt,
            ended: now,
            result: AttemptResult::Cancelled,
        });
    }
    let from = stage.status.name();
    stage.status = Status::Cancelled { at: now };
    events.push(Event::stage(
        id,
        format!("cancelled by operator (was {from})"),
    ));
    for k in intents {
        if !state.kills.iter().any(|o| o.job() == k.job()) {
            state.kills.push(k);
        }
    }
    Ok((events, effects))
}

/// Clears a halt and the counters that caused it (a reset that kept the counters would halt
/// again at once).
///
/// # Errors
/// [`OpError::NotHalted`].
pub fn resume(state: &mut State) -> Result<Vec<Event>, OpError> {
    let Some(h) = state.halted.take() else {
        return Err(OpError::NotHalted);
    };
    state.consecutive_failures = 0;
    Ok(vec![Event::repo(format!(
        "resumed by operator (was halted: {})",
        h.reason
    ))])
}

fn find<'a>(state: &'a mut State, id: &StageId) -> Result<&'a mut Stage, OpError> {
    state
        .stages
        .iter_mut()
        .find(|s| &s.id == id)
        .ok_or_else(|| OpError::NoSuchStage(id.clone()))
}
