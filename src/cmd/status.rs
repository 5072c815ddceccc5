//! `nightshift status`: every stage, what it waits on, attempts, branch, why it failed, the
//! halt (if any) and the spend. `--json` is a versioned interface (`version: 1`): scripts
//! rely on `stages[].{id,status,attempt,branch,reason}`, `halted` and `in_flight`.

use std::path::Path;

use serde::Serialize;

use crate::config::{Config, format_duration};
use crate::engine::observe::JobSeen;
use crate::engine::state::{Stage, Status};
use crate::error::NsResult;
use crate::ids::JobKey;
use crate::paths::stage_branch;
use crate::store;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print one JSON object (see the README for its fields).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
pub struct StatusJson {
    pub version: u32,
    pub seq: u64,
    pub halted: Option<serde_json::Value>,
    pub in_flight: usize,
    pub lanes: u32,
    pub stages: Vec<StageJson>,
    pub budget: BudgetJson,
}

#[derive(Debug, Serialize)]
pub struct StageJson {
    pub id: String,
    pub title: String,
    pub status: String,
    pub attempt: u32,
    pub attempts_used: u32,
    pub max_attempts: u32,
    pub branch: String,
    pub depends_on: Vec<String>,
    pub worker: String,
    pub verifier: String,
    /// Why it is escalated, retrying or halted-waiting; null otherwise.
    pub reason: Option<String>,
    /// For a stage waiting on a job: `running`, `starting`, `finished` or `vanished`.
    pub job: Option<String>,
    pub commit: Option<String>,
    pub wall_secs: u64,
}

#[derive(Debug, Serialize)]
pub struct BudgetJson {
    pub wall_secs: u64,
    pub max_wall_secs: Option<u64>,
    pub attempts: u64,
    pub consecutive_failures: u32,
    pub max_consecutive_failures: u32,
}

/// # Errors
/// When the repo is not set up or a state file is invalid.
pub fn run(repo: &Path, args: &Args) -> NsResult<i32> {
    let paths = super::initialised(repo)?;
    let config = Config::load(&paths.config())?;
    let state = store::read_state_file(&paths)?;
    let budget = store::read_budget_file(&paths)?;
    let seen = crate::observe::observe(&paths, &state);
    let stages: Vec<StageJson> = state
        .stages
        .iter()
        .map(|s| stage_json(s, &seen, &budget))
        .collect();
    let out = StatusJson {
        version: 1,
        seq: state.seq,
        halted: state.halted.as_ref().map(
            |h| serde_json::json!({ "reason": h.reason.to_string(), "cap": h.reason, "at": h.at }),
        ),
        in_flight: state.in_flight(),
        lanes: config.lanes,
        stages,
        budget: BudgetJson {
            wall_secs: budget.wall_secs,
            max_wall_secs: config.max_wall_secs,
            attempts: budget.attempts,
            consecutive_failures: state.consecutive_failures,
            max_consecutive_failures: config.max_consecutive_failures,
        },
    };
    if args.json {
        super::print_json(&out)?;
    } else {
        print_table(&out);
    }
    Ok(0)
}

fn stage_json(
    s: &Stage,
    seen: &crate::engine::observe::Observations,
    budget: &crate::engine::budget::Budget,
) -> StageJson {
    let reason = match &s.status {
        Status::Escalated { reason, .. } => Some(reason.to_string()),
        Status::Retry { reason, .. } => Some(reason.to_string()),
        _ => None,
    };
    let job = s.status.waiting_on().map(|(role, attempt)| {
        match seen.jobs.get(&JobKey {
            stage: s.id.clone(),
            attempt,
            role,
        }) {
            Some(JobSeen::Running { .. }) => "running",
            Some(JobSeen::Finished(_)) => "finished",
            Some(JobSeen::Vanished) => "vanished",
            Some(JobSeen::Absent) | None => "starting",
        }
        .to_owned()
    });
    let commit = match &s.status {
        Status::Done { commit, .. } => Some(commit.clone()),
        _ => None,
    };
    StageJson {
        id: s.id.to_string(),
        title: s.title.clone(),
        status: s.status.name().to_owned(),
        attempt: s.attempt,
        attempts_used: s.attempts_used(),
        max_attempts: s.max_attempts,
        branch: stage_branch(&s.id),
        depends_on: s.depends_on.iter().map(ToString::to_string).collect(),
        worker: s.worker.clone(),
        verifier: s.verifier.clone(),
        reason,
        job,
        commit,
        wall_secs: budget.stage_wall_secs(&s.id),
    }
}

fn print_table(s: &StatusJson) {
    println!(
        "nightshift: {} stage(s), {} of {} lane(s) in flight, ledger #{}",
        s.stages.len(),
        s.in_flight,
        s.lanes,
        s.seq
    );
    if let Some(h) = &s.halted {
        println!(
            "HALTED: {}",
            h.get("reason").and_then(|r| r.as_str()).unwrap_or("?")
        );
        println!("  hint: raise the cap in nightshift.yaml if needed, then `nightshift resume`");
    }
    if s.stages.is_empty() {
        println!("no stages yet: `nightshift add-stage CARD`");
        return;
    }
    let w = s
        .stages
        .iter()
        .map(|x| x.id.len())
        .max()
        .unwrap_or(5)
        .max(5);
    println!(
        "{:<w$}  {:<11}  {:<7}  {:<8}  NOTE",
        "STAGE", "STATUS", "ATTEMPT", "TIME"
    );
    for st in &s.stages {
        let note = match (&st.reason, &st.job, &st.commit) {
            (Some(r), _, _) => r.clone(),
            (None, Some(j), _) => format!("job {j}"),
            (None, None, Some(c)) => format!("{} @ {}", st.branch, c.get(..10).unwrap_or(c)),
            (None, None, None) if !st.depends_on.is_empty() && st.status == "queued" => {
                format!("after {}", st.depends_on.join(", "))
            }
            _ => String::new(),
        };
        let attempt = format!("{}/{}", st.attempts_used, st.max_attempts);
        println!(
            "{:<w$}  {:<11}  {:<7}  {:<8}  {note}",
            st.id,
            st.status,
            attempt,
            format_duration(st.wall_secs)
        );
    }
    let cap = s.budget.max_wall_secs.map_or_else(
        || "no cap".into(),
        |c| format!("cap {}", format_duration(c)),
    );
    println!(
        "spent: {} agent wall time ({cap}), {} attempt(s)",
        format_duration(s.budget.wall_secs),
        s.budget.attempts
    );
    for st in s.stages.iter().filter(|x| x.status == "escalated") {
        println!(
            "  hint: evidence for `{}` is in state/handoffs/{}/; retry with `nightshift requeue {}`",
            st.id, st.id, st.id
        );
    }
}
