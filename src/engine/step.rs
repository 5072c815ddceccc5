//! The transition function:
//!
//! ```text
//! step(state, budget, limits, observations, now) -> Step { state, budget, effects, events }
//! ```
//!
//! It is pure: no clock, no files, no processes. One call is one tick's decision. Phases:
//! 1. every stage waiting on a job or an integration reads its observation and moves at most
//!    one step (fenced: only the current attempt's outcome counts);
//! 2. queued stages whose dependency failed are escalated;
//! 3. stages that did not move yet and are ready are dispatched — retries first, then queued
//!    stages in the order they were added — while lanes and budget allow.
//!
//! Invariants (property-tested in `tests`): a job is spawned at most once; no agent job is
//! spawned past a cap; a halt stops new attempts (jobs of attempts in flight still finish,
//! never stranded); every stage ends terminal unless the repo halts.

use jiff::{SignedDuration, Timestamp};

use crate::agent::Usage;
use crate::agent::failure::AgentFailure;
use crate::config::Policy;
use crate::engine::budget::{
    Budget, Charge, MoneyCheck, money_room, reservation, reserved_secs, room_for,
};
use crate::engine::effect::{Effect, Event, SpawnPlan};
use crate::engine::observe::{JobSeen, Observations, Outcome, OutcomeResult};
use crate::engine::state::{
    AttemptRecord, AttemptResult, Escalation, FailReason, HaltReason, Stage, State, Status,
};
use crate::envelope::{EnvelopeStatus, VerdictKind};
use crate::ids::{JobKey, Role};
use crate::paths::stage_branch;

/// Seconds a dispatched job has to register before it counts as a failed spawn.
pub const SPAWN_GRACE_SECS: i64 = 120;
/// Seconds past its deadline before the engine kills a job its wrapper did not stop.
pub const KILL_GRACE_SECS: i64 = 60;

/// The parts of the configuration the engine decides with.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    pub lanes: u32,
    pub base: String,
    pub integration_branch: String,
    pub policy: Policy,
    pub max_wall_secs: Option<u64>,
    pub max_consecutive_failures: u32,
    pub max_attempts_per_stage: Option<u32>,
    /// Agent name -> model family.
    pub families: std::collections::BTreeMap<String, String>,
    /// How long a usage limit pauses a family when the CLI did not say when it resets.
    pub default_pause_secs: u64,
    /// Money caps and per-run estimates.
    pub money: crate::config::Money,
    /// Agent name -> the price of its model, when known.
    pub prices: std::collections::BTreeMap<String, crate::config::Price>,
    /// Agents whose CLI never reports usage (the `command` kind): not charged estimates.
    pub unmetered: std::collections::BTreeSet<String>,
}

impl Limits {
    fn family(&self, agent: &str) -> String {
        self.families
            .get(agent)
            .cloned()
            .unwrap_or_else(|| agent.to_owned())
    }
}

/// What a finished agent run is charged: its reported usage, priced by the CLI's own cost or
/// the pricing table; for a run that started but reported no usage (a failed codex turn),
/// the estimate — never zero; for agents that never report usage (`command`), nothing.
#[must_use]
pub fn charge_of(
    run: &crate::engine::observe::AgentRun,
    wall_secs: u64,
    agent: &str,
    limits: &Limits,
) -> Charge {
    let started = run.exit.is_some() || run.signal.is_some() || run.timed_out;
    let price = limits.prices.get(agent);
    match run.usage {
        Some(usage) => Charge {
            wall_secs,
            usage,
            usd: run
                .cost_usd
                .or_else(|| price.map(|p| p.cost(&usage)))
                .unwrap_or(0.0),
        },
        None if started && !limits.unmetered.contains(agent) => Charge {
            wall_secs,
            usage: Usage {
                input: limits.money.estimate_tokens,
                ..Usage::default()
            },
            usd: limits.money.estimate_usd,
        },
        None => Charge {
            wall_secs,
            ..Charge::default()
        },
    }
}

/// The result of one step.
#[derive(Debug, Clone, PartialEq)]
#[must_use]
pub struct Step {
    pub state: State,
    pub budget: Budget,
    pub effects: Vec<Effect>,
    pub events: Vec<Event>,
}

impl Step {
    /// True when the step changed nothing (an idle tick: write nothing, commit nothing).
    #[must_use]
    pub fn is_idle(&self, state: &State, budget: &Budget) -> bool {
        self.events.is_empty()
            && self.effects.is_empty()
            && &self.state == state
            && &self.budget == budget
    }
}

