//! The one place nightshift reads the wall clock. `NIGHTSHIFT_NOW` (RFC 3339, e.g.
//! `2026-01-01T01:00:00Z`) fixes it, so tests and the engine see a clock they control.
//! Nothing else in the crate may call `SystemTime::now` or `Timestamp::now`.

use jiff::Timestamp;

use crate::error::NsError;

/// The environment variable that fixes the clock.
pub const NOW_ENV: &str = "NIGHTSHIFT_NOW";

/// The current time, or the time fixed by `NIGHTSHIFT_NOW`.
///
/// # Errors
/// When `NIGHTSHIFT_NOW` is set but is not an RFC 3339 timestamp.
pub fn now() -> Result<Timestamp, NsError> {
    match std::env::var(NOW_ENV) {
        Ok(v) if !v.trim().is_empty() => v.trim().parse::<Timestamp>().map_err(|e| {
            NsError::failure(format!("{NOW_ENV}=`{v}` is not an RFC 3339 timestamp"))
                .cause(e.to_string())
                .hint(format!(
                    "unset {NOW_ENV}, or set it like 2026-01-01T01:00:00Z"
                ))
        }),
        _ => Ok(Timestamp::now()),
    }
}
