//! The registry of subscribed repositories: `repos.json` in [`crate::host::config_dir`],
//! schema-validated on every read and write, changed only under its own lock
//! (`repos.lock`), one entry per absolute repository root. Knows nothing of ticks; never
//! opens a repository's state.

use std::path::{Path, PathBuf};

use jiff::Timestamp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::docs;
use crate::error::{NsError, NsResult};

pub const REGISTRY_VERSION: u32 = 1;

/// `repos.json`: every repository `tick --all` visits.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Registry {
    pub version: u32,
    pub repos: Vec<Subscription>,
}

/// One subscribed repository.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Subscription {
    /// The repository root, absolute (the registry lives outside every repository).
    pub path: PathBuf,
    pub subscribed_at: Timestamp,
}

/// Where the registry lives.
#[must_use]
pub fn file() -> PathBuf {
    crate::host::config_dir().join("repos.json")
}

impl Registry {
    /// Reads the registry; an absent file is an empty registry.
    ///
    /// # Errors
    /// When the file exists but cannot be read or does not validate (the error names it).
    pub fn load() -> NsResult<Self> {
        let reg: Option<Registry> = docs::read(&file()).map_err(|e| {
            e.hint(format!(
                "fix or delete {} and subscribe again with `nightshift subscribe DIR`",
                file().display()
            ))
        })?;
        Ok(reg.unwrap_or(Registry {
            version: REGISTRY_VERSION,
            repos: Vec::new(),
        }))
    }

    /// Whether `root` is subscribed.
    #[must_use]
    pub fn contains(&self, root: &Path) -> bool {
        self.repos.iter().any(|s| s.path == root)
    }
}

/// Runs `change` on the registry under its lock and writes the result if it changed.
/// Returns what `change` returned.
///
/// # Errors
/// When the registry cannot be locked, read, validated or written.
pub fn update<R>(change: impl FnOnce(&mut Registry) -> R) -> NsResult<R> {
    let dir = crate::host::config_dir();
    std::fs::create_dir_all(&dir).map_err(|e| {
        NsError::failure(format!("cannot create {}", dir.display())).cause(e.to_string())
    })?;
    let _lock = crate::lock::lock(&dir.join("repos.lock"))
        .map_err(|e| NsError::failure("cannot lock the repo registry").cause(e.to_string()))?;
    let mut reg = Registry::load()?;
    let before = reg.clone();
    let out = change(&mut reg);
    if reg != before {
        reg.version = REGISTRY_VERSION;
        docs::write(&file(), &reg)?;
    }
    Ok(out)
}

/// An absolute form of `dir` for registry lookups: canonical when it exists, else joined
/// onto the current directory (a deleted repository can still be unsubscribed).
#[must_use]
pub fn absolute(dir: &Path) -> PathBuf {
    std::fs::canonicalize(dir).unwrap_or_else(|_| {
        if dir.is_absolute() {
            dir.to_path_buf()
        } else {
            std::env::current_dir().unwrap_or_default().join(dir)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_key_or_a_relative_shape_is_refused() {
        let bad =
            r#"{"version":1,"repos":[{"path":"/r","subscribed_at":"2026-01-01T00:00:00Z","x":1}]}"#;
        let e = docs::parse::<Registry>(bad, "repos.json").unwrap_err();
        assert!(e.to_string().contains("repos.json is not valid"), "{e}");
        let good =
            r#"{"version":1,"repos":[{"path":"/r","subscribed_at":"2026-01-01T00:00:00Z"}]}"#;
        let r: Registry = docs::parse(good, "repos.json").unwrap();
        assert!(r.contains(Path::new("/r")));
    }
}
