//! Scenario and property tests for the pure engine, driven through a small simulator ([`Sim`])
//! in the style of quinn's test `Pair`: build a repo state, set what the shell would observe for
//! the jobs the state waits on, move the clock by hand and call [`step`] once per tick.
//!
//! Every tick also checks the engine's invariants ([`check_step`]): no job spawned twice, no
//! worker or verifier spawned past the wall-time cap, no attempt dispatched while halted, no
//! more stages in flight than lanes, terminal statuses final. So each example test doubles as
//! an invariant test, and the property test at the end feeds the same harness random
//! observation sequences.

use std::collections::BTreeSet;

use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;

use crate::agent::Usage;
use crate::config::{Policy, Timeouts};
use crate::engine::budget::{Budget, reservation, reserved_secs};
use crate::engine::effect::{Effect, SpawnPlan};
use crate::engine::observe::{
    AgentRun, CommandResult, JobSeen, OUTCOME_VERSION, Observations, Outcome, OutcomeResult,
};
use crate::engine::ops;
use crate::engine::state::{
    AttemptResult, Escalation, FailReason, HaltReason, Stage, State, Status,
};
use crate::engine::step::{KILL_GRACE_SECS, Limits, SPAWN_GRACE_SECS, Step, step};
use crate::envelope::{
    ENVELOPE_VERSION, Envelope, EnvelopeStatus, VERDICT_VERSION, Verdict, VerdictKind,
};
use crate::ids::{JobKey, Role, StageId};

/// 2026-01-01T00:00:00Z: the simulated clock starts here.
const START: i64 = 1_767_225_600;
const TIMEOUTS: Timeouts = Timeouts {
    worker: 1800,
    verifier: 900,
    acceptance: 600,
};
const PGID: i32 = 4242;
const BASE: &str = "main";
const INTEGRATION: &str = "nightshift/integration";
const FINDING: &str = "handle the empty input";

fn sid(s: &str) -> StageId {
    StageId::new(s).expect("valid stage id")
}

fn at_secs(base: Timestamp, secs: i64) -> Timestamp {
    base.checked_add(SignedDuration::from_secs(secs))
        .expect("simulated time in range")
}

/// How a worker job ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Work {
    Done,
    Blocked,
    Partial,
    NoEnvelope,
    AgentError,
    ProtectedPath,
    SetupError,
}

/// How [`Sim::drive`] came to rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Settled {
    /// Every stage is done, escalated or cancelled.
    AllTerminal,
    /// The repo is halted and no job is running (what is left waits for an operator).
    Halted,
}

/// One repo, its clock and what the shell sees; see the module docs.
struct Sim {
    state: State,
    budget: Budget,
    limits: Limits,
    seen: Observations,
    start: Timestamp,
    now: Timestamp,
    max_attempts: u32,
    timeouts: Timeouts,
    /// Every job spawned so far (invariant (a) is checked against it).
    spawned: BTreeSet<JobKey>,
    /// Journal lines of the last tick.
    events: Vec<String>,
    /// Whether the last tick was idle.
    idle: bool,
    ticks: usize,
}

impl Sim {
    fn new() -> Self {
        let start = Timestamp::from_second(START).expect("valid start");
        Self {
            state: State::new(),
            budget: Budget::new(),
            limits: Limits {
                lanes: 1,
                base: BASE.into(),
                integration_branch: INTEGRATION.into(),
                policy: Policy::FastForward,
                max_wall_secs: None,
                max_consecutive_failures: 10,
                max_attempts_per_stage: None,
                families: [("claude", "claude"), ("codex", "codex")]
                    .iter()
                    .map(|(a, f)| ((*a).to_owned(), (*f).to_owned()))
                    .collect(),
                default_pause_secs: 3600,
                money: crate::config::Money::default(),
                prices: std::collections::BTreeMap::new(),
                unmetered: std::collections::BTreeSet::new(),
            },
            seen: Observations::default(),
            start,
            now: start,
            max_attempts: 3,
            timeouts: TIMEOUTS,
            spawned: BTreeSet::new(),
            events: Vec::new(),
            idle: false,
            ticks: 0,
        }
    }

    // --- building -----------------------------------------------------------------------

    fn lanes(mut self, n: u32) -> Self {
        self.limits.lanes = n;
        self
    }

    fn cap_wall(mut self, secs: u64) -> Self {
        self.limits.max_wall_secs = Some(secs);
        self
    }

    fn max_failures(mut self, n: u32) -> Self {
        self.limits.max_consecutive_failures = n;
        self
    }

    fn attempts_cap(mut self, cap: Option<u32>) -> Self {
        self.limits.max_attempts_per_stage = cap;
        self
    }

