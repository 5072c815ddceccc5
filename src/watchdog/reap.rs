//! Carrying out the heartbeat's verdicts: killing an attempt's processes (only those whose
//! identity [`crate::kill`] proves against the registration), writing the typed outcome the dead job could not, and
//! finding orphan processes (Linux `/proc`: a process whose environment names this repository
//! and an attempt that has ended; a process working in a stage worktree). Never signals a
//! process whose identity is not proven.

use std::time::Duration;

use jiff::Timestamp;

use super::check::Seen;
use super::{AttemptCheck, Orphan, Verdict};
use crate::agent::failure::AgentFailure;
use crate::engine::observe::{AgentRun, CommandResult, OUTCOME_VERSION, Outcome, OutcomeResult};
use crate::engine::state::State;
use crate::ids::{JobKey, Role};
use crate::job::Registration;
use crate::kill::{Tag, tag_of};
use crate::paths::Paths;

/// The grace between TERM and KILL.
const GRACE: Duration = Duration::from_secs(3);
/// Log lines kept in a watchdog outcome.
const TAIL_LINES: usize = 12;

/// One verdict to carry out.
pub struct Act<'a> {
    pub paths: &'a Paths,
    pub reg: &'a Registration,
    pub key: &'a JobKey,
    pub agent: Option<&'a str>,
    pub seen: &'a Seen,
    pub elapsed_secs: u64,
    pub now: Timestamp,
}

/// Does what the verdict asks; returns what was done.
pub fn carry_out(a: &Act<'_>, verdict: Verdict) -> Option<String> {
    match verdict {
        Verdict::Ok => None,
        Verdict::Timeout | Verdict::Stalled | Verdict::Crashed => {
            let (killed, verified, note) = kill_proven(a);
            let wrote = write_outcome(a, verdict, verified);
            let mut did = match (killed.is_empty(), wrote) {
                (true, true) => "outcome written".to_owned(),
                (true, false) => "the job had already written its outcome".to_owned(),
                (false, w) => format!(
                    "killed pid(s) {}{}",
                    join(&killed),
                    if w { "; outcome written" } else { "" }
                ),
            };
            if let Some(n) = note {
                did.push_str("; ");
                did.push_str(&n);
            }
            Some(did)
        }
        Verdict::Orphan => {
            let (killed, verified, _) = kill_proven(a);
            let lives = crate::lock::is_held(&a.paths.alive_file(a.key)).unwrap_or(false)
                || crate::proc::alive(a.reg.pid, a.reg.start_time);
            if lives || !verified {
                return Some(format!(
                    "reported: its processes live but their identity is not proven (killed: {})",
                    join(&killed)
                ));
            }
            let _ = std::fs::remove_file(a.paths.registry_file(a.key));
            let _ = std::fs::remove_file(a.paths.alive_file(a.key));
            Some(if killed.is_empty() {
                "stale registration removed".to_owned()
            } else {
                format!("reaped pid(s) {}", join(&killed))
            })
        }
    }
}

