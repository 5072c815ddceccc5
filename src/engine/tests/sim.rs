//! The engine simulator: one repo's state, budget and limits, what the shell observes, and a
//! hand-moved clock. Builders add cards and set limits; `finish_*`, `running`, `vanished` and
//! `absent` set observations; `tick` calls `step` once and checks the invariants. It only
//! drives the pure engine: it never touches the filesystem, a process or the real clock.

use std::collections::BTreeSet;

use jiff::{SignedDuration, Timestamp};

use super::invariants::check_step;
use super::outcomes::{acceptance_result, integration_result, verifier_result, worker_result};
use crate::config::{Policy, Timeouts};
use crate::engine::budget::Budget;
use crate::engine::effect::Effect;
use crate::engine::observe::{JobSeen, OUTCOME_VERSION, Observations, Outcome, OutcomeResult};
use crate::engine::ops;
use crate::engine::state::{HaltReason, KillIntent, Stage, State, Status};
use crate::engine::step::{Limits, step};
use crate::envelope::VerdictKind;
use crate::ids::{JobKey, Role, StageId};

/// 2026-01-01T00:00:00Z: the simulated clock starts here.
pub(super) const START: i64 = 1_767_225_600;
pub(super) const TIMEOUTS: Timeouts = Timeouts {
    worker: 1800,
    verifier: 900,
    acceptance: 600,
};
pub(super) const PGID: i32 = 4242;
pub(super) const BASE: &str = "main";
pub(super) const INTEGRATION: &str = "nightshift/integration";
pub(super) const FINDING: &str = "handle the empty input";

pub(super) fn sid(s: &str) -> StageId {
    StageId::new(s).expect("valid stage id")
}

pub(super) fn at_secs(base: Timestamp, secs: i64) -> Timestamp {
    base.checked_add(SignedDuration::from_secs(secs))
        .expect("simulated time in range")
}

/// How a worker job ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Work {
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
pub(super) enum Settled {
    /// Every stage is done, escalated or cancelled.
    AllTerminal,
    /// The repo is halted and no job is running (what is left waits for an operator).
    Halted,
}

/// One repo, its clock and what the shell sees; see the module docs.
pub(super) struct Sim {
    pub(super) state: State,
    pub(super) budget: Budget,
    pub(super) limits: Limits,
    pub(super) seen: Observations,
    pub(super) start: Timestamp,
    pub(super) now: Timestamp,
    pub(super) max_attempts: u32,
    pub(super) timeouts: Timeouts,
    /// Every job spawned so far (invariant (a) is checked against it).
    pub(super) spawned: BTreeSet<JobKey>,
    /// Journal lines of the last tick.
    pub(super) events: Vec<String>,
    /// Whether the last tick was idle.
    pub(super) idle: bool,
    pub(super) ticks: usize,
    /// Kills stay unverified (the shell could not prove the processes gone).
    pub(super) hold_kills: bool,
}

