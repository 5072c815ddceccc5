//! Stage worktrees and what leaves them: each stage works in its own linked worktree
//! ([`Paths::worktree`], outside the checkout) on its own branch (`nightshift/stage/<stage>`);
//! this module prepares and removes those worktrees and makes the deliverable commit of the
//! snapshot tree ([`crate::snapshot`]). Bringing the stage branch into the integration branch
//! is [`crate::integrate`]'s.
//!
//! It must never run anything that writes an index or working tree in the user's main
//! worktree, and never move a branch that is checked out in any worktree.

use std::path::{Path, PathBuf};

use crate::git::{Git, GitError};
use crate::ids::StageId;
use crate::ids::stage_branch;
use crate::ledger::NIGHTSHIFT_COMMITTER;
use crate::paths::Paths;

/// Who a deliverable commit is authored by (the committer is always nightshift).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub email: String,
}

/// Why a worktree operation failed.
#[derive(Debug, thiserror::Error)]
pub enum WorktreeError {
    #[error(transparent)]
    Git(#[from] GitError),
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{rev}` does not name a commit")]
    UnknownRevision { rev: String },
    #[error("{} is not a nightshift stage worktree", .path.display())]
    NotAWorktree { path: PathBuf },
}

/// Creates the stage's worktree on its branch at `start_point`, or resets an existing one
/// there (discarding edits and untracked, non-ignored files). Returns its absolute path.
///
/// # Errors
/// [`WorktreeError::UnknownRevision`] when `start_point` is not a commit, [`WorktreeError::Io`]
/// when a stale directory cannot be cleared, [`WorktreeError::Git`] when a git step fails.
pub fn prepare(
    git: &Git,
    paths: &Paths,
    stage: &StageId,
    start_point: &str,
) -> Result<PathBuf, WorktreeError> {
    let commit = resolve_commit(git, start_point)?;
    let dir = absolute(git, &paths.worktree(stage));
    let branch = stage_branch(stage);
    if is_worktree_top(git, &dir)? {
        git.run_in(
            &dir,
            &["checkout", "-q", "-f", "-B", &branch, &commit],
            &[],
            None,
        )?;
        git.run_in(&dir, &["clean", "-f", "-d", "-q"], &[], None)?;
        return Ok(dir);
    }
    let _admin = admin_lock(paths)?;
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|e| io_error(&dir, e))?;
    }
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent).map_err(|e| io_error(parent, e))?;
    }
    git.run(&["worktree", "prune"])?;
    let dir_str = dir.to_string_lossy();
    git.run(&[
        "worktree", "add", "-q", "-f", "-B", &branch, &dir_str, &commit,
    ])?;
    Ok(dir)
}

/// What a deliverable commit is made of: the stage branch it goes on, the commit the worker
/// started from (its parent) and the snapshot tree.
#[derive(Debug, Clone, Copy)]
pub struct Deliverable<'a> {
    pub branch: &'a str,
    pub base: &'a str,
    pub tree: &'a str,
}

/// Commits exactly the snapshot tree on top of the commit the worker started from, points the
/// stage branch at it, and resets `worktree` to it; returns the commit id. Whatever else the
/// workspace holds (acceptance artefacts, a verifier's writes) and whatever the agent committed
/// itself never lands: the branch gets one commit, `base` → tree.
///
/// Idempotent: when the branch's tip message already holds every trailer line (e.g.
/// `Nightshift-Attempt: <stage>/a<N>`), the tip is returned and nothing is committed. With no
/// trailers there is nothing to recognise a previous commit by, so it always commits. The
/// committer is nightshift; the message is redacted of known secrets.
///
/// # Errors
/// [`WorktreeError::NotAWorktree`] when `worktree` is not a stage worktree (in particular the
/// user's main worktree), [`WorktreeError::Git`] when a git step fails.
pub fn commit_deliverable(
    git: &Git,
    worktree: &Path,
    d: &Deliverable<'_>,
    author: &Identity,
    message: (&str, &str),
    trailers: &[(String, String)],
) -> Result<String, WorktreeError> {
    let dir = stage_worktree(git, worktree)?;
    let lines: Vec<String> = trailers.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    let branch_ref = format!("refs/heads/{}", d.branch);
    let tip = branch_tip(git, d.branch)?;
    if let (false, Some(tip)) = (lines.is_empty(), &tip) {
        let out = git.run_in(&dir, &["log", "-1", "--format=%B", tip], &[], None)?;
        let message = String::from_utf8_lossy(&out.stdout);
        if lines
            .iter()
            .all(|l| message.lines().any(|m| m.trim_end() == l.trim_end()))
        {
            return Ok(tip.clone());
        }
    }
    let (subject, body) = message;
    let text = format!("{subject}\n\n{body}\n\n{}\n", lines.join("\n"));
    let text = crate::redact::apply(&text).into_owned();
    let mut env = vec![
        ("GIT_AUTHOR_NAME", author.name.as_str()),
        ("GIT_AUTHOR_EMAIL", author.email.as_str()),
    ];
    env.extend_from_slice(&NIGHTSHIFT_COMMITTER);
    let args = ["commit-tree", d.tree, "-p", d.base, "-F", "-"];
    let out = git.run_in(&dir, &args, &env, Some(text.as_bytes()))?;
    let commit = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let reflog = format!("nightshift: deliverable {subject}");
    let old = tip.unwrap_or_default();
    git.run(&["update-ref", "-m", &reflog, &branch_ref, &commit, &old])?;
    git.run_in(&dir, &["symbolic-ref", "HEAD", &branch_ref], &[], None)?;
    crate::snapshot::restore(git, &dir, &commit)?;
    Ok(commit)
}

/// Removes the stage's worktree (forcefully; a missing one is fine), prunes git's record and
/// removes the agent's own git view of it; the stage branch stays.
///
/// # Errors
/// [`WorktreeError::Io`] when a leftover directory cannot be deleted, [`WorktreeError::Git`]
/// when pruning fails.
pub fn remove(git: &Git, paths: &Paths, stage: &StageId) -> Result<(), WorktreeError> {
    let dir = absolute(git, &paths.worktree(stage));
    let _admin = admin_lock(paths)?;
    if dir.exists() {
        let dir_str = dir.to_string_lossy();
        let args = ["worktree", "remove", "--force", "--force", &dir_str];
        let out = git.run_raw(git.root(), &args, &[], None)?;
        if !out.status.success() && dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| io_error(&dir, e))?;
        }
    }
    git.run(&["worktree", "prune"])?;
    let own = crate::workspace::agent_git_dir(paths, stage);
    if own.exists() {
        std::fs::remove_dir_all(&own).map_err(|e| io_error(&own, e))?;
    }
    Ok(())
}

/// Takes the repository's worktree-admin lock ([`Paths::worktrees_lock`]), waiting for it:
/// every `worktree add`/`prune`/`remove` of nightshift runs under it, so parallel lanes never
/// delete or half-read each other's `.git/worktrees/<id>/`.
///
/// # Errors
/// [`WorktreeError::Io`] when the lock file cannot be created or locked.
pub fn admin_lock(paths: &Paths) -> Result<crate::lock::FileLock, WorktreeError> {
    let file = paths.worktrees_lock();
    if let Some(parent) = file.parent() {
        std::fs::create_dir_all(parent).map_err(|e| io_error(parent, e))?;
    }
    crate::lock::lock(&file).map_err(|e| io_error(&file, e))
}

/// The commit at the tip of branch `branch`, `None` when it does not exist.
///
/// # Errors
/// [`GitError`] when git cannot be run.
pub fn branch_tip(git: &Git, branch: &str) -> Result<Option<String>, GitError> {
    let spec = format!("refs/heads/{branch}^{{commit}}");
    git.try_run(&["rev-parse", "--verify", "-q", &spec])
}

pub(crate) fn resolve_commit(git: &Git, rev: &str) -> Result<String, WorktreeError> {
    let spec = format!("{rev}^{{commit}}");
    git.try_run(&["rev-parse", "--verify", "-q", "--end-of-options", &spec])?
        .ok_or_else(|| unknown(rev))
}

pub(crate) fn unknown(rev: &str) -> WorktreeError {
    WorktreeError::UnknownRevision {
        rev: rev.to_owned(),
    }
}

/// Whether `dir` is the top of a linked work tree of this repository (never the main one).
fn is_worktree_top(git: &Git, dir: &Path) -> Result<bool, GitError> {
    let Ok(canon) = dir.canonicalize() else {
        return Ok(false);
    };
    if canon == git.root() || !canon.is_dir() {
        return Ok(false);
    }
    let Some(ours) = top_and_common_dir(git, git.root())? else {
        return Ok(false);
    };
    if !crate::workspace::gitfile_is_own(&canon, &ours.1) {
        return Ok(false);
    }
    let Some((top, common)) = top_and_common_dir(git, &canon)? else {
        return Ok(false);
    };
    Ok(top == canon && common == ours.1)
}

/// The canonical top-level and common git directory as seen from `dir`.
fn top_and_common_dir(git: &Git, dir: &Path) -> Result<Option<(PathBuf, PathBuf)>, GitError> {
    let args = [
        "rev-parse",
        "--path-format=absolute",
        "--show-toplevel",
        "--git-common-dir",
    ];
    let out = git.run_raw(dir, &args, &[], None)?;
    if !out.status.success() {
        return Ok(None);
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines().map(|l| Path::new(l).canonicalize());
    match (lines.next(), lines.next()) {
        (Some(Ok(top)), Some(Ok(common))) => Ok(Some((top, common))),
        _ => Ok(None),
    }
}

/// `worktree` made absolute, checked to be a linked worktree (never the main one).
fn stage_worktree(git: &Git, worktree: &Path) -> Result<PathBuf, WorktreeError> {
    let dir = absolute(git, worktree);
    if is_worktree_top(git, &dir)? {
        Ok(dir)
    } else {
        Err(WorktreeError::NotAWorktree { path: dir })
    }
}

fn absolute(git: &Git, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        git.root().join(p)
    }
}

fn io_error(path: &Path, source: std::io::Error) -> WorktreeError {
    WorktreeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Fixtures shared by the tests of worktrees and of integration.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use crate::git::testing::{TestRepo, repo};

    pub(crate) fn stage(id: &str) -> StageId {
        StageId::new(id).unwrap()
    }

    pub(crate) fn setup() -> (TestRepo, Paths) {
        let r = repo();
        r.write(".gitignore", "/state/*\n*.ignored\n");
        r.write("a.txt", "base\n");
        r.commit_all("init");
        let mut paths = Paths::new(r.root());
        paths.workspaces = r.dir.path().join("workspaces");
        (r, paths)
    }

    pub(crate) fn who() -> Identity {
        Identity {
            name: "Ada".to_owned(),
            email: "ada@example.com".to_owned(),
        }
    }

    pub(crate) fn trailer(stage: &str) -> Vec<(String, String)> {
        vec![("Nightshift-Attempt".to_owned(), format!("{stage}/a1"))]
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{setup, stage, trailer, who};
    use super::*;

    #[test]
    fn prepare_creates_then_resets() {
        let (r, paths) = setup();
        let dir = prepare(&r.git, &paths, &stage("s1"), "main").unwrap();
        assert_eq!(dir, r.dir.path().join("workspaces/s1"));
        assert!(
            !dir.starts_with(r.root()),
            "workspaces live outside the checkout"
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("a.txt")).unwrap(),
            "base\n"
        );
        let branch = r
            .git
            .run(&["-C", dir.to_str().unwrap(), "symbolic-ref", "HEAD"]);
        assert_eq!(branch.unwrap(), "refs/heads/nightshift/stage/s1");
        std::fs::write(dir.join("a.txt"), "edited\n").unwrap();
        std::fs::write(dir.join("new.txt"), "untracked\n").unwrap();
        std::fs::write(dir.join("keep.ignored"), "ignored\n").unwrap();
        let again = prepare(&r.git, &paths, &stage("s1"), "main").unwrap();
        assert_eq!(again, dir);
        assert_eq!(
            std::fs::read_to_string(dir.join("a.txt")).unwrap(),
            "base\n"
        );
        assert!(!dir.join("new.txt").exists());
        assert!(dir.join("keep.ignored").exists());
    }

    #[test]
    fn prepare_rejects_unknown_start_point_and_replaces_junk() {
        let (r, paths) = setup();
        let err = prepare(&r.git, &paths, &stage("s1"), "no-such-branch").unwrap_err();
        assert!(err.to_string().contains("no-such-branch"), "{err}");
        std::fs::create_dir_all(paths.worktree(&stage("s2"))).unwrap();
        std::fs::write(paths.worktree(&stage("s2")).join("junk"), "x").unwrap();
        let dir = prepare(&r.git, &paths, &stage("s2"), "main").unwrap();
        assert!(!dir.join("junk").exists());
        assert!(dir.join("a.txt").exists());
    }

    #[test]
    fn main_worktree_is_refused() {
        let (r, _) = setup();
        let root = r.root();
        let tree = r.git.run(&["rev-parse", "HEAD^{tree}"]).unwrap();
        let d = Deliverable {
            branch: "main",
            base: "HEAD",
            tree: &tree,
        };
        let err = commit_deliverable(&r.git, &root, &d, &who(), ("s", ""), &[]).unwrap_err();
        assert!(matches!(err, WorktreeError::NotAWorktree { .. }));
    }

    #[test]
    fn commit_deliverable_is_idempotent() {
        let (r, paths) = setup();
        let dir = prepare(&r.git, &paths, &stage("s1"), "main").unwrap();
        std::fs::write(dir.join("b.txt"), "work\n").unwrap();
        let tree = crate::snapshot::take_scratch(&r.git, &dir, "main").unwrap();
        // Written after the snapshot: never lands.
        std::fs::write(dir.join("late.txt"), "late\n").unwrap();
        let t = trailer("s1");
        let msg = ("Do it", "Body.");
        let base = r.git.run(&["rev-parse", "main"]).unwrap();
        let d = Deliverable {
            branch: "nightshift/stage/s1",
            base: &base,
            tree: &tree,
        };
        let c1 = commit_deliverable(&r.git, &dir, &d, &who(), msg, &t).unwrap();
        let c2 = commit_deliverable(&r.git, &dir, &d, &who(), msg, &t).unwrap();
        assert_eq!(c1, c2);
        let landed = r
            .git
            .run(&["rev-parse", &format!("{c1}^{{tree}}")])
            .unwrap();
        assert_eq!(landed, tree);
        assert!(!dir.join("late.txt").exists());
        let dir_s = dir.to_str().unwrap();
        let msg = r
            .git
            .run(&["-C", dir_s, "log", "-1", "--format=%B"])
            .unwrap();
        assert_eq!(msg, "Do it\n\nBody.\n\nNightshift-Attempt: s1/a1");
        let who_line = r
            .git
            .run(&["-C", dir_s, "log", "-1", "--format=%an <%ae>|%cn"]);
        assert_eq!(who_line.unwrap(), "Ada <ada@example.com>|nightshift");
        let files = r
            .git
            .run(&["-C", dir_s, "show", "--name-only", "--format="]);
        assert_eq!(files.unwrap(), "b.txt");
        assert_eq!(branch_tip(&r.git, "nightshift/stage/s1").unwrap(), Some(c1));
    }

    #[test]
    fn remove_tolerates_missing() {
        let (r, paths) = setup();
        remove(&r.git, &paths, &stage("s1")).unwrap();
        let dir = prepare(&r.git, &paths, &stage("s1"), "main").unwrap();
        std::fs::write(dir.join("dirty.txt"), "x").unwrap();
        remove(&r.git, &paths, &stage("s1")).unwrap();
        assert!(!dir.exists());
        let list = r.git.run(&["worktree", "list", "--porcelain"]).unwrap();
        assert!(!list.contains("workspaces/s1"), "{list}");
        prepare(&r.git, &paths, &stage("s1"), "main").unwrap();
    }
}
