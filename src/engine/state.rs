//! `state/state.yaml` as types: the stages, their statuses (named for what they wait on, each
//! carrying its own data), typed failure and escalation reasons, and the repo-level halt. The
//! "keep the first halt reason" rule lives here, in [`State::halt`], and nowhere else.

use jiff::Timestamp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::agent::failure::AgentFailure;
use crate::config::Timeouts;
use crate::ids::{Role, StageId};

/// The most stages a repository holds (`add-stage` refuses more). Far above any real queue;
/// the state's readers are sized so that everything under it loads.
pub const MAX_STAGES: usize = 50_000;

/// The format `state.yaml` is written in. Version 1 held every stage in full; version 2 holds
/// only the hot ones, the rest being files under `state/stages/` ([`crate::store::split`]).
/// Both are read.
pub const STATE_VERSION: u32 = 2;

/// The whole of `state/state.yaml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct State {
    pub version: u32,
    /// Bumped by every change; the ledger commit of a change carries the same number.
    pub seq: u64,
    pub halted: Option<Halt>,
    pub consecutive_failures: u32,
    /// On disk: how many stages have a file under `state/stages/` (every stage, numbered by the
    /// order it was added); a file numbered at or past this is a crashed `add-stage`'s leftover.
    #[serde(default)]
    pub stage_count: u64,
    /// On disk: the seq of the last change that wrote a stage file (the key of their cache).
    #[serde(default)]
    pub cold_stamp: u64,
    /// On disk: the stage packs, by the number of their first stage: a large `add-stage`
    /// writes its new stages into one file, `state/stages/pack-<first>.jsonl`, instead of a
    /// file each (a stage's own file, written when it changes later, wins over its entry).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub packs: Vec<u64>,
    /// In memory: every stage, in the order added. On disk (`state.yaml`): only the hot ones
    /// (in flight, retrying, escalated, or queued again after an attempt); the others are read
    /// from their files under `state/stages/`.
    pub stages: Vec<Stage>,
    /// Model families paused by a usage limit, until their reset time.
    #[serde(default)]
    pub paused: std::collections::BTreeMap<String, FamilyPause>,
    /// Kills decided but not yet verified: re-executed by every tick, `cancel` and the
    /// heartbeat until the job's processes are proven gone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kills: Vec<KillIntent>,
    /// The events of the change that produced this `seq` (the ledger commit's message).
    pub journal: Vec<String>,
    /// What the files held when this state was read (never serialised).
    #[serde(skip)]
    pub loaded: crate::store::split::Loaded,
}

/// A decided kill of one job's processes, recorded like a dispatch: committed first, then
/// executed, and kept until the processes are verified gone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KillIntent {
    pub stage: StageId,
    pub attempt: u32,
    pub role: Role,
    pub reason: KillReason,
    pub decided_at: Timestamp,
    /// A panel member's job; absent for every other job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<crate::ids::Member>,
}

impl KillIntent {
    #[must_use]
    pub fn new(job: crate::ids::JobKey, reason: KillReason, decided_at: Timestamp) -> Self {
        Self {
            stage: job.stage,
            attempt: job.attempt,
            role: job.role,
            reason,
            decided_at,
            member: job.member,
        }
    }

    #[must_use]
    pub fn job(&self) -> crate::ids::JobKey {
        crate::ids::JobKey {
            stage: self.stage.clone(),
            attempt: self.attempt,
            role: self.role,
            member: self.member.clone(),
        }
    }
}

/// Why a job is to be killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum KillReason {
    /// Past its deadline.
    Timeout,
    /// Its stage was cancelled.
    Cancelled,
    /// Its wrapper died: whatever it left behind.
    Crashed,
    /// It wrote an outcome without a valid seal.
    Forged,
    /// A panel member still running when its panel was decided.
    Decided,
}

impl std::fmt::Display for KillReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Timeout => "timeout",
            Self::Cancelled => "cancelled",
            Self::Crashed => "crashed",
            Self::Forged => "forged",
            Self::Decided => "panel decided",
        })
    }
}

