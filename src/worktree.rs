//! Stage worktrees and what leaves them: each stage works in its own linked worktree
//! (`state/worktrees/<stage>`) on its own branch (`nightshift/stage/<stage>`); this module
//! prepares and removes those worktrees, reads the worker's diff, makes the deliverable commit
//! and integrates a stage branch into the integration branch by ref plumbing alone.
//!
//! It must never run anything that writes an index or working tree in the user's main
//! worktree, and never move a branch that is checked out in any worktree.

use std::path::{Path, PathBuf};

use crate::git::{Git, GitError};
use crate::ids::StageId;
use crate::ledger::{NIGHTSHIFT_COMMITTER, NIGHTSHIFT_IDENTITY};
use crate::paths::{Paths, stage_branch};

/// [`diff`] output beyond this many bytes is cut off with a note.
pub const MAX_DIFF_BYTES: usize = 200 * 1024;

/// The reflog message of every branch update made by [`integrate`].
const REFLOG_MESSAGE: &str = "nightshift integrate";

/// Who a deliverable commit is authored by (the committer is always nightshift).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub email: String,
}

/// How a finished stage branch reaches the integration branch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    FastForward,
    Merge,
    None,
}

/// What [`integrate`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Integrated {
    /// The target now points at the stage tip.
    FastForwarded { commit: String },
    /// The target now points at this new merge commit.
    Merged { commit: String },
    /// The target had moved on: the stage's commit was replayed on top of it (same tree
    /// change, author and message), keeping the target's history linear.
    Replayed { commit: String },
    /// The stage tip was already in the target; `commit` is the target's (unchanged) tip.
    AlreadyIntegrated { commit: String },
    /// Policy `None`: the stage branch is left for a human; `commit` is its tip.
    LeftAsBranch { commit: String },
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
    #[error("merging {stage_branch} into {target} conflicts in: {detail}")]
    Conflict {
        target: String,
        stage_branch: String,
        detail: String,
    },
    #[error("branch {branch} is checked out in a worktree and nightshift never moves those")]
    CheckedOut { branch: String },
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

/// The unified diff of everything changed in `worktree` relative to its HEAD, new untracked
/// (non-ignored) files included; cut off at [`MAX_DIFF_BYTES`] with a trailing note. Stages
/// everything in the worktree's own index as a side effect.
///
/// # Errors
/// [`WorktreeError::NotAWorktree`] when `worktree` is not a stage worktree,
/// [`WorktreeError::Git`] when a git step fails.
pub fn diff(git: &Git, worktree: &Path) -> Result<String, WorktreeError> {
    let dir = stage_worktree(git, worktree)?;
    git.run_in(&dir, &["add", "-A"], &[], None)?;
    let args = [
        "diff",
        "--cached",
        "--no-color",
        "--no-ext-diff",
        "--no-textconv",
        "--src-prefix=a/",
        "--dst-prefix=b/",
        "HEAD",
        "--",
    ];
    let out = git.run_in(&dir, &args, &[], None)?;
    Ok(cap_diff(&String::from_utf8_lossy(&out.stdout)))
}

fn cap_diff(text: &str) -> String {
    if text.len() <= MAX_DIFF_BYTES {
        return text.to_owned();
    }
    let mut end = MAX_DIFF_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{}\n[diff truncated: first {} KB of {} bytes shown]\n",
        &text[..end],
        MAX_DIFF_BYTES / 1024,
        text.len()
    )
}

/// Paths changed in `worktree` relative to its HEAD, new untracked (non-ignored) files
/// included, sorted. Stages everything in the worktree's own index as a side effect.
///
/// # Errors
/// [`WorktreeError::NotAWorktree`] when `worktree` is not a stage worktree,
/// [`WorktreeError::Git`] when a git step fails.
pub fn changed_paths(git: &Git, worktree: &Path) -> Result<Vec<String>, WorktreeError> {
    let dir = stage_worktree(git, worktree)?;
    git.run_in(&dir, &["add", "-A"], &[], None)?;
    let args = [
        "diff",
        "--cached",
        "--name-only",
        "--no-renames",
        "-z",
        "HEAD",
        "--",
    ];
    let out = git.run_in(&dir, &args, &[], None)?;
    let mut paths: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .split('\0')
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect();
    paths.sort();
    Ok(paths)
}

