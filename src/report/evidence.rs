//! The evidence behind each line of the report: a verifier's verdict and criteria, the
//! acceptance results, the last failure's findings, what needs a human with the exact next
//! command, and partial work (worker hand-offs marked `partial` or `blocked`, and salvage
//! events in the journal). Pure: reads only the [`LedgerView`] it is given.

use jiff::Timestamp;

use super::collect::LedgerView;
use super::model::{NeedsYou, Partial};
use crate::engine::state::{AttemptResult, Escalation, FailReason, Stage, Status};

/// The verifier's verdict (`pass`, `revise`, `fail`) and its evidence lines.
#[must_use]
pub fn verdict_evidence(view: &LedgerView, id: &str, n: u32) -> (Option<String>, Vec<String>) {
    use crate::engine::observe::OutcomeResult;
    let Some(o) = view
        .outcomes
        .get(&(id.to_owned(), n, crate::ids::Role::Verifier))
    else {
        return (None, Vec::new());
    };
    let OutcomeResult::Verifier {
        verdict,
        verdict_error,
        ..
    } = &o.result
    else {
        return (None, Vec::new());
    };
    let Some(v) = verdict else {
        return (
            None,
            verdict_error
                .iter()
                .map(|e| format!("verdict: {e}"))
                .collect(),
        );
    };
    let kind = serde_json::to_value(v.verdict)
        .ok()
        .and_then(|k| k.as_str().map(str::to_owned));
    let mut ev: Vec<String> = v
        .criteria
        .iter()
        .map(|c| {
            let k = serde_json::to_value(c.verdict).unwrap_or_default();
            format!("{} ({}): {}", c.id, k.as_str().unwrap_or("?"), c.evidence)
        })
        .collect();
    ev.extend(v.findings.iter().map(|f| format!("finding: {f}")));
    (kind, ev)
}

/// A panel's round on attempt `n`: `panel: <member> <vote>, ...` (for the verifier column),
/// its decision, and each member's criteria and findings labelled with the member.
#[must_use]
pub fn panel_evidence(
    s: &crate::engine::state::Stage,
    n: u32,
) -> Option<(String, Option<String>, Vec<String>)> {
    use crate::engine::state::MemberState;
    let round = s
        .panel
        .as_ref()?
        .rounds
        .iter()
        .rev()
        .find(|r| r.attempt == n)?;
    let votes = round
        .members
        .iter()
        .map(|m| format!("{} {}", m.member, m.state.vote_name()))
        .collect::<Vec<_>>()
        .join(", ");
    let decided = round.decided.and_then(|d| {
        serde_json::to_value(d)
            .ok()
            .and_then(|k| k.as_str().map(str::to_owned))
    });
    let mut ev = Vec::new();
    for m in &round.members {
        if let MemberState::Voted {
            criteria, findings, ..
        } = &m.state
        {
            ev.extend(criteria.iter().map(|c| {
                let k = serde_json::to_value(c.verdict).unwrap_or_default();
                format!(
                    "[{}] {} ({}): {}",
                    m.member,
                    c.id,
                    k.as_str().unwrap_or("?"),
                    c.evidence
                )
            }));
            ev.extend(
                findings
                    .iter()
                    .map(|f| format!("[{}] finding: {f}", m.member)),
            );
        }
    }
    Some((format!("panel: {votes}"), decided, ev))
}

/// One line per acceptance command of the attempt.
#[must_use]
pub fn acceptance_evidence(view: &LedgerView, id: &str, n: u32) -> Vec<String> {
    use crate::engine::observe::OutcomeResult;
    match view
        .outcomes
        .get(&(id.to_owned(), n, crate::ids::Role::Acceptance))
    {
        Some(o) => match &o.result {
            OutcomeResult::Acceptance { commands, .. } => commands
                .iter()
                .map(|c| match (c.timed_out, c.exit) {
                    (true, _) => format!("acceptance `{}` timed out after {}s", c.command, c.secs),
                    (false, Some(e)) => {
                        format!("acceptance `{}` exited {e} ({}s)", c.command, c.secs)
                    }
                    (false, None) => format!("acceptance `{}` was killed", c.command),
                })
                .collect(),
            _ => Vec::new(),
        },
        None => Vec::new(),
    }
}

