//! Always-on detection of writes outside an attempt's own workspace: the job wrapper takes a
//! [`Watch`] of everything an agent (or an acceptance command it wrote) must not change before
//! the child starts and again after it ends; [`escaped`] names what changed. Watched: the real
//! `nightshift.yaml`, `state/cards/**`, `state/stages/**`, `state/state.yaml` and
//! `state/budget.json` (a change there is legitimate only when the file then equals the
//! ledger's copy, i.e. a tick or `add-stage` wrote and committed it), the
//! attempt's own handoff directory (all but the wrapper's own prompt, recipe and policy), the
//! repository's `.git/config`, `.git/hooks/**` and `.git/info/**`, the user's checkout (tracked
//! and untracked, not ignored; by size, mtime, ctime and inode), and the workspaces of other
//! stages that were idle at both looks.
//!
//! It reads only: it never restores anything, and it never decides whether an attempt fails
//! (the engine does, from the names it reports).

use std::collections::BTreeMap;
use std::path::Path;

use crate::engine::state::{State, Status};
use crate::git::Git;
use crate::ids::{JobKey, StageId};
use crate::paths::Paths;

/// Files under the ledger whose changes by a tick are legitimate.
const TICK_FILES: [&str; 2] = ["state/state.yaml", "state/budget.json"];

/// Folders of the ledger where a tick or `add-stage` writes (new card copies, stage files).
const TICK_DIRS: [&str; 2] = ["state/cards/", "state/stages/"];

/// Whether a change to `rel` may be a tick's (then checked against the ledger).
fn tick_written(rel: &str) -> bool {
    TICK_FILES.contains(&rel) || TICK_DIRS.iter().any(|d| rel.starts_with(d))
}

/// A fingerprint of every watched file: repo-relative path → content hash or stat line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Watch {
    files: BTreeMap<String, String>,
    /// Other stages' workspaces watched, with the status they had.
    idle: BTreeMap<StageId, String>,
}

/// Takes a [`Watch`] for `job` (whose own workspace is not watched).
#[must_use]
pub fn watch(paths: &Paths, git: &Git, job: &JobKey, state: Option<&State>) -> Watch {
    let mut w = Watch::default();
    let mut hash = |p: &Path| {
        if let Ok(bytes) = std::fs::read(p) {
            w.files.insert(paths.rel(p), crate::card::sha256(&bytes));
        }
    };
    hash(&paths.config());
    for f in TICK_FILES {
        hash(&paths.root.join(f));
    }
    // What the wrapper itself writes there while it starts the agent: the prompt, the recipe
    // and (gemini's verifier) its read-only policy.
    let own = [
        format!("{}-prompt.md", job.role),
        format!("{}-recipe.json", job.role),
        format!("{}-policy.toml", job.role),
    ];
    let attempt = paths.handoff_dir(&job.stage, job.attempt);
    // A panel member's fellow members write their own folders under `panel/` meanwhile.
    let fellows = job.member.as_ref().map(|_| attempt.join("panel"));
    for f in files_under(&attempt) {
        if !f
            .file_name()
            .is_some_and(|n| own.iter().any(|o| n == o.as_str()))
            && !fellows.as_ref().is_some_and(|p| f.starts_with(p))
        {
            hash(&f);
        }
    }
    for f in files_under(&paths.state_dir().join("cards")) {
        hash(&f);
    }
    // Dot-files there are writers' temp files, which no reader takes.
    for f in files_under(&paths.state_dir().join(crate::store::split::STAGES_DIR)) {
        if !f
            .file_name()
            .is_some_and(|n| n.as_encoded_bytes().starts_with(b"."))
        {
            hash(&f);
        }
    }
    if let Some(common) = common_dir(git) {
        hash(&common.join("config"));
        for f in files_under(&common.join("hooks"))
            .into_iter()
            .chain(files_under(&common.join("info")))
        {
            hash(&f);
        }
    }
    stat_tree(paths, git, &paths.root, &mut w.files);
    if let Some(state) = state {
        for s in state
            .stages
            .iter()
            .filter(|s| s.id != job.stage && idle(&s.status))
        {
            let dir = paths.worktree(&s.id);
            if dir.is_dir() {
                stat_tree(paths, git, &dir, &mut w.files);
                w.idle.insert(s.id.clone(), format!("{:?}", s.status));
            }
        }
    }
    w
}