/// Commits everything in `worktree` as the stage's deliverable and returns the commit id.
///
/// Idempotent: when the HEAD commit's message already holds every trailer line (e.g.
/// `Nightshift-Attempt: <stage>/a<N>`), HEAD is returned and nothing is committed. With no
/// trailers there is nothing to recognise a previous commit by, so it always commits. Hooks do
/// not run; the committer is nightshift.
///
/// # Errors
/// [`WorktreeError::NotAWorktree`] when `worktree` is not a stage worktree (in particular the
/// user's main worktree), [`WorktreeError::Git`] when a git step fails.
pub fn commit_deliverable(
    git: &Git,
    worktree: &Path,
    author: &Identity,
    subject: &str,
    body: &str,
    trailers: &[(String, String)],
) -> Result<String, WorktreeError> {
    let dir = stage_worktree(git, worktree)?;
    let lines: Vec<String> = trailers.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    if !lines.is_empty() {
        let out = git.run_in(&dir, &["log", "-1", "--format=%B", "HEAD"], &[], None)?;
        let message = String::from_utf8_lossy(&out.stdout);
        if lines
            .iter()
            .all(|l| message.lines().any(|m| m.trim_end() == l.trim_end()))
        {
            return Ok(rev_parse_head(git, &dir)?);
        }
    }
    let message = format!("{subject}\n\n{body}\n\n{}\n", lines.join("\n"));
    let mut env = vec![
        ("GIT_AUTHOR_NAME", author.name.as_str()),
        ("GIT_AUTHOR_EMAIL", author.email.as_str()),
    ];
    env.extend_from_slice(&NIGHTSHIFT_COMMITTER);
    git.run_in(&dir, &["add", "-A"], &[], None)?;
    let args = [
        "-c",
        "core.hooksPath=/dev/null",
        "commit",
        "-q",
        "--no-verify",
        "--allow-empty",
        "--cleanup=whitespace",
        "-F",
        "-",
    ];
    git.run_in(&dir, &args, &env, Some(message.as_bytes()))?;
    Ok(rev_parse_head(git, &dir)?)
}

/// Brings `stage_branch` into the branch `target` under `policy`, creating `target` at
/// `create_from` first when it does not exist. Only refs move: no index or working tree is
/// touched, and every ref update is a compare-and-swap.
///
/// # Errors
/// [`WorktreeError::CheckedOut`] when `target` is checked out in any worktree,
/// [`WorktreeError::UnknownRevision`] when `stage_branch` or `create_from` does not resolve,
/// [`WorktreeError::Conflict`] when the stage's change conflicts with the target (a merge, or
/// a replay when the target cannot simply be fast-forwarded), [`WorktreeError::Git`] when a git step fails (including a lost compare-and-swap).
pub fn integrate(
    git: &Git,
    stage_branch: &str,
    target: &str,
    create_from: &str,
    policy: Policy,
) -> Result<Integrated, WorktreeError> {
    let stage_tip = branch_tip(git, stage_branch)?.ok_or_else(|| unknown(stage_branch))?;
    if policy == Policy::None {
        return Ok(Integrated::LeftAsBranch { commit: stage_tip });
    }
    if checked_out_branches(git)?.iter().any(|b| b == target) {
        return Err(WorktreeError::CheckedOut {
            branch: target.to_owned(),
        });
    }
    let target_tip = ensure_branch(git, target, create_from)?;
    if is_ancestor(git, &stage_tip, &target_tip)? {
        return Ok(Integrated::AlreadyIntegrated { commit: target_tip });
    }
    let tips = Tips {
        stage_branch,
        stage: &stage_tip,
        target,
        target_tip: &target_tip,
    };
    match policy {
        Policy::FastForward => fast_forward(git, &tips),
        _ => merge(git, &tips),
    }
}

/// The two branches being integrated and their tips.
struct Tips<'a> {
    stage_branch: &'a str,
    stage: &'a str,
    target: &'a str,
    target_tip: &'a str,
}

fn fast_forward(git: &Git, t: &Tips<'_>) -> Result<Integrated, WorktreeError> {
    if !is_ancestor(git, t.target_tip, t.stage)? {
        return replay(git, t);
    }
    move_branch(git, t.target, t.stage, t.target_tip)?;
    Ok(Integrated::FastForwarded {
        commit: t.stage.to_owned(),
    })
}

