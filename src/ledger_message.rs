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

/// What kind of change one journal line records (`tick --json`, `log --json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A stage was enqueued (`add-stage`).
    Added,
    /// A worker job was started for an attempt.
    Dispatched,
    /// The worker handed off; acceptance runs.
    HandedOff,
    /// Acceptance passed; the verifier runs.
    AcceptancePassed,
    /// The verifier said pass; the work is being integrated.
    Verified,
    /// The attempt's work was integrated: the stage is done.
    Integrated,
    /// The attempt failed and the stage will retry.
    Retried,
    /// The stage was escalated to a person.
    Escalated,
    /// A usage limit switched the stage to its fallback worker.
    FallbackWorker,
    /// A usage limit paused the stage.
    Paused,
    /// A family's usage limit was reset.
    LimitReset,
    Cancelled,
    Requeued,
    /// A budget cap or failure streak halted the night.
    Halted,
    /// An operator cleared the halt.
    Resumed,
    /// The machine slept.
    Slept,
    /// `init` set the repository up.
    Initialised,
    /// A state written by a tick that died was committed by the next one.
    Recovered,
    /// A decided kill was carried out and verified: the attempt's processes are gone.
    Killed,
    /// A stale git lock file a killed git left was removed.
    LockCleared,
    /// A verifier panel's member was dispatched, voted, was re-dispatched, or the panel decided.
    Panel,
    /// Any other line (its `text` says what).
    Other,
}

/// One journal line, structured: the stage it is about (null for the repository), the attempt
/// (from the line, else the stage's attempt at that commit), its kind and its text.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
pub struct EventView {
    pub stage: Option<String>,
    pub attempt: Option<u32>,
    pub kind: EventKind,
    /// The line without its `stage: ` prefix.
    pub text: String,
}

/// Spend so far at one ledger commit (the `Nightshift-Spent` and `Nightshift-Family` trailers).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, schemars::JsonSchema)]
pub struct SpentView {
    pub wall_secs: u64,
    pub tokens: u64,
    pub input: u64,
    pub output: u64,
    pub cache_read: u64,
    pub cache_write: u64,
    pub usd: f64,
    /// Spend per model family: `{family: {runs, tokens, usd}}`.
    pub families: std::collections::BTreeMap<String, FamilySpentView>,
}

/// One family's spend so far.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, schemars::JsonSchema)]
pub struct FamilySpentView {
    pub runs: u64,
    pub tokens: u64,
    pub usd: f64,
}

/// The events of a ledger commit message, structured (see [`EventView`]).
#[must_use]
pub fn structured_events(message: &str) -> Vec<EventView> {
    let attempts: Vec<(&str, u32)> = message
        .lines()
        .filter_map(|l| l.strip_prefix("Nightshift-Attempt: "))
        .filter_map(|v| {
            let (id, a) = v.trim().rsplit_once("/a")?;
            Some((id, a.parse().ok()?))
        })
        .collect();
    events(message)
        .iter()
        .map(|line| {
            let mut e = parse_event(line);
            if e.attempt.is_none()
                && let Some(id) = e.stage.as_deref()
            {
                e.attempt = attempts.iter().find(|(s, _)| *s == id).map(|(_, a)| *a);
            }
            e
        })
        .collect()
}

/// One journal line (`stage: aN text` or `repo: text`), structured.
#[must_use]
pub fn parse_event(line: &str) -> EventView {
    let (who, text) = line.split_once(": ").unwrap_or(("repo", line));
    let stage = (who != "repo").then(|| who.to_owned());
    let (attempt, rest) = match text.split_once(' ') {
        Some((a, rest)) if a.len() > 1 && a.starts_with('a') => match a[1..].parse::<u32>() {
            Ok(n) => (Some(n), rest),
            Err(_) => (None, text),
        },
        _ => (None, text),
    };
    let kinds: [(&str, EventKind); 17] = [
        ("added", EventKind::Added),
        ("dispatched to", EventKind::Dispatched),
        ("worker handed off", EventKind::HandedOff),
        ("acceptance passed", EventKind::AcceptancePassed),
        ("verifier said pass", EventKind::Verified),
        ("done:", EventKind::Integrated),
        ("failed:", EventKind::Retried),
        ("escalated:", EventKind::Escalated),
        ("hit the", EventKind::FallbackWorker),
        ("paused:", EventKind::Paused),
        ("cancelled by operator", EventKind::Cancelled),
        ("requeued by operator", EventKind::Requeued),
        ("halted:", EventKind::Halted),
        ("resumed by operator", EventKind::Resumed),
        ("slept from", EventKind::Slept),
        ("initialised", EventKind::Initialised),
        ("committed on recovery", EventKind::Recovered),
    ];
    let kind = if rest.contains("usage limit reset") {
        EventKind::LimitReset
    } else if rest.contains("(kill verified)") {
        EventKind::Killed
    } else if rest.starts_with("removed stale git lock") {
        EventKind::LockCleared
    } else if rest.starts_with("panel") {
        EventKind::Panel
    } else {
        kinds
            .iter()
            .find(|(p, _)| rest.starts_with(p))
            .map_or(EventKind::Other, |(_, k)| *k)
    };
    EventView {
        stage,
        attempt,
        kind,
        text: text.to_owned(),
    }
}

