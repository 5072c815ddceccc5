//! The record of the last host-wide pass of each kind (`tick`, `heartbeat`):
//! `<host state dir>/<name>-all.json`, schema-validated, written only by the pass that holds
//! that kind's host lock. It keeps where the next pass starts (round robin), the order of the
//! last visit, and each repository's last result, for `status --all` and `doctor`. Never
//! decides anything about a repository's stages.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::docs;
use crate::error::NsResult;

pub const PASS_VERSION: u32 = 1;

/// `<name>-all.json`: the last pass of one kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PassRecord {
    pub version: u32,
    /// `tick` or `heartbeat`.
    pub name: String,
    pub started_at: Timestamp,
    pub finished_at: Timestamp,
    /// The repository the next pass starts with (null: the registry's first).
    pub next: Option<PathBuf>,
    /// The repositories the last pass visited, in order.
    pub visited: Vec<PathBuf>,
    /// Each subscribed repository's latest result, by absolute path.
    pub repos: BTreeMap<String, RepoRecord>,
}

/// One repository's latest result in a pass of this kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RepoRecord {
    pub at: Timestamp,
    /// `idle`, `advanced`, `busy`, `slow` (still running when its slice ended), `ok`,
    /// `error` or `skipped` (the pass ran out of time before reaching it).
    pub result: String,
    pub millis: u64,
    /// For `error`: the first line of the error.
    pub error: Option<String>,
    /// When this repository last ran without an error.
    pub last_ok: Option<Timestamp>,
}

/// The record file of passes named `name`.
#[must_use]
pub fn file(name: &str) -> PathBuf {
    crate::host::dir().join(format!("{name}-all.json"))
}

/// The host lock of passes named `name` (one pass of a kind at a time on a host).
#[must_use]
pub fn lock_file(name: &str) -> PathBuf {
    crate::host::dir().join(format!("{name}-all.lock"))
}

/// Reads the last pass of `name`; absent is `None`.
///
/// # Errors
/// When the file exists but is unreadable or invalid.
pub fn load(name: &str) -> NsResult<Option<PassRecord>> {
    docs::read(&file(name))
}

/// Writes the record (validated, atomically).
///
/// # Errors
/// When it does not validate or cannot be written.
pub fn save(record: &PassRecord) -> NsResult<()> {
    docs::write(&file(&record.name), record)
}

/// The visiting order: `repos` rotated so that `next` (if still subscribed) comes first.
#[must_use]
pub fn rotated(repos: &[PathBuf], next: Option<&Path>) -> Vec<PathBuf> {
    let start = next
        .and_then(|n| repos.iter().position(|r| r == n))
        .unwrap_or(0);
    repos[start..]
        .iter()
        .chain(&repos[..start])
        .cloned()
        .collect()
}

/// Where the next pass starts: the first repository this pass did not reach, or, when it
/// reached them all, the one after this pass's first (so no repository is always first).
#[must_use]
pub fn next_start(order: &[PathBuf], reached: usize) -> Option<PathBuf> {
    if reached < order.len() {
        return order.get(reached).cloned();
    }
    order.get(1).or_else(|| order.first()).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> PathBuf {
        PathBuf::from(s)
    }

    #[test]
    fn round_robin_resumes_where_the_last_pass_stopped() {
        let repos = [p("/a"), p("/b"), p("/c")];
        assert_eq!(rotated(&repos, None), repos);
        assert_eq!(
            rotated(&repos, Some(Path::new("/b"))),
            [p("/b"), p("/c"), p("/a")]
        );
        assert_eq!(rotated(&repos, Some(Path::new("/gone"))), repos);
        // A full pass moves the start on by one; a cut-short one resumes at the first missed.
        let order = rotated(&repos, Some(Path::new("/b")));
        assert_eq!(next_start(&order, 3), Some(p("/c")));
        assert_eq!(next_start(&order, 1), Some(p("/c")));
        assert_eq!(next_start(&order, 0), Some(p("/b")));
        assert_eq!(next_start(&[], 0), None);
    }
}
