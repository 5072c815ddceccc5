//! The derived cache of `state/state.yaml`, the way git's index sits beside the tree:
//! `state/.cache/state.json` holds the same state as JSON (which parses an order of magnitude
//! faster than YAML), headed by the SHA-256 of the `state.yaml` bytes it was derived from, and
//! sealed like an outcome ([`crate::seal`]) so that nothing but nightshift can make one a
//! reader trusts. A reader uses it only when the digest of the `state.yaml` it just read
//! matches and the seal verifies; anything else (missing, stale, corrupt, forged, an older
//! format) is ignored and the YAML is parsed and validated as before, then the cache is
//! rewritten. The cache is never committed to the ledger and never the source of truth:
//! `state.yaml` stays the file a person reads and `repair` restores.
//!
//! What the cache holds was validated against its schema when it was written (it is written
//! only from a validated state), so a hit is not validated again.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use crate::paths::Paths;

/// The first line's prefix; a change of the cache's format changes it (old caches are ignored).
const MAGIC: &str = "nightshift-state-cache 1";

/// The cache file.
#[must_use]
pub fn path(paths: &Paths) -> PathBuf {
    paths.state_dir().join(".cache/state.json")
}

/// `sha256:<hex>` of `bytes`.
#[must_use]
pub fn digest(bytes: &[u8]) -> String {
    let sum = Sha256::digest(bytes);
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256:");
    for b in sum {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// The cached value derived from the `state.yaml` whose digest is `digest`, if the cache holds
/// exactly that one (and its seal verifies).
#[must_use]
pub fn load<T: DeserializeOwned>(paths: &Paths, digest: &str) -> Option<T> {
    let file = path(paths);
    let bytes = std::fs::read(&file).ok()?;
    let nl = bytes.iter().position(|b| *b == b'\n')?;
    let head = std::str::from_utf8(&bytes[..nl]).ok()?;
    if head.strip_prefix(MAGIC)?.strip_prefix(' ')? != digest {
        return None;
    }
    if !crate::seal::verify(paths, &file, &bytes) {
        return None;
    }
    serde_json::from_slice(&bytes[nl + 1..]).ok()
}

/// Writes the cache of `value`, derived from the `state.yaml` bytes whose digest is `digest`.
/// Best effort: a cache that cannot be written is only a slower next read. Nothing is cached
/// when redaction would change the bytes (the file would then differ from the value).
pub fn store<T: Serialize>(paths: &Paths, digest: &str, value: &T) {
    let mut bytes = format!("{MAGIC} {digest}\n").into_bytes();
    if serde_json::to_writer(&mut bytes, value).is_err() {
        return;
    }
    bytes.push(b'\n');
    if let std::borrow::Cow::Owned(_) = crate::redact::apply_bytes(&bytes) {
        return;
    }
    let file = path(paths);
    if let Err(e) = crate::seal::write_sealed(paths, &file, &bytes) {
        remove(&file);
        eprintln!("nightshift: cannot write {}: {e}", paths.rel(&file));
    }
}

fn remove(file: &Path) {
    let _ = std::fs::remove_file(file);
}
