//! nightshift: runs coding-agent CLIs unattended overnight and checks their work before it
//! counts. The pure decision core lives in [`engine`]; everything else is the imperative shell
//! around it (files, git, processes). See `docs/DESIGN.md`.

pub mod agent;
pub mod awake;
pub mod card;
pub mod cli;
pub mod cmd;
pub mod cockpit;
pub mod config;
pub mod confine;
pub mod detect;
pub mod documents;
pub mod engine;
pub mod envelope;
pub mod error;
pub mod failpoint;
pub mod git;
pub mod glob;
pub mod host;
pub mod hostreg;
pub mod ids;
pub mod install;
pub mod integrate;
pub mod job;
pub mod ledger;
pub mod ledger_message;
pub mod lock;
pub mod logview;
pub mod notify;
pub mod now;
pub mod observe;
pub mod paths;
pub mod proc;
pub mod prompt;
pub mod protect;
pub mod redact;
pub mod report;
pub mod schema;
pub mod seal;
pub mod snapshot;
pub mod store;
pub mod tick;
pub mod view;
pub mod watchdog;
pub mod workspace;
pub mod worktree;
