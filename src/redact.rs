//! Known secrets never leave: the values of the configured auth routes' secrets and of every
//! variable listed under `redact:` in `nightshift.yaml` are replaced by `[redacted:NAME]` in
//! every file nightshift writes. The process keeps one table (filled by the tick and the job
//! wrapper from the config and their environment, and by the wrapper with a key command's
//! value once it has run it); [`crate::store::write_atomic`], the ledger's commit messages,
//! the prompts and the logs pass their text through [`apply`].
//!
//! It must never write a secret's value anywhere itself, and never redact a value so short
//! that replacing it would mangle ordinary text.

use std::borrow::Cow;
use std::sync::Mutex;

use crate::config::{Auth, Config};

/// Values shorter than this are not treated as secrets (they would match ordinary text).
pub const MIN_SECRET_LEN: usize = 8;

/// `(name, value)` pairs, longest value first.
static TABLE: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

/// Adds a secret under `name` (ignored when shorter than [`MIN_SECRET_LEN`] or known).
pub fn add(name: &str, value: &str) {
    let value = value.trim();
    if value.len() < MIN_SECRET_LEN {
        return;
    }
    let Ok(mut table) = TABLE.lock() else {
        return;
    };
    if table.iter().any(|(_, v)| v == value) {
        return;
    }
    table.push((name.to_owned(), value.to_owned()));
    table.sort_by_key(|(_, v)| std::cmp::Reverse(v.len()));
}

/// The variable names whose values are secrets under `config`: each agent's `api` route source
/// variable and every name under `redact:`.
#[must_use]
pub fn secret_vars(config: &Config) -> Vec<String> {
    let mut names: Vec<String> = config
        .agents
        .values()
        .filter_map(|a| match &a.auth {
            Auth::ApiEnv { source, .. } => Some(source.clone()),
            Auth::Subscription | Auth::ApiCommand { .. } => None,
        })
        .chain(config.redact.iter().cloned())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Adds the values, read from this process's environment, of every variable of
/// [`secret_vars`].
pub fn install(config: &Config) {
    for name in secret_vars(config) {
        if let Ok(v) = std::env::var(&name) {
            add(&name, &v);
        }
    }
}

/// The known secret values (for the deliverable scan), with their names.
#[must_use]
pub fn known() -> Vec<(String, String)> {
    TABLE.lock().map(|t| t.clone()).unwrap_or_default()
}

/// `text` with every known secret (and its JSON-escaped form) replaced by `[redacted:NAME]`.
#[must_use]
pub fn apply(text: &str) -> Cow<'_, str> {
    let Ok(table) = TABLE.lock() else {
        return Cow::Borrowed(text);
    };
    apply_with(&table, text)
}

/// `bytes` redacted when they are UTF-8 (other bytes are returned as they are).
#[must_use]
pub fn apply_bytes(bytes: &[u8]) -> Cow<'_, [u8]> {
    match std::str::from_utf8(bytes) {
        Ok(text) => match apply(text) {
            Cow::Borrowed(_) => Cow::Borrowed(bytes),
            Cow::Owned(s) => Cow::Owned(s.into_bytes()),
        },
        Err(_) => Cow::Borrowed(bytes),
    }
}

fn apply_with<'t>(table: &[(String, String)], text: &'t str) -> Cow<'t, str> {
    let mut out = Cow::Borrowed(text);
    for (name, value) in table {
        let mark = format!("[redacted:{name}]");
        let escaped = serde_json::to_string(value).unwrap_or_default();
        let escaped = escaped.trim_matches('"');
        for form in [value.as_str(), escaped] {
            if !form.is_empty() && out.contains(form) {
                out = Cow::Owned(out.replace(form, &mark));
            }
        }
    }
    out
}

/// Rewrites a file (a log) with every known secret redacted; a missing file is fine.
///
/// # Errors
/// When the file exists but cannot be read or rewritten.
pub fn rewrite_file(path: &std::path::Path) -> std::io::Result<()> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if let Cow::Owned(clean) = apply_bytes(&bytes) {
        std::fs::write(path, clean)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_values_and_escaped_forms_longest_first() {
        let table = vec![
            ("LONG".to_owned(), "sk-abcdef\"123456".to_owned()),
            ("SHORT".to_owned(), "sk-abcdef".to_owned()),
        ];
        let text = r#"raw sk-abcdef"123456, json "sk-abcdef\"123456", other sk-abcdef"#;
        assert_eq!(
            apply_with(&table, text),
            r#"raw [redacted:LONG], json "[redacted:LONG]", other [redacted:SHORT]"#
        );
        assert!(matches!(apply_with(&table, "clean"), Cow::Borrowed(_)));
    }

    #[test]
    fn short_values_are_not_secrets() {
        add("TINY", "abc");
        assert!(!known().iter().any(|(n, _)| n == "TINY"));
    }
}
