//! A verifier panel: several verifiers judge one attempt, each its own detached job, and
//! `quorum` of them must say `pass`. The tick only dispatches members (phase 3, one lane each
//! while lanes are free) and collects what they left (phase 1); it never waits for one. The
//! decision is [`decide`], one pure function of the votes: `pass` needs `quorum` passes (and
//! more passes than votes against: a tie is not a pass); the panel says `fail`/`revise` as soon
//! as a pass quorum is impossible; a member whose run crashed or timed out is re-dispatched
//! alone, bounded by the stage's attempt cap. The deciding tick cancels the members still
//! running (their spend so far is kept).

use crate::engine::budget::Charge;
use crate::engine::effect::{Effect, Event, SpawnPlan};
use crate::engine::observe::{JobSeen, OutcomeResult};
use crate::engine::state::{
    FailReason, KillReason, MemberState, PanelMember, PanelOutcome, PanelRound, Stage, State,
    Status,
};
use crate::engine::step::{
    Ctx, KILL_GRACE_SECS, SPAWN_GRACE_SECS, charge_of, fail, halt, later, max_attempts,
    passed_gate, secs_between,
};
use crate::envelope::VerdictKind;
use crate::ids::Role;

/// One member's standing, as [`decide`] reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ballot {
    /// Its validated verdict.
    Vote(VerdictKind),
    /// No vote yet, but it may still give one (pending, running, or to be re-dispatched).
    Open,
    /// It will never vote (its runs are used up, or it was cancelled).
    Lost,
}

/// What the panel says, given its ballots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Wait for the open members.
    Wait,
    /// Decided: the panel's outcome.
    Decided(PanelOutcome),
}

/// The panel's decision: `pass` once `quorum` members passed and the passes outnumber the
/// votes against; as soon as a pass quorum is impossible (or no open member can break a tie),
/// `fail` when the `fail` votes are at least the `revise` votes, else `revise`, or `no quorum`
/// when nobody voted against.
#[must_use]
pub fn decide(quorum: u32, ballots: &[Ballot]) -> Decision {
    let count = |k: VerdictKind| {
        u32::try_from(ballots.iter().filter(|b| **b == Ballot::Vote(k)).count()).unwrap_or(0)
    };
    let (passes, revises, fails) = (
        count(VerdictKind::Pass),
        count(VerdictKind::Revise),
        count(VerdictKind::Fail),
    );
    let open = u32::try_from(ballots.iter().filter(|b| **b == Ballot::Open).count()).unwrap_or(0);
    let against = revises + fails;
    if passes >= quorum.max(1) && passes > against {
        return Decision::Decided(PanelOutcome::Pass);
    }
    if open > 0 && passes + open >= quorum.max(1) && passes + open > against {
        return Decision::Wait;
    }
    Decision::Decided(if fails > 0 && fails >= revises {
        PanelOutcome::Fail
    } else if revises > 0 {
        PanelOutcome::Revise
    } else {
        PanelOutcome::NoQuorum
    })
}

/// Whether the stage's panel judges this attempt: it has one, and (with `panel_when.paths`) a
/// path of the deliverable matches.
pub(super) fn applies(stage: &Stage, deliverable: &[String]) -> bool {
    stage.panel.as_ref().is_some_and(|p| {
        p.when_paths.is_empty()
            || deliverable
                .iter()
                .any(|path| p.when_paths.iter().any(|g| crate::glob::matches(g, path)))
    })
}

