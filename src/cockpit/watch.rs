//! Tells the cockpit when the state files change, without busy polling. On Linux a thread
//! blocks in `read(2)` on an inotify descriptor watching `state/` (state.yaml and budget.json
//! are replaced by rename), `state/active-agents/` (jobs register and deregister) and every
//! `state/logs/<stage>/` directory (agents append to their logs); the kernel wakes it. Elsewhere,
//! or when inotify is unavailable, it compares modification times once a second.
//!
//! It only observes: it never opens a state file for writing, never takes a lock.

use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;
use std::time::{Duration, SystemTime};

use crate::paths::Paths;

/// What changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// state.yaml, budget.json or the agent registry.
    State,
    /// A log file.
    Log,
}

/// Starts the watcher thread; it sends a [`Change`] through `tx` (wrapped by `wrap`) for each
/// change and stops when the receiver is gone.
pub fn spawn<M: Send + 'static>(
    paths: &Paths,
    tx: Sender<M>,
    wrap: impl Fn(Change) -> M + Send + 'static,
) {
    let paths = paths.clone();
    std::thread::spawn(move || {
        #[cfg(target_os = "linux")]
        if inotify::run(&paths, &tx, &wrap).is_ok() {
            return;
        }
        by_mtime(&paths, &tx, &wrap);
    });
}

/// The fallback: once a second, compare the modification times that matter.
fn by_mtime<M>(paths: &Paths, tx: &Sender<M>, wrap: &impl Fn(Change) -> M) {
    let mut last = (stamp_state(paths), stamp_logs(paths));
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let now = (stamp_state(paths), stamp_logs(paths));
        let sent = if now.0 == last.0 {
            now.1 == last.1 || tx.send(wrap(Change::Log)).is_ok()
        } else {
            tx.send(wrap(Change::State)).is_ok()
        };
        if !sent {
            return;
        }
        last = now;
    }
}

fn mtime(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

fn stamp_state(paths: &Paths) -> Vec<Option<SystemTime>> {
    vec![
        mtime(&paths.state_file()),
        mtime(&paths.budget_file()),
        mtime(&paths.agents_dir()),
    ]
}

fn stamp_logs(paths: &Paths) -> Vec<(PathBuf, Option<SystemTime>)> {
    log_dirs(paths)
        .into_iter()
        .flat_map(|d| std::fs::read_dir(d).into_iter().flatten().flatten())
        .map(|e| (e.path(), mtime(&e.path())))
        .collect()
}

fn log_dirs(paths: &Paths) -> Vec<PathBuf> {
    std::fs::read_dir(paths.state_dir().join("logs"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect()
}

#[cfg(target_os = "linux")]
mod inotify {
    use std::collections::BTreeMap;
    use std::mem::MaybeUninit;
    use std::sync::mpsc::Sender;

    use rustix::fs::inotify::{self, CreateFlags, ReadFlags, WatchFlags};

    use super::{Change, log_dirs};
    use crate::paths::Paths;

    /// Blocks on inotify until the receiver is gone. `Err` when inotify cannot be set up.
    pub fn run<M>(
        paths: &Paths,
        tx: &Sender<M>,
        wrap: &impl Fn(Change) -> M,
    ) -> rustix::io::Result<()> {
        let fd = inotify::init(CreateFlags::CLOEXEC)?;
        let dir_flags = WatchFlags::CREATE
            | WatchFlags::DELETE
            | WatchFlags::MOVED_TO
            | WatchFlags::CLOSE_WRITE;
        let mut kinds: BTreeMap<i32, Change> = BTreeMap::new();
        let state = inotify::add_watch(&fd, paths.state_dir(), dir_flags)?;
        kinds.insert(state, Change::State);
        let logs_root = paths.state_dir().join("logs");
        let mut add = |path: &std::path::Path, change: Change, flags: WatchFlags| {
            if let Ok(wd) = inotify::add_watch(&fd, path, flags) {
                kinds.insert(wd, change);
            }
        };
        add(&paths.agents_dir(), Change::State, dir_flags);
        add(&logs_root, Change::State, WatchFlags::CREATE);
        for d in log_dirs(paths) {
            add(&d, Change::Log, WatchFlags::MODIFY | WatchFlags::CREATE);
        }
        let mut buf = [MaybeUninit::<u8>::uninit(); 8192];
        let mut reader = inotify::Reader::new(&fd, &mut buf);
        loop {
            let ev = reader.next()?;
            let name = ev
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let change = match kinds.get(&ev.wd()).copied() {
                Some(Change::State) if ev.wd() == state => {
                    let (dir, flags) = match name.as_str() {
                        "state.yaml" | "budget.json" => (None, dir_flags),
                        "active-agents" => (Some(paths.agents_dir()), dir_flags),
                        "logs" => (Some(logs_root.clone()), WatchFlags::CREATE),
                        _ => continue,
                    };
                    // A directory created after the cockpit started: watch it too.
                    if let Some(wd) = dir.and_then(|d| inotify::add_watch(&fd, d, flags).ok()) {
                        kinds.insert(wd, Change::State);
                    }
                    Change::State
                }
                Some(Change::State) if ev.events().contains(ReadFlags::ISDIR) => {
                    // A new stage log directory: watch it too.
                    let dir = logs_root.join(&name);
                    if let Ok(wd) =
                        inotify::add_watch(&fd, &dir, WatchFlags::MODIFY | WatchFlags::CREATE)
                    {
                        kinds.insert(wd, Change::Log);
                    }
                    Change::Log
                }
                Some(c) => c,
                None => continue,
            };
            if tx.send(wrap(change)).is_err() {
                return Ok(());
            }
        }
    }
}
