//! Exit codes and the top-level error shape. Every failure a user sees at 7am is printed as
//! three kinds of line: `error: …`, `  caused by: …` and `  hint: …` (the exact next command).
//! Exit codes are named here and nowhere else, and so are the hints for the typed errors of the
//! lower layers that reach the user (git): each reaches the user through one `From` conversion
//! below, so each hint is chosen in one place.

use std::fmt;

/// Success, including "another tick holds the lock" (a busy tick is not an error).
pub const EXIT_OK: i32 = 0;
/// The command failed for a reason the user can fix (bad card, bad config, refused action).
pub const EXIT_FAILURE: i32 = 1;
/// The command line itself was wrong (clap's own code).
pub const EXIT_USAGE: i32 = 2;
/// A state file is corrupt, missing or out of step with the ledger: run `nightshift repair`.
pub const EXIT_STATE: i32 = 3;
/// The repository is not initialised (no `nightshift.yaml` or no ledger): run `nightshift init`.
pub const EXIT_NOT_INIT: i32 = 4;
/// `nightshift watch`: its `--timeout` expired before the attempt ended.
pub const EXIT_TIMEOUT: i32 = 5;
/// An internal invariant broke: this is a bug in nightshift.
pub const EXIT_BUG: i32 = 70;

/// The exit-code table, as shown by `--help` and the README.
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0   success (also: a tick that found another tick running)
  1   the command failed; the message says why and what to do
  2   the command line was wrong
  3   a state file is corrupt, missing or out of step: run `nightshift repair`
  4   the repository is not set up: run `nightshift init`
  5   `nightshift watch`: the timeout expired before the attempt ended
  70  internal error: this is a bug in nightshift";

/// An error with a kind (which picks the exit code), causes and a hint.
#[derive(Debug)]
pub struct NsError {
    pub code: i32,
    pub message: String,
    pub causes: Vec<String>,
    pub hint: Option<String>,
}

impl NsError {
    #[must_use]
    pub fn new(code: i32, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            causes: Vec::new(),
            hint: None,
        }
    }
    #[must_use]
    pub fn failure(message: impl Into<String>) -> Self {
        Self::new(EXIT_FAILURE, message)
    }
    #[must_use]
    pub fn state(message: impl Into<String>) -> Self {
        Self::new(EXIT_STATE, message)
    }
    #[must_use]
    pub fn bug(message: impl Into<String>) -> Self {
        Self::new(
            EXIT_BUG,
            format!("{} (this is a bug in nightshift)", message.into()),
        )
    }
    #[must_use]
    pub fn cause(mut self, cause: impl Into<String>) -> Self {
        self.causes.push(cause.into());
        self
    }
    #[must_use]
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
    /// Says what was being done: `msg` becomes the message, and the lower error's message
    /// becomes the first cause (its causes and hint are kept).
    #[must_use]
    pub fn within(mut self, msg: impl Into<String>) -> Self {
        let lower = std::mem::replace(&mut self.message, msg.into());
        self.causes.insert(0, lower);
        self
    }
}

/// A lower layer's error as the user sees it: its text, and the hint (if any) for its kind.
fn lower(e: &dyn std::error::Error, hint: Option<&str>) -> NsError {
    let err = NsError::failure(e.to_string());
    match hint {
        Some(h) => err.hint(h),
        None => err,
    }
}

impl From<crate::git::GitError> for NsError {
    fn from(e: crate::git::GitError) -> Self {
        use crate::git::GitError;
        let hint = match &e {
            GitError::NotFound => Some("install git, or point NIGHTSHIFT_GIT at it"),
            GitError::NotARepo { .. } => {
                Some("run nightshift from the top of a git work tree, or pass --repo DIR")
            }
            GitError::Failed { .. } | GitError::Io(_) => None,
        };
        lower(&e, hint)
    }
}

impl From<crate::worktree::WorktreeError> for NsError {
    fn from(e: crate::worktree::WorktreeError) -> Self {
        use crate::worktree::WorktreeError;
        match e {
            WorktreeError::Git(g) => Self::from(g),
            WorktreeError::Io { .. } => lower(
                &e,
                Some(
                    "check that the workspace directory is yours and writable (`workspaces:` in nightshift.yaml)",
                ),
            ),
            WorktreeError::UnknownRevision { .. } | WorktreeError::NotAWorktree { .. } => {
                lower(&e, None)
            }
        }
    }
}

impl fmt::Display for NsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "error: {}", self.message)?;
        for c in &self.causes {
            write!(f, "\n  caused by: {c}")?;
        }
        if let Some(h) = &self.hint {
            write!(f, "\n  hint: {h}")?;
        }
        Ok(())
    }
}

impl std::error::Error for NsError {}

/// Lifts any displayable error into a plain failure, keeping its text.
pub trait Context<T> {
    /// # Errors
    /// Returns the wrapped error as an [`NsError`] with `msg` as its message.
    fn ctx(self, msg: impl FnOnce() -> String) -> Result<T, NsError>;
}

impl<T, E: fmt::Display> Context<T> for Result<T, E> {
    fn ctx(self, msg: impl FnOnce() -> String) -> Result<T, NsError> {
        self.map_err(|e| NsError::failure(msg()).cause(e.to_string()))
    }
}

pub type NsResult<T> = Result<T, NsError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_kinds_of_line() {
        let e = NsError::failure("stage `a` escalated")
            .cause("acceptance `false` exited 1")
            .hint("nightshift requeue a");
        insta::assert_snapshot!(e.to_string(), @r"
        error: stage `a` escalated
          caused by: acceptance `false` exited 1
          hint: nightshift requeue a
        ");
    }
}
