//! One ledger commit as one `git fast-import` process: the changed files' blobs, the trees,
//! the commit and the compare-and-swap of the ref, all in one stream.
//!
//! A stat cache (`state/.ledger-index`, derived, never committed) records the commit it
//! describes and, for every file in that commit's tree, its mode, size, mtime, ctime and inode.
//! A commit on top of that commit sends only the files whose stat differs (every nightshift
//! writer replaces a file by rename, so a changed file always has a new inode) and deletes the
//! ones that are gone; fast-import keeps every other entry of the parent's tree as it is. With
//! no usable cache (first commit, after `repair`, a cache for another commit) the whole tree is
//! sent once (`deleteall`), which also migrates an older ledger layout.
//!
//! Card copies and stage files are sharded in the ledger's tree (`state/cards/<xx>/<file>`,
//! `state/stages/<xx>/<file>`, `xx` the first byte of the SHA-256 of the first path component
//! below the folder, in hex) so that adding one card to ten thousand rewrites two small trees,
//! not one of ten thousand entries.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::git::{Git, GitError};
use crate::paths::{LEDGER_REF, STATE_DIR};

/// The durable entries of `state/` (files or directories, walked recursively); everything else
/// there (logs, registrations, caches, dot-files) stays out of the ledger.
pub(super) const DURABLE: [&str; 5] = ["state.yaml", "budget.json", "stages", "cards", "handoffs"];

/// The cache's format; a cache of another version is ignored (the whole tree is sent).
const CACHE_VERSION: u32 = 2;

/// A file written less than this long before the scan may still change within the same
/// timestamp tick without its stat changing: it is recorded as racy and sent again next time.
const RACY_NS: i128 = 1_000_000_000;

/// The stat of one file: git mode, size, mtime and ctime (ns), inode. `None` in the cache
/// means racy (always sent again).
pub(super) type Stat = [i128; 5];

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Cache {
    version: u32,
    /// The ledger commit whose tree these files are.
    pub(super) commit: String,
    /// The durable files outside the [`LEAVES`] folders.
    files: BTreeMap<String, Option<Stat>>,
    /// The stats of the [`LEAVES`] folders at that commit.
    #[serde(default)]
    dirs: BTreeMap<String, Stat>,
    /// For each [`LEAVES`] folder, the commit its side file ([`LeafCache`]) was written at.
    #[serde(default)]
    leaves: BTreeMap<String, String>,
}

/// The file stats of one [`LEAVES`] folder, in a side file of the cache
/// (`.ledger-index.<folder>`): a commit that finds the folder unchanged reads and writes
/// neither the folder's files nor this.
#[derive(Debug, Default, Serialize, Deserialize)]
struct LeafCache {
    commit: String,
    files: BTreeMap<String, Option<Stat>>,
}

impl Cache {
    /// The cache at `path`, `None` when missing, unreadable or of another version.
    pub(super) fn load(path: &Path) -> Option<Self> {
        let bytes = std::fs::read(path).ok()?;
        let cache: Self = serde_json::from_slice(&bytes).ok()?;
        (cache.version == CACHE_VERSION).then_some(cache)
    }

    /// Whether the cache holds the stat of the folder `rel`.
    #[cfg(test)]
    pub(super) fn has_dir(&self, rel: &str) -> bool {
        self.dirs.contains_key(rel)
    }

    /// The side file of `leaf`'s file stats, if it describes the commit this cache says.
    fn leaf(&self, cache_path: &Path, leaf: &str) -> Option<LeafCache> {
        let want = self.leaves.get(leaf)?;
        let bytes = std::fs::read(leaf_path(cache_path, leaf)).ok()?;
        let side: LeafCache = serde_json::from_slice(&bytes).ok()?;
        (&side.commit == want).then_some(side)
    }
}