/// `git merge-tree --write-tree` of the target and stage tips (with an explicit merge base,
/// for a replay): the resulting tree, or the conflicted files. Touches no worktree or index.
fn merge_tree(git: &Git, t: &Tips<'_>, base: Option<&str>) -> Result<String, WorktreeError> {
    let mut args = vec![
        "merge-tree",
        "--write-tree",
        "--name-only",
        "--no-messages",
        "-z",
    ];
    let base_arg = base.map(|b| format!("--merge-base={b}"));
    args.extend(base_arg.as_deref());
    args.extend([t.target_tip, t.stage]);
    let out = git.run_raw(git.root(), &args, &[], None)?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut fields = text.split('\0').filter(|f| !f.is_empty());
    let tree = fields.next().unwrap_or_default().trim().to_owned();
    match out.status.code() {
        Some(0) => Ok(tree),
        Some(1) => Err(conflict(t, fields.collect())),
        _ => Err(GitError::from_output(&args, &out).into()),
    }
}

fn merge(git: &Git, t: &Tips<'_>) -> Result<Integrated, WorktreeError> {
    let tree = merge_tree(git, t, None)?;
    let message = format!("nightshift: merge {} into {}", t.stage_branch, t.target);
    let commit_args = [
        "commit-tree",
        &tree,
        "-p",
        t.target_tip,
        "-p",
        t.stage,
        "-m",
        &message,
    ];
    let out = git.run_in(git.root(), &commit_args, &NIGHTSHIFT_IDENTITY, None)?;
    let commit = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    move_branch(git, t.target, &commit, t.target_tip)?;
    Ok(Integrated::Merged { commit })
}

/// Replays the stage's tip commit onto the target's tip without touching any worktree: a
/// three-way `merge-tree` with the tip's parent as base, then `commit-tree` with the tip's
/// author and message. Idempotent: a target that already holds a commit with the tip's
/// `Nightshift-Attempt` trailer is left alone.
fn replay(git: &Git, t: &Tips<'_>) -> Result<Integrated, WorktreeError> {
    let message = git.run(&["log", "-1", "--format=%B", t.stage])?;
    if let Some(trailer) = message
        .lines()
        .find(|l| l.starts_with("Nightshift-Attempt: "))
    {
        let grep = format!("--grep={trailer}");
        let found = git.run(&[
            "log",
            "-F",
            &grep,
            "-n",
            "1",
            "--format=%H",
            "--max-count=1",
            t.target_tip,
        ])?;
        if !found.trim().is_empty() {
            return Ok(Integrated::AlreadyIntegrated {
                commit: t.target_tip.to_owned(),
            });
        }
    }
    let tree = merge_tree(git, t, Some(&format!("{}^", t.stage)))?;
    let who = git.run(&["log", "-1", "--format=%an%x00%ae%x00%aI", t.stage])?;
    let mut who = who.split('\0');
    let (name, email, date) = (
        who.next().unwrap_or("nightshift"),
        who.next().unwrap_or(""),
        who.next().unwrap_or(""),
    );
    let mut env: Vec<(&str, &str)> = NIGHTSHIFT_IDENTITY.to_vec();
    env.retain(|(k, _)| !k.starts_with("GIT_AUTHOR_"));
    env.extend([
        ("GIT_AUTHOR_NAME", name),
        ("GIT_AUTHOR_EMAIL", email),
        ("GIT_AUTHOR_DATE", date),
    ]);
    let out = git.run_in(
        git.root(),
        &["commit-tree", &tree, "-p", t.target_tip, "-F", "-"],
        &env,
        Some(message.as_bytes()),
    )?;
    let commit = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    move_branch(git, t.target, &commit, t.target_tip)?;
    Ok(Integrated::Replayed { commit })
}

fn conflict(t: &Tips<'_>, mut files: Vec<&str>) -> WorktreeError {
    files.dedup();
    WorktreeError::Conflict {
        target: t.target.to_owned(),
        stage_branch: t.stage_branch.to_owned(),
        detail: files.join(", "),
    }
}

/// The tip of `target`, creating the branch at `create_from` when it does not exist.
fn ensure_branch(git: &Git, target: &str, create_from: &str) -> Result<String, WorktreeError> {
    if let Some(tip) = branch_tip(git, target)? {
        return Ok(tip);
    }
    let base = resolve_commit(git, create_from)?;
    let refname = format!("refs/heads/{target}");
    git.run(&["update-ref", "-m", REFLOG_MESSAGE, &refname, &base, ""])?;
    Ok(base)
}