/// A family paused by a usage limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FamilyPause {
    pub until: Timestamp,
    /// True when the CLI reported the reset time; false when nightshift guessed it.
    pub reported: bool,
}

impl State {
    #[must_use]
    pub fn new() -> Self {
        Self {
            version: STATE_VERSION,
            seq: 0,
            halted: None,
            consecutive_failures: 0,
            stage_count: 0,
            cold_stamp: 0,
            packs: Vec::new(),
            stages: Vec::new(),
            paused: std::collections::BTreeMap::new(),
            kills: Vec::new(),
            journal: Vec::new(),
            loaded: crate::store::split::Loaded::default(),
        }
    }

    #[must_use]
    pub fn stage(&self, id: &StageId) -> Option<&Stage> {
        self.stages.iter().find(|s| &s.id == id)
    }

    /// The stage at index `i` of another version of this state, found by its place first:
    /// stages are only ever appended, so it is nearly always there (constant time, not a
    /// search of the whole queue).
    #[must_use]
    pub fn same_stage(&self, i: usize, id: &StageId) -> Option<&Stage> {
        match self.stages.get(i) {
            Some(s) if &s.id == id => Some(s),
            _ => self.stage(id),
        }
    }

    /// Halts the repo unless it is already halted: the first, specific reason is kept.
    /// Returns true when this call halted it.
    pub fn halt(&mut self, reason: HaltReason, at: Timestamp) -> bool {
        if self.halted.is_some() {
            return false;
        }
        self.halted = Some(Halt { reason, at });
        true
    }

    /// Lanes in use: one per stage in flight, and one more per running panel member beyond
    /// the first.
    #[must_use]
    pub fn in_flight(&self) -> usize {
        self.stages.iter().map(Stage::lanes).sum()
    }

    /// The stage's own acceptance commands, after those of every stage it (transitively) builds
    /// on that is done: a stage must not break what came before it.
    #[must_use]
    pub fn regression_commands(&self, stage: &Stage) -> Vec<String> {
        let mut seen = Vec::new();
        let mut todo = stage.depends_on.clone();
        while let Some(d) = todo.pop() {
            if seen.contains(&d) {
                continue;
            }
            if let Some(s) = self.stage(&d) {
                todo.extend(s.depends_on.iter().cloned());
            }
            seen.push(d);
        }
        let mut out: Vec<String> = Vec::new();
        for s in self
            .stages
            .iter()
            .filter(|s| seen.contains(&s.id) && matches!(s.status, Status::Done { .. }))
        {
            for c in &s.acceptance {
                if !out.contains(c) {
                    out.push(c.clone());
                }
            }
        }
        for c in &stage.acceptance {
            if !out.contains(c) {
                out.push(c.clone());
            }
        }
        out
    }
}

impl Default for State {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Halt {
    pub reason: HaltReason,
    pub at: Timestamp,
}

/// Why the repo stopped dispatching. Only the first one is kept.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum HaltReason {
    /// `budget.max_wall_time`: spent + reserved + the next job's timeout would pass the cap.
    WallTime {
        spent_secs: u64,
        reserved_secs: u64,
        estimate_secs: u64,
        cap_secs: u64,
    },
    /// `budget.max_consecutive_failures` attempts failed in a row.
    ConsecutiveFailures { count: u32, cap: u32 },
    /// `budget.max_tokens` (or `host.max_tokens` when `host`) would be passed.
    Tokens {
        spent: u64,
        reserved: u64,
        estimate: u64,
        cap: u64,
        host: bool,
    },
    /// `budget.max_usd` (or `host.max_usd` when `host`) would be passed. Micro-dollars.
    Usd {
        spent_micros: u64,
        reserved_micros: u64,
        estimate_micros: u64,
        cap_micros: u64,
        host: bool,
    },
}

