//! `state/budget.json` as types, and the one pre-dispatch check: when
//! `spent + reserved + estimate > cap`, do not dispatch. Reservations are the timeouts of agent jobs in flight, so
//! parallel lanes cannot all pass the same check. Idle ticks spend nothing.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::agent::Usage;
use crate::engine::state::{HaltReason, State, Status};
use crate::ids::StageId;

pub const BUDGET_VERSION: u32 = 1;

/// The whole of `state/budget.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    pub version: u32,
    /// Equal to the `seq` of the state it belongs to.
    pub seq: u64,
    /// Agent wall time (workers and verifiers), measured by the job wrappers' monotonic
    /// clocks, so a laptop's sleep is not counted.
    pub wall_secs: u64,
    pub attempts: u64,
    pub usage: Usage,
    /// Dollars: the CLI's own figure when it reports one, else the pricing table's.
    #[serde(default)]
    pub usd: f64,
    pub stages: BTreeMap<StageId, StageSpend>,
    /// Spend by model family (so one family's usage is never counted as zero).
    #[serde(default)]
    pub families: BTreeMap<String, FamilySpend>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FamilySpend {
    pub runs: u64,
    pub usage: Usage,
    pub usd: f64,
}

/// What one finished agent run cost.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Charge {
    pub wall_secs: u64,
    pub usage: Usage,
    pub usd: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StageSpend {
    pub wall_secs: u64,
    pub attempts: u64,
    pub usage: Usage,
    #[serde(default)]
    pub usd: f64,
}

impl Budget {
    #[must_use]
    pub fn new() -> Self {
        Self {
            version: BUDGET_VERSION,
            seq: 0,
            wall_secs: 0,
            attempts: 0,
            usage: Usage::default(),
            usd: 0.0,
            stages: BTreeMap::new(),
            families: BTreeMap::new(),
        }
    }

    /// Records an agent job's wall time and usage against the repo and the stage.
    pub fn charge(&mut self, stage: &StageId, family: &str, c: Charge) {
        let s = self.stages.entry(stage.clone()).or_default();
        s.wall_secs += c.wall_secs;
        add(&mut s.usage, c.usage);
        s.usd += c.usd;
        let f = self.families.entry(family.to_owned()).or_default();
        f.runs += 1;
        add(&mut f.usage, c.usage);
        f.usd += c.usd;
        self.wall_secs += c.wall_secs;
        add(&mut self.usage, c.usage);
        self.usd += c.usd;
    }

    #[must_use]
    pub fn stage_spend(&self, stage: &StageId) -> StageSpend {
        self.stages.get(stage).cloned().unwrap_or_default()
    }

    /// Counts a dispatched attempt.
    pub fn count_attempt(&mut self, stage: &StageId) {
        self.attempts += 1;
        self.stages.entry(stage.clone()).or_default().attempts += 1;
    }

    #[must_use]
    pub fn stage_wall_secs(&self, stage: &StageId) -> u64 {
        self.stages.get(stage).map_or(0, |s| s.wall_secs)
    }
}

impl Default for Budget {
    fn default() -> Self {
        Self::new()
    }
}

fn add(a: &mut Usage, b: Usage) {
    a.input += b.input;
    a.output += b.output;
    a.cache_read += b.cache_read;
    a.cache_write += b.cache_write;
}

/// Agent wall time one status reserves: its agent job's whole timeout, until it is charged.
#[must_use]
pub fn reservation(status: &Status) -> u64 {
    match status {
        // The whole timeout stays reserved until the job is charged: time a running job has
        // already spent is counted nowhere else.
        Status::Working {
            since, deadline, ..
        }
        | Status::Verifying {
            since, deadline, ..
        } => u64::try_from(deadline.as_second() - since.as_second()).unwrap_or(0),
        Status::Queued
        | Status::Checking { .. }
        | Status::Integrating { .. }
        | Status::Retry { .. }
        | Status::Paused { .. }
        | Status::Done { .. }
        | Status::Escalated { .. }
        | Status::Cancelled { .. } => 0,
    }
}

