//! Stale git lock files: what a git process leaves behind when it is killed mid-write (the
//! tick's whole process group killed by `timeout`, systemd or the OOM killer). git never
//! removes them itself, and every later write of that ref or index fails ("Unable to create
//! '….lock': File exists"), so one kill would wedge the repository for good.
//!
//! Which locks are stale is decided by who may hold them:
//! * a lock on a ref only nightshift writes ([`crate::paths::LEDGER_REF`], the stage branches
//!   `refs/heads/nightshift/stage/<id>`, the integration branch) and on the ledger's private
//!   index: stale by construction while the caller holds the tick lock, because only a
//!   process holding it writes them (a stage branch also by that stage's own job: stale only
//!   when none of its jobs lives);
//! * a workspace's `index.lock` / `HEAD.lock` (in `.git/worktrees/<id>/`): stale when no job of
//!   that stage lives and no process has the file open;
//! * `objects/maintenance.lock`: stale when no process has it open (git holds it open for the
//!   whole maintenance run; nightshift's own git never starts one, see `git/harden.rs`).
//!
//! It never touches a lock in the user's main worktree (`.git/index.lock`, `.git/HEAD.lock`) or
//! on a ref the user writes. [`clear`] must only be called under the tick lock; [`find`]
//! only reads, and reports the ref locks only when it could take the tick lock itself.

use std::path::{Path, PathBuf};

use crate::git::Git;
use crate::ids::JobKey;
use crate::paths::{LEDGER_REF, Paths};

/// One lock file judged stale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaleLock {
    /// Absolute path of the lock file.
    pub path: PathBuf,
    /// The path relative to the repository root (as logged and shown).
    pub shown: String,
    /// What it locks, for a person (`ref refs/heads/nightshift/ledger`, `index of workspace s1`).
    pub what: String,
}

impl StaleLock {
    /// The line a tick logs and `repair` prints for a removed lock.
    #[must_use]
    pub fn removed_text(&self) -> String {
        format!(
            "removed stale git lock {} ({}; its git was killed mid-write)",
            self.shown, self.what
        )
    }
}

/// The stale lock files of the repository. `tick_locked` says whether the caller holds the tick
/// lock: without it the ref locks (which a running tick holds for a moment) are not judged.
///
/// # Errors
/// When git cannot tell the repository's common directory.
pub fn find(
    paths: &Paths,
    git: &Git,
    integration_branch: &str,
    tick_locked: bool,
) -> Result<Vec<StaleLock>, crate::git::GitError> {
    let common =
        PathBuf::from(git.run(&["rev-parse", "--path-format=absolute", "--git-common-dir"])?);
    let mut found = Vec::new();
    if tick_locked {
        // The user's checked-out branch is the user's to write (and nightshift never moves it).
        let head = git.try_run(&["symbolic-ref", "-q", "HEAD"])?;
        let target = format!("refs/heads/{integration_branch}");
        let target = (head.as_deref() != Some(target.as_str())).then_some(integration_branch);
        ref_locks(paths, &common, target, &mut found);
        let index = paths.ledger_index();
        push_lock(
            &mut found,
            paths,
            lock_of(&index),
            "the ledger's private index",
        );
    }
    workspace_locks(paths, &common, &mut found);
    let maintenance = common.join("objects/maintenance.lock");
    if maintenance.exists() && !open_by_anyone(&maintenance) {
        push_lock(&mut found, paths, maintenance, "git maintenance");
    }
    Ok(found)
}

/// A cheap look, without running git, for any file [`find`] could judge: when the repository's
/// `.git` is a directory and holds none of them, there is nothing to clear (an idle tick then
/// never opens git). `true` when unsure.
#[must_use]
pub fn any_candidate(paths: &Paths, integration_branch: &str) -> bool {
    let common = paths.root.join(".git");
    if !common.is_dir() {
        return true;
    }
    let heads = common.join("refs/heads");
    let has_lock = |dir: &Path| {
        std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().ends_with(".lock"))
    };
    common.join(format!("{LEDGER_REF}.lock")).exists()
        || heads.join(format!("{integration_branch}.lock")).exists()
        || has_lock(&heads.join("nightshift/stage"))
        || lock_of(&paths.ledger_index()).exists()
        || common.join("objects/maintenance.lock").exists()
        || std::fs::read_dir(common.join("worktrees"))
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| e.path().join("index.lock").exists() || e.path().join("HEAD.lock").exists())
}

