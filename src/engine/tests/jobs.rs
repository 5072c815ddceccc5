//! Jobs the shell watches: outcomes of another attempt are ignored, a job that never starts
//! fails only after the spawn grace, one past its deadline is killed, one that vanishes is a
//! crash, and a cancel kills the running job. Each asserts one scenario's effects.

use super::outcomes::{integration_result, plan_of, show, worker_result};
use super::sim::{BASE, Sim, TIMEOUTS, Work, at_secs, sid};
use crate::engine::observe::JobSeen;
use crate::engine::ops;
use crate::engine::state::{AttemptResult, Escalation, FailReason, Status};
use crate::engine::step::{KILL_GRACE_SECS, SPAWN_GRACE_SECS};
use crate::envelope::VerdictKind;
use crate::ids::Role;

#[test]
fn stale_outcomes_are_ignored() {
    let mut sim = Sim::new().card("a");
    let _ = sim.tick();
    sim.advance(60).finish_worker("a", Work::Partial);
    let _ = sim.tick();
    assert_eq!(show(&sim.tick()), ["spawn a@a2-worker"]);

    // Attempt 1's passing outcome, read where attempt 2's should be: fenced off.
    let stale = sim.outcome("a", 1, 60, worker_result("a", 1, Work::Done));
    sim.advance(30).see("a", JobSeen::Finished(Box::new(stale)));
    assert!(sim.tick().is_empty());
    assert!(sim.idle);
    assert!(matches!(
        sim.stage("a").status,
        Status::Working { attempt: 2, .. }
    ));
    // Another stage's outcome for the same attempt number: fenced off too.
    let alien = sim.outcome("b", 2, 60, worker_result("b", 2, Work::Done));
    sim.see("a", JobSeen::Finished(Box::new(alien)));
    assert!(sim.tick().is_empty());
    assert_eq!(sim.status("a"), "working");

    sim.advance(10).finish_worker("a", Work::Done);
    let _ = sim.tick();
    sim.advance(10).finish_acceptance("a", true);
    let _ = sim.tick();
    sim.advance(10).finish_verifier("a", VerdictKind::Pass);
    assert_eq!(show(&sim.tick()), ["integrate a@a2"]);

    // An integration outcome of attempt 1 does not finish attempt 2; the integration is
    // asked for again (it is idempotent).
    let old = sim.outcome("a", 1, 0, integration_result(1, true));
    sim.seen.integrations.insert(sid("a"), old);
    assert_eq!(show(&sim.tick()), ["integrate a@a2"]);
    assert_eq!(sim.status("a"), "integrating");

    sim.integrated("a", true);
    let _ = sim.tick();
    assert!(
        matches!(&sim.stage("a").status, Status::Done { attempt: 2, commit, .. } if commit == "c0ffee02")
    );
}

#[test]
fn absent_job_fails_to_spawn_only_after_grace() {
    let mut sim = Sim::new().card("a");
    let _ = sim.tick();
    sim.at(SPAWN_GRACE_SECS);
    assert!(sim.tick().is_empty());
    assert!(sim.idle, "absent within the grace period: nothing happens");
    sim.at(SPAWN_GRACE_SECS + 1);
    assert!(sim.tick().is_empty());
    assert_eq!(
        sim.stage("a").status,
        Status::Retry {
            attempt: 1,
            reason: FailReason::SpawnFailed { role: Role::Worker }
        }
    );
    assert_eq!(
        sim.stage("a").attempts_used(),
        0,
        "a job that never started is nightshift's failure: no attempt of the allowance used"
    );
    assert_eq!(show(&sim.tick()), ["spawn a@a2-worker"]);

    // Explicitly absent acceptance job, same rule.
    sim.advance(10).finish_worker("a", Work::Done);
    let _ = sim.tick();
    sim.absent("a")
        .advance(u64::try_from(SPAWN_GRACE_SECS).expect("positive"));
    assert!(sim.tick().is_empty());
    assert_eq!(sim.status("a"), "checking");
    sim.advance(1);
    let _ = sim.tick();
    assert_eq!(
        sim.stage("a").status,
        Status::Retry {
            attempt: 2,
            reason: FailReason::SpawnFailed {
                role: Role::Acceptance
            }
        }
    );
}

