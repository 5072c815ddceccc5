//! The ledger: the branch `refs/heads/nightshift/ledger`, whose tree is the durable part of
//! `state/` (`state.yaml`, `budget.json`, `cards/**`, `handoffs/**`). Each tick that changes
//! state commits it here, so the branch's history is the audit trail and its head is the truth.
//!
//! Trees are built with plumbing and a private index (`state/.ledger-index`); the ref moves
//! by compare-and-swap. This module must never touch the user's HEAD, index (`.git/index`),
//! working tree or current branch — not with a detached HEAD, a dirty tree or a rebase in
//! progress — and never commits logs, active-agent registrations, worktrees or dot-files.

use std::path::{Path, PathBuf};

use crate::git::{Git, GitError};
use crate::paths::{LEDGER_REF, Paths};

/// The committer of every commit nightshift makes (cron and launchd have no identity).
pub(crate) const NIGHTSHIFT_COMMITTER: [(&str, &str); 2] = [
    ("GIT_COMMITTER_NAME", "nightshift"),
    ("GIT_COMMITTER_EMAIL", "nightshift@localhost"),
];

/// Author and committer of ledger and merge commits.
pub(crate) const NIGHTSHIFT_IDENTITY: [(&str, &str); 4] = [
    ("GIT_AUTHOR_NAME", "nightshift"),
    ("GIT_AUTHOR_EMAIL", "nightshift@localhost"),
    NIGHTSHIFT_COMMITTER[0],
    NIGHTSHIFT_COMMITTER[1],
];

/// The reflog message of every ledger ref update.
const REFLOG_MESSAGE: &str = "nightshift ledger";

/// One commit on the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    pub commit: String,
    /// Committer time, unix seconds.
    pub time: i64,
    /// The full commit message (trailing newline trimmed).
    pub message: String,
}

/// The commit id at the ledger's head, `None` when the branch does not exist yet.
///
/// # Errors
/// [`GitError`] when git cannot be run.
pub fn head(git: &Git) -> Result<Option<String>, GitError> {
    git.try_run(&[
        "rev-parse",
        "--verify",
        "-q",
        &format!("{LEDGER_REF}^{{commit}}"),
    ])
}

/// Commits the durable part of `state/` to the ledger and returns the new commit id.
///
/// The caller must hold the tick lock: a leftover `.ledger-index.lock` is taken to be from a
/// crashed tick and removed.
///
/// # Errors
/// [`GitError`] when a git step fails, including [`GitError::Failed`] from `update-ref` when the
/// ledger moved while this commit was being built (a concurrent writer).
pub fn commit(git: &Git, paths: &Paths, message: &str) -> Result<String, GitError> {
    let old = head(git)?;
    commit_expecting(git, paths, message, old.as_deref())
}

/// [`commit`] with the expected current head given: the new commit's parent, and the value the
/// ref must still hold for the compare-and-swap to succeed (`None`: the ref must not exist).
pub(crate) fn commit_expecting(
    git: &Git,
    paths: &Paths,
    message: &str,
    expected_old: Option<&str>,
) -> Result<String, GitError> {
    let index = absolute(git, &paths.ledger_index());
    let index_str = index.to_string_lossy().into_owned();
    let root = git.root().to_string_lossy().into_owned();
    let env = [
        ("GIT_INDEX_FILE", index_str.as_str()),
        ("GIT_WORK_TREE", root.as_str()),
    ];
    prepare_index(git, &index, &env, expected_old)?;
    stage_durable(git, paths, &env)?;
    let tree = stdout(&git.run_in(git.root(), &["write-tree"], &env, None)?);
    let message = crate::redact::apply(message);
    let new = commit_tree(git, &tree, expected_old, &message)?;
    git.run(&[
        "update-ref",
        "-m",
        REFLOG_MESSAGE,
        LEDGER_REF,
        &new,
        expected_old.unwrap_or(""),
    ])?;
    Ok(new)
}

