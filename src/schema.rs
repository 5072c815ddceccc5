//! JSON Schemas of every file nightshift reads or writes, generated from the Rust types (so
//! they cannot drift), committed under `schemas/` (a test keeps the files in step), and used to
//! validate every document on read. Also the one strict YAML/JSON reading path: YAML is parsed
//! with YAML-1.1 guessing turned off and duplicate keys rejected, and errors name file and line.

use std::sync::OnceLock;

use serde::de::DeserializeOwned;

use crate::error::{NsError, NsResult};

/// Every document kind with a schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Doc {
    Config,
    Card,
    State,
    Budget,
    Envelope,
    Verdict,
    Registration,
    Outcome,
    Recipe,
    Heartbeat,
    NotifySent,
    NotifyMessage,
    Awake,
}

impl Doc {
    pub const ALL: [Doc; 13] = [
        Doc::Config,
        Doc::Card,
        Doc::State,
        Doc::Budget,
        Doc::Envelope,
        Doc::Verdict,
        Doc::Registration,
        Doc::Outcome,
        Doc::Recipe,
        Doc::Heartbeat,
        Doc::NotifySent,
        Doc::NotifyMessage,
        Doc::Awake,
    ];

    /// The file name under `schemas/`.
    #[must_use]
    pub fn file_name(self) -> &'static str {
        match self {
            Doc::Config => "config.schema.json",
            Doc::Card => "stage-card.schema.json",
            Doc::State => "state.schema.json",
            Doc::Budget => "budget.schema.json",
            Doc::Envelope => "envelope.schema.json",
            Doc::Verdict => "verdict.schema.json",
            Doc::Registration => "active-agent.schema.json",
            Doc::Outcome => "outcome.schema.json",
            Doc::Recipe => "script-recipe.schema.json",
            Doc::Heartbeat => "heartbeat.schema.json",
            Doc::NotifySent => "notify-sent.schema.json",
            Doc::NotifyMessage => "notify-message.schema.json",
            Doc::Awake => "awake-record.schema.json",
        }
    }

    /// The schema, generated from the Rust type.
    #[must_use]
    pub fn schema(self) -> serde_json::Value {
        use schemars::schema_for;
        let s = match self {
            Doc::Config => schema_for!(crate::config::RawConfig),
            Doc::Card => schema_for!(crate::card::FrontMatter),
            Doc::State => schema_for!(crate::engine::state::State),
            Doc::Budget => schema_for!(crate::engine::budget::Budget),
            Doc::Envelope => schema_for!(crate::envelope::Envelope),
            Doc::Verdict => schema_for!(crate::envelope::Verdict),
            Doc::Registration => schema_for!(crate::job::Registration),
            Doc::Outcome => schema_for!(crate::engine::observe::Outcome),
            Doc::Recipe => schema_for!(crate::agent::script::Recipe),
            Doc::Heartbeat => schema_for!(crate::watchdog::HeartbeatDoc),
            Doc::NotifySent => schema_for!(crate::notify::Sent),
            Doc::NotifyMessage => schema_for!(crate::notify::Message),
            Doc::Awake => schema_for!(crate::awake::AwakeEntry),
        };
        s.to_value()
    }

    fn index(self) -> usize {
        Doc::ALL.iter().position(|d| *d == self).unwrap_or(0)
    }
}

fn validator(doc: Doc) -> Option<&'static jsonschema::Validator> {
    static CACHE: [OnceLock<Option<jsonschema::Validator>>; 13] = [const { OnceLock::new() }; 13];
    CACHE[doc.index()]
        .get_or_init(|| jsonschema::validator_for(&doc.schema()).ok())
        .as_ref()
}

/// Validates a JSON value against a document's schema. Returns every violation as
/// `<json pointer>: <message>`.
///
/// # Errors
/// The list of violations, or a single internal message if the schema itself failed to build
/// (a bug).
pub fn validate(doc: Doc, value: &serde_json::Value) -> Result<(), Vec<String>> {
    let Some(v) = validator(doc) else {
        return Err(vec![format!(
            "the {} schema failed to compile (this is a bug in nightshift)",
            doc.file_name()
        )]);
    };
    let errors: Vec<String> = v
        .iter_errors(value)
        .take(10)
        .map(|e| {
            let at = e.instance_path().to_string();
            let at = if at.is_empty() { "/".to_owned() } else { at };
            format!("{at}: {e}")
        })
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

fn yaml_options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        strict_booleans: true,
        leading_zero_numbers_as_strings: true,
        underscored_numbers_as_strings: true,
    }
}

/// Parses YAML into `T` (typed, strict), then validates it against `doc`'s schema.
/// `label` names the file in errors (a repo-relative path).
///
/// # Errors
/// A state-kind [`NsError`] naming `label` and the line for syntax, unknown keys, duplicate keys
/// and type errors; naming the JSON pointer for schema violations.
pub fn parse_yaml<T>(text: &str, label: &str, doc: Doc) -> NsResult<T>
where
    T: DeserializeOwned + serde::Serialize,
{
    let value: T = serde_saphyr::from_str_with_options(text, yaml_options())
        .map_err(|e| NsError::failure(format!("{label} is not valid")).cause(e.to_string()))?;
    check(&value, label, doc)?;
    Ok(value)
}

/// Parses JSON into `T`, then validates it against `doc`'s schema.
///
/// # Errors
/// An [`NsError`] naming `label`, line and column, or the JSON pointer at fault.
pub fn parse_json<T>(text: &str, label: &str, doc: Doc) -> NsResult<T>
where
    T: DeserializeOwned + serde::Serialize,
{
    let value: T = serde_json::from_str(text).map_err(|e| {
        NsError::failure(format!("{label} is not valid")).cause(format!(
            "line {} column {}: {e}",
            e.line(),
            e.column()
        ))
    })?;
    check(&value, label, doc)?;
    Ok(value)
}

/// Validates an in-memory value before it is written (never write what fails to validate).
///
/// # Errors
/// An [`NsError`] listing the violations.
pub fn check<T: serde::Serialize>(value: &T, label: &str, doc: Doc) -> NsResult<()> {
    let json = serde_json::to_value(value)
        .map_err(|e| NsError::bug(format!("cannot serialise {label}: {e}")))?;
    validate(doc, &json).map_err(|errs| {
        errs.into_iter().fold(
            NsError::failure(format!("{label} does not match {}", doc.file_name())),
            NsError::cause,
        )
    })
}

/// Renders every schema as pretty JSON, for `schemas/` (see the `schemas_in_step` test).
#[must_use]
pub fn render_all() -> Vec<(&'static str, String)> {
    Doc::ALL
        .iter()
        .map(|d| {
            let text = serde_json::to_string_pretty(&d.schema()).unwrap_or_default();
            (d.file_name(), format!("{text}\n"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed `schemas/*.json` are exactly what the types generate. Run with
    /// `NIGHTSHIFT_BLESS=1` to rewrite them after changing a type.
    #[test]
    fn schemas_in_step() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
        let bless = std::env::var("NIGHTSHIFT_BLESS").is_ok();
        for (name, text) in render_all() {
            let path = dir.join(name);
            if bless {
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(&path, &text).unwrap();
            }
            let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(
                on_disk == text,
                "schemas/{name} is stale: rerun with NIGHTSHIFT_BLESS=1"
            );
        }
    }

    #[test]
    fn every_schema_compiles() {
        for d in Doc::ALL {
            assert!(validator(d).is_some(), "{}", d.file_name());
        }
    }
}
