//! `nightshift __job` (hidden): the detached wrapper of one job. See [`crate::job`].

use std::path::PathBuf;

use crate::error::{NsError, NsResult};
use crate::ids::{JobKey, Role, StageId};
use crate::job::{JobArgs, run_job};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long)]
    pub repo: PathBuf,
    #[arg(long)]
    pub stage: String,
    #[arg(long)]
    pub attempt: u32,
    #[arg(long)]
    pub role: String,
    #[arg(long)]
    pub timeout_secs: u64,
    #[arg(long)]
    pub start_point: Option<String>,
    /// A panel member's agent (a verifier job of a panel).
    #[arg(long, requires = "run")]
    pub member: Option<String>,
    /// The member's run within the attempt.
    #[arg(long)]
    pub run: Option<u32>,
}

/// # Errors
/// When the arguments are malformed or the job cannot register.
pub fn run(a: &Args) -> NsResult<i32> {
    let stage = StageId::new(&a.stage).map_err(|e| NsError::failure(e.to_string()))?;
    let role = Role::parse(&a.role)
        .ok_or_else(|| NsError::failure(format!("unknown role `{}`", a.role)))?;
    let member = match (&a.member, a.run) {
        (Some(name), Some(run)) => {
            StageId::new(name).map_err(|e| NsError::failure(e.to_string()))?;
            Some(crate::ids::Member {
                name: name.clone(),
                run,
            })
        }
        _ => None,
    };
    let repo = std::fs::canonicalize(&a.repo)
        .map_err(|e| NsError::failure("cannot open the repo").cause(e.to_string()))?;
    let args = JobArgs {
        repo,
        job: JobKey {
            stage,
            attempt: a.attempt,
            role,
            member,
        },
        timeout_secs: a.timeout_secs,
        start_point: a.start_point.clone(),
    };
    run_job(&args, crate::tick::chained)
}