/// The halt, escalated and paused stages: why, evidence, next command.
#[must_use]
pub fn needs_you(view: &LedgerView) -> Vec<NeedsYou> {
    let mut out = Vec::new();
    if let Some(h) = &view.state.halted {
        out.push(NeedsYou {
            id: String::new(),
            title: "the repository is halted".into(),
            status: "halted".into(),
            why: h.reason.to_string(),
            evidence: Vec::new(),
            evidence_dir: None,
            next: "raise the cap in nightshift.yaml if needed, then `nightshift resume`".into(),
            at: Some(h.at),
        });
    }
    for s in &view.state.stages {
        let id = s.id.to_string();
        let (status, why, at, next) = match &s.status {
            Status::Escalated { reason, at } => (
                "escalated",
                reason.to_string(),
                Some(*at),
                escalated_next(&id, reason),
            ),
            Status::Paused { family, until, .. } => (
                "paused",
                format!("{family} usage limit until {until}"),
                None,
                format!("nothing: it resumes by itself at {until} (or `nightshift cancel {id}`)"),
            ),
            _ => continue,
        };
        let last = s.attempt;
        let mut evidence = failure_evidence(s);
        evidence.extend(verdict_evidence(view, &id, last).1);
        evidence.extend(
            acceptance_evidence(view, &id, last)
                .into_iter()
                .filter(|e| !e.contains("exited 0")),
        );
        out.push(NeedsYou {
            title: s.title.clone(),
            status: status.into(),
            why,
            evidence,
            evidence_dir: (last > 0).then(|| format!("state/handoffs/{id}/a{last}/")),
            next,
            at,
            id,
        });
    }
    out
}

fn escalated_next(id: &str, reason: &Escalation) -> String {
    match reason {
        Escalation::Auth { agent, .. } => format!(
            "fix the auth route of agent `{agent}` in nightshift.yaml, check with `nightshift doctor`, then `nightshift requeue {id}`"
        ),
        Escalation::DependencyFailed { dependency } => {
            format!("`nightshift requeue {dependency}` (then `nightshift requeue {id}`)")
        }
        _ => format!("`nightshift requeue {id}`"),
    }
}

/// The last failure's details: findings, acceptance command, agent error.
fn failure_evidence(s: &Stage) -> Vec<String> {
    let Some(AttemptResult::Failed { reason }) = s.history.last().map(|h| &h.result) else {
        return Vec::new();
    };
    let mut out = vec![format!(
        "attempt {}: {reason}",
        s.history.last().map_or(0, |h| h.attempt)
    )];
    if let FailReason::Revise { findings } | FailReason::Rejected { findings } = reason {
        out.extend(findings.iter().map(|f| format!("finding: {f}")));
    }
    out
}

/// Partial hand-offs and salvage events of the window.
#[must_use]
pub fn partial(view: &LedgerView, since: Timestamp) -> Vec<Partial> {
    use crate::engine::observe::OutcomeResult;
    let mut out: Vec<Partial> = view
        .outcomes
        .iter()
        .filter(|(_, o)| o.finished_at >= since)
        .filter_map(|((id, n, _), o)| match &o.result {
            OutcomeResult::Worker {
                envelope: Some(e), ..
            } if e.status != crate::envelope::EnvelopeStatus::Done => Some(Partial {
                id: id.clone(),
                attempt: *n,
                status: serde_json::to_value(e.status)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                summary: e.summary.clone(),
                files: e.files_changed.clone(),
            }),
            _ => None,
        })
        .collect();
    for c in view.commits.iter().rev() {
        for line in c
            .events
            .iter()
            .filter(|l| l.to_lowercase().contains("salvaged"))
        {
            let (id, text) = line.split_once(": ").unwrap_or(("repo", line));
            out.push(Partial {
                id: id.to_owned(),
                attempt: 0,
                status: "journal".into(),
                summary: text.to_owned(),
                files: Vec::new(),
            });
        }
    }
    out
}
