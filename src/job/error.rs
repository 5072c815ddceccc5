//! Why a job could not do its role's work at all (as opposed to an agent or a command that ran
//! and failed, which is data in the outcome). The wrapper records it as the outcome's typed
//! `setup_error` ([`JobError::cause`] maps each variant to one [`SetupCause`], which the engine
//! judges as an infrastructure failure); it never panics or exits early on these.

use std::path::PathBuf;

use crate::engine::observe::SetupError;
use crate::engine::state::SetupCause;
use crate::error::NsError;
use crate::git::GitError;
use crate::ids::StageId;
use crate::prompt::RenderError;
use crate::worktree::WorktreeError;

/// A job's setup failure, one variant per cause.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// `nightshift.yaml`, `state.yaml`, the card copy or the clock could not be read.
    #[error("{0}")]
    Load(#[from] NsError),
    #[error("stage `{0}` is not in state.yaml")]
    StageGone(StageId),
    #[error(
        "the card copy of {0} under state/cards/ no longer matches the hash taken at add-stage"
    )]
    CardChanged(StageId),
    #[error("no agent named `{0}` in nightshift.yaml")]
    UnknownAgent(String),
    #[error(transparent)]
    Git(#[from] GitError),
    #[error(transparent)]
    Worktree(#[from] WorktreeError),
    #[error("{0} is missing, forged or records no snapshot of the deliverable")]
    NoSnapshot(String),
    #[error("the worktree {0} is missing")]
    WorktreeMissing(String),
    #[error("cannot read the prompt template {path}: {source}")]
    Template {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Prompt(#[from] RenderError),
    /// The agent's command line could not be built (e.g. its recipe is missing).
    #[error("{0}")]
    Invocation(String),
    /// The agent's command is not on PATH, or is a path that is not an executable file.
    #[error(
        "agent `{agent}`: `{program}` is not on PATH or not an executable file (set `command:` in nightshift.yaml to its absolute path; `nightshift doctor` checks it)"
    )]
    AgentMissing { agent: String, program: String },
    #[error("cannot start `{}`: {source}", .program.display())]
    Start {
        program: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl JobError {
    /// The typed cause this failure is recorded and judged as (one per variant).
    #[must_use]
    pub fn cause(&self) -> SetupCause {
        match self {
            Self::Load(_) => SetupCause::Config,
            Self::StageGone(_) => SetupCause::StageGone,
            Self::CardChanged(_) => SetupCause::CardChanged,
            Self::UnknownAgent(_) => SetupCause::UnknownAgent,
            Self::Git(_) => SetupCause::Git,
            Self::Worktree(_) => SetupCause::Workspace,
            Self::NoSnapshot(_) => SetupCause::NoSnapshot,
            Self::WorktreeMissing(_) => SetupCause::WorkspaceMissing,
            Self::Template { .. } => SetupCause::Template,
            Self::Prompt(_) => SetupCause::Prompt,
            Self::Invocation(_) => SetupCause::Invocation,
            Self::AgentMissing { .. } => SetupCause::AgentMissing,
            Self::Start { .. } => SetupCause::Start,
            Self::Io(_) => SetupCause::Io,
        }
    }
}

impl From<&JobError> for SetupError {
    fn from(e: &JobError) -> Self {
        Self {
            cause: e.cause(),
            detail: e.to_string(),
        }
    }
}
