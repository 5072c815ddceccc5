//! The property test: random observation sequences (stale, absent, running, vanished and
//! finished jobs with random outcomes and wall times) over random cards, lanes and limits.
//! The simulator checks invariants (a)–(e) on every tick; this adds (f), that passing outcomes
//! then settle every run within a bounded number of ticks.

use proptest::prelude::*;

use super::outcomes::{acceptance_result, integration_result, verifier_result, worker_result};
use super::sim::{Sim, Work, sid};
use crate::engine::observe::JobSeen;
use crate::engine::state::Status;
use crate::envelope::VerdictKind;
use crate::ids::Role;

const PROP_CARDS: usize = 5;

/// What the shell sees for one stage's job in one tick of a random run.
#[derive(Debug, Clone, Copy)]
enum Seen {
    /// Leave the observation as it was.
    Keep,
    Absent,
    /// No tick began to start it (its dispatching tick stopped first).
    Unstarted,
    Running,
    Vanished,
    /// An outcome of another attempt, at the current job's place.
    Stale,
    /// The job finished; `pick` chooses the outcome, `wall_pct` its wall time as a share of
    /// the time since the job started (at most its timeout).
    Finished {
        pick: u8,
        wall_pct: u8,
    },
}

#[derive(Debug, Clone)]
struct Scenario {
    lanes: u32,
    cards: usize,
    /// Per card, a bit mask over the earlier cards it depends on (so always acyclic).
    deps: Vec<u8>,
    cap: Option<u64>,
    max_attempts: u32,
    attempts_cap: Option<u32>,
    max_failures: u32,
    ticks: Vec<(u64, Vec<Seen>)>,
}

fn seen_strategy() -> impl Strategy<Value = Seen> {
    prop_oneof![
        2 => Just(Seen::Keep),
        1 => Just(Seen::Absent),
        1 => Just(Seen::Unstarted),
        3 => Just(Seen::Running),
        1 => Just(Seen::Vanished),
        1 => Just(Seen::Stale),
        6 => (any::<u8>(), 0u8..=100).prop_map(|(pick, wall_pct)| Seen::Finished { pick, wall_pct }),
    ]
}

fn scenario_strategy() -> impl Strategy<Value = Scenario> {
    // Mostly short steps, so jobs get somewhere before the spawn grace runs out.
    let tick = (
        prop_oneof![3 => 0u64..60, 1 => 60u64..400],
        proptest::collection::vec(seen_strategy(), PROP_CARDS),
    );
    (
        1u32..=3,
        1usize..=PROP_CARDS,
        proptest::collection::vec(any::<u8>(), PROP_CARDS),
        prop_oneof![1 => Just(None), 3 => (0u64..3000).prop_map(Some)],
        1u32..=3,
        prop_oneof![2 => Just(None), 1 => (1u32..=3).prop_map(Some)],
        2u32..=8,
        proptest::collection::vec(tick, 0..=60),
    )
        .prop_map(
            |(lanes, cards, deps, cap, max_attempts, attempts_cap, max_failures, ticks)| Scenario {
                lanes,
                cards,
                deps,
                cap,
                max_attempts,
                attempts_cap,
                max_failures,
                ticks,
            },
        )
}

impl Sim {
    /// Applies one random observation to the job (or integration) stage `id` waits on.
    fn apply(&mut self, id: &str, seen: Seen) {
        let status = self.stage(id).status.clone();
        if let Status::Integrating { attempt, .. } = status {
            match seen {
                Seen::Finished { pick, .. } => {
                    self.integrated(id, pick % 8 != 7);
                }
                Seen::Stale => {
                    let other = if attempt > 1 {
                        attempt - 1
                    } else {
                        attempt + 1
                    };
                    let o = self.outcome(id, other, 0, integration_result(other, true));
                    self.seen.integrations.insert(sid(id), o);
                }
                Seen::Absent => {
                    self.seen.integrations.remove(&sid(id));
                }
                Seen::Keep | Seen::Running | Seen::Vanished | Seen::Unstarted => {}
            }
            return;
        }
        let Some((role, attempt)) = status.waiting_on() else {
            return;
        };
        match seen {
            Seen::Keep => {}
            Seen::Absent => {
                self.absent(id);
            }
            Seen::Unstarted => {
                self.see(id, JobSeen::Unstarted);
            }
            Seen::Running => {
                self.running(id);
            }
            Seen::Vanished => {
                self.vanished(id);
            }
            Seen::Stale => {
                let other = if attempt > 1 {
                    attempt - 1
                } else {
                    attempt + 1
                };
                let o = self.outcome(id, other, 10, worker_result(id, other, Work::Done));
                self.see(id, JobSeen::Finished(Box::new(o)));
            }
            Seen::Finished { pick, wall_pct } => {
                let timeout = match role {
                    Role::Worker => self.stage(id).timeouts.worker,
                    Role::Acceptance => self.stage(id).timeouts.acceptance,
                    Role::Verifier => self.stage(id).timeouts.verifier,
                };
                let wall = self.elapsed(id).min(timeout) * u64::from(wall_pct) / 100;
                let result = match role {
                    Role::Worker => {
                        let work = match pick % 12 {
                            0..=5 => Work::Done,
                            6 => Work::Blocked,
                            7 => Work::Partial,
                            8 => Work::NoEnvelope,
                            9 => Work::AgentError,
                            10 => Work::ProtectedPath,
                            _ => Work::SetupError,
                        };
                        worker_result(id, attempt, work)
                    }
                    Role::Acceptance => {
                        let commands = self.stage(id).acceptance.clone();
                        acceptance_result(&commands, pick % 4 != 3)
                    }
                    Role::Verifier => {
                        let kind = match pick % 8 {
                            0..=3 => Some(VerdictKind::Pass),
                            4 => Some(VerdictKind::Revise),
                            5 => Some(VerdictKind::Fail),
                            _ => None,
                        };
                        verifier_result(id, attempt, kind)
                    }
                };
                self.finish_wall(id, result, wall);
            }
        }
    }
}

/// Invariants (a)–(e) are checked by [`Sim::tick`] on every step; this adds (f): after the
/// random phase, always-passing outcomes bring every stage to a terminal status, or leave
/// the repo halted with no job running, within a bounded number of ticks.
fn run_scenario(sc: &Scenario) -> Result<(), TestCaseError> {
    let mut sim = Sim::new()
        .lanes(sc.lanes)
        .timeouts(300, 240, 120)
        .max_attempts(sc.max_attempts)
        .attempts_cap(sc.attempts_cap)
        .max_failures(sc.max_failures);
    if let Some(cap) = sc.cap {
        sim = sim.cap_wall(cap);
    }
    let ids: Vec<String> = (0..sc.cards).map(|i| format!("s{i}")).collect();
    for (i, id) in ids.iter().enumerate() {
        let deps: Vec<&str> = (0..i)
            .filter(|j| sc.deps[i] & (1 << j) != 0)
            .map(|j| ids[j].as_str())
            .collect();
        sim = sim.card_dep(id, &deps);
    }
    for (advance, seen) in &sc.ticks {
        sim.advance(*advance);
        for (id, s) in ids.iter().zip(seen) {
            sim.apply(id, *s);
        }
        let _ = sim.tick();
    }
    match sim.drive(100) {
        Ok(_) => Ok(()),
        Err(e) => Err(TestCaseError::fail(format!("(f) {e}"))),
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 96,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_runs_keep_invariants_and_settle(sc in scenario_strategy()) {
        run_scenario(&sc)?;
    }
}
