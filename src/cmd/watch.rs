//! `nightshift watch STAGE`: blocks until the stage's current attempt ends (as the ledger
//! records it: a tick judged it), for scripts. Exit 0 when it passed, 1 when it failed (or
//! the stage escalated or was cancelled), 5 when `--timeout` expired. It never ticks by
//! itself: the scheduler or event chaining moves the stage.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::engine::state::{AttemptResult, Stage, Status};
use crate::error::{EXIT_FAILURE, EXIT_OK, EXIT_TIMEOUT, NsError, NsResult};
use crate::ids::StageId;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The stage.
    pub stage: String,
    /// Give up after this long (e.g. `30s`, `30m`; default: wait for ever).
    #[arg(long, value_name = "D")]
    pub timeout: Option<String>,
}

/// How the watched attempt ended, if it has.
fn ended(stage: &Stage, attempt: u32) -> Option<(bool, String)> {
    if let Some(h) = stage.history.iter().rev().find(|h| h.attempt == attempt) {
        return Some(match &h.result {
            AttemptResult::Passed { .. } => (true, format!("a{attempt} passed")),
            AttemptResult::Failed { reason } => (false, format!("a{attempt} failed: {reason}")),
            AttemptResult::Cancelled => (false, format!("a{attempt} was cancelled")),
        });
    }
    match &stage.status {
        Status::Done { .. } => Some((true, "done".into())),
        Status::Escalated { reason, .. } => Some((false, format!("escalated: {reason}"))),
        Status::Cancelled { .. } => Some((false, "cancelled".into())),
        _ => None,
    }
}

/// The attempt to watch: the one in flight, else the next one to be dispatched.
fn target(stage: &Stage) -> u32 {
    match stage.status {
        Status::Working { .. }
        | Status::Checking { .. }
        | Status::Verifying { .. }
        | Status::Integrating { .. }
        | Status::Done { .. }
        | Status::Escalated { .. }
        | Status::Cancelled { .. } => stage.attempt,
        Status::Queued | Status::Retry { .. } | Status::Paused { .. } => stage.attempt + 1,
    }
}

/// # Errors
/// When the stage is unknown, the timeout is malformed, or the state cannot be read.
pub fn run(repo: &Path, args: &Args) -> NsResult<i32> {
    let paths = super::initialised(repo)?;
    let id = StageId::new(&args.stage).map_err(|e| NsError::failure(e.to_string()))?;
    let limit = match &args.timeout {
        Some(t) => Some(Duration::from_secs(
            crate::config::parse_duration(t)
                .map_err(|e| NsError::new(crate::error::EXIT_USAGE, format!("--timeout: {e}")))?,
        )),
        None => None,
    };
    let start = Instant::now();
    let mut attempt = None;
    loop {
        // A state file caught mid-rename is read again on the next round.
        if let Ok(state) = crate::store::read_state_file(&paths) {
            let stage = state.stage(&id).ok_or_else(|| {
                NsError::failure(format!("no stage `{id}`"))
                    .hint("`nightshift status` lists the stages")
            })?;
            let a = *attempt.get_or_insert_with(|| target(stage));
            if let Some((passed, what)) = ended(stage, a) {
                println!("{id}: {what}");
                return Ok(if passed { EXIT_OK } else { EXIT_FAILURE });
            }
        }
        if limit.is_some_and(|l| start.elapsed() >= l) {
            eprintln!(
                "nightshift: `{id}` did not finish within {}",
                args.timeout.as_deref().unwrap_or_default()
            );
            return Ok(EXIT_TIMEOUT);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
