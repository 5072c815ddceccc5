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
    Budget, Charge, MoneyCheck, money_room, reserved_secs, room_for, stage_reservation,
};
use crate::engine::effect::{Effect, Event, SpawnPlan};
use crate::engine::observe::{JobSeen, Observations, Outcome, OutcomeResult};
use crate::engine::state::{
    AttemptRecord, AttemptResult, Escalation, FailReason, HaltReason, KillIntent, KillReason,
    MAX_SETUP_FAILURES, Stage, State, Status,
};
use crate::ids::{JobKey, Role};

use super::dispatch::{dispatch, escalate_orphans};
use super::judge::judge;
use super::pause::{family_paused, pause};

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
    pub(super) fn family(&self, agent: &str) -> String {
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

/// The earliest time at which [`step`] can decide differently over the same state and
/// observations only because the clock moved: a spawn's grace period or a job's deadline
/// running out, a usage-limit pause ending. `None`: no clock in the state can fire. Earlier
/// than the exact moment is safe (the caller then steps again); later never is, so every
/// comparison of `now` in the engine has its time here.
#[must_use]
pub fn next_wakeup(state: &State) -> Option<Timestamp> {
    let mut times: Vec<Timestamp> = state.paused.values().map(|p| p.until).collect();
    for stage in &state.stages {
        if let Status::Paused { until, .. } = &stage.status {
            times.push(*until);
        }
        // Every job the stage waits on (each running panel member too).
        for (_, since, deadline) in stage.waiting_jobs() {
            times.push(later_signed(since, SPAWN_GRACE_SECS));
            times.push(later_signed(deadline, KILL_GRACE_SECS));
        }
    }
    times.into_iter().min()
}

fn later_signed(t: Timestamp, secs: i64) -> Timestamp {
    t.checked_add(SignedDuration::from_secs(secs)).unwrap_or(t)
}

pub(super) struct Ctx<'a> {
    pub(super) limits: &'a Limits,
    pub(super) seen: &'a Observations,
    pub(super) now: Timestamp,
    pub(super) budget: Budget,
    pub(super) effects: Vec<Effect>,
    pub(super) events: Vec<Event>,
    pub(super) halted_now: Vec<HaltReason>,
    /// Families paused during this step: (family, until, reported by the CLI).
    pub(super) paused_now: Vec<(String, Timestamp, bool)>,
    /// Families paused at the start of the step (after expiring the ones due).
    pub(super) paused: std::collections::BTreeMap<String, crate::engine::state::FamilyPause>,
    pub(super) consecutive: u32,
    /// Agent wall time reserved by jobs in flight, kept current as stages move.
    pub(super) reserved: u64,
    /// Agent jobs in flight, kept current as stages move.
    pub(super) jobs: u64,
    /// Kills decided in this step (each also an [`Effect::Kill`]).
    pub(super) kills: Vec<KillIntent>,
}

impl Ctx<'_> {
    /// Decides to kill `job`'s processes: an intent in the state (so a later tick re-executes
    /// it if this one dies first) and the effect that carries it out now.
    pub(super) fn kill(&mut self, job: JobKey, reason: KillReason) {
        self.kills
            .push(KillIntent::new(job.clone(), reason, self.now));
        self.effects.push(Effect::Kill { job });
    }
}

impl Ctx<'_> {
    /// The pre-dispatch check for one more agent job: wall time, then tokens and USD.
    pub(super) fn room(&self, estimate_secs: u64) -> Result<(), HaltReason> {
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

/// The agent jobs a stage runs (each reserves one estimate): 1 while working or verifying,
/// or one per running panel member.
pub(super) fn agent_jobs(stage: &Stage) -> u64 {
    match stage.panel_round() {
        Some(round) => u64::try_from(round.running().count()).unwrap_or(u64::MAX),
        None => u64::from(matches!(
            stage.status,
            Status::Working { .. } | Status::Verifying { .. }
        )),
    }
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
        jobs: state.stages.iter().map(agent_jobs).sum(),
        kills: Vec::new(),
    };
    let mut kills = state.kills.clone();
    kills.retain(|k| {
        let gone = seen.kills_done.contains(&k.job());
        if gone {
            cx.events.push(Event::stage(
                &k.stage,
                format!(
                    "a{} {}: its processes are gone (kill verified)",
                    k.attempt, k.role
                ),
            ));
        }
        !gone
    });
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
        let (before, job_before) = (stage_reservation(stage), agent_jobs(stage));
        moved[i] = advance(stage, &mut cx);
        cx.reserved = cx.reserved.saturating_sub(before) + stage_reservation(stage);
        cx.jobs = cx.jobs.saturating_sub(job_before) + agent_jobs(stage);
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
        kills,
        ..state.clone()
    };
    for k in std::mem::take(&mut cx.kills) {
        if !next.kills.iter().any(|o| o.job() == k.job()) {
            next.kills.push(k);
        }
    }
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

pub(super) fn halt(state: &mut State, reason: HaltReason, cx: &mut Ctx<'_>) {
    let text = format!("halted: {reason}");
    if state.halt(reason, cx.now) {
        cx.events.push(Event::repo(text));
    }
}

