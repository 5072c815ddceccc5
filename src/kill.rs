//! Killing an attempt's processes, and only its. Ticks, `cancel` and the heartbeat all kill
//! through here. A process is the attempt's when its identity is proven against the job's
//! registration:
//! * it is the wrapper or the agent leader: pid **and** start time as registered; or
//! * it started no earlier than the wrapper and carries the attempt's tag (the
//!   `NIGHTSHIFT_REPO`/`_STAGE`/`_ATTEMPT`/`_ROLE` environment every agent and its
//!   descendants inherit, setsid daemons included), or sits in the wrapper's session or a
//!   registered group and holds the attempt's liveness lock.
//!
//! Anything else found where the attempt's processes would be (the registered pids, process
//! groups and session) is reported, never signalled: a recycled pid belongs to someone else.
//! A kill is verified by walking `/proc` again until no proven process is left.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};

use crate::ids::JobKey;
use crate::job::Registration;
use crate::paths::Paths;

/// The grace between TERM and KILL.
pub const GRACE: Duration = Duration::from_secs(3);
/// How long a kill waits for proven processes to disappear after KILL.
const REAP_WAIT: Duration = Duration::from_secs(5);

/// A live process as `/proc` shows it.
#[derive(Debug, Clone)]
pub struct Proc {
    pub pid: u32,
    pub ppid: u32,
    pub pgid: i32,
    pub sid: i32,
    /// Clock ticks since boot.
    pub start: u64,
}

/// Every live process (zombies excluded). Empty where there is no `/proc`.
#[must_use]
pub fn procs() -> Vec<Proc> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| read_proc(e.file_name().to_str()?.parse().ok()?))
        .collect()
}

fn read_proc(pid: u32) -> Option<Proc> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command name: state(0) ppid(1) pgrp(2) session(3) ... starttime(19).
    let f: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    if f.first().is_some_and(|s| *s == "Z" || *s == "X") {
        return None;
    }
    Some(Proc {
        pid,
        ppid: f.get(1)?.parse().ok()?,
        pgid: f.get(2)?.parse().ok()?,
        sid: f.get(3)?.parse().ok()?,
        start: f.get(19)?.parse().ok()?,
    })
}

/// What one attempt's processes are proven by.
#[derive(Debug, Clone)]
pub struct Identity {
    pub key: JobKey,
    /// The repository root as jobs tag their agents with it.
    pub repo: String,
    pub reg: Option<Registration>,
    /// The liveness lock file (canonical).
    pub lock: PathBuf,
}

impl Identity {
    /// The identity of `key` from its registration (if it is still there).
    #[must_use]
    pub fn of(paths: &Paths, key: &JobKey) -> Self {
        let lock = paths.alive_file(key);
        Self {
            key: key.clone(),
            repo: paths.root.to_string_lossy().into_owned(),
            reg: crate::job::read_registration(&paths.registry_file(key)),
            lock: std::fs::canonicalize(&lock).unwrap_or(lock),
        }
    }

    /// True when `p` is proven to be one of this attempt's processes.
    #[must_use]
    pub fn owns(&self, p: &Proc) -> bool {
        if let Some(r) = &self.reg {
            if p.pid == r.pid && r.start_time == Some(p.start) {
                return true;
            }
            if r.child_pid == Some(p.pid) && r.child_start_time == Some(p.start) {
                return true;
            }
            // Started before the wrapper: cannot be the attempt's, whatever it carries.
            if r.start_time.is_some_and(|t| p.start < t) {
                return false;
            }
        }
        // The lock alone proves nothing outside the attempt's groups and session: any
        // nightshift command that checks it opens it for a moment.
        self.tagged(p.pid) || (self.inside(p) && holds(p.pid, &self.lock))
    }

    /// In the wrapper's session or one of the registered process groups.
    fn inside(&self, p: &Proc) -> bool {
        self.reg.as_ref().is_some_and(|r| {
            r.pgids().contains(&p.pgid) || i32::try_from(r.pid).is_ok_and(|w| w == p.sid)
        })
    }

