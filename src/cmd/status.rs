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
use crate::ids::stage_branch;
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
    /// Families paused by a usage limit: `{family: {until, reported}}`.
    pub paused: serde_json::Value,
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
    pub tokens: u64,
    pub usd: f64,
    /// Every attempt: its result, typed failure, and each agent run's usage and cost.
    pub attempts: Vec<AttemptJson>,
}

#[derive(Debug, Serialize)]
pub struct AttemptJson {
    pub attempt: u32,
    /// `passed`, `failed`, `cancelled` or `in_flight`.
    pub result: String,
    /// The typed reason it failed (as in state.yaml), when it did.
    pub failure: Option<serde_json::Value>,
    pub reason: Option<String>,
    pub runs: Vec<RunJson>,
}

#[derive(Debug, Serialize)]
pub struct RunJson {
    pub role: String,
    pub agent: String,
    pub model: Option<String>,
    pub usage: Option<crate::agent::Usage>,
    pub usd: f64,
    pub cost_reported_by_cli: bool,
    pub outcome: String,
    pub failure: Option<crate::agent::failure::AgentFailure>,
}

#[derive(Debug, Serialize)]
pub struct BudgetJson {
    pub tokens: u64,
    pub usd: f64,
    pub max_tokens: Option<u64>,
    pub max_usd: Option<f64>,
    pub families: std::collections::BTreeMap<String, crate::engine::budget::FamilySpend>,
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
    let limits = config.limits();
    let stages: Vec<StageJson> = state
        .stages
        .iter()
        .map(|s| stage_json(&paths, s, &seen, &budget, &limits))
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
        paused: serde_json::to_value(&state.paused).unwrap_or_default(),
        budget: BudgetJson {
            tokens: budget.usage.total(),
            usd: budget.usd,
            max_tokens: config.money.max_tokens,
            max_usd: config.money.max_usd,
            families: budget.families.clone(),
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
    paths: &crate::paths::Paths,
    s: &Stage,
    seen: &crate::engine::observe::Observations,
    budget: &crate::engine::budget::Budget,
    limits: &crate::engine::Limits,
) -> StageJson {
    let spend = budget.stage_spend(&s.id);
    let reason = match &s.status {
        Status::Escalated { reason, .. } => Some(reason.to_string()),
        Status::Retry { reason, .. } => Some(reason.to_string()),
        Status::Paused { family, until, .. } => {
            Some(format!("{family} usage limit; resumes at {until}"))
        }
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
            Some(JobSeen::Forged { .. }) => "forged",
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
        wall_secs: spend.wall_secs,
        tokens: spend.usage.total(),
        usd: spend.usd,
        attempts: attempts_json(paths, s, limits),
    }
}

fn attempts_json(
    paths: &crate::paths::Paths,
    s: &Stage,
    limits: &crate::engine::Limits,
) -> Vec<AttemptJson> {
    use crate::engine::state::AttemptResult;
    (1..=s.attempt)
        .map(|n| {
            let rec = s.history.iter().rev().find(|h| h.attempt == n);
            let (result, failure, reason) = match rec.map(|r| &r.result) {
                Some(AttemptResult::Passed { .. }) => ("passed", None, None),
                Some(AttemptResult::Failed { reason }) => (
                    "failed",
                    serde_json::to_value(reason).ok(),
                    Some(reason.to_string()),
                ),
                Some(AttemptResult::Cancelled) => ("cancelled", None, None),
                None if s.status.in_flight() && s.attempt == n => ("in_flight", None, None),
                None => ("passed", None, None),
            };
            let runs = [crate::ids::Role::Worker, crate::ids::Role::Verifier]
                .into_iter()
                .filter_map(|role| run_json(paths, s, n, role, limits))
                .collect();
            AttemptJson {
                attempt: n,
                result: result.into(),
                failure,
                reason,
                runs,
            }
        })
        .collect()
}

fn run_json(
    paths: &crate::paths::Paths,
    s: &Stage,
    attempt: u32,
    role: crate::ids::Role,
    limits: &crate::engine::Limits,
) -> Option<RunJson> {
    use crate::engine::observe::OutcomeResult;
    let o = crate::observe::read_outcome(&paths.outcome_file(&JobKey {
        stage: s.id.clone(),
        attempt,
        role,
    }))?;
    let run = match o.result {
        OutcomeResult::Worker { run, .. } | OutcomeResult::Verifier { run, .. } => run,
        OutcomeResult::Acceptance { .. } | OutcomeResult::Integration { .. } => return None,
    };
    let charge = crate::engine::step::charge_of(&run, o.wall_secs, &run.agent, limits);
    let outcome = match (&run.failure, run.timed_out) {
        (_, true) => "timeout".to_owned(),
        (Some(f), false) => serde_json::to_value(f)
            .ok()
            .and_then(|v| v["kind"].as_str().map(str::to_owned))
            .unwrap_or_default(),
        (None, false) => "ok".to_owned(),
    };
    Some(RunJson {
        role: role.to_string(),
        agent: run.agent.clone(),
        model: run.model.clone(),
        usage: run.usage,
        usd: charge.usd,
        cost_reported_by_cli: run.cost_usd.is_some(),
        outcome,
        failure: run.failure.clone(),
    })
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
    let money_cap = match (s.budget.max_tokens, s.budget.max_usd) {
        (None, None) => "no cap".to_owned(),
        (t, u) => {
            [
                t.map(|t| format!("{t} tokens")),
                u.map(|u| format!("${u:.2}")),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(", ")
                + " cap"
        }
    };
    println!(
        "       {} tokens, ${:.2} ({money_cap})",
        s.budget.tokens, s.budget.usd
    );
    for (family, f) in &s.budget.families {
        println!(
            "       {family}: {} run(s), {} tokens, ${:.2}",
            f.runs,
            f.usage.total(),
            f.usd
        );
    }
    if let Some(paused) = s.paused.as_object() {
        for (family, p) in paused {
            println!(
                "PAUSED: {family} (usage limit) until {}",
                p["until"].as_str().unwrap_or("?")
            );
        }
    }
    for st in s.stages.iter().filter(|x| x.status == "escalated") {
        if st
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("could not authenticate"))
        {
            println!(
                "  hint: `{}`: fix the auth route of its agents in nightshift.yaml and check with `nightshift doctor`; then `nightshift requeue {}`",
                st.id, st.id
            );
            continue;
        }
        println!(
            "  hint: evidence for `{}` is in state/handoffs/{}/; retry with `nightshift requeue {}`",
            st.id, st.id, st.id
        );
    }
}