/// The spend trailers of a ledger commit message, as numbers.
#[must_use]
pub fn spent(message: &str) -> Option<SpentView> {
    let line = message
        .lines()
        .find_map(|l| l.strip_prefix("Nightshift-Spent: "))?;
    let mut s = SpentView::default();
    for (k, v) in pairs(line) {
        match k {
            "wall" => s.wall_secs = v.trim_end_matches('s').parse().unwrap_or(0),
            "tokens" => s.tokens = v.parse().unwrap_or(0),
            "input" => s.input = v.parse().unwrap_or(0),
            "output" => s.output = v.parse().unwrap_or(0),
            "cache_read" => s.cache_read = v.parse().unwrap_or(0),
            "cache_write" => s.cache_write = v.parse().unwrap_or(0),
            "usd" => s.usd = v.parse().unwrap_or(0.0),
            _ => {}
        }
    }
    for l in message
        .lines()
        .filter_map(|l| l.strip_prefix("Nightshift-Family: "))
    {
        let Some((family, rest)) = l.split_once(' ') else {
            continue;
        };
        let mut f = FamilySpentView::default();
        for (k, v) in pairs(rest) {
            match k {
                "runs" => f.runs = v.parse().unwrap_or(0),
                "tokens" => f.tokens = v.parse().unwrap_or(0),
                "usd" => f.usd = v.parse().unwrap_or(0.0),
                _ => {}
            }
        }
        s.families.insert(family.to_owned(), f);
    }
    Some(s)
}

fn pairs(line: &str) -> impl Iterator<Item = (&str, &str)> {
    line.split_whitespace().filter_map(|kv| kv.split_once('='))
}

#[cfg(test)]
mod structured_tests {
    use super::*;

    #[test]
    fn journal_lines_read_back_structured() {
        let e = parse_event("a: a3 dispatched to w");
        assert_eq!(
            (e.stage.as_deref(), e.attempt, e.kind),
            (Some("a"), Some(3), EventKind::Dispatched)
        );
        let e = parse_event("b: escalated: acceptance failed");
        assert_eq!((e.attempt, e.kind), (None, EventKind::Escalated));
        let e = parse_event("repo: halted: wall-time cap");
        assert_eq!((e.stage, e.kind), (None, EventKind::Halted));
        assert_eq!(
            parse_event("a: a2 failed: x; will retry").kind,
            EventKind::Retried
        );
        for (line, kind) in [
            (
                "a: a1 worker: its processes are gone (kill verified)",
                EventKind::Killed,
            ),
            (
                "repo: removed stale git lock refs/heads/nightshift/ledger.lock (ledger ref; its git was killed mid-write)",
                EventKind::LockCleared,
            ),
            ("a: a2 panel: pb voted pass", EventKind::Panel),
            ("a: a2 panel passed (pa pass, pb pass)", EventKind::Panel),
        ] {
            assert_eq!(parse_event(line).kind, kind, "{line}");
        }
        let s = spent("x\n\nNightshift-Spent: wall=5s tokens=10 input=7 output=3 cache_read=0 cache_write=0 usd=0.2500\nNightshift-Family: openai runs=2 tokens=10 usd=0.2500\n").unwrap();
        assert_eq!((s.wall_secs, s.tokens, s.usd), (5, 10, 0.25));
        assert_eq!(s.families["openai"].runs, 2);
    }
}