#[test]
fn running_past_deadline_is_killed_and_timed_out() {
    let mut sim = Sim::new().card("a");
    let _ = sim.tick();
    let deadline = i64::try_from(TIMEOUTS.worker).expect("small");
    sim.running("a").at(deadline + KILL_GRACE_SECS);
    assert!(
        sim.tick().is_empty(),
        "within the kill grace: the wrapper's job"
    );
    sim.at(deadline + KILL_GRACE_SECS + 1);
    let fx = sim.tick();
    assert_eq!(show(&fx), ["kill a@a1-worker".to_owned()]);
    assert_eq!(
        sim.stage("a").status,
        Status::Retry {
            attempt: 1,
            reason: FailReason::TimedOut {
                role: Role::Worker,
                after_secs: TIMEOUTS.worker
            }
        }
    );
}

#[test]
fn a_sleep_of_the_machine_does_not_count_against_the_deadline() {
    let mut sim = Sim::new().card("a");
    let _ = sim.tick();
    let deadline = i64::try_from(TIMEOUTS.worker).expect("small");
    // The machine slept for three hours a minute into the job.
    sim.seen.sleeps = vec![crate::engine::observe::Sleep {
        from: at_secs(sim.start, 60),
        to: at_secs(sim.start, 60 + 3 * 3600),
    }];
    sim.running("a").at(deadline + 3 * 3600 + KILL_GRACE_SECS);
    assert!(sim.tick().is_empty(), "slept time is not awake time");
    sim.at(deadline + 3 * 3600 + KILL_GRACE_SECS + 1);
    assert_eq!(show(&sim.tick()), ["kill a@a1-worker".to_owned()]);
}

#[test]
fn a_sleep_right_after_the_dispatch_does_not_count_against_the_spawn_grace() {
    let mut sim = Sim::new().card("a");
    let _ = sim.tick();
    // The machine slept for an hour a second after the dispatch, before the job registered.
    sim.seen.sleeps = vec![crate::engine::observe::Sleep {
        from: at_secs(sim.start, 1),
        to: at_secs(sim.start, 1 + 3600),
    }];
    sim.at(3600 + SPAWN_GRACE_SECS);
    assert!(sim.tick().is_empty(), "slept time is not awake time");
    assert_eq!(sim.status("a"), "working");
    sim.at(3600 + SPAWN_GRACE_SECS + 2);
    let _ = sim.tick();
    assert_eq!(
        sim.stage("a").status,
        Status::Retry {
            attempt: 1,
            reason: FailReason::SpawnFailed { role: Role::Worker }
        }
    );
}

#[test]
fn vanished_job_is_a_crash() {
    let mut sim = Sim::new().card("a");
    let _ = sim.tick();
    sim.advance(5).vanished("a");
    assert_eq!(
        show(&sim.tick()),
        ["kill a@a1-worker"],
        "what it left is killed"
    );
    assert_eq!(
        sim.stage("a").status,
        Status::Retry {
            attempt: 1,
            reason: FailReason::Crashed { role: Role::Worker }
        }
    );
    let _ = sim.tick();
    sim.advance(10).finish_worker("a", Work::Done);
    let _ = sim.tick();
    sim.advance(10).finish_acceptance("a", true);
    let _ = sim.tick();
    sim.advance(5).vanished("a");
    let _ = sim.tick();
    assert_eq!(
        sim.stage("a").status,
        Status::Retry {
            attempt: 2,
            reason: FailReason::Crashed {
                role: Role::Verifier
            }
        }
    );
}

#[test]
fn cancel_of_running_stage_kills_its_job() {
    let mut sim = Sim::new().lanes(2).card("a").card_dep("b", &["a"]);
    let _ = sim.tick();
    sim.advance(60).running("a");
    let (events, effects) =
        ops::cancel(&mut sim.state, &sim.seen, &sid("a"), sim.now).expect("cancellable");
    assert_eq!(show(&effects), ["kill a@a1-worker".to_owned()]);
    assert_eq!(events[0].line(), "a: cancelled by operator (was working)");
    assert_eq!(sim.stage("a").status, Status::Cancelled { at: sim.now });
    assert_eq!(
        sim.stage("a").history.last().map(|h| &h.result),
        Some(&AttemptResult::Cancelled)
    );

    // Its dependent can never start.
    let _ = sim.tick();
    assert_eq!(
        sim.stage("b").status,
        Status::Escalated {
            reason: Escalation::DependencyFailed {
                dependency: sid("a")
            },
            at: sim.now
        }
    );

    // A stage not yet started is cancelled without effects; a second cancel is refused.
    let mut sim = Sim::new().card("a").card("q");
    let _ = sim.tick();
    let (_, effects) = ops::cancel(&mut sim.state, &sim.seen, &sid("q"), sim.now).expect("ok");
    assert!(effects.is_empty());
    assert_eq!(
        ops::cancel(&mut sim.state, &sim.seen, &sid("q"), sim.now).map(|_| ()),
        Err(ops::OpError::AlreadyTerminal(sid("q"), "cancelled"))
    );
}

