//! One registered attempt, judged: alive, progress, deadline in awake time, and what to do
//! about it. The decision ([`verdict`]) is a pure function of what was seen; [`one`] gathers
//! the facts and carries the decision out through [`super::reap`].

use jiff::Timestamp;

use super::{AttemptCheck, DEADLINE_GRACE_SECS, HeartbeatDoc, Verdict};
use crate::awake::Sleep;
use crate::config::Config;
use crate::engine::state::State;
use crate::ids::{JobKey, Role};
use crate::job::Registration;
use crate::paths::Paths;

/// What every check needs.
pub struct Cx<'a> {
    pub paths: &'a Paths,
    pub config: &'a Config,
    pub state: &'a State,
    pub sleeps: &'a [Sleep],
    pub prev: &'a Option<HeartbeatDoc>,
    pub now: Timestamp,
}

/// Every readable registration under `state/active-agents/`, in a stable order.
#[must_use]
pub fn registrations(paths: &Paths) -> Vec<Registration> {
    let mut out: Vec<Registration> = std::fs::read_dir(paths.agents_dir())
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .filter_map(|e| crate::job::read_registration(&e.path()))
        .collect();
    out.sort_by(|a, b| (&a.stage, a.attempt, a.role).cmp(&(&b.stage, b.attempt, b.role)));
    out
}

/// The facts [`verdict`] decides from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    /// Wrapper pid + start time match a live process.
    pub wrapper_alive: bool,
    /// The liveness lock is held (by the wrapper or anything it started).
    pub lock_held: bool,
    pub has_outcome: bool,
    /// Seconds since the outcome was written (by the nightshift clock).
    pub outcome_age_secs: i64,
    /// The state waits on exactly this job.
    pub waited_on: bool,
    pub deadline_left_secs: Option<i64>,
    pub silent_secs: Option<u64>,
    pub silence_window_secs: Option<u64>,
}

/// Seconds a finished job's wrapper may linger (deregistering, poking) before it is an orphan.
pub const LINGER_SECS: i64 = 30;

/// Decides what an attempt is (pure).
#[must_use]
pub fn verdict(s: &Seen) -> Verdict {
    let lives = s.wrapper_alive || s.lock_held;
    if s.has_outcome {
        return if lives && s.outcome_age_secs > LINGER_SECS {
            Verdict::Orphan
        } else {
            Verdict::Ok
        };
    }
    if !s.waited_on {
        return Verdict::Orphan;
    }
    if !s.wrapper_alive {
        return Verdict::Crashed;
    }
    if s.deadline_left_secs
        .is_some_and(|l| l < -DEADLINE_GRACE_SECS)
    {
        return Verdict::Timeout;
    }
    match (s.silent_secs, s.silence_window_secs) {
        (Some(silent), Some(window)) if silent > window => Verdict::Stalled,
        _ => Verdict::Ok,
    }
}