/// Acceptance passed: the stage waits on a new panel round, whose members phase 3 dispatches.
pub(super) fn start(stage: &mut Stage, cx: &mut Ctx<'_>, attempt: u32) {
    let Some(panel) = stage.panel.as_mut() else {
        return;
    };
    panel.rounds.push(PanelRound {
        attempt,
        members: panel
            .members
            .iter()
            .map(|m| PanelMember {
                member: m.clone(),
                runs: 0,
                state: MemberState::Pending,
                wall_secs: 0,
                tokens: 0,
                usd: 0.0,
            })
            .collect(),
        decided: None,
    });
    let text = format!(
        "a{attempt} acceptance passed; verifying with the panel {} (quorum {})",
        panel.members.join(", "),
        panel.quorum
    );
    stage.status = Status::Verifying {
        attempt,
        since: cx.now,
        deadline: later(cx.now, stage.timeouts.verifier),
    };
    cx.events.push(Event::stage(&stage.id, text));
}

/// What became of one member's run this tick.
enum Seen {
    Nothing,
    Vote {
        vote: VerdictKind,
        criteria: Vec<crate::envelope::Criterion>,
        findings: Vec<String>,
    },
    /// Crashed, timed out or failed to start: re-dispatched alone if it has runs left.
    Crashed(FailReason),
    /// No tick began to start it: started now, as the same run.
    Unstarted,
    /// Voids the whole attempt (a write outside the workspace, a forged outcome).
    Fatal(FailReason),
}