fn join(pids: &[u32]) -> String {
    pids.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Kills the attempt's processes through [`crate::kill`] (each one's identity proven against
/// the registration; what is not proven is left alone and reported). Returns the pids killed,
/// whether the kill is verified, and a note on what was left alone.
fn kill_proven(a: &Act<'_>) -> (Vec<u32>, bool, Option<String>) {
    let report = crate::kill::kill_job(a.paths, a.key, GRACE);
    if !report.verified() {
        eprintln!("nightshift: {}", report.describe(a.key));
    }
    let note = (!report.unproven.is_empty()).then(|| {
        let pids: Vec<u32> = report.unproven.iter().map(|u| u.pid).collect();
        format!(
            "left alone (not proven to be the attempt's): {}",
            join(&pids)
        )
    });
    (report.killed.clone(), report.verified(), note)
}

/// A live process as `/proc` shows it.
struct Proc {
    pid: u32,
    pgid: i32,
}

fn procs() -> impl Iterator<Item = Proc> {
    crate::kill::procs().into_iter().map(|p| Proc {
        pid: p.pid,
        pgid: p.pgid,
    })
}

/// The last lines of the attempt's log, rendered for a person.
fn last_lines(paths: &Paths, key: &JobKey) -> String {
    let raw = std::fs::read_to_string(paths.log_file(key)).unwrap_or_default();
    let lines = crate::logview::render(&raw);
    lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n")
}

/// Writes the outcome a killed or dead job could not, unless it wrote one itself. The
/// registration stays while a kill is not verified (it is what proves the processes' identity).
fn write_outcome(a: &Act<'_>, verdict: Verdict, verified: bool) -> bool {
    let path = a.paths.outcome_file(a.key);
    if path.exists() {
        return false;
    }
    let tail = last_lines(a.paths, a.key);
    let result = result_for(a, verdict, tail);
    let outcome = Outcome {
        version: OUTCOME_VERSION,
        stage: a.key.stage.clone(),
        attempt: a.key.attempt,
        finished_at: a.now,
        wall_secs: a.elapsed_secs,
        result,
    };
    match crate::job::write_outcome(a.paths, a.key, &outcome) {
        Ok(()) => {
            if verified {
                let _ = std::fs::remove_file(a.paths.registry_file(a.key));
                let lock = a.paths.alive_file(a.key);
                if !crate::lock::is_held(&lock).unwrap_or(true) {
                    let _ = std::fs::remove_file(lock);
                }
            }
            true
        }
        Err(e) => {
            eprintln!("nightshift: {e}");
            false
        }
    }
}

fn result_for(a: &Act<'_>, verdict: Verdict, tail: String) -> OutcomeResult {
    let failure = match verdict {
        Verdict::Stalled => Some(AgentFailure::Stalled {
            silent_secs: a.seen.silent_secs.unwrap_or(0),
        }),
        Verdict::Crashed => Some(AgentFailure::Crashed {
            exit: None,
            detail: "its processes are gone and it left no outcome".into(),
        }),
        Verdict::Timeout | Verdict::Ok | Verdict::Orphan => None,
    };
    let what = match verdict {
        Verdict::Timeout => "killed by the heartbeat: past its deadline",
        Verdict::Stalled => "killed by the heartbeat: no progress within its silence window",
        Verdict::Crashed | Verdict::Ok | Verdict::Orphan => "the job died without an outcome",
    };
    let run = AgentRun {
        agent: a.agent.unwrap_or_default().to_owned(),
        timed_out: verdict == Verdict::Timeout,
        is_error: true,
        error_detail: Some(format!("{what}; last log lines:\n{tail}")),
        failure,
        ..AgentRun::default()
    };
    match a.key.role {
        Role::Worker => OutcomeResult::Worker {
            run,
            envelope: None,
            envelope_error: None,
            protected_changed: Vec::new(),
            setup_error: None,
            base: None,
            snapshot: None,
            escaped: Vec::new(),
            secret: None,
        },
        Role::Verifier => OutcomeResult::Verifier {
            run,
            setup_error: None,
            verdict: None,
            verdict_error: Some(what.to_owned()),
            wrote: Vec::new(),
            escaped: Vec::new(),
        },
        Role::Acceptance => OutcomeResult::Acceptance {
            deliverable: Vec::new(),
            commands: vec![CommandResult {
                command: format!("(the acceptance job: {what})"),
                exit: None,
                timed_out: verdict == Verdict::Timeout,
                secs: a.elapsed_secs,
                output_tail: tail,
            }],
            setup_error: None,
            snapshot: None,
            changed_files: Vec::new(),
            escaped: Vec::new(),
        },
    }
}

/// Finds live processes no running attempt owns: those whose environment names this repo and
/// an attempt that has provably ended (reaped), and those working in a stage worktree without
/// such an environment (reported only: it may be a person's shell).
#[must_use]
pub fn scan(paths: &Paths, state: &State, checks: &[AttemptCheck]) -> Vec<Orphan> {
    let root = paths.root.to_string_lossy().into_owned();
    let worktrees = paths.workspaces.clone();
    let live: Vec<(String, u32, Role)> = checks
        .iter()
        .filter(|c| c.verdict == Verdict::Ok && c.alive)
        .map(|c| (c.stage.clone(), c.attempt, c.role))
        .collect();
    let mut out = Vec::new();
    let me = std::process::id();
    for p in procs().filter(|p| p.pid != me) {
        match tag_of(p.pid) {
            Some(tag) if tag.repo == root => {
                if live.contains(&(tag.stage.clone(), tag.attempt, tag.role))
                    || !ended(paths, state, &tag)
                {
                    continue;
                }
                out.push(reap_tagged(&p, &tag, &root));
            }
            Some(_) => {}
            None => {
                let cwd = std::fs::read_link(format!("/proc/{}/cwd", p.pid)).ok();
                if cwd.is_some_and(|c| c.starts_with(&worktrees)) {
                    out.push(Orphan {
                        pid: p.pid,
                        pgid: p.pgid,
                        attempt: None,
                        detail: "works in a stage worktree but belongs to no attempt (left alone: it may be yours)".into(),
                        reaped: false,
                    });
                }
            }
        }
    }
    out
}

/// The attempt has ended for certain: its outcome is written, a later attempt exists, or
/// its stage is finished or gone.
fn ended(paths: &Paths, state: &State, tag: &Tag) -> bool {
    let Ok(stage) = crate::ids::StageId::new(&tag.stage) else {
        return false;
    };
    let key = JobKey {
        stage: stage.clone(),
        attempt: tag.attempt,
        role: tag.role,
        member: None,
    };
    paths.outcome_file(&key).exists()
        || state
            .stage(&stage)
            .is_none_or(|s| s.attempt > tag.attempt || s.status.terminal())
}

fn reap_tagged(p: &Proc, tag: &Tag, root: &str) -> Orphan {
    // Kill the whole group when every live member carries this repo's tag; else only it.
    let whole = procs()
        .filter(|q| q.pgid == p.pgid)
        .all(|q| tag_of(q.pid).is_some_and(|t| t.repo == root));
    let reaped = if whole {
        crate::proc::kill_group(p.pgid, GRACE)
    } else {
        kill_one(p.pid)
    };
    Orphan {
        pid: p.pid,
        pgid: p.pgid,
        attempt: Some(format!("{}/a{}/{}", tag.stage, tag.attempt, tag.role)),
        detail: "a process of an attempt that has ended".into(),
        reaped,
    }
}

fn kill_one(pid: u32) -> bool {
    let Some(p) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    let _ = rustix::process::kill_process(p, rustix::process::Signal::TERM);
    for _ in 0..100 {
        if crate::proc::start_time(pid).is_none() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(30));
    }
    let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
    std::thread::sleep(Duration::from_millis(50));
    crate::proc::start_time(pid).is_none()
}
