//! The cockpit without a terminal (stdout piped or redirected, e.g. over a plain ssh command):
//! the same snapshot printed as a table, printed again whenever the state files change (and
//! the text with it). No escape codes, so it is readable in a log file.

use std::fmt::Write as _;
use std::sync::mpsc;
use std::time::Duration;

use super::source::{self, Snapshot};
use crate::config::format_duration;
use crate::error::NsResult;
use crate::paths::Paths;

/// The snapshot as plain text.
#[must_use]
pub fn render(repo: &str, s: &Snapshot) -> String {
    let st = &s.status;
    let mut out = format!(
        "nightshift attach: {repo}  ledger #{}  {}/{} lane(s) busy\n",
        st.seq, st.in_flight, st.lanes
    );
    let w = st
        .stages
        .iter()
        .map(|x| x.id.len())
        .max()
        .unwrap_or(5)
        .max(5);
    let _ = writeln!(
        out,
        "{:<w$}  {:<11}  {:<7}  NOTE",
        "STAGE", "STATUS", "ATTEMPT"
    );
    for x in &st.stages {
        let note = x
            .reason
            .clone()
            .or_else(|| x.job.as_ref().map(|j| format!("job {j}")))
            .or_else(|| {
                x.commit
                    .as_ref()
                    .map(|c| c.get(..10).unwrap_or(c).to_owned())
            })
            .unwrap_or_default();
        let attempt = format!("{}/{}", x.attempts_used, x.max_attempts);
        let _ = writeln!(out, "{:<w$}  {:<11}  {attempt:<7}  {note}", x.id, x.status);
    }
    let _ = writeln!(out, "agents: {}", s.agents.len());
    for a in &s.agents {
        let deadline = a
            .deadline
            .map_or_else(String::new, |d| format!(" deadline {d}"));
        let _ = writeln!(
            out,
            "  {} a{} {} pid {} {}{deadline}",
            a.stage,
            a.attempt,
            a.role,
            a.pid,
            if a.alive { "alive" } else { "GONE" }
        );
    }
    let b = &st.budget;
    let _ = writeln!(
        out,
        "spend: {} tokens, ${:.2}, {} agent wall time",
        b.tokens,
        b.usd,
        format_duration(b.wall_secs)
    );
    let _ = writeln!(out, "needs you: {}", s.needs_you.len());
    for n in &s.needs_you {
        let _ = writeln!(out, "  {n}");
    }
    out
}

fn print_once(paths: &Paths, repo: &str, last: &mut String) -> NsResult<()> {
    let snap = source::load(paths)?;
    let text = render(repo, &snap);
    if text != *last {
        println!("{} {}", snap.now, "-".repeat(40));
        print!("{text}");
        *last = text;
    }
    Ok(())
}

/// Prints the table, then again on every change (unless `once`).
///
/// # Errors
/// When a state file cannot be read.
pub fn run(paths: &Paths, repo: &str, once: bool) -> NsResult<()> {
    let mut last = String::new();
    print_once(paths, repo, &mut last)?;
    if once {
        return Ok(());
    }
    let (tx, rx) = mpsc::channel();
    super::watch::spawn(paths, tx, |c| c);
    loop {
        match rx.recv_timeout(Duration::from_secs(15)) {
            Ok(super::watch::Change::Log) => continue,
            Ok(super::watch::Change::State) | Err(mpsc::RecvTimeoutError::Timeout) => {
                // A state file being replaced may read as missing for an instant: try again.
                if print_once(paths, repo, &mut last).is_err() {
                    std::thread::sleep(Duration::from_millis(100));
                    print_once(paths, repo, &mut last)?;
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(()),
        }
    }
}
