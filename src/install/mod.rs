//! `nightshift install` / `uninstall`: per-user scheduler entries that run
//! `<absolute binary> tick --all` and `heartbeat --all` on an interval, for launchd, systemd and
//! cron, written from the templates in `launchd/` and `systemd/`, plus the record of what is
//! installed (`scheduler.json`). Never system-wide, never as root; never touches a repository.
//! Declares and re-exports only.

pub mod cron;
pub mod health;
pub mod kinds;
pub mod launchd;
pub mod plan;
pub mod record;
pub mod systemd;
pub mod tool;

pub use plan::{Job, Plan, Platform};
pub use record::{Kind, SchedulerRecord};
