//! The one strict reading path for nightshift's documents: YAML is parsed with YAML-1.1 guessing
//! turned off and duplicate keys rejected, JSON strictly, and every document is then validated
//! against the JSON Schema generated from its Rust type; errors name the file and line (or the
//! JSON pointer at fault). Also the check that runs before a document is written.
//!
//! This module knows no nightshift type: a type opts in by implementing [`Document`] (the
//! registry of document types and their `schemas/` files is [`crate::documents`]).

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use schemars::JsonSchema;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{NsError, NsResult};

/// A file format nightshift reads or writes, validated against the JSON Schema generated from
/// the type.
pub trait Document: DeserializeOwned + Serialize + JsonSchema {
    /// The schema's file name under `schemas/` (also its name in error messages).
    const SCHEMA_FILE: &'static str;
}

/// A document whose validated value may be remembered by the digest of its bytes (the cache in
/// `state/.cache/`, [`crate::store::cache::load_doc`]), so that the next reader of the same
/// bytes neither parses nor validates them again. `SCHEMA_TEXT` is the committed schema (which
/// a test keeps equal to the generated one): a value validated under another schema, by
/// another build, is never taken.
pub trait Remembered: Document {
    const SCHEMA_TEXT: &'static str;
}

/// The schema of `T`, generated from the Rust type.
#[must_use]
pub fn schema_of<T: JsonSchema>() -> serde_json::Value {
    schemars::schema_for!(T).to_value()
}

/// The compiled validator of `T`'s schema, built once per process. Each type has its own cell,
/// so a thread building one schema ([`prebuild`]) never holds up a reader of another.
fn validator<T: Document>() -> Option<&'static jsonschema::Validator> {
    type Cell = OnceLock<Option<&'static jsonschema::Validator>>;
    static CACHE: OnceLock<Mutex<HashMap<&'static str, &'static Cell>>> = OnceLock::new();
    let cell: &'static Cell = {
        let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
        let mut map = cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.entry(T::SCHEMA_FILE)
            .or_insert_with(|| Box::leak(Box::new(OnceLock::new())))
    };
    *cell.get_or_init(|| {
        jsonschema::validator_for(&schema_of::<T>())
            .ok()
            .map(|v| &*Box::leak(Box::new(v)))
    })
}

/// Runs `build` (calls of [`compiles`], which builds a validator) on a thread of its own: a command that will validate
/// documents starts building their validators (a few milliseconds each, the first one also
/// building the JSON Schema meta-schema's) while it reads its files, instead of after. The
/// thread is not waited for; whoever needs a validator it is still building waits for it.
pub fn prebuild(build: fn()) {
    let _ = std::thread::Builder::new()
        .name("schemas".into())
        .spawn(build);
}

/// Whether `T`'s schema compiles (a test checks every registered document).
#[must_use]
pub fn compiles<T: Document>() -> bool {
    validator::<T>().is_some()
}

/// Validates a JSON value against `T`'s schema. Returns every violation as
/// `<json pointer>: <message>`.
///
/// # Errors
/// The list of violations, or a single internal message if the schema itself failed to build
/// (a bug).
pub fn validate<T: Document>(value: &serde_json::Value) -> Result<(), Vec<String>> {
    let Some(v) = validator::<T>() else {
        return Err(vec![format!(
            "the {} schema failed to compile (this is a bug in nightshift)",
            T::SCHEMA_FILE
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

/// The reader's options for a text of `len` bytes. The structural budget grows with the input:
/// a YAML node or event takes at least a byte of text, so no file nightshift wrote (however
/// long its queue) is refused for its size, while aliases, anchors and nesting (the ways a
/// small hostile file becomes a large document) keep the library's fixed caps.
fn yaml_options(len: usize) -> serde_saphyr::Options {
    let defaults = serde_saphyr::Budget::default();
    serde_saphyr::options! {
        strict_booleans: true,
        leading_zero_numbers_as_strings: true,
        underscored_numbers_as_strings: true,
        budget: serde_saphyr::budget! {
            max_nodes: defaults.max_nodes.max(len),
            max_events: defaults.max_events.max(len.saturating_mul(2)),
            max_total_scalar_bytes: defaults.max_total_scalar_bytes.max(len),
        },
    }
}

/// Parses YAML into `T` (typed, strict), then validates it against `T`'s schema.
/// `label` names the file in errors (a repo-relative path).
///
/// # Errors
/// A state-kind [`NsError`] naming `label` and the line for syntax, unknown keys, duplicate keys
/// and type errors; naming the JSON pointer for schema violations.
pub fn parse_yaml<T: Document>(text: &str, label: &str) -> NsResult<T> {
    let value: T =
        serde_saphyr::from_str_with_options(text, yaml_options(text.len())).map_err(|e| {
            NsError::failure(format!("{label} is not valid"))
                .cause(yaml_cause(&e.to_string(), label))
        })?;
    check(&value, label)?;
    Ok(value)
}

/// A YAML error as a person reads it: the file's name where the parser says `<input>`, no
/// second `error:` inside the cause, and a type mismatch said in words.
fn yaml_cause(text: &str, label: &str) -> String {
    let file = label.split(" (").next().unwrap_or(label);
    let text = text.strip_prefix("error: ").unwrap_or(text);
    let mut out = text.replace("<input>", file);
    for (parser, words) in [
        (
            "expected string scalar",
            "expected a single value here (a number or a string), found a list or a mapping",
        ),
        (
            "invalid type: sequence",
            "found a list where a single value belongs",
        ),
    ] {
        if out.contains(parser) {
            out = out.replace(parser, words);
        }
    }
    out
}

/// Parses JSON into `T`, then validates it against `T`'s schema.
///
/// # Errors
/// An [`NsError`] naming `label`, line and column, or the JSON pointer at fault.
pub fn parse_json<T: Document>(text: &str, label: &str) -> NsResult<T> {
    // serde_json's message already ends with `at line L column C`: say it once.
    let value: T = serde_json::from_str(text)
        .map_err(|e| NsError::failure(format!("{label} is not valid")).cause(e.to_string()))?;
    check(&value, label)?;
    Ok(value)
}

/// Validates an in-memory value before it is written (never write what fails to validate).
///
/// # Errors
/// An [`NsError`] listing the violations.
pub fn check<T: Document>(value: &T, label: &str) -> NsResult<()> {
    let json = serde_json::to_value(value)
        .map_err(|e| NsError::bug(format!("cannot serialise {label}: {e}")))?;
    validate::<T>(&json).map_err(|errs| {
        errs.into_iter().fold(
            NsError::failure(format!("{label} does not match {}", T::SCHEMA_FILE)),
            NsError::cause,
        )
    })
}