impl std::fmt::Display for HaltReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use crate::config::format_duration as d;
        let scope = |host: bool| if host { "host" } else { "budget" };
        #[expect(clippy::cast_precision_loss, reason = "display only")]
        let usd = |m: u64| format!("${:.2}", m as f64 / 1_000_000.0);
        match self {
            Self::WallTime {
                spent_secs,
                reserved_secs,
                estimate_secs,
                cap_secs,
            } => write!(
                f,
                "budget.max_wall_time: {} spent + {} reserved + {} next > cap {}",
                d(*spent_secs),
                d(*reserved_secs),
                d(*estimate_secs),
                d(*cap_secs)
            ),
            Self::ConsecutiveFailures { count, cap } => write!(
                f,
                "budget.max_consecutive_failures: {count} attempts failed in a row (cap {cap})"
            ),
            Self::Tokens {
                spent,
                reserved,
                estimate,
                cap,
                host,
            } => write!(
                f,
                "{}.max_tokens: {spent} spent + {reserved} reserved + {estimate} next > cap {cap}",
                scope(*host)
            ),
            Self::Usd {
                spent_micros,
                reserved_micros,
                estimate_micros,
                cap_micros,
                host,
            } => write!(
                f,
                "{}.max_usd: {} spent + {} reserved + {} next > cap {}",
                scope(*host),
                usd(*spent_micros),
                usd(*reserved_micros),
                usd(*estimate_micros),
                usd(*cap_micros)
            ),
        }
    }
}

/// One stage: the card's settings as validated at `add-stage`, and where it is now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    pub id: StageId,
    pub title: String,
    /// `sha256:` of the card text taken at `add-stage` (the copy in `state/cards/`).
    pub card_hash: String,
    /// Where the card came from, relative to the repo root.
    pub card_path: String,
    pub worker: String,
    pub verifier: String,
    /// The card's fallback worker for a usage limit.
    #[serde(default)]
    pub fallback: Option<String>,
    pub depends_on: Vec<StageId>,
    pub acceptance: Vec<String>,
    pub protected: Vec<String>,
    pub max_attempts: u32,
    pub timeouts: Timeouts,
    pub max_wall_secs: Option<u64>,
    /// The card's token cap for this stage.
    #[serde(default)]
    pub max_tokens: Option<u64>,
    /// The card's USD cap for this stage.
    #[serde(default)]
    pub max_usd: Option<f64>,
    /// The number of the latest attempt (0 before the first).
    pub attempt: u32,
    /// `attempt` at the last requeue: attempts used since = `attempt - attempt_floor`.
    pub attempt_floor: u32,
    pub status: Status,
    /// What went wrong last time, for the next attempt's prompt.
    pub findings: Vec<String>,
    pub history: Vec<AttemptRecord>,
    pub added_at: Timestamp,
    /// The stage's verifier panel, when it has one, with every round it judged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub panel: Option<Panel>,
    /// The file under `state/cards/` that holds the card copy when it is one of a batch's
    /// (`add-stage` of many cards writes them all into one file); none: `state/cards/<id>.md`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub card_pack: Option<String>,
}

impl Stage {
    #[must_use]
    pub fn attempts_used(&self) -> u32 {
        self.attempt.saturating_sub(self.attempt_floor)
    }

    /// The panel round the stage waits on: its current attempt's, while verifying and
    /// undecided.
    #[must_use]
    pub fn panel_round(&self) -> Option<&PanelRound> {
        let Status::Verifying { attempt, .. } = self.status else {
            return None;
        };
        self.panel
            .as_ref()?
            .rounds
            .last()
            .filter(|r| r.attempt == attempt && r.decided.is_none())
    }

    /// The panel round the stage waits on, to change.
    pub fn panel_round_mut(&mut self) -> Option<&mut PanelRound> {
        let Status::Verifying { attempt, .. } = self.status else {
            return None;
        };
        self.panel
            .as_mut()?
            .rounds
            .last_mut()
            .filter(|r| r.attempt == attempt && r.decided.is_none())
    }

    /// Lanes the stage holds: one while in flight, one per running panel member (at least
    /// one).
    #[must_use]
    pub fn lanes(&self) -> usize {
        if !self.status.in_flight() {
            return 0;
        }
        self.panel_round().map_or(1, |r| r.running().count().max(1))
    }

