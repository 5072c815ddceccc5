//! `nightshift tick`: one step of the night. Silent when idle; otherwise one line per event it
//! recorded (`stage: a1 dispatched to w`), read back from the ledger commits it made, so what
//! it prints is what the ledger says. `--quiet` prints nothing; `--json` prints
//! [`TickOutput`].

use std::path::Path;

use schemars::JsonSchema;
use serde::Serialize;

use crate::error::NsResult;
use crate::ledger_message::{EventView, SpentView};
use crate::paths::Paths;
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
    // The ledger's sequence number as last cached (`state/.ledger-seq`), else the state
    // file's: no git read and no parse of the whole state before the tick takes its lock, so
    // an idle tick stays a look.
    let before = if args.quiet {
        None
    } else {
        crate::store::cached_ledger_seq(&paths)
            .or_else(|| crate::store::read_state_file(&paths).ok().map(|s| s.seq))
    };
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
        recorded_since(&paths, before, changes)
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

fn seq_of(message: &str) -> Option<u64> {
    message
        .lines()
        .find_map(|l| l.strip_prefix("Nightshift-Seq: "))
        .and_then(|s| s.trim().parse().ok())
}

/// The events of the ledger commits after `before` (oldest first; without `before`, the
/// newest `changes` commits), and the spend after the newest. `changes` bounds the read: a
/// tick commits once per change, plus at most one recovery commit per round.
fn recorded_since(
    paths: &Paths,
    before: Option<u64>,
    changes: usize,
) -> (Vec<EventView>, Option<SpentView>) {
    let Ok(git) = crate::store::open_git(paths) else {
        return (Vec::new(), None);
    };
    let Ok(entries) = crate::ledger::log(&git, Some(changes * 2 + 2)) else {
        return (Vec::new(), None);
    };
    let newer: Vec<_> = match before {
        Some(before) => entries
            .iter()
            .filter(|e| seq_of(&e.message).is_some_and(|s| s > before))
            .collect(),
        None => entries.iter().take(changes).collect(),
    };
    let spent = newer
        .first()
        .and_then(|e| crate::ledger_message::spent(&e.message));
    let events = newer
        .iter()
        .rev()
        .flat_map(|e| crate::ledger_message::structured_events(&e.message))
        .collect();
    (events, spent)
}
