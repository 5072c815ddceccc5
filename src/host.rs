//! The host-wide spend file, for `host:` caps shared by every repository on this machine:
//! `$NIGHTSHIFT_HOST_DIR/host-budget.json` (default `$XDG_STATE_HOME/nightshift/`, else
//! `~/.local/state/nightshift/`). Each repository records its own totals under a lock; a tick
//! reads what the others spent. Touched only when a host cap is configured.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::engine::budget::Budget;
use crate::error::{NsError, NsResult};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct HostFile {
    version: u32,
    repos: BTreeMap<String, RepoSpend>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct RepoSpend {
    tokens: u64,
    usd: f64,
}

/// The directory of the host-wide files.
#[must_use]
pub fn dir() -> PathBuf {
    if let Some(d) = std::env::var_os("NIGHTSHIFT_HOST_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("nightshift");
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".local/state/nightshift")
}

/// The directory of the host-wide configuration (`scheduler.json`, the registry of subscribed
/// repositories): `NIGHTSHIFT_HOME` if set; else on macOS
/// `~/Library/Application Support/nightshift`; else `$XDG_CONFIG_HOME/nightshift`, else
/// `~/.config/nightshift`.
#[must_use]
pub fn config_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("NIGHTSHIFT_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    if cfg!(target_os = "macos") {
        return home.join("Library/Application Support/nightshift");
    }
    if let Some(d) = std::env::var_os("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("nightshift");
    }
    home.join(".config/nightshift")
}

fn read() -> HostFile {
    std::fs::read_to_string(dir().join("host-budget.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

/// Tokens and USD spent by the other repositories.
#[must_use]
pub fn others(repo: &std::path::Path) -> (u64, f64) {
    let key = repo.to_string_lossy();
    read()
        .repos
        .iter()
        .filter(|(k, _)| **k != *key)
        .fold((0, 0.0), |(t, u), (_, s)| (t + s.tokens, u + s.usd))
}

/// Records this repository's totals.
///
/// # Errors
/// When the host directory or file cannot be written.
pub fn record(repo: &std::path::Path, budget: &Budget) -> NsResult<()> {
    let d = dir();
    std::fs::create_dir_all(&d).map_err(|e| {
        NsError::failure(format!("cannot create {}", d.display())).cause(e.to_string())
    })?;
    let _lock = crate::lock::lock(&d.join("host.lock"))
        .map_err(|e| NsError::failure("cannot lock the host budget").cause(e.to_string()))?;
    let mut file = read();
    file.version = 1;
    file.repos.insert(
        repo.to_string_lossy().into_owned(),
        RepoSpend {
            tokens: budget.usage.total(),
            usd: budget.usd,
        },
    );
    crate::store::write_json(&d.join("host-budget.json"), &file)
}