    /// The process carries this attempt's tag in its environment.
    fn tagged(&self, pid: u32) -> bool {
        tag_of(pid).is_some_and(|t| {
            t.repo == self.repo
                && t.stage == self.key.stage.as_str()
                && t.attempt == self.key.attempt
                && t.role == self.key.role
                && t.member == self.key.member.as_ref().map(|m| (m.name.clone(), m.run))
        })
    }

    /// A process sits where the attempt's would (a registered pid, group or session).
    fn near(&self, p: &Proc) -> bool {
        self.reg
            .as_ref()
            .is_some_and(|r| p.pid == r.pid || r.child_pid == Some(p.pid))
            || self.inside(p)
    }
}

/// A process found where an attempt's would be whose identity is not proven: left alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unproven {
    pub pid: u32,
    pub pgid: i32,
}

/// What a kill did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KillReport {
    /// Proven processes signalled.
    pub killed: Vec<u32>,
    /// Proven processes still alive after KILL.
    pub survivors: Vec<u32>,
    /// Not proven: never signalled.
    pub unproven: Vec<Unproven>,
}

impl KillReport {
    /// No proven process of the attempt is left.
    #[must_use]
    pub fn verified(&self) -> bool {
        self.survivors.is_empty()
    }

    /// One line for a person.
    #[must_use]
    pub fn describe(&self, key: &JobKey) -> String {
        let mut parts = Vec::new();
        if self.killed.is_empty() {
            parts.push(format!("{key}: no process of it is left"));
        } else {
            parts.push(format!("{key}: killed pid(s) {}", join(&self.killed)));
        }
        if !self.survivors.is_empty() {
            parts.push(format!("survived KILL: {}", join(&self.survivors)));
        }
        if !self.unproven.is_empty() {
            let pids: Vec<u32> = self.unproven.iter().map(|u| u.pid).collect();
            parts.push(format!(
                "left alone (not proven to be the attempt's: a recycled pid?): {}",
                join(&pids)
            ));
        }
        parts.join("; ")
    }
}