struct Ctx<'a> {
    limits: &'a Limits,
    seen: &'a Observations,
    now: Timestamp,
    budget: Budget,
    effects: Vec<Effect>,
    events: Vec<Event>,
    halted_now: Vec<HaltReason>,
    /// Families paused during this step: (family, until, reported by the CLI).
    paused_now: Vec<(String, Timestamp, bool)>,
    /// Families paused at the start of the step (after expiring the ones due).
    paused: std::collections::BTreeMap<String, crate::engine::state::FamilyPause>,
    consecutive: u32,
    /// Agent wall time reserved by jobs in flight, kept current as stages move.
    reserved: u64,
    /// Agent jobs in flight, kept current as stages move.
    jobs: u64,
}

impl Ctx<'_> {
    /// The pre-dispatch check for one more agent job: wall time, then tokens and USD.
    fn room(&self, estimate_secs: u64) -> Result<(), HaltReason> {
        room_for(
            &self.budget,
            self.reserved,
            self.limits.max_wall_secs,
            estimate_secs,
        )?;
        let m = MoneyCheck {
            caps: self.limits.money,
            host_others: self.seen.host_others,
            jobs_in_flight: self.jobs,
        };
        money_room(&self.budget, &m)
    }
}

/// 1 for a status that runs an agent job (it reserves one estimate), else 0.
fn agent_job(status: &Status) -> u64 {
    u64::from(matches!(
        status,
        Status::Working { .. } | Status::Verifying { .. }
    ))
}

/// Decides one tick. See the module docs.
pub fn step(
    state: &State,
    budget: &Budget,
    limits: &Limits,
    seen: &Observations,
    now: Timestamp,
) -> Step {
    let mut cx = Ctx {
        limits,
        seen,
        now,
        budget: budget.clone(),
        effects: Vec::new(),
        events: Vec::new(),
        halted_now: Vec::new(),
        paused_now: Vec::new(),
        paused: state.paused.clone(),
        consecutive: state.consecutive_failures,
        reserved: reserved_secs(state),
        jobs: state.stages.iter().map(|s| agent_job(&s.status)).sum(),
    };
    for (family, p) in &state.paused {
        if p.until <= now {
            cx.paused.remove(family);
            cx.events
                .push(Event::repo(format!("{family} usage limit reset; resuming")));
        }
    }
    let mut stages = state.stages.clone();
    let mut moved = vec![false; stages.len()];
    for (i, stage) in stages.iter_mut().enumerate() {
        let (before, job_before) = (reservation(&stage.status), agent_job(&stage.status));
        moved[i] = advance(stage, &mut cx);
        cx.reserved = cx.reserved.saturating_sub(before) + reservation(&stage.status);
        cx.jobs = cx.jobs.saturating_sub(job_before) + agent_job(&stage.status);
    }
    escalate_orphans(&mut stages, &mut moved, &mut cx);
    for (family, until, reported) in std::mem::take(&mut cx.paused_now) {
        let p = cx
            .paused
            .entry(family)
            .or_insert(crate::engine::state::FamilyPause { until, reported });
        if until > p.until {
            *p = crate::engine::state::FamilyPause { until, reported };
        }
    }
    let mut next = State {
        stages,
        consecutive_failures: cx.consecutive,
        paused: cx.paused.clone(),
        ..state.clone()
    };
    for reason in std::mem::take(&mut cx.halted_now) {
        halt(&mut next, reason, &mut cx);
    }
    dispatch(&mut next, &moved, &mut cx);
    Step {
        state: next,
        budget: cx.budget,
        effects: cx.effects,
        events: cx.events,
    }
}

fn halt(state: &mut State, reason: HaltReason, cx: &mut Ctx<'_>) {
    let text = format!("halted: {reason}");
    if state.halt(reason, cx.now) {
        cx.events.push(Event::repo(text));
    }
}

