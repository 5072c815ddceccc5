//! The morning report as data (`report --format json` prints it as is) and the pure function
//! that builds it from a [`LedgerView`]: what was done, what needs a human and why, partial
//! work, spend, sleeps, quiet stretches and the queue, plus one bar per attempt for the
//! timeline. No clock, no files, no git in here: the caller passes `now` and the ledger view.

use jiff::Timestamp;
use schemars::JsonSchema;
use serde::Serialize;

use super::collect::{LedgerView, parse_sleep};
use super::evidence::{acceptance_evidence, needs_you, partial, verdict_evidence};
use crate::engine::state::{Stage, Status};

pub const REPORT_VERSION: u32 = 1;

/// A stretch with no ledger commit longer than this (not explained by a recorded sleep) is
/// listed as a quiet stretch.
pub const GAP_SECS: i64 = 20 * 60;

#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct Report {
    pub version: u32,
    pub generated_at: Timestamp,
    pub since: Timestamp,
    /// Why the window starts where it does: `last report`, `--since` or `default 24h`.
    pub since_reason: String,
    /// The repository's directory name (never an absolute path).
    pub repo: String,
    pub ledger_head: String,
    /// Ledger commits (state changes) in the window.
    pub commits: usize,
    pub done: Vec<DoneStage>,
    pub needs_you: Vec<NeedsYou>,
    pub partial: Vec<Partial>,
    pub spend: Spend,
    pub sleeps: Vec<Span>,
    pub gaps: Vec<Span>,
    pub queued: Vec<Queued>,
    /// One entry per attempt that overlaps the window (the timeline's bars).
    pub attempts: Vec<AttemptBar>,
}

