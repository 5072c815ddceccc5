//! `nightshift log`: the ledger history, newest first, one entry per state change with its
//! events.

use std::path::Path;

use crate::error::{NsError, NsResult};
use crate::ledger_message::events;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Show at most this many entries.
    #[arg(short = 'n', long)]
    pub limit: Option<usize>,
    /// Print JSON: `{version, entries: [{commit, time, seq, events}]}`.
    #[arg(long)]
    pub json: bool,
}

/// # Errors
/// When the repo is not set up or git fails.
pub fn run(repo: &Path, args: &Args) -> NsResult<i32> {
    let paths = super::initialised(repo)?;
    let git = crate::store::open_git(&paths)?;
    let entries = crate::ledger::log(&git, args.limit)
        .map_err(|e| NsError::from(e).within("cannot read the ledger"))?;
    let rows: Vec<serde_json::Value> = entries
        .iter()
        .map(|e| {
            let seq = e.message.lines().find_map(|l| l.strip_prefix("Nightshift-Seq: ")).and_then(|s| s.trim().parse::<u64>().ok());
            let time = jiff::Timestamp::from_second(e.time).map(|t| t.to_string()).unwrap_or_default();
                        let spent = e.message.lines().find_map(|l| l.strip_prefix("Nightshift-Spent: ")).map(str::to_owned);
            serde_json::json!({ "commit": e.commit, "time": time, "seq": seq, "events": events(&e.message), "spent": spent })
        })
        .collect();
    if args.json {
        return super::print_json(&serde_json::json!({ "version": 1, "entries": rows }))
            .map(|()| 0);
    }
    for (i, r) in rows.iter().enumerate() {
        let commit = r["commit"].as_str().unwrap_or_default();
        println!(
            "#{} {} {}",
            r["seq"],
            r["time"].as_str().unwrap_or_default(),
            commit.get(..10).unwrap_or(commit)
        );
        // Spend only where it changed (against the older entry below it).
        let older = rows.get(i + 1).map(|o| &o["spent"]);
        if let Some(spent) = r["spent"].as_str().filter(|_| older != Some(&r["spent"])) {
            println!("    (spent so far: {spent})");
        }
        for ev in r["events"].as_array().into_iter().flatten() {
            println!("    {}", ev.as_str().unwrap_or_default());
        }
    }
    Ok(0)
}