    /// Every job the stage waits on, with when it started and its deadline: the job of its
    /// status, or each running panel member.
    #[must_use]
    pub fn waiting_jobs(&self) -> Vec<(crate::ids::JobKey, Timestamp, Timestamp)> {
        if let Some(round) = self.panel_round() {
            return round
                .running()
                .map(|(m, run, since, deadline)| (round.key(&self.id, m, run), since, deadline))
                .collect();
        }
        match (&self.status, self.status.waiting_on()) {
            (
                Status::Working {
                    since, deadline, ..
                }
                | Status::Checking {
                    since, deadline, ..
                }
                | Status::Verifying {
                    since, deadline, ..
                },
                Some((role, attempt)),
            ) => vec![(
                crate::ids::JobKey::new(self.id.clone(), attempt, role),
                *since,
                *deadline,
            )],
            _ => Vec::new(),
        }
    }
}

/// A stage's verifier panel: several verifiers, each its own job, of which `quorum` must say
/// `pass` (see `engine::panel`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Panel {
    /// The members' agent names.
    pub members: Vec<String>,
    pub quorum: u32,
    /// The panel judges an attempt only when a path of its deliverable matches one of these
    /// (`panel_when.paths`); empty: always.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub when_paths: Vec<String>,
    /// One round per attempt the panel judged, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rounds: Vec<PanelRound>,
}

/// One attempt judged by the panel: every member's vote, criteria, findings and spend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PanelRound {
    pub attempt: u32,
    pub members: Vec<PanelMember>,
    /// The panel's decision, once taken (`None` while it waits on its members).
    #[serde(default)]
    pub decided: Option<PanelOutcome>,
}

impl PanelRound {
    /// The running members: (name, run, since, deadline).
    pub fn running(&self) -> impl Iterator<Item = (&str, u32, Timestamp, Timestamp)> {
        self.members.iter().filter_map(|m| match m.state {
            MemberState::Running {
                since, deadline, ..
            } => Some((m.member.as_str(), m.runs, since, deadline)),
            _ => None,
        })
    }

    /// The job of one member's run.
    #[must_use]
    pub fn key(&self, stage: &StageId, member: &str, run: u32) -> crate::ids::JobKey {
        crate::ids::JobKey {
            stage: stage.clone(),
            attempt: self.attempt,
            role: Role::Verifier,
            member: Some(crate::ids::Member {
                name: member.to_owned(),
                run,
            }),
        }
    }
}

/// What the panel decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PanelOutcome {
    Pass,
    Revise,
    Fail,
    /// No pass quorum was possible and no member voted against (members without a vote).
    NoQuorum,
    /// The attempt failed for another reason (a member wrote outside its workspace, the
    /// operator cancelled).
    Void,
}

/// One member of a panel round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PanelMember {
    /// The member's agent.
    pub member: String,
    /// Runs dispatched so far in this round (a crashed or timed-out run is re-dispatched
    /// alone).
    pub runs: u32,
    pub state: MemberState,
    /// What this member's runs cost (a cancelled run: its wall time so far and the estimate).
    #[serde(default)]
    pub wall_secs: u64,
    #[serde(default)]
    pub tokens: u64,
    #[serde(default)]
    pub usd: f64,
}

/// Where one member is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum MemberState {
    /// Waits for a free lane (or its re-dispatch).
    Pending,
    /// Its run `runs` is out.
    Running {
        since: Timestamp,
        deadline: Timestamp,
    },
    /// Its validated verdict.
    Voted {
        vote: crate::envelope::VerdictKind,
        #[serde(default)]
        criteria: Vec<crate::envelope::Criterion>,
        #[serde(default)]
        findings: Vec<String>,
    },
    /// Every run it was allowed crashed or timed out: no vote.
    Lost { reason: FailReason },
    /// Still running when the panel decided; its job was cancelled.
    Cancelled,
}

impl MemberState {
    /// The vote, or what stands in for one: `pending`, `running`, `lost`, `cancelled`.
    #[must_use]
    pub fn vote_name(&self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running { .. } => "running",
            Self::Voted { vote, .. } => match vote {
                crate::envelope::VerdictKind::Pass => "pass",
                crate::envelope::VerdictKind::Revise => "revise",
                crate::envelope::VerdictKind::Fail => "fail",
            },
            Self::Lost { .. } => "lost",
            Self::Cancelled => "cancelled",
        }
    }
}

