//! The pure core: state, observations, effects and the transition function. Nothing in here
//! touches the filesystem, a process or the clock; time and the outside world arrive as
//! arguments and leave as data. See `docs/ENGINE.md` for the lifecycle and invariants.

pub mod budget;
mod dispatch;
pub mod effect;
mod judge;
pub mod observe;
pub mod ops;
pub mod panel;
mod pause;
pub mod state;
pub mod step;

pub use effect::{Effect, Event, SpawnPlan};
pub use step::{Limits, Step, next_wakeup, step};

#[cfg(test)]
mod tests;
