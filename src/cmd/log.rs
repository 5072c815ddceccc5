//! `nightshift log`: the ledger history, newest first, one entry per state change with its
//! events. The text form prints the spend so far once, at the top, and after each entry only
//! what that change added; `--json` prints [`LogOutput`] (events and spend structured).

use std::path::Path;

use schemars::JsonSchema;
use serde::Serialize;

use crate::error::{NsError, NsResult};
use crate::ledger_message::{EventView, SpentView, spent, structured_events};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Show at most this many entries.
    #[arg(short = 'n', long)]
    pub limit: Option<usize>,
    /// Print JSON (`schemas/log-output.schema.json`): `{version, entries: [{commit, time,
    /// seq, events: [{stage, attempt, kind, text}], spent: {wall_secs, tokens, usd, …}}]}`.
    #[arg(long)]
    pub json: bool,
}

/// What `log --json` prints. Version 2: `events` are objects and `spent` numbers (version 1
/// had prose strings and a `k=v` string).
#[derive(Debug, Serialize, JsonSchema)]
pub struct LogOutput {
    pub version: u32,
    /// Newest first.
    pub entries: Vec<LogEntry>,
}

/// One ledger commit.
#[derive(Debug, Serialize, JsonSchema)]
pub struct LogEntry {
    pub commit: String,
    pub time: String,
    pub seq: Option<u64>,
    pub events: Vec<EventView>,
    /// Spend so far at this commit.
    pub spent: Option<SpentView>,
}

/// # Errors
/// When the repo is not set up or git fails.
pub fn run(repo: &Path, args: &Args) -> NsResult<i32> {
    let paths = super::initialised(repo)?;
    let git = crate::store::open_git(&paths)?;
    let entries = crate::ledger::log(&git, args.limit)
        .map_err(|e| NsError::from(e).within("cannot read the ledger"))?;
    let rows: Vec<LogEntry> = entries
        .iter()
        .map(|e| LogEntry {
            commit: e.commit.clone(),
            time: jiff::Timestamp::from_second(e.time)
                .map(|t| t.to_string())
                .unwrap_or_default(),
            seq: e
                .message
                .lines()
                .find_map(|l| l.strip_prefix("Nightshift-Seq: "))
                .and_then(|s| s.trim().parse::<u64>().ok()),
            events: structured_events(&e.message),
            spent: spent(&e.message),
        })
        .collect();
    if args.json {
        return super::print_json(&LogOutput {
            version: 2,
            entries: rows,
        })
        .map(|()| 0);
    }
    if let Some(s) = rows.first().and_then(|r| r.spent.as_ref()) {
        println!(
            "spent so far: {} agent wall time, {} tokens, ${:.2}",
            crate::config::format_duration(s.wall_secs),
            s.tokens,
            s.usd
        );
    }
    for (i, r) in rows.iter().enumerate() {
        let older = rows.get(i + 1).and_then(|o| o.spent.as_ref());
        let added = r
            .spent
            .as_ref()
            .and_then(|s| added(s, older))
            .map(|a| format!("  ({a})"))
            .unwrap_or_default();
        println!(
            "#{} {} {}{added}",
            r.seq.map_or_else(|| "?".to_owned(), |s| s.to_string()),
            r.time,
            r.commit.get(..10).unwrap_or(&r.commit),
        );
        for ev in &r.events {
            println!("    {}: {}", ev.stage.as_deref().unwrap_or("repo"), ev.text);
        }
    }
    Ok(0)
}

/// What one change added to the spend, `+5s, +1200 tokens, +$0.01`; None when nothing.
fn added(now: &SpentView, older: Option<&SpentView>) -> Option<String> {
    let zero = SpentView::default();
    let o = older.unwrap_or(&zero);
    let mut parts = Vec::new();
    if now.wall_secs > o.wall_secs {
        parts.push(format!(
            "+{}",
            crate::config::format_duration(now.wall_secs - o.wall_secs)
        ));
    }
    if now.tokens > o.tokens {
        parts.push(format!("+{} tokens", now.tokens - o.tokens));
    }
    if now.usd > o.usd + 0.000_05 {
        parts.push(format!("+${:.4}", now.usd - o.usd));
    }
    (!parts.is_empty()).then(|| parts.join(", "))
}