/// Where a stage is, named for what it waits on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Status {
    /// Waits for its dependencies, a free lane and budget.
    Queued,
    /// Waits for the worker job of `attempt`.
    Working {
        attempt: u32,
        since: Timestamp,
        deadline: Timestamp,
    },
    /// Waits for the acceptance job of `attempt`.
    Checking {
        attempt: u32,
        since: Timestamp,
        deadline: Timestamp,
    },
    /// Waits for the verifier job of `attempt`.
    Verifying {
        attempt: u32,
        since: Timestamp,
        deadline: Timestamp,
    },
    /// Waits for the deliverable commit and integration of `attempt`.
    Integrating {
        attempt: u32,
        since: Timestamp,
    },
    /// `attempt` failed; waits for budget to dispatch the next one.
    Retry {
        attempt: u32,
        reason: FailReason,
    },
    /// `attempt` hit `family`'s usage limit; the next attempt (not counted) waits for `until`.
    Paused {
        attempt: u32,
        family: String,
        until: Timestamp,
    },
    Done {
        attempt: u32,
        commit: String,
        at: Timestamp,
    },
    Escalated {
        reason: Escalation,
        at: Timestamp,
    },
    Cancelled {
        at: Timestamp,
    },
}

impl Status {
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Working { .. } => "working",
            Self::Checking { .. } => "checking",
            Self::Verifying { .. } => "verifying",
            Self::Integrating { .. } => "integrating",
            Self::Retry { .. } => "retry",
            Self::Paused { .. } => "paused",
            Self::Done { .. } => "done",
            Self::Escalated { .. } => "escalated",
            Self::Cancelled { .. } => "cancelled",
        }
    }

    #[must_use]
    pub fn in_flight(&self) -> bool {
        match self {
            Self::Working { .. }
            | Self::Checking { .. }
            | Self::Verifying { .. }
            | Self::Integrating { .. }
            | Self::Retry { .. }
            | Self::Paused { .. } => true,
            Self::Queued | Self::Done { .. } | Self::Escalated { .. } | Self::Cancelled { .. } => {
                false
            }
        }
    }

    #[must_use]
    pub fn terminal(&self) -> bool {
        matches!(
            self,
            Self::Done { .. } | Self::Escalated { .. } | Self::Cancelled { .. }
        )
    }

    /// The job this status waits on, if any.
    #[must_use]
    pub fn waiting_on(&self) -> Option<(Role, u32)> {
        match self {
            Self::Working { attempt, .. } => Some((Role::Worker, *attempt)),
            Self::Checking { attempt, .. } => Some((Role::Acceptance, *attempt)),
            Self::Verifying { attempt, .. } => Some((Role::Verifier, *attempt)),
            Self::Queued
            | Self::Integrating { .. }
            | Self::Retry { .. }
            | Self::Paused { .. }
            | Self::Done { .. }
            | Self::Escalated { .. }
            | Self::Cancelled { .. } => None,
        }
    }
}

