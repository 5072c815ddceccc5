//! `nightshift tick`: one step of the night. Quiet when idle, one line when busy.

use std::path::Path;

use crate::error::NsResult;
use crate::tick::{self, TickReport};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print what the tick did as JSON.
    #[arg(long)]
    pub json: bool,
}

/// # Errors
/// See [`tick::run`].
pub fn run(repo: &Path, args: &Args) -> NsResult<i32> {
    let paths = super::initialised(repo)?;
    let report = tick::run(&paths)?;
    if args.json {
        let (result, changes) = match report {
            TickReport::Busy => ("busy", 0),
            TickReport::Idle => ("idle", 0),
            TickReport::Advanced(n) => ("advanced", n),
        };
        super::print_json(
            &serde_json::json!({ "version": 1, "result": result, "changes": changes }),
        )?;
    } else if report == TickReport::Busy {
        println!("nightshift: another tick is running; nothing to do");
    }
    Ok(0)
}
