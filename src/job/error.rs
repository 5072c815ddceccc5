//! Why a job could not do its role's work at all (as opposed to an agent or a command that ran
//! and failed, which is data in the outcome). The wrapper records the message as the outcome's
//! `setup_error`; it never panics or exits early on these.

use std::path::PathBuf;

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
    #[error("state/cards/{0}.md no longer matches the hash taken at add-stage")]
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
    /// The agent's command line could not be built (its CLI or recipe is missing).
    #[error("{0}")]
    Invocation(String),
    #[error("cannot start `{}`: {source}", .program.display())]
    Start {
        program: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Io(#[from] std::io::Error),
}
