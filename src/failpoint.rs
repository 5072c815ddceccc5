//! Crash injection for tests: when `NIGHTSHIFT_FAILPOINT` names a point the process reaches,
//! it kills itself with SIGKILL right there (no destructors, no flushing: a real crash). Used by
//! the crash-safety tests to stop a tick between each pair of its durable steps.

/// The environment variable naming the failpoint.
pub const FAILPOINT_ENV: &str = "NIGHTSHIFT_FAILPOINT";

/// Every failpoint, in the order a tick passes them.
pub const POINTS: [&str; 5] = [
    "after-budget-write",
    "after-state-write",
    "after-ledger-commit",
    "after-effects",
    "before-exit",
];

/// Dies by SIGKILL if `NIGHTSHIFT_FAILPOINT` equals `point`.
pub fn hit(point: &str) {
    if std::env::var(FAILPOINT_ENV).is_ok_and(|v| v == point) {
        let _ =
            rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
        // SIGKILL to ourselves does not return; abort if it somehow did.
        std::process::abort();
    }
}