    /// Sets the cards' `max_attempts` (those added so far and those added later).
    fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n;
        for s in &mut self.state.stages {
            s.max_attempts = n;
        }
        self
    }

    /// Sets the cards' timeouts (those added so far and those added later).
    fn timeouts(mut self, worker: u64, verifier: u64, acceptance: u64) -> Self {
        self.timeouts = Timeouts {
            worker,
            verifier,
            acceptance,
        };
        for s in &mut self.state.stages {
            s.timeouts = self.timeouts;
        }
        self
    }

    fn card(self, id: &str) -> Self {
        self.card_dep(id, &[])
    }

    fn card_dep(mut self, id: &str, deps: &[&str]) -> Self {
        let stage = Stage {
            id: sid(id),
            title: format!("card {id}"),
            card_hash: format!("sha256:{:0>64}", id.len()),
            card_path: format!("stage-cards/{id}.md"),
            worker: "claude".into(),
            verifier: "codex".into(),
            fallback: None,
            depends_on: deps.iter().map(|d| sid(d)).collect(),
            acceptance: vec!["cargo test".into()],
            protected: Vec::new(),
            max_attempts: self.max_attempts,
            timeouts: self.timeouts,
            max_wall_secs: None,
            max_tokens: None,
            max_usd: None,
            attempt: 0,
            attempt_floor: 0,
            status: Status::Queued,
            findings: Vec::new(),
            history: Vec::new(),
            added_at: self.now,
        };
        ops::add_stage(&mut self.state, stage).expect("add_stage");
        self
    }

    // --- the clock ----------------------------------------------------------------------

    /// Sets the clock to `secs` seconds after the start.
    fn at(&mut self, secs: i64) -> &mut Self {
        self.now = at_secs(self.start, secs);
        self
    }

    fn at_minute(&mut self, m: i64) -> &mut Self {
        self.at(m * 60)
    }

    fn advance(&mut self, secs: u64) -> &mut Self {
        self.now = at_secs(self.now, i64::try_from(secs).expect("small advance"));
        self
    }

    // --- looking ------------------------------------------------------------------------

    fn stage(&self, id: &str) -> &Stage {
        self.state
            .stage(&sid(id))
            .unwrap_or_else(|| panic!("no stage {id}"))
    }

    fn status(&self, id: &str) -> &'static str {
        self.stage(id).status.name()
    }

    fn all_terminal(&self) -> bool {
        self.state.stages.iter().all(|s| s.status.terminal())
    }

    fn halt_reason(&self) -> Option<&HaltReason> {
        self.state.halted.as_ref().map(|h| &h.reason)
    }

    /// The job the stage waits on now.
    fn waiting_job(&self, id: &str) -> JobKey {
        let stage = self.stage(id);
        let (role, attempt) = stage
            .status
            .waiting_on()
            .unwrap_or_else(|| panic!("{id} is {}, not waiting on a job", stage.status.name()));
        JobKey {
            stage: stage.id.clone(),
            attempt,
            role,
        }
    }

    /// Seconds since the stage's current job was started.
    fn elapsed(&self, id: &str) -> u64 {
        let since = match self.stage(id).status {
            Status::Working { since, .. }
            | Status::Checking { since, .. }
            | Status::Verifying { since, .. }
            | Status::Integrating { since, .. } => since,
            _ => self.now,
        };
        u64::try_from(self.now.as_second() - since.as_second()).unwrap_or(0)
    }

    /// An outcome file as a job wrapper would write it.
    fn outcome(&self, id: &str, attempt: u32, wall_secs: u64, result: OutcomeResult) -> Outcome {
        Outcome {
            version: OUTCOME_VERSION,
            stage: sid(id),
            attempt,
            finished_at: self.now,
            wall_secs,
            result,
        }
    }

    // --- what the shell sees ------------------------------------------------------------

    fn see(&mut self, id: &str, seen: JobSeen) -> &mut Self {
        let job = self.waiting_job(id);
        self.seen.jobs.insert(job, seen);
        self
    }

    /// The current job of `id` finished after running since its status began.
    fn finish(&mut self, id: &str, result: OutcomeResult) -> &mut Self {
        let wall = self.elapsed(id);
        self.finish_wall(id, result, wall)
    }

    fn finish_wall(&mut self, id: &str, result: OutcomeResult, wall_secs: u64) -> &mut Self {
        let attempt = self.waiting_job(id).attempt;
        let outcome = self.outcome(id, attempt, wall_secs, result);
        self.see(id, JobSeen::Finished(Box::new(outcome)))
    }

    fn finish_worker(&mut self, id: &str, work: Work) -> &mut Self {
        let attempt = self.waiting_job(id).attempt;
        self.finish(id, worker_result(id, attempt, work))
    }

    fn finish_acceptance(&mut self, id: &str, pass: bool) -> &mut Self {
        let commands = self.stage(id).acceptance.clone();
        self.finish(id, acceptance_result(&commands, pass))
    }

    fn finish_verifier(&mut self, id: &str, kind: VerdictKind) -> &mut Self {
        let attempt = self.waiting_job(id).attempt;
        self.finish(id, verifier_result(id, attempt, Some(kind)))
    }

    fn integrated(&mut self, id: &str, ok: bool) -> &mut Self {
        let Status::Integrating { attempt, .. } = self.stage(id).status else {
            panic!("{id} is {}, not integrating", self.status(id));
        };
        let outcome = self.outcome(id, attempt, 0, integration_result(attempt, ok));
        self.seen.integrations.insert(sid(id), outcome);
        self
    }

    fn running(&mut self, id: &str) -> &mut Self {
        self.see(id, JobSeen::Running { pgids: vec![PGID] })
    }

    fn vanished(&mut self, id: &str) -> &mut Self {
        self.see(id, JobSeen::Vanished)
    }

    fn absent(&mut self, id: &str) -> &mut Self {
        let job = self.waiting_job(id);
        self.seen.jobs.remove(&job);
        self
    }

    // --- ticking ------------------------------------------------------------------------

    /// One tick: `step` with the current observations and clock; keeps the new state and
    /// budget, checks the invariants, and returns the effects.
    fn tick(&mut self) -> Vec<Effect> {
        let next = step(
            &self.state,
            &self.budget,
            &self.limits,
            &self.seen,
            self.now,
        );
        if let Err(broken) = check_step(
            &self.state,
            &self.budget,
            &self.limits,
            &next,
            &mut self.spawned,
        ) {
            panic!(
                "tick {} at +{}s broke an invariant: {broken}\nbefore: {:#?}\nafter: {:#?}",
                self.ticks,
                self.now.as_second() - START,
                self.state,
                next.state
            );
        }
        self.ticks += 1;
        self.idle = next.is_idle(&self.state, &self.budget);
        self.events = next.events.iter().map(crate::engine::Event::line).collect();
        self.state = next.state;
        self.budget = next.budget;
        next.effects
    }

    /// Gives every job the state waits on (and every integration) a passing outcome.
    fn pass_everything(&mut self) {
        let ids: Vec<String> = self.state.stages.iter().map(|s| s.id.to_string()).collect();
        for id in ids {
            match self.stage(&id).status.waiting_on() {
                Some((Role::Worker, _)) => {
                    self.finish_worker(&id, Work::Done);
                }
                Some((Role::Acceptance, _)) => {
                    self.finish_acceptance(&id, true);
                }
                Some((Role::Verifier, _)) => {
                    self.finish_verifier(&id, VerdictKind::Pass);
                }
                None if matches!(self.stage(&id).status, Status::Integrating { .. }) => {
                    self.integrated(&id, true);
                }
                None => {}
            }
        }
    }

    /// True while some job or integration could still move a stage: a stage waits on a job
    /// that has not finished (with an outcome for its attempt), or on an integration.
    fn job_running(&self) -> bool {
        self.state.stages.iter().any(|s| match s.status {
            Status::Integrating { .. } => true,
            _ => s.status.waiting_on().is_some_and(|(role, attempt)| {
                let job = JobKey {
                    stage: s.id.clone(),
                    attempt,
                    role,
                };
                !matches!(
                    self.seen.jobs.get(&job),
                    Some(JobSeen::Finished(o)) if o.attempt == attempt && o.stage == s.id
                )
            }),
        })
    }

    /// Drives every in-flight job to a passing outcome, 30 s a tick, until every stage is
    /// terminal or the repo is halted with no job running.
    ///
    /// # Errors
    /// When that does not happen within `bound` ticks (a livelock).
    fn drive(&mut self, bound: usize) -> Result<(Settled, usize), String> {
        for n in 0..bound {
            if self.all_terminal() {
                return Ok((Settled::AllTerminal, n));
            }
            if self.state.halted.is_some() && !self.job_running() {
                return Ok((Settled::Halted, n));
            }
            self.pass_everything();
            self.advance(30);
            let _ = self.tick();
        }
        Err(format!(
            "did not settle within {bound} ticks; halted: {:?}; statuses: {:?}",
            self.halt_reason(),
            self.state
                .stages
                .iter()
                .map(|s| format!("{}={}", s.id, s.status.name()))
                .collect::<Vec<_>>()
        ))
    }

    /// [`Sim::drive`], requiring every stage to end terminal. Returns the ticks it took.
    fn run_bounded(&mut self, bound: usize) -> usize {
        match self.drive(bound) {
            Ok((Settled::AllTerminal, n)) => n,
            Ok((Settled::Halted, _)) => panic!("halted: {:?}", self.halt_reason()),
            Err(e) => panic!("{e}"),
        }
    }

    /// Runs one passing attempt of `id` from working to done, one tick per step, and returns
    /// each tick's effects.
    fn pass_attempt(&mut self, id: &str) -> Vec<Vec<Effect>> {
        let mut out = Vec::new();
        self.advance(10).finish_worker(id, Work::Done);
        out.push(self.tick());
        self.advance(10).finish_acceptance(id, true);
        out.push(self.tick());
        self.advance(10).finish_verifier(id, VerdictKind::Pass);
        out.push(self.tick());
        self.advance(10).integrated(id, true);
        out.push(self.tick());
        assert_eq!(self.status(id), "done", "{id} after a passing attempt");
        out
    }
}

