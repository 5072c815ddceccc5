//! An idle tick only looks. After a tick whose step changed nothing, the shell writes a small
//! summary of everything that step depended on (`state/.cache/idle.json`, sealed like an
//! outcome): the identity of `state.yaml`, `budget.json` and `.ledger-seq` (inode, size,
//! modification and change times; every write of them is a rename of a new file), the digest
//! of `nightshift.yaml` and of the `NIGHTSHIFT_*` environment, each job the state waits on
//! (its outcome and integration files absent, its registration's identity, whether it was
//! alive), the sleeps in the host's awake record, the time of that tick and the next time at
//! which the state's own clocks can fire ([`crate::engine::next_wakeup`]).
//!
//! The next tick first [`looks`]: if every one of those is unchanged and the clock is between
//! that tick and the wakeup, the step is a pure function of unchanged inputs and would change
//! nothing again, so the tick ends without parsing the state, spawning git or writing a file.
//! Anything it cannot confirm (a missing, forged or older summary, any difference) means a
//! full tick, which then writes a new summary if it too was idle. A summary is written only
//! while the tick lock is held and only when a second look after the step agrees with what the
//! step observed, so a job that registered or finished in between is never summarised away.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::engine::observe::{JobSeen, Observations, Sleep};
use crate::engine::state::{State, Status};
use crate::paths::Paths;

/// The summary's format; a summary of another version is ignored.
const VERSION: u32 = 1;

/// The identity of a file as the kernel reports it, or its absence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct FileId {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

fn file_id(path: &Path) -> Option<FileId> {
    let m = std::fs::symlink_metadata(path).ok()?;
    Some(FileId {
        dev: m.dev(),
        ino: m.ino(),
        size: m.size(),
        mtime: (m.mtime(), m.mtime_nsec()),
        ctime: (m.ctime(), m.ctime_nsec()),
    })
}

/// One job the state waits on, as the idle step saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Job {
    /// Repo-relative paths.
    outcome: String,
    registration: String,
    alive: String,
    /// The registration file's identity (`None`: no registration).
    registered: Option<FileId>,
    pid: Option<u32>,
    start_time: Option<u64>,
    /// Running (its lock held or its process alive) rather than not yet started.
    live: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Summary {
    version: u32,
    state: Option<FileId>,
    budget: Option<FileId>,
    ledger_seq: Option<FileId>,
    config: String,
    env: String,
    at: Timestamp,
    wakeup: Option<Timestamp>,
    jobs: Vec<Job>,
    /// Integration outcome files that must still be absent (repo-relative).
    integrations: Vec<String>,
    sleeps: Vec<Sleep>,
}

/// The summary file.
#[must_use]
pub fn path(paths: &Paths) -> PathBuf {
    paths.state_dir().join(".cache/idle.json")
}

/// Files whose identity the summary records, taken before the state is read (see [`Before`]).
pub struct Before {
    state: Option<FileId>,
    budget: Option<FileId>,
    ledger_seq: Option<FileId>,
}

/// Takes the identities of the state files before a full tick reads them.
#[must_use]
pub fn before(paths: &Paths) -> Before {
    Before {
        state: file_id(&paths.state_file()),
        budget: file_id(&paths.budget_file()),
        ledger_seq: file_id(&paths.ledger_seq_file()),
    }
}

fn digest(bytes: &[u8]) -> String {
    crate::store::cache::digest(bytes)
}

fn config_digest(paths: &Paths) -> Option<String> {
    std::fs::read(paths.config()).ok().map(|b| digest(&b))
}

/// Every environment variable that can change what a tick decides: nightshift's own (but
/// the clock override, which the wakeup covers) and the ones that place its host files.
fn env_digest() -> String {
    let mut vars: Vec<(String, String)> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.to_string_lossy().into_owned())))
        .filter(|(k, _)| {
            (k.starts_with("NIGHTSHIFT_") && k != "NIGHTSHIFT_NOW")
                || matches!(k.as_str(), "HOME" | "XDG_STATE_HOME" | "XDG_CONFIG_HOME")
        })
        .collect();
    vars.sort();
    let mut h = Sha256::new();
    for (k, v) in vars {
        h.update(k.as_bytes());
        h.update([0]);
        h.update(v.as_bytes());
        h.update([0]);
    }
    let sum = h.finalize();
    sum.iter().map(|b| format!("{b:02x}")).collect()
}

fn live(paths: &Paths, job: &Job) -> bool {
    // Both must hold: a wrapper that died while its agent keeps the lock is a change the
    // tick must judge at once (`JobSeen::Vanished`), not at the deadline.
    let held = crate::lock::is_held(&paths.root.join(&job.alive)).unwrap_or(true);
    held && job
        .pid
        .is_none_or(|pid| crate::proc::alive(pid, job.start_time))
}

