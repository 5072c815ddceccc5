//! `nightshift tick`: one step of the night. Quiet when idle, one line when busy.

use std::path::Path;

use crate::error::NsResult;
use crate::tick::{self, TickReport};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print what the tick did as JSON.
    #[arg(long)]
    pub json: bool,
    /// Tick every subscribed repository (`nightshift repos`) instead of one, in round-robin
    /// order, each in its own process; one that fails or is slow never stops the others.
    #[arg(long)]
    pub all: bool,
    /// With --all: how long one repository may take before the pass moves on (it is left to
    /// finish on its own).
    #[arg(long, requires = "all", default_value = "60s", value_parser = crate::config::parse_duration, value_name = "DURATION")]
    pub slice: u64,
}

/// # Errors
/// See [`tick::run`].
pub fn run(repo: &Path, args: &Args) -> NsResult<i32> {
    if args.all {
        return super::all::tick_all(std::time::Duration::from_secs(args.slice), args.json);
    }
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
