//! JSON Schemas of the host-level documents (the repo registry, the pass record, the installed
//! scheduler's record), generated from their Rust types, committed under `schemas/` (a test
//! keeps them in step) and used to validate every read and every write. Mirrors
//! [`crate::schema`] for files that live outside any repository; never reads or writes files.

use std::sync::OnceLock;

use serde::de::DeserializeOwned;

use crate::error::{NsError, NsResult};

/// Every host-level document kind with a schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostDoc {
    Registry,
    Passes,
    Scheduler,
}

impl HostDoc {
    pub const ALL: [HostDoc; 3] = [HostDoc::Registry, HostDoc::Passes, HostDoc::Scheduler];

    /// The file name under `schemas/`.
    #[must_use]
    pub fn file_name(self) -> &'static str {
        match self {
            HostDoc::Registry => "host-repos.schema.json",
            HostDoc::Passes => "host-pass.schema.json",
            HostDoc::Scheduler => "scheduler.schema.json",
        }
    }

    /// The schema, generated from the Rust type.
    #[must_use]
    pub fn schema(self) -> serde_json::Value {
        use schemars::schema_for;
        let s = match self {
            HostDoc::Registry => schema_for!(super::registry::Registry),
            HostDoc::Passes => schema_for!(super::passes::PassRecord),
            HostDoc::Scheduler => schema_for!(crate::install::record::SchedulerRecord),
        };
        s.to_value()
    }

    /// The newest `version` this binary reads (an older binary never guesses at a newer file).
    #[must_use]
    pub fn version(self) -> u32 {
        match self {
            HostDoc::Registry => super::registry::REGISTRY_VERSION,
            HostDoc::Passes => super::passes::PASS_VERSION,
            HostDoc::Scheduler => crate::install::record::SCHEDULER_VERSION,
        }
    }

    fn validator(self) -> Option<&'static jsonschema::Validator> {
        static CACHE: [OnceLock<Option<jsonschema::Validator>>; 3] = [const { OnceLock::new() }; 3];
        let i = HostDoc::ALL.iter().position(|d| *d == self).unwrap_or(0);
        CACHE[i]
            .get_or_init(|| jsonschema::validator_for(&self.schema()).ok())
            .as_ref()
    }
}

/// Validates a value against `doc`'s schema before it is written or after it is read.
///
/// # Errors
/// An [`NsError`] naming `label` and listing every violation with its JSON pointer.
pub fn check<T: serde::Serialize>(value: &T, label: &str, doc: HostDoc) -> NsResult<()> {
    let json = serde_json::to_value(value)
        .map_err(|e| NsError::bug(format!("cannot serialise {label}: {e}")))?;
    let Some(v) = doc.validator() else {
        return Err(NsError::bug(format!(
            "the {} schema failed to compile",
            doc.file_name()
        )));
    };
    let errors: Vec<String> = v
        .iter_errors(&json)
        .take(10)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect();
    if errors.is_empty() {
        return Ok(());
    }
    Err(errors.into_iter().fold(
        NsError::state(format!("{label} does not match {}", doc.file_name())),
        NsError::cause,
    ))
}

/// Parses JSON into `T`, then validates it against `doc`'s schema.
///
/// # Errors
/// A state-kind [`NsError`] naming `label`, line and column, or the JSON pointer at fault.
pub fn parse<T>(text: &str, label: &str, doc: HostDoc) -> NsResult<T>
where
    T: DeserializeOwned + serde::Serialize,
{
    let value: T = serde_json::from_str(text).map_err(|e| {
        NsError::state(format!("{label} is not valid")).cause(format!(
            "line {} column {}: {e}",
            e.line(),
            e.column()
        ))
    })?;
    check(&value, label, doc)?;
    let version = serde_json::to_value(&value)
        .ok()
        .and_then(|v| v["version"].as_u64())
        .unwrap_or(0);
    if version == 0 || version > u64::from(doc.version()) {
        return Err(NsError::state(format!(
            "{label} has version {version}; this nightshift reads version 1 to {}",
            doc.version()
        ))
        .hint("upgrade nightshift (`cargo install --locked --path .` in a newer checkout)"));
    }
    Ok(value)
}

/// Reads and validates `path`; `Ok(None)` when it does not exist.
///
/// # Errors
/// When it exists but cannot be read or is not valid.
pub fn read<T>(path: &std::path::Path, doc: HostDoc) -> NsResult<Option<T>>
where
    T: DeserializeOwned + serde::Serialize,
{
    let label = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text, &label, doc).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(NsError::failure(format!("cannot read {label}")).cause(e.to_string())),
    }
}

/// Validates `value` and writes it to `path` atomically (never writes what fails to validate).
///
/// # Errors
/// When validation or the write fails.
pub fn write<T: serde::Serialize>(path: &std::path::Path, value: &T, doc: HostDoc) -> NsResult<()> {
    check(value, &path.display().to_string(), doc)?;
    crate::store::write_json(path, value)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed `schemas/*.json` of the host documents are exactly what the types
    /// generate. Run with `NIGHTSHIFT_BLESS=1` to rewrite them after changing a type.
    #[test]
    fn host_schemas_in_step() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
        let bless = std::env::var("NIGHTSHIFT_BLESS").is_ok();
        for d in HostDoc::ALL {
            let text = format!("{}\n", serde_json::to_string_pretty(&d.schema()).unwrap());
            let path = dir.join(d.file_name());
            if bless {
                std::fs::write(&path, &text).unwrap();
            }
            let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(
                on_disk == text,
                "schemas/{} is stale: rerun with NIGHTSHIFT_BLESS=1",
                d.file_name()
            );
            assert!(d.validator().is_some(), "{}", d.file_name());
        }
    }

    /// Version matrix: every host document reads its own version and refuses a newer one.
    #[test]
    fn a_newer_version_is_refused_never_guessed_at() {
        let reg = |v: u32| format!(r#"{{"version":{v},"repos":[]}}"#);
        let r: super::super::Registry = parse(&reg(1), "repos.json", HostDoc::Registry).unwrap();
        assert_eq!(r.version, 1);
        let e =
            parse::<super::super::Registry>(&reg(2), "repos.json", HostDoc::Registry).unwrap_err();
        assert!(e.to_string().contains("has version 2"), "{e}");
        assert_eq!(e.code, crate::error::EXIT_STATE);
    }
}
