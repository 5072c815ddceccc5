//! `scheduler.json` in [`crate::host::config_dir`]: which scheduler kind is installed, the
//! binary it calls, that binary's version and the two intervals (the watchdog reads
//! `interval_secs` / `heartbeat_secs` to tell a sleeping machine from a stuck one). Written
//! by `install`, removed by `uninstall`, schema-validated both ways. Writes nothing else.

use std::path::PathBuf;

use jiff::Timestamp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::{NsError, NsResult};
use crate::hostreg::docs;

pub const SCHEDULER_VERSION: u32 = 1;

/// A scheduler nightshift can install itself into.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A macOS LaunchAgent (`~/Library/LaunchAgents`).
    Launchd,
    /// A systemd user timer and oneshot service (`~/.config/systemd/user`).
    Systemd,
    /// A marked block in your crontab.
    Cron,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Launchd, Kind::Systemd, Kind::Cron];

    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Kind::Launchd => "launchd",
            Kind::Systemd => "systemd",
            Kind::Cron => "cron",
        }
    }
}

/// `scheduler.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SchedulerRecord {
    pub version: u32,
    pub kind: Kind,
    /// The absolute path of the binary the scheduler runs.
    pub binary: PathBuf,
    /// That binary's version at install time.
    pub nightshift_version: String,
    /// How often `tick --all` runs.
    pub interval_secs: u64,
    /// How often `heartbeat --all` runs.
    pub heartbeat_secs: u64,
    pub installed_at: Timestamp,
}

/// Where the record lives.
#[must_use]
pub fn file() -> PathBuf {
    crate::host::config_dir().join("scheduler.json")
}

/// The installed scheduler, if any.
///
/// # Errors
/// When the record exists but is unreadable or invalid.
pub fn load() -> NsResult<Option<SchedulerRecord>> {
    docs::read(&file()).map_err(|e| {
        e.hint(format!(
            "delete {} and run `nightshift install <kind>` again",
            file().display()
        ))
    })
}

/// Writes the record.
///
/// # Errors
/// When it does not validate or cannot be written.
pub fn save(r: &SchedulerRecord) -> NsResult<()> {
    docs::write(&file(), r)
}

/// Removes the record (absent is fine).
///
/// # Errors
/// When it exists and cannot be removed.
pub fn remove() -> NsResult<()> {
    match std::fs::remove_file(file()) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(NsError::failure(format!(
            "cannot remove {}",
            file().display()
        ))
        .cause(e.to_string())),
        _ => Ok(()),
    }
}
