//! Lifecycle examples: a stage goes from queued through its worker, acceptance, verifier and
//! integration to done; a revision or failure retries it; max attempts escalate it; dependencies
//! and lanes decide what is dispatched; requeue and escalated dependencies. Each asserts the
//! effects and statuses of one scenario; the invariants are checked by the simulator.

use super::outcomes::{acceptance_result, plan_of, show};
use super::sim::{BASE, FINDING, INTEGRATION, Sim, TIMEOUTS, Work, sid};
use crate::engine::observe::JobSeen;
use crate::engine::ops;
use crate::engine::state::{AttemptResult, Escalation, FailReason, Status};
use crate::envelope::VerdictKind;
use crate::ids::{JobKey, Role};

#[test]
fn full_lifecycle_spawns_each_job_once_then_integrates() {
    let mut sim = Sim::new().card("a");
    let mut statuses = Vec::new();

    let fx = sim.tick();
    assert_eq!(show(&fx), ["spawn a@a1-worker"]);
    let plan = plan_of(&fx, "a@a1-worker");
    assert_eq!(plan.timeout_secs, TIMEOUTS.worker);
    assert_eq!(plan.start_point.as_deref(), Some(BASE));
    assert_eq!(sim.budget.attempts, 1);
    statuses.push(sim.status("a"));

    // The acceptance outcome of a1 is already there too: the stage still moves one step.
    sim.at_minute(10).finish_worker("a", Work::Done);
    let early = sim.outcome("a", 1, 5, acceptance_result(&["cargo test".into()], true));
    sim.seen.jobs.insert(
        JobKey {
            stage: sid("a"),
            attempt: 1,
            role: Role::Acceptance,
            member: None,
        },
        JobSeen::Finished(Box::new(early)),
    );
    let fx = sim.tick();
    assert_eq!(show(&fx), ["spawn a@a1-acceptance"]);
    assert_eq!(
        plan_of(&fx, "a@a1-acceptance").timeout_secs,
        TIMEOUTS.acceptance
    );
    assert_eq!(plan_of(&fx, "a@a1-acceptance").start_point, None);
    statuses.push(sim.status("a"));

    sim.at_minute(12).finish_acceptance("a", true);
    let fx = sim.tick();
    assert_eq!(show(&fx), ["spawn a@a1-verifier"]);
    assert_eq!(
        plan_of(&fx, "a@a1-verifier").timeout_secs,
        TIMEOUTS.verifier
    );
    statuses.push(sim.status("a"));

    sim.at_minute(17).finish_verifier("a", VerdictKind::Pass);
    let fx = sim.tick();
    assert_eq!(show(&fx), ["integrate a@a1"]);
    statuses.push(sim.status("a"));

    sim.at_minute(18).integrated("a", true);
    let fx = sim.tick();
    assert_eq!(show(&fx), Vec::<String>::new());
    statuses.push(sim.status("a"));

    assert_eq!(
        statuses,
        ["working", "checking", "verifying", "integrating", "done"]
    );
    assert_eq!(sim.events, ["a: a1 done: fast-forwarded"]);
    let a = sim.stage("a");
    assert!(matches!(&a.status, Status::Done { attempt: 1, commit, .. } if commit == "c0ffee01"));
    assert_eq!(
        a.history.iter().map(|h| &h.result).collect::<Vec<_>>(),
        [&AttemptResult::Passed {
            commit: "c0ffee01".into()
        }]
    );
    // Charged: the worker's 10 minutes and the verifier's 5, not acceptance.
    assert_eq!(sim.budget.wall_secs, 600 + 300);
    assert_eq!(sim.budget.stage_wall_secs(&sid("a")), 900);
    assert_eq!(sim.budget.usage.input, 2000);
    assert_eq!(sim.spawned.len(), 3);

    // Nothing left to do: the next tick is idle.
    assert!(sim.tick().is_empty());
    assert!(sim.idle);
}