// --- outcome builders ---------------------------------------------------------------------

fn agent_run(agent: &str, ok: bool) -> AgentRun {
    AgentRun {
        agent: agent.into(),
        exit: Some(if ok { 0 } else { 1 }),
        is_error: !ok,
        error_detail: (!ok).then(|| "boom".to_owned()),
        usage: Some(Usage {
            input: 1000,
            output: 100,
            cache_read: 10,
            cache_write: 1,
        }),
        final_message: Some("done; handoff below".into()),
        ..AgentRun::default()
    }
}

fn worker_result(id: &str, attempt: u32, work: Work) -> OutcomeResult {
    let envelope = |status| {
        Some(Envelope {
            version: ENVELOPE_VERSION,
            stage: id.into(),
            attempt,
            status,
            summary: "did the thing".into(),
            files_changed: vec!["src/lib.rs".into()],
            notes: None,
        })
    };
    let (run, envelope, envelope_error, protected_changed, setup_error) = match work {
        Work::Done => (
            agent_run("claude", true),
            envelope(EnvelopeStatus::Done),
            None,
            vec![],
            None,
        ),
        Work::Blocked => (
            agent_run("claude", true),
            envelope(EnvelopeStatus::Blocked),
            None,
            vec![],
            None,
        ),
        Work::Partial => (
            agent_run("claude", true),
            envelope(EnvelopeStatus::Partial),
            None,
            vec![],
            None,
        ),
        Work::NoEnvelope => (
            agent_run("claude", true),
            None,
            Some("no ```json block in the final message".to_owned()),
            vec![],
            None,
        ),
        Work::AgentError => (agent_run("claude", false), None, None, vec![], None),
        Work::ProtectedPath => (
            agent_run("claude", true),
            envelope(EnvelopeStatus::Done),
            None,
            vec!["Cargo.lock".to_owned()],
            None,
        ),
        Work::SetupError => (
            AgentRun::default(),
            None,
            None,
            vec![],
            Some("worktree add failed".to_owned()),
        ),
    };
    OutcomeResult::Worker {
        run,
        envelope,
        envelope_error,
        protected_changed,
        setup_error,
    }
}

fn acceptance_result(commands: &[String], pass: bool) -> OutcomeResult {
    let mut results: Vec<CommandResult> = commands
        .iter()
        .map(|c| CommandResult {
            command: c.clone(),
            exit: Some(0),
            timed_out: false,
            secs: 3,
            output_tail: "ok".into(),
        })
        .collect();
    if !pass {
        match results.first_mut() {
            Some(first) => first.exit = Some(1),
            None => results.push(CommandResult {
                command: "false".into(),
                exit: Some(1),
                timed_out: false,
                secs: 0,
                output_tail: String::new(),
            }),
        }
    }
    OutcomeResult::Acceptance {
        commands: results,
        setup_error: None,
    }
}

/// A verifier outcome; `None` is a run without a valid verdict.
fn verifier_result(id: &str, attempt: u32, kind: Option<VerdictKind>) -> OutcomeResult {
    OutcomeResult::Verifier {
        run: agent_run("codex", true),
        verdict: kind.map(|verdict| Verdict {
            version: VERDICT_VERSION,
            stage: id.into(),
            attempt,
            verdict,
            criteria: Vec::new(),
            findings: if verdict == VerdictKind::Pass {
                Vec::new()
            } else {
                vec![FINDING.into()]
            },
        }),
        verdict_error: kind
            .is_none()
            .then(|| "no ```json block in the final message".to_owned()),
    }
}

fn integration_result(attempt: u32, ok: bool) -> OutcomeResult {
    OutcomeResult::Integration {
        commit: ok.then(|| format!("c0ffee{attempt:02}")),
        error: (!ok).then(|| "merge conflict in src/lib.rs".to_owned()),
        detail: if ok {
            "fast-forwarded".into()
        } else {
            "not integrated".into()
        },
    }
}

// --- effects --------------------------------------------------------------------------------

fn spawns(effects: &[Effect]) -> impl Iterator<Item = &SpawnPlan> {
    effects.iter().filter_map(|e| match e {
        Effect::Spawn(plan) => Some(plan),
        Effect::KillGroup { .. } | Effect::Integrate { .. } => None,
    })
}

/// Effects as short strings, for assertions.
fn show(effects: &[Effect]) -> Vec<String> {
    effects
        .iter()
        .map(|e| match e {
            Effect::Spawn(p) => format!("spawn {}", p.job.stem()),
            Effect::KillGroup { job, pgids } => format!("kill {} {pgids:?}", job.stem()),
            Effect::Integrate { stage, attempt } => format!("integrate {stage}@a{attempt}"),
        })
        .collect()
}

fn plan_of<'a>(effects: &'a [Effect], stem: &str) -> &'a SpawnPlan {
    spawns(effects)
        .find(|p| p.job.stem() == stem)
        .unwrap_or_else(|| panic!("no spawn of {stem} in {:?}", show(effects)))
}

// --- the invariants -------------------------------------------------------------------------

