//! Reading and writing the host-level documents (the repo registry, the pass record, the
//! installed scheduler's record): validated through [`crate::schema`] like every other
//! document (their types are registered in [`crate::documents`]), plus what only host files
//! need: a corrupt one is a state error, and a file of a newer version is refused rather than
//! guessed at (several nightshift binaries may share one host).

use crate::error::{EXIT_STATE, NsError, NsResult};
use crate::schema::{self, Document};

/// A host-level document: a [`Document`] with the newest `version` this binary reads.
pub trait HostDocument: Document {
    /// The newest `version` this binary reads.
    const VERSION: u32;
    /// The document's own `version` field.
    fn version(&self) -> u32;
}

fn state_kind(mut e: NsError) -> NsError {
    e.code = EXIT_STATE;
    e
}

/// Parses and validates a host document, refusing a version this binary does not know.
///
/// # Errors
/// A state-kind [`NsError`] naming `label`, line and column, the JSON pointer at fault, or the
/// version.
pub fn parse<T: HostDocument>(text: &str, label: &str) -> NsResult<T> {
    let value: T = schema::parse_json(text, label).map_err(state_kind)?;
    let version = value.version();
    if version == 0 || version > T::VERSION {
        return Err(NsError::state(format!(
            "{label} has version {version}; this nightshift reads version 1 to {}",
            T::VERSION
        ))
        .hint("upgrade nightshift (`cargo install --locked --path .` in a newer checkout)"));
    }
    Ok(value)
}

/// Reads and validates `path`; `Ok(None)` when it does not exist.
///
/// # Errors
/// When it exists but cannot be read or is not valid.
pub fn read<T: HostDocument>(path: &std::path::Path) -> NsResult<Option<T>> {
    let label = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text, &label).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(NsError::failure(format!("cannot read {label}")).cause(e.to_string())),
    }
}

/// Validates `value` and writes it to `path` atomically (never writes what fails to validate).
///
/// # Errors
/// When validation or the write fails.
pub fn write<T: HostDocument>(path: &std::path::Path, value: &T) -> NsResult<()> {
    schema::check(value, &path.display().to_string()).map_err(state_kind)?;
    crate::store::write_json(path, value)
}