#[test]
fn revise_with_findings_then_pass_on_retry() {
    let mut sim = Sim::new().card("a");
    let _ = sim.tick();
    sim.advance(60).finish_worker("a", Work::Done);
    let _ = sim.tick();
    sim.advance(60).finish_acceptance("a", true);
    let _ = sim.tick();
    sim.advance(60).finish_verifier("a", VerdictKind::Revise);
    let fx = sim.tick();
    assert!(
        fx.is_empty(),
        "a failed attempt is not retried in the same tick"
    );
    assert_eq!(
        sim.stage("a").status,
        Status::Retry {
            attempt: 1,
            reason: FailReason::Revise {
                findings: vec![FINDING.into()]
            }
        }
    );
    assert_eq!(
        sim.stage("a").findings,
        ["the verifier asked for a revision", FINDING]
    );
    assert_eq!(
        sim.events,
        ["a: a1 failed: the verifier asked for a revision; will retry"]
    );

    let fx = sim.tick();
    assert_eq!(show(&fx), ["spawn a@a2-worker"]);
    assert_eq!(
        sim.stage("a").findings.len(),
        2,
        "the findings stay for the next attempt's prompt"
    );

    let ticks = sim.run_bounded(10);
    assert_eq!(ticks, 4);
    let a = sim.stage("a");
    assert!(matches!(a.status, Status::Done { attempt: 2, .. }));
    assert!(a.findings.is_empty());
    assert_eq!(a.history.len(), 2);
    assert!(matches!(
        a.history[0].result,
        AttemptResult::Failed {
            reason: FailReason::Revise { .. }
        }
    ));
    assert_eq!(sim.budget.attempts, 2);
    assert_eq!(sim.state.consecutive_failures, 0);
}

#[test]
fn escalates_after_max_attempts() {
    let mut sim = Sim::new().card("a").max_attempts(2);
    let _ = sim.tick();
    sim.advance(60).finish_worker("a", Work::Blocked);
    let _ = sim.tick();
    assert!(matches!(
        &sim.stage("a").status,
        Status::Retry { attempt: 1, reason: FailReason::NotDone { status, .. } } if status == "blocked"
    ));
    assert_eq!(show(&sim.tick()), ["spawn a@a2-worker"]);
    sim.advance(60).finish_worker("a", Work::AgentError);
    assert!(sim.tick().is_empty());
    // The last failure is the agent's (its exact typing is the agent module's business).
    let Status::Escalated {
        reason: Escalation::MaxAttempts { attempts: 2, last },
        at,
    } = &sim.stage("a").status
    else {
        panic!("not escalated: {:?}", sim.stage("a").status);
    };
    assert_eq!(*at, sim.now);
    assert!(
        last.to_string().starts_with("the worker agent failed"),
        "{last}"
    );
    assert_eq!(sim.events.len(), 1);
    assert!(
        sim.events[0].starts_with("a: escalated: failed 2 attempts; last: the worker agent failed"),
        "{:?}",
        sim.events
    );
    assert_eq!(sim.state.consecutive_failures, 2);
    assert!(sim.tick().is_empty());
    assert!(sim.idle);

    // The config's per-stage cap lowers a card's own max_attempts.
    let mut sim = Sim::new().card("a").max_attempts(5).attempts_cap(Some(1));
    let _ = sim.tick();
    sim.vanished("a");
    let _ = sim.tick();
    assert!(matches!(
        sim.stage("a").status,
        Status::Escalated {
            reason: Escalation::MaxAttempts { attempts: 1, .. },
            ..
        }
    ));
}

#[test]
fn dependencies_gate_dispatch_and_pick_start_point() {
    let mut sim = Sim::new()
        .lanes(3)
        .card("a")
        .card("b")
        .card_dep("c", &["a"])
        .card_dep("d", &["a", "b"]);
    let fx = sim.tick();
    assert_eq!(show(&fx), ["spawn a@a1-worker", "spawn b@a1-worker"]);
    assert_eq!(
        plan_of(&fx, "a@a1-worker").start_point.as_deref(),
        Some(BASE)
    );
    assert_eq!(
        plan_of(&fx, "b@a1-worker").start_point.as_deref(),
        Some(BASE)
    );
    assert_eq!(sim.status("c"), "queued", "a free lane, but a is not done");
    sim.running("b");

    // c is dispatched in the very tick a is done, from a's stage branch; d still waits for b.
    let fx = sim.pass_attempt("a");
    assert_eq!(show(&fx[3]), ["spawn c@a1-worker"]);
    assert_eq!(
        plan_of(&fx[3], "c@a1-worker").start_point.as_deref(),
        Some("nightshift/stage/a")
    );
    assert!(sim.tick().is_empty());
    assert_eq!(sim.status("d"), "queued");
    sim.running("c");

    // With two dependencies, d starts from the integration branch, which holds both.
    let fx = sim.pass_attempt("b");
    assert_eq!(show(&fx[3]), ["spawn d@a1-worker"]);
    assert_eq!(
        plan_of(&fx[3], "d@a1-worker").start_point.as_deref(),
        Some(INTEGRATION)
    );
    sim.run_bounded(20);
}