/// Phase 1: one stage reads its observation. Returns true if it moved.
fn advance(stage: &mut Stage, cx: &mut Ctx<'_>) -> bool {
    match stage.status.clone() {
        Status::Working {
            attempt,
            since,
            deadline,
        } => waiting(stage, cx, Role::Worker, attempt, since, deadline),
        Status::Checking {
            attempt,
            since,
            deadline,
        } => waiting(stage, cx, Role::Acceptance, attempt, since, deadline),
        Status::Verifying {
            attempt,
            since,
            deadline,
        } => waiting(stage, cx, Role::Verifier, attempt, since, deadline),
        Status::Integrating { attempt, .. } => integrating(stage, cx, attempt),
        Status::Queued
        | Status::Retry { .. }
        | Status::Paused { .. }
        | Status::Done { .. }
        | Status::Escalated { .. }
        | Status::Cancelled { .. } => false,
    }
}

fn waiting(
    stage: &mut Stage,
    cx: &mut Ctx<'_>,
    role: Role,
    attempt: u32,
    since: Timestamp,
    deadline: Timestamp,
) -> bool {
    let job = JobKey {
        stage: stage.id.clone(),
        attempt,
        role,
    };
    match cx.seen.jobs.get(&job).unwrap_or(&JobSeen::Absent) {
        JobSeen::Finished(outcome) if outcome.attempt == attempt && outcome.stage == stage.id => {
            finished(stage, cx, role, attempt, outcome);
            true
        }
        JobSeen::Finished(_) | JobSeen::Absent => {
            if secs_between(since, cx.now) > SPAWN_GRACE_SECS {
                fail(stage, cx, attempt, FailReason::SpawnFailed { role });
                return true;
            }
            false
        }
        JobSeen::Running { pgids } => {
            // Deadlines are in awake time: a sleep of the machine does not count.
            let slept = crate::engine::observe::slept_secs(&cx.seen.sleeps, since, cx.now);
            if secs_between(deadline, cx.now) - slept > KILL_GRACE_SECS {
                cx.effects.push(Effect::KillGroup {
                    job,
                    pgids: pgids.clone(),
                });
                let after_secs = u64::try_from(secs_between(since, deadline)).unwrap_or(0);
                fail(
                    stage,
                    cx,
                    attempt,
                    FailReason::TimedOut { role, after_secs },
                );
                return true;
            }
            false
        }
        JobSeen::Vanished => {
            fail(stage, cx, attempt, FailReason::Crashed { role });
            true
        }
    }
}

fn secs_between(a: Timestamp, b: Timestamp) -> i64 {
    b.as_second() - a.as_second()
}

fn later(now: Timestamp, secs: u64) -> Timestamp {
    let secs = i64::try_from(secs).unwrap_or(i64::MAX / 4);
    now.checked_add(SignedDuration::from_secs(secs))
        .unwrap_or(now)
}

fn finished(stage: &mut Stage, cx: &mut Ctx<'_>, role: Role, attempt: u32, outcome: &Outcome) {
    match (&outcome.result, role) {
        (OutcomeResult::Worker { run, .. }, Role::Worker)
        | (OutcomeResult::Verifier { run, .. }, Role::Verifier) => {
            let agent = if role == Role::Verifier {
                &stage.verifier
            } else {
                &stage.worker
            };
            let charge = charge_of(run, outcome.wall_secs, agent, cx.limits);
            cx.budget
                .charge(&stage.id, &cx.limits.family(agent), charge);
        }
        _ => {}
    }
    match judge(&outcome.result, role, stage) {
        Ok(()) => passed_gate(stage, cx, role, attempt),
        Err(reason) => fail(stage, cx, attempt, reason),
    }
}