/// True when nothing the last idle step depended on has changed and `now` is before its
/// wakeup: this tick would change nothing either. Reads only small files and directory
/// entries; writes nothing; spawns nothing.
#[must_use]
pub fn looks(paths: &Paths, now: Timestamp) -> bool {
    let file = path(paths);
    let Ok(bytes) = std::fs::read(&file) else {
        return false;
    };
    let Ok(s) = serde_json::from_slice::<Summary>(&bytes) else {
        return false;
    };
    if s.version != VERSION || now < s.at || s.wakeup.is_some_and(|w| now >= w) {
        return false;
    }
    let unchanged = s.state.is_some()
        && s.state == file_id(&paths.state_file())
        && s.budget == file_id(&paths.budget_file())
        && s.ledger_seq == file_id(&paths.ledger_seq_file())
        && config_digest(paths).as_ref() == Some(&s.config)
        && env_digest() == s.env;
    if !unchanged {
        return false;
    }
    let quiet = s.integrations.iter().all(|p| !paths.root.join(p).exists())
        && s.jobs.iter().all(|j| {
            !paths.root.join(&j.outcome).exists()
                && file_id(&paths.root.join(&j.registration)) == j.registered
                && live(paths, j) == j.live
        });
    if !quiet || !crate::seal::verify(paths, &file, &bytes) {
        return false;
    }
    crate::awake::sleeps() == s.sleeps && crate::awake::unrecorded(paths, now).is_empty()
}

/// Records that the step over `state` and `seen` at `now` changed nothing. Called with the
/// tick lock held, after such a step; `before` was taken before the state was read. Writes
/// nothing (and removes an older summary) when a second look disagrees with what the step saw.
/// With `host_caps`, the step also depended on other repositories' spending, which no file
/// here shows: nothing is summarised then.
pub fn record(
    paths: &Paths,
    before: &Before,
    state: &State,
    seen: &Observations,
    now: Timestamp,
    host_caps: bool,
) {
    let summary = (!host_caps)
        .then(|| summarise(paths, before, state, seen, now))
        .flatten();
    let file = path(paths);
    let Some(summary) = summary else {
        let _ = std::fs::remove_file(&file);
        return;
    };
    let Ok(mut bytes) = serde_json::to_vec(&summary) else {
        return;
    };
    bytes.push(b'\n');
    if let Err(e) = crate::seal::write_sealed(paths, &file, &bytes) {
        let _ = std::fs::remove_file(&file);
        eprintln!("nightshift: cannot write {}: {e}", paths.rel(&file));
    }
}

fn summarise(
    paths: &Paths,
    before: &Before,
    state: &State,
    seen: &Observations,
    now: Timestamp,
) -> Option<Summary> {
    let again = self::before(paths);
    if again.state != before.state
        || again.budget != before.budget
        || again.ledger_seq != before.ledger_seq
        || before.state.is_none()
    {
        return None;
    }
    let mut jobs = Vec::new();
    let mut integrations = Vec::new();
    for stage in &state.stages {
        // Every job the stage waits on: its status's job, or each running panel member.
        for (key, ..) in stage.waiting_jobs() {
            let was_live = match seen.jobs.get(&key) {
                Some(JobSeen::Running { .. }) => true,
                Some(JobSeen::Absent) | None => false,
                // A finished, vanished or forged job is never a quiet one to skip.
                Some(_) => return None,
            };
            let reg_path = paths.registry_file(&key);
            let registered = file_id(&reg_path);
            let reg = crate::job::read_registration(&reg_path);
            let job = Job {
                outcome: paths.rel(&paths.outcome_file(&key)),
                registration: paths.rel(&reg_path),
                alive: paths.rel(&paths.alive_file(&key)),
                registered,
                pid: reg.as_ref().map(|r| r.pid),
                start_time: reg.as_ref().and_then(|r| r.start_time),
                live: was_live,
            };
            // The second look must agree with the step's.
            let consistent = !paths.root.join(&job.outcome).exists()
                && live(paths, &job) == was_live
                && (was_live || job.registered.is_none())
                && file_id(&reg_path) == job.registered;
            if !consistent {
                return None;
            }
            jobs.push(job);
        }
        if let Status::Integrating { attempt, .. } = stage.status {
            let p = paths.integration_file(&stage.id, attempt);
            if p.exists() {
                return None;
            }
            integrations.push(paths.rel(&p));
        }
    }
    Some(Summary {
        version: VERSION,
        state: before.state.clone(),
        budget: before.budget.clone(),
        ledger_seq: before.ledger_seq.clone(),
        config: config_digest(paths)?,
        env: env_digest(),
        at: now,
        wakeup: crate::engine::next_wakeup(state),
        jobs,
        integrations,
        sleeps: seen.sleeps.clone(),
    })
}