/// Agent wall time one stage reserves: its status's, or each running panel member's whole
/// timeout.
#[must_use]
pub fn stage_reservation(stage: &crate::engine::state::Stage) -> u64 {
    match stage.panel_round() {
        Some(round) => round
            .running()
            .map(|(_, _, since, deadline)| {
                u64::try_from(deadline.as_second() - since.as_second()).unwrap_or(0)
            })
            .sum(),
        None => reservation(&stage.status),
    }
}

/// Agent wall time reserved by all jobs in flight.
#[must_use]
pub fn reserved_secs(state: &State) -> u64 {
    state.stages.iter().map(stage_reservation).sum()
}

/// Money caps and what other repositories on this host have spent.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MoneyCheck {
    pub caps: crate::config::Money,
    /// Tokens and USD spent by the other repositories of this host.
    pub host_others: (u64, f64),
    /// Agent jobs in flight (each reserves one estimate).
    pub jobs_in_flight: u64,
}

/// Dollars as whole micro-dollars, for halt reasons (which must be `Ord`).
#[must_use]
pub fn micros(usd: f64) -> u64 {
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "clamped to >= 0, far below u64::MAX"
    )]
    let m = (usd.max(0.0) * 1_000_000.0).round() as u64;
    m
}

/// The pre-dispatch money check for one more agent job: tokens and USD, repo and host, each
/// `spent + reserved + estimate > cap`.
///
/// # Errors
/// The halt reason naming the cap that would be passed.
pub fn money_room(budget: &Budget, m: &MoneyCheck) -> Result<(), HaltReason> {
    let c = &m.caps;
    let spent_t = budget.usage.total();
    let reserved_t = m.jobs_in_flight * c.estimate_tokens;
    let reserved_u = to_f64(m.jobs_in_flight) * c.estimate_usd;
    if let Some(cap) = c.max_tokens
        && spent_t + reserved_t + c.estimate_tokens > cap
    {
        return Err(HaltReason::Tokens {
            spent: spent_t,
            reserved: reserved_t,
            estimate: c.estimate_tokens,
            cap,
            host: false,
        });
    }
    if let Some(cap) = c.max_usd
        && budget.usd + reserved_u + c.estimate_usd > cap
    {
        return Err(usd_halt(budget.usd, reserved_u, c.estimate_usd, cap, false));
    }
    if let Some(cap) = c.host_max_tokens {
        let spent = spent_t + m.host_others.0;
        if spent + reserved_t + c.estimate_tokens > cap {
            return Err(HaltReason::Tokens {
                spent,
                reserved: reserved_t,
                estimate: c.estimate_tokens,
                cap,
                host: true,
            });
        }
    }
    if let Some(cap) = c.host_max_usd {
        let spent = budget.usd + m.host_others.1;
        if spent + reserved_u + c.estimate_usd > cap {
            return Err(usd_halt(spent, reserved_u, c.estimate_usd, cap, true));
        }
    }
    Ok(())
}

fn usd_halt(spent: f64, reserved: f64, estimate: f64, cap: f64, host: bool) -> HaltReason {
    HaltReason::Usd {
        spent_micros: micros(spent),
        reserved_micros: micros(reserved),
        estimate_micros: micros(estimate),
        cap_micros: micros(cap),
        host,
    }
}

fn to_f64(n: u64) -> f64 {
    #[expect(clippy::cast_precision_loss, reason = "job counts are tiny")]
    let f = n as f64;
    f
}

/// The pre-dispatch check for a job that may run `estimate_secs` of agent wall time.
///
/// # Errors
/// The halt reason naming the cap that would be passed.
pub fn room_for(
    budget: &Budget,
    reserved_secs: u64,
    cap_secs: Option<u64>,
    estimate_secs: u64,
) -> Result<(), HaltReason> {
    let Some(cap_secs) = cap_secs else {
        return Ok(());
    };
    if budget.wall_secs + reserved_secs + estimate_secs > cap_secs {
        return Err(HaltReason::WallTime {
            spent_secs: budget.wall_secs,
            reserved_secs,
            estimate_secs,
            cap_secs,
        });
    }
    Ok(())
}
