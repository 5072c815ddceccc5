//! The host's awake record: every tick and heartbeat appends when it ran to
//! `<host dir>/awake.jsonl` (bounded: rotated to `awake.1.jsonl` past 128 KiB, one old file
//! kept). A gap longer than twice the scheduler interval means the machine slept; the run that
//! sees the gap records the sleep in its line, and each repository's next tick journals it in
//! the ledger (`repo: slept from <from> to <to>`) so `status` and the report can say so.
//! Sleeps are only detected once a scheduler is installed (`scheduler.json` exists): a repo
//! ticked by hand is not a machine that slept. Also reads `scheduler.json` (written by
//! `nightshift install`) and says whether the scheduler has stopped. Never decides anything
//! about stages; never kills.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use crate::engine::observe::Sleep;
use crate::error::{NsError, NsResult};
use crate::paths::Paths;

/// Interval assumed when no scheduler is installed.
pub const DEFAULT_INTERVAL_SECS: u64 = 300;
/// Heartbeat interval assumed when no scheduler is installed.
pub const DEFAULT_HEARTBEAT_SECS: u64 = 60;
/// Size past which the record rotates.
const ROTATE_BYTES: u64 = 128 * 1024;

/// Who appended a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum By {
    Tick,
    Heartbeat,
}

/// One line of the awake record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AwakeEntry {
    pub at: Timestamp,
    pub by: By,
    /// Set when this run found the machine had slept since the previous line (at this time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slept_from: Option<Timestamp>,
}

/// The installed scheduler, as `nightshift install` described it in `scheduler.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Scheduler {
    pub installed: bool,
    pub interval_secs: u64,
    pub heartbeat_secs: u64,
}

/// The installed scheduler from `scheduler.json` ([`crate::install::record::load`], the same
/// typed, validated read `install` and `doctor` use); absent or invalid means "not installed"
/// with the default intervals.
#[must_use]
pub fn scheduler() -> Scheduler {
    match crate::install::record::load() {
        Ok(Some(r)) => Scheduler {
            installed: true,
            interval_secs: Some(r.interval_secs)
                .filter(|n| *n > 0)
                .unwrap_or(DEFAULT_INTERVAL_SECS),
            heartbeat_secs: Some(r.heartbeat_secs)
                .filter(|n| *n > 0)
                .unwrap_or(DEFAULT_HEARTBEAT_SECS),
        },
        Ok(None) | Err(_) => Scheduler {
            installed: false,
            interval_secs: DEFAULT_INTERVAL_SECS,
            heartbeat_secs: DEFAULT_HEARTBEAT_SECS,
        },
    }
}

fn record_file() -> PathBuf {
    crate::host::dir().join("awake.jsonl")
}

fn rotated_file() -> PathBuf {
    crate::host::dir().join("awake.1.jsonl")
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> NsError + '_ {
    move |e| NsError::failure(format!("cannot write {}", path.display())).cause(e.to_string())
}

/// Appends one line for this run; returns the sleep it detected, if any.
///
/// # Errors
/// When the host directory or the record cannot be written.
pub fn record(by: By, now: Timestamp) -> NsResult<Option<Sleep>> {
    let dir = crate::host::dir();
    std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let _lock = crate::lock::lock(&dir.join("awake.lock"))
        .map_err(|e| NsError::failure("cannot lock the awake record").cause(e.to_string()))?;
    let path = record_file();
    let last = read_entries(&path).last().map(|e| e.at);
    let sched = scheduler();
    let slept_from = last.filter(|prev| {
        let gap = now.as_second() - prev.as_second();
        sched.installed && gap > 2 * i64::try_from(sched.interval_secs).unwrap_or(i64::MAX / 4)
    });
    let entry = AwakeEntry {
        at: now,
        by,
        slept_from,
    };
    if std::fs::metadata(&path).is_ok_and(|m| m.len() > ROTATE_BYTES) {
        std::fs::rename(&path, rotated_file()).map_err(io_err(&path))?;
    }
    let mut line = serde_json::to_string(&entry)
        .map_err(|e| NsError::bug(format!("cannot serialise the awake record: {e}")))?;
    line.push('\n');
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(line.as_bytes()))
        .map_err(io_err(&path))?;
    Ok(slept_from.map(|from| Sleep { from, to: now }))
}

fn read_entries(path: &Path) -> Vec<AwakeEntry> {
    let Ok(f) = std::fs::File::open(path) else {
        return Vec::new();
    };
    std::io::BufReader::new(f)
        .lines()
        .map_while(Result::ok)
        .filter_map(|l| parse_line(&l))
        .collect()
}

/// One line of the record, or `None` for a line that is not one (skipped). The typed parse is
/// the whole check: every rule of `awake-record.schema.json` (the keys, the `by` values, the
/// times) is one the type enforces, so building the schema's validator (a millisecond and a
/// half, with the meta-schema's, in every `status`) would refuse nothing more (test
/// `the_typed_parse_refuses_what_the_schema_refuses`).
fn parse_line(line: &str) -> Option<AwakeEntry> {
    serde_json::from_str(line).ok()
}

/// Every line still kept, oldest first.
#[must_use]
pub fn entries() -> Vec<AwakeEntry> {
    let mut all = read_entries(&rotated_file());
    all.extend(read_entries(&record_file()));
    all
}

/// Every sleep still in the record, oldest first.
#[must_use]
pub fn sleeps() -> Vec<Sleep> {
    sleeps_of(&entries())
}

fn sleeps_of(entries: &[AwakeEntry]) -> Vec<Sleep> {
    entries
        .iter()
        .filter_map(|e| e.slept_from.map(|from| Sleep { from, to: e.at }))
        .collect()
}

