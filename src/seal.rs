//! Outcome authenticity: the job wrapper (and the tick, for integration outcomes) seals every
//! outcome file it writes with an HMAC-SHA256 over the file's exact bytes, keyed by a key
//! derived from a per-repository secret and the outcome's own path (stage, attempt and role),
//! and writes the seal beside it (`<role>.json.seal`) *before* the outcome itself. A tick
//! accepts an outcome only with a valid seal, so an outcome written by an agent (forged) or
//! copied from another attempt or role (foreign) is refused, naming the file.
//!
//! The repository secret lives outside the repository, in nightshift's own state directory
//! (`$NIGHTSHIFT_SEAL_DIR`, else `$XDG_STATE_HOME/nightshift/seal`, else
//! `~/.local/state/nightshift/seal`), mode 0600; no agent is given its path or value. Without
//! kernel confinement a same-user agent that goes looking for it can read it: the threat model
//! is in `memory/0017-outcome-seal.md`.
//!
//! It must never put the key in an environment, an argument, a log or any file under the
//! repository.

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::paths::Paths;

/// Overrides the directory of repository seal keys.
pub const SEAL_DIR_ENV: &str = "NIGHTSHIFT_SEAL_DIR";

/// The seal file of an outcome file.
#[must_use]
pub fn seal_path(outcome: &Path) -> PathBuf {
    let mut name = outcome.file_name().unwrap_or_default().to_os_string();
    name.push(".seal");
    outcome.with_file_name(name)
}

/// Writes `bytes` to `outcome` sealed: the seal first, then the outcome (both atomically).
///
/// # Errors
/// When the key cannot be read or made, or a file cannot be written.
pub fn write_sealed(paths: &Paths, outcome: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = key_dir().ok_or_else(|| std::io::Error::other("neither HOME nor a seal dir set"))?;
    write_sealed_in(&dir, paths, outcome, bytes, true)
}

/// As [`write_sealed`] without fsync, for a derived file (a cache) that every reader checks:
/// after a power loss it may be old, missing or mismatched with its seal, and is then ignored.
///
/// # Errors
/// When the key cannot be read or made, or a file cannot be written.
pub fn write_sealed_derived(paths: &Paths, file: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = key_dir().ok_or_else(|| std::io::Error::other("neither HOME nor a seal dir set"))?;
    write_sealed_in(&dir, paths, file, bytes, false)
}

fn write_sealed_in(
    dir: &Path,
    paths: &Paths,
    outcome: &Path,
    bytes: &[u8],
    sync: bool,
) -> std::io::Result<()> {
    let key = repo_key(dir, paths)?;
    let bytes = &crate::redact::apply_bytes(bytes);
    let mac = hex(&hmac(&attempt_key(&key, &paths.rel(outcome)), bytes));
    atomic(&seal_path(outcome), mac.as_bytes(), sync)?;
    atomic(outcome, bytes, sync)
}

/// Whether `bytes`, read from `outcome`, carry a valid seal.
#[must_use]
pub fn verify(paths: &Paths, outcome: &Path, bytes: &[u8]) -> bool {
    key_dir().is_some_and(|dir| verify_in(&dir, paths, outcome, bytes))
}

fn verify_in(dir: &Path, paths: &Paths, outcome: &Path, bytes: &[u8]) -> bool {
    let Ok(seal) = std::fs::read_to_string(seal_path(outcome)) else {
        return false;
    };
    let Ok(key) = repo_key(dir, paths) else {
        return false;
    };
    let want = hex(&hmac(&attempt_key(&key, &paths.rel(outcome)), bytes));
    constant_time_eq(seal.trim().as_bytes(), want.as_bytes())
}

fn atomic(path: &Path, bytes: &[u8], sync: bool) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    if sync {
        tmp.as_file().sync_all()?;
    }
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// The directory of repository keys.
fn key_dir() -> Option<PathBuf> {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    var(SEAL_DIR_ENV)
        .or_else(|| var("XDG_STATE_HOME").map(|d| d.join("nightshift/seal")))
        .or_else(|| var("HOME").map(|h| h.join(".local/state/nightshift/seal")))
}

/// The repository's 32-byte secret, created on first use (0600, never replaced).
fn repo_key(dir: &Path, paths: &Paths) -> std::io::Result<Vec<u8>> {
    let root = paths
        .root
        .canonicalize()
        .unwrap_or_else(|_| paths.root.clone());
    let id = hex(&Sha256::digest(root.to_string_lossy().as_bytes()));
    let file = dir.join(format!("{}.key", &id[..32]));
    if let Ok(k) = std::fs::read(&file)
        && k.len() == 32
    {
        return Ok(k);
    }
    std::fs::create_dir_all(dir)?;
    let mut fresh = vec![0u8; 32];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut fresh)?;
    let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
    tmp.write_all(&fresh)?;
    tmp.as_file().sync_all()?;
    // A hard link never replaces: the first writer's key wins and everyone reads it.
    match std::fs::hard_link(tmp.path(), &file) {
        Ok(()) => Ok(fresh),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => std::fs::read(&file),
        Err(e) => Err(e),
    }
}

fn attempt_key(repo_key: &[u8], rel_outcome: &str) -> [u8; 32] {
    hmac(repo_key, rel_outcome.as_bytes())
}

/// HMAC-SHA256 (RFC 2104).
fn hmac(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |b: u8| block.iter().map(|k| k ^ b).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(msg)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc4231_case_2() {
        let mac = hmac(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex(&mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn sealed_outcomes_verify_and_forged_or_moved_ones_do_not() {
        let d = tempfile::tempdir().unwrap();
        let paths = Paths::new(d.path().join("repo"));
        let keys = d.path().join("keys");
        let file = paths.root.join("state/handoffs/s/a1/worker.json");
        let other = paths.root.join("state/handoffs/s/a1/verifier.json");
        write_sealed_in(&keys, &paths, &file, b"{\"real\":1}", true).unwrap();
        assert!(verify_in(&keys, &paths, &file, b"{\"real\":1}"));
        assert!(!verify_in(&keys, &paths, &file, b"{\"forged\":1}"));
        std::fs::copy(seal_path(&file), seal_path(&other)).unwrap();
        assert!(!verify_in(&keys, &paths, &other, b"{\"real\":1}"));
        std::fs::remove_file(seal_path(&file)).unwrap();
        assert!(!verify_in(&keys, &paths, &file, b"{\"real\":1}"));
    }
}