/// The watched paths that changed between `before` and `after` (sorted), leaving out the
/// tick's own files when they equal the ledger's copy, and other stages' workspaces whose
/// stage did not stay idle with the same status.
#[must_use]
pub fn escaped(paths: &Paths, git: &Git, before: &Watch, after: &Watch) -> Vec<String> {
    let dir = |id: &StageId| paths.rel(&paths.worktree(id)) + "/";
    // A workspace counts only when its stage was idle, with the same status, at both looks.
    let unwatched: Vec<String> = before
        .idle
        .iter()
        .chain(&after.idle)
        .filter(|(id, st)| before.idle.get(*id) != Some(*st) || after.idle.get(*id) != Some(*st))
        .map(|(id, _)| dir(id))
        .collect();
    let skipped = |p: &str| unwatched.iter().any(|d| p.starts_with(d.as_str()));
    let changed = crate::protect::changed(&before.files, &after.files);
    changed
        .into_iter()
        .filter(|p| !skipped(p))
        .filter(|p| !(tick_written(p) && written_by_a_tick(paths, git, p)))
        .collect()
}

/// A stage whose workspace is watched: nothing of it runs, and its workspace stays. A done or
/// cancelled stage's workspace is being removed by the tick that ended it (or `gc`), which a
/// job starting in that tick would otherwise read as its own write.
fn idle(status: &Status) -> bool {
    status.waiting_on().is_none()
        && !matches!(
            status,
            Status::Integrating { .. } | Status::Done { .. } | Status::Cancelled { .. }
        )
}

/// Whether `rel` now equals its copy at the ledger head (waiting briefly for a tick that has
/// written the file but not yet its ledger commit).
fn written_by_a_tick(paths: &Paths, git: &Git, rel: &str) -> bool {
    for _ in 0..50 {
        let now = std::fs::read(paths.root.join(rel)).ok();
        let ledger = crate::ledger::read_file(git, rel).ok().flatten();
        if now.is_some() && now == ledger {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    false
}

/// The repository's common git directory.
fn common_dir(git: &Git) -> Option<std::path::PathBuf> {
    let out = git
        .try_run(&["rev-parse", "--path-format=absolute", "--git-common-dir"])
        .ok()
        .flatten()?;
    Some(std::path::PathBuf::from(out))
}

/// Every regular file or symlink below `dir` (recursively), sorted; none when it is missing.
fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => todo.push(e.path()),
                Ok(_) => out.push(e.path()),
                Err(_) => {}
            }
        }
    }
    out.sort();
    out
}

/// Stat fingerprints of the tracked and untracked, non-ignored files of the work tree at `top`
/// (nightshift's own `state/` left out).
fn stat_tree(paths: &Paths, git: &Git, top: &Path, out: &mut BTreeMap<String, String>) {
    use std::os::unix::fs::MetadataExt;
    let args = [
        "ls-files",
        "-z",
        "--cached",
        "--others",
        "--exclude-standard",
    ];
    let Ok(listing) = git.run_in(top, &args, &[], None) else {
        return;
    };
    let text = String::from_utf8_lossy(&listing.stdout);
    let mut names: Vec<&str> = text.split('\0').filter(|n| !n.is_empty()).collect();
    names.dedup();
    for name in names {
        let path = top.join(name);
        let rel = paths.rel(&path);
        if top == paths.root && rel.starts_with("state/") {
            continue;
        }
        let fp = std::fs::symlink_metadata(&path).map_or_else(
            |_| "missing".to_owned(),
            |m| {
                format!(
                    "stat:{}:{}.{}:{}.{}:{}",
                    m.len(),
                    m.mtime(),
                    m.mtime_nsec(),
                    m.ctime(),
                    m.ctime_nsec(),
                    m.ino()
                )
            },
        );
        out.insert(rel, fp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worktree::testing::{setup, stage};

    fn watch(files: &[(&str, &str)], idle: &[(&str, &str)]) -> Watch {
        Watch {
            files: files
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            idle: idle
                .iter()
                .map(|(k, v)| (stage(k), (*v).to_owned()))
                .collect(),
        }
    }

    #[test]
    fn other_workspaces_count_only_when_idle_with_one_status_at_both_looks() {
        let (r, paths) = setup();
        let ws = |id: &str| format!("{}/x", paths.rel(&paths.worktree(&stage(id))));
        let (a, b) = (ws("a"), ws("b"));
        let (a, b) = (a.as_str(), b.as_str());
        let before = watch(&[("README.md", "1"), (b, "1")], &[("b", "Done")]);
        // `a` became idle (watched only after), `b` stayed idle and changed, the checkout too.
        let after = watch(
            &[("README.md", "2"), (a, "1"), (b, "2")],
            &[("a", "Done"), ("b", "Done")],
        );
        let mut want = vec!["README.md", b];
        want.sort_unstable();
        assert_eq!(escaped(&paths, &r.git, &before, &after), want);
        // `b` was requeued in between: its workspace is its own business again.
        let after = watch(&[("README.md", "1"), (b, "2")], &[("b", "Queued")]);
        assert!(escaped(&paths, &r.git, &before, &after).is_empty());
    }
}