fn join(pids: &[u32]) -> String {
    pids.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Kills every proven process of the attempt `key` (TERM, `grace`, KILL), verifies by walking
/// `/proc` again, and reports what was not proven. Never signals the calling process.
#[must_use]
pub fn kill_job(paths: &Paths, key: &JobKey, grace: Duration) -> KillReport {
    let report = kill_identity(&Identity::of(paths, key), grace);
    // Nothing of the job runs: what its wrapper left in its scratch folder (a private index
    // and the lock a killed `git add` held on it) goes too.
    if report.verified() {
        let _ = std::fs::remove_dir_all(paths.scratch(key));
    }
    report
}

/// [`kill_job`] with an identity already read.
#[must_use]
pub fn kill_identity(id: &Identity, grace: Duration) -> KillReport {
    let me = std::process::id();
    let proven = |all: &[Proc]| -> Vec<u32> {
        all.iter()
            .filter(|p| p.pid != me && id.owns(p))
            .map(|p| p.pid)
            .collect()
    };
    let first = procs();
    let mut report = KillReport {
        unproven: first
            .iter()
            .filter(|p| p.pid != me && id.near(p) && !id.owns(p))
            .map(|p| Unproven {
                pid: p.pid,
                pgid: p.pgid,
            })
            .collect(),
        ..KillReport::default()
    };
    let start = Instant::now();
    let mut live = proven(&first);
    let mut sent_kill = false;
    while !live.is_empty() {
        for pid in &live {
            if !report.killed.contains(pid) {
                report.killed.push(*pid);
            }
        }
        let sig = if start.elapsed() < grace {
            Signal::TERM
        } else {
            sent_kill = true;
            Signal::KILL
        };
        signal(&live, sig);
        if sent_kill && start.elapsed() > grace + REAP_WAIT {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
        live = proven(&procs());
    }
    report.survivors = live;
    // Nothing of the attempt is left: its liveness lock file would only be a leftover.
    if report.verified() && !crate::lock::is_held(&id.lock).unwrap_or(true) {
        let _ = std::fs::remove_file(&id.lock);
    }
    report
}

/// Sends `sig` to each pid (a stopped process is continued first, so TERM can reach it).
fn signal(pids: &[u32], sig: Signal) {
    for pid in pids {
        let Some(p) = i32::try_from(*pid).ok().and_then(Pid::from_raw) else {
            continue;
        };
        if sig == Signal::TERM {
            let _ = rustix::process::kill_process(p, Signal::CONT);
        }
        let _ = rustix::process::kill_process(p, sig);
    }
}

/// The wrapper's own sweep when its child has ended: every live descendant of this process
/// (with `PR_SET_CHILD_SUBREAPER`, daemons that left their session are re-parented here) gets
/// TERM, `grace`, then KILL, until none is left; zombies are reaped. Returns the pids killed.
/// Call only when no other child of this process is meant to run.
pub fn kill_descendants(grace: Duration) -> Vec<u32> {
    let me = std::process::id();
    let start = Instant::now();
    let mut killed = Vec::new();
    loop {
        reap_zombies();
        let live = descendants(me, &procs());
        if live.is_empty() {
            break;
        }
        for pid in &live {
            if !killed.contains(pid) {
                killed.push(*pid);
            }
        }
        let sig = if start.elapsed() < grace {
            Signal::TERM
        } else {
            Signal::KILL
        };
        signal(&live, sig);
        if start.elapsed() > grace + REAP_WAIT {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    reap_zombies();
    killed
}

/// The pids whose parent chain leads to `root` (not `root` itself).
#[must_use]
pub fn descendants(root: u32, all: &[Proc]) -> Vec<u32> {
    let mut out: Vec<u32> = Vec::new();
    let mut frontier = vec![root];
    while let Some(parent) = frontier.pop() {
        for p in all.iter().filter(|p| p.ppid == parent && p.pid != root) {
            if !out.contains(&p.pid) {
                out.push(p.pid);
                frontier.push(p.pid);
            }
        }
    }
    out
}

/// Collects every exited child of this process without blocking.
fn reap_zombies() {
    while let Ok(Some(_)) = rustix::process::wait(rustix::process::WaitOptions::NOHANG) {}
}

/// Makes this process the reaper of its orphaned descendants (Linux); elsewhere a no-op.
pub fn become_subreaper() {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if let Err(e) = rustix::process::set_child_subreaper(Some(rustix::process::getpid())) {
        eprintln!("nightshift: cannot adopt orphaned descendants (PR_SET_CHILD_SUBREAPER): {e}");
    }
}

/// `NIGHTSHIFT_REPO`, `_STAGE`, `_ATTEMPT`, `_ROLE` of a process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag {
    pub repo: String,
    pub stage: String,
    pub attempt: u32,
    pub role: crate::ids::Role,
    /// A panel member's agent and run (`NIGHTSHIFT_MEMBER`, `_MEMBER_RUN`): members of one
    /// attempt share the rest of the tag.
    pub member: Option<(String, u32)>,
}

/// The attempt tag a process carries, if any (its environment as it started).
#[must_use]
pub fn tag_of(pid: u32) -> Option<Tag> {
    let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    let (mut repo, mut stage, mut attempt, mut role) = (None, None, None, None);
    let (mut member, mut member_run) = (None, None);
    for kv in env.split(|b| *b == 0) {
        let kv = String::from_utf8_lossy(kv);
        if let Some(v) = kv.strip_prefix("NIGHTSHIFT_REPO=") {
            repo = Some(v.to_owned());
        } else if let Some(v) = kv.strip_prefix("NIGHTSHIFT_STAGE=") {
            stage = Some(v.to_owned());
        } else if let Some(v) = kv.strip_prefix("NIGHTSHIFT_ATTEMPT=") {
            attempt = v.parse().ok();
        } else if let Some(v) = kv.strip_prefix("NIGHTSHIFT_ROLE=") {
            role = crate::ids::Role::parse(v);
        } else if let Some(v) = kv.strip_prefix("NIGHTSHIFT_MEMBER=") {
            member = Some(v.to_owned());
        } else if let Some(v) = kv.strip_prefix("NIGHTSHIFT_MEMBER_RUN=") {
            member_run = v.parse::<u32>().ok();
        }
    }
    Some(Tag {
        member: member.zip(member_run),
        repo: repo?,
        stage: stage?,
        attempt: attempt?,
        role: role?,
    })
}

/// True when `pid` has `file` open.
#[must_use]
pub fn holds(pid: u32, file: &Path) -> bool {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
        .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|t| t == file))
}

/// Re-executes every pending kill intent in `state` (recorded by an earlier tick or `cancel`)
/// whose stage is `only` (or all when `None`). Returns the jobs whose processes are verified
/// gone (the engine then drops their intents). Reports what it did and left alone on stderr.
#[must_use]
pub fn pending(
    paths: &Paths,
    state: &crate::engine::state::State,
    only: Option<&crate::ids::StageId>,
) -> std::collections::BTreeSet<JobKey> {
    let mut done = std::collections::BTreeSet::new();
    for intent in &state.kills {
        if only.is_some_and(|s| s != &intent.stage) {
            continue;
        }
        let key = intent.job();
        let report = kill_job(paths, &key, GRACE);
        if !report.killed.is_empty() || !report.unproven.is_empty() || !report.verified() {
            eprintln!("nightshift: {}", report.describe(&key));
        }
        if report.verified() {
            done.insert(key);
        }
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pid: u32, ppid: u32) -> Proc {
        Proc {
            pid,
            ppid,
            pgid: 1,
            sid: 1,
            start: 0,
        }
    }

    #[test]
    fn descendants_follow_the_parent_chain() {
        let all = [p(10, 1), p(11, 10), p(12, 11), p(13, 1), p(14, 12)];
        let mut d = descendants(10, &all);
        d.sort_unstable();
        assert_eq!(d, vec![11, 12, 14]);
        assert!(descendants(13, &all).is_empty());
    }

    fn identity() -> Identity {
        let key = JobKey {
            stage: crate::ids::StageId::new("s1").unwrap(),
            attempt: 1,
            role: crate::ids::Role::Worker,
            member: None,
        };
        let reg = Registration {
            version: 1,
            stage: key.stage.clone(),
            attempt: 1,
            role: key.role,
            pid: 4_000_001,
            pgid: 4_000_001,
            start_time: Some(1000),
            child_pid: Some(4_000_002),
            child_pgid: Some(4_000_002),
            child_start_time: Some(1010),
            command: Vec::new(),
            log: String::new(),
            started_at: jiff::Timestamp::UNIX_EPOCH,
            member: None,
        };
        Identity {
            key,
            repo: "/nowhere".into(),
            reg: Some(reg),
            lock: PathBuf::from("/nowhere/lock"),
        }
    }

    fn at(pid: u32, start: u64, pgid: i32) -> Proc {
        Proc {
            pid,
            ppid: 1,
            pgid,
            sid: pgid,
            start,
        }
    }

    #[test]
    fn identity_needs_pid_and_start_time() {
        let id = identity();
        assert!(id.owns(&at(4_000_001, 1000, 4_000_001)), "the wrapper");
        assert!(id.owns(&at(4_000_002, 1010, 4_000_002)), "the agent");
        // The wrapper's pid recycled by a stranger leading a group of the same number.
        let stranger = at(4_000_001, 5000, 4_000_001);
        assert!(!id.owns(&stranger));
        assert!(id.near(&stranger), "reported, not signalled");
        assert!(!id.owns(&at(4_000_002, 900, 4_000_002)), "started before");
        assert!(!id.near(&at(4_000_003, 5000, 77)));
    }

    #[test]
    fn own_process_is_read() {
        let me = read_proc(std::process::id()).unwrap();
        assert_eq!(Some(me.start), crate::proc::start_time(me.pid));
    }
}
