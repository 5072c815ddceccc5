//! The ledger commit message: a subject, one line per event of the change (the journal), and
//! structured trailers (seq, the stages and attempts involved, spend so far). `nightshift log`
//! reads these back.

use crate::engine::state::State;

/// Builds the commit message for the change that produced `state`.
#[must_use]
pub fn message(state: &State, budget: &crate::engine::budget::Budget, recovered: bool) -> String {
    let first = state
        .journal
        .first()
        .cloned()
        .unwrap_or_else(|| "state written".into());
    let more = state.journal.len().saturating_sub(1);
    let mut subject = format!("nightshift #{}: {first}", state.seq);
    if more > 0 {
        subject.push_str(&format!(" (+{more} more)"));
    }
    let mut out = format!("{subject}\n\n");
    for line in &state.journal {
        out.push_str(line);
        out.push('\n');
    }
    if recovered {
        out.push_str("repo: committed on recovery (the tick that wrote this state died before committing it)\n");
    }
    out.push_str(&format!("\nNightshift-Seq: {}\n", state.seq));
    let u = &budget.usage;
    out.push_str(&format!(
        "Nightshift-Spent: wall={}s tokens={} input={} output={} cache_read={} cache_write={} usd={:.4}\n",
        budget.wall_secs,
        u.total(),
        u.input,
        u.output,
        u.cache_read,
        u.cache_write,
        budget.usd
    ));
    for (family, f) in &budget.families {
        out.push_str(&format!(
            "Nightshift-Family: {family} runs={} tokens={} usd={:.4}\n",
            f.runs,
            f.usage.total(),
            f.usd
        ));
    }
    let mut stages: Vec<&str> = state
        .journal
        .iter()
        .filter_map(|l| l.split_once(": ").map(|(s, _)| s))
        .filter(|s| *s != "repo")
        .collect();
    stages.sort_unstable();
    stages.dedup();
    for id in stages {
        if let Some(s) = state.stages.iter().find(|s| s.id.as_str() == id) {
            out.push_str(&format!("Nightshift-Stage: {id}\n"));
            if s.attempt > 0 {
                out.push_str(&format!("Nightshift-Attempt: {id}/a{}\n", s.attempt));
            }
        }
    }
    out
}

/// Reads the event lines back out of a ledger commit message (the body, without trailers).
#[must_use]
pub fn events(message: &str) -> Vec<String> {
    message
        .lines()
        .skip(2)
        .filter(|l| !l.is_empty() && !l.starts_with("Nightshift-"))
        .map(str::to_owned)
        .collect()
}