/// Why one attempt failed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum FailReason {
    /// The job never registered within the spawn grace period.
    SpawnFailed { role: Role },
    /// The job's processes are gone and it left no outcome.
    Crashed { role: Role },
    /// The job ran past its deadline and was killed.
    TimedOut { role: Role, after_secs: u64 },
    /// The agent run failed, typed (auth, usage limit, API error, crash, ...).
    Agent { role: Role, failure: AgentFailure },
    /// The worker's final message had no handoff envelope.
    NoEnvelope { detail: String },
    /// The envelope was there but unparseable, invalid, or for another attempt.
    InvalidEnvelope { detail: String },
    /// The worker said `blocked` or `partial`.
    NotDone { status: String, summary: String },
    /// The worker changed a protected path.
    ProtectedPath { path: String },
    /// An acceptance command failed.
    AcceptanceFailed {
        command: String,
        exit: Option<i32>,
        timed_out: bool,
        /// Lines of its output reporting a refused write (`Permission denied`, `Read-only
        /// file system`): under confinement, the write it tried outside its workspace.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        refused: Vec<String>,
    },
    /// The verifier's verdict was missing, unparseable or for another attempt.
    InvalidVerdict { detail: String },
    /// The verifier said `revise`.
    Revise { findings: Vec<String> },
    /// The verifier said `fail`.
    Rejected { findings: Vec<String> },
    /// The stage worktree could not be prepared (recorded by earlier versions; a job's setup
    /// failures are now [`FailReason::Setup`]).
    Worktree { detail: String },
    /// The job could not set its role up (typed by `cause`): an infrastructure failure, not a
    /// verdict on the work. Retried without counting against the stage's attempts or the
    /// consecutive-failure cap; [`MAX_SETUP_FAILURES`] in a row escalate.
    Setup {
        role: Role,
        cause: SetupCause,
        detail: String,
    },
    /// A job's processes wrote a file outside its own workspace (named).
    Escaped { role: Role, path: String },
    /// The verifier changed the workspace it reviews; its verdict is void.
    VerifierWrote { paths: Vec<String> },
    /// The worker's snapshot holds the value of a known secret (the file and the variable
    /// are named, never the value).
    SecretInDeliverable { path: String, name: String },
    /// An outcome file without a valid seal: not written by its own job.
    ForgedOutcome { path: String },
}

impl FailReason {
    /// nightshift's own failure to run the attempt, not the agent's: a typed setup failure, or
    /// a job that never started. Retried without counting against the stage's attempts or the
    /// consecutive-failure cap; [`MAX_SETUP_FAILURES`] in a row escalate.
    #[must_use]
    pub fn is_infrastructure(&self) -> bool {
        matches!(self, Self::Setup { .. } | Self::SpawnFailed { .. })
    }
}

impl std::fmt::Display for FailReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::SpawnFailed { role } => write!(f, "the {role} job never started"),
            Self::Crashed { role } => write!(f, "the {role} job died without an outcome"),
            Self::TimedOut { role, after_secs } => {
                write!(
                    f,
                    "the {role} ran past its {} timeout",
                    crate::config::format_duration(*after_secs)
                )
            }
            Self::Agent { role, failure } => write!(f, "the {role} agent failed: {failure}"),
            Self::NoEnvelope { detail } => write!(f, "no handoff envelope: {detail}"),
            Self::InvalidEnvelope { detail } => write!(f, "invalid handoff envelope: {detail}"),
            Self::NotDone { status, summary } => write!(f, "the worker said `{status}`: {summary}"),
            Self::ProtectedPath { path } => write!(f, "the worker changed protected path `{path}`"),
            Self::AcceptanceFailed {
                command,
                exit,
                timed_out,
                refused,
            } => {
                match (timed_out, exit) {
                    (true, _) => write!(f, "acceptance `{command}` timed out")?,
                    (false, Some(c)) => write!(f, "acceptance `{command}` exited {c}")?,
                    (false, None) => write!(f, "acceptance `{command}` was killed by a signal")?,
                }
                match refused.first() {
                    Some(line) => write!(f, "; write refused: {line}"),
                    None => Ok(()),
                }
            }
            Self::InvalidVerdict { detail } => write!(f, "no valid verdict: {detail}"),
            Self::Revise { .. } => write!(f, "the verifier asked for a revision"),
            Self::Rejected { .. } => write!(f, "the verifier said `fail`"),
            Self::Worktree { detail } => {
                write!(f, "the stage worktree could not be prepared: {detail}")
            }
            Self::Setup {
                role,
                cause,
                detail,
            } => write!(f, "the {role} job could not be set up ({cause}): {detail}"),
            Self::Escaped { role, path } => {
                write!(f, "the {role} wrote outside its workspace: `{path}`")
            }
            Self::VerifierWrote { paths } => write!(
                f,
                "the verifier changed the workspace (verdict void): `{}`",
                paths.join("`, `")
            ),
            Self::SecretInDeliverable { path, name } => {
                write!(f, "the deliverable holds the secret ${name} in `{path}`")
            }
            Self::ForgedOutcome { path } => {
                write!(f, "refused `{path}`: not written by its own job")
            }
        }
    }
}

