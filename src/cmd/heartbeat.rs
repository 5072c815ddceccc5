//! `nightshift heartbeat`: the watchdog, for the scheduler to run every minute. Prints one line
//! per registered attempt (or the document with `--json`); see [`crate::watchdog`]. Exits 0
//! whatever it found: what it did is in the output, `state/heartbeat.json` and the ledger.

use std::path::Path;

use crate::config::format_duration;
use crate::error::NsResult;
use crate::watchdog::{HeartbeatDoc, Verdict};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print the heartbeat document (the same as state/heartbeat.json).
    #[arg(long)]
    pub json: bool,
    /// Every subscribed repository (`nightshift subscribe`), each in its own process; what the
    /// scheduler runs. A broken repository is reported and never stops the others.
    #[arg(long)]
    pub all: bool,
    /// With --all: how long one repository may take before the pass moves on.
    #[arg(long, requires = "all", default_value = "60s", value_parser = crate::config::parse_duration, value_name = "DURATION")]
    pub slice: u64,
}

/// # Errors
/// See [`crate::watchdog::run`].
pub fn run(repo: &Path, args: &Args) -> NsResult<i32> {
    if args.all {
        return super::all::heartbeat_all(std::time::Duration::from_secs(args.slice), args.json);
    }
    let paths = super::initialised(repo)?;
    let doc = crate::watchdog::run(&paths)?;
    if args.json {
        super::print_json(&doc)?;
    } else {
        print_human(&doc);
    }
    Ok(0)
}

fn print_human(doc: &HeartbeatDoc) {
    if let Some(s) = &doc.slept {
        println!(
            "the machine slept from {} to {} (not counted)",
            s.from, s.to
        );
    }
    if doc.scheduler.stopped {
        println!(
            "SCHEDULER STOPPED: last tick {}; `nightshift doctor` shows the scheduler",
            doc.scheduler
                .last_tick
                .map_or_else(|| "never".to_owned(), |t| t.to_string())
        );
    }
    if doc.attempts.is_empty() && doc.orphans.is_empty() {
        println!("heartbeat: no registered attempts");
        return;
    }
    for a in &doc.attempts {
        let left = a.deadline_left_secs.map_or_else(String::new, |l| {
            if l >= 0 {
                format!(", {} left", format_duration(l.unsigned_abs()))
            } else {
                format!(", {} past its deadline", format_duration(l.unsigned_abs()))
            }
        });
        let silent = a
            .silent_secs
            .map_or_else(String::new, |s| format!(", silent {}", format_duration(s)));
        let verdict = match a.verdict {
            Verdict::Ok => "ok",
            Verdict::Timeout => "TIMEOUT",
            Verdict::Stalled => "STALLED",
            Verdict::Crashed => "CRASHED",
            Verdict::Orphan => "ORPHAN",
        };
        println!(
            "{}/a{}/{}: {verdict} (pid {}, {}{silent}{left}){}",
            a.stage,
            a.attempt,
            a.role,
            a.pid,
            if a.alive { "alive" } else { "not alive" },
            a.action
                .as_ref()
                .map_or_else(String::new, |x| format!(": {x}"))
        );
    }
    for o in &doc.orphans {
        println!(
            "orphan pid {} (group {}){}: {}{}",
            o.pid,
            o.pgid,
            o.attempt
                .as_ref()
                .map_or_else(String::new, |a| format!(" of {a}")),
            o.detail,
            if o.reaped { "; reaped" } else { "" }
        );
    }
}