/// Reads a finished job's outcome as a gate: `Ok` to go on, or the typed reason it failed.
///
/// # Errors
/// The reason the gate failed.
pub fn judge(result: &OutcomeResult, role: Role, stage: &Stage) -> Result<(), FailReason> {
    match result {
        OutcomeResult::Worker {
            run,
            envelope,
            envelope_error,
            protected_changed,
            setup_error,
        } => {
            if let Some(detail) = setup_error {
                return Err(FailReason::Worktree {
                    detail: detail.clone(),
                });
            }
            agent_ok(run, role, stage)?;
            if let Some(path) = protected_changed.first() {
                return Err(FailReason::ProtectedPath { path: path.clone() });
            }
            let Some(env) = envelope else {
                let detail = envelope_error
                    .clone()
                    .unwrap_or_else(|| "no final message".into());
                return Err(
                    if detail.contains("no ```json block") || run.final_message.is_none() {
                        FailReason::NoEnvelope { detail }
                    } else {
                        FailReason::InvalidEnvelope { detail }
                    },
                );
            };
            match env.status {
                EnvelopeStatus::Done => Ok(()),
                EnvelopeStatus::Blocked | EnvelopeStatus::Partial => Err(FailReason::NotDone {
                    status: format!("{:?}", env.status).to_lowercase(),
                    summary: env.summary.clone(),
                }),
            }
        }
        OutcomeResult::Acceptance {
            commands,
            setup_error,
        } => {
            if let Some(detail) = setup_error {
                return Err(FailReason::Worktree {
                    detail: detail.clone(),
                });
            }
            match commands.iter().find(|c| !c.passed()) {
                Some(c) => Err(FailReason::AcceptanceFailed {
                    command: c.command.clone(),
                    exit: c.exit,
                    timed_out: c.timed_out,
                }),
                None if commands.len() < stage.acceptance.len() => {
                    Err(FailReason::Crashed { role })
                }
                None => Ok(()),
            }
        }
        OutcomeResult::Verifier {
            run,
            verdict,
            verdict_error,
        } => {
            agent_ok(run, role, stage)?;
            let Some(v) = verdict else {
                let detail = verdict_error
                    .clone()
                    .unwrap_or_else(|| "no final message".into());
                return Err(FailReason::InvalidVerdict { detail });
            };
            match v.verdict {
                VerdictKind::Pass => Ok(()),
                VerdictKind::Revise => Err(FailReason::Revise {
                    findings: v.findings.clone(),
                }),
                VerdictKind::Fail => Err(FailReason::Rejected {
                    findings: v.findings.clone(),
                }),
            }
        }
        OutcomeResult::Integration { .. } => Err(FailReason::Crashed { role }),
    }
}

fn agent_ok(
    run: &crate::engine::observe::AgentRun,
    role: Role,
    stage: &Stage,
) -> Result<(), FailReason> {
    if run.timed_out {
        let after_secs = match role {
            Role::Worker => stage.timeouts.worker,
            Role::Verifier => stage.timeouts.verifier,
            Role::Acceptance => stage.timeouts.acceptance,
        };
        return Err(FailReason::TimedOut { role, after_secs });
    }
    if let Some(failure) = &run.failure {
        return Err(FailReason::Agent {
            role,
            failure: failure.clone(),
        });
    }
    if run.is_error || run.exit != Some(0) {
        let failure = match (run.exit, run.signal) {
            (None, Some(signal)) => AgentFailure::Killed { signal },
            (exit, _) => AgentFailure::Crashed {
                exit,
                detail: run.error_detail.clone().unwrap_or_default(),
            },
        };
        return Err(FailReason::Agent { role, failure });
    }
    Ok(())
}

fn passed_gate(stage: &mut Stage, cx: &mut Ctx<'_>, role: Role, attempt: u32) {
    match role {
        Role::Worker => {
            start_job(stage, cx, Role::Acceptance, attempt, None);
            cx.events.push(Event::stage(
                &stage.id,
                format!("a{attempt} worker handed off; checking acceptance"),
            ));
        }
        Role::Acceptance if family_paused(cx, &stage.verifier) => {}
        Role::Acceptance => {
            // Waits (stays checking) when the budget has no room for the verifier.
            if let Err(reason) = cx.room(stage.timeouts.verifier) {
                cx.halted_now.push(reason);
                return;
            }
            start_job(stage, cx, Role::Verifier, attempt, None);
            cx.events.push(Event::stage(
                &stage.id,
                format!(
                    "a{attempt} acceptance passed; verifying with {}",
                    stage.verifier
                ),
            ));
        }
        Role::Verifier => {
            stage.status = Status::Integrating {
                attempt,
                since: cx.now,
            };
            cx.effects.push(Effect::Integrate {
                stage: stage.id.clone(),
                attempt,
            });
            cx.events.push(Event::stage(
                &stage.id,
                format!("a{attempt} verifier said pass; integrating"),
            ));
        }
    }
}

