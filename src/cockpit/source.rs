//! The cockpit's one adapter to the rest of nightshift: a [`Snapshot`] of the view model
//! ([`crate::view`], the one `status` renders), the registered agents with their liveness and
//! deadlines, what needs you, and the tail of an attempt's log rendered as `logs` renders it
//! ([`crate::logview`]).
//!
//! Read-only: it never takes the tick lock, never writes a file, never starts or signals a
//! process.

use std::path::{Path, PathBuf};

use jiff::{SignedDuration, Timestamp};

use crate::error::NsResult;
use crate::paths::Paths;
use crate::view::StatusView;

/// One running (or vanished) agent job.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentRow {
    pub stage: String,
    pub attempt: u32,
    pub role: String,
    pub pid: u32,
    /// The job's lock is held: it is alive.
    pub alive: bool,
    pub started_at: Timestamp,
    pub deadline: Option<Timestamp>,
    /// Relative to the repo root.
    pub log: String,
}

/// Everything one frame shows.
#[derive(Debug)]
pub struct Snapshot {
    pub status: StatusView,
    pub agents: Vec<AgentRow>,
    /// What needs you, one line each with the next command.
    pub needs_you: Vec<String>,
    pub now: Timestamp,
}

/// Reads the state files (validated) and the agent registry.
///
/// # Errors
/// When the config or a state file is missing or invalid.
pub fn load(paths: &Paths) -> NsResult<Snapshot> {
    let config = crate::store::read_config(paths)?;
    let state = crate::store::read_state_file(paths)?;
    let budget = crate::store::read_budget_file(paths)?;
    let now = crate::now::now()?;
    let status = crate::view::build(paths, &config, &state, &budget, now);
    let agents = crate::view::agents(paths, &state, &status.sleeps, now)
        .into_iter()
        .map(|a| AgentRow {
            deadline: a
                .deadline_left_secs
                .and_then(|left| now.checked_add(SignedDuration::from_secs(left)).ok()),
            stage: a.stage,
            attempt: a.attempt,
            role: a.role.to_string(),
            pid: a.pid,
            alive: a.alive,
            started_at: a.started_at,
            log: a.log,
        })
        .collect();
    let needs_you = status
        .needs_you
        .iter()
        .map(|n| match &n.next {
            Some(next) => format!("{} → `{next}`", n.message),
            None => n.message.clone(),
        })
        .collect();
    Ok(Snapshot {
        status,
        agents,
        needs_you,
        now,
    })
}

/// The logs to show for a stage: the running job's, else every log of the stage's latest
/// attempt in the order its jobs ran (worker, acceptance, verifier).
#[must_use]
pub fn log_paths(paths: &Paths, snap: &Snapshot, stage: &str) -> Vec<PathBuf> {
    if let Some(a) = snap.agents.iter().find(|a| a.stage == stage) {
        return vec![paths.root.join(&a.log)];
    }
    let Some(st) = snap.status.stages.iter().find(|s| s.id == stage) else {
        return Vec::new();
    };
    let dir = paths.state_dir().join("logs").join(stage);
    ["worker", "acceptance", "verifier"]
        .iter()
        .map(|role| dir.join(format!("a{}-{role}.log", st.attempt)))
        .filter(|p| p.is_file())
        .collect()
}

/// The last `max` lines of several logs, each introduced by its file name when there are more
/// than one.
#[must_use]
pub fn logs_tail(paths: &[PathBuf], max: usize) -> Vec<String> {
    let mut lines = Vec::new();
    for p in paths {
        if paths.len() > 1 {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            lines.push(format!("── {name} ──"));
        }
        lines.extend(log_tail(p, max));
    }
    let cut = lines.len().saturating_sub(max);
    lines.drain(..cut);
    lines
}

/// The last `max` events of a log, one line each. Reads at most the last 256 KiB.
#[must_use]
pub fn log_tail(path: &Path, max: usize) -> Vec<String> {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(path) else {
        return vec![format!("(no log yet at {})", path.display())];
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let from = len.saturating_sub(256 * 1024);
    let mut bytes = Vec::new();
    if f.seek(SeekFrom::Start(from)).is_err() || f.read_to_end(&mut bytes).is_err() {
        return vec![format!("(cannot read {})", path.display())];
    }
    let text = String::from_utf8_lossy(&bytes);
    let whole = if from > 0 {
        text.split_once('\n').map_or("", |(_, rest)| rest)
    } else {
        &text
    };
    let mut lines = crate::logview::render(whole);
    let cut = lines.len().saturating_sub(max);
    lines.drain(..cut);
    lines
}
