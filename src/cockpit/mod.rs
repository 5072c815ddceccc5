//! `nightshift attach`: the live cockpit. [`source`] is the one adapter to the status model
//! and the logs, [`watch`] wakes the loop when state files change, [`app`] holds the selection
//! and runs the loop, [`draw`] renders a frame, [`term`] owns the terminal modes, and [`plain`]
//! prints a refreshing table when stdout is not a terminal. The cockpit only reads: it never
//! dispatches, never takes the tick lock, never writes state.

pub mod app;
pub mod draw;
pub mod plain;
pub mod source;
pub mod term;
pub mod watch;