#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct DoneStage {
    pub id: String,
    pub title: String,
    pub attempt: u32,
    pub commit: String,
    pub branch: String,
    pub at: Timestamp,
    /// From the first attempt's start to done.
    pub elapsed_secs: u64,
    /// Agent wall time charged to the stage.
    pub agent_secs: u64,
    pub tokens: u64,
    pub usd: f64,
    pub verifier: String,
    /// `pass`, `revise` or `fail`; null when no verdict is on record.
    pub verdict: Option<String>,
    /// Per-criterion verdicts with evidence, the verifier's findings and acceptance results.
    pub evidence: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct NeedsYou {
    pub id: String,
    pub title: String,
    /// `escalated`, `paused` or `halted` (the whole repo; `id` is empty then).
    pub status: String,
    pub why: String,
    pub evidence: Vec<String>,
    /// Where the files are, relative to the repo root.
    pub evidence_dir: Option<String>,
    /// The exact next command.
    pub next: String,
    pub at: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct Partial {
    pub id: String,
    pub attempt: u32,
    /// `partial` or `blocked` (the worker's handoff), or `journal` (a salvage event).
    pub status: String,
    pub summary: String,
    pub files: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct Spend {
    pub tokens: u64,
    pub usd: f64,
    pub window_tokens: u64,
    pub window_usd: f64,
    pub max_tokens: Option<u64>,
    pub max_usd: Option<f64>,
    /// The host-wide caps (every repository of this machine), if set.
    pub host_max_tokens: Option<u64>,
    pub host_max_usd: Option<f64>,
    pub wall_secs: u64,
    pub max_wall_secs: Option<u64>,
    pub families: Vec<FamilySpend>,
}

#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct FamilySpend {
    pub family: String,
    pub runs: u64,
    pub tokens: u64,
    pub usd: f64,
    pub window_tokens: u64,
    pub window_usd: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct Span {
    pub from: Timestamp,
    pub to: Timestamp,
    pub secs: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct Queued {
    pub id: String,
    pub title: String,
    pub status: String,
    pub waits_on: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct AttemptBar {
    pub stage: String,
    pub attempt: u32,
    /// 1-based lane row (attempts that overlap in time get different lanes).
    pub lane: u32,
    pub start: Timestamp,
    pub end: Timestamp,
    /// `passed`, `failed`, `cancelled` or `in_flight`.
    pub outcome: String,
    pub reason: Option<String>,
    pub segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct Segment {
    /// `worker`, `acceptance` or `verifier`.
    pub role: String,
    pub start: Timestamp,
    pub end: Timestamp,
}

/// The configured caps the spend section compares against.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Caps {
    pub max_tokens: Option<u64>,
    pub max_usd: Option<f64>,
    pub host_max_tokens: Option<u64>,
    pub host_max_usd: Option<f64>,
    pub max_wall_secs: Option<u64>,
}

/// The window and its provenance.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    pub since: Timestamp,
    pub now: Timestamp,
    pub reason: String,
}

/// True when attempt `n` of stage `id` may show in a window starting at `since` (what the
/// collector reads outcomes for).
#[must_use]
pub fn attempt_in_window(
    state: &crate::engine::state::State,
    id: &str,
    n: u32,
    since: Timestamp,
) -> bool {
    let Some(stage) = state.stages.iter().find(|s| s.id.as_str() == id) else {
        return false;
    };
    match stage.history.iter().rev().find(|h| h.attempt == n) {
        Some(rec) => rec.ended >= since,
        None => n == stage.attempt,
    }
}

/// Builds the report.
#[must_use]
pub fn build(view: &LedgerView, window: &Window, repo: &str, caps: Caps) -> Report {
    let state = &view.state;
    let attempts = super::timeline::bars(view, window);
    let sleeps = sleeps(view, window);
    Report {
        version: REPORT_VERSION,
        generated_at: window.now,
        since: window.since,
        since_reason: window.reason.clone(),
        repo: repo.to_owned(),
        ledger_head: view.head.clone(),
        commits: view.commits.len(),
        done: state
            .stages
            .iter()
            .filter_map(|s| done(view, s, window.since))
            .collect(),
        needs_you: needs_you(view),
        partial: partial(view, window.since),
        spend: spend(view, caps),
        gaps: gaps(view, &sleeps),
        sleeps,
        queued: queued(state),
        attempts,
    }
}

fn span(from: Timestamp, to: Timestamp) -> Span {
    Span {
        from,
        to,
        secs: u64::try_from(to.as_second() - from.as_second()).unwrap_or(0),
    }
}

fn done(view: &LedgerView, s: &Stage, since: Timestamp) -> Option<DoneStage> {
    let Status::Done {
        attempt,
        commit,
        at,
    } = &s.status
    else {
        return None;
    };
    if *at < since {
        return None;
    }
    let spend = view.budget.stage_spend(&s.id);
    let id = s.id.to_string();
    let first_start = (1..=*attempt)
        .filter_map(|n| outcome_start(view, &id, n))
        .min()
        .unwrap_or(*at);
    let (mut verdict, mut evidence) = verdict_evidence(view, &id, *attempt);
    let mut verifier = s.verifier.clone();
    if let Some((votes, v, ev)) = super::evidence::panel_evidence(s, *attempt) {
        (verifier, verdict, evidence) = (votes, v, ev);
    }
    evidence.extend(acceptance_evidence(view, &id, *attempt));
    Some(DoneStage {
        title: s.title.clone(),
        attempt: *attempt,
        commit: commit.clone(),
        branch: crate::ids::stage_branch(&s.id),
        at: *at,
        elapsed_secs: u64::try_from(at.as_second() - first_start.as_second()).unwrap_or(0),
        agent_secs: spend.wall_secs,
        tokens: spend.usage.total(),
        usd: spend.usd,
        verifier,
        verdict,
        evidence,
        id,
    })
}

/// The earliest start among an attempt's outcomes.
fn outcome_start(view: &LedgerView, id: &str, n: u32) -> Option<Timestamp> {
    view.outcomes
        .range(
            (id.to_owned(), n, crate::ids::Role::Worker)
                ..=(id.to_owned(), n, crate::ids::Role::Verifier),
        )
        .map(|(_, o)| super::timeline::started(o))
        .min()
}

fn spend(view: &LedgerView, caps: Caps) -> Spend {
    let b = &view.budget;
    let (base_tokens, base_usd) = view
        .before
        .as_ref()
        .and_then(|c| c.spent)
        .unwrap_or((0, 0.0));
    let families = b
        .families
        .iter()
        .map(|(family, f)| {
            let (bt, bu) = view
                .before
                .as_ref()
                .and_then(|c| c.families.get(family).copied())
                .unwrap_or((0, 0.0));
            FamilySpend {
                family: family.clone(),
                runs: f.runs,
                tokens: f.usage.total(),
                usd: f.usd,
                window_tokens: f.usage.total().saturating_sub(bt),
                window_usd: (f.usd - bu).max(0.0),
            }
        })
        .collect();
    Spend {
        tokens: b.usage.total(),
        usd: b.usd,
        window_tokens: b.usage.total().saturating_sub(base_tokens),
        window_usd: (b.usd - base_usd).max(0.0),
        max_tokens: caps.max_tokens,
        max_usd: caps.max_usd,
        host_max_tokens: caps.host_max_tokens,
        host_max_usd: caps.host_max_usd,
        wall_secs: b.wall_secs,
        max_wall_secs: caps.max_wall_secs,
        families,
    }
}

fn sleeps(view: &LedgerView, window: &Window) -> Vec<Span> {
    let mut out: Vec<Span> = view
        .commits
        .iter()
        .rev()
        .flat_map(|c| c.events.iter().filter_map(|l| parse_sleep(l)))
        .filter(|(_, to)| *to >= window.since)
        .map(|(from, to)| span(from, to))
        .collect();
    out.dedup();
    out
}

/// Stretches between consecutive commits of the window longer than [`GAP_SECS`] that no
/// recorded sleep overlaps.
fn gaps(view: &LedgerView, sleeps: &[Span]) -> Vec<Span> {
    let times: Vec<Timestamp> = view.commits.iter().rev().map(|c| c.time).collect();
    times
        .windows(2)
        .filter(|w| w[1].as_second() - w[0].as_second() > GAP_SECS)
        .filter(|w| !sleeps.iter().any(|s| s.from < w[1] && s.to > w[0]))
        .map(|w| span(w[0], w[1]))
        .collect()
}

fn queued(state: &crate::engine::state::State) -> Vec<Queued> {
    state
        .stages
        .iter()
        .filter(|s| matches!(s.status, Status::Queued | Status::Retry { .. }))
        .map(|s| Queued {
            id: s.id.to_string(),
            title: s.title.clone(),
            status: s.status.name().into(),
            waits_on: s
                .depends_on
                .iter()
                .filter(|d| !matches!(state.stage(d).map(|x| &x.status), Some(Status::Done { .. })))
                .map(ToString::to_string)
                .collect(),
        })
        .collect()
}