/// Phase 1 for a stage waiting on its panel: reads each running member's job, then decides.
/// Returns true if the stage moved.
pub(super) fn collect(stage: &mut Stage, cx: &mut Ctx<'_>, attempt: u32) -> bool {
    let Some(round) = stage.panel_round().cloned() else {
        return false;
    };
    let runs_cap = max_attempts(stage, cx.limits);
    let mut round = round;
    let mut moved = false;
    let mut fatal = None;
    for i in 0..round.members.len() {
        let m = &round.members[i];
        let MemberState::Running { since, deadline } = m.state else {
            continue;
        };
        let key = round.key(&stage.id, &m.member, m.runs);
        let seen = match cx.seen.jobs.get(&key).unwrap_or(&JobSeen::Absent) {
            JobSeen::Finished(o) if o.attempt == attempt && o.stage == stage.id => {
                if let OutcomeResult::Verifier { run, .. } = &o.result {
                    let c = charge_of(run, o.wall_secs, &m.member, cx.limits);
                    charge_member(&mut round.members[i], stage, cx, c);
                }
                judged(&o.result, stage)
            }
            JobSeen::Unstarted => Seen::Unstarted,
            JobSeen::Finished(_) | JobSeen::Absent => {
                let slept = crate::engine::observe::slept_secs(&cx.seen.sleeps, since, cx.now);
                if secs_between(since, cx.now) - slept > SPAWN_GRACE_SECS {
                    Seen::Crashed(FailReason::SpawnFailed {
                        role: Role::Verifier,
                    })
                } else {
                    Seen::Nothing
                }
            }
            JobSeen::Running { .. } => {
                let slept = crate::engine::observe::slept_secs(&cx.seen.sleeps, since, cx.now);
                if secs_between(deadline, cx.now) - slept > KILL_GRACE_SECS {
                    cx.kill(key.clone(), KillReason::Timeout);
                    let after_secs = u64::try_from(secs_between(since, deadline)).unwrap_or(0);
                    Seen::Crashed(FailReason::TimedOut {
                        role: Role::Verifier,
                        after_secs,
                    })
                } else {
                    Seen::Nothing
                }
            }
            JobSeen::Vanished => {
                // Its wrapper is gone; what it started may not be.
                cx.kill(key.clone(), KillReason::Crashed);
                Seen::Crashed(FailReason::Crashed {
                    role: Role::Verifier,
                })
            }
            JobSeen::Forged { path, .. } => {
                cx.kill(key.clone(), KillReason::Forged);
                Seen::Fatal(FailReason::ForgedOutcome { path: path.clone() })
            }
        };
        let m = &mut round.members[i];
        match seen {
            Seen::Nothing => continue,
            Seen::Vote {
                vote,
                criteria,
                findings,
            } => {
                cx.events.push(Event::stage(
                    &stage.id,
                    format!("a{attempt} panel: {} voted {vote:?}", m.member).to_lowercase(),
                ));
                m.state = MemberState::Voted {
                    vote,
                    criteria,
                    findings,
                };
            }
            Seen::Unstarted => {
                // The tick that dispatched it stopped before starting it: the same run starts
                // now, with its whole time.
                start_member(m, key.clone(), stage.timeouts.verifier, cx);
                cx.events.push(Event::stage(
                    &stage.id,
                    format!(
                        "a{attempt} panel: {} r{} was never started (the tick that dispatched it stopped first); starting it now",
                        m.member, m.runs
                    ),
                ));
            }
            Seen::Crashed(reason) if m.runs < runs_cap => {
                cx.events.push(Event::stage(
                    &stage.id,
                    format!(
                        "a{attempt} panel: {} r{} gave no vote ({reason}); re-dispatching it alone",
                        m.member, m.runs
                    ),
                ));
                m.state = MemberState::Pending;
            }
            Seen::Crashed(reason) => {
                cx.events.push(Event::stage(
                    &stage.id,
                    format!(
                        "a{attempt} panel: {} gave no vote in {} runs ({reason})",
                        m.member, m.runs
                    ),
                ));
                m.state = MemberState::Lost { reason };
            }
            Seen::Fatal(reason) => {
                m.state = MemberState::Lost {
                    reason: reason.clone(),
                };
                fatal.get_or_insert(reason);
            }
        }
        moved = true;
    }
    let decision = match &fatal {
        Some(_) => Decision::Decided(PanelOutcome::Void),
        None => decide(
            stage.panel.as_ref().map_or(1, |p| p.quorum),
            &round.members.iter().map(ballot).collect::<Vec<_>>(),
        ),
    };
    if let Decision::Decided(outcome) = decision {
        cancel_running(&mut round, stage, cx);
        round.decided = Some(outcome);
    }
    if let Some(r) = stage.panel_round_mut() {
        *r = round.clone();
    }
    let Decision::Decided(outcome) = decision else {
        return moved;
    };
    let votes = round
        .members
        .iter()
        .map(|m| format!("{} {}", m.member, m.state.vote_name()))
        .collect::<Vec<_>>()
        .join(", ");
    match (outcome, fatal) {
        (_, Some(reason)) => fail(stage, cx, attempt, reason),
        (PanelOutcome::Pass, None) => {
            cx.events.push(Event::stage(
                &stage.id,
                format!("a{attempt} panel passed ({votes})"),
            ));
            passed_gate(stage, cx, Role::Verifier, attempt);
        }
        (PanelOutcome::Revise, None) => {
            let findings = against(&round);
            fail(stage, cx, attempt, FailReason::Revise { findings });
        }
        (PanelOutcome::Fail, None) => {
            let findings = against(&round);
            fail(stage, cx, attempt, FailReason::Rejected { findings });
        }
        (PanelOutcome::NoQuorum | PanelOutcome::Void, None) => {
            let detail = format!("the panel reached no quorum ({votes})");
            fail(stage, cx, attempt, FailReason::InvalidVerdict { detail });
        }
    }
    true
}

/// A member's outcome read as a ballot: its verdict, or why it gave none.
fn judged(result: &OutcomeResult, stage: &Stage) -> Seen {
    let OutcomeResult::Verifier { verdict, .. } = result else {
        return Seen::Crashed(FailReason::Crashed {
            role: Role::Verifier,
        });
    };
    match super::judge::judge(result, Role::Verifier, stage) {
        Err(
            reason @ (FailReason::Escaped { .. }
            | FailReason::VerifierWrote { .. }
            | FailReason::ForgedOutcome { .. }),
        ) => Seen::Fatal(reason),
        Ok(()) | Err(FailReason::Revise { .. } | FailReason::Rejected { .. }) => match verdict {
            Some(v) => Seen::Vote {
                vote: v.verdict,
                criteria: v.criteria.clone(),
                findings: v.findings.clone(),
            },
            None => Seen::Crashed(FailReason::InvalidVerdict {
                detail: "no verdict".into(),
            }),
        },
        Err(reason) => Seen::Crashed(reason),
    }
}