/// Removes a stale lock and seeds a missing private index from the ledger head (or empty).
fn prepare_index(
    git: &Git,
    index: &Path,
    env: &[(&str, &str)],
    base: Option<&str>,
) -> Result<(), GitError> {
    let mut lock = index.as_os_str().to_owned();
    lock.push(".lock");
    match std::fs::remove_file(&lock) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(GitError::Io(e)),
        _ => {}
    }
    if index.exists() {
        return Ok(());
    }
    if let Some(parent) = index.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let args = match base {
        Some(commit) => vec!["read-tree", commit],
        None => vec!["read-tree", "--empty"],
    };
    git.run_in(git.root(), &args, env, None)?;
    Ok(())
}

/// The durable paths, relative to the repo root, in the order they are staged.
fn durable_paths(paths: &Paths) -> [String; 4] {
    let state = paths.state_dir();
    [
        paths.rel(&paths.state_file()),
        paths.rel(&paths.budget_file()),
        paths.rel(&state.join("cards")),
        paths.rel(&state.join("handoffs")),
    ]
}

/// Stages every durable path into the private index: present ones with `add -f -A` (which
/// also records deletions inside them), absent ones dropped from the index.
fn stage_durable(git: &Git, paths: &Paths, env: &[(&str, &str)]) -> Result<(), GitError> {
    let (present, absent): (Vec<String>, Vec<String>) = durable_paths(paths)
        .into_iter()
        .partition(|rel| git.root().join(rel).exists());
    if !present.is_empty() {
        let mut args = vec!["add", "--sparse", "-f", "-A", "--"];
        args.extend(present.iter().map(String::as_str));
        // Job wrappers write handoffs without the tick lock (atomically, through `.tmp-*`
        // files that live for microseconds): never take those, and if one vanishes between
        // git's directory scan and its stat, look again.
        args.push(":(exclude,glob)state/**/.tmp-*");
        add_retrying(git, &args, env)?;
    }
    if !absent.is_empty() {
        let mut args = vec![
            "rm",
            "--sparse",
            "-r",
            "-q",
            "--cached",
            "--ignore-unmatch",
            "--",
        ];
        args.extend(absent.iter().map(String::as_str));
        git.run_in(git.root(), &args, env, None)?;
    }
    Ok(())
}

