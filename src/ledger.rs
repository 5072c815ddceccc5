//! The ledger: the branch `refs/heads/nightshift/ledger`, whose tree is the durable part of
//! `state/` (`state.yaml`, `budget.json`, `stages/**`, `cards/**`, `handoffs/**`). Each tick that changes
//! state commits it here, so the branch's history is the audit trail and its head is the truth.
//!
//! Each commit is one `git fast-import` run (module `write`): the changed files, the trees,
//! the commit and a compare-and-swap of the ref, guided by a stat cache
//! (`state/.ledger-index`). Card copies and stage files are sharded in the ledger's tree
//! (`state/cards/<xx>/<file>`, `state/stages/<xx>/<file>`); [`read_file`] maps paths to that
//! layout. This module must never touch the user's HEAD, index (`.git/index`),
//! working tree or current branch — not with a detached HEAD, a dirty tree or a rebase in
//! progress — and never commits logs, active-agent registrations, worktrees or dot-files.

use std::path::{Path, PathBuf};

use crate::git::{Git, GitError};
use crate::paths::{LEDGER_REF, Paths};

mod write;

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

/// Commits the durable part of `state/` to the ledger and returns the new commit id: one
/// `git fast-import` that writes only the files changed since the last commit (see
/// [`write`]) and moves the ref by compare-and-swap.
///
/// The parent is the commit the stat cache describes, without asking git for the head. When
/// the ledger has moved since (a crash between a commit and its cache, a `repair`, another
/// writer), that commit is refused and nothing moves; the head is then read and the whole tree
/// committed on top of it, compare-and-swapped again.
///
/// # Errors
/// [`GitError`] when a git step fails, including [`GitError::Failed`] when the ledger moved
/// while this commit was being built (a concurrent writer).
pub fn commit(git: &Git, paths: &Paths, message: &str) -> Result<String, GitError> {
    let message = crate::redact::apply(message);
    let id = commit_redacted(git, paths, &message)?;
    COMMITTED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(message.into_owned());
    Ok(id)
}

/// [`commit`] of a message already redacted.
fn commit_redacted(git: &Git, paths: &Paths, message: &str) -> Result<String, GitError> {
    let cache_path = absolute(git, &paths.ledger_index());
    let wrote = take_written(paths);
    if let Some(cache) = write::Cache::load(&cache_path) {
        let parent = cache.commit.clone();
        if let Ok(id) = write::commit(
            git,
            &cache_path,
            message,
            Some(&parent),
            Some(&cache),
            &wrote,
        ) {
            return Ok(id);
        }
    }
    let old = head(git)?;
    write::commit(git, &cache_path, message, old.as_deref(), None, &wrote)
}

/// The messages of the ledger commits this process made, oldest first.
static COMMITTED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// Takes the messages of the ledger commits this process made since the last call, oldest
/// first: what `tick` reports, without reading the ledger back.
pub fn take_committed() -> Vec<String> {
    std::mem::take(
        &mut *COMMITTED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    )
}

/// What this process wrote into one leaf folder (`state/stages/`, `state/cards/`) since its
/// last ledger commit: the folder's stat before the first of those writes and after the last,
/// and the files' names.
#[derive(Debug, Default)]
pub(crate) struct Wrote {
    before: Option<write::Stat>,
    after: Option<write::Stat>,
    files: std::collections::BTreeSet<String>,
}

/// The leaf-folder writes of this process not yet committed, by folder.
static WRITTEN: std::sync::Mutex<std::collections::BTreeMap<PathBuf, Wrote>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

/// Notes that `path` is about to be written (renamed into place): nightshift's one writer path
/// calls this before every file and [`did_write`] after it, and a file in a leaf folder of
/// `state/` is remembered with the folder's stat before the first such write and after the
/// last. The next [`commit`] of this process then sends those files without listing the
/// folder, when the stat before is the one it recorded at the last commit and the stat after
/// is the folder's now: the folder changed by these writes alone.
pub fn will_write(path: &Path) {
    note(path, |dir, w| {
        if w.files.is_empty() && w.before.is_none() {
            w.before = write::dir_stat(dir);
        }
    });
}

/// Notes that `path` was written (see [`will_write`]).
pub fn did_write(path: &Path) {
    note(path, |dir, w| {
        w.after = write::dir_stat(dir);
        if let Some(name) = path.file_name().and_then(|n| n.to_str()) {
            w.files.insert(name.to_owned());
        }
    });
}

