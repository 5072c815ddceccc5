//! `nightshift tick`: one step of the night. Silent when idle; otherwise one line per event it
//! recorded (`stage: a1 dispatched to w`), from the messages of the ledger commits it made, so
//! what it prints is what the ledger says. `--quiet` prints nothing; `--json` prints
//! [`TickOutput`].

use std::path::Path;

use schemars::JsonSchema;
use serde::Serialize;

use crate::error::NsResult;
use crate::ledger_message::{EventView, SpentView};
use crate::tick::{self, TickReport};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print what the tick did as JSON (`schemas/tick-output.schema.json`).
    #[arg(long)]
    pub json: bool,
    /// Print nothing on success (errors still go to stderr).
    #[arg(long, short = 'q', conflicts_with = "json")]
    pub quiet: bool,
    /// Tick every subscribed repository (`nightshift repos`) instead of one, in round-robin
    /// order, each in its own process; one that fails or is slow never stops the others.
    #[arg(long)]
    pub all: bool,
    /// With --all: how long one repository may take before the pass moves on (it is left to
    /// finish on its own).
    #[arg(long, requires = "all", default_value = "60s", value_parser = crate::config::parse_duration, value_name = "DURATION")]
    pub slice: u64,
}

/// What `tick --json` prints.
#[derive(Debug, Serialize, JsonSchema)]
pub struct TickOutput {
    pub version: u32,
    /// `idle` (nothing changed), `advanced` or `busy` (another tick held the lock).
    pub result: String,
    /// Ledger commits this tick made.
    pub changes: usize,
    /// Every event those commits record, oldest first.
    pub events: Vec<EventView>,
    /// Spend so far after the tick (null when it changed nothing).
    pub spent: Option<SpentView>,
}

/// # Errors
/// See [`tick::run`].
pub fn run(repo: &Path, args: &Args) -> NsResult<i32> {
    if args.all {
        return super::all::tick_all(std::time::Duration::from_secs(args.slice), args.json);
    }
    let paths = super::initialised(repo)?;
    let report = tick::run(&paths)?;
    let (result, changes) = match report {
        TickReport::Busy => ("busy", 0),
        TickReport::Idle => ("idle", 0),
        TickReport::Advanced(n) => ("advanced", n),
    };
    if args.quiet {
        return Ok(0);
    }
    let (events, spent) = if changes > 0 {
        recorded(&crate::ledger::take_committed())
    } else {
        (Vec::new(), None)
    };
    if args.json {
        super::print_json(&TickOutput {
            version: 1,
            result: result.into(),
            changes,
            events,
            spent,
        })?;
        return Ok(0);
    }
    if report == TickReport::Busy {
        println!("nightshift: another tick is running; nothing to do");
    }
    for e in &events {
        println!("{}: {}", e.stage.as_deref().unwrap_or("repo"), e.text);
    }
    Ok(0)
}

/// The events of the ledger commits this tick made (their messages, oldest first), and the
/// spend after the newest.
fn recorded(messages: &[String]) -> (Vec<EventView>, Option<SpentView>) {
    let spent = messages
        .last()
        .and_then(|m| crate::ledger_message::spent(m));
    let events = messages
        .iter()
        .flat_map(|m| crate::ledger_message::structured_events(m))
        .collect();
    (events, spent)
}
