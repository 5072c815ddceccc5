//! Scenario and property tests for the pure engine, driven through a small simulator ([`Sim`])
//! in the style of quinn's test `Pair`: build a repo state, set what the shell would observe for
//! the jobs the state waits on, move the clock by hand and call [`step`] once per tick.
//!
//! Every tick also checks the engine's invariants ([`check_step`]): no job spawned twice, no
//! worker or verifier spawned past the wall-time cap, no attempt dispatched while halted, no
//! more stages in flight than lanes, terminal statuses final. So each example test doubles as
//! an invariant test, and the property test feeds the same harness random observation
//! sequences.
//!
//! The harness is `sim` (the simulator), `outcomes` (outcome files and effect helpers) and
//! `invariants` (the per-tick checks); the tests are `lifecycle` (a stage from queued to
//! done, retried or escalated), `jobs` (jobs that go stale, never start, overrun, vanish or
//! are cancelled), `budget` (wall-time cap and halts) and `property` (random runs). This
//! module only declares them.
//!
//! [`Sim`]: sim::Sim
//! [`step`]: crate::engine::step
//! [`check_step`]: invariants::check_step

mod budget;
mod invariants;
mod jobs;
mod lifecycle;
mod outcomes;
mod property;
mod sim;
