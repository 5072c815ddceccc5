//! Integration by ref plumbing alone: brings a finished stage branch into the integration
//! branch under the configured policy (fast-forward, replaying onto a moved target, merge, or
//! leave as a branch).
//!
//! It must never write an index or a working tree (only `merge-tree`, `commit-tree` and
//! compare-and-swap `update-ref`), and never move a branch that is checked out in any worktree.

use crate::config::Policy;
use crate::git::{Git, GitError};
use crate::ledger::NIGHTSHIFT_IDENTITY;
use crate::worktree::{WorktreeError, branch_tip, resolve_commit, unknown};

/// The reflog message of every branch update made by [`integrate`].
const REFLOG_MESSAGE: &str = "nightshift integrate";

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

/// Why an integration failed.
#[derive(Debug, thiserror::Error)]
pub enum IntegrateError {
    #[error(transparent)]
    Git(#[from] GitError),
    #[error(transparent)]
    Worktree(#[from] WorktreeError),
    #[error("merging {stage_branch} into {target} conflicts in: {detail}")]
    Conflict {
        target: String,
        stage_branch: String,
        detail: String,
    },
    #[error("branch {branch} is checked out in a worktree and nightshift never moves those")]
    CheckedOut { branch: String },
}

/// Brings `stage_branch` into the branch `target` under `policy`, creating `target` at
/// `create_from` first when it does not exist. Only refs move: no index or working tree is
/// touched, and every ref update is a compare-and-swap.
///
/// # Errors
/// [`IntegrateError::CheckedOut`] when `target` is checked out in any worktree,
/// [`WorktreeError::UnknownRevision`] when `stage_branch` or `create_from` does not resolve,
/// [`IntegrateError::Conflict`] when the stage's change conflicts with the target (a merge, or
/// a replay when the target cannot simply be fast-forwarded), [`IntegrateError::Git`] when a git step fails (including a lost compare-and-swap).
pub fn integrate(
    git: &Git,
    stage_branch: &str,
    target: &str,
    create_from: &str,
    policy: Policy,
) -> Result<Integrated, IntegrateError> {
    let stage_tip = branch_tip(git, stage_branch)?.ok_or_else(|| unknown(stage_branch))?;
    if policy == Policy::None {
        return Ok(Integrated::LeftAsBranch { commit: stage_tip });
    }
    if checked_out_branches(git)?.iter().any(|b| b == target) {
        return Err(IntegrateError::CheckedOut {
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
        Policy::Merge | Policy::None => merge(git, &tips),
    }
}

/// The two branches being integrated and their tips.
struct Tips<'a> {
    stage_branch: &'a str,
    stage: &'a str,
    target: &'a str,
    target_tip: &'a str,
}

fn fast_forward(git: &Git, t: &Tips<'_>) -> Result<Integrated, IntegrateError> {
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
fn merge_tree(git: &Git, t: &Tips<'_>, base: Option<&str>) -> Result<String, IntegrateError> {
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

fn merge(git: &Git, t: &Tips<'_>) -> Result<Integrated, IntegrateError> {
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
fn replay(git: &Git, t: &Tips<'_>) -> Result<Integrated, IntegrateError> {
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

fn conflict(t: &Tips<'_>, mut files: Vec<&str>) -> IntegrateError {
    files.dedup();
    IntegrateError::Conflict {
        target: t.target.to_owned(),
        stage_branch: t.stage_branch.to_owned(),
        detail: files.join(", "),
    }
}

/// The tip of `target`, creating the branch at `create_from` when it does not exist.
fn ensure_branch(git: &Git, target: &str, create_from: &str) -> Result<String, IntegrateError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::git::testing::TestRepo;
    use crate::paths::Paths;
    use crate::worktree::testing::{setup, stage, trailer, who};
    use crate::worktree::{commit_deliverable, prepare};

    const TARGET: &str = "nightshift/integration";

    /// Prepares `id` from main, writes `file` and commits it as the deliverable.
    fn stage_with(r: &TestRepo, paths: &Paths, id: &str, file: &str, text: &str) -> String {
        let dir = prepare(&r.git, paths, &stage(id), "main").unwrap();
        std::fs::write(dir.join(file), text).unwrap();
        let tree = crate::snapshot::take_scratch(&r.git, &dir, "main").unwrap();
        let base = r.git.run(&["rev-parse", "main"]).unwrap();
        let branch = format!("nightshift/stage/{id}");
        let d = crate::worktree::Deliverable {
            branch: &branch,
            base: &base,
            tree: &tree,
        };
        commit_deliverable(&r.git, &dir, &d, &who(), (id, ""), &trailer(id)).unwrap()
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
            matches!(err, Err(IntegrateError::Conflict { .. })),
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
        let Err(IntegrateError::Conflict { detail, .. }) = err else {
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
                matches!(err, Err(IntegrateError::CheckedOut { .. })),
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
            matches!(err, Err(IntegrateError::CheckedOut { .. })),
            "{err:?}"
        );
        assert_eq!(branch_tip(&r.git, "main").unwrap(), main);
        let got = integrate(&r.git, "nightshift/stage/s1", TARGET, "main", Policy::None);
        assert_eq!(got.unwrap(), Integrated::LeftAsBranch { commit: s1 });
        assert_eq!(branch_tip(&r.git, TARGET).unwrap(), None);
    }
}
