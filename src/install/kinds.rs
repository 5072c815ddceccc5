//! One entry point per operation for every scheduler kind: install, uninstall, and "what is
//! installed". A `match` on [`Kind`] and nothing else.

use super::plan::{Plan, Platform, Report};
use super::record::Kind;
use super::{cron, launchd, systemd};
use crate::error::NsResult;

/// Installs (or, with `print`, shows) `kind`'s entries for `plan`.
///
/// # Errors
/// As the kind's own `install`.
pub fn install(kind: Kind, plan: &Plan, platform: Platform, print: bool) -> NsResult<Report> {
    match kind {
        Kind::Launchd => launchd::install(plan, platform, print),
        Kind::Systemd => systemd::install(plan, platform, print),
        Kind::Cron => cron::install(plan, print),
    }
}

/// Removes `kind`'s entries.
///
/// # Errors
/// As the kind's own `uninstall`.
pub fn uninstall(kind: Kind, platform: Platform) -> NsResult<Report> {
    match kind {
        Kind::Launchd => launchd::uninstall(platform),
        Kind::Systemd => systemd::uninstall(),
        Kind::Cron => cron::uninstall(),
    }
}

/// The programs `kind`'s installed entries run, or `None` when it has none.
#[must_use]
pub fn installed(kind: Kind) -> Option<Vec<String>> {
    match kind {
        Kind::Launchd => launchd::installed(),
        Kind::Systemd => systemd::installed(),
        Kind::Cron => cron::installed(),
    }
}
