//! Reads what the morning report needs from the ledger branch, never from volatile files: the
//! state and budget at the ledger head, the durable handoffs (outcomes) of the attempts in the
//! window, and the journal (commit messages) of the window. A whole read costs a fixed number of
//! git processes whatever the length of the history: one `ls-tree` (handoffs and stage files),
//! two `cat-file --batch` (the state with its stage files, then the outcomes), one
//! `log` for the window and one `log -1` for the spend before it.
//!
//! This module only reads: it never writes a ref, an object or a file.

use std::collections::BTreeMap;

use jiff::Timestamp;

use crate::engine::budget::Budget;
use crate::engine::observe::Outcome;
use crate::engine::state::State;
use crate::error::{NsError, NsResult};
use crate::git::{Git, GitError};
use crate::ids::Role;

/// Which ledger commits belong to the report's window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitWindow {
    /// Commits whose committer time is at or after this time.
    Since(Timestamp),
    /// Commits whose `Nightshift-Seq` is above this one (the last report's).
    AfterSeq(u64),
}

/// One ledger commit of the window.
#[derive(Debug, Clone, PartialEq)]
pub struct JournalCommit {
    pub commit: String,
    /// Committer time.
    pub time: Timestamp,
    pub seq: Option<u64>,
    /// The event lines (`stage: text` / `repo: text`).
    pub events: Vec<String>,
    /// `Nightshift-Family:` trailers: family -> (tokens, usd) spent so far.
    pub families: BTreeMap<String, (u64, f64)>,
    /// `Nightshift-Spent:` tokens and usd so far.
    pub spent: Option<(u64, f64)>,
}

/// Everything the report is built from.
#[derive(Debug, Clone)]
pub struct LedgerView {
    pub head: String,
    pub state: State,
    pub budget: Budget,
    /// Outcomes of the attempts read, by (stage, attempt, role).
    pub outcomes: BTreeMap<(String, u32, Role), Outcome>,
    /// The window's commits, newest first.
    pub commits: Vec<JournalCommit>,
    /// The newest commit before the window (its spend trailers are the window's baseline).
    pub before: Option<JournalCommit>,
}

fn git_err(e: GitError) -> NsError {
    NsError::failure("cannot read the ledger")
        .cause(e.to_string())
        .hint("check the branch with `git log nightshift/ledger`; `nightshift repair` restores state files")
}

/// Reads the ledger for a report. `keep` decides, from the head state, which stage attempts'
/// outcomes are read (those the window shows).
///
/// # Errors
/// When there is no ledger, git fails, or the ledger's state is invalid.
pub fn read(
    git: &Git,
    window: CommitWindow,
    keep: impl Fn(&State, &str, u32) -> bool,
) -> NsResult<LedgerView> {
    let head = crate::ledger::head(git).map_err(git_err)?.ok_or_else(|| {
        NsError::failure("the ledger branch nightshift/ledger does not exist yet")
            .hint("run `nightshift init`, then enqueue work with `nightshift add-stage CARD`")
    })?;
    // One listing of the handoffs and the stage files, one batch for the state.
    let stages = crate::store::ledger_stages_dir();
    let listing = crate::ledger::list(git, &head, &["state/handoffs", &stages]).map_err(git_err)?;
    let stages_dir = format!("{stages}/");
    let (stage_files, handoffs): (Vec<String>, Vec<String>) = listing
        .into_iter()
        .partition(|p| p.starts_with(&stages_dir));
    let read = crate::store::ledger_full_state_listed(git, &head, &stage_files)?;
    let state = read.state;
    let budget = read.budget.ok_or_else(|| {
        NsError::state("the ledger head has no state/budget.json").hint("run `nightshift repair`")
    })?;
    let outcomes = read_outcomes(git, &head, &handoffs, &state, keep)?;
    let (commits, before) = journal(git, &head, window)?;
    Ok(LedgerView {
        head,
        state,
        budget,
        outcomes,
        commits,
        before,
    })
}

