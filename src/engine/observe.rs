//! What the shell saw, as data for the engine: each job the state waits on (absent, running,
//! vanished, or finished with its outcome) and each integration outcome. Also the outcome
//! files' format, which job wrappers write and ticks read. Seeing is the shell's job; this
//! module only names what can be seen.

use std::collections::BTreeMap;

use jiff::Timestamp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::agent::Usage;
use crate::envelope::{Envelope, Verdict};
use crate::ids::{JobKey, StageId};

pub const OUTCOME_VERSION: u32 = 1;

/// Everything one tick observed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observations {
    pub jobs: BTreeMap<JobKey, JobSeen>,
    /// Integration outcomes by stage (the attempt is inside).
    pub integrations: BTreeMap<StageId, Outcome>,
    /// Tokens and USD spent by the other repositories of this host (for host caps).
    pub host_others: (u64, f64),
    /// When the machine slept (gaps in the host's awake record): not counted against deadlines.
    pub sleeps: Vec<Sleep>,
    /// Jobs with a pending kill intent whose processes are verified gone.
    pub kills_done: std::collections::BTreeSet<JobKey>,
}

/// A stretch of time the machine slept: neither deadlines nor silence windows count it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(deny_unknown_fields)]
pub struct Sleep {
    pub from: Timestamp,
    pub to: Timestamp,
}

impl Sleep {
    /// Seconds of `[a, b]` that fall inside this sleep.
    #[must_use]
    pub fn overlap(&self, a: Timestamp, b: Timestamp) -> i64 {
        let start = self.from.max(a).as_second();
        let end = self.to.min(b).as_second();
        (end - start).max(0)
    }
}

/// Seconds of `[a, b]` the machine slept through.
#[must_use]
pub fn slept_secs(sleeps: &[Sleep], a: Timestamp, b: Timestamp) -> i64 {
    sleeps.iter().map(|s| s.overlap(a, b)).sum()
}

/// What became of one job.
#[derive(Debug, Clone, PartialEq)]
pub enum JobSeen {
    /// No registration and no outcome yet: its start is under way, or failed after the tick
    /// began it.
    Absent,
    /// No registration, no outcome, and no log: no tick ever began to start it (the tick that
    /// dispatched it stopped between its commit and the start). Starting it now cannot run it
    /// twice: a second wrapper waits on the first's lock and then finds its outcome.
    Unstarted,
    /// Registered and alive (its lock is held); the process groups to kill if needed.
    Running { pgids: Vec<i32> },
    /// Registered, but nothing holds its lock any more and there is no outcome: a crash.
    Vanished,
    /// Its outcome file is there.
    Finished(Box<Outcome>),
    /// An outcome file is there without a valid seal (forged, or copied from another job);
    /// the repo-relative path, and the process groups of the job if it still runs.
    Forged { path: String, pgids: Vec<i32> },
}

/// An outcome file: `state/handoffs/<stage>/a<n>/<role>.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Outcome {
    pub version: u32,
    pub stage: StageId,
    pub attempt: u32,
    pub finished_at: Timestamp,
    /// Wall time the job ran, by the wrapper's monotonic clock.
    pub wall_secs: u64,
    pub result: OutcomeResult,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "role", rename_all = "snake_case", deny_unknown_fields)]
pub enum OutcomeResult {
    Worker {
        run: AgentRun,
        envelope: Option<Envelope>,
        envelope_error: Option<String>,
        /// Protected paths whose bytes changed during the attempt.
        protected_changed: Vec<String>,
        setup_error: Option<SetupError>,
        /// The commit the workspace started from (the deliverable's parent).
        #[serde(default)]
        base: Option<String>,
        /// The deliverable: the git tree of the workspace taken at handoff.
        #[serde(default)]
        snapshot: Option<String>,
        /// Files outside the workspace the attempt's processes changed.
        #[serde(default)]
        escaped: Vec<String>,
        /// A known secret found in the snapshot.
        #[serde(default)]
        secret: Option<SecretHit>,
    },
    Acceptance {
        /// The paths the deliverable changes (its base to its snapshot), which
        /// `panel_when.paths` are matched against.
        #[serde(default)]
        deliverable: Vec<String>,
        commands: Vec<CommandResult>,
        setup_error: Option<SetupError>,
        /// The snapshot the commands ran on.
        #[serde(default)]
        snapshot: Option<String>,
        /// Files the commands changed in the workspace (reported; never part of the
        /// deliverable).
        #[serde(default)]
        changed_files: Vec<String>,
        #[serde(default)]
        escaped: Vec<String>,
    },
    Verifier {
        run: AgentRun,
        verdict: Option<Verdict>,
        verdict_error: Option<String>,
        #[serde(default)]
        setup_error: Option<SetupError>,
        /// Files the verifier changed in the workspace (its verdict is void).
        #[serde(default)]
        wrote: Vec<String>,
        #[serde(default)]
        escaped: Vec<String>,
    },
    Integration {
        commit: Option<String>,
        error: Option<String>,
        detail: String,
    },
}

/// Why a job could not set its role up: the typed cause and the error's text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SetupError {
    pub cause: crate::engine::state::SetupCause,
    pub detail: String,
}

/// How an agent process ended, read from its exit status and structured output.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentRun {
    pub agent: String,
    pub exit: Option<i32>,
    pub signal: Option<i32>,
    pub timed_out: bool,
    /// The CLI's own structured error flag (claude `is_error`).
    pub is_error: bool,
    pub error_detail: Option<String>,
    pub usage: Option<Usage>,
    pub cost_usd: Option<f64>,
    pub session_id: Option<String>,
    pub final_message: Option<String>,
    /// The typed failure, when the run failed (classified from exit status and structured
    /// output).
    pub failure: Option<crate::agent::failure::AgentFailure>,
    /// The model the CLI reported using.
    pub model: Option<String>,
    /// The CLI's own version, when it reports one.
    pub cli_version: Option<String>,
    /// Tool calls the CLI refused (permission denials).
    #[serde(default)]
    pub permission_denials: u32,
}

/// Where a known secret was found in a deliverable: the file and the variable, never the value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretHit {
    pub path: String,
    pub name: String,
}

/// One acceptance command's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandResult {
    pub command: String,
    pub exit: Option<i32>,
    pub timed_out: bool,
    pub secs: u64,
    /// The last lines of its output.
    pub output_tail: String,
}

impl AgentRun {
    /// A run that never started because of `failure` (e.g. a misconfigured auth route).
    #[must_use]
    pub fn failed(agent: &str, failure: crate::agent::failure::AgentFailure) -> Self {
        Self {
            agent: agent.to_owned(),
            is_error: true,
            error_detail: Some(failure.to_string()),
            failure: Some(failure),
            ..Self::default()
        }
    }
}

impl CommandResult {
    /// The lines of its output that report a refused write (at most three), as the shell or
    /// tool printed them: what a confined command tried to write outside its workspace.
    #[must_use]
    pub fn refused_writes(&self) -> Vec<String> {
        self.output_tail
            .lines()
            .filter(|l| l.contains("Permission denied") || l.contains("Read-only file system"))
            .map(|l| l.trim().to_owned())
            .take(3)
            .collect()
    }

    #[must_use]
    pub fn passed(&self) -> bool {
        self.exit == Some(0) && !self.timed_out
    }
}