/// Writes a derived file by rename, without fsync, in one write: a lost or stale cache only
/// makes the next commit send more (see `ledger::commit`).
fn save_derived<T: Serialize>(value: &T, path: &Path) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
    let bytes = serde_json::to_vec(value).map_err(std::io::Error::other)?;
    tmp.write_all(&bytes)?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// The side file of a [`LEAVES`] folder's file stats.
fn leaf_path(cache_path: &Path, leaf: &str) -> PathBuf {
    let mut name = cache_path.file_name().unwrap_or_default().to_os_string();
    name.push(".");
    name.push(leaf.rsplit('/').next().unwrap_or(leaf));
    cache_path.with_file_name(name)
}

/// One durable file found on disk: its path relative to the repo root and its stat.
struct Found {
    abs: PathBuf,
    stat: Stat,
}

/// Durable folders holding only files, each written by rename (never in place): while such a
/// folder's own stat is unchanged its listing and files are, so a commit neither walks it nor
/// reads its files' stats (ten thousand stage files and card copies cost one `stat` each).
///
/// nightshift writes these folders only under the tick lock, and notes every file it writes
/// ([`super::will_write`]), so a commit sends its own process's files without listing the
/// folder, and a folder's stat recorded within the filesystem's timestamp tick of a write is
/// still right for every nightshift writer (the next one notes its files whatever the stat
/// says). What is not seen at once is a file put there by something else in that same tick
/// (a few milliseconds): it enters the ledger with the folder's next change, and until then
/// the ledger's copy differs from the disk's, which is what the escape check looks at.
pub(super) const LEAVES: [&str; 2] = ["stages", "cards"];

/// The stat of the folder `dir`, `None` when it is not one.
pub(super) fn dir_stat(dir: &Path) -> Option<Stat> {
    std::fs::symlink_metadata(dir)
        .ok()
        .filter(std::fs::Metadata::is_dir)
        .map(|m| stat_of(&m, 0o040_000))
}

/// How a commit treats one [`LEAVES`] folder.
enum Leaf {
    /// Unchanged since the cached commit: not walked; its side file stays as it is.
    Kept { side: String },
    /// Changed since the cached commit by this process's writes alone (the folder's stat before
    /// the first of them is the cached one): not walked; the files written are sent, and the
    /// side file stays as it is (a later walk sends again what it lacks).
    Appended { side: String },
    /// Walked: its files are in `found`, compared with `old` (none known: all sent, after the
    /// folder's whole tree is dropped, so that a file gone since is gone from the tree too).
    Walked { old: Option<LeafCache> },
}

/// What [`scan`] found: the durable files (all but those of kept [`LEAVES`] folders), each
/// leaf folder's treatment, and the folders' stats.
struct Scanned {
    found: BTreeMap<String, Found>,
    leaves: BTreeMap<String, Leaf>,
    dirs: BTreeMap<String, Stat>,
}

/// Every durable file below `root`/state, keyed by its path relative to `root`, but those of
/// the [`LEAVES`] folders whose stat did not change since `cache` (or changed by the writes in
/// `wrote` alone: those files only).
fn scan(
    root: &Path,
    cache: Option<&Cache>,
    cache_path: &Path,
    wrote: &BTreeMap<String, super::Wrote>,
) -> Result<Scanned, GitError> {
    let mut out = Scanned {
        found: BTreeMap::new(),
        leaves: BTreeMap::new(),
        dirs: BTreeMap::new(),
    };
    let state = root.join(STATE_DIR);
    for name in DURABLE {
        let rel = format!("{STATE_DIR}/{name}");
        let abs = state.join(name);
        if LEAVES.contains(&name) {
            let stat = dir_stat(&abs);
            if let Some(stat) = stat {
                out.dirs.insert(rel.clone(), stat);
            }
            let cached = cache.and_then(|c| Some((c.dirs.get(&rel)?, c.leaves.get(&rel)?)));
            match (cached, wrote.get(&rel)) {
                // Written by this process only since the cached commit: its files alone.
                (Some((before, side)), Some(w))
                    if w.before.as_ref() == Some(before) && w.after == stat =>
                {
                    for file in &w.files {
                        walk(&abs.join(file), &format!("{rel}/{file}"), &mut out.found)?;
                    }
                    let side = side.clone();
                    out.leaves.insert(rel, Leaf::Appended { side });
                    continue;
                }
                (Some((before, side)), None) if stat.as_ref() == Some(before) => {
                    let side = side.clone();
                    out.leaves.insert(rel, Leaf::Kept { side });
                    continue;
                }
                _ => {}
            }
            let old = cache.and_then(|c| c.leaf(cache_path, &rel));
            out.leaves.insert(rel.clone(), Leaf::Walked { old });
        }
        walk(&abs, &rel, &mut out.found)?;
    }
    Ok(out)
}