/// The outcome files under `state/handoffs/` at `head` for the kept attempts.
fn read_outcomes(
    git: &Git,
    head: &str,
    listing: &[String],
    state: &State,
    keep: impl Fn(&State, &str, u32) -> bool,
) -> NsResult<BTreeMap<(String, u32, Role), Outcome>> {
    let mut wanted = Vec::new();
    for path in listing {
        let mut parts = path.split('/').skip(2);
        let (Some(stage), Some(dir), Some(file), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let attempt = dir.strip_prefix('a').and_then(|n| n.parse::<u32>().ok());
        let role = match file {
            "worker.json" => Role::Worker,
            "acceptance.json" => Role::Acceptance,
            "verifier.json" => Role::Verifier,
            _ => continue,
        };
        if let Some(attempt) = attempt.filter(|a| keep(state, stage, *a)) {
            wanted.push(((stage.to_owned(), attempt, role), format!("{head}:{path}")));
        }
    }
    let specs: Vec<String> = wanted.iter().map(|(_, s)| s.clone()).collect();
    let blobs = cat_batch(git, &specs)?;
    let mut out = BTreeMap::new();
    for ((key, spec), blob) in wanted.into_iter().zip(blobs) {
        let Some(bytes) = blob else { continue };
        let text = String::from_utf8_lossy(&bytes);
        let label = spec.split_once(':').map_or(spec.as_str(), |(_, p)| p);
        // An outcome that fails validation is shown as missing, never guessed at.
        if let Ok(o) = crate::schema::parse_json::<Outcome>(&text, label) {
            out.insert(key, o);
        }
    }
    Ok(out)
}

/// Reads many objects with one `git cat-file --batch`; `None` for a missing one.
fn cat_batch(git: &Git, specs: &[String]) -> NsResult<Vec<Option<Vec<u8>>>> {
    crate::ledger::cat_batch(git, specs).map_err(git_err)
}

/// The window's commits (newest first) and the newest commit before it.
fn journal(
    git: &Git,
    head: &str,
    window: CommitWindow,
) -> NsResult<(Vec<JournalCommit>, Option<JournalCommit>)> {
    let limit = match window {
        CommitWindow::Since(t) => format!("--since=@{}", t.as_second()),
        CommitWindow::AfterSeq(_) => String::new(),
    };
    let mut args = vec![
        "log",
        "-z",
        "--no-show-signature",
        "--format=%H%x00%ct%x00%B",
    ];
    if !limit.is_empty() {
        args.push(&limit);
    }
    args.extend([head, "--"]);
    let out = git.run_in(git.root(), &args, &[], None).map_err(git_err)?;
    let mut commits = parse_log(&String::from_utf8_lossy(&out.stdout));
    if let CommitWindow::AfterSeq(seq) = window {
        // Newest first: the window ends at the first commit at or below the last report's seq.
        let cut = commits
            .iter()
            .position(|c| c.seq.is_some_and(|s| s <= seq))
            .unwrap_or(commits.len());
        let before = commits.get(cut).cloned();
        commits.truncate(cut);
        return Ok((commits, before));
    }
    let before = match commits.last() {
        Some(oldest) => {
            let parent = format!("{}^", oldest.commit);
            let out = git
                .run_raw(
                    git.root(),
                    &["log", "-z", "-1", "--format=%H%x00%ct%x00%B", &parent, "--"],
                    &[],
                    None,
                )
                .map_err(git_err)?;
            parse_log(&String::from_utf8_lossy(&out.stdout))
                .into_iter()
                .next()
        }
        None => None,
    };
    Ok((commits, before))
}

/// Parses `-z` output of `%H%x00%ct%x00%B`.
fn parse_log(text: &str) -> Vec<JournalCommit> {
    let fields: Vec<&str> = text.split('\0').collect();
    fields
        .chunks(3)
        .filter_map(|chunk| {
            let [commit, time, message] = chunk else {
                return None;
            };
            let time = Timestamp::from_second(time.trim().parse().ok()?).ok()?;
            Some(parse_message(commit.trim(), time, message))
        })
        .collect()
}

/// One commit's journal and trailers.
#[must_use]
pub fn parse_message(commit: &str, time: Timestamp, message: &str) -> JournalCommit {
    let mut c = JournalCommit {
        commit: commit.to_owned(),
        time,
        seq: None,
        events: crate::ledger_message::events(message),
        families: BTreeMap::new(),
        spent: None,
    };
    for line in message.lines() {
        if let Some(v) = line.strip_prefix("Nightshift-Seq: ") {
            c.seq = v.trim().parse().ok();
        } else if let Some(v) = line.strip_prefix("Nightshift-Spent: ") {
            c.spent = Some((
                field(v, "tokens=").unwrap_or(0.0) as u64,
                field(v, "usd=").unwrap_or(0.0),
            ));
        } else if let Some((family, rest)) = line
            .strip_prefix("Nightshift-Family: ")
            .and_then(|v| v.split_once(' '))
        {
            let tokens = field(rest, "tokens=").unwrap_or(0.0) as u64;
            c.families.insert(
                family.to_owned(),
                (tokens, field(rest, "usd=").unwrap_or(0.0)),
            );
        }
    }
    c
}

/// The number after `key` in a `k=v k=v` trailer.
fn field(text: &str, key: &str) -> Option<f64> {
    text.split_whitespace()
        .find_map(|w| w.strip_prefix(key))
        .and_then(|v| v.trim_end_matches('s').parse().ok())
}

/// A machine sleep, as the watchdog journals it: `repo: slept from <RFC 3339> to <RFC 3339>`.
#[must_use]
pub fn parse_sleep(line: &str) -> Option<(Timestamp, Timestamp)> {
    let rest = line.strip_prefix("repo: slept from ")?;
    let (from, to) = rest.split_once(" to ")?;
    let from: Timestamp = from.trim().parse().ok()?;
    let to: Timestamp = to.trim().parse().ok()?;
    (to >= from).then_some((from, to))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sleep_lines_parse_strictly() {
        let (a, b) =
            parse_sleep("repo: slept from 2027-01-01T02:00:00Z to 2027-01-01T03:30:00Z").unwrap();
        assert_eq!(b.as_second() - a.as_second(), 5400);
        assert!(
            parse_sleep("repo: slept from 2027-01-01T03:00:00Z to 2027-01-01T02:00:00Z").is_none()
        );
        assert!(
            parse_sleep("s1: slept from 2027-01-01T02:00:00Z to 2027-01-01T03:00:00Z").is_none()
        );
        assert!(parse_sleep("repo: slept from yesterday to today").is_none());
    }

    #[test]
    fn trailers_are_read_back() {
        let msg = "nightshift #3: s1: done\n\ns1: done\nrepo: slept from 2027-01-01T02:00:00Z to 2027-01-01T03:00:00Z\n\nNightshift-Seq: 3\nNightshift-Spent: wall=12s tokens=300 input=100 output=200 cache_read=0 cache_write=0 usd=0.5000\nNightshift-Family: claude runs=2 tokens=250 usd=0.4000\nNightshift-Family: codex runs=1 tokens=50 usd=0.1000\n";
        let c = parse_message("c0ffee", Timestamp::UNIX_EPOCH, msg);
        assert_eq!(c.seq, Some(3));
        assert_eq!(c.spent, Some((300, 0.5)));
        assert_eq!(c.families["claude"], (250, 0.4));
        assert_eq!(c.events.len(), 2);
        assert!(parse_sleep(&c.events[1]).is_some());
    }
}
