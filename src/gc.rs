//! What `nightshift gc` removes: workspaces (and the agents' git views of them) that no stage
//! needs any more, attempt logs and per-attempt CLI state older than a retention, and the loose
//! objects of the ledger (packed). The caller holds the tick lock.
//!
//! It never removes a branch, a workspace of a stage that is still in the queue, in flight or
//! escalated (a person may be inspecting it), anything of a job that still has a process, or
//! the log of a stage's current attempt while the stage is unfinished.

use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::Serialize;

use crate::engine::state::{State, Status};
use crate::error::{NsError, NsResult};
use crate::git::Git;
use crate::ids::StageId;
use crate::paths::Paths;

pub const GC_VERSION: u32 = 1;

/// What one `nightshift gc` removed (its `--json` output).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, JsonSchema)]
pub struct GcReport {
    pub version: u32,
    /// Stages whose workspace (or the agent's git view of it) was removed.
    pub workspaces_removed: Vec<String>,
    /// Attempt logs and per-attempt CLI state directories removed (repo-relative paths).
    pub logs_removed: Vec<String>,
    /// Bytes those logs and directories held.
    pub bytes_freed: u64,
    /// The retention the logs were judged by, in seconds.
    pub retention_secs: u64,
    /// Whether the repository's loose objects (the ledger's commits) were packed.
    pub ledger_packed: bool,
}

/// Runs the collection. `paths` carries the configured workspace directory; `retention_secs`
/// is how old (by modification time) a log must be to go.
///
/// # Errors
/// When a workspace cannot be removed or git cannot pack.
pub fn run(paths: &Paths, git: &Git, state: &State, retention_secs: u64) -> NsResult<GcReport> {
    let mut report = GcReport {
        version: GC_VERSION,
        retention_secs,
        ..GcReport::default()
    };
    for id in orphaned_workspaces(paths, state) {
        crate::worktree::remove(git, paths, &id)
            .map_err(|e| NsError::from(e).within(format!("cannot remove the workspace of {id}")))?;
        report.workspaces_removed.push(id.to_string());
    }
    let cutoff = std::time::SystemTime::now()
        .checked_sub(std::time::Duration::from_secs(retention_secs))
        .unwrap_or(std::time::UNIX_EPOCH);
    for (stage_dir, kind) in [
        (paths.state_dir().join("logs"), Kind::Log),
        (paths.state_dir().join("agent-state"), Kind::AgentState),
    ] {
        for entry in children(&stage_dir) {
            let stage = entry.file_name().map(|n| n.to_string_lossy().into_owned());
            let Some(stage) = stage.filter(|_| entry.is_dir()) else {
                continue;
            };
            for item in children(&entry) {
                if keep(paths, state, &stage, &item, kind, cutoff) {
                    continue;
                }
                let bytes = size_of(&item);
                let removed = if item.is_dir() {
                    std::fs::remove_dir_all(&item)
                } else {
                    std::fs::remove_file(&item)
                };
                removed.map_err(|e| {
                    NsError::failure(format!("cannot remove {}", paths.rel(&item)))
                        .cause(e.to_string())
                })?;
                report.bytes_freed += bytes;
                report.logs_removed.push(paths.rel(&item));
            }
            let _ = std::fs::remove_dir(&entry); // only when it is empty now
        }
    }
    git.run(&["repack", "-d", "-n", "-q"])
        .map_err(|e| NsError::from(e).within("cannot pack the ledger"))?;
    report.ledger_packed = true;
    Ok(report)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `state/logs/<stage>/a<N>-<role>.log`
    Log,
    /// `state/agent-state/<stage>/a<N>-<role>/`
    AgentState,
}

/// Workspaces (or agent views) whose stage is gone, done or cancelled, with no live job.
fn orphaned_workspaces(paths: &Paths, state: &State) -> Vec<StageId> {
    let mut names: Vec<String> = children(&paths.workspaces)
        .into_iter()
        .chain(children(&paths.workspaces.join(".agent-git")))
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter_map(|n| StageId::new(&n).ok())
        .filter(|id| {
            state
                .stage(id)
                .is_none_or(|s| matches!(s.status, Status::Done { .. } | Status::Cancelled { .. }))
        })
        .filter(|id| !crate::gitlocks::stage_alive(paths, id.as_str()))
        .collect()
}

/// Whether an attempt's log or CLI state stays: young enough, of a job with a process, or of
/// the current attempt of an unfinished stage.
fn keep(
    paths: &Paths,
    state: &State,
    stage: &str,
    item: &Path,
    kind: Kind,
    cutoff: std::time::SystemTime,
) -> bool {
    let young = std::fs::symlink_metadata(item)
        .and_then(|m| m.modified())
        .map_or(true, |t| t > cutoff);
    if young || crate::gitlocks::stage_alive(paths, stage) {
        return true;
    }
    let name = item
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let attempt = name
        .strip_prefix('a')
        .and_then(|r| r.split(['-', '.']).next())
        .and_then(|n| n.parse::<u32>().ok());
    let Some(attempt) = attempt else {
        return true; // not an attempt's file: not ours to judge
    };
    if kind == Kind::Log && !name.ends_with(".log") {
        return true;
    }
    state
        .stages
        .iter()
        .find(|s| s.id.as_str() == stage)
        .is_some_and(|s| !s.status.terminal() && s.attempt == attempt)
}

fn children(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect();
    v.sort();
    v
}

fn size_of(path: &Path) -> u64 {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => children(path).iter().map(|p| size_of(p)).sum(),
        Ok(m) => m.len(),
        Err(_) => 0,
    }
}