/// Compare-and-swap `refs/heads/<branch>` from `old` to `new`.
fn move_branch(git: &Git, branch: &str, new: &str, old: &str) -> Result<(), GitError> {
    let refname = format!("refs/heads/{branch}");
    git.run(&["update-ref", "-m", REFLOG_MESSAGE, &refname, new, old])?;
    Ok(())
}

fn is_ancestor(git: &Git, ancestor: &str, descendant: &str) -> Result<bool, GitError> {
    let args = ["merge-base", "--is-ancestor", ancestor, descendant];
    let out = git.run_raw(git.root(), &args, &[], None)?;
    match out.status.code() {
        Some(0) => Ok(true),
        Some(1) => Ok(false),
        _ => Err(GitError::from_output(&args, &out)),
    }
}

/// Short names of the branches checked out (or unborn) in any worktree of the repository.
fn checked_out_branches(git: &Git) -> Result<Vec<String>, GitError> {
    let out = git.run(&["worktree", "list", "--porcelain"])?;
    Ok(out
        .lines()
        .filter_map(|l| l.strip_prefix("branch refs/heads/"))
        .map(str::to_owned)
        .collect())
}

/// Removes the stage's worktree (forcefully; a missing one is fine) and prunes git's record.
///
/// # Errors
/// [`WorktreeError::Io`] when a leftover directory cannot be deleted, [`WorktreeError::Git`]
/// when pruning fails.
pub fn remove(git: &Git, paths: &Paths, stage: &StageId) -> Result<(), WorktreeError> {
    let dir = absolute(git, &paths.worktree(stage));
    if dir.exists() {
        let dir_str = dir.to_string_lossy();
        let args = ["worktree", "remove", "--force", "--force", &dir_str];
        let out = git.run_raw(git.root(), &args, &[], None)?;
        if !out.status.success() && dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| io_error(&dir, e))?;
        }
    }
    git.run(&["worktree", "prune"])?;
    Ok(())
}

/// The commit at the tip of branch `branch`, `None` when it does not exist.
///
/// # Errors
/// [`GitError`] when git cannot be run.
pub fn branch_tip(git: &Git, branch: &str) -> Result<Option<String>, GitError> {
    let spec = format!("refs/heads/{branch}^{{commit}}");
    git.try_run(&["rev-parse", "--verify", "-q", &spec])
}

fn resolve_commit(git: &Git, rev: &str) -> Result<String, WorktreeError> {
    let spec = format!("{rev}^{{commit}}");
    git.try_run(&["rev-parse", "--verify", "-q", "--end-of-options", &spec])?
        .ok_or_else(|| unknown(rev))
}

fn unknown(rev: &str) -> WorktreeError {
    WorktreeError::UnknownRevision {
        rev: rev.to_owned(),
    }
}