/// The invariants every step keeps, checked on every tick of every test:
/// (a) no job is spawned twice; (b) no worker or verifier is spawned when the wall-time check
/// would fail ([`check_wall_cap`]); (c) no attempt is dispatched while the repo was halted;
/// (d) no more stages in flight than lanes; (e) terminal statuses never change.
fn check_step(
    prev: &State,
    prev_budget: &Budget,
    limits: &Limits,
    next: &Step,
    spawned: &mut BTreeSet<JobKey>,
) -> Result<(), String> {
    let ids = |s: &State| s.stages.iter().map(|s| s.id.clone()).collect::<Vec<_>>();
    if ids(prev) != ids(&next.state) {
        return Err("the step added, removed or reordered stages".into());
    }
    for plan in spawns(&next.effects) {
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
fn check_wall_cap(prev: &State, prev_budget: &Budget, next: &Step, cap: u64) -> Result<(), String> {
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

// --- examples -------------------------------------------------------------------------------

#[test]
fn full_lifecycle_spawns_each_job_once_then_integrates() {
    let mut sim = Sim::new().card("a");
    let mut statuses = Vec::new();

    let fx = sim.tick();
    assert_eq!(show(&fx), ["spawn a@a1-worker"]);
    let plan = plan_of(&fx, "a@a1-worker");
    assert_eq!(plan.timeout_secs, TIMEOUTS.worker);
    assert_eq!(plan.start_point.as_deref(), Some(BASE));
    assert_eq!(sim.budget.attempts, 1);
    statuses.push(sim.status("a"));

    // The acceptance outcome of a1 is already there too: the stage still moves one step.
    sim.at_minute(10).finish_worker("a", Work::Done);
    let early = sim.outcome("a", 1, 5, acceptance_result(&["cargo test".into()], true));
    sim.seen.jobs.insert(
        JobKey {
            stage: sid("a"),
            attempt: 1,
            role: Role::Acceptance,
        },
        JobSeen::Finished(Box::new(early)),
    );
    let fx = sim.tick();
    assert_eq!(show(&fx), ["spawn a@a1-acceptance"]);
    assert_eq!(
        plan_of(&fx, "a@a1-acceptance").timeout_secs,
        TIMEOUTS.acceptance
    );
    assert_eq!(plan_of(&fx, "a@a1-acceptance").start_point, None);
    statuses.push(sim.status("a"));

    sim.at_minute(12).finish_acceptance("a", true);
    let fx = sim.tick();
    assert_eq!(show(&fx), ["spawn a@a1-verifier"]);
    assert_eq!(
        plan_of(&fx, "a@a1-verifier").timeout_secs,
        TIMEOUTS.verifier
    );
    statuses.push(sim.status("a"));

    sim.at_minute(17).finish_verifier("a", VerdictKind::Pass);
    let fx = sim.tick();
    assert_eq!(show(&fx), ["integrate a@a1"]);
    statuses.push(sim.status("a"));

    sim.at_minute(18).integrated("a", true);
    let fx = sim.tick();
    assert_eq!(show(&fx), Vec::<String>::new());
    statuses.push(sim.status("a"));

    assert_eq!(
        statuses,
        ["working", "checking", "verifying", "integrating", "done"]
    );
    assert_eq!(sim.events, ["a: a1 done: fast-forwarded"]);
    let a = sim.stage("a");
    assert!(matches!(&a.status, Status::Done { attempt: 1, commit, .. } if commit == "c0ffee01"));
    assert_eq!(
        a.history.iter().map(|h| &h.result).collect::<Vec<_>>(),
        [&AttemptResult::Passed {
            commit: "c0ffee01".into()
        }]
    );
    // Charged: the worker's 10 minutes and the verifier's 5, not acceptance.
    assert_eq!(sim.budget.wall_secs, 600 + 300);
    assert_eq!(sim.budget.stage_wall_secs(&sid("a")), 900);
    assert_eq!(sim.budget.usage.input, 2000);
    assert_eq!(sim.spawned.len(), 3);

    // Nothing left to do: the next tick is idle.
    assert!(sim.tick().is_empty());
    assert!(sim.idle);
}

#[test]
fn revise_with_findings_then_pass_on_retry() {
    let mut sim = Sim::new().card("a");
    let _ = sim.tick();
    sim.advance(60).finish_worker("a", Work::Done);
    let _ = sim.tick();
    sim.advance(60).finish_acceptance("a", true);
    let _ = sim.tick();
    sim.advance(60).finish_verifier("a", VerdictKind::Revise);
    let fx = sim.tick();
    assert!(
        fx.is_empty(),
        "a failed attempt is not retried in the same tick"
    );
    assert_eq!(
        sim.stage("a").status,
        Status::Retry {
            attempt: 1,
            reason: FailReason::Revise {
                findings: vec![FINDING.into()]
            }
        }
    );
    assert_eq!(
        sim.stage("a").findings,
        ["the verifier asked for a revision", FINDING]
    );
    assert_eq!(
        sim.events,
        ["a: a1 failed: the verifier asked for a revision; will retry"]
    );

    let fx = sim.tick();
    assert_eq!(show(&fx), ["spawn a@a2-worker"]);
    assert_eq!(
        sim.stage("a").findings.len(),
        2,
        "the findings stay for the next attempt's prompt"
    );

    let ticks = sim.run_bounded(10);
    assert_eq!(ticks, 4);
    let a = sim.stage("a");
    assert!(matches!(a.status, Status::Done { attempt: 2, .. }));
    assert!(a.findings.is_empty());
    assert_eq!(a.history.len(), 2);
    assert!(matches!(
        a.history[0].result,
        AttemptResult::Failed {
            reason: FailReason::Revise { .. }
        }
    ));
    assert_eq!(sim.budget.attempts, 2);
    assert_eq!(sim.state.consecutive_failures, 0);
}

#[test]
fn escalates_after_max_attempts() {
    let mut sim = Sim::new().card("a").max_attempts(2);
    let _ = sim.tick();
    sim.advance(60).finish_worker("a", Work::Blocked);
    let _ = sim.tick();
    assert!(matches!(
        &sim.stage("a").status,
        Status::Retry { attempt: 1, reason: FailReason::NotDone { status, .. } } if status == "blocked"
    ));
    assert_eq!(show(&sim.tick()), ["spawn a@a2-worker"]);
    sim.advance(60).finish_worker("a", Work::AgentError);
    assert!(sim.tick().is_empty());
    // The last failure is the agent's (its exact typing is the agent module's business).
    let Status::Escalated {
        reason: Escalation::MaxAttempts { attempts: 2, last },
        at,
    } = &sim.stage("a").status
    else {
        panic!("not escalated: {:?}", sim.stage("a").status);
    };
    assert_eq!(*at, sim.now);
    assert!(
        last.to_string().starts_with("the worker agent failed"),
        "{last}"
    );
    assert_eq!(sim.events.len(), 1);
    assert!(
        sim.events[0].starts_with("a: escalated: failed 2 attempts; last: the worker agent failed"),
        "{:?}",
        sim.events
    );
    assert_eq!(sim.state.consecutive_failures, 2);
    assert!(sim.tick().is_empty());
    assert!(sim.idle);

    // The config's per-stage cap lowers a card's own max_attempts.
    let mut sim = Sim::new().card("a").max_attempts(5).attempts_cap(Some(1));
    let _ = sim.tick();
    sim.vanished("a");
    let _ = sim.tick();
    assert!(matches!(
        sim.stage("a").status,
        Status::Escalated {
            reason: Escalation::MaxAttempts { attempts: 1, .. },
            ..
        }
    ));
}

#[test]
fn dependencies_gate_dispatch_and_pick_start_point() {
    let mut sim = Sim::new()
        .lanes(3)
        .card("a")
        .card("b")
        .card_dep("c", &["a"])
        .card_dep("d", &["a", "b"]);
    let fx = sim.tick();
    assert_eq!(show(&fx), ["spawn a@a1-worker", "spawn b@a1-worker"]);
    assert_eq!(
        plan_of(&fx, "a@a1-worker").start_point.as_deref(),
        Some(BASE)
    );
    assert_eq!(
        plan_of(&fx, "b@a1-worker").start_point.as_deref(),
        Some(BASE)
    );
    assert_eq!(sim.status("c"), "queued", "a free lane, but a is not done");
    sim.running("b");

    // c is dispatched in the very tick a is done, from a's stage branch; d still waits for b.
    let fx = sim.pass_attempt("a");
    assert_eq!(show(&fx[3]), ["spawn c@a1-worker"]);
    assert_eq!(
        plan_of(&fx[3], "c@a1-worker").start_point.as_deref(),
        Some("nightshift/stage/a")
    );
    assert!(sim.tick().is_empty());
    assert_eq!(sim.status("d"), "queued");
    sim.running("c");

    // With two dependencies, d starts from the integration branch, which holds both.
    let fx = sim.pass_attempt("b");
    assert_eq!(show(&fx[3]), ["spawn d@a1-worker"]);
    assert_eq!(
        plan_of(&fx[3], "d@a1-worker").start_point.as_deref(),
        Some(INTEGRATION)
    );
    sim.run_bounded(20);
}

#[test]
fn lanes_limit_parallel_dispatch() {
    let mut sim = Sim::new().lanes(2).card("a").card("b").card("c");
    let fx = sim.tick();
    assert_eq!(show(&fx), ["spawn a@a1-worker", "spawn b@a1-worker"]);
    assert_eq!(sim.state.in_flight(), 2);
    sim.running("a").running("b").advance(60);
    assert!(sim.tick().is_empty());
    assert_eq!(sim.status("c"), "queued");

    // A retrying stage keeps its lane: c still waits, and a's retry goes first.
    sim.advance(10).vanished("a");
    assert!(sim.tick().is_empty());
    assert_eq!(sim.status("a"), "retry");
    assert_eq!(show(&sim.tick()), ["spawn a@a2-worker"]);
    assert_eq!(sim.status("c"), "queued");

    // b done frees a lane for c, in the same tick.
    let fx = sim.pass_attempt("b");
    assert_eq!(show(&fx[3]), ["spawn c@a1-worker"]);
    assert_eq!(sim.state.in_flight(), 2);
    sim.run_bounded(20);
}

#[test]
fn stale_outcomes_are_ignored() {
    let mut sim = Sim::new().card("a");
    let _ = sim.tick();
    sim.advance(60).finish_worker("a", Work::Partial);
    let _ = sim.tick();
    assert_eq!(show(&sim.tick()), ["spawn a@a2-worker"]);

    // Attempt 1's passing outcome, read where attempt 2's should be: fenced off.
    let stale = sim.outcome("a", 1, 60, worker_result("a", 1, Work::Done));
    sim.advance(30).see("a", JobSeen::Finished(Box::new(stale)));
    assert!(sim.tick().is_empty());
    assert!(sim.idle);
    assert!(matches!(
        sim.stage("a").status,
        Status::Working { attempt: 2, .. }
    ));
    // Another stage's outcome for the same attempt number: fenced off too.
    let alien = sim.outcome("b", 2, 60, worker_result("b", 2, Work::Done));
    sim.see("a", JobSeen::Finished(Box::new(alien)));
    assert!(sim.tick().is_empty());
    assert_eq!(sim.status("a"), "working");

    sim.advance(10).finish_worker("a", Work::Done);
    let _ = sim.tick();
    sim.advance(10).finish_acceptance("a", true);
    let _ = sim.tick();
    sim.advance(10).finish_verifier("a", VerdictKind::Pass);
    assert_eq!(show(&sim.tick()), ["integrate a@a2"]);

    // An integration outcome of attempt 1 does not finish attempt 2; the integration is
    // asked for again (it is idempotent).
    let old = sim.outcome("a", 1, 0, integration_result(1, true));
    sim.seen.integrations.insert(sid("a"), old);
    assert_eq!(show(&sim.tick()), ["integrate a@a2"]);
    assert_eq!(sim.status("a"), "integrating");

    sim.integrated("a", true);
    let _ = sim.tick();
    assert!(
        matches!(&sim.stage("a").status, Status::Done { attempt: 2, commit, .. } if commit == "c0ffee02")
    );
}

#[test]
fn absent_job_fails_to_spawn_only_after_grace() {
    let mut sim = Sim::new().card("a");
    let _ = sim.tick();
    sim.at(SPAWN_GRACE_SECS);
    assert!(sim.tick().is_empty());
    assert!(sim.idle, "absent within the grace period: nothing happens");
    sim.at(SPAWN_GRACE_SECS + 1);
    assert!(sim.tick().is_empty());
    assert_eq!(
        sim.stage("a").status,
        Status::Retry {
            attempt: 1,
            reason: FailReason::SpawnFailed { role: Role::Worker }
        }
    );
    assert_eq!(show(&sim.tick()), ["spawn a@a2-worker"]);

    // Explicitly absent acceptance job, same rule.
    sim.advance(10).finish_worker("a", Work::Done);
    let _ = sim.tick();
    sim.absent("a")
        .advance(u64::try_from(SPAWN_GRACE_SECS).expect("positive"));
    assert!(sim.tick().is_empty());
    assert_eq!(sim.status("a"), "checking");
    sim.advance(1);
    let _ = sim.tick();
    assert_eq!(
        sim.stage("a").status,
        Status::Retry {
            attempt: 2,
            reason: FailReason::SpawnFailed {
                role: Role::Acceptance
            }
        }
    );
}

#[test]
fn running_past_deadline_is_killed_and_timed_out() {
    let mut sim = Sim::new().card("a");
    let _ = sim.tick();
    let deadline = i64::try_from(TIMEOUTS.worker).expect("small");
    sim.running("a").at(deadline + KILL_GRACE_SECS);
    assert!(
        sim.tick().is_empty(),
        "within the kill grace: the wrapper's job"
    );
    sim.at(deadline + KILL_GRACE_SECS + 1);
    let fx = sim.tick();
    assert_eq!(show(&fx), [format!("kill a@a1-worker [{PGID}]")]);
    assert_eq!(
        sim.stage("a").status,
        Status::Retry {
            attempt: 1,
            reason: FailReason::TimedOut {
                role: Role::Worker,
                after_secs: TIMEOUTS.worker
            }
        }
    );
}

#[test]
fn a_sleep_of_the_machine_does_not_count_against_the_deadline() {
    let mut sim = Sim::new().card("a");
    let _ = sim.tick();
    let deadline = i64::try_from(TIMEOUTS.worker).expect("small");
    // The machine slept for three hours a minute into the job.
    sim.seen.sleeps = vec![crate::engine::observe::Sleep {
        from: at_secs(sim.start, 60),
        to: at_secs(sim.start, 60 + 3 * 3600),
    }];
    sim.running("a").at(deadline + 3 * 3600 + KILL_GRACE_SECS);
    assert!(sim.tick().is_empty(), "slept time is not awake time");
    sim.at(deadline + 3 * 3600 + KILL_GRACE_SECS + 1);
    assert_eq!(show(&sim.tick()), [format!("kill a@a1-worker [{PGID}]")]);
}

#[test]
fn vanished_job_is_a_crash() {
    let mut sim = Sim::new().card("a");
    let _ = sim.tick();
    sim.advance(5).vanished("a");
    assert!(sim.tick().is_empty());
    assert_eq!(
        sim.stage("a").status,
        Status::Retry {
            attempt: 1,
            reason: FailReason::Crashed { role: Role::Worker }
        }
    );
    let _ = sim.tick();
    sim.advance(10).finish_worker("a", Work::Done);
    let _ = sim.tick();
    sim.advance(10).finish_acceptance("a", true);
    let _ = sim.tick();
    sim.advance(5).vanished("a");
    let _ = sim.tick();
    assert_eq!(
        sim.stage("a").status,
        Status::Retry {
            attempt: 2,
            reason: FailReason::Crashed {
                role: Role::Verifier
            }
        }
    );
}

#[test]
fn wall_cap_refuses_dispatch_and_halts() {
    let mut sim = Sim::new().cap_wall(1000).card("a");
    assert!(sim.tick().is_empty());
    assert_eq!(sim.status("a"), "queued");
    let reason = HaltReason::WallTime {
        spent_secs: 0,
        reserved_secs: 0,
        estimate_secs: TIMEOUTS.worker,
        cap_secs: 1000,
    };
    assert_eq!(sim.halt_reason(), Some(&reason));
    assert_eq!(
        sim.events,
        ["repo: halted: budget.max_wall_time: 0s spent + 0s reserved + 30m next > cap 16m40s"]
    );
    // Still halted later; nothing is dispatched and nothing changes.
    sim.advance(3600);
    assert!(sim.tick().is_empty());
    assert!(sim.idle);
}

#[test]
fn wall_cap_reservations_stop_parallel_lanes() {
    // Room for one worker, not two: the first one's reservation counts against the second.
    let mut sim = Sim::new().lanes(2).cap_wall(3000).card("a").card("b");
    let fx = sim.tick();
    assert_eq!(show(&fx), ["spawn a@a1-worker"]);
    assert_eq!(
        sim.halt_reason(),
        Some(&HaltReason::WallTime {
            spent_secs: 0,
            reserved_secs: TIMEOUTS.worker,
            estimate_secs: TIMEOUTS.worker,
            cap_secs: 3000,
        })
    );
    assert_eq!(sim.status("b"), "queued");

    // The verifier's check counts the other lane's reservation too: a alone would have room
    // for its verifier (10 + 1800 <= 2000), but not with b's whole 600 s timeout still reserved.
    let mut sim = Sim::new()
        .lanes(2)
        .timeouts(600, 1800, 300)
        .cap_wall(2000)
        .card("a")
        .card("b");
    assert_eq!(sim.tick().len(), 2);
    sim.running("b").at(10).finish_worker("a", Work::Done);
    let _ = sim.tick();
    sim.at(20).finish_acceptance("a", true);
    assert!(sim.tick().is_empty());
    assert_eq!(
        sim.status("a"),
        "checking",
        "waits for room, keeps its evidence"
    );
    assert_eq!(
        sim.halt_reason(),
        Some(&HaltReason::WallTime {
            spent_secs: 10,
            reserved_secs: 600,
            estimate_secs: 1800,
            cap_secs: 2000,
        })
    );
}

#[test]
fn consecutive_failure_halt_keeps_first_reason() {
    let first = HaltReason::ConsecutiveFailures { count: 1, cap: 1 };
    let mut sim = Sim::new()
        .lanes(3)
        .timeouts(600, 1800, 300)
        .cap_wall(1800)
        .max_failures(1)
        .card("a")
        .card("b")
        .card("c");
    assert_eq!(sim.tick().len(), 3, "3 x 600 fits the 1800 cap exactly");
    sim.at(10)
        .finish_worker("a", Work::AgentError)
        .finish_worker("b", Work::Done)
        .finish_worker("c", Work::Done);
    let fx = sim.tick();
    assert_eq!(
        show(&fx),
        ["spawn b@a1-acceptance", "spawn c@a1-acceptance"]
    );
    assert_eq!(sim.halt_reason(), Some(&first));
    assert!(
        sim.events.contains(
            &"repo: halted: budget.max_consecutive_failures: 1 attempts failed in a row (cap 1)"
                .to_owned()
        )
    );

    // Now b has no room for its verifier (30 s spent by the three workers + 1800 > 1800: the
    // wall-time cap) and c fails again (count 2): neither replaces the first reason, and no
    // new halt is journaled.
    sim.at(20)
        .finish_acceptance("b", true)
        .finish_acceptance("c", false);
    assert!(sim.tick().is_empty());
    assert_eq!(sim.halt_reason(), Some(&first));
    assert!(!sim.events.iter().any(|e| e.contains("halted")));
    assert_eq!(sim.status("a"), "retry", "not retried while halted");
    assert_eq!(sim.status("b"), "checking");
    assert_eq!(sim.status("c"), "retry");
    assert_eq!(sim.state.consecutive_failures, 2);

    // ops::resume clears the halt and the counter; the next tick halts afresh, now for the
    // reason that still holds (b's verifier has no room), before any retry is dispatched.
    let events = ops::resume(&mut sim.state).expect("halted");
    assert_eq!(events.len(), 1);
    assert_eq!(sim.state.consecutive_failures, 0);
    sim.advance(10);
    assert!(sim.tick().is_empty());
    assert_eq!(
        sim.halt_reason(),
        Some(&HaltReason::WallTime {
            spent_secs: 30,
            reserved_secs: 0,
            estimate_secs: 1800,
            cap_secs: 1800,
        })
    );
}

#[test]
fn idle_tick_is_idle() {
    let mut sim = Sim::new().card("a");
    let _ = sim.tick();
    assert!(!sim.idle);
    sim.running("a").advance(600);
    assert!(sim.tick().is_empty());
    assert!(sim.idle);
    assert!(sim.events.is_empty());
    // Integrating without an outcome asks for the integration again: not idle.
    sim.advance(10).finish_worker("a", Work::Done);
    let _ = sim.tick();
    sim.advance(10).finish_acceptance("a", true);
    let _ = sim.tick();
    sim.advance(10).finish_verifier("a", VerdictKind::Pass);
    let _ = sim.tick();
    assert_eq!(show(&sim.tick()), ["integrate a@a1"]);
    assert!(!sim.idle);
}

#[test]
fn requeue_resets_attempts_used_but_continues_numbering() {
    let mut sim = Sim::new().card("a").max_attempts(2);
    for n in 1..=2 {
        assert_eq!(show(&sim.tick()), [format!("spawn a@a{n}-worker")]);
        sim.advance(10).finish_worker("a", Work::NoEnvelope);
        let _ = sim.tick();
    }
    assert_eq!(sim.status("a"), "escalated");
    assert_eq!(sim.stage("a").attempts_used(), 2);

    let events = ops::requeue(&mut sim.state, &sid("a")).expect("requeueable");
    assert_eq!(events[0].line(), "a: requeued by operator (was escalated)");
    let a = sim.stage("a");
    assert_eq!(a.status, Status::Queued);
    assert_eq!((a.attempt, a.attempt_floor, a.attempts_used()), (2, 2, 0));
    assert!(a.findings.is_empty());

    assert_eq!(show(&sim.tick()), ["spawn a@a3-worker"]);
    sim.advance(10).finish_worker("a", Work::NoEnvelope);
    let _ = sim.tick();
    assert_eq!(
        sim.status("a"),
        "retry",
        "one attempt used of two since the requeue"
    );
    assert_eq!(show(&sim.tick()), ["spawn a@a4-worker"]);
    sim.run_bounded(10);
    assert!(matches!(
        sim.stage("a").status,
        Status::Done { attempt: 4, .. }
    ));
    assert_eq!(sim.stage("a").history.len(), 4);

    // Only terminal stages can be requeued.
    let mut sim = Sim::new().card("a");
    let _ = sim.tick();
    assert_eq!(
        ops::requeue(&mut sim.state, &sid("a")),
        Err(ops::OpError::NotRequeueable(sid("a"), "working"))
    );
}

#[test]
fn cancel_of_running_stage_kills_its_job() {
    let mut sim = Sim::new().lanes(2).card("a").card_dep("b", &["a"]);
    let _ = sim.tick();
    sim.advance(60).running("a");
    let (events, effects) =
        ops::cancel(&mut sim.state, &sim.seen, &sid("a"), sim.now).expect("cancellable");
    assert_eq!(show(&effects), [format!("kill a@a1-worker [{PGID}]")]);
    assert_eq!(events[0].line(), "a: cancelled by operator (was working)");
    assert_eq!(sim.stage("a").status, Status::Cancelled { at: sim.now });
    assert_eq!(
        sim.stage("a").history.last().map(|h| &h.result),
        Some(&AttemptResult::Cancelled)
    );

    // Its dependent can never start.
    let _ = sim.tick();
    assert_eq!(
        sim.stage("b").status,
        Status::Escalated {
            reason: Escalation::DependencyFailed {
                dependency: sid("a")
            },
            at: sim.now
        }
    );

    // A stage not yet started is cancelled without effects; a second cancel is refused.
    let mut sim = Sim::new().card("a").card("q");
    let _ = sim.tick();
    let (_, effects) = ops::cancel(&mut sim.state, &sim.seen, &sid("q"), sim.now).expect("ok");
    assert!(effects.is_empty());
    assert_eq!(
        ops::cancel(&mut sim.state, &sim.seen, &sid("q"), sim.now).map(|_| ()),
        Err(ops::OpError::AlreadyTerminal(sid("q"), "cancelled"))
    );
}

#[test]
fn escalated_dependency_escalates_dependents() {
    let mut sim = Sim::new()
        .lanes(3)
        .card("a")
        .card_dep("b", &["a"])
        .card_dep("c", &["b"])
        .card("d")
        .max_attempts(1);
    assert_eq!(
        show(&sim.tick()),
        ["spawn a@a1-worker", "spawn d@a1-worker"]
    );
    sim.running("d")
        .advance(10)
        .finish_worker("a", Work::ProtectedPath);
    assert!(sim.tick().is_empty());
    assert_eq!(
        sim.stage("a").status,
        Status::Escalated {
            reason: Escalation::MaxAttempts {
                attempts: 1,
                last: FailReason::ProtectedPath {
                    path: "Cargo.lock".into()
                }
            },
            at: sim.now
        }
    );
    // In the same tick, the whole chain below it.
    for (id, dep) in [("b", "a"), ("c", "b")] {
        assert_eq!(
            sim.stage(id).status,
            Status::Escalated {
                reason: Escalation::DependencyFailed {
                    dependency: sid(dep)
                },
                at: sim.now
            },
            "{id}"
        );
    }
    assert_eq!(sim.status("d"), "working", "unrelated stages go on");
    sim.run_bounded(10);
}

// --- regressions of fixed engine bugs ------------------------------------------------------

/// Regression: reservations used to be the time left to a job's deadline, while a running
/// job's elapsed time is charged only when it finishes, so `spent + reserved` shrank while jobs
/// ran and a later check passed that should not. A job now reserves its whole timeout until it
/// is charged.
#[test]
fn wall_cap_holds_with_jobs_in_flight() {
    let mut sim = Sim::new()
        .lanes(2)
        .timeouts(1000, 600, 300)
        .cap_wall(2000)
        .card("a")
        .card("b");
    assert_eq!(sim.tick().len(), 2, "0 + 1000 + 1000 <= 2000");
    sim.running("a").at(900).finish_worker("b", Work::Done); // b ran 900 s
    let _ = sim.tick();
    sim.at(950).finish_acceptance("b", true);
    // Checked: 900 spent + 50 reserved (a's time left) + 600 <= 2000, so the verifier goes
    // out, although a has been running for 950 s of its 1000.
    let fx = sim.tick();
    sim.at(1000)
        .finish_wall("a", worker_result("a", 1, Work::Done), 1000);
    let _ = sim.tick();
    if !fx.is_empty() {
        sim.at(1550)
            .finish_wall("b", verifier_result("b", 1, Some(VerdictKind::Pass)), 600);
        let _ = sim.tick();
    }
    assert!(
        sim.budget.wall_secs <= 2000,
        "spent {} of a 2000 s cap",
        sim.budget.wall_secs
    );
}

/// A halt stops new attempts but never strands one in flight: its acceptance and verifier
/// jobs still run (the verifier only with budget room), and no new worker is dispatched.
#[test]
fn halt_stops_new_attempts_but_finishes_those_in_flight() {
    let mut sim = Sim::new().lanes(2).max_failures(1).card("a").card("b");
    assert_eq!(sim.tick().len(), 2);
    sim.running("b").at(10).finish_worker("a", Work::AgentError);
    let _ = sim.tick();
    assert!(sim.state.halted.is_some());
    sim.at(20).finish_worker("b", Work::Done);
    let fx = sim.tick();
    assert_eq!(show(&fx), vec!["spawn b@a1-acceptance".to_owned()]);
    assert!(
        !matches!(sim.state.stages[0].status, Status::Working { .. }),
        "no new worker for a"
    );
}

// --- properties -----------------------------------------------------------------------------

const PROP_CARDS: usize = 5;

/// What the shell sees for one stage's job in one tick of a random run.
#[derive(Debug, Clone, Copy)]
enum Seen {
    /// Leave the observation as it was.
    Keep,
    Absent,
    Running,
    Vanished,
    /// An outcome of another attempt, at the current job's place.
    Stale,
    /// The job finished; `pick` chooses the outcome, `wall_pct` its wall time as a share of
    /// the time since the job started (at most its timeout).
    Finished {
        pick: u8,
        wall_pct: u8,
    },
}

#[derive(Debug, Clone)]
struct Scenario {
    lanes: u32,
    cards: usize,
    /// Per card, a bit mask over the earlier cards it depends on (so always acyclic).
    deps: Vec<u8>,
    cap: Option<u64>,
    max_attempts: u32,
    attempts_cap: Option<u32>,
    max_failures: u32,
    ticks: Vec<(u64, Vec<Seen>)>,
}

fn seen_strategy() -> impl Strategy<Value = Seen> {
    prop_oneof![
        2 => Just(Seen::Keep),
        1 => Just(Seen::Absent),
        3 => Just(Seen::Running),
        1 => Just(Seen::Vanished),
        1 => Just(Seen::Stale),
        6 => (any::<u8>(), 0u8..=100).prop_map(|(pick, wall_pct)| Seen::Finished { pick, wall_pct }),
    ]
}

fn scenario_strategy() -> impl Strategy<Value = Scenario> {
    // Mostly short steps, so jobs get somewhere before the spawn grace runs out.
    let tick = (
        prop_oneof![3 => 0u64..60, 1 => 60u64..400],
        proptest::collection::vec(seen_strategy(), PROP_CARDS),
    );
    (
        1u32..=3,
        1usize..=PROP_CARDS,
        proptest::collection::vec(any::<u8>(), PROP_CARDS),
        prop_oneof![1 => Just(None), 3 => (0u64..3000).prop_map(Some)],
        1u32..=3,
        prop_oneof![2 => Just(None), 1 => (1u32..=3).prop_map(Some)],
        2u32..=8,
        proptest::collection::vec(tick, 0..=60),
    )
        .prop_map(
            |(lanes, cards, deps, cap, max_attempts, attempts_cap, max_failures, ticks)| Scenario {
                lanes,
                cards,
                deps,
                cap,
                max_attempts,
                attempts_cap,
                max_failures,
                ticks,
            },
        )
}

impl Sim {
    /// Applies one random observation to the job (or integration) stage `id` waits on.
    fn apply(&mut self, id: &str, seen: Seen) {
        let status = self.stage(id).status.clone();
        if let Status::Integrating { attempt, .. } = status {
            match seen {
                Seen::Finished { pick, .. } => {
                    self.integrated(id, pick % 8 != 7);
                }
                Seen::Stale => {
                    let other = if attempt > 1 {
                        attempt - 1
                    } else {
                        attempt + 1
                    };
                    let o = self.outcome(id, other, 0, integration_result(other, true));
                    self.seen.integrations.insert(sid(id), o);
                }
                Seen::Absent => {
                    self.seen.integrations.remove(&sid(id));
                }
                Seen::Keep | Seen::Running | Seen::Vanished => {}
            }
            return;
        }
        let Some((role, attempt)) = status.waiting_on() else {
            return;
        };
        match seen {
            Seen::Keep => {}
            Seen::Absent => {
                self.absent(id);
            }
            Seen::Running => {
                self.running(id);
            }
            Seen::Vanished => {
                self.vanished(id);
            }
            Seen::Stale => {
                let other = if attempt > 1 {
                    attempt - 1
                } else {
                    attempt + 1
                };
                let o = self.outcome(id, other, 10, worker_result(id, other, Work::Done));
                self.see(id, JobSeen::Finished(Box::new(o)));
            }
            Seen::Finished { pick, wall_pct } => {
                let timeout = match role {
                    Role::Worker => self.stage(id).timeouts.worker,
                    Role::Acceptance => self.stage(id).timeouts.acceptance,
                    Role::Verifier => self.stage(id).timeouts.verifier,
                };
                let wall = self.elapsed(id).min(timeout) * u64::from(wall_pct) / 100;
                let result = match role {
                    Role::Worker => {
                        let work = match pick % 12 {
                            0..=5 => Work::Done,
                            6 => Work::Blocked,
                            7 => Work::Partial,
                            8 => Work::NoEnvelope,
                            9 => Work::AgentError,
                            10 => Work::ProtectedPath,
                            _ => Work::SetupError,
                        };
                        worker_result(id, attempt, work)
                    }
                    Role::Acceptance => {
                        let commands = self.stage(id).acceptance.clone();
                        acceptance_result(&commands, pick % 4 != 3)
                    }
                    Role::Verifier => {
                        let kind = match pick % 8 {
                            0..=3 => Some(VerdictKind::Pass),
                            4 => Some(VerdictKind::Revise),
                            5 => Some(VerdictKind::Fail),
                            _ => None,
                        };
                        verifier_result(id, attempt, kind)
                    }
                };
                self.finish_wall(id, result, wall);
            }
        }
    }
}

/// Invariants (a)–(e) are checked by [`Sim::tick`] on every step; this adds (f): after the
/// random phase, always-passing outcomes bring every stage to a terminal status, or leave
/// the repo halted with no job running, within a bounded number of ticks.
fn run_scenario(sc: &Scenario) -> Result<(), TestCaseError> {
    let mut sim = Sim::new()
        .lanes(sc.lanes)
        .timeouts(300, 240, 120)
        .max_attempts(sc.max_attempts)
        .attempts_cap(sc.attempts_cap)
        .max_failures(sc.max_failures);
    if let Some(cap) = sc.cap {
        sim = sim.cap_wall(cap);
    }
    let ids: Vec<String> = (0..sc.cards).map(|i| format!("s{i}")).collect();
    for (i, id) in ids.iter().enumerate() {
        let deps: Vec<&str> = (0..i)
            .filter(|j| sc.deps[i] & (1 << j) != 0)
            .map(|j| ids[j].as_str())
            .collect();
        sim = sim.card_dep(id, &deps);
    }
    for (advance, seen) in &sc.ticks {
        sim.advance(*advance);
        for (id, s) in ids.iter().zip(seen) {
            sim.apply(id, *s);
        }
        let _ = sim.tick();
    }
    match sim.drive(100) {
        Ok(_) => Ok(()),
        Err(e) => Err(TestCaseError::fail(format!("(f) {e}"))),
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 96,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_runs_keep_invariants_and_settle(sc in scenario_strategy()) {
        run_scenario(&sc)?;
    }
}
