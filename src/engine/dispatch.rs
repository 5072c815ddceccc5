//! Phases 2 and 3 of a step: queued stages whose dependency can no longer complete are
//! escalated, then ready stages are dispatched (retries first, then queued stages in the order
//! they were added) while lanes and the budget allow. Pure: dispatch is an effect.

use super::pause::{family_paused, still_paused};
use crate::engine::budget::Budget;
use crate::engine::effect::Event;
use crate::engine::state::{Escalation, Stage, State, Status};
use crate::engine::step::{Ctx, Limits, escalate, halt, start_job};
use std::collections::HashSet;

use crate::ids::{Role, StageId, stage_branch};

/// Phase 2: a queued stage whose dependency can no longer complete needs a human.
pub(super) fn escalate_orphans(stages: &mut [Stage], moved: &mut [bool], cx: &mut Ctx<'_>) {
    // One pass to learn which stages can no longer complete: linear in the queue, whatever
    // the dependencies.
    let mut failed: HashSet<StageId> = stages
        .iter()
        .filter(|s| {
            matches!(
                s.status,
                Status::Escalated { .. } | Status::Cancelled { .. }
            )
        })
        .map(|s| s.id.clone())
        .collect();
    if failed.is_empty() {
        return;
    }
    for i in 0..stages.len() {
        if moved[i] || stages[i].status != Status::Queued {
            continue;
        }
        let failed_dep = stages[i].depends_on.iter().find(|d| failed.contains(*d));
        if let Some(dep) = failed_dep.cloned() {
            escalate(
                &mut stages[i],
                cx,
                Escalation::DependencyFailed { dependency: dep },
            );
            moved[i] = true;
            // Dependencies come before their dependents: the chain below goes in this pass.
            failed.insert(stages[i].id.clone());
        }
    }
}

/// Phase 3: dispatch retries, then queued stages, within lanes and budget.
pub(super) fn dispatch(state: &mut State, moved: &[bool], cx: &mut Ctx<'_>) {
    super::panel::dispatch_members(state, cx);
    let order: Vec<usize> = (0..state.stages.len())
        .filter(|&i| {
            matches!(
                state.stages[i].status,
                Status::Retry { .. } | Status::Paused { .. }
            )
        })
        .chain((0..state.stages.len()).filter(|&i| state.stages[i].status == Status::Queued))
        .collect();
    let lanes = usize::try_from(cx.limits.lanes).unwrap_or(usize::MAX);
    // Lanes in use and the stages done, counted once: each queued stage is then judged in
    // constant time per dependency (a long queue costs a pass, not a pass per stage).
    let mut in_flight = state.in_flight();
    let done: HashSet<StageId> = state
        .stages
        .iter()
        .filter(|s| matches!(s.status, Status::Done { .. }))
        .map(|s| s.id.clone())
        .collect();
    for i in order {
        if state.halted.is_some() {
            return;
        }
        let queued = state.stages[i].status == Status::Queued;
        if queued && in_flight >= lanes {
            return; // retries came first; no queued stage fits any more
        }
        // A stage whose earlier job is not verified dead does not get another beside it.
        let killing = state.kills.iter().any(|k| k.stage == state.stages[i].id);
        if moved[i]
            || killing
            || !ready(&state.stages[i], &done)
            || family_paused(cx, &state.stages[i].worker)
            || still_paused(cx, &state.stages[i].status)
        {
            continue;
        }
        let stage = &state.stages[i];
        let estimate = stage.timeouts.worker;
        if let Err(reason) = cx.room(estimate) {
            halt(state, reason, cx);
            return;
        }
        if let Some(reason) = stage_cap(stage, &cx.budget, estimate, &cx.limits.money) {
            escalate(&mut state.stages[i], cx, reason);
            continue;
        }
        let start = start_point(&state.stages[i], cx.limits);
        let stage = &mut state.stages[i];
        stage.attempt += 1;
        let attempt = stage.attempt;
        cx.budget.count_attempt(&stage.id);
        cx.reserved += estimate;
        cx.jobs += 1;
        start_job(stage, cx, Role::Worker, attempt, Some(start));
        if queued {
            in_flight += 1;
        }
        cx.events.push(Event::stage(
            &stage.id,
            format!("a{attempt} dispatched to {}", stage.worker),
        ));
    }
}

/// The stage's own caps (card `budget:`): wall time, tokens, USD, for one more attempt.
pub(super) fn stage_cap(
    stage: &Stage,
    budget: &Budget,
    estimate_secs: u64,
    m: &crate::config::Money,
) -> Option<Escalation> {
    let spent = budget.stage_spend(&stage.id);
    if let Some(cap) = stage
        .max_wall_secs
        .filter(|cap| spent.wall_secs + estimate_secs > *cap)
    {
        return Some(Escalation::StageWallTime {
            spent_secs: spent.wall_secs,
            cap_secs: cap,
        });
    }
    // An attempt runs a worker and a verifier: two estimates.
    let tokens = spent.usage.total() + 2 * m.estimate_tokens;
    if let Some(cap) = stage.max_tokens.filter(|cap| tokens > *cap) {
        return Some(Escalation::StageBudget {
            detail: format!(
                "budget.max_tokens: {} spent + {} for the next attempt > cap {cap}",
                spent.usage.total(),
                2 * m.estimate_tokens
            ),
        });
    }
    if let Some(cap) = stage
        .max_usd
        .filter(|cap| spent.usd + 2.0 * m.estimate_usd > *cap)
    {
        return Some(Escalation::StageBudget {
            detail: format!(
                "budget.max_usd: ${:.2} spent + ${:.2} for the next attempt > cap ${cap:.2}",
                spent.usd,
                2.0 * m.estimate_usd
            ),
        });
    }
    None
}

/// Whether a stage may start now, lanes aside: a retry or a paused stage always; a queued one
/// when every dependency is done.
pub(super) fn ready(stage: &Stage, done: &HashSet<StageId>) -> bool {
    match stage.status {
        Status::Retry { .. } | Status::Paused { .. } => true,
        Status::Queued => stage.depends_on.iter().all(|d| done.contains(d)),
        Status::Working { .. }
        | Status::Checking { .. }
        | Status::Verifying { .. }
        | Status::Integrating { .. }
        | Status::Done { .. }
        | Status::Escalated { .. }
        | Status::Cancelled { .. } => false,
    }
}

/// Where a stage's worktree starts: the base branch, its one dependency's branch, or (several
/// dependencies) the integration branch, which by then holds all of them.
pub(super) fn start_point(stage: &Stage, limits: &Limits) -> String {
    match stage.depends_on.as_slice() {
        [] => limits.base.clone(),
        [one] => stage_branch(one),
        _ => limits.integration_branch.clone(),
    }
}