#[test]
fn a_kill_not_verified_blocks_the_next_attempt_and_is_kept() {
    let mut sim = Sim::new().card("a");
    let _ = sim.tick();
    let deadline = i64::try_from(TIMEOUTS.worker).expect("small");
    sim.running("a").at(deadline + KILL_GRACE_SECS + 1);
    sim.hold_kills = true;
    assert_eq!(show(&sim.tick()), ["kill a@a1-worker"]);
    assert_eq!(sim.state.kills.len(), 1, "the intent is in the state");
    assert_eq!(
        sim.state.kills[0].reason,
        crate::engine::state::KillReason::Timeout
    );
    sim.advance(60);
    assert!(
        sim.tick().is_empty(),
        "no retry beside a job whose kill is not verified"
    );
    assert_eq!(sim.state.kills.len(), 1);
    sim.hold_kills = false;
    sim.seen.kills_done.insert(sim.state.kills[0].job());
    let fx = show(&sim.tick());
    assert!(sim.state.kills.is_empty(), "dropped once verified");
    assert!(
        sim.events
            .iter()
            .any(|e| e == "a: a1 worker: its processes are gone (kill verified)"),
        "{:?}",
        sim.events
    );
    assert!(
        fx.iter().any(|f| f.starts_with("spawn a@a2-worker")),
        "{fx:?}"
    );
}

#[test]
fn a_job_no_tick_began_is_started_again_as_the_same_attempt_with_its_whole_time() {
    let mut sim = Sim::new().card("a");
    let _ = sim.tick();
    // The dispatching tick stopped between its commit and the start: no log, no job. The
    // next tick comes long after the spawn grace.
    sim.at(SPAWN_GRACE_SECS * 5).see("a", JobSeen::Unstarted);
    let fx = sim.tick();
    assert_eq!(
        show(&fx),
        ["spawn a@a1-worker"],
        "the same job, not a new attempt"
    );
    assert_eq!(
        plan_of(&fx, "a@a1-worker").start_point.as_deref(),
        Some(BASE)
    );
    let restarted = at_secs(sim.start, SPAWN_GRACE_SECS * 5);
    let deadline = at_secs(
        sim.start,
        SPAWN_GRACE_SECS * 5 + i64::try_from(TIMEOUTS.worker).expect("small"),
    );
    assert_eq!(
        sim.stage("a").status,
        Status::Working {
            attempt: 1,
            since: restarted,
            deadline
        },
        "its whole time, from now"
    );
    assert!(
        sim.stage("a").history.is_empty(),
        "nothing counted against it"
    );
    assert!(
        sim.events
            .iter()
            .any(|e| e.contains("a1 worker job was never started")),
        "{:?}",
        sim.events
    );
    // Begun now: it has the spawn grace again, and a start that fails after it counts.
    sim.absent("a").at(SPAWN_GRACE_SECS * 5 + SPAWN_GRACE_SECS);
    assert!(sim.tick().is_empty());
    assert_eq!(sim.status("a"), "working");
    sim.advance(1);
    let _ = sim.tick();
    assert_eq!(
        sim.stage("a").status,
        Status::Retry {
            attempt: 1,
            reason: FailReason::SpawnFailed { role: Role::Worker }
        }
    );

    // A later role's job: started again without a start point.
    let _ = sim.tick();
    sim.advance(10).finish_worker("a", Work::Done);
    let _ = sim.tick();
    sim.advance(30).see("a", JobSeen::Unstarted);
    let fx = sim.tick();
    assert_eq!(show(&fx), ["spawn a@a2-acceptance"]);
    assert_eq!(plan_of(&fx, "a@a2-acceptance").start_point, None);
    assert_eq!(sim.status("a"), "checking");
}
