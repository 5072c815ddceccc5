//! The deliverable as a git tree: taken at the worker's handoff (tracked and new files, honouring
//! `.gitignore`, never ignored files) through a private index file, so the workspace's own
//! index, which the agent controls, is neither read nor trusted. Acceptance and the verifier
//! run on exactly that tree ([`restore`]), the verifier is shown its diff ([`diff`]), and the
//! stage branch gets exactly that tree on a pass (`worktree::commit_tree`). Also reads a tree's
//! blobs for the secret scan and names the paths two trees differ in.
//!
//! It must never write the workspace's index or files except in [`restore`], and never touch
//! the user's checkout.

use std::path::Path;

use crate::git::Git;
use crate::worktree::WorktreeError;

/// [`diff`] output beyond this many bytes is cut off with a note.
pub const MAX_DIFF_BYTES: usize = 200 * 1024;

/// The tree of everything in `workspace` that git would add on top of commit `base` (`base`'s
/// files as they are now, plus new non-ignored files), built in a private index and written to
/// the object database. Returns the tree id. Whatever the agent committed or staged itself is
/// irrelevant: only the files count.
///
/// # Errors
/// [`WorktreeError::Io`] when the private index cannot be made, [`WorktreeError::Git`] when
/// a git step fails.
pub fn take(
    git: &Git,
    workspace: &Path,
    base: &str,
    scratch: &Path,
) -> Result<String, WorktreeError> {
    if !crate::workspace::gitfile_is_own(workspace, &git.root().join(".git")) {
        return Err(WorktreeError::NotAWorktree {
            path: workspace.to_path_buf(),
        });
    }
    // In the job's own scratch folder, not the shared temp dir: a wrapper killed during
    // `git add` leaves its `index.lock` where the verified kill of the job removes it.
    let io = |e: std::io::Error| WorktreeError::Io {
        path: scratch.to_path_buf(),
        source: e,
    };
    std::fs::create_dir_all(scratch).map_err(io)?;
    let dir = tempfile::Builder::new()
        .prefix("index-")
        .tempdir_in(scratch)
        .map_err(io)?;
    let index = dir.path().join("index");
    let index = index.to_string_lossy();
    let env = [("GIT_INDEX_FILE", index.as_ref())];
    let tree = (|| {
        git.run_in(workspace, &["read-tree", base], &env, None)?;
        git.run_in(workspace, &["add", "-A", "--", "."], &env, None)?;
        git.run_in(workspace, &["write-tree"], &env, None)
    })();
    drop(dir);
    // Empty now unless a panel member of the job is inside: then it stays until the kill.
    let _ = std::fs::remove_dir(scratch);
    Ok(String::from_utf8_lossy(&tree?.stdout).trim().to_owned())
}

/// [`take`] with a scratch folder of its own, removed after (tests).
///
/// # Errors
/// As [`take`].
#[cfg(test)]
pub(crate) fn take_scratch(
    git: &Git,
    workspace: &Path,
    base: &str,
) -> Result<String, WorktreeError> {
    let scratch = tempfile::tempdir().map_err(|e| WorktreeError::Io {
        path: std::env::temp_dir(),
        source: e,
    })?;
    take(git, workspace, base, &scratch.path().join("s"))
}

/// Makes `workspace` hold exactly `tree` (its non-ignored files; ignored files such as build
/// caches stay): the workspace's index and files are reset to the tree and every other
/// non-ignored file is removed.
///
/// # Errors
/// [`WorktreeError::Git`] when a git step fails.
pub fn restore(git: &Git, workspace: &Path, tree: &str) -> Result<(), WorktreeError> {
    git.run_in(workspace, &["read-tree", "--reset", "-u", tree], &[], None)?;
    git.run_in(workspace, &["clean", "-f", "-d", "-q"], &[], None)?;
    Ok(())
}

/// The paths whose content differs between two trees (added, removed or changed), sorted.
///
/// # Errors
/// [`WorktreeError::Git`] when git fails.
pub fn changed(git: &Git, from: &str, to: &str) -> Result<Vec<String>, WorktreeError> {
    if from == to {
        return Ok(Vec::new());
    }
    let args = [
        "diff-tree",
        "-r",
        "--name-only",
        "--no-renames",
        "-z",
        from,
        to,
    ];
    let out = git.run_in(git.root(), &args, &[], None)?;
    let mut paths: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .split('\0')
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect();
    paths.sort();
    Ok(paths)
}

