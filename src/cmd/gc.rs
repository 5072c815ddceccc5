//! `nightshift gc`: removes the workspaces no stage needs any more (done, cancelled or gone;
//! their branches stay), attempt logs and per-attempt CLI state older than `--logs-older-than`,
//! and packs the ledger's loose objects. Under the tick lock.

use std::path::Path;

use crate::error::{NsError, NsResult};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Remove attempt logs and per-attempt CLI state older than this (e.g. `14d`, `36h`).
    #[arg(long, default_value = "14d", value_name = "DURATION")]
    pub logs_older_than: String,
    /// Print what was removed as JSON (schema: `schemas/gc.schema.json`).
    #[arg(long)]
    pub json: bool,
}

/// # Errors
/// When the repository is not set up, the retention is not a duration, or a removal fails.
pub fn run(repo: &Path, args: &Args) -> NsResult<i32> {
    let retention = crate::config::parse_duration(&args.logs_older_than).map_err(|e| {
        NsError::new(
            crate::error::EXIT_USAGE,
            format!("--logs-older-than {}: {e}", args.logs_older_than),
        )
        .hint("give a duration such as `14d`, `36h` or `90m`")
    })?;
    let super::Locked {
        paths,
        config,
        git,
        state,
        lock: _guard,
        ..
    } = super::locked(repo)?;
    let paths = paths.with_workspaces(config.workspaces.as_deref());
    let report = crate::gc::run(&paths, &git, &state, retention)?;
    if args.json {
        return super::print_json(&report).map(|()| 0);
    }
    if report.workspaces_removed.is_empty() {
        println!("no workspace to remove");
    } else {
        println!(
            "removed the workspaces of {} (their branches stay)",
            report.workspaces_removed.join(", ")
        );
    }
    println!(
        "removed {} attempt logs and CLI state directories older than {} ({} bytes)",
        report.logs_removed.len(),
        crate::config::format_duration(retention),
        report.bytes_freed
    );
    println!("packed the ledger's loose objects");
    Ok(0)
}