fn ballot(m: &PanelMember) -> Ballot {
    match &m.state {
        MemberState::Voted { vote, .. } => Ballot::Vote(*vote),
        MemberState::Pending | MemberState::Running { .. } => Ballot::Open,
        MemberState::Lost { .. } | MemberState::Cancelled => Ballot::Lost,
    }
}

/// The findings for the worker's retry: those of every member that voted against, each
/// labelled with its member.
fn against(round: &PanelRound) -> Vec<String> {
    let mut out = Vec::new();
    for m in &round.members {
        if let MemberState::Voted {
            vote: VerdictKind::Revise | VerdictKind::Fail,
            findings,
            ..
        } = &m.state
        {
            if findings.is_empty() {
                out.push(format!(
                    "[{}] voted {} without findings",
                    m.member,
                    m.state.vote_name()
                ));
            }
            out.extend(findings.iter().map(|f| format!("[{}] {f}", m.member)));
        }
    }
    out
}

fn charge_member(m: &mut PanelMember, stage: &Stage, cx: &mut Ctx<'_>, c: Charge) {
    cx.budget.charge(&stage.id, &cx.limits.family(&m.member), c);
    m.wall_secs += c.wall_secs;
    m.tokens += c.usage.total();
    m.usd += c.usd;
}

/// Cancels the members still running: kills their jobs and keeps what they spent so far
/// (their wall time, and the estimate for a run that reported nothing yet).
fn cancel_running(round: &mut PanelRound, stage: &Stage, cx: &mut Ctx<'_>) {
    for i in 0..round.members.len() {
        let MemberState::Running { since, .. } = round.members[i].state else {
            if round.members[i].state == MemberState::Pending {
                round.members[i].state = MemberState::Cancelled;
            }
            continue;
        };
        let key = round.key(&stage.id, &round.members[i].member, round.members[i].runs);
        // An intent like any kill: re-executed by later ticks until its processes are gone.
        cx.kill(key.clone(), KillReason::Decided);
        let slept = crate::engine::observe::slept_secs(&cx.seen.sleeps, since, cx.now);
        let wall_secs = u64::try_from(secs_between(since, cx.now) - slept).unwrap_or(0);
        let run = crate::engine::observe::AgentRun {
            signal: Some(15),
            ..Default::default()
        };
        let c = charge_of(&run, wall_secs, &round.members[i].member, cx.limits);
        charge_member(&mut round.members[i], stage, cx, c);
        round.members[i].state = MemberState::Cancelled;
        cx.events.push(Event::stage(
            &stage.id,
            format!(
                "a{} panel decided; cancelled {} (still running)",
                round.attempt, round.members[i].member
            ),
        ));
    }
}

/// Phase 3, first: each panel's pending members are dispatched, one lane each while lanes
/// are free (a panel with no member running always gets one: its stage holds a lane), within
/// the budget. A halt does not stop them: they belong to an attempt already in flight.
pub(super) fn dispatch_members(state: &mut State, cx: &mut Ctx<'_>) {
    let lanes = usize::try_from(cx.limits.lanes).unwrap_or(usize::MAX);
    for i in 0..state.stages.len() {
        loop {
            let stage = &state.stages[i];
            let Some(round) = stage.panel_round() else {
                break;
            };
            let Some(j) = round
                .members
                .iter()
                .position(|m| m.state == MemberState::Pending)
            else {
                break;
            };
            if round.running().count() > 0 && state.in_flight() >= lanes {
                break;
            }
            let timeout = stage.timeouts.verifier;
            if let Err(reason) = cx.room(timeout) {
                halt(state, reason, cx);
                return;
            }
            let stage = &mut state.stages[i];
            let id = stage.id.clone();
            let Some(round) = stage.panel_round_mut() else {
                break;
            };
            round.members[j].runs += 1;
            let (name, run) = (round.members[j].member.clone(), round.members[j].runs);
            let job = round.key(&id, &name, run);
            start_member(&mut round.members[j], job, timeout, cx);
            cx.reserved += timeout;
            cx.jobs += 1;
            cx.events.push(Event::stage(
                &id,
                format!("a{} panel: dispatched {name} (run {run})", round.attempt),
            ));
        }
    }
}