/// The scheduler as `status`, `doctor` and the heartbeat show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct SchedulerView {
    /// `scheduler.json` exists (written by `nightshift install`).
    pub installed: bool,
    pub interval_secs: u64,
    pub heartbeat_secs: u64,
    /// The last tick on this host (any repository).
    pub last_tick: Option<Timestamp>,
    /// Awake seconds since that tick.
    pub since_last_tick_secs: Option<i64>,
    /// Installed, and the last tick is older than three intervals of awake time.
    pub stopped: bool,
}

/// How the scheduler is doing at `now`.
#[must_use]
pub fn scheduler_view(now: Timestamp) -> SchedulerView {
    let sched = scheduler();
    let all = entries();
    let sleeps = sleeps_of(&all);
    let last_tick = all.iter().rev().find(|e| e.by == By::Tick).map(|e| e.at);
    let since = last_tick.map(|t| {
        now.as_second() - t.as_second() - crate::engine::observe::slept_secs(&sleeps, t, now)
    });
    let limit = 3 * i64::try_from(sched.interval_secs).unwrap_or(i64::MAX / 4);
    let stopped = sched.installed && since.is_none_or(|s| s > limit);
    SchedulerView {
        installed: sched.installed,
        interval_secs: sched.interval_secs,
        heartbeat_secs: sched.heartbeat_secs,
        last_tick,
        since_last_tick_secs: since,
        stopped,
    }
}

fn cursor_file(paths: &Paths) -> PathBuf {
    paths.state_dir().join(".sleeps-recorded")
}

/// Sleeps this repository's ledger has not journalled yet. Without a cursor (a new repo), only
/// a sleep that ended at `now` counts: a repo does not claim sleeps from before its first tick.
#[must_use]
pub fn unrecorded(paths: &Paths, now: Timestamp) -> Vec<Sleep> {
    let cursor = std::fs::read_to_string(cursor_file(paths))
        .ok()
        .and_then(|t| t.trim().parse::<Timestamp>().ok());
    sleeps()
        .into_iter()
        .filter(|s| match cursor {
            Some(c) => s.to > c,
            None => s.to >= now,
        })
        .collect()
}

/// Moves the cursor past these sleeps (after the ledger commit that journalled them).
pub fn mark_recorded(paths: &Paths, sleeps: &[Sleep]) {
    if let Some(last) = sleeps.iter().map(|s| s.to).max() {
        let _ = crate::store::write_atomic(&cursor_file(paths), format!("{last}\n").as_bytes());
    }
}

/// The journal line of a sleep (the report parses it).
#[must_use]
pub fn event_text(s: &Sleep) -> String {
    format!("slept from {} to {}", s.from, s.to)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    /// The record's lines are read by the typed parse alone: it takes exactly the lines the
    /// schema takes, good and bad alike.
    #[test]
    fn the_typed_parse_refuses_what_the_schema_refuses() {
        let lines = [
            (r#"{"at":"2027-01-01T01:00:00Z","by":"tick"}"#, true),
            (
                r#"{"at":"2027-01-01T01:00:00.123456789Z","by":"heartbeat"}"#,
                true,
            ),
            (
                r#"{"at":"2027-01-01T01:00:00Z","by":"tick","slept_from":"2027-01-01T00:00:00Z"}"#,
                true,
            ),
            (
                r#"{"at":"2027-01-01T01:00:00Z","by":"tick","slept_from":null}"#,
                true,
            ),
            (r#"{"at":"2027-01-01T01:00:00Z","by":"cron"}"#, false),
            (r#"{"at":"2027-01-01T01:00:00Z"}"#, false),
            (r#"{"by":"tick"}"#, false),
            (
                r#"{"at":"2027-01-01T01:00:00Z","by":"tick","extra":1}"#,
                false,
            ),
            (r#"{"at":17,"by":"tick"}"#, false),
            (
                r#"{"at":"2027-01-01T01:00:00Z","by":"tick","slept_from":3}"#,
                false,
            ),
            // serde takes a struct as an array of its fields; the checked parse validates the
            // typed value, so it took this too.
            (r#"["2027-01-01T01:00:00Z","tick"]"#, true),
            ("not json", false),
        ];
        for (line, good) in lines {
            let schema = crate::schema::parse_json::<AwakeEntry>(line, "awake record").is_ok();
            assert_eq!(schema, good, "schema: {line}");
            assert_eq!(parse_line(line).is_some(), good, "typed: {line}");
        }
    }

    #[test]
    fn overlap_counts_only_the_shared_part() {
        let s = Sleep {
            from: t("2027-01-01T02:00:00Z"),
            to: t("2027-01-01T03:00:00Z"),
        };
        assert_eq!(
            s.overlap(t("2027-01-01T01:00:00Z"), t("2027-01-01T02:30:00Z")),
            1800
        );
        assert_eq!(
            s.overlap(t("2027-01-01T03:30:00Z"), t("2027-01-01T04:00:00Z")),
            0
        );
        assert_eq!(
            s.overlap(t("2027-01-01T01:00:00Z"), t("2027-01-01T05:00:00Z")),
            3600
        );
    }

    #[test]
    fn sleeps_come_from_marked_lines() {
        let lines = [
            AwakeEntry {
                at: t("2027-01-01T01:00:00Z"),
                by: By::Tick,
                slept_from: None,
            },
            AwakeEntry {
                at: t("2027-01-01T05:00:00Z"),
                by: By::Heartbeat,
                slept_from: Some(t("2027-01-01T01:00:00Z")),
            },
        ];
        assert_eq!(
            sleeps_of(&lines),
            vec![Sleep {
                from: t("2027-01-01T01:00:00Z"),
                to: t("2027-01-01T05:00:00Z")
            }]
        );
    }
}
