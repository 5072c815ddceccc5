//! The gates a job keeps around its child, shared by the three roles: the always-on watch of
//! everything outside the workspace ([`crate::detect`]), the deliverable snapshot the worker
//! takes and the later roles run on ([`crate::snapshot`]), and the scan of that snapshot for
//! known secrets ([`crate::redact`]). Everything found becomes data in the outcome.
//!
//! It never decides whether the attempt fails (the engine's `judge` does) and never restores
//! a file outside the workspace.

use std::path::Path;

use crate::detect::{self, Watch};
use crate::engine::observe::{OutcomeResult, SecretHit};
use crate::engine::state::State;
use crate::git::Git;
use crate::ids::{JobKey, Role};
use crate::job::JobError;
use crate::paths::Paths;
use crate::{snapshot, store};

/// A watch taken before a job's child starts.
pub struct Guard<'a> {
    paths: &'a Paths,
    git: &'a Git,
    job: &'a JobKey,
    before: Watch,
}

impl<'a> Guard<'a> {
    /// Takes the "before" look.
    #[must_use]
    pub fn start(paths: &'a Paths, git: &'a Git, job: &'a JobKey, state: &State) -> Self {
        let before = detect::watch(paths, git, job, Some(state));
        Self {
            paths,
            git,
            job,
            before,
        }
    }

    /// What changed outside the workspace since [`Guard::start`], sorted.
    #[must_use]
    pub fn escaped(&self) -> Vec<String> {
        let state = store::read_state_file(self.paths).ok();
        let after = detect::watch(self.paths, self.git, self.job, state.as_ref());
        detect::escaped(self.paths, self.git, &self.before, &after)
    }
}

/// The deliverable a worker handed off: the commit it started from and the snapshot tree.
#[derive(Debug, Clone)]
pub struct Deliverable {
    pub base: String,
    pub tree: String,
}

/// The deliverable recorded in the attempt's sealed worker outcome.
///
/// # Errors
/// [`JobError::NoSnapshot`] when the worker outcome is missing, forged or has no snapshot.
pub fn worker_snapshot(paths: &Paths, job: &JobKey) -> Result<Deliverable, JobError> {
    let key = JobKey {
        role: Role::Worker,
        member: None,
        ..job.clone()
    };
    let path = paths.outcome_file(&key);
    match crate::observe::read_sealed(paths, &path) {
        Ok(Some(o)) => match o.result {
            OutcomeResult::Worker {
                base: Some(base),
                snapshot: Some(tree),
                ..
            } => Ok(Deliverable { base, tree }),
            _ => Err(JobError::NoSnapshot(paths.rel(&path))),
        },
        Ok(None) | Err(_) => Err(JobError::NoSnapshot(paths.rel(&path))),
    }
}

/// The commit checked out in a workspace.
///
/// # Errors
/// [`JobError::Git`] when git fails.
pub fn head_of(git: &Git, workspace: &Path) -> Result<String, JobError> {
    let out = git.run_in(workspace, &["rev-parse", "HEAD"], &[], None)?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The first file of the deliverable (`tree` against commit `base`) holding the value of a
/// known secret.
///
/// # Errors
/// [`JobError::Worktree`] when git fails.
pub fn secret_in(git: &Git, base: &str, tree: &str) -> Result<Option<SecretHit>, JobError> {
    let known = crate::redact::known();
    if known.is_empty() {
        return Ok(None);
    }
    let changed = snapshot::changed(git, &format!("{base}^{{tree}}"), tree)?;
    let needles: Vec<&str> = known.iter().map(|(_, v)| v.as_str()).collect();
    Ok(
        snapshot::find_in_blobs(git, tree, &changed, &needles)?.map(|(path, i)| SecretHit {
            path,
            name: known[i].0.clone(),
        }),
    )
}