/// Removes every stale lock [`find`] reports (the caller holds the tick lock) and returns what
/// it removed. A lock that vanished meanwhile is not reported.
///
/// # Errors
/// When git cannot tell the repository's common directory.
pub fn clear(
    paths: &Paths,
    git: &Git,
    integration_branch: &str,
) -> Result<Vec<StaleLock>, crate::git::GitError> {
    let mut removed = Vec::new();
    for lock in find(paths, git, integration_branch, true)? {
        match std::fs::remove_file(&lock.path) {
            Ok(()) => removed.push(lock),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => eprintln!(
                "nightshift: cannot remove stale git lock {}: {e}",
                lock.path.display()
            ),
        }
    }
    Ok(removed)
}

/// True when a git failure was a lock another (or a killed) git process holds: worth
/// retrying once the lock is gone, never a verdict on the work.
#[must_use]
pub fn is_lock_failure(message: &str) -> bool {
    message.contains(".lock': File exists")
        || message.contains("cannot lock ref")
        || message.contains("Unable to create '") && message.contains(".lock'")
}

fn ref_locks(paths: &Paths, common: &Path, integration: Option<&str>, found: &mut Vec<StaleLock>) {
    let ledger = common.join(format!("{LEDGER_REF}.lock"));
    push_lock(found, paths, ledger, &format!("ref {LEDGER_REF}"));
    if let Some(branch) = integration.filter(|b| !b.split('/').any(|c| c.is_empty() || c == "..")) {
        let target = format!("refs/heads/{branch}");
        push_lock(
            found,
            paths,
            common.join(format!("{target}.lock")),
            &format!("ref {target}"),
        );
    }
    let stages = common.join("refs/heads/nightshift/stage");
    for entry in std::fs::read_dir(&stages).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(stage) = name.strip_suffix(".lock") else {
            continue;
        };
        if !stage_alive(paths, stage) {
            push_lock(
                found,
                paths,
                entry.path(),
                &format!("ref refs/heads/nightshift/stage/{stage}"),
            );
        }
    }
}

/// `index.lock` and `HEAD.lock` of the admin directories of nightshift's workspaces.
fn workspace_locks(paths: &Paths, common: &Path, found: &mut Vec<StaleLock>) {
    let workspaces = paths
        .workspaces
        .canonicalize()
        .unwrap_or_else(|_| paths.workspaces.clone());
    for entry in std::fs::read_dir(common.join("worktrees"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let admin = entry.path();
        let Some(workspace) = std::fs::read_to_string(admin.join("gitdir"))
            .ok()
            .and_then(|t| Path::new(t.trim_end()).parent().map(Path::to_path_buf))
        else {
            continue;
        };
        let parent = workspace
            .parent()
            .map(|p| p.canonicalize().unwrap_or_else(|_| p.to_path_buf()));
        if parent.as_deref() != Some(workspaces.as_path()) {
            continue; // a worktree of the user's, not a workspace
        }
        let Some(stage) = workspace
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
        else {
            continue;
        };
        for name in ["index.lock", "HEAD.lock"] {
            let lock = admin.join(name);
            if lock.exists() && !stage_alive(paths, &stage) && !open_by_anyone(&lock) {
                let what = format!("{} of workspace {stage}", name.trim_end_matches(".lock"));
                push_lock(found, paths, lock, &what);
            }
        }
    }
}

fn push_lock(found: &mut Vec<StaleLock>, paths: &Paths, path: PathBuf, what: &str) {
    if std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_file()) {
        let root = paths
            .root
            .canonicalize()
            .unwrap_or_else(|_| paths.root.clone());
        let shown = path
            .strip_prefix(&root)
            .or_else(|_| path.strip_prefix(&paths.root))
            .unwrap_or(&path)
            .display()
            .to_string();
        found.push(StaleLock {
            path,
            shown,
            what: what.to_owned(),
        });
    }
}

fn lock_of(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".lock");
    PathBuf::from(s)
}

