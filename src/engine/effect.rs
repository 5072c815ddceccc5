//! What a step wants done (effects) and what happened (events). Effects are data; the shell
//! executes them after the new state is durable, and their results come back only as
//! observations on a later tick. Every effect names its stage and attempt (fencing).

use crate::ids::{JobKey, StageId};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Start a detached job.
    Spawn(SpawnPlan),
    /// Kill the job's processes (identity proven, TERM, grace, KILL, verified). Its
    /// [`KillIntent`](crate::engine::state::KillIntent) is in the state already.
    Kill { job: JobKey },
    /// Commit the attempt's deliverable on the stage branch and apply the integration policy.
    Integrate { stage: StageId, attempt: u32 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpawnPlan {
    pub job: JobKey,
    /// Seconds the job may run before its wrapper kills it.
    pub timeout_secs: u64,
    /// For a worker: the branch or commit its worktree starts from.
    pub start_point: Option<String>,
}

/// One line of the journal: what changed, for whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub stage: Option<StageId>,
    pub text: String,
}

impl Event {
    #[must_use]
    pub fn stage(stage: &StageId, text: impl Into<String>) -> Self {
        Self {
            stage: Some(stage.clone()),
            text: text.into(),
        }
    }
    #[must_use]
    pub fn repo(text: impl Into<String>) -> Self {
        Self {
            stage: None,
            text: text.into(),
        }
    }
    /// The journal line: `stage: text` or `repo: text`.
    #[must_use]
    pub fn line(&self) -> String {
        match &self.stage {
            Some(s) => format!("{s}: {}", self.text),
            None => format!("repo: {}", self.text),
        }
    }
}
