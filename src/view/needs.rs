//! "What needs you": the one place that decides which facts of a night a person must act on,
//! most urgent first, each with the exact next command. `status` prints it first, the report
//! lists it, notifications are sent for it. Pure: reads the view's inputs, writes nothing.

use jiff::Timestamp;
use schemars::JsonSchema;
use serde::Serialize;

use crate::awake::SchedulerView;
use crate::engine::state::{Escalation, State, Status};

/// What kind of attention an item asks for (ordered: most urgent first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum NeedsKind {
    /// An agent's credentials failed: no retry can help.
    Auth,
    /// The repo stopped dispatching: a cap fired.
    Halted,
    /// A stage ran out of attempts or cannot go on.
    Escalated,
    /// The scheduler installed on this host has not ticked for three intervals.
    SchedulerStopped,
    /// A model family hit its usage limit; it resumes by itself at the reset time.
    Paused,
    /// Agents run without a kernel ruleset (no Landlock, or `confine:` is not `strict`).
    Unconfined,
}

impl NeedsKind {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auth => "auth",
            Self::Halted => "halted",
            Self::Escalated => "escalated",
            Self::SchedulerStopped => "scheduler_stopped",
            Self::Paused => "paused",
            Self::Unconfined => "unconfined",
        }
    }
}

/// One thing a person should act on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct NeedsYou {
    pub kind: NeedsKind,
    /// The stage concerned, if any.
    pub stage: Option<String>,
    /// One line: what happened.
    pub message: String,
    /// The exact next command, when there is one to run.
    pub next: Option<String>,
}

/// Computes the list, most urgent first.
#[must_use]
pub fn compute(state: &State, scheduler: &SchedulerView, now: Timestamp) -> Vec<NeedsYou> {
    let mut out = Vec::new();
    if let Some(h) = &state.halted {
        out.push(NeedsYou {
            kind: NeedsKind::Halted,
            stage: None,
            message: format!("no new attempts are dispatched: {}", h.reason),
            next: Some(
                "raise the cap in nightshift.yaml if needed, then `nightshift resume`".into(),
            ),
        });
    }
    for s in &state.stages {
        let Status::Escalated { reason, .. } = &s.status else {
            continue;
        };
        let id = s.id.as_str();
        let item = match reason {
            Escalation::Auth { agent, .. } => NeedsYou {
                kind: NeedsKind::Auth,
                stage: Some(id.to_owned()),
                message: format!("`{id}` escalated: {reason}"),
                next: Some(format!(
                    "fix the auth route of agent `{agent}` in nightshift.yaml, check with `nightshift doctor`, then `nightshift requeue {id}`"
                )),
            },
            _ => NeedsYou {
                kind: NeedsKind::Escalated,
                stage: Some(id.to_owned()),
                message: format!("`{id}` escalated: {reason}"),
                next: Some(format!(
                    "read the evidence in state/handoffs/{id}/ (`nightshift logs {id}`), then `nightshift requeue {id}`"
                )),
            },
        };
        out.push(item);
    }
    if scheduler.stopped {
        let last = scheduler
            .last_tick
            .map_or_else(|| "never".to_owned(), |t| t.to_string());
        out.push(NeedsYou {
            kind: NeedsKind::SchedulerStopped,
            stage: None,
            message: format!(
                "the scheduler has not ticked for over {} (last tick: {last})",
                crate::config::format_duration(3 * scheduler.interval_secs)
            ),
            next: Some(
                "`nightshift doctor` shows the scheduler; reinstall it with `nightshift install`"
                    .into(),
            ),
        });
    }
    for (family, p) in &state.paused {
        let waiting: Vec<&str> = state
            .stages
            .iter()
            .filter(|s| matches!(&s.status, Status::Paused { family: f, .. } if f == family))
            .map(|s| s.id.as_str())
            .collect();
        let left = p.until.as_second() - now.as_second();
        out.push(NeedsYou {
            kind: NeedsKind::Paused,
            stage: waiting.first().map(|s| (*s).to_owned()),
            message: format!(
                "{family} usage limit: paused until {} ({}){}",
                p.until,
                if left > 0 {
                    format!("in {}", crate::config::format_duration(left.unsigned_abs()))
                } else {
                    "due now".to_owned()
                },
                if waiting.is_empty() {
                    String::new()
                } else {
                    format!("; waiting: {}", waiting.join(", "))
                }
            ),
            next: None,
        });
    }
    out.sort_by_key(|n| n.kind);
    out
}