/// Checks one registration and acts on the verdict.
pub fn one(cx: &Cx<'_>, reg: &Registration) -> AttemptCheck {
    let key = reg.key();
    let stage = cx.state.stage(&reg.stage);
    let waited = stage.and_then(|s| {
        s.waiting_jobs()
            .into_iter()
            .find(|(k, ..)| *k == key)
            .map(|(_, since, deadline)| (s, since, deadline))
    });
    let waited_on = waited.is_some();
    let timing = waited.map(|(_, since, deadline)| {
        let status = crate::engine::state::Status::Verifying {
            attempt: reg.attempt,
            since,
            deadline,
        };
        crate::view::job_timing(&status, cx.sleeps, cx.now)
    });
    let timing = timing.flatten();
    let agent = stage.and_then(|s| match (&reg.role, &key.member) {
        (_, Some(m)) => Some(m.name.clone()),
        (Role::Worker, None) => Some(s.worker.clone()),
        (Role::Verifier, None) => Some(s.verifier.clone()),
        (Role::Acceptance, None) => None,
    });
    let window = agent
        .as_ref()
        .and_then(|a| cx.config.agents.get(a))
        .map(crate::config::silence_window);
    let mark = super::progress::mark(cx.paths, &key);
    let last_progress = last_progress(cx, &key, &mark);
    let silent = u64::try_from(
        cx.now.as_second()
            - last_progress.as_second()
            - crate::engine::observe::slept_secs(cx.sleeps, last_progress, cx.now),
    )
    .unwrap_or(0);
    let outcome_file = cx.paths.outcome_file(&key);
    let seen = Seen {
        wrapper_alive: crate::proc::alive(reg.pid, reg.start_time),
        lock_held: crate::lock::is_held(&cx.paths.alive_file(&key)).unwrap_or(false),
        has_outcome: outcome_file.exists(),
        outcome_age_secs: crate::observe::read_outcome(&outcome_file)
            .map_or(0, |o| cx.now.as_second() - o.finished_at.as_second()),
        waited_on,
        deadline_left_secs: timing.map(|t| t.deadline_left_secs),
        silent_secs: Some(silent),
        silence_window_secs: window,
    };
    let verdict = verdict(&seen);
    let act = super::reap::Act {
        paths: cx.paths,
        reg,
        key: &key,
        agent: agent.as_deref(),
        seen: &seen,
        elapsed_secs: timing.map_or(0, |t| t.elapsed_secs),
        now: cx.now,
    };
    let action = super::reap::carry_out(&act, verdict);
    AttemptCheck {
        stage: reg.stage.to_string(),
        attempt: reg.attempt,
        role: reg.role,
        agent,
        pid: reg.pid,
        pgid: reg.pgid,
        child_pgid: reg.child_pgid,
        alive: seen.wrapper_alive && seen.lock_held,
        last_progress: Some(last_progress),
        silent_secs: Some(silent),
        silence_window_secs: window,
        deadline_left_secs: seen.deadline_left_secs,
        verdict,
        action,
        log: reg.log.clone(),
        progress_mark: mark,
    }
}

/// When the attempt last changed: now if its mark differs from the last heartbeat's (or the
/// heartbeat has not seen it before), else the time recorded then.
fn last_progress(cx: &Cx<'_>, key: &JobKey, mark: &str) -> Timestamp {
    cx.prev
        .as_ref()
        .and_then(|p| {
            p.attempts.iter().find(|a| {
                a.stage == key.stage.as_str() && a.attempt == key.attempt && a.role == key.role
            })
        })
        .filter(|a| a.progress_mark == mark)
        .and_then(|a| a.last_progress)
        .unwrap_or(cx.now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running() -> Seen {
        Seen {
            wrapper_alive: true,
            lock_held: true,
            has_outcome: false,
            outcome_age_secs: 0,
            waited_on: true,
            deadline_left_secs: Some(600),
            silent_secs: Some(60),
            silence_window_secs: Some(1200),
        }
    }

    #[test]
    fn verdicts() {
        assert_eq!(verdict(&running()), Verdict::Ok);
        let past = Seen {
            deadline_left_secs: Some(-31),
            ..running()
        };
        assert_eq!(verdict(&past), Verdict::Timeout);
        let silent = Seen {
            silent_secs: Some(1201),
            ..running()
        };
        assert_eq!(verdict(&silent), Verdict::Stalled);
        let gone = Seen {
            wrapper_alive: false,
            lock_held: false,
            ..running()
        };
        assert_eq!(verdict(&gone), Verdict::Crashed);
        // The agent outlived its wrapper: nobody will write the outcome.
        let headless = Seen {
            wrapper_alive: false,
            ..running()
        };
        assert_eq!(verdict(&headless), Verdict::Crashed);
        let unowned = Seen {
            waited_on: false,
            ..running()
        };
        assert_eq!(verdict(&unowned), Verdict::Orphan);
        let finishing = Seen {
            has_outcome: true,
            outcome_age_secs: 2,
            ..running()
        };
        assert_eq!(verdict(&finishing), Verdict::Ok);
        let lingering = Seen {
            outcome_age_secs: 31,
            ..finishing
        };
        assert_eq!(verdict(&lingering), Verdict::Orphan);
        let no_window = Seen {
            silence_window_secs: None,
            ..silent
        };
        assert_eq!(verdict(&no_window), Verdict::Ok);
    }
}
