//! The layout of a stage's workspace and the two git views of it. The workspace is a linked
//! worktree of the repository living outside the checkout ([`crate::paths::Paths::worktree`]);
//! nightshift's own git reaches it through its `.git` file and the admin directory in the
//! repository's `.git/worktrees/` (never writable by an agent). The agent gets a view of its
//! own ([`prepare_agent_git`]): a small git directory beside the workspaces that shares the
//! repository's objects through `objects/info/alternates`, with the stage branch checked out
//! into its own index, selected by `GIT_DIR`/`GIT_WORK_TREE` in the agent's environment. The
//! agent's `git status/add/commit` work there (and are writable under confinement) without
//! any write to the repository's `.git`; nightshift ignores that view and snapshots the work
//! tree itself.
//!
//! It must never hand an agent a path inside the repository's `.git`, and never trust a
//! workspace whose `.git` file does not point at its own admin directory ([`gitfile_is_own`]).

use std::path::{Path, PathBuf};

use crate::git::Git;
use crate::ids::StageId;
use crate::paths::Paths;
use crate::worktree::WorktreeError;

/// The agent's own git directory for `stage` (beside the workspaces, never inside one).
#[must_use]
pub fn agent_git_dir(paths: &Paths, stage: &StageId) -> PathBuf {
    paths.workspaces.join(".agent-git").join(stage.as_str())
}

/// Creates the agent's git view of `workspace` afresh: `branch` at `commit`, objects shared
/// with the repository (read-only), an index matching the work tree's start. Returns its
/// directory.
///
/// # Errors
/// When a git step fails or the directory cannot be replaced.
pub fn prepare_agent_git(
    git: &Git,
    paths: &Paths,
    stage: &StageId,
    workspace: &Path,
    branch: &str,
) -> Result<PathBuf, WorktreeError> {
    let dir = agent_git_dir(paths, stage);
    let io = |source: std::io::Error| WorktreeError::Io {
        path: dir.clone(),
        source,
    };
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(io)?;
    }
    std::fs::create_dir_all(&dir).map_err(io)?;
    let d = dir.to_string_lossy().into_owned();
    // The same object format as the repository whose objects it borrows (sha256 or sha1).
    let format = git.run(&["rev-parse", "--show-object-format"])?;
    let format = format!("--object-format={format}");
    git.run(&["init", "-q", "--bare", &format, &d])?;
    let common = git.run(&["rev-parse", "--path-format=absolute", "--git-common-dir"])?;
    let alternates = dir.join("objects/info/alternates");
    std::fs::write(&alternates, format!("{common}/objects\n")).map_err(io)?;
    let out = git.run_in(workspace, &["rev-parse", "HEAD"], &[], None)?;
    let head = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let gd = format!("--git-dir={d}");
    let wt = format!("--work-tree={}", workspace.display());
    let reference = format!("refs/heads/{branch}");
    git.run(&[&gd, "config", "core.bare", "false"])?;
    git.run(&[&gd, "update-ref", &reference, &head])?;
    git.run(&[&gd, "symbolic-ref", "HEAD", &reference])?;
    git.run(&[&gd, &wt, "read-tree", &head])?;
    // Refreshing may report changed files (exit 1); that is the work tree's state, not an error.
    let _ = git.run_raw(
        git.root(),
        &[&gd, &wt, "update-index", "-q", "--refresh"],
        &[],
        None,
    )?;
    Ok(dir)
}

/// The agent's environment for its git view.
#[must_use]
pub fn agent_git_env(dir: &Path, workspace: &Path) -> Vec<(String, String)> {
    vec![
        ("GIT_DIR".into(), dir.to_string_lossy().into_owned()),
        (
            "GIT_WORK_TREE".into(),
            workspace.to_string_lossy().into_owned(),
        ),
    ]
}