/// Sets member `m` running from now, with the whole `timeout`, and asks for its job `job`.
fn start_member(m: &mut PanelMember, job: crate::ids::JobKey, timeout: u64, cx: &mut Ctx<'_>) {
    m.state = MemberState::Running {
        since: cx.now,
        deadline: later(cx.now, timeout),
    };
    cx.effects.push(Effect::Spawn(SpawnPlan {
        job,
        timeout_secs: timeout,
        start_point: None,
    }));
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ballot::{Lost, Open, Vote};
    use VerdictKind::{Fail, Pass, Revise};

    fn d(quorum: u32, b: &[Ballot]) -> Decision {
        decide(quorum, b)
    }

    #[test]
    fn pass_on_quorum_while_another_still_runs() {
        assert_eq!(
            d(2, &[Vote(Pass), Vote(Pass), Open]),
            Decision::Decided(PanelOutcome::Pass)
        );
        assert_eq!(d(2, &[Vote(Pass), Open, Open]), Decision::Wait);
    }

    #[test]
    fn against_as_soon_as_a_pass_quorum_is_impossible() {
        assert_eq!(
            d(2, &[Vote(Fail), Vote(Revise), Open]),
            Decision::Decided(PanelOutcome::Fail)
        );
        assert_eq!(
            d(2, &[Vote(Revise), Vote(Revise), Open]),
            Decision::Decided(PanelOutcome::Revise)
        );
        assert_eq!(
            d(3, &[Vote(Pass), Vote(Revise), Open]),
            Decision::Decided(PanelOutcome::Revise)
        );
    }

    #[test]
    fn a_split_with_an_open_member_waits_for_it() {
        assert_eq!(d(2, &[Vote(Pass), Vote(Fail), Open]), Decision::Wait);
        assert_eq!(
            d(2, &[Vote(Pass), Vote(Fail), Vote(Pass)]),
            Decision::Decided(PanelOutcome::Pass)
        );
        assert_eq!(
            d(2, &[Vote(Pass), Vote(Fail), Vote(Fail)]),
            Decision::Decided(PanelOutcome::Fail)
        );
    }

    #[test]
    fn a_tie_is_not_a_pass() {
        assert_eq!(
            d(1, &[Vote(Pass), Vote(Fail)]),
            Decision::Decided(PanelOutcome::Fail)
        );
        assert_eq!(d(1, &[Vote(Pass), Vote(Revise), Open]), Decision::Wait);
        assert_eq!(
            d(2, &[Vote(Pass), Vote(Pass), Vote(Fail), Vote(Revise)]),
            Decision::Decided(PanelOutcome::Fail)
        );
    }

    #[test]
    fn members_without_a_vote_cannot_make_a_quorum() {
        assert_eq!(
            d(2, &[Vote(Pass), Lost, Lost]),
            Decision::Decided(PanelOutcome::NoQuorum)
        );
        assert_eq!(
            d(2, &[Vote(Pass), Vote(Revise), Lost]),
            Decision::Decided(PanelOutcome::Revise)
        );
        assert_eq!(d(2, &[Lost, Open, Open]), Decision::Wait);
        // Even if the open member passes, it is a tie.
        assert_eq!(
            d(1, &[Vote(Fail), Vote(Fail), Vote(Pass), Open]),
            Decision::Decided(PanelOutcome::Fail)
        );
    }
}