/// Moves a stage to the status that waits on `role`'s job of `attempt` and asks for that job,
/// with the role's timeout as its deadline.
fn start_job(
    stage: &mut Stage,
    cx: &mut Ctx<'_>,
    role: Role,
    attempt: u32,
    start_point: Option<String>,
) {
    let timeout = match role {
        Role::Worker => stage.timeouts.worker,
        Role::Acceptance => stage.timeouts.acceptance,
        Role::Verifier => stage.timeouts.verifier,
    };
    let (since, deadline) = (cx.now, later(cx.now, timeout));
    stage.status = match role {
        Role::Worker => Status::Working {
            attempt,
            since,
            deadline,
        },
        Role::Acceptance => Status::Checking {
            attempt,
            since,
            deadline,
        },
        Role::Verifier => Status::Verifying {
            attempt,
            since,
            deadline,
        },
    };
    let job = JobKey {
        stage: stage.id.clone(),
        attempt,
        role,
    };
    cx.effects.push(Effect::Spawn(SpawnPlan {
        job,
        timeout_secs: timeout,
        start_point,
    }));
}

fn integrating(stage: &mut Stage, cx: &mut Ctx<'_>, attempt: u32) -> bool {
    let Some(outcome) = cx
        .seen
        .integrations
        .get(&stage.id)
        .filter(|o| o.attempt == attempt)
    else {
        // The effect was lost (a crash after the intent was committed): it is idempotent, so
        // ask for it again.
        cx.effects.push(Effect::Integrate {
            stage: stage.id.clone(),
            attempt,
        });
        return false;
    };
    let OutcomeResult::Integration {
        commit,
        error,
        detail,
    } = &outcome.result
    else {
        return false;
    };
    match (commit, error) {
        (Some(commit), None) => {
            stage.status = Status::Done {
                attempt,
                commit: commit.clone(),
                at: cx.now,
            };
            stage.history.push(AttemptRecord {
                attempt,
                ended: cx.now,
                result: AttemptResult::Passed {
                    commit: commit.clone(),
                },
            });
            stage.findings.clear();
            cx.consecutive = 0;
            cx.events.push(Event::stage(
                &stage.id,
                format!("a{attempt} done: {detail}"),
            ));
        }
        (_, err) => {
            let detail = err.clone().unwrap_or_else(|| detail.clone());
            escalate(stage, cx, Escalation::IntegrationFailed { detail });
        }
    }
    true
}

fn escalate(stage: &mut Stage, cx: &mut Ctx<'_>, reason: Escalation) {
    cx.events
        .push(Event::stage(&stage.id, format!("escalated: {reason}")));
    stage.status = Status::Escalated { reason, at: cx.now };
}

/// Records a failed attempt: retry if attempts are left, else escalate; counts toward the
/// consecutive-failure cap.
fn fail(stage: &mut Stage, cx: &mut Ctx<'_>, attempt: u32, reason: FailReason) {
    stage.history.push(AttemptRecord {
        attempt,
        ended: cx.now,
        result: AttemptResult::Failed {
            reason: reason.clone(),
        },
    });
    if let FailReason::Agent { role, failure } = &reason {
        let agent = if *role == Role::Verifier {
            stage.verifier.clone()
        } else {
            stage.worker.clone()
        };
        match failure {
            AgentFailure::UsageLimit { resets_at, .. } => {
                pause(stage, cx, attempt, &agent, *resets_at);
                return;
            }
            AgentFailure::Auth { detail } => {
                let detail = detail.clone();
                escalate(stage, cx, Escalation::Auth { agent, detail });
                return;
            }
            _ => {}
        }
    }
    stage.findings = findings_of(&reason);
    cx.consecutive += 1;
    if cx.consecutive >= cx.limits.max_consecutive_failures {
        cx.halted_now.push(HaltReason::ConsecutiveFailures {
            count: cx.consecutive,
            cap: cx.limits.max_consecutive_failures,
        });
    }
    let cap = max_attempts(stage, cx.limits);
    if stage.attempts_used() >= cap {
        escalate(
            stage,
            cx,
            Escalation::MaxAttempts {
                attempts: stage.attempts_used(),
                last: reason,
            },
        );
    } else {
        cx.events.push(Event::stage(
            &stage.id,
            format!("a{attempt} failed: {reason}; will retry"),
        ));
        stage.status = Status::Retry { attempt, reason };
    }
}

fn findings_of(reason: &FailReason) -> Vec<String> {
    match reason {
        FailReason::Revise { findings } | FailReason::Rejected { findings }
            if !findings.is_empty() =>
        {
            let mut out = vec![reason.to_string()];
            out.extend(findings.iter().cloned());
            out
        }
        _ => vec![reason.to_string()],
    }
}