/// Setup failures in a row (of one stage) after which it escalates: a missing agent command or
/// a broken workspace does not mend itself.
pub const MAX_SETUP_FAILURES: u32 = 3;

/// Why a job could not set its role up, one cause per variant of the job wrapper's `JobError`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum SetupCause {
    /// `nightshift.yaml`, `state.yaml`, the card copy or the clock could not be read.
    Config,
    /// The stage is gone from `state.yaml`.
    StageGone,
    /// The card copy no longer matches the hash taken at `add-stage`.
    CardChanged,
    /// No agent of that name in `nightshift.yaml`.
    UnknownAgent,
    /// A git step failed.
    Git,
    /// The stage's workspace could not be prepared.
    Workspace,
    /// The workspace a later role runs in is missing.
    WorkspaceMissing,
    /// The worker's sealed snapshot is missing or forged.
    NoSnapshot,
    /// A prompt template could not be read.
    Template,
    /// A prompt could not be rendered.
    Prompt,
    /// The agent's command line could not be built (e.g. its recipe is missing).
    Invocation,
    /// The agent's command is not on PATH, or its absolute path does not exist.
    AgentMissing,
    /// The agent's program could not be started.
    Start,
    /// A file of the job could not be written or read.
    Io,
}

impl SetupCause {
    /// The snake_case name (as serialised).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Config => "config",
            Self::StageGone => "stage_gone",
            Self::CardChanged => "card_changed",
            Self::UnknownAgent => "unknown_agent",
            Self::Git => "git",
            Self::Workspace => "workspace",
            Self::WorkspaceMissing => "workspace_missing",
            Self::NoSnapshot => "no_snapshot",
            Self::Template => "template",
            Self::Prompt => "prompt",
            Self::Invocation => "invocation",
            Self::AgentMissing => "agent_missing",
            Self::Start => "start",
            Self::Io => "io",
        }
    }
}

impl std::fmt::Display for SetupCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a stage needs a human.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Escalation {
    MaxAttempts {
        attempts: u32,
        last: FailReason,
    },
    DependencyFailed {
        dependency: StageId,
    },
    IntegrationFailed {
        detail: String,
    },
    StageWallTime {
        spent_secs: u64,
        cap_secs: u64,
    },
    /// The stage's own token or USD cap (card `budget:`) has no room for another attempt.
    StageBudget {
        detail: String,
    },
    /// An agent's credentials failed: retrying cannot help.
    Auth {
        agent: String,
        detail: String,
    },
    /// The stage's jobs could not be set up this many times in a row (typed in `last`).
    SetupFailed {
        failures: u32,
        last: FailReason,
    },
}

impl std::fmt::Display for Escalation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::MaxAttempts { attempts, last } => {
                write!(f, "failed {attempts} attempts; last: {last}")
            }
            Self::DependencyFailed { dependency } => {
                write!(f, "dependency `{dependency}` did not complete")
            }
            Self::IntegrationFailed { detail } => write!(f, "integration failed: {detail}"),
            Self::StageBudget { detail } => write!(f, "stage cap: {detail}"),
            Self::Auth { agent, detail } => {
                write!(f, "agent `{agent}` could not authenticate: {detail}")
            }
            Self::SetupFailed { failures, last } => {
                write!(
                    f,
                    "could not be set up {failures} times in a row; last: {last}"
                )
            }
            Self::StageWallTime {
                spent_secs,
                cap_secs,
            } => write!(
                f,
                "stage wall-time cap: {} spent, cap {}",
                crate::config::format_duration(*spent_secs),
                crate::config::format_duration(*cap_secs)
            ),
        }
    }
}

/// The record of one finished attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AttemptRecord {
    pub attempt: u32,
    pub ended: Timestamp,
    pub result: AttemptResult,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum AttemptResult {
    Passed { commit: String },
    Failed { reason: FailReason },
    Cancelled,
}
