//! The one view model of a repository's night: what `status` (table and `--json`),
//! `agents`, `attach`, `report` and the notifications are built from. One place computes
//! "what needs you" ([`needs`]). Reads state, budget, outcomes and the host's awake record;
//! never writes a file, never kills, never decides a stage's fate. `status --json` is this
//! type serialised: a versioned interface (`version: 1`) whose fields are only ever added.

mod agents;
mod needs;

use jiff::Timestamp;
use schemars::JsonSchema;
use serde::Serialize;

use crate::config::Config;
use crate::engine::budget::Budget;
use crate::engine::observe::{JobSeen, Observations, Sleep};
use crate::engine::state::{Stage, State, Status};
use crate::ids::JobKey;
use crate::ids::stage_branch;
use crate::paths::Paths;

pub use agents::{AgentView, agents};
pub use needs::{NeedsKind, NeedsYou};

#[derive(Debug, Serialize, JsonSchema)]
pub struct StatusView {
    pub version: u32,
    pub seq: u64,
    pub halted: Option<serde_json::Value>,
    /// Jobs actually running (worker, acceptance or verifier); a stage in `retry`, `paused`
    /// or `integrating` has none.
    pub in_flight: usize,
    pub lanes: u32,
    pub stages: Vec<StageView>,
    pub budget: BudgetView,
    /// Families paused by a usage limit: `{family: {until, reported}}`.
    pub paused: serde_json::Value,
    /// What needs a person, most urgent first, each with the exact next command.
    pub needs_you: Vec<NeedsYou>,
    /// The host's scheduler: installed, last tick, stopped.
    pub scheduler: crate::awake::SchedulerView,
    /// When the machine slept (from the host's awake record, newest last).
    pub sleeps: Vec<crate::awake::Sleep>,
    /// The confinement in force: `{mode, confined, detail}`.
    pub confinement: ConfinementView,
    /// Configuration warnings that do not stop a night, e.g. an agent whose model has no
    /// price (its runs count $0.00 unless its CLI reports the cost).
    pub warnings: Vec<String>,
    /// Kills decided but not yet verified (re-executed by every tick, `cancel` and the
    /// heartbeat until the job's processes are proven gone).
    pub kills: Vec<crate::engine::state::KillIntent>,
    /// The time this view was built for.
    pub now: Timestamp,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct StageView {
    pub id: String,
    pub title: String,
    pub status: String,
    pub attempt: u32,
    pub attempts_used: u32,
    pub max_attempts: u32,
    pub branch: String,
    pub depends_on: Vec<String>,
    pub worker: String,
    pub verifier: String,
    /// Why it is escalated, retrying or halted-waiting; null otherwise.
    pub reason: Option<String>,
    /// For a stage waiting on a job: `running`, `starting`, `not started` (no tick began its start;
    /// the next one does), `finished`, `vanished` or `forged`.
    pub job: Option<String>,
    pub commit: Option<String>,
    pub wall_secs: u64,
    pub tokens: u64,
    pub usd: f64,
    /// Every attempt: its result, typed failure, and each agent run's usage and cost.
    pub attempts: Vec<AttemptView>,
    /// For a stage waiting on a job: awake seconds since it was dispatched.
    pub elapsed_secs: Option<u64>,
    /// For a stage waiting on a job: awake seconds left before its deadline (negative: past).
    pub deadline_left_secs: Option<i64>,
    /// For a stage waiting on a job: its log, relative to the repo root.
    pub log_path: Option<String>,
    /// The stage's verifier panel on its latest judged attempt: each member's vote
    /// (`pass`, `revise`, `fail`, or `pending`, `running`, `lost`, `cancelled`), findings and
    /// spend. Empty for a stage without a panel.
    pub panel: Vec<PanelVoteView>,
}

/// One panel member's vote.
#[derive(Debug, Serialize, JsonSchema)]
pub struct PanelVoteView {
    pub member: String,
    pub vote: String,
    pub findings: Vec<String>,
    /// Runs dispatched in this attempt.
    pub runs: u32,
    pub wall_secs: u64,
    pub tokens: u64,
    pub usd: f64,
}

/// The panel's latest round as votes (empty without a panel).
#[must_use]
pub fn panel_votes(s: &Stage) -> Vec<PanelVoteView> {
    use crate::engine::state::MemberState;
    let Some(round) = s.panel.as_ref().and_then(|p| p.rounds.last()) else {
        return Vec::new();
    };
    round
        .members
        .iter()
        .map(|m| PanelVoteView {
            member: m.member.clone(),
            vote: m.state.vote_name().to_owned(),
            findings: match &m.state {
                MemberState::Voted { findings, .. } => findings.clone(),
                MemberState::Lost { reason } => vec![reason.to_string()],
                _ => Vec::new(),
            },
            runs: m.runs,
            wall_secs: m.wall_secs,
            tokens: m.tokens,
            usd: m.usd,
        })
        .collect()
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct AttemptView {
    pub attempt: u32,
    /// `passed`, `failed`, `cancelled` or `in_flight`.
    pub result: String,
    /// The typed reason it failed (as in state.yaml), when it did.
    pub failure: Option<serde_json::Value>,
    pub reason: Option<String>,
    pub runs: Vec<RunView>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct RunView {
    pub role: String,
    pub agent: String,
    pub model: Option<String>,
    pub usage: Option<crate::agent::Usage>,
    pub usd: f64,
    pub cost_reported_by_cli: bool,
    pub outcome: String,
    pub failure: Option<crate::agent::failure::AgentFailure>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct BudgetView {
    pub tokens: u64,
    pub usd: f64,
    pub max_tokens: Option<u64>,
    pub max_usd: Option<f64>,
    pub families: std::collections::BTreeMap<String, crate::engine::budget::FamilySpend>,
    pub wall_secs: u64,
    pub max_wall_secs: Option<u64>,
    pub attempts: u64,
    pub consecutive_failures: u32,
    pub max_consecutive_failures: u32,
}

/// The confinement in force, as `status` and `doctor` say it.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ConfinementView {
    /// `confine:` of nightshift.yaml.
    pub mode: &'static str,
    /// Agents run under a kernel ruleset.
    pub confined: bool,
    pub detail: String,
}

fn confinement(config: &Config) -> ConfinementView {
    let support = crate::confine::support();
    let (_, detail) = crate::confine::describe(config.confine, &support);
    ConfinementView {
        mode: config.confine.as_str(),
        confined: config.confine == crate::config::ConfineMode::Strict && support.is_supported(),
        detail,
    }
}

/// Builds the view of a repository at `now`.
#[must_use]
pub fn build(
    paths: &Paths,
    config: &Config,
    state: &State,
    budget: &Budget,
    now: Timestamp,
) -> StatusView {
    let mut seen = crate::observe::observe(paths, state);
    let sleeps = crate::awake::sleeps();
    seen.sleeps.clone_from(&sleeps);
    let limits = config.limits();
    let stages: Vec<StageView> = state
        .stages
        .iter()
        .map(|s| stage_view(paths, s, &seen, budget, &limits, now))
        .collect();
    let scheduler = crate::awake::scheduler_view(now);
    let mut needs_you = needs::compute(state, &scheduler, now);
    let confinement = confinement(config);
    if !confinement.confined {
        needs_you.push(NeedsYou {
            kind: NeedsKind::Unconfined,
            stage: None,
            message: confinement.detail.clone(),
            next: (confinement.mode == "strict").then(|| crate::confine::HINT.to_owned()),
        });
    }
    StatusView {
        version: 1,
        seq: state.seq,
        halted: state.halted.as_ref().map(
            |h| serde_json::json!({ "reason": h.reason.to_string(), "cap": h.reason, "at": h.at }),
        ),
        in_flight: jobs_running(state),
        lanes: config.lanes,
        stages,
        paused: serde_json::to_value(&state.paused).unwrap_or_default(),
        budget: BudgetView {
            tokens: budget.usage.total(),
            usd: budget.usd,
            max_tokens: config.money.max_tokens,
            max_usd: config.money.max_usd,
            families: budget.families.clone(),
            wall_secs: budget.wall_secs,
            max_wall_secs: config.max_wall_secs,
            attempts: budget.attempts,
            consecutive_failures: state.consecutive_failures,
            max_consecutive_failures: config.max_consecutive_failures,
        },
        needs_you,
        scheduler,
        sleeps,
        confinement,
        warnings: config.unpriced_agents(),
        kills: state.kills.clone(),
        now,
    }
}

/// Jobs actually running: stages waiting on a worker, acceptance or verifier job. A stage in
/// `retry`, `paused` or `integrating` has no job, so it is not in flight.
fn jobs_running(state: &State) -> usize {
    state
        .stages
        .iter()
        .filter(|s| s.status.waiting_on().is_some())
        .count()
}

/// Elapsed and remaining awake time of the job a status waits on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobTiming {
    pub elapsed_secs: u64,
    pub deadline_left_secs: i64,
}

/// Timing of the job `status` waits on, in awake time (sleeps of the machine do not count).
#[must_use]
pub fn job_timing(status: &Status, sleeps: &[Sleep], now: Timestamp) -> Option<JobTiming> {
    let (since, deadline) = match status {
        Status::Working {
            since, deadline, ..
        }
        | Status::Checking {
            since, deadline, ..
        }
        | Status::Verifying {
            since, deadline, ..
        } => (*since, *deadline),
        _ => return None,
    };
    let slept = crate::engine::observe::slept_secs(sleeps, since, now);
    let elapsed = (now.as_second() - since.as_second() - slept).max(0);
    let budget = deadline.as_second() - since.as_second();
    Some(JobTiming {
        elapsed_secs: u64::try_from(elapsed).unwrap_or(0),
        deadline_left_secs: budget - elapsed,
    })
}

fn stage_view(
    paths: &Paths,
    s: &Stage,
    seen: &Observations,
    budget: &Budget,
    limits: &crate::engine::Limits,
    now: Timestamp,
) -> StageView {
    let spend = budget.stage_spend(&s.id);
    let reason = match &s.status {
        Status::Escalated { reason, .. } => Some(reason.to_string()),
        Status::Retry { reason, .. } => Some(reason.to_string()),
        Status::Paused { family, until, .. } => {
            Some(format!("{family} usage limit; resumes at {until}"))
        }
        _ => None,
    };
    let name = |j: Option<&JobSeen>| match j {
        Some(JobSeen::Running { .. }) => "running",
        Some(JobSeen::Finished(_)) => "finished",
        Some(JobSeen::Vanished) => "vanished",
        Some(JobSeen::Forged { .. }) => "forged",
        Some(JobSeen::Absent) | None => "starting",
        Some(JobSeen::Unstarted) => "not started",
    };
    let waiting = s.waiting_jobs();
    let job = if s.panel_round().is_some() {
        // A panel: `running` while any member runs, `starting` while one has yet to
        // register, `not started` while one was never begun, else `finished` (its votes
        // wait for the next tick).
        let names: Vec<&str> = waiting
            .iter()
            .map(|(k, ..)| name(seen.jobs.get(k)))
            .collect();
        Some(
            ["running", "starting", "not started", "vanished", "forged"]
                .into_iter()
                .find(|n| names.contains(n))
                .unwrap_or("finished")
                .to_owned(),
        )
    } else {
        s.status.waiting_on().map(|(role, attempt)| {
            name(seen.jobs.get(&JobKey::new(s.id.clone(), attempt, role))).to_owned()
        })
    };
    let timing = job_timing(&s.status, &seen.sleeps, now);
    let commit = match &s.status {
        Status::Done { commit, .. } => Some(commit.clone()),
        _ => None,
    };
    StageView {
        id: s.id.to_string(),
        title: s.title.clone(),
        status: s.status.name().to_owned(),
        attempt: s.attempt,
        attempts_used: s.attempts_used(),
        max_attempts: s.max_attempts,
        branch: stage_branch(&s.id),
        depends_on: s.depends_on.iter().map(ToString::to_string).collect(),
        worker: s.worker.clone(),
        verifier: s.verifier.clone(),
        reason,
        job,
        commit,
        wall_secs: spend.wall_secs,
        tokens: spend.usage.total(),
        usd: spend.usd,
        attempts: attempts_view(paths, s, limits),
        elapsed_secs: timing.map(|t| t.elapsed_secs),
        deadline_left_secs: timing.map(|t| t.deadline_left_secs),
        log_path: match waiting.first() {
            Some((key, ..)) => Some(paths.rel(&paths.log_file(key))),
            None => s.status.waiting_on().map(|(role, attempt)| {
                paths.rel(&paths.log_file(&JobKey::new(s.id.clone(), attempt, role)))
            }),
        },
        panel: panel_votes(s),
    }
}

fn attempts_view(paths: &Paths, s: &Stage, limits: &crate::engine::Limits) -> Vec<AttemptView> {
    use crate::engine::state::AttemptResult;
    (1..=s.attempt)
        .map(|n| {
            let rec = s.history.iter().rev().find(|h| h.attempt == n);
            let (result, failure, reason) = match rec.map(|r| &r.result) {
                Some(AttemptResult::Passed { .. }) => ("passed", None, None),
                Some(AttemptResult::Failed { reason }) => (
                    "failed",
                    serde_json::to_value(reason).ok(),
                    Some(reason.to_string()),
                ),
                Some(AttemptResult::Cancelled) => ("cancelled", None, None),
                None if s.status.in_flight() && s.attempt == n => ("in_flight", None, None),
                None => ("passed", None, None),
            };
            let runs = [crate::ids::Role::Worker, crate::ids::Role::Verifier]
                .into_iter()
                .filter_map(|role| run_view(paths, s, n, role, limits))
                .collect();
            AttemptView {
                attempt: n,
                result: result.into(),
                failure,
                reason,
                runs,
            }
        })
        .collect()
}

fn run_view(
    paths: &Paths,
    s: &Stage,
    attempt: u32,
    role: crate::ids::Role,
    limits: &crate::engine::Limits,
) -> Option<RunView> {
    use crate::engine::observe::OutcomeResult;
    let o = crate::observe::read_outcome(&paths.outcome_file(&JobKey {
        stage: s.id.clone(),
        attempt,
        role,
        member: None,
    }))?;
    let (run, setup) = match o.result {
        OutcomeResult::Worker {
            run, setup_error, ..
        }
        | OutcomeResult::Verifier {
            run, setup_error, ..
        } => (run, setup_error),
        OutcomeResult::Acceptance { .. } | OutcomeResult::Integration { .. } => return None,
    };
    let charge = crate::engine::step::charge_of(&run, o.wall_secs, &run.agent, limits);
    // A job that could not set up ran nothing: its outcome is the typed cause, never `ok`.
    let outcome = match (&run.failure, run.timed_out) {
        _ if setup.is_some() => setup.map(|e| e.cause.to_string()).unwrap_or_default(),
        (_, true) => "timeout".to_owned(),
        (Some(f), false) => serde_json::to_value(f)
            .ok()
            .and_then(|v| v["kind"].as_str().map(str::to_owned))
            .unwrap_or_default(),
        (None, false) => "ok".to_owned(),
    };
    Some(RunView {
        role: role.to_string(),
        agent: run.agent.clone(),
        model: run.model.clone(),
        usage: run.usage,
        usd: charge.usd,
        cost_reported_by_cli: run.cost_usd.is_some(),
        outcome,
        failure: run.failure.clone(),
    })
}