/// True when some job of `stage` still has a process (its liveness lock is held).
pub(crate) fn stage_alive(paths: &Paths, stage: &str) -> bool {
    std::fs::read_dir(paths.agents_dir())
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_suffix(".lock")
                .and_then(JobKey::from_stem)
                .is_some_and(|k| k.stage.as_str() == stage)
                && crate::lock::is_held(&e.path()).unwrap_or(true)
        })
}

/// True when any process (that this user may inspect) has `path` open. git keeps an index or
/// maintenance lock open while it works on it; a killed git's descriptors are gone.
fn open_by_anyone(path: &Path) -> bool {
    let Ok(target) = path.canonicalize() else {
        return false;
    };
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return false;
    };
    procs.flatten().any(|p| {
        let is_pid = p
            .file_name()
            .to_string_lossy()
            .bytes()
            .all(|b| b.is_ascii_digit());
        is_pid
            && std::fs::read_dir(p.path().join("fd"))
                .into_iter()
                .flatten()
                .flatten()
                .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l == target))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worktree::testing::{setup, stage};

    #[test]
    fn lock_failures_are_recognised() {
        assert!(is_lock_failure(
            "git update-ref exited 128: fatal: Unable to create '/r/.git/refs/heads/x.lock': File exists."
        ));
        assert!(is_lock_failure(
            "error: cannot lock ref 'refs/heads/x': reference already exists"
        ));
        assert!(!is_lock_failure("merging a into b conflicts in: f.txt"));
    }

    #[test]
    fn ref_and_workspace_locks_are_found_and_cleared_but_the_users_are_not() {
        let (r, paths) = setup();
        std::fs::create_dir_all(paths.agents_dir()).unwrap();
        let ws = crate::worktree::prepare(&r.git, &paths, &stage("s1"), "main").unwrap();
        let common = r.root().join(".git");
        let plant = |p: &Path| {
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, "").unwrap();
        };
        let ledger = common.join("refs/heads/nightshift/ledger.lock");
        let stage_ref = common.join("refs/heads/nightshift/stage/s1.lock");
        let target = common.join("refs/heads/nightshift/integration.lock");
        let maint = common.join("objects/maintenance.lock");
        let admin = std::fs::read_to_string(ws.join(".git")).unwrap();
        let admin = PathBuf::from(admin.trim_end().strip_prefix("gitdir: ").unwrap());
        let index = admin.join("index.lock");
        let user_index = common.join("index.lock");
        for p in [&ledger, &stage_ref, &target, &maint, &index, &user_index] {
            plant(p);
        }
        // Without the tick lock only the locks with a checkable owner are judged.
        let seen = find(&paths, &r.git, "nightshift/integration", false).unwrap();
        let seen: Vec<_> = seen.iter().map(|l| l.path.clone()).collect();
        assert!(seen.contains(&index) && seen.contains(&maint), "{seen:?}");
        assert!(!seen.contains(&ledger), "{seen:?}");
        let removed = clear(&paths, &r.git, "nightshift/integration").unwrap();
        assert_eq!(removed.len(), 5, "{removed:?}");
        for p in [&ledger, &stage_ref, &target, &maint, &index] {
            assert!(!p.exists(), "{}", p.display());
        }
        assert!(
            user_index.exists(),
            "the user's own index lock is never touched"
        );
    }

    #[test]
    fn a_lock_held_open_or_of_a_live_job_stays() {
        let (r, paths) = setup();
        std::fs::create_dir_all(paths.agents_dir()).unwrap();
        crate::worktree::prepare(&r.git, &paths, &stage("s1"), "main").unwrap();
        let maint = r.root().join(".git/objects/maintenance.lock");
        let _open = std::fs::File::create(&maint).unwrap();
        let stage_ref = r.root().join(".git/refs/heads/nightshift/stage/s1.lock");
        std::fs::write(&stage_ref, "").unwrap();
        let key = JobKey::from_stem("s1@a1-worker").unwrap();
        let _alive = crate::lock::lock(&paths.alive_file(&key)).unwrap();
        assert_eq!(clear(&paths, &r.git, "nightshift/integration").unwrap(), []);
        assert!(maint.exists() && stage_ref.exists());
    }
}
