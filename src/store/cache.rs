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
//! every write of a stage file changes) rather than a digest of ten thousand files. An
//! `add-stage` does not rewrite it whole: it writes the stages it adds into
//! `state/.cache/stages.add.json`, keyed by the key of the cache it extends and the new key,
//! so one card into ten thousand costs what one card costs; the next reader that loads every
//! stage folds a long one back into `stages.json`. Neither cache is fsynced: after a power
//! loss one may be old, missing or mismatched with its seal, and is then ignored.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use crate::engine::state::Stage;
use crate::paths::Paths;
use crate::schema::Remembered;

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

/// The file of stages appended to the stage files' cache since it was written.
#[must_use]
pub fn stages_add_path(paths: &Paths) -> PathBuf {
    paths.state_dir().join(".cache/stages.add.json")
}

/// The key of the stages appended by `add-stage` in [`stages_add_path`]: the key of the cache
/// they extend, then the key with them.
fn add_key(base: &str, key: &str) -> String {
    format!("{base} + {key}")
}

/// The key of the cache that appended stages keyed `add` extend, when they lead to `key`.
fn base_of<'k>(add: &'k str, key: &str) -> Option<&'k str> {
    add.strip_suffix(key)?.strip_suffix(" + ")
}

/// The key in a cache file's first line.
fn key_of(line: &str) -> Option<&str> {
    line.strip_prefix(MAGIC)?.strip_prefix(' ')
}

/// The key the cache `file` says it was made under (its first line), unverified: enough to
/// tell whether a writer may extend it, never to trust what it holds.
fn head_key(file: &Path) -> Option<String> {
    use std::io::{BufRead, Read};
    let mut line = String::new();
    std::io::BufReader::new(std::fs::File::open(file).ok()?.take(4096))
        .read_line(&mut line)
        .ok()?;
    Some(key_of(line.trim_end())?.to_owned())
}

/// Whether the stage files' cache (with its appended stages) says it was made under `key`:
/// no stage file changed since nightshift last wrote one (or the cache was rebuilt), so a
/// writer that only adds stages can extend it, and knows no stage file went missing meanwhile.
#[must_use]
pub fn stages_current(paths: &Paths, key: &str) -> bool {
    head_key(&stages_path(paths)).as_deref() == Some(key)
        || head_key(&stages_add_path(paths)).is_some_and(|k| base_of(&k, key).is_some())
}

/// The cached records of every stage under `key`: the cache, and the stages appended to it
/// since (each file's seal verified). More than a few hundred appended stages are written
/// back into the cache, so that the appended file stays small for the `add-stage` that
/// rewrites it.
#[must_use]
pub fn load_stages(paths: &Paths, key: &str) -> Option<Vec<Stage>> {
    let file = stages_path(paths);
    let (base_key, mut stages) = load_keyed::<Vec<Stage>>(paths, &file)?;
    if base_key == key {
        return Some(stages);
    }
    let add = stages_add_path(paths);
    let added = load_at::<Vec<Stage>>(paths, &add, &add_key(&base_key, key))?;
    let fold = added.len() > FOLD_AT;
    stages.extend(added);
    if fold {
        store_at(paths, &file, key, &stages);
        remove(&add);
    }
    Some(stages)
}

/// Appended stages past this many are folded into the stage files' cache by the next reader.
const FOLD_AT: usize = 256;

/// Records that `added` were appended to the stages cached under `before`, which are now the
/// stages under `after`: the appended file grows, the cache stays. When the cache is not the
/// one under `before` (stale, rebuilt since, missing) nothing is written: the next reader
/// rebuilds it from the files.
pub fn append_stages(paths: &Paths, before: &str, after: &str, added: &[Stage]) {
    let add = stages_add_path(paths);
    if head_key(&stages_path(paths)).as_deref() == Some(before) {
        store_at(paths, &add, &add_key(before, after), &added);
        return;
    }
    let Some(base) = head_key(&add).and_then(|k| base_of(&k, before).map(str::to_owned)) else {
        remove(&add);
        return;
    };
    match load_at::<Vec<Stage>>(paths, &add, &add_key(&base, before)) {
        Some(mut all) => {
            all.extend_from_slice(added);
            store_at(paths, &add, &add_key(&base, after), &all);
        }
        None => remove(&add),
    }
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

/// The cache of a remembered document (`config`, `budget`): its parsed, validated value.
#[must_use]
pub fn doc_path(paths: &Paths, name: &str) -> PathBuf {
    paths.state_dir().join(format!(".cache/{name}.json"))
}

/// The key of a remembered document's cache: the digest of its bytes and of its schema.
#[must_use]
pub fn doc_key<T: Remembered>(bytes: &[u8]) -> String {
    format!(
        "{} schema {}",
        digest(bytes),
        digest(T::SCHEMA_TEXT.as_bytes())
    )
}

/// The value of the document `name` whose bytes are `bytes`, when it was parsed and validated
/// before under the same schema (and the cache's seal verifies).
#[must_use]
pub fn load_doc<T: Remembered>(paths: &Paths, name: &str, bytes: &[u8]) -> Option<T> {
    load_at(paths, &doc_path(paths, name), &doc_key::<T>(bytes))
}

/// Remembers `value`, parsed and validated from `bytes` (best effort, as [`store`]).
pub fn store_doc<T: Remembered>(paths: &Paths, name: &str, bytes: &[u8], value: &T) {
    store_at(paths, &doc_path(paths, name), &doc_key::<T>(bytes), value);
}

/// The document `name` whose bytes are `bytes`: remembered ([`load_doc`]), or `parse`d (and
/// validated) and then remembered.
///
/// # Errors
/// `parse`'s, when the bytes were not remembered.
pub fn remembered<T: Remembered>(
    paths: &Paths,
    name: &str,
    bytes: &[u8],
    parse: impl FnOnce() -> crate::error::NsResult<T>,
) -> crate::error::NsResult<T> {
    if let Some(value) = load_doc(paths, name, bytes) {
        return Ok(value);
    }
    let value = parse()?;
    store_doc(paths, name, bytes, &value);
    Ok(value)
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
    load_if(paths, file, |k| k == key).map(|(_, v)| v)
}

/// The cached value in `file` and the key it was made under, if its seal verifies.
fn load_keyed<T: DeserializeOwned>(paths: &Paths, file: &Path) -> Option<(String, T)> {
    load_if(paths, file, |_| true)
}

fn load_if<T: DeserializeOwned>(
    paths: &Paths,
    file: &Path,
    want: impl Fn(&str) -> bool,
) -> Option<(String, T)> {
    let bytes = std::fs::read(file).ok()?;
    let nl = bytes.iter().position(|b| *b == b'\n')?;
    let head = std::str::from_utf8(&bytes[..nl]).ok()?;
    let key = key_of(head)?;
    if !want(key) || !crate::seal::verify(paths, file, &bytes) {
        return None;
    }
    Some((
        key.to_owned(),
        serde_json::from_slice(&bytes[nl + 1..]).ok()?,
    ))
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