/// Whether `workspace/.git` is a file pointing at an admin directory under
/// `<common>/worktrees/` whose back pointer names this very workspace. The admin directory is
/// nightshift's (agents cannot write the repository's `.git`), so a workspace whose `.git` an
/// agent replaced or pointed elsewhere (another stage's admin directory, a repository of its
/// own with hooks) fails this and is never used by nightshift's git.
#[must_use]
pub fn gitfile_is_own(workspace: &Path, common: &Path) -> bool {
    let gitfile = workspace.join(".git");
    let Ok(meta) = std::fs::symlink_metadata(&gitfile) else {
        return false;
    };
    if !meta.is_file() {
        return false;
    }
    let Ok(text) = std::fs::read_to_string(&gitfile) else {
        return false;
    };
    let Some(admin) = text.trim_end().strip_prefix("gitdir: ").map(PathBuf::from) else {
        return false;
    };
    let (Ok(admin), Ok(worktrees)) = (
        admin.canonicalize(),
        common.join("worktrees").canonicalize(),
    ) else {
        return false;
    };
    if admin.parent() != Some(worktrees.as_path()) {
        return false;
    }
    let back = std::fs::read_to_string(admin.join("gitdir")).unwrap_or_default();
    let back = Path::new(back.trim_end());
    match (back.canonicalize(), gitfile.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worktree::testing::{setup, stage};

    #[test]
    fn the_agent_commits_in_its_own_view_and_the_repository_is_untouched() {
        let (r, paths) = setup();
        let s = stage("s1");
        let ws = crate::worktree::prepare(&r.git, &paths, &s, "main").unwrap();
        let dir = prepare_agent_git(&r.git, &paths, &s, &ws, "nightshift/stage/s1").unwrap();
        assert!(!dir.starts_with(r.root()));
        let refs_before = r.git.run(&["for-each-ref"]).unwrap();
        std::fs::write(ws.join("b.txt"), "agent\n").unwrap();
        let agent = |args: &[&str]| {
            let out = std::process::Command::new("git")
                .args(args)
                .current_dir(&ws)
                .envs(agent_git_env(&dir, &ws))
                .env("GIT_AUTHOR_NAME", "a")
                .env("GIT_AUTHOR_EMAIL", "a@example.com")
                .env("GIT_COMMITTER_NAME", "a")
                .env("GIT_COMMITTER_EMAIL", "a@example.com")
                .output()
                .unwrap();
            assert!(out.status.success(), "{args:?}: {out:?}");
            String::from_utf8(out.stdout).unwrap()
        };
        assert_eq!(agent(&["status", "--porcelain"]), "?? b.txt\n");
        agent(&["add", "-A"]);
        agent(&["commit", "-q", "-m", "agent's own commit"]);
        assert_eq!(agent(&["log", "--format=%s"]), "agent's own commit\ninit\n");
        // Nothing of it reached the repository; nightshift still sees the change as new.
        assert_eq!(r.git.run(&["for-each-ref"]).unwrap(), refs_before);
        let base = r.git.run(&["rev-parse", "main"]).unwrap();
        let tree = crate::snapshot::take_scratch(&r.git, &ws, base.trim()).unwrap();
        assert_eq!(
            crate::snapshot::changed(&r.git, base.trim(), &tree).unwrap(),
            ["b.txt"]
        );
    }

    #[test]
    fn a_redirected_gitfile_is_not_the_workspace_any_more() {
        let (r, paths) = setup();
        let ws1 = crate::worktree::prepare(&r.git, &paths, &stage("s1"), "main").unwrap();
        let ws2 = crate::worktree::prepare(&r.git, &paths, &stage("s2"), "main").unwrap();
        let common = r.root().join(".git");
        assert!(gitfile_is_own(&ws1, &common));
        // Point s1's workspace at s2's admin directory: refused.
        std::fs::copy(ws2.join(".git"), ws1.join(".git")).unwrap();
        assert!(!gitfile_is_own(&ws1, &common));
        assert!(crate::snapshot::take_scratch(&r.git, &ws1, "main").is_err());
        // A directory of the agent's own: refused; prepare rebuilds the workspace.
        std::fs::remove_file(ws1.join(".git")).unwrap();
        std::fs::create_dir(ws1.join(".git")).unwrap();
        assert!(!gitfile_is_own(&ws1, &common));
        crate::worktree::prepare(&r.git, &paths, &stage("s1"), "main").unwrap();
        assert!(gitfile_is_own(&ws1, &common));
    }
}
