//! Tolerant reading of JSON-lines output, shared by the vendor parsers so they all tolerate
//! the same things: a line that is not a JSON object is counted as garbage and skipped,
//! invalid UTF-8 is decoded lossily, and the input is read line by line. Never fails, never
//! interprets a field: what a field means belongs to each vendor's parser.

use serde_json::{Map, Value};

/// Calls `f` with each line of `bytes` that is a JSON object and returns how many non-empty
/// lines were not. Shared by the CLI parsers so they tolerate the same things.
pub(crate) fn for_each_object(bytes: &[u8], mut f: impl FnMut(&Map<String, Value>)) -> u32 {
    let mut garbage: u32 = 0;
    for raw in bytes.split(|b| *b == b'\n') {
        let text = String::from_utf8_lossy(raw);
        let line = text.trim();
        if line.is_empty() {
            continue;
        }
        match serde_json::from_str::<Value>(line) {
            Ok(Value::Object(object)) => f(&object),
            _ => garbage = garbage.saturating_add(1),
        }
    }
    garbage
}

/// `object[key]` as a string.
pub(crate) fn str_field(object: &Map<String, Value>, key: &str) -> Option<String> {
    object.get(key).and_then(Value::as_str).map(str::to_owned)
}

/// `object[key]` as an unsigned integer.
pub(crate) fn u64_field(object: &Map<String, Value>, key: &str) -> Option<u64> {
    object.get(key).and_then(Value::as_u64)
}
