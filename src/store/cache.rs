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
//!
//! The stage files under `state/stages/` ([`super::split`]) have a cache of their own,
//! `state/.cache/stages.json`, keyed by the hot file's `cold_stamp` and `stage_count` (which
//! every write of a stage file changes) rather than a digest of ten thousand files. Neither
//! cache is fsynced: after a power loss one may be old, missing or mismatched with its seal,
//! and is then ignored.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use crate::paths::Paths;

/// The first line's prefix; a change of the cache's format changes it (old caches are ignored).
const MAGIC: &str = "nightshift-state-cache 1";

/// The cache file of `state.yaml`.
#[must_use]
pub fn path(paths: &Paths) -> PathBuf {
    paths.state_dir().join(".cache/state.json")
}

/// The cache file of the stage files.
#[must_use]
pub fn stages_path(paths: &Paths) -> PathBuf {
    paths.state_dir().join(".cache/stages.json")
}

/// The key of the stage files' cache: the hot file's stamp and count, and the change and
/// modification times of `state/stages/` (which a file saved there by rename changes, as
/// nightshift and most editors save; a file rewritten in place by hand is seen once the cache
/// is next rebuilt).
#[must_use]
pub fn stages_key(paths: &Paths, cold_stamp: u64, stage_count: u64) -> String {
    use std::os::unix::fs::MetadataExt;
    let dir = paths.state_dir().join(super::split::STAGES_DIR);
    let times = std::fs::metadata(dir).map_or((0, 0, 0, 0), |m| {
        (m.mtime(), m.mtime_nsec(), m.ctime(), m.ctime_nsec())
    });
    format!(
        "stamp {cold_stamp} count {stage_count} dir {}.{:09} {}.{:09}",
        times.0, times.1, times.2, times.3
    )
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
    load_at(paths, &path(paths), digest)
}

/// The cached value in `file` made under `key`, if its seal verifies.
#[must_use]
pub fn load_at<T: DeserializeOwned>(paths: &Paths, file: &Path, key: &str) -> Option<T> {
    let bytes = std::fs::read(file).ok()?;
    let nl = bytes.iter().position(|b| *b == b'\n')?;
    let head = std::str::from_utf8(&bytes[..nl]).ok()?;
    if head.strip_prefix(MAGIC)?.strip_prefix(' ')? != key {
        return None;
    }
    if !crate::seal::verify(paths, file, &bytes) {
        return None;
    }
    serde_json::from_slice(&bytes[nl + 1..]).ok()
}

/// Writes the cache of `value`, derived from the `state.yaml` bytes whose digest is `digest`.
/// Best effort: a cache that cannot be written is only a slower next read. Nothing is cached
/// when redaction would change the bytes (the file would then differ from the value).
pub fn store<T: Serialize>(paths: &Paths, digest: &str, value: &T) {
    store_at(paths, &path(paths), digest, value);
}

/// Writes the cache of `value` into `file` under `key` (best effort, as [`store`]).
pub fn store_at<T: Serialize>(paths: &Paths, file: &Path, key: &str, value: &T) {
    let mut bytes = format!("{MAGIC} {key}\n").into_bytes();
    if serde_json::to_writer(&mut bytes, value).is_err() {
        return;
    }
    bytes.push(b'\n');
    if let std::borrow::Cow::Owned(_) = crate::redact::apply_bytes(&bytes) {
        return;
    }
    if let Err(e) = crate::seal::write_sealed_derived(paths, file, &bytes) {
        remove(file);
        eprintln!("nightshift: cannot write {}: {e}", paths.rel(file));
    }
}

/// Removes a cache file (it is then rebuilt by the next reader).
pub fn remove(file: &Path) {
    let _ = std::fs::remove_file(file);
}