/// Runs `f` on the record of `path`'s folder when that is a leaf folder (`state/<leaf>`).
fn note(path: &Path, f: impl FnOnce(&Path, &mut Wrote)) {
    let Some(dir) = path.parent() else { return };
    let leaf = dir.file_name().and_then(|n| n.to_str());
    let under_state = dir
        .parent()
        .and_then(Path::file_name)
        .is_some_and(|n| n == crate::paths::STATE_DIR);
    if !under_state || !leaf.is_some_and(|l| write::LEAVES.contains(&l)) {
        return;
    }
    let mut written = WRITTEN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    f(dir, written.entry(dir.to_path_buf()).or_default());
}

/// Takes this process's noted writes into `paths`' leaf folders, keyed by the folder's path in
/// the tree (`state/stages`).
fn take_written(paths: &Paths) -> std::collections::BTreeMap<String, Wrote> {
    let mut written = WRITTEN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let state = paths.state_dir();
    write::LEAVES
        .iter()
        .filter_map(|leaf| {
            let w = written.remove(&state.join(leaf))?;
            Some((format!("{}/{leaf}", crate::paths::STATE_DIR), w))
        })
        .collect()
}

/// [`commit`] with the expected current head given: the new commit's parent, and the value the
/// ref must still hold for the compare-and-swap to succeed (`None`: the ref must not exist).
#[cfg(test)]
pub(crate) fn commit_expecting(
    git: &Git,
    paths: &Paths,
    message: &str,
    expected_old: Option<&str>,
) -> Result<String, GitError> {
    let cache_path = absolute(git, &paths.ledger_index());
    let message = crate::redact::apply(message);
    let cache =
        write::Cache::load(&cache_path).filter(|c| expected_old.is_some_and(|e| e == c.commit));
    let wrote = take_written(paths);
    write::commit(
        git,
        &cache_path,
        &message,
        expected_old,
        cache.as_ref(),
        &wrote,
    )
}

/// The bytes of `rel_path` (e.g. `state/state.yaml`) at the ledger head; `None` when there is
/// no ledger or no such file in it.
///
/// # Errors
/// [`GitError`] when git cannot be run or fails reading an object that exists.
pub fn read_file(git: &Git, rel_path: &str) -> Result<Option<Vec<u8>>, GitError> {
    let spec = format!("{LEDGER_REF}:{}", write::ledger_path(rel_path));
    let Some(id) = git.try_run(&["rev-parse", "--verify", "-q", &spec])? else {
        return Ok(None);
    };
    if git.run(&["cat-file", "-t", &id])? != "blob" {
        return Ok(None);
    }
    let out = git.run_in(git.root(), &["cat-file", "blob", &id], &[], None)?;
    Ok(Some(out.stdout))
}

/// The files under `dirs` (e.g. `state/stages`) in `commit`'s tree, as paths in that tree,
/// with one `ls-tree`.
///
/// # Errors
/// [`GitError`] when git fails.
pub fn list(git: &Git, commit: &str, dirs: &[&str]) -> Result<Vec<String>, GitError> {
    let mut args = vec!["ls-tree", "-r", "--name-only", commit, "--"];
    args.extend_from_slice(dirs);
    let out = git.run(&args)?;
    Ok(out.lines().map(str::to_owned).collect())
}

/// Reads many objects (`<commit>:<path>` specs) with one `git cat-file --batch`; `None` for a
/// missing one or one that is not a blob.
///
/// # Errors
/// [`GitError`] when git fails or prints something unparseable.
pub fn cat_batch(git: &Git, specs: &[String]) -> Result<Vec<Option<Vec<u8>>>, GitError> {
    if specs.is_empty() {
        return Ok(Vec::new());
    }
    let mut input = specs.join("\n");
    input.push('\n');
    let out = git.run_in(
        git.root(),
        &["cat-file", "--batch"],
        &[],
        Some(input.as_bytes()),
    )?;
    parse_batch(&out.stdout, specs.len()).ok_or_else(|| GitError::Failed {
        args: "cat-file --batch".into(),
        code: None,
        stderr: "unparseable output".into(),
    })
}