fn max_attempts(stage: &Stage, limits: &Limits) -> u32 {
    limits
        .max_attempts_per_stage
        .map_or(stage.max_attempts, |cap| stage.max_attempts.min(cap))
}

/// Phase 2: a queued stage whose dependency can no longer complete needs a human.
fn escalate_orphans(stages: &mut [Stage], moved: &mut [bool], cx: &mut Ctx<'_>) {
    for i in 0..stages.len() {
        if moved[i] || stages[i].status != Status::Queued {
            continue;
        }
        let failed_dep = stages[i].depends_on.iter().find(|d| {
            stages.iter().any(|s| {
                &s.id == *d
                    && matches!(
                        s.status,
                        Status::Escalated { .. } | Status::Cancelled { .. }
                    )
            })
        });
        if let Some(dep) = failed_dep.cloned() {
            escalate(
                &mut stages[i],
                cx,
                Escalation::DependencyFailed { dependency: dep },
            );
            moved[i] = true;
        }
    }
}

/// Phase 3: dispatch retries, then queued stages, within lanes and budget.
/// A usage limit: the family pauses until its reset, the attempt does not count against the
/// stage's attempts or the consecutive-failure cap, and the stage waits as `paused`.
fn pause(
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
fn usable_fallback(stage: &Stage, cx: &Ctx<'_>, agent: &str) -> Option<String> {
    let fallback = stage.fallback.clone()?;
    let limited = cx.limits.family(agent);
    let ok = agent == stage.worker
        && cx.limits.family(&fallback) != limited
        && cx.limits.family(&fallback) != cx.limits.family(&stage.verifier)
        && !family_paused(cx, &fallback);
    ok.then_some(fallback)
}

/// True when `agent`'s family is paused at `now`.
fn family_paused(cx: &Ctx<'_>, agent: &str) -> bool {
    is_paused(cx, &cx.limits.family(agent))
}

fn is_paused(cx: &Ctx<'_>, family: &str) -> bool {
    cx.paused.get(family).is_some_and(|p| p.until > cx.now)
        || cx.paused_now.iter().any(|(f, _, _)| f == family)
}

/// A paused stage waits for the family that paused it, whichever role that was.
fn still_paused(cx: &Ctx<'_>, status: &Status) -> bool {
    matches!(status, Status::Paused { family, until, .. } if *until > cx.now || is_paused(cx, family))
}

fn dispatch(state: &mut State, moved: &[bool], cx: &mut Ctx<'_>) {
    let order: Vec<usize> = (0..state.stages.len())
        .filter(|&i| {
            matches!(
                state.stages[i].status,
                Status::Retry { .. } | Status::Paused { .. }
            )
        })
        .chain((0..state.stages.len()).filter(|&i| state.stages[i].status == Status::Queued))
        .collect();
    for i in order {
        if state.halted.is_some() {
            return;
        }
        if moved[i]
            || !ready(state, i, cx.limits)
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
        let start = start_point(state, i, cx.limits);
        let stage = &mut state.stages[i];
        stage.attempt += 1;
        let attempt = stage.attempt;
        cx.budget.count_attempt(&stage.id);
        cx.reserved += estimate;
        cx.jobs += 1;
        start_job(stage, cx, Role::Worker, attempt, Some(start));
        cx.events.push(Event::stage(
            &stage.id,
            format!("a{attempt} dispatched to {}", stage.worker),
        ));
    }
}

/// The stage's own caps (card `budget:`): wall time, tokens, USD, for one more attempt.
fn stage_cap(
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

fn ready(state: &State, i: usize, limits: &Limits) -> bool {
    let stage = &state.stages[i];
    match stage.status {
        Status::Retry { .. } | Status::Paused { .. } => true,
        Status::Queued => {
            let lanes = usize::try_from(limits.lanes).unwrap_or(usize::MAX);
            state.in_flight() < lanes
                && stage.depends_on.iter().all(|d| {
                    state
                        .stage(d)
                        .is_some_and(|s| matches!(s.status, Status::Done { .. }))
                })
        }
        _ => false,
    }
}

/// Where a stage's worktree starts: the base branch, its one dependency's branch, or (several
/// dependencies) the integration branch, which by then holds all of them.
fn start_point(state: &State, i: usize, limits: &Limits) -> String {
    match state.stages[i].depends_on.as_slice() {
        [] => limits.base.clone(),
        [one] => stage_branch(one),
        _ => limits.integration_branch.clone(),
    }
}
