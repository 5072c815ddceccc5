//! Usage limits: a family pauses until its reset time, the attempt does not count against the
//! stage, and a card's fallback worker may take over. Also the questions "is this family (or
//! this stage's agent) paused now?". Pure.

use jiff::Timestamp;

use crate::agent::failure::AgentFailure;
use crate::engine::effect::Event;
use crate::engine::state::{FailReason, Stage, Status};
use crate::engine::step::{Ctx, later};
use crate::ids::Role;

/// A usage limit: the family pauses until its reset, the attempt does not count against the
/// stage's attempts or the consecutive-failure cap, and the stage waits as `paused`.
pub(super) fn pause(
    stage: &mut Stage,
    cx: &mut Ctx<'_>,
    attempt: u32,
    agent: &str,
    resets_at: Option<Timestamp>,
) {
    // Either way the family pauses for everyone until its reset, and this attempt does not
    // count against the stage.
    let family = cx.limits.family(agent);
    let until = resets_at
        .filter(|t| *t > cx.now)
        .unwrap_or_else(|| later(cx.now, cx.limits.default_pause_secs));
    cx.paused_now
        .push((family.clone(), until, resets_at.is_some()));
    stage.attempt_floor += 1;
    if let Some(fallback) = usable_fallback(stage, cx, agent) {
        // The card names a worker of another family: switch to it instead of waiting.
        cx.events.push(Event::stage(
            &stage.id,
            format!(
                "a{attempt} hit the {family} usage limit; switching to fallback worker {fallback}"
            ),
        ));
        stage.worker = fallback;
        let failure = AgentFailure::UsageLimit {
            resets_at,
            detail: format!("{family} usage limit"),
        };
        stage.status = Status::Retry {
            attempt,
            reason: FailReason::Agent {
                role: Role::Worker,
                failure,
            },
        };
        return;
    }
    cx.events.push(Event::stage(
        &stage.id,
        format!(
            "a{attempt} paused: {family} usage limit until {until}; the next attempt will not count"
        ),
    ));
    stage.status = Status::Paused {
        attempt,
        family,
        until,
    };
}

/// The card's fallback worker, when the usage limit hit the worker and the fallback is of
/// another family than both the limited one and the verifier, and is not paused itself.
pub(super) fn usable_fallback(stage: &Stage, cx: &Ctx<'_>, agent: &str) -> Option<String> {
    let fallback = stage.fallback.clone()?;
    let limited = cx.limits.family(agent);
    let ok = agent == stage.worker
        && cx.limits.family(&fallback) != limited
        && cx.limits.family(&fallback) != cx.limits.family(&stage.verifier)
        && !family_paused(cx, &fallback);
    ok.then_some(fallback)
}

/// True when `agent`'s family is paused at `now`.
pub(super) fn family_paused(cx: &Ctx<'_>, agent: &str) -> bool {
    is_paused(cx, &cx.limits.family(agent))
}

pub(super) fn is_paused(cx: &Ctx<'_>, family: &str) -> bool {
    cx.paused.get(family).is_some_and(|p| p.until > cx.now)
        || cx.paused_now.iter().any(|(f, _, _)| f == family)
}

/// A paused stage waits for the family that paused it, whichever role that was.
pub(super) fn still_paused(cx: &Ctx<'_>, status: &Status) -> bool {
    matches!(status, Status::Paused { family, until, .. } if *until > cx.now || is_paused(cx, family))
}
