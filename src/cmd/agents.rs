//! `nightshift agents`: every registered attempt — stage, role, agent, pid/pgid, age, last
//! progress, deadline left, log — from [`crate::view::agents`]. Reads only.

use std::path::Path;

use schemars::JsonSchema;
use serde::Serialize;

use crate::config::format_duration;
use crate::error::NsResult;

/// What `agents --json` prints (`schemas/agents-output.schema.json`).
#[derive(Debug, Serialize, JsonSchema)]
pub struct AgentsOutput {
    pub version: u32,
    pub now: jiff::Timestamp,
    pub agents: Vec<crate::view::AgentView>,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print `{version, now, agents: [...]}`.
    #[arg(long)]
    pub json: bool,
}

/// # Errors
/// When the repo is not set up or the state is invalid.
pub fn run(repo: &Path, args: &Args) -> NsResult<i32> {
    let paths = super::initialised(repo)?;
    let state = crate::store::read_state_file(&paths)?;
    let now = crate::now::now()?;
    let list = crate::view::agents(&paths, &state, &crate::awake::sleeps(), now);
    if args.json {
        super::print_json(&AgentsOutput {
            version: 1,
            now,
            agents: list,
        })?;
        return Ok(0);
    }
    if list.is_empty() {
        println!("no registered attempts");
        return Ok(0);
    }
    println!(
        "{:<24}  {:<10}  {:<10}  {:<13}  {:<8}  {:<10}  {:<12}  LOG",
        "ATTEMPT", "AGENT", "STATE", "PID/PGID", "AGE", "PROGRESS", "DEADLINE"
    );
    for a in &list {
        let progress = a.last_progress.map_or_else(
            || "-".to_owned(),
            |t| {
                format!(
                    "{} ago",
                    format_duration((now.as_second() - t.as_second()).max(0).unsigned_abs())
                )
            },
        );
        let deadline = a.deadline_left_secs.map_or_else(
            || "-".to_owned(),
            |l| {
                if l >= 0 {
                    format!("{} left", format_duration(l.unsigned_abs()))
                } else {
                    format!("{} over", format_duration(l.unsigned_abs()))
                }
            },
        );
        println!(
            "{:<24}  {:<10}  {:<10}  {:<13}  {:<8}  {:<10}  {:<12}  {}",
            format!("{}/a{}/{}", a.stage, a.attempt, a.role),
            a.agent.as_deref().unwrap_or("-"),
            if a.alive { "alive" } else { "not alive" },
            format!("{}/{}", a.pid, a.pgid),
            format_duration(a.age_secs),
            progress,
            deadline,
            a.log
        );
    }
    Ok(0)
}
