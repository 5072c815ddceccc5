//! `nightshift status`: renders [`crate::view::StatusView`] — what needs you first, then every
//! stage, what it waits on (with elapsed time and deadline left), attempts, why it failed, the
//! halt (if any), sleeps of the machine and the spend. `--json` prints the view itself, a
//! versioned interface (`version: 1`): scripts rely on `stages[].{id,status,attempt,branch,
//! reason}`, `halted`, `in_flight` and `needs_you`. Computes nothing itself.

use std::path::Path;

use crate::config::format_duration;
use crate::error::NsResult;
use crate::store;
use crate::view::StatusView;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print one JSON object (see the README for its fields).
    #[arg(long)]
    pub json: bool,
    /// Every subscribed repository: its state, its stages by status, its last tick, and for
    /// a broken one the error and the command that fixes it; plus the host-wide spend and caps.
    #[arg(long)]
    pub all: bool,
}

/// # Errors
/// When the repo is not set up or a state file is invalid.
pub fn run(repo: &Path, args: &Args) -> NsResult<i32> {
    if args.all {
        return super::all::status_all(args.json);
    }
    let paths = super::initialised(repo)?;
    let config = crate::store::read_config(&paths)?;
    let state = store::read_state_file(&paths)?;
    let budget = store::read_budget_file(&paths)?;
    let view = crate::view::build(&paths, &config, &state, &budget, crate::now::now()?);
    if args.json {
        super::print_json(&view)?;
    } else {
        print_table(&view);
    }
    Ok(0)
}

fn print_table(s: &StatusView) {
    println!(
        "nightshift: {} stage(s), {} job(s) running on {} lane(s), ledger #{}",
        s.stages.len(),
        s.in_flight,
        s.lanes,
        s.seq
    );
    print_needs_you(s);
    for w in &s.warnings {
        println!("warning: {w}");
    }
    println!("{}", s.confinement.detail);
    if s.stages.is_empty() {
        println!("no stages yet: `nightshift add-stage CARD`");
        return;
    }
    let w = s
        .stages
        .iter()
        .map(|x| x.id.len())
        .max()
        .unwrap_or(5)
        .max(5);
    println!(
        "{:<w$}  {:<11}  {:<9}  {:<8}  NOTE",
        "STAGE", "STATUS", "ATTEMPT", "TIME"
    );
    for st in &s.stages {
        println!(
            "{:<w$}  {:<11}  {:<9}  {:<8}  {}",
            st.id,
            st.status,
            attempt_column(st),
            format_duration(st.wall_secs + st.elapsed_secs.unwrap_or(0)),
            note(st)
        );
        if !st.panel.is_empty() {
            let votes: Vec<String> = st
                .panel
                .iter()
                .map(|m| format!("{} {}", m.member, m.vote))
                .collect();
            println!("{:<w$}  panel: {}", "", votes.join(", "));
        }
    }
    print_kills(s);
    print_sleeps(s);
    print_spend(s);
}

/// The ATTEMPT column: the attempt number (the one in the handoff folder `aN`, the ledger and
/// the prompt) out of the stage's allowance, `2/3`. After a `requeue` the allowance starts
/// again, so the count within it follows in brackets: `3 (1/3)` is attempt 3, the first of
/// three since the requeue.
fn attempt_column(st: &crate::view::StageView) -> String {
    if st.attempts_used == st.attempt {
        format!("{}/{}", st.attempt, st.max_attempts)
    } else {
        format!("{} ({}/{})", st.attempt, st.attempts_used, st.max_attempts)
    }
}

/// Kills decided but not yet verified.
fn print_kills(s: &StatusView) {
    for k in &s.kills {
        println!(
            "killing {}@a{}-{} ({}, decided {}): its processes are not yet verified gone; every tick and heartbeat tries again",
            k.stage, k.attempt, k.role, k.reason, k.decided_at
        );
    }
}

fn note(st: &crate::view::StageView) -> String {
    match (&st.reason, &st.job, &st.commit) {
        (Some(r), _, _) => r.clone(),
        (None, Some(j), _) => {
            let mut n = format!("job {j}");
            if let (Some(e), Some(left)) = (st.elapsed_secs, st.deadline_left_secs) {
                n.push_str(&format!(", {} elapsed, ", format_duration(e)));
                if left >= 0 {
                    n.push_str(&format!("{} left", format_duration(left.unsigned_abs())));
                } else {
                    n.push_str(&format!(
                        "{} past its deadline",
                        format_duration(left.unsigned_abs())
                    ));
                }
            }
            if let Some(log) = &st.log_path {
                n.push_str(&format!(" (log {log})"));
            }
            n
        }
        (None, None, Some(c)) => format!("{} @ {}", st.branch, c.get(..10).unwrap_or(c)),
        (None, None, None) if !st.depends_on.is_empty() && st.status == "queued" => {
            format!("after {}", st.depends_on.join(", "))
        }
        _ => String::new(),
    }
}

/// The "needs you" block: first, so it is what a person reads at 7am.
fn print_needs_you(s: &StatusView) {
    if s.needs_you.is_empty() {
        return;
    }
    println!("NEEDS YOU");
    for n in &s.needs_you {
        let label = n.kind.as_str().to_uppercase().replace('_', " ");
        println!("  {label}: {}", n.message);
        if let Some(next) = &n.next {
            println!("    next: {next}");
        }
    }
}

fn print_sleeps(s: &StatusView) {
    let day = 24 * 3600;
    let tz = jiff::tz::TimeZone::system();
    let hm = |t: jiff::Timestamp| t.to_zoned(tz.clone()).strftime("%H:%M").to_string();
    for sl in s
        .sleeps
        .iter()
        .filter(|sl| s.now.as_second() - sl.to.as_second() < day)
    {
        println!(
            "slept {}–{} ({}; not counted against deadlines or budgets)",
            hm(sl.from),
            hm(sl.to),
            format_duration(u64::try_from(sl.to.as_second() - sl.from.as_second()).unwrap_or(0))
        );
    }
}

fn print_spend(s: &StatusView) {
    let cap = s.budget.max_wall_secs.map_or_else(
        || "no cap".into(),
        |c| format!("cap {}", format_duration(c)),
    );
    println!(
        "spent: {} agent wall time ({cap}), {} attempt(s)",
        format_duration(s.budget.wall_secs),
        s.budget.attempts
    );
    let money_cap = match (s.budget.max_tokens, s.budget.max_usd) {
        (None, None) => "no cap".to_owned(),
        (t, u) => {
            [
                t.map(|t| format!("{t} tokens")),
                u.map(|u| format!("${u:.2}")),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(", ")
                + " cap"
        }
    };
    println!(
        "       {} tokens, ${:.2} ({money_cap})",
        s.budget.tokens, s.budget.usd
    );
    for (family, f) in &s.budget.families {
        println!(
            "       {family}: {} run(s), {} tokens, ${:.2}",
            f.runs,
            f.usage.total(),
            f.usd
        );
    }
}