/// The unified diff from `base` (a commit or tree) to `tree`, no external diff driver and no
/// textconv, cut off at [`MAX_DIFF_BYTES`] with a trailing note.
///
/// # Errors
/// [`WorktreeError::Git`] when git fails.
pub fn diff(git: &Git, base: &str, tree: &str) -> Result<String, WorktreeError> {
    let args = [
        "diff-tree",
        "-p",
        "-r",
        "--no-color",
        "--no-ext-diff",
        "--no-textconv",
        "--src-prefix=a/",
        "--dst-prefix=b/",
        base,
        tree,
    ];
    let out = git.run_in(git.root(), &args, &[], None)?;
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

/// The first path among `paths` whose blob in `tree` contains any of `needles`, with the
/// needle's index. Paths missing from the tree (deleted) are skipped.
///
/// # Errors
/// [`WorktreeError::Git`] when git fails.
pub fn find_in_blobs(
    git: &Git,
    tree: &str,
    paths: &[String],
    needles: &[&str],
) -> Result<Option<(String, usize)>, WorktreeError> {
    if needles.is_empty() || paths.is_empty() {
        return Ok(None);
    }
    let mut args = vec!["ls-tree", "-r", "-z", tree, "--"];
    args.extend(paths.iter().map(String::as_str));
    let out = git.run_in(git.root(), &args, &[], None)?;
    let listing = String::from_utf8_lossy(&out.stdout).into_owned();
    for entry in listing.split('\0').filter(|e| !e.is_empty()) {
        let Some((meta, path)) = entry.split_once('\t') else {
            continue;
        };
        let mut fields = meta.split(' ');
        let (Some(_mode), Some("blob"), Some(id)) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let blob = git.run_in(git.root(), &["cat-file", "blob", id], &[], None)?;
        let text = String::from_utf8_lossy(&blob.stdout);
        if let Some(i) = needles.iter().position(|n| text.contains(n)) {
            return Ok(Some((path.to_owned(), i)));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worktree::testing::{setup, stage};

    #[test]
    fn take_honours_gitignore_and_restore_removes_artefacts() {
        let (r, paths) = setup();
        let wt = crate::worktree::prepare(&r.git, &paths, &stage("s1"), "main").unwrap();
        std::fs::write(wt.join("a.txt"), "changed\n").unwrap();
        std::fs::write(wt.join("new.txt"), "new\n").unwrap();
        std::fs::write(wt.join("x.ignored"), "ignored\n").unwrap();
        let tree = take_scratch(&r.git, &wt, "main").unwrap();
        let head = r.git.run(&["rev-parse", "main^{tree}"]).unwrap();
        assert_eq!(changed(&r.git, &head, &tree).unwrap(), ["a.txt", "new.txt"]);
        // The workspace's own index was not touched.
        let status = r
            .git
            .run(&["-C", wt.to_str().unwrap(), "status", "--porcelain"]);
        assert!(status.unwrap().contains("?? new.txt"));
        std::fs::create_dir_all(wt.join("__pycache__")).unwrap();
        std::fs::write(wt.join("__pycache__/m.pyc"), "bytecode").unwrap();
        std::fs::write(wt.join("a.txt"), "edited after\n").unwrap();
        restore(&r.git, &wt, &tree).unwrap();
        assert!(!wt.join("__pycache__").exists());
        assert_eq!(
            std::fs::read_to_string(wt.join("a.txt")).unwrap(),
            "changed\n"
        );
        assert!(wt.join("x.ignored").exists());
        assert_eq!(take_scratch(&r.git, &wt, "main").unwrap(), tree);
        let d = diff(&r.git, "main", &tree).unwrap();
        assert!(d.contains("+changed") && d.contains("b/new.txt"), "{d}");
        let hit = find_in_blobs(&r.git, &tree, &["new.txt".into()], &["zz", "ew"]).unwrap();
        assert_eq!(hit, Some(("new.txt".to_owned(), 1)));
    }
}