/// Phase 1: one stage reads its observation. Returns true if it moved.
pub(super) fn advance(stage: &mut Stage, cx: &mut Ctx<'_>) -> bool {
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
        Status::Verifying { attempt, .. } if stage.panel_round().is_some() => {
            super::panel::collect(stage, cx, attempt)
        }
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

pub(super) fn waiting(
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
        member: None,
    };
    match cx.seen.jobs.get(&job).unwrap_or(&JobSeen::Absent) {
        JobSeen::Finished(outcome) if outcome.attempt == attempt && outcome.stage == stage.id => {
            finished(stage, cx, role, attempt, outcome);
            true
        }
        JobSeen::Unstarted => {
            restart(stage, cx, role, attempt);
            true
        }
        JobSeen::Finished(_) | JobSeen::Absent => {
            // The grace is awake time too: a machine that slept right after the dispatch has
            // not yet had the time to start the job.
            let slept = crate::engine::observe::slept_secs(&cx.seen.sleeps, since, cx.now);
            if secs_between(since, cx.now) - slept > SPAWN_GRACE_SECS {
                fail(stage, cx, attempt, FailReason::SpawnFailed { role });
                return true;
            }
            false
        }
        JobSeen::Running { .. } => {
            // Deadlines are in awake time: a sleep of the machine does not count.
            let slept = crate::engine::observe::slept_secs(&cx.seen.sleeps, since, cx.now);
            if secs_between(deadline, cx.now) - slept > KILL_GRACE_SECS {
                cx.kill(job, KillReason::Timeout);
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
            // Its wrapper is gone; what it started may not be.
            cx.kill(job, KillReason::Crashed);
            fail(stage, cx, attempt, FailReason::Crashed { role });
            true
        }
        JobSeen::Forged { path, .. } => {
            cx.kill(job, KillReason::Forged);
            let reason = FailReason::ForgedOutcome { path: path.clone() };
            fail(stage, cx, attempt, reason);
            true
        }
    }
}

/// Starts again, as the same attempt and with its whole time, a job no tick began to start:
/// the tick that dispatched it stopped between its commit and the start. Nothing of the
/// attempt ran, so nothing is counted against it.
fn restart(stage: &mut Stage, cx: &mut Ctx<'_>, role: Role, attempt: u32) {
    let start_point =
        (role == Role::Worker).then(|| super::dispatch::start_point(stage, cx.limits));
    start_job(stage, cx, role, attempt, start_point);
    cx.events.push(Event::stage(
        &stage.id,
        format!("a{attempt} {role} job was never started (the tick that dispatched it stopped first); starting it now"),
    ));
}

pub(super) fn secs_between(a: Timestamp, b: Timestamp) -> i64 {
    b.as_second() - a.as_second()
}

pub(super) fn later(now: Timestamp, secs: u64) -> Timestamp {
    let secs = i64::try_from(secs).unwrap_or(i64::MAX / 4);
    now.checked_add(SignedDuration::from_secs(secs))
        .unwrap_or(now)
}

pub(super) fn finished(
    stage: &mut Stage,
    cx: &mut Ctx<'_>,
    role: Role,
    attempt: u32,
    outcome: &Outcome,
) {
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
        Ok(()) => match &outcome.result {
            OutcomeResult::Acceptance { deliverable, .. }
                if super::panel::applies(stage, deliverable) =>
            {
                super::panel::start(stage, cx, attempt);
            }
            _ => passed_gate(stage, cx, role, attempt),
        },
        Err(reason) => fail(stage, cx, attempt, reason),
    }
}

pub(super) fn passed_gate(stage: &mut Stage, cx: &mut Ctx<'_>, role: Role, attempt: u32) {
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
pub(super) fn start_job(
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
        member: None,
    };
    cx.effects.push(Effect::Spawn(SpawnPlan {
        job,
        timeout_secs: timeout,
        start_point,
    }));
}

pub(super) fn integrating(stage: &mut Stage, cx: &mut Ctx<'_>, attempt: u32) -> bool {
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

pub(super) fn escalate(stage: &mut Stage, cx: &mut Ctx<'_>, reason: Escalation) {
    cx.events
        .push(Event::stage(&stage.id, format!("escalated: {reason}")));
    stage.status = Status::Escalated { reason, at: cx.now };
}

/// Records a failed attempt: retry if attempts are left, else escalate; counts toward the
/// consecutive-failure cap.
pub(super) fn fail(stage: &mut Stage, cx: &mut Ctx<'_>, attempt: u32, reason: FailReason) {
    stage.history.push(AttemptRecord {
        attempt,
        ended: cx.now,
        result: AttemptResult::Failed {
            reason: reason.clone(),
        },
    });
    if reason.is_infrastructure() {
        infrastructure(stage, cx, attempt, reason.clone());
        return;
    }
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

/// A setup failure or a job that never started (e.g. its tick was killed between committing the
/// dispatch and spawning it), already in the stage's history: the attempt does not count against the
/// stage or the consecutive-failure cap and the stage retries, unless its last
/// [`MAX_SETUP_FAILURES`] attempts all failed to set up, which escalates with the typed reason.
fn infrastructure(stage: &mut Stage, cx: &mut Ctx<'_>, attempt: u32, reason: FailReason) {
    let failures = stage
        .history
        .iter()
        .rev()
        .take_while(
            |r| matches!(&r.result, AttemptResult::Failed { reason } if reason.is_infrastructure()),
        )
        .count();
    let failures = u32::try_from(failures).unwrap_or(u32::MAX);
    stage.attempt_floor += 1;
    if failures >= MAX_SETUP_FAILURES {
        escalate(
            stage,
            cx,
            Escalation::SetupFailed {
                failures,
                last: reason,
            },
        );
        return;
    }
    cx.events.push(Event::stage(
        &stage.id,
        format!("a{attempt} failed: {reason}; will retry (not counted)"),
    ));
    stage.status = Status::Retry { attempt, reason };
}

pub(super) fn findings_of(reason: &FailReason) -> Vec<String> {
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

pub(super) fn max_attempts(stage: &Stage, limits: &Limits) -> u32 {
    limits
        .max_attempts_per_stage
        .map_or(stage.max_attempts, |cap| stage.max_attempts.min(cap))
}