#[test]
fn lanes_limit_parallel_dispatch() {
    let mut sim = Sim::new().lanes(2).card("a").card("b").card("c");
    let fx = sim.tick();
    assert_eq!(show(&fx), ["spawn a@a1-worker", "spawn b@a1-worker"]);
    assert_eq!(sim.state.in_flight(), 2);
    sim.running("a").running("b").advance(60);
    assert!(sim.tick().is_empty());
    assert_eq!(sim.status("c"), "queued");

    // A retrying stage keeps its lane: c still waits, and a's retry goes first.
    sim.advance(10).vanished("a");
    assert_eq!(
        show(&sim.tick()),
        ["kill a@a1-worker"],
        "what it left is killed"
    );
    assert_eq!(sim.status("a"), "retry");
    assert_eq!(show(&sim.tick()), ["spawn a@a2-worker"]);
    assert_eq!(sim.status("c"), "queued");

    // b done frees a lane for c, in the same tick.
    let fx = sim.pass_attempt("b");
    assert_eq!(show(&fx[3]), ["spawn c@a1-worker"]);
    assert_eq!(sim.state.in_flight(), 2);
    sim.run_bounded(20);
}

#[test]
fn idle_tick_is_idle() {
    let mut sim = Sim::new().card("a");
    let _ = sim.tick();
    assert!(!sim.idle);
    sim.running("a").advance(600);
    assert!(sim.tick().is_empty());
    assert!(sim.idle);
    assert!(sim.events.is_empty());
    // Integrating without an outcome asks for the integration again: not idle.
    sim.advance(10).finish_worker("a", Work::Done);
    let _ = sim.tick();
    sim.advance(10).finish_acceptance("a", true);
    let _ = sim.tick();
    sim.advance(10).finish_verifier("a", VerdictKind::Pass);
    let _ = sim.tick();
    assert_eq!(show(&sim.tick()), ["integrate a@a1"]);
    assert!(!sim.idle);
}

#[test]
fn requeue_resets_attempts_used_but_continues_numbering() {
    let mut sim = Sim::new().card("a").max_attempts(2);
    for n in 1..=2 {
        assert_eq!(show(&sim.tick()), [format!("spawn a@a{n}-worker")]);
        sim.advance(10).finish_worker("a", Work::NoEnvelope);
        let _ = sim.tick();
    }
    assert_eq!(sim.status("a"), "escalated");
    assert_eq!(sim.stage("a").attempts_used(), 2);

    let events = ops::requeue(&mut sim.state, &sid("a")).expect("requeueable");
    assert_eq!(events[0].line(), "a: requeued by operator (was escalated)");
    let a = sim.stage("a");
    assert_eq!(a.status, Status::Queued);
    assert_eq!((a.attempt, a.attempt_floor, a.attempts_used()), (2, 2, 0));
    assert!(a.findings.is_empty());

    assert_eq!(show(&sim.tick()), ["spawn a@a3-worker"]);
    sim.advance(10).finish_worker("a", Work::NoEnvelope);
    let _ = sim.tick();
    assert_eq!(
        sim.status("a"),
        "retry",
        "one attempt used of two since the requeue"
    );
    assert_eq!(show(&sim.tick()), ["spawn a@a4-worker"]);
    sim.run_bounded(10);
    assert!(matches!(
        sim.stage("a").status,
        Status::Done { attempt: 4, .. }
    ));
    assert_eq!(sim.stage("a").history.len(), 4);

    // Only terminal stages can be requeued.
    let mut sim = Sim::new().card("a");
    let _ = sim.tick();
    assert_eq!(
        ops::requeue(&mut sim.state, &sid("a")),
        Err(ops::OpError::NotRequeueable(sid("a"), "working"))
    );
}

#[test]
fn escalated_dependency_escalates_dependents() {
    let mut sim = Sim::new()
        .lanes(3)
        .card("a")
        .card_dep("b", &["a"])
        .card_dep("c", &["b"])
        .card("d")
        .max_attempts(1);
    assert_eq!(
        show(&sim.tick()),
        ["spawn a@a1-worker", "spawn d@a1-worker"]
    );
    sim.running("d")
        .advance(10)
        .finish_worker("a", Work::ProtectedPath);
    assert!(sim.tick().is_empty());
    assert_eq!(
        sim.stage("a").status,
        Status::Escalated {
            reason: Escalation::MaxAttempts {
                attempts: 1,
                last: FailReason::ProtectedPath {
                    path: "Cargo.lock".into()
                }
            },
            at: sim.now
        }
    );
    // In the same tick, the whole chain below it.
    for (id, dep) in [("b", "a"), ("c", "b")] {
        assert_eq!(
            sim.stage(id).status,
            Status::Escalated {
                reason: Escalation::DependencyFailed {
                    dependency: sid(dep)
                },
                at: sim.now
            },
            "{id}"
        );
    }
    assert_eq!(sim.status("d"), "working", "unrelated stages go on");
    sim.run_bounded(10);
}
