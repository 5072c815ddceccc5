//! `state/budget.json` as types, and the one pre-dispatch check: when
//! `spent + reserved + estimate > cap`, do not dispatch. Reservations are the timeouts of agent jobs in flight, so
//! parallel lanes cannot all pass the same check. Idle ticks spend nothing.

use std::collections::BTreeMap;

use jiff::Timestamp;
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
    pub stages: BTreeMap<StageId, StageSpend>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StageSpend {
    pub wall_secs: u64,
    pub attempts: u64,
    pub usage: Usage,
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
            stages: BTreeMap::new(),
        }
    }

    /// Records an agent job's wall time and usage against the repo and the stage.
    pub fn charge(&mut self, stage: &StageId, wall_secs: u64, usage: Option<Usage>) {
        let u = usage.unwrap_or_default();
        let s = self.stages.entry(stage.clone()).or_default();
        s.wall_secs += wall_secs;
        add(&mut s.usage, u);
        self.wall_secs += wall_secs;
        add(&mut self.usage, u);
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

/// Agent wall time one status reserves: the time left to its agent job's deadline.
#[must_use]
pub fn reservation(status: &Status, now: Timestamp) -> u64 {
    match status {
        Status::Working { deadline, .. } | Status::Verifying { deadline, .. } => {
            u64::try_from(deadline.as_second() - now.as_second()).unwrap_or(0)
        }
        _ => 0,
    }
}

/// Agent wall time reserved by all jobs in flight.
#[must_use]
pub fn reserved_secs(state: &State, now: Timestamp) -> u64 {
    state
        .stages
        .iter()
        .map(|s| reservation(&s.status, now))
        .sum()
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