impl Sim {
    pub(super) fn new() -> Self {
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
            hold_kills: false,
        }
    }

    // --- building -----------------------------------------------------------------------

    pub(super) fn lanes(mut self, n: u32) -> Self {
        self.limits.lanes = n;
        self
    }

    pub(super) fn cap_wall(mut self, secs: u64) -> Self {
        self.limits.max_wall_secs = Some(secs);
        self
    }

    pub(super) fn max_failures(mut self, n: u32) -> Self {
        self.limits.max_consecutive_failures = n;
        self
    }

    pub(super) fn attempts_cap(mut self, cap: Option<u32>) -> Self {
        self.limits.max_attempts_per_stage = cap;
        self
    }

    /// Sets the cards' `max_attempts` (those added so far and those added later).
    pub(super) fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n;
        for s in &mut self.state.stages {
            s.max_attempts = n;
        }
        self
    }

    /// Sets the cards' timeouts (those added so far and those added later).
    pub(super) fn timeouts(mut self, worker: u64, verifier: u64, acceptance: u64) -> Self {
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

    pub(super) fn card(self, id: &str) -> Self {
        self.card_dep(id, &[])
    }

    pub(super) fn card_dep(mut self, id: &str, deps: &[&str]) -> Self {
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
            panel: None,
            card_pack: None,
        };
        ops::add_stage(&mut self.state, stage).expect("add_stage");
        self
    }

    // --- the clock ----------------------------------------------------------------------

    /// Sets the clock to `secs` seconds after the start.
    pub(super) fn at(&mut self, secs: i64) -> &mut Self {
        self.now = at_secs(self.start, secs);
        self
    }

    pub(super) fn at_minute(&mut self, m: i64) -> &mut Self {
        self.at(m * 60)
    }

    pub(super) fn advance(&mut self, secs: u64) -> &mut Self {
        self.now = at_secs(self.now, i64::try_from(secs).expect("small advance"));
        self
    }

    // --- looking ------------------------------------------------------------------------

    pub(super) fn stage(&self, id: &str) -> &Stage {
        self.state
            .stage(&sid(id))
            .unwrap_or_else(|| panic!("no stage {id}"))
    }

    pub(super) fn status(&self, id: &str) -> &'static str {
        self.stage(id).status.name()
    }

    pub(super) fn all_terminal(&self) -> bool {
        self.state.stages.iter().all(|s| s.status.terminal())
    }

    pub(super) fn halt_reason(&self) -> Option<&HaltReason> {
        self.state.halted.as_ref().map(|h| &h.reason)
    }

    /// The job the stage waits on now.
    pub(super) fn waiting_job(&self, id: &str) -> JobKey {
        let stage = self.stage(id);
        let (role, attempt) = stage
            .status
            .waiting_on()
            .unwrap_or_else(|| panic!("{id} is {}, not waiting on a job", stage.status.name()));
        JobKey {
            stage: stage.id.clone(),
            attempt,
            role,
            member: None,
        }
    }

    /// Seconds since the stage's current job was started.
    pub(super) fn elapsed(&self, id: &str) -> u64 {
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
    pub(super) fn outcome(
        &self,
        id: &str,
        attempt: u32,
        wall_secs: u64,
        result: OutcomeResult,
    ) -> Outcome {
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

    pub(super) fn see(&mut self, id: &str, seen: JobSeen) -> &mut Self {
        let job = self.waiting_job(id);
        self.seen.jobs.insert(job, seen);
        self
    }

    /// The current job of `id` finished after running since its status began.
    pub(super) fn finish(&mut self, id: &str, result: OutcomeResult) -> &mut Self {
        let wall = self.elapsed(id);
        self.finish_wall(id, result, wall)
    }

    pub(super) fn finish_wall(
        &mut self,
        id: &str,
        result: OutcomeResult,
        wall_secs: u64,
    ) -> &mut Self {
        let attempt = self.waiting_job(id).attempt;
        let outcome = self.outcome(id, attempt, wall_secs, result);
        self.see(id, JobSeen::Finished(Box::new(outcome)))
    }

    pub(super) fn finish_worker(&mut self, id: &str, work: Work) -> &mut Self {
        let attempt = self.waiting_job(id).attempt;
        self.finish(id, worker_result(id, attempt, work))
    }

    pub(super) fn finish_acceptance(&mut self, id: &str, pass: bool) -> &mut Self {
        let commands = self.stage(id).acceptance.clone();
        self.finish(id, acceptance_result(&commands, pass))
    }

    pub(super) fn finish_verifier(&mut self, id: &str, kind: VerdictKind) -> &mut Self {
        let attempt = self.waiting_job(id).attempt;
        self.finish(id, verifier_result(id, attempt, Some(kind)))
    }

    pub(super) fn integrated(&mut self, id: &str, ok: bool) -> &mut Self {
        let Status::Integrating { attempt, .. } = self.stage(id).status else {
            panic!("{id} is {}, not integrating", self.status(id));
        };
        let outcome = self.outcome(id, attempt, 0, integration_result(attempt, ok));
        self.seen.integrations.insert(sid(id), outcome);
        self
    }

    pub(super) fn running(&mut self, id: &str) -> &mut Self {
        self.see(id, JobSeen::Running { pgids: vec![PGID] })
    }

    pub(super) fn vanished(&mut self, id: &str) -> &mut Self {
        self.see(id, JobSeen::Vanished)
    }

    pub(super) fn absent(&mut self, id: &str) -> &mut Self {
        let job = self.waiting_job(id);
        self.seen.jobs.remove(&job);
        self
    }

    // --- ticking ------------------------------------------------------------------------

    /// One tick: `step` with the current observations and clock; keeps the new state and
    /// budget, checks the invariants, and returns the effects.
    pub(super) fn tick(&mut self) -> Vec<Effect> {
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
            &self.seen,
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
        // The shell carries out each kill and, unless a test holds them, verifies it.
        self.seen.kills_done.clear();
        if !self.hold_kills {
            self.seen.kills_done = self.state.kills.iter().map(KillIntent::job).collect();
        }
        next.effects
    }

    /// Gives every job the state waits on (and every integration) a passing outcome.
    pub(super) fn pass_everything(&mut self) {
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
    pub(super) fn job_running(&self) -> bool {
        self.state.stages.iter().any(|s| match s.status {
            Status::Integrating { .. } => true,
            _ => s.status.waiting_on().is_some_and(|(role, attempt)| {
                let job = JobKey {
                    stage: s.id.clone(),
                    attempt,
                    role,
                    member: None,
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
    pub(super) fn drive(&mut self, bound: usize) -> Result<(Settled, usize), String> {
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
    pub(super) fn run_bounded(&mut self, bound: usize) -> usize {
        match self.drive(bound) {
            Ok((Settled::AllTerminal, n)) => n,
            Ok((Settled::Halted, _)) => panic!("halted: {:?}", self.halt_reason()),
            Err(e) => panic!("{e}"),
        }
    }

    /// Runs one passing attempt of `id` from working to done, one tick per step, and returns
    /// each tick's effects.
    pub(super) fn pass_attempt(&mut self, id: &str) -> Vec<Vec<Effect>> {
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