/// Whether the ledger keeps the files of a [`LEAVES`] folder that are gone from disk:
/// nightshift never removes a stage file, so one missing (removed by hand) keeps its last
/// committed copy, which `nightshift repair` restores.
fn keeps_removed(leaf: &str) -> bool {
    leaf.strip_prefix(STATE_DIR)
        .and_then(|r| r.strip_prefix('/'))
        == Some("stages")
}

/// The stat of a file or folder: `mode` (git's), size, mtime and ctime (ns), inode.
fn stat_of(meta: &std::fs::Metadata, mode: i128) -> Stat {
    let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
    [
        mode,
        i128::from(meta.size()),
        ns(meta.mtime(), meta.mtime_nsec()),
        ns(meta.ctime(), meta.ctime_nsec()),
        i128::from(meta.ino()),
    ]
}

fn walk(abs: &Path, rel: &str, out: &mut BTreeMap<String, Found>) -> Result<(), GitError> {
    let meta = match std::fs::symlink_metadata(abs) {
        Ok(m) => m,
        // Vanished between the listing and the stat (a job wrapper's rename): absent now.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_at(abs, &e)),
    };
    let ft = meta.file_type();
    if ft.is_dir() {
        let entries = match std::fs::read_dir(abs) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_at(abs, &e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| io_at(abs, &e))?;
            let name = entry.file_name();
            if name.as_bytes().first() == Some(&b'.') {
                continue; // dot-files: temp files of atomic writes, caches
            }
            let Some(name) = name.to_str() else {
                return Err(GitError::Io(std::io::Error::other(format!(
                    "{}: a file name that is not UTF-8 cannot enter the ledger; rename or remove it",
                    entry.path().display()
                ))));
            };
            walk(&entry.path(), &format!("{rel}/{name}"), out)?;
        }
        return Ok(());
    }
    let mode = if ft.is_symlink() {
        0o120_000
    } else if ft.is_file() {
        if meta.mode() & 0o111 == 0 {
            0o100_644
        } else {
            0o100_755
        }
    } else {
        return Ok(()); // sockets, fifos: nothing to keep
    };
    let stat = stat_of(&meta, mode);
    out.insert(
        rel.to_owned(),
        Found {
            abs: abs.to_path_buf(),
            stat,
        },
    );
    Ok(())
}

fn io_at(path: &Path, e: &std::io::Error) -> GitError {
    GitError::Io(std::io::Error::new(
        e.kind(),
        format!("{}: {e}", path.display()),
    ))
}

/// Where a file of `state/` lives in the ledger's tree: card copies and stage files are
/// sharded.
pub(super) fn ledger_path(rel: &str) -> String {
    for dir in SHARDED {
        let prefix = format!("{STATE_DIR}/{dir}/");
        if let Some(rest) = rel.strip_prefix(&prefix).filter(|r| !r.is_empty()) {
            let first = rest.split('/').next().unwrap_or(rest);
            let shard = Sha256::digest(first.as_bytes())[0];
            return format!("{prefix}{shard:02x}/{rest}");
        }
    }
    rel.to_owned()
}

/// The folders of `state/` whose entries are sharded in the ledger's tree.
const SHARDED: [&str; 2] = ["cards", "stages"];

