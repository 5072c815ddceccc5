//! The invariants every engine step keeps, checked by [`Sim::tick`] on every tick of every
//! test. They recompute from the states before and after a step; they never call `step`
//! themselves or trust its bookkeeping.
//!
//! [`Sim::tick`]: super::sim::Sim::tick

use std::collections::BTreeSet;

use super::outcomes::spawns;
use crate::engine::budget::{Budget, reservation, reserved_secs};
use crate::engine::observe::{JobSeen, Observations};
use crate::engine::state::State;
use crate::engine::step::{Limits, Step};
use crate::ids::{JobKey, Role};

/// The invariants every step keeps, checked on every tick of every test:
/// (a) no job is spawned twice, unless it was seen never begun ([`JobSeen::Unstarted`]);
/// (b) no worker or verifier is spawned when the wall-time check would fail
/// ([`check_wall_cap`]); (c) no attempt is dispatched while the repo was halted (starting a
/// job never begun is no new attempt); (d) no more stages in flight than lanes; (e) terminal
/// statuses never change.
pub(super) fn check_step(
    prev: &State,
    prev_budget: &Budget,
    limits: &Limits,
    seen: &Observations,
    next: &Step,
    spawned: &mut BTreeSet<JobKey>,
) -> Result<(), String> {
    let ids = |s: &State| s.stages.iter().map(|s| s.id.clone()).collect::<Vec<_>>();
    if ids(prev) != ids(&next.state) {
        return Err("the step added, removed or reordered stages".into());
    }
    for plan in spawns(&next.effects) {
        if seen.jobs.get(&plan.job) == Some(&JobSeen::Unstarted) {
            if !spawned.contains(&plan.job) {
                return Err(format!(
                    "(a) {} started again but never spawned",
                    plan.job.stem()
                ));
            }
            continue;
        }
        if !spawned.insert(plan.job.clone()) {
            return Err(format!("(a) {} spawned twice", plan.job.stem()));
        }
        if prev.halted.is_some() && plan.job.role == Role::Worker {
            return Err(format!("(c) {} dispatched while halted", plan.job.stem()));
        }
    }
    if let Some(cap) = limits.max_wall_secs {
        check_wall_cap(prev, prev_budget, next, cap)?;
    }
    let lanes = usize::try_from(limits.lanes).expect("lanes fit");
    if next.state.in_flight() > lanes {
        return Err(format!(
            "(d) {} stages in flight on {lanes} lanes",
            next.state.in_flight()
        ));
    }
    for (before, after) in prev.stages.iter().zip(&next.state.stages) {
        if before.status.terminal() && before.status != after.status {
            return Err(format!(
                "(e) terminal {} went from {:?} to {:?}",
                before.id, before.status, after.status
            ));
        }
    }
    Ok(())
}

/// (b): the pre-dispatch check `spent + reserved + estimate <= cap`, recomputed from the
/// states before and after the step.
///
/// Workers are dispatched last, after every charge of the step, so with all of them counted
/// the end state must fit: `spent' + reserved(next) <= cap`. A verifier is spawned while the
/// stages are walked in order, so its check sees the charges and reservations of the stages
/// before it as they are after the step, those after it as they were before the step (a stage
/// dispatched in this step gets its worker reservation only later, at dispatch).
///
/// Recomputing from the state before the step alone would be wrong both ways: it keeps the
/// reservation of a job that finished in this step and misses the spawns earlier in the same
/// step.
pub(super) fn check_wall_cap(
    prev: &State,
    prev_budget: &Budget,
    next: &Step,
    cap: u64,
) -> Result<(), String> {
    let mut any_worker = false;
    for plan in spawns(&next.effects) {
        match plan.job.role {
            Role::Acceptance => {}
            Role::Worker => any_worker = true,
            Role::Verifier => {
                let i = prev
                    .stages
                    .iter()
                    .position(|s| s.id == plan.job.stage)
                    .expect("a spawn names a stage");
                let before: u64 = prev.stages[..i]
                    .iter()
                    .zip(&next.state.stages)
                    .map(|(p, n)| {
                        let charged = next
                            .budget
                            .stage_wall_secs(&n.id)
                            .saturating_sub(prev_budget.stage_wall_secs(&p.id));
                        // A new attempt number means a dispatch, which comes after.
                        let held = if n.attempt == p.attempt {
                            reservation(&n.status)
                        } else {
                            0
                        };
                        charged + held
                    })
                    .sum();
                let after: u64 = prev.stages[i + 1..]
                    .iter()
                    .map(|s| reservation(&s.status))
                    .sum();
                let committed = prev_budget.wall_secs + before + after;
                if committed + plan.timeout_secs > cap {
                    return Err(format!(
                        "(b) {} spawned with {committed} committed + {} > cap {cap}",
                        plan.job.stem(),
                        plan.timeout_secs
                    ));
                }
            }
        }
    }
    let committed = next.budget.wall_secs + reserved_secs(&next.state);
    if any_worker && committed > cap {
        return Err(format!(
            "(b) workers dispatched with {} spent + {} reserved > cap {cap}",
            next.budget.wall_secs,
            committed - next.budget.wall_secs
        ));
    }
    Ok(())
}