fn rev_parse_head(git: &Git, dir: &Path) -> Result<String, GitError> {
    let out = git.run_in(dir, &["rev-parse", "HEAD"], &[], None)?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::git::testing::{TestRepo, repo};

    const TARGET: &str = "nightshift/integration";

    fn stage(id: &str) -> StageId {
        StageId::new(id).unwrap()
    }

    fn setup() -> (TestRepo, Paths) {
        let r = repo();
        r.write(".gitignore", "/state/*\n*.ignored\n");
        r.write("a.txt", "base\n");
        r.commit_all("init");
        let paths = Paths::new(r.root());
        (r, paths)
    }

    fn who() -> Identity {
        Identity {
            name: "Ada".to_owned(),
            email: "ada@example.com".to_owned(),
        }
    }

    fn trailer(stage: &str) -> Vec<(String, String)> {
        vec![("Nightshift-Attempt".to_owned(), format!("{stage}/a1"))]
    }

    /// Prepares `id` from main, writes `file` and commits it as the deliverable.
    fn stage_with(r: &TestRepo, paths: &Paths, id: &str, file: &str, text: &str) -> String {
        let dir = prepare(&r.git, paths, &stage(id), "main").unwrap();
        std::fs::write(dir.join(file), text).unwrap();
        commit_deliverable(&r.git, &dir, &who(), id, "", &trailer(id)).unwrap()
    }

    /// The user's HEAD file, index bytes and status.
    fn user_view(r: &TestRepo) -> (Vec<u8>, Vec<u8>, String) {
        let status = r.git.run(&["status", "--porcelain"]).unwrap();
        let gitdir = r.root().join(".git");
        (
            std::fs::read(gitdir.join("HEAD")).unwrap(),
            std::fs::read(gitdir.join("index")).unwrap(),
            status,
        )
    }

    #[test]
    fn prepare_creates_then_resets() {
        let (r, paths) = setup();
        let dir = prepare(&r.git, &paths, &stage("s1"), "main").unwrap();
        assert_eq!(dir, r.root().join("state/worktrees/s1"));
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
        r.write("state/worktrees/s2/junk", "x");
        let dir = prepare(&r.git, &paths, &stage("s2"), "main").unwrap();
        assert!(!dir.join("junk").exists());
        assert!(dir.join("a.txt").exists());
    }

    #[test]
    fn diff_and_changed_paths_include_untracked() {
        let (r, paths) = setup();
        let dir = prepare(&r.git, &paths, &stage("s1"), "main").unwrap();
        std::fs::write(dir.join("a.txt"), "changed\n").unwrap();
        std::fs::write(dir.join("b.txt"), "new file\n").unwrap();
        std::fs::write(dir.join("x.ignored"), "nope\n").unwrap();
        let d = diff(&r.git, &dir).unwrap();
        assert!(d.contains("+changed") && d.contains("+new file"), "{d}");
        assert!(d.contains("diff --git a/b.txt b/b.txt"), "{d}");
        assert!(!d.contains("x.ignored"));
        assert_eq!(changed_paths(&r.git, &dir).unwrap(), ["a.txt", "b.txt"]);
        std::fs::write(dir.join("big.txt"), "y\n".repeat(200_000)).unwrap();
        let d = diff(&r.git, &dir).unwrap();
        assert!(d.len() < MAX_DIFF_BYTES + 200);
        assert!(d.ends_with(" bytes shown]\n"), "{}", &d[d.len() - 80..]);
    }

    #[test]
    fn main_worktree_is_refused() {
        let (r, _) = setup();
        let root = r.root();
        assert!(matches!(
            diff(&r.git, &root),
            Err(WorktreeError::NotAWorktree { .. })
        ));
        let err = commit_deliverable(&r.git, &root, &who(), "s", "", &[]).unwrap_err();
        assert!(matches!(err, WorktreeError::NotAWorktree { .. }));
    }

    #[test]
    fn commit_deliverable_is_idempotent() {
        let (r, paths) = setup();
        let dir = prepare(&r.git, &paths, &stage("s1"), "main").unwrap();
        std::fs::write(dir.join("b.txt"), "work\n").unwrap();
        let t = trailer("s1");
        let c1 = commit_deliverable(&r.git, &dir, &who(), "Do it", "Body.", &t).unwrap();
        let c2 = commit_deliverable(&r.git, &dir, &who(), "Do it", "Body.", &t).unwrap();
        assert_eq!(c1, c2);
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
    fn integrate_fast_forward_then_already_then_not_ff() {
        let (r, paths) = setup();
        let main = branch_tip(&r.git, "main").unwrap().unwrap();
        let before = user_view(&r);
        let s1 = stage_with(&r, &paths, "s1", "one.txt", "1\n");
        let got = integrate(
            &r.git,
            "nightshift/stage/s1",
            TARGET,
            "main",
            Policy::FastForward,
        );
        assert_eq!(
            got.unwrap(),
            Integrated::FastForwarded { commit: s1.clone() }
        );
        assert_eq!(branch_tip(&r.git, TARGET).unwrap(), Some(s1.clone()));
        let again = integrate(
            &r.git,
            "nightshift/stage/s1",
            TARGET,
            "main",
            Policy::FastForward,
        );
        assert_eq!(
            again.unwrap(),
            Integrated::AlreadyIntegrated { commit: s1.clone() }
        );
        // s2 started from main too: the target moved on, so its commit is replayed on top,
        // linear, with s2's author and message; doing it again changes nothing.
        let s2 = stage_with(&r, &paths, "s2", "two.txt", "2\n");
        let got = integrate(
            &r.git,
            "nightshift/stage/s2",
            TARGET,
            "main",
            Policy::FastForward,
        )
        .unwrap();
        let Integrated::Replayed { commit } = got else {
            panic!("{got:?}")
        };
        assert_eq!(
            r.git.run(&["rev-parse", &format!("{commit}^")]).unwrap(),
            s1,
            "linear on top of s1"
        );
        assert_eq!(
            r.git.run(&["show", &format!("{commit}:one.txt")]).unwrap(),
            "1"
        );
        assert_eq!(
            r.git.run(&["show", &format!("{commit}:two.txt")]).unwrap(),
            "2"
        );
        let msg = |c: &str| r.git.run(&["log", "-1", "--format=%an %B", c]).unwrap();
        assert_eq!(msg(&commit), msg(&s2));
        let again = integrate(
            &r.git,
            "nightshift/stage/s2",
            TARGET,
            "main",
            Policy::FastForward,
        )
        .unwrap();
        assert_eq!(
            again,
            Integrated::AlreadyIntegrated {
                commit: commit.clone()
            }
        );
        // A replay that conflicts is refused and moves nothing.
        stage_with(&r, &paths, "s3", "two.txt", "other\n");
        let err = integrate(
            &r.git,
            "nightshift/stage/s3",
            TARGET,
            "main",
            Policy::FastForward,
        );
        assert!(
            matches!(err, Err(WorktreeError::Conflict { .. })),
            "{err:?}"
        );
        assert_eq!(branch_tip(&r.git, TARGET).unwrap(), Some(commit));
        assert_eq!(branch_tip(&r.git, "main").unwrap(), Some(main));
        assert_eq!(user_view(&r), before);
    }

    #[test]
    fn integrate_merge_and_conflict() {
        let (r, paths) = setup();
        let before = user_view(&r);
        let s1 = stage_with(&r, &paths, "s1", "a.txt", "from s1\n");
        integrate(&r.git, "nightshift/stage/s1", TARGET, "main", Policy::Merge).unwrap();
        let s2 = stage_with(&r, &paths, "s2", "two.txt", "2\n");
        let got = integrate(&r.git, "nightshift/stage/s2", TARGET, "main", Policy::Merge);
        let Ok(Integrated::Merged { commit }) = got else {
            panic!("{got:?}");
        };
        let parents = r
            .git
            .run(&["log", "-1", "--format=%P|%s", &commit])
            .unwrap();
        let tip1 = r.git.run(&["rev-parse", &format!("{commit}^1")]).unwrap();
        assert_eq!(r.git.run(&["rev-parse", &format!("{tip1}^2")]).unwrap(), s1);
        assert!(parents.starts_with(&format!("{tip1} {s2}|")), "{parents}");
        assert!(
            parents.ends_with("nightshift: merge nightshift/stage/s2 into nightshift/integration")
        );
        let files = r.git.run(&["ls-tree", "--name-only", &commit]).unwrap();
        assert!(files.contains("two.txt"));
        stage_with(&r, &paths, "s3", "a.txt", "from s3\n");
        let err = integrate(&r.git, "nightshift/stage/s3", TARGET, "main", Policy::Merge);
        let Err(WorktreeError::Conflict { detail, .. }) = err else {
            panic!("{err:?}");
        };
        assert_eq!(detail, "a.txt");
        assert_eq!(branch_tip(&r.git, TARGET).unwrap(), Some(commit));
        assert_eq!(user_view(&r), before);
    }

    #[test]
    fn integrate_refuses_checked_out_targets_and_none_leaves_branch() {
        let (r, paths) = setup();
        let s1 = stage_with(&r, &paths, "s1", "one.txt", "1\n");
        let main = branch_tip(&r.git, "main").unwrap();
        for policy in [Policy::FastForward, Policy::Merge] {
            let err = integrate(&r.git, "nightshift/stage/s1", "main", "main", policy);
            assert!(
                matches!(err, Err(WorktreeError::CheckedOut { .. })),
                "{err:?}"
            );
        }
        stage_with(&r, &paths, "s2", "two.txt", "2\n");
        let err = integrate(
            &r.git,
            "nightshift/stage/s2",
            "nightshift/stage/s1",
            "main",
            Policy::Merge,
        );
        assert!(
            matches!(err, Err(WorktreeError::CheckedOut { .. })),
            "{err:?}"
        );
        assert_eq!(branch_tip(&r.git, "main").unwrap(), main);
        let got = integrate(&r.git, "nightshift/stage/s1", TARGET, "main", Policy::None);
        assert_eq!(got.unwrap(), Integrated::LeftAsBranch { commit: s1 });
        assert_eq!(branch_tip(&r.git, TARGET).unwrap(), None);
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
        assert!(!list.contains("state/worktrees"), "{list}");
        prepare(&r.git, &paths, &stage("s1"), "main").unwrap();
    }
}