/// A path as fast-import reads it: C-quoted when it holds a quote, backslash or control byte.
fn quoted(path: &str) -> String {
    if !path.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20) {
        return path.to_owned();
    }
    let mut q = String::from("\"");
    for c in path.chars() {
        match c {
            '"' => q.push_str("\\\""),
            '\\' => q.push_str("\\\\"),
            '\n' => q.push_str("\\n"),
            c if (c as u32) < 0x20 => {
                let _ = write!(q, "\\{:03o}", c as u32);
            }
            c => q.push(c),
        }
    }
    q.push('"');
    q
}

/// fast-import frees and allocates a buffer of a few hundred KiB for every object, and glibc's
/// allocator hands the top of the heap back to the kernel each time (`brk` down, then up, and
/// the pages zeroed again): 10,000 `brk` calls and four fifths of the process's time for a
/// commit of 2,000 files. Keeping freed memory for the process's short life makes such a
/// commit five times faster; other allocators ignore the variable.
const FAST_IMPORT_MALLOC: (&str, &str) = ("MALLOC_TRIM_THRESHOLD_", "268435456");

/// Writes one commit of the durable files on top of `parent` (none: a root commit) and moves
/// the ledger ref to it, in one `git fast-import`. With `cache` (which must describe `parent`)
/// only the changed files are sent; without it the whole tree is. Returns the new commit.
///
/// fast-import moves the ref only if its current value is contained in the new commit (a
/// fast-forward) and still holds what it read (a ref transaction): a ledger moved by a
/// concurrent writer, or created meanwhile, is refused and nothing is moved.
pub(super) fn commit(
    git: &Git,
    cache_path: &Path,
    message: &str,
    parent: Option<&str>,
    cache: Option<&Cache>,
    wrote: &BTreeMap<String, super::Wrote>,
) -> Result<String, GitError> {
    #[cfg(test)]
    SENT.with(|n| n.set(0));
    let scan_start = now_ns();
    let Scanned {
        found,
        leaves,
        dirs,
    } = scan(git.root(), cache, cache_path, wrote)?;
    let mut stream = Vec::with_capacity(4096);
    let secs = scan_start / 1_000_000_000;
    let who = "nightshift <nightshift@localhost>";
    let _ = write!(
        stream,
        "feature done\ncommit {LEDGER_REF}\nmark :1\nauthor {who} {secs} +0000\ncommitter {who} {secs} +0000\ndata {}\n{message}\n",
        message.len()
    );
    if let Some(p) = parent {
        let _ = writeln!(stream, "from {p}");
    }
    if cache.is_none() {
        stream.extend_from_slice(b"deleteall\n");
    } else {
        for (rel, leaf) in &leaves {
            if matches!(leaf, Leaf::Walked { old: None }) && !keeps_removed(rel) {
                let _ = writeln!(stream, "D {}", quoted(rel));
            }
        }
    }
    // The file's stat at the cached commit: its leaf folder's side file, or the cache.
    let leaf_of = |rel: &str| {
        leaves
            .iter()
            .find(|(dir, _)| {
                rel.len() > dir.len()
                    && rel.starts_with(dir.as_str())
                    && rel.as_bytes()[dir.len()] == b'/'
            })
            .map(|(dir, leaf)| (dir.as_str(), leaf))
    };
    let mut files = BTreeMap::new();
    let mut leaf_files: BTreeMap<&str, BTreeMap<String, Option<Stat>>> = BTreeMap::new();
    for (rel, f) in &found {
        let leaf = leaf_of(rel);
        let old = match leaf {
            Some((_, Leaf::Walked { old })) => old.as_ref().and_then(|o| o.files.get(rel)),
            Some((_, Leaf::Kept { .. } | Leaf::Appended { .. })) => None,
            None => cache.and_then(|c| c.files.get(rel)),
        };
        let unchanged = old.is_some_and(|old| old.as_ref() == Some(&f.stat));
        if !unchanged {
            let data = if f.stat[0] == 0o120_000 {
                match std::fs::read_link(&f.abs) {
                    Ok(t) => Some(t.as_os_str().as_bytes().to_vec()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                    Err(e) => return Err(io_at(&f.abs, &e)),
                }
            } else {
                match std::fs::read(&f.abs) {
                    Ok(b) => Some(b),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                    Err(e) => return Err(io_at(&f.abs, &e)),
                }
            };
            let Some(data) = data else {
                continue; // vanished after the scan: absent
            };
            let _ = writeln!(
                stream,
                "M {:o} inline {}\ndata {}",
                f.stat[0],
                quoted(&ledger_path(rel)),
                data.len()
            );
            stream.extend_from_slice(&data);
            stream.push(b'\n');
            #[cfg(test)]
            SENT.with(|n| n.set(n.get() + 1));
        }
        let racy = f.stat[2] + RACY_NS >= scan_start;
        let stat = (!racy).then_some(f.stat);
        match leaf {
            Some((dir, _)) => {
                leaf_files.entry(dir).or_default().insert(rel.clone(), stat);
            }
            None => {
                files.insert(rel.clone(), stat);
            }
        }
    }
    if let Some(c) = cache {
        let walked_old = leaves.iter().filter_map(|(dir, leaf)| match leaf {
            Leaf::Walked { old: Some(o) } if !keeps_removed(dir) => Some((dir.as_str(), o)),
            _ => None,
        });
        let gone_leaf_files = walked_old.flat_map(|(dir, o)| {
            let now = leaf_files.get(dir);
            o.files
                .keys()
                .filter(move |r| now.is_none_or(|n| !n.contains_key(*r)))
        });
        for rel in c
            .files
            .keys()
            .filter(|r| !files.contains_key(*r) && leaf_of(r).is_none())
            .chain(gone_leaf_files)
        {
            let _ = writeln!(stream, "D {}", quoted(&ledger_path(rel)));
        }
    }
    stream.extend_from_slice(b"\nget-mark :1\ndone\n");
    let out = git.run_in(
        git.root(),
        &[
            "-c",
            "fastimport.unpackLimit=0",
            "fast-import",
            "--quiet",
            "--date-format=raw",
        ],
        &[FAST_IMPORT_MALLOC],
        Some(&stream),
    )?;
    let text = String::from_utf8_lossy(&out.stdout);
    let id = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| l.trim().to_owned())
        .filter(|l| l.len() >= 40 && l.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| GitError::Failed {
            args: "fast-import".into(),
            code: Some(0),
            stderr: format!("no commit id in its output: {text:?}"),
        })?;
    // The side files first, then the cache that names them: a crash between leaves a cache
    // naming older side files, which are then not trusted (the folder is sent whole).
    let mut sides = BTreeMap::new();
    for (dir, leaf) in &leaves {
        match leaf {
            Leaf::Kept { side } | Leaf::Appended { side } => {
                sides.insert(dir.clone(), side.clone());
            }
            Leaf::Walked { .. } => {
                let side = LeafCache {
                    commit: id.clone(),
                    files: leaf_files.remove(dir.as_str()).unwrap_or_default(),
                };
                if save_derived(&side, &leaf_path(cache_path, dir)).is_ok() {
                    sides.insert(dir.clone(), id.clone());
                }
            }
        }
    }
    let cache = Cache {
        version: CACHE_VERSION,
        commit: id.clone(),
        files,
        dirs,
        leaves: sides,
    };
    // A cache that cannot be written costs the next commit a full tree, nothing else.
    if save_derived(&cache, cache_path).is_err() {
        let _ = std::fs::remove_file(cache_path);
    }
    Ok(id)
}

#[cfg(test)]
thread_local! {
    /// How many files the last [`commit`] on this thread sent to git.
    pub(super) static SENT: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

fn now_ns() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i128::try_from(d.as_nanos()).unwrap_or(i128::MAX))
}