/// `git add`, retried when a file vanished under it ("unable to stat", "No such file").
fn add_retrying(git: &Git, args: &[&str], env: &[(&str, &str)]) -> Result<(), GitError> {
    let mut tries = 0;
    loop {
        match git.run_in(git.root(), args, env, None) {
            Ok(_) => return Ok(()),
            Err(GitError::Failed { stderr, .. })
                if tries < 4
                    && (stderr.contains("unable to stat") || stderr.contains("No such file")) =>
            {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => return Err(e),
        }
    }
}

fn commit_tree(
    git: &Git,
    tree: &str,
    parent: Option<&str>,
    message: &str,
) -> Result<String, GitError> {
    let mut args = vec!["commit-tree", tree];
    if let Some(p) = parent {
        args.extend(["-p", p]);
    }
    args.extend(["-F", "-"]);
    let out = git.run_in(
        git.root(),
        &args,
        &NIGHTSHIFT_IDENTITY,
        Some(message.as_bytes()),
    )?;
    Ok(stdout(&out))
}

/// The bytes of `rel_path` (e.g. `state/state.yaml`) at the ledger head; `None` when there is
/// no ledger or no such file in it.
///
/// # Errors
/// [`GitError`] when git cannot be run or fails reading an object that exists.
pub fn read_file(git: &Git, rel_path: &str) -> Result<Option<Vec<u8>>, GitError> {
    let spec = format!("{LEDGER_REF}:{rel_path}");
    let Some(id) = git.try_run(&["rev-parse", "--verify", "-q", &spec])? else {
        return Ok(None);
    };
    if git.run(&["cat-file", "-t", &id])? != "blob" {
        return Ok(None);
    }
    let out = git.run_in(git.root(), &["cat-file", "blob", &id], &[], None)?;
    Ok(Some(out.stdout))
}

/// Ledger commits, newest first, at most `limit` of them; empty when there is no ledger.
///
/// # Errors
/// [`GitError`] when git fails or prints something unparseable.
pub fn log(git: &Git, limit: Option<usize>) -> Result<Vec<LedgerEntry>, GitError> {
    if head(git)?.is_none() {
        return Ok(Vec::new());
    }
    let max = limit.map(|n| format!("--max-count={n}"));
    let mut args = vec![
        "log",
        "-z",
        "--no-show-signature",
        "--format=%H%x00%ct%x00%B",
    ];
    args.extend(max.as_deref());
    args.extend([LEDGER_REF, "--"]);
    let out = git.run_in(git.root(), &args, &[], None)?;
    parse_log(&String::from_utf8_lossy(&out.stdout))
}

/// Parses `-z` output of `%H%x00%ct%x00%B`: three NUL-separated fields per commit.
fn parse_log(text: &str) -> Result<Vec<LedgerEntry>, GitError> {
    let fields: Vec<&str> = text.split('\0').collect();
    let mut entries = Vec::new();
    for chunk in fields.chunks(3) {
        let [commit, time, message] = chunk else {
            if chunk.iter().all(|f| f.trim().is_empty()) {
                continue;
            }
            return Err(bad_log(text));
        };
        let time = time.trim().parse().map_err(|_| bad_log(text))?;
        entries.push(LedgerEntry {
            commit: commit.trim().to_owned(),
            time,
            message: message.trim_end_matches('\n').to_owned(),
        });
    }
    Ok(entries)
}

fn bad_log(text: &str) -> GitError {
    let head: String = text.chars().take(200).collect();
    GitError::Failed {
        args: format!("log {LEDGER_REF}"),
        code: Some(0),
        stderr: format!("unparseable output: {head:?}"),
    }
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn absolute(git: &Git, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        git.root().join(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::git::testing::{TestRepo, repo};

    fn paths(r: &TestRepo) -> Paths {
        Paths::new(r.root())
    }

    fn write_state(r: &TestRepo, seq: u32) {
        r.write("state/state.yaml", &format!("seq: {seq}\n"));
        r.write("state/budget.json", "{}\n");
        r.write("state/cards/s1.md", "# card\n");
        r.write("state/handoffs/s1/a1/worker.json", "{\"ok\":true}\n");
        r.write("state/logs/s1/a1-worker.log", "noise\n");
        r.write("state/active-agents/s1@a1-worker.json", "{}\n");
        r.write("state/.ledger-seq", "1\n");
    }

    fn tree_files(r: &TestRepo, commit: &str) -> Vec<String> {
        let out = r
            .git
            .run(&["ls-tree", "-r", "--name-only", commit])
            .unwrap();
        out.lines().map(str::to_owned).collect()
    }

    /// Everything of the user's checkout that the ledger must leave alone.
    #[derive(Debug, PartialEq)]
    struct UserView {
        head_file: Vec<u8>,
        index: Option<Vec<u8>>,
        head: Option<String>,
        branch: Option<String>,
        untracked: String,
        tracked: String,
    }

    fn user_view(r: &TestRepo) -> UserView {
        let gitdir = r.root().join(".git");
        UserView {
            head_file: std::fs::read(gitdir.join("HEAD")).unwrap(),
            index: std::fs::read(gitdir.join("index")).ok(),
            head: r
                .git
                .try_run(&["rev-parse", "-q", "--verify", "HEAD"])
                .unwrap(),
            branch: r.git.try_run(&["symbolic-ref", "-q", "HEAD"]).unwrap(),
            untracked: std::fs::read_to_string(r.root().join("untracked.txt")).unwrap_or_default(),
            tracked: std::fs::read_to_string(r.root().join("tracked.txt")).unwrap_or_default(),
        }
    }

    fn porcelain(r: &TestRepo) -> String {
        r.git
            .run(&["status", "--porcelain", "--untracked-files=all"])
            .unwrap()
    }

    /// A repo with one commit, a dirty tracked file, a staged change and an untracked file.
    fn dirty_repo() -> TestRepo {
        let r = repo();
        r.write(".gitignore", "/state/*\n");
        r.write("tracked.txt", "v1\n");
        r.write("staged.txt", "s1\n");
        r.commit_all("init");
        r.write("tracked.txt", "dirty\n");
        r.write("staged.txt", "s2\n");
        r.git.run(&["add", "staged.txt"]).unwrap();
        r.write("untracked.txt", "mine\n");
        r
    }

    fn assert_untouched_by_commit(r: &TestRepo) {
        let status = porcelain(r);
        let before = user_view(r);
        write_state(r, 1);
        let c = commit(&r.git, &paths(r), "tick 1").unwrap();
        write_state(r, 2);
        commit(&r.git, &paths(r), "tick 2").unwrap();
        assert_eq!(user_view(r), before);
        assert_eq!(porcelain(r), status);
        assert!(tree_files(r, &c).contains(&"state/state.yaml".to_owned()));
    }

    /// A job wrapper's in-flight atomic write (`.tmp-*` in a handoff dir) is never taken into
    /// the ledger, and a commit made next to it succeeds.
    #[test]
    fn temp_files_of_concurrent_writers_are_excluded() {
        let r = dirty_repo();
        write_state(&r, 1);
        let dir = r.root().join("state/handoffs/s/a1");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("worker.json"), "{}").unwrap();
        std::fs::write(dir.join(".tmp-abc123"), "partial").unwrap();
        let c = commit(&r.git, &paths(&r), "tick 1").unwrap();
        let files = tree_files(&r, &c);
        assert!(
            files.contains(&"state/handoffs/s/a1/worker.json".to_owned()),
            "{files:?}"
        );
        assert!(!files.iter().any(|f| f.contains(".tmp-")), "{files:?}");
    }

    #[test]
    fn commit_on_unborn_head() {
        let r = repo();
        let before = user_view(&r);
        write_state(&r, 1);
        let c = commit(&r.git, &paths(&r), "first").unwrap();
        assert_eq!(head(&r.git).unwrap().as_deref(), Some(c.as_str()));
        assert_eq!(user_view(&r), before);
        assert_eq!(
            tree_files(&r, &c),
            [
                "state/budget.json",
                "state/cards/s1.md",
                "state/handoffs/s1/a1/worker.json",
                "state/state.yaml",
            ]
        );
        let author = r
            .git
            .run(&["log", "-1", "--format=%an <%ae>|%cn", &c])
            .unwrap();
        assert_eq!(author, "nightshift <nightshift@localhost>|nightshift");
    }

    #[test]
    fn commit_leaves_dirty_checkout_alone() {
        assert_untouched_by_commit(&dirty_repo());
    }

    #[test]
    fn commit_leaves_detached_head_alone() {
        let r = dirty_repo();
        r.git.run(&["checkout", "-q", "--detach"]).unwrap();
        assert_untouched_by_commit(&r);
    }

    #[test]
    fn commit_leaves_rebase_in_progress_alone() {
        let r = dirty_repo();
        let rebase = r.root().join(".git/rebase-merge");
        std::fs::create_dir_all(&rebase).unwrap();
        std::fs::write(rebase.join("head-name"), "refs/heads/main\n").unwrap();
        assert_untouched_by_commit(&r);
        assert_eq!(
            std::fs::read_to_string(rebase.join("head-name")).unwrap(),
            "refs/heads/main\n"
        );
    }

    #[test]
    fn second_commit_has_first_as_parent_and_drops_deleted_files() {
        let r = repo();
        write_state(&r, 1);
        let first = commit(&r.git, &paths(&r), "one").unwrap();
        std::fs::remove_file(r.root().join("state/handoffs/s1/a1/worker.json")).unwrap();
        r.write("state/handoffs/s1/a2/worker.json", "{}\n");
        let second = commit(&r.git, &paths(&r), "two").unwrap();
        let parent = r.git.run(&["rev-parse", &format!("{second}^")]).unwrap();
        assert_eq!(parent, first);
        let files = tree_files(&r, &second);
        assert!(!files.contains(&"state/handoffs/s1/a1/worker.json".to_owned()));
        assert!(files.contains(&"state/handoffs/s1/a2/worker.json".to_owned()));
        std::fs::remove_dir_all(r.root().join("state/cards")).unwrap();
        let third = commit(&r.git, &paths(&r), "three").unwrap();
        assert!(
            !tree_files(&r, &third)
                .iter()
                .any(|f| f.starts_with("state/cards"))
        );
    }

    #[test]
    fn missing_private_index_is_seeded_from_ledger() {
        let r = repo();
        write_state(&r, 1);
        commit(&r.git, &paths(&r), "one").unwrap();
        std::fs::remove_file(paths(&r).ledger_index()).unwrap();
        let c = commit(&r.git, &paths(&r), "two").unwrap();
        assert_eq!(tree_files(&r, &c).len(), 4);
    }

    #[test]
    fn compare_and_swap_loses_to_a_concurrent_writer() {
        let r = repo();
        write_state(&r, 1);
        let first = commit(&r.git, &paths(&r), "one").unwrap();
        // Someone else moves the ledger after we read its head.
        let other = commit(&r.git, &paths(&r), "other").unwrap();
        let err = commit_expecting(&r.git, &paths(&r), "ours", Some(&first)).unwrap_err();
        assert!(matches!(err, GitError::Failed { .. }), "{err}");
        assert_eq!(head(&r.git).unwrap(), Some(other.clone()));
        // Creating the branch when it already exists also loses.
        assert!(commit_expecting(&r.git, &paths(&r), "ours", None).is_err());
        assert_eq!(head(&r.git).unwrap(), Some(other));
    }

    #[test]
    fn stale_index_lock_is_removed() {
        let r = repo();
        write_state(&r, 1);
        commit(&r.git, &paths(&r), "one").unwrap();
        let lock = r.root().join("state/.ledger-index.lock");
        std::fs::write(&lock, "junk").unwrap();
        r.write("state/state.yaml", "seq: 2\n");
        commit(&r.git, &paths(&r), "two").unwrap();
        assert!(!lock.exists());
        assert_eq!(
            read_file(&r.git, "state/state.yaml").unwrap().unwrap(),
            b"seq: 2\n"
        );
    }

    #[test]
    fn read_file_returns_committed_bytes() {
        let r = repo();
        assert_eq!(read_file(&r.git, "state/state.yaml").unwrap(), None);
        write_state(&r, 7);
        r.write("state/budget.json", "{\"spent\":\u{e9}}\n");
        commit(&r.git, &paths(&r), "one").unwrap();
        r.write("state/state.yaml", "seq: 8\n");
        assert_eq!(
            read_file(&r.git, "state/state.yaml").unwrap().unwrap(),
            b"seq: 7\n"
        );
        assert_eq!(
            read_file(&r.git, "state/budget.json").unwrap().unwrap(),
            "{\"spent\":\u{e9}}\n".as_bytes()
        );
        assert_eq!(read_file(&r.git, "state/nope").unwrap(), None);
        assert_eq!(read_file(&r.git, "state/cards").unwrap(), None);
    }

    #[test]
    fn log_is_newest_first_with_full_messages() {
        let r = repo();
        assert!(log(&r.git, None).unwrap().is_empty());
        write_state(&r, 1);
        let a = commit(&r.git, &paths(&r), "one\n\nbody line\nSeq: 1").unwrap();
        let b = commit(&r.git, &paths(&r), "two").unwrap();
        let entries = log(&r.git, None).unwrap();
        let ids: Vec<&str> = entries.iter().map(|e| e.commit.as_str()).collect();
        assert_eq!(ids, [b.as_str(), a.as_str()]);
        assert_eq!(entries[1].message, "one\n\nbody line\nSeq: 1");
        assert!(entries[0].time > 1_600_000_000);
        let limited = log(&r.git, Some(1)).unwrap();
        assert_eq!(limited.len(), 1);
        assert_eq!(limited[0].message, "two");
    }
}