/// Parses `cat-file --batch` output: `<oid> <type> <size>\n<bytes>\n` or `<name> missing\n`.
fn parse_batch(mut out: &[u8], n: usize) -> Option<Vec<Option<Vec<u8>>>> {
    let mut blobs = Vec::with_capacity(n);
    for _ in 0..n {
        let nl = out.iter().position(|b| *b == b'\n')?;
        let header = std::str::from_utf8(&out[..nl]).ok()?;
        out = &out[nl + 1..];
        let fields: Vec<&str> = header.split(' ').collect();
        match fields.as_slice() {
            [_, "blob", size] => {
                let size: usize = size.parse().ok()?;
                blobs.push(Some(out.get(..size)?.to_vec()));
                out = out.get(size + 1..)?;
            }
            [_, _, size] => {
                let size: usize = size.parse().ok()?;
                blobs.push(None);
                out = out.get(size + 1..)?;
            }
            _ => blobs.push(None),
        }
    }
    Some(blobs)
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

    #[test]
    fn batch_output_with_missing_and_binary() {
        let out = b"abc blob 3\nx\ny\nfoo missing\ndef tree 2\nzz\nghi blob 0\n\n";
        let got = parse_batch(out, 4).unwrap();
        assert_eq!(got[0].as_deref(), Some(&b"x\ny"[..]));
        assert_eq!(got[1], None);
        assert_eq!(got[2], None);
        assert_eq!(got[3].as_deref(), Some(&b""[..]));
        assert!(parse_batch(b"abc blob 9\nshort\n", 1).is_none());
    }
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
                write::ledger_path("state/cards/s1.md").as_str(),
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
    fn corrupt_or_foreign_cache_only_costs_a_full_tree() {
        let r = repo();
        write_state(&r, 1);
        commit(&r.git, &paths(&r), "one").unwrap();
        let cache = paths(&r).ledger_index();
        std::fs::write(&cache, "junk").unwrap();
        r.write("state/state.yaml", "seq: 2\n");
        let c = commit(&r.git, &paths(&r), "two").unwrap();
        assert_eq!(write::SENT.with(std::cell::Cell::get), 4);
        assert_eq!(tree_files(&r, &c).len(), 4);
        assert_eq!(
            read_file(&r.git, "state/state.yaml").unwrap().unwrap(),
            b"seq: 2\n"
        );
        // A cache of an older commit (a crash between a commit and its cache): the ledger has
        // moved, so the cached parent is refused and the head is used instead.
        let stale = std::fs::read(&cache).unwrap();
        r.write("state/state.yaml", "seq: 3\n");
        let three = commit(&r.git, &paths(&r), "three").unwrap();
        std::fs::write(&cache, stale).unwrap();
        r.write("state/state.yaml", "seq: 4\n");
        let four = commit(&r.git, &paths(&r), "four").unwrap();
        let parent = r.git.run(&["rev-parse", &format!("{four}^")]).unwrap();
        assert_eq!(parent, three);
        assert_eq!(
            read_file(&r.git, "state/state.yaml").unwrap().unwrap(),
            b"seq: 4\n"
        );
    }

    /// Backdates every durable file so that none counts as racily clean.
    fn age(r: &TestRepo) {
        age_paths(
            r,
            [
                "state/state.yaml",
                "state/budget.json",
                "state/cards/s1.md",
                "state/handoffs/s1/a1/worker.json",
            ]
            .map(String::from),
        );
    }

    /// Stage files `s0.yaml`..`s<n-1>.yaml`, written in place (not through nightshift's writer).
    fn write_stage_files(r: &TestRepo, n: u32) {
        for i in 0..n {
            r.write(&format!("state/stages/s{i}.yaml"), &format!("order: {i}\n"));
        }
    }

    /// Saves `text` as `rel` by rename, as an editor does (not through nightshift's writer).
    fn rename_in(r: &TestRepo, rel: &str, text: &str) {
        let tmp = r.root().join("state/stages/.tmp-hand");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, r.root().join(rel)).unwrap();
    }

    /// Sets the modification time of files or folders a minute back (not racy any more).
    fn age_paths(r: &TestRepo, rels: impl IntoIterator<Item = String>) {
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
        for rel in rels {
            let f = std::fs::File::open(r.root().join(rel)).unwrap();
            f.set_modified(old).unwrap();
        }
    }

    /// A commit sends only the files whose stat changed; the others keep their blobs from the
    /// parent's tree, and a deleted file is dropped.
    #[test]
    fn unchanged_files_reuse_their_blobs() {
        let r = repo();
        write_state(&r, 1);
        age(&r);
        let one = commit(&r.git, &paths(&r), "one").unwrap();
        assert_eq!(write::SENT.with(std::cell::Cell::get), 4);
        let two = commit(&r.git, &paths(&r), "two").unwrap();
        assert_eq!(write::SENT.with(std::cell::Cell::get), 0);
        r.write("state/state.yaml", "seq: 3\n");
        std::fs::remove_file(r.root().join("state/handoffs/s1/a1/worker.json")).unwrap();
        let three = commit(&r.git, &paths(&r), "three").unwrap();
        assert_eq!(write::SENT.with(std::cell::Cell::get), 1);
        let blob = |c: &str, p: &str| r.git.run(&["rev-parse", &format!("{c}:{p}")]).unwrap();
        let card = write::ledger_path("state/cards/s1.md");
        assert_eq!(blob(&one, &card), blob(&three, &card));
        assert_eq!(
            blob(&one, "state/state.yaml"),
            blob(&two, "state/state.yaml")
        );
        assert_eq!(
            tree_files(&r, &three),
            ["state/budget.json", card.as_str(), "state/state.yaml"]
        );
        assert_eq!(
            read_file(&r.git, "state/state.yaml").unwrap().unwrap(),
            b"seq: 3\n"
        );
    }

    /// A folder of stage files whose own stat did not change since the cached commit is not
    /// walked: its files keep their cached stats. A file renamed into it changes the folder, and
    /// is sent.
    #[test]
    fn an_unchanged_folder_of_stage_files_is_not_walked() {
        let r = repo();
        write_state(&r, 1);
        write_stage_files(&r, 50);
        age(&r);
        age_paths(
            &r,
            (0..50)
                .map(|i| format!("state/stages/s{i}.yaml"))
                .chain(["state/stages".into()]),
        );
        commit(&r.git, &paths(&r), "one").unwrap();
        assert_eq!(write::SENT.with(std::cell::Cell::get), 54);
        let cache = write::Cache::load(&paths(&r).ledger_index()).unwrap();
        assert!(cache.has_dir("state/stages"));
        // The files are not looked at: one rewritten in place (which nightshift never does)
        // is not seen while the folder is unchanged.
        std::fs::write(
            r.root().join("state/stages/s3.yaml"),
            "order: 3\nin place\n",
        )
        .unwrap();
        commit(&r.git, &paths(&r), "two").unwrap();
        assert_eq!(write::SENT.with(std::cell::Cell::get), 0);
        // A new version of one file, saved by rename: the folder changed, the file is sent.
        rename_in(&r, "state/stages/s7.yaml", "order: 7\nchanged: true\n");
        let three = commit(&r.git, &paths(&r), "three").unwrap();
        // The folder is walked again: both files are sent.
        assert_eq!(write::SENT.with(std::cell::Cell::get), 2);
        let path = write::ledger_path("state/stages/s7.yaml");
        let text = r.git.run(&["show", &format!("{three}:{path}")]).unwrap();
        assert!(text.contains("changed: true"), "{text}");
    }

    /// Files this process wrote into a leaf folder (through nightshift's writer) are sent
    /// without walking the folder or rewriting its side file, while the folder changed by
    /// those writes alone; a file put there by anything else meanwhile makes the commit walk it.
    #[test]
    fn a_folder_changed_by_this_process_alone_is_not_walked() {
        use std::os::unix::fs::MetadataExt;
        let r = repo();
        write_state(&r, 1);
        write_stage_files(&r, 20);
        age(&r);
        commit(&r.git, &paths(&r), "one").unwrap();
        let side = r.root().join("state/.ledger-index.stages");
        let ino = || std::fs::metadata(&side).unwrap().ino();
        let first = ino();
        let ours = |i: u32| {
            crate::store::write_atomic(
                &r.root().join(format!("state/stages/s{i}.yaml")),
                format!("order: {i}\nours: true\n").as_bytes(),
            )
            .unwrap();
        };
        ours(20);
        ours(3);
        let two = commit(&r.git, &paths(&r), "two").unwrap();
        assert_eq!(write::SENT.with(std::cell::Cell::get), 2);
        assert_eq!(ino(), first, "the side file is kept");
        let show = |c: &str, rel: &str| {
            r.git
                .run(&["show", &format!("{c}:{}", write::ledger_path(rel))])
                .unwrap()
        };
        assert!(show(&two, "state/stages/s3.yaml").contains("ours"));
        assert!(show(&two, "state/stages/s20.yaml").contains("ours"));
        // Ours, then one by hand (renamed in, not through the writer): the folder is walked.
        ours(21);
        rename_in(&r, "state/stages/s22.yaml", "order: 22\nhand: true\n");
        let three = commit(&r.git, &paths(&r), "three").unwrap();
        assert!(show(&three, "state/stages/s22.yaml").contains("hand"));
        assert!(show(&three, "state/stages/s21.yaml").contains("ours"));
        assert_ne!(ino(), first, "walked: the side file is new");
        assert_eq!(tree_files(&r, &three).len(), 4 + 23);
    }

    /// Card copies are sharded by a hash prefix; `read_file` finds them by their `state/` path.
    #[test]
    fn cards_are_sharded_in_the_ledger() {
        let r = repo();
        write_state(&r, 1);
        for i in 0..300 {
            r.write(&format!("state/cards/stage-{i}.md"), &format!("card {i}\n"));
        }
        let c = commit(&r.git, &paths(&r), "many").unwrap();
        let top = r
            .git
            .run(&["ls-tree", "--name-only", &format!("{c}:state/cards")])
            .unwrap();
        assert!(top.lines().count() <= 256, "{top}");
        assert!(top.lines().all(|l| l.len() == 2), "{top}");
        assert_eq!(
            read_file(&r.git, "state/cards/stage-7.md")
                .unwrap()
                .unwrap(),
            b"card 7\n"
        );
        assert_eq!(tree_files(&r, &c).len(), 304);
    }

    /// Dot-files and directories (`state/.cache/`, temp files) never enter the ledger.
    #[test]
    fn dot_files_and_caches_stay_out() {
        let r = repo();
        write_state(&r, 1);
        r.write("state/.cache/state.bin", "derived");
        r.write("state/cards/.cache/x", "derived");
        r.write("state/handoffs/.tmp-1", "partial");
        let c = commit(&r.git, &paths(&r), "one").unwrap();
        let files = tree_files(&r, &c);
        assert_eq!(files.len(), 4, "{files:?}");
        assert!(!files.iter().any(|f| f.contains("/.")), "{files:?}");
    }

    /// A repository initialised with `args` (object or ref format), hermetic like [`repo`].
    fn repo_with(args: &[&str]) -> TestRepo {
        let r = repo();
        let root = r.root();
        std::fs::remove_dir_all(root.join(".git")).unwrap();
        let mut init = vec!["init", "-q", "-b", "main"];
        init.extend(args);
        r.git.run_in(&root, &init, &[], None).unwrap();
        let home = r.dir.path().join("home");
        let git = Git::open(&root)
            .unwrap()
            .with_env("HOME", home.to_str().unwrap())
            .with_env(
                "GIT_CONFIG_GLOBAL",
                home.join(".gitconfig").to_str().unwrap(),
            );
        TestRepo { dir: r.dir, git }
    }

    fn commits_and_swaps(r: &TestRepo) {
        write_state(r, 1);
        let one = commit(&r.git, &paths(r), "one").unwrap();
        r.write("state/state.yaml", "seq: 2\n");
        let two = commit(&r.git, &paths(r), "two").unwrap();
        assert_eq!(r.git.run(&["rev-parse", &format!("{two}^")]).unwrap(), one);
        assert_eq!(head(&r.git).unwrap().as_deref(), Some(two.as_str()));
        assert_eq!(
            read_file(&r.git, "state/state.yaml").unwrap().unwrap(),
            b"seq: 2\n"
        );
        assert!(commit_expecting(&r.git, &paths(r), "late", Some(&one)).is_err());
        assert_eq!(head(&r.git).unwrap().as_deref(), Some(two.as_str()));
        r.git.run(&["fsck", "--no-progress", "--strict"]).unwrap();
    }

    #[test]
    fn sha256_repository() {
        let r = repo_with(&["--object-format=sha256"]);
        commits_and_swaps(&r);
        assert_eq!(head(&r.git).unwrap().unwrap().len(), 64);
    }

    #[test]
    fn reftable_repository() {
        let r = repo_with(&["--ref-format=reftable"]);
        commits_and_swaps(&r);
        assert!(r.root().join(".git/reftable").is_dir());
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
