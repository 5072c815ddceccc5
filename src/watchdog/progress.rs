//! Progress marks: a short fingerprint of everything an attempt's progress shows in — its log
//! (where the agent's structured output is teed), its CLI state (session files) and its
//! workspace (the stage worktree, `.git` excluded). Two heartbeats that see the same mark saw
//! no progress in between. Reads metadata only, never file contents; bounded walks.

use std::path::Path;
use std::time::UNIX_EPOCH;

use crate::ids::JobKey;
use crate::paths::Paths;

/// Most directory entries looked at per tree.
const MAX_ENTRIES: usize = 20_000;

/// The fingerprint of an attempt's visible progress.
#[must_use]
pub fn mark(paths: &Paths, key: &JobKey) -> String {
    let log = file_mark(&paths.log_file(key));
    let cli = tree_mark(&paths.agent_state(key));
    let work = tree_mark(&paths.worktree(&key.stage));
    format!("log={log} cli={cli} work={work}")
}

fn mtime_nanos(m: &std::fs::Metadata) -> u128 {
    m.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos())
}

fn file_mark(p: &Path) -> String {
    std::fs::metadata(p).map_or_else(
        |_| "-".to_owned(),
        |m| format!("{}@{}", m.len(), mtime_nanos(&m)),
    )
}

/// Entries, total size and newest mtime of a tree (`.git` skipped).
fn tree_mark(root: &Path) -> String {
    let mut stack = vec![root.to_path_buf()];
    let (mut n, mut size, mut newest) = (0usize, 0u64, 0u128);
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        if let Ok(m) = std::fs::symlink_metadata(&dir) {
            newest = newest.max(mtime_nanos(&m));
        }
        for e in rd.flatten() {
            n += 1;
            if n > MAX_ENTRIES {
                return format!("{n}+/{size}@{newest}");
            }
            if e.file_name() == ".git" {
                continue;
            }
            let Ok(m) = e.metadata() else { continue };
            newest = newest.max(mtime_nanos(&m));
            if m.is_dir() {
                stack.push(e.path());
            } else {
                size += m.len();
            }
        }
    }
    format!("{n}/{size}@{newest}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_changes_the_mark() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join(".git")).unwrap();
        let before = tree_mark(d.path());
        assert_eq!(before, tree_mark(d.path()));
        std::fs::write(d.path().join(".git/x"), "ignored").unwrap();
        std::fs::write(d.path().join("a.txt"), "hello").unwrap();
        assert_ne!(before, tree_mark(d.path()));
    }
}
