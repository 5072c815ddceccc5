//! The host level: the registry of subscribed repositories (`repos.json` in
//! [`crate::host::config_dir`]), the record of host-wide passes (`<name>-all.json` in
//! [`crate::host::dir`]), and [`visit_all`], the fair, fault-isolated walk over every
//! subscribed repository that `tick --all`, `status --all` and `heartbeat --all` share.
//! Declares and re-exports only.

pub mod docs;
pub mod passes;
pub mod registry;
pub mod visit;

pub use registry::{Registry, Subscription};
pub use visit::{Pass, PassReport, RepoResult, Visit, visit_all};
