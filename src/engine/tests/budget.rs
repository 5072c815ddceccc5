//! The wall-time cap and halts: a cap refuses dispatch and halts, reservations stop parallel
//! lanes, consecutive failures halt with the first reason kept, and a halt finishes what is in
//! flight without starting new attempts. Includes the regressions of fixed budget bugs.

use super::outcomes::{show, verifier_result, worker_result};
use super::sim::{Sim, TIMEOUTS, Work};
use crate::engine::ops;
use crate::engine::state::{HaltReason, Status};
use crate::envelope::VerdictKind;

#[test]
fn wall_cap_refuses_dispatch_and_halts() {
    let mut sim = Sim::new().cap_wall(1000).card("a");
    assert!(sim.tick().is_empty());
    assert_eq!(sim.status("a"), "queued");
    let reason = HaltReason::WallTime {
        spent_secs: 0,
        reserved_secs: 0,
        estimate_secs: TIMEOUTS.worker,
        cap_secs: 1000,
    };
    assert_eq!(sim.halt_reason(), Some(&reason));
    assert_eq!(
        sim.events,
        ["repo: halted: budget.max_wall_time: 0s spent + 0s reserved + 30m next > cap 16m40s"]
    );
    // Still halted later; nothing is dispatched and nothing changes.
    sim.advance(3600);
    assert!(sim.tick().is_empty());
    assert!(sim.idle);
}

#[test]
fn wall_cap_reservations_stop_parallel_lanes() {
    // Room for one worker, not two: the first one's reservation counts against the second.
    let mut sim = Sim::new().lanes(2).cap_wall(3000).card("a").card("b");
    let fx = sim.tick();
    assert_eq!(show(&fx), ["spawn a@a1-worker"]);
    assert_eq!(
        sim.halt_reason(),
        Some(&HaltReason::WallTime {
            spent_secs: 0,
            reserved_secs: TIMEOUTS.worker,
            estimate_secs: TIMEOUTS.worker,
            cap_secs: 3000,
        })
    );
    assert_eq!(sim.status("b"), "queued");

    // The verifier's check counts the other lane's reservation too: a alone would have room
    // for its verifier (10 + 1800 <= 2000), but not with b's whole 600 s timeout still reserved.
    let mut sim = Sim::new()
        .lanes(2)
        .timeouts(600, 1800, 300)
        .cap_wall(2000)
        .card("a")
        .card("b");
    assert_eq!(sim.tick().len(), 2);
    sim.running("b").at(10).finish_worker("a", Work::Done);
    let _ = sim.tick();
    sim.at(20).finish_acceptance("a", true);
    assert!(sim.tick().is_empty());
    assert_eq!(
        sim.status("a"),
        "checking",
        "waits for room, keeps its evidence"
    );
    assert_eq!(
        sim.halt_reason(),
        Some(&HaltReason::WallTime {
            spent_secs: 10,
            reserved_secs: 600,
            estimate_secs: 1800,
            cap_secs: 2000,
        })
    );
}

#[test]
fn consecutive_failure_halt_keeps_first_reason() {
    let first = HaltReason::ConsecutiveFailures { count: 1, cap: 1 };
    let mut sim = Sim::new()
        .lanes(3)
        .timeouts(600, 1800, 300)
        .cap_wall(1800)
        .max_failures(1)
        .card("a")
        .card("b")
        .card("c");
    assert_eq!(sim.tick().len(), 3, "3 x 600 fits the 1800 cap exactly");
    sim.at(10)
        .finish_worker("a", Work::AgentError)
        .finish_worker("b", Work::Done)
        .finish_worker("c", Work::Done);
    let fx = sim.tick();
    assert_eq!(
        show(&fx),
        ["spawn b@a1-acceptance", "spawn c@a1-acceptance"]
    );
    assert_eq!(sim.halt_reason(), Some(&first));
    assert!(
        sim.events.contains(
            &"repo: halted: budget.max_consecutive_failures: 1 attempts failed in a row (cap 1)"
                .to_owned()
        )
    );

    // Now b has no room for its verifier (30 s spent by the three workers + 1800 > 1800: the
    // wall-time cap) and c fails again (count 2): neither replaces the first reason, and no
    // new halt is journaled.
    sim.at(20)
        .finish_acceptance("b", true)
        .finish_acceptance("c", false);
    assert!(sim.tick().is_empty());
    assert_eq!(sim.halt_reason(), Some(&first));
    assert!(!sim.events.iter().any(|e| e.contains("halted")));
    assert_eq!(sim.status("a"), "retry", "not retried while halted");
    assert_eq!(sim.status("b"), "checking");
    assert_eq!(sim.status("c"), "retry");
    assert_eq!(sim.state.consecutive_failures, 2);

    // ops::resume clears the halt and the counter; the next tick halts afresh, now for the
    // reason that still holds (b's verifier has no room), before any retry is dispatched.
    let events = ops::resume(&mut sim.state).expect("halted");
    assert_eq!(events.len(), 1);
    assert_eq!(sim.state.consecutive_failures, 0);
    sim.advance(10);
    assert!(sim.tick().is_empty());
    assert_eq!(
        sim.halt_reason(),
        Some(&HaltReason::WallTime {
            spent_secs: 30,
            reserved_secs: 0,
            estimate_secs: 1800,
            cap_secs: 1800,
        })
    );
}

/// Regression: reservations used to be the time left to a job's deadline, while a running
/// job's elapsed time is charged only when it finishes, so `spent + reserved` shrank while jobs
/// ran and a later check passed that should not. A job now reserves its whole timeout until it
/// is charged.
#[test]
fn wall_cap_holds_with_jobs_in_flight() {
    let mut sim = Sim::new()
        .lanes(2)
        .timeouts(1000, 600, 300)
        .cap_wall(2000)
        .card("a")
        .card("b");
    assert_eq!(sim.tick().len(), 2, "0 + 1000 + 1000 <= 2000");
    sim.running("a").at(900).finish_worker("b", Work::Done); // b ran 900 s
    let _ = sim.tick();
    sim.at(950).finish_acceptance("b", true);
    // Checked: 900 spent + 50 reserved (a's time left) + 600 <= 2000, so the verifier goes
    // out, although a has been running for 950 s of its 1000.
    let fx = sim.tick();
    sim.at(1000)
        .finish_wall("a", worker_result("a", 1, Work::Done), 1000);
    let _ = sim.tick();
    if !fx.is_empty() {
        sim.at(1550)
            .finish_wall("b", verifier_result("b", 1, Some(VerdictKind::Pass)), 600);
        let _ = sim.tick();
    }
    assert!(
        sim.budget.wall_secs <= 2000,
        "spent {} of a 2000 s cap",
        sim.budget.wall_secs
    );
}

/// A halt stops new attempts but never strands one in flight: its acceptance and verifier
/// jobs still run (the verifier only with budget room), and no new worker is dispatched.
#[test]
fn halt_stops_new_attempts_but_finishes_those_in_flight() {
    let mut sim = Sim::new().lanes(2).max_failures(1).card("a").card("b");
    assert_eq!(sim.tick().len(), 2);
    sim.running("b").at(10).finish_worker("a", Work::AgentError);
    let _ = sim.tick();
    assert!(sim.state.halted.is_some());
    sim.at(20).finish_worker("b", Work::Done);
    let fx = sim.tick();
    assert_eq!(show(&fx), vec!["spawn b@a1-acceptance".to_owned()]);
    assert!(
        !matches!(sim.state.stages[0].status, Status::Working { .. }),
        "no new worker for a"
    );
}
