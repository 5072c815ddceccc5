//! The one writer path for nightshift's files: unique temp file in the same directory, fsync,
//! rename, fsync the directory. Also the validated readers of `state.yaml` and `budget.json`,
//! the reconciliation of those files with the ledger at the start of every tick, and [`persist`],
//! the one path by which ticks and operator commands change state. A file
//! that fails validation is never overwritten by a tick: the error names the file and line and
//! the hint names `nightshift repair`.

use std::io::Write;
use std::path::Path;

use serde::Serialize;

use crate::config::Config;
use crate::engine::budget::Budget;
use crate::engine::effect::Event;
use crate::engine::state::{Stage, State};
use crate::error::{NsError, NsResult};
use crate::git::Git;
use crate::paths::Paths;
use crate::schema;
use crate::{failpoint, ledger};

pub mod cache;
pub mod split;

const REPAIR_HINT: &str =
    "run `nightshift repair` to restore it from the ledger (branch nightshift/ledger)";

/// The folder `path` is written into, and the error of a failed write of it.
fn target(path: &Path) -> NsResult<(&Path, impl Fn(std::io::Error) -> NsError + Copy + '_)> {
    let dir = path
        .parent()
        .ok_or_else(|| NsError::bug(format!("{} has no parent directory", path.display())))?;
    let io = move |e: std::io::Error| {
        NsError::failure(format!("cannot write {}", path.display())).cause(e.to_string())
    };
    Ok((dir, io))
}

/// Creates `path`, which should not exist yet, and writes `bytes` (redacted) straight into it,
/// fsyncing it when `sync_file`: no temp file and no rename, so the folder changes once, not
/// three times (1,000 new stage files: 41–52 ms instead of 58–73 ms on ext4 here). Only for
/// the files `state/.adding` names: nothing reads them before the commit point, and the next
/// writer removes them when this one died before it, so a half-written one is never read. A
/// name already taken (a stray file) is replaced by rename as usual. Returns the directory.
fn create_into<'p>(path: &'p Path, bytes: &[u8], sync_file: bool) -> NsResult<&'p Path> {
    use std::os::unix::fs::OpenOptionsExt;
    let (dir, io) = target(path)?;
    let open = || {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
    };
    ledger::will_write(path);
    let opened = match open() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map_err(io)?;
            open()
        }
        made => made,
    };
    let mut file = match opened {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return rename_into(path, bytes, sync_file);
        }
        made => made.map_err(io)?,
    };
    file.write_all(&crate::redact::apply_bytes(bytes))
        .map_err(io)?;
    if sync_file {
        file.sync_all().map_err(io)?;
    }
    ledger::did_write(path);
    Ok(dir)
}

/// Writes `bytes` (redacted) to a temp file beside `path` and renames it into place, fsyncing
/// the file first when `sync_file`. Returns the directory, whose fsync is the caller's.
fn rename_into<'p>(path: &'p Path, bytes: &[u8], sync_file: bool) -> NsResult<&'p Path> {
    let (dir, io) = target(path)?;
    // Before the temp file changes the folder: the ledger's next commit sends this file.
    ledger::will_write(path);
    let temp = || tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir);
    let mut tmp = match temp() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map_err(io)?;
            temp()
        }
        made => made,
    }
    .map_err(io)?;
    tmp.write_all(&crate::redact::apply_bytes(bytes))
        .map_err(io)?;
    if sync_file {
        tmp.as_file().sync_all().map_err(io)?;
    }
    tmp.persist(path).map_err(|e| io(e.error))?;
    ledger::did_write(path);
    Ok(dir)
}

/// Writes `bytes` to `path` atomically and durably.
///
/// # Errors
/// When any step of temp-write, fsync, rename or directory fsync fails.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> NsResult<()> {
    let dir = rename_into(path, bytes, true)?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| {
            NsError::failure(format!("cannot write {}", path.display())).cause(e.to_string())
        })
}

/// Writes many files atomically (temp file, rename) and makes them durable together: a large
/// batch with one flush of their filesystem (`syncfs`; elsewhere than Linux, one fsync per
/// file) and one fsync of each directory, so `add-stage` of N cards costs one flush, not 2N
/// fsyncs; a few files (one card's) with an fsync each, which does not wait for whatever else
/// the filesystem holds unwritten. Nothing that refers to these files may be written before
/// this returns.
///
/// # Errors
/// When a write, rename or the flush fails; files renamed before the failure stay.
pub fn write_batch(files: &[(std::path::PathBuf, Vec<u8>)]) -> NsResult<()> {
    let files: Vec<(&Path, &[u8], bool)> = files
        .iter()
        .map(|(p, b)| (p.as_path(), b.as_slice(), false))
        .collect();
    write_files(&files)
}

/// [`write_batch`] of borrowed paths and bytes, each with whether it is new (named in
/// `state/.adding`, created under its name: [`create_into`]).
fn write_files(files: &[(&Path, &[u8], bool)]) -> NsResult<()> {
    /// Up to this many files, an fsync each is cheaper than flushing the whole filesystem.
    const FSYNC_EACH: usize = 8;
    let flush = cfg!(target_os = "linux") && files.len() > FSYNC_EACH;
    let mut dirs: Vec<&Path> = Vec::new();
    for (path, bytes, new) in files {
        let dir = if *new {
            create_into(path, bytes, !flush)?
        } else {
            rename_into(path, bytes, !flush)?
        };
        if !dirs.contains(&dir) {
            dirs.push(dir);
        }
    }
    for dir in dirs {
        let io = |e: std::io::Error| {
            NsError::failure(format!("cannot flush {}", dir.display())).cause(e.to_string())
        };
        let d = std::fs::File::open(dir).map_err(io)?;
        #[cfg(target_os = "linux")]
        if flush {
            rustix::fs::syncfs(&d).map_err(|e| io(e.into()))?;
        }
        d.sync_all().map_err(io)?;
    }
    Ok(())
}

/// Writes a derived file (a cache that can be recomputed) by rename, without fsync: after a
/// power loss it may be old or missing, never torn, and every reader checks it.
fn write_derived(path: &Path, bytes: &[u8]) -> NsResult<()> {
    let (dir, io) = target(path)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(io)?;
    tmp.write_all(bytes).map_err(io)?;
    tmp.persist(path).map_err(|e| io(e.error))?;
    Ok(())
}

/// Writes a value as pretty JSON, atomically.
///
/// # Errors
/// As [`write_atomic`], or when the value cannot be serialised.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> NsResult<()> {
    write_atomic(path, &json_bytes(path, value)?)
}

/// The bytes [`write_json`] writes for `value` (pretty JSON and a newline).
fn json_bytes<T: Serialize>(path: &Path, value: &T) -> NsResult<Vec<u8>> {
    let mut text = serde_json::to_vec_pretty(value)
        .map_err(|e| NsError::bug(format!("cannot serialise {}: {e}", path.display())))?;
    text.push(b'\n');
    Ok(text)
}

/// Serialises the state as YAML.
///
/// # Errors
/// When serialisation fails (a bug).
pub fn state_yaml(state: &State) -> NsResult<String> {
    serde_saphyr::to_string(state)
        .map_err(|e| NsError::bug(format!("cannot serialise state.yaml: {e}")))
}

fn read_text(path: &Path, label: &str) -> NsResult<String> {
    let bytes = read_bytes(path, label)?;
    String::from_utf8(bytes).map_err(|e| {
        NsError::state(format!("{label} cannot be read"))
            .cause(e.to_string())
            .hint(REPAIR_HINT)
    })
}

fn read_bytes(path: &Path, label: &str) -> NsResult<Vec<u8>> {
    std::fs::read(path).map_err(|e| {
        let what = if e.kind() == std::io::ErrorKind::NotFound {
            "is missing"
        } else {
            "cannot be read"
        };
        NsError::state(format!("{label} {what}"))
            .cause(e.to_string())
            .hint(REPAIR_HINT)
    })
}

/// Reads the whole state (no reconciliation): the hot file `state/state.yaml` and the stage
/// files under `state/stages/` ([`split`]). Each comes from its derived cache ([`cache`]) when
/// that was made from exactly these files; otherwise it is parsed and validated and the cache
/// rewritten.
///
/// # Errors
/// A state-kind error naming the file (and line) when one is missing, unreadable or invalid.
pub fn read_state_file(paths: &Paths) -> NsResult<State> {
    let hot = read_hot_file(paths)?;
    let cold = read_cold(paths, &hot)?;
    Ok(split::merge(hot, cold))
}

/// Reads and validates the hot file `state/state.yaml` alone: its stages are only the hot ones
/// (in a version-1 file, all of them).
///
/// # Errors
/// A state-kind error naming the file (and line) when it is missing, unreadable or invalid.
pub fn read_hot_file(paths: &Paths) -> NsResult<State> {
    const LABEL: &str = "state/state.yaml";
    let bytes = read_bytes(&paths.state_file(), LABEL)?;
    let digest = cache::digest(&bytes);
    if let Some(state) = cache::load::<State>(paths, &digest)
        && known_version(state.version)
    {
        return Ok(state);
    }
    let text = String::from_utf8(bytes).map_err(|e| {
        NsError::state(format!("{LABEL} cannot be read"))
            .cause(e.to_string())
            .hint(REPAIR_HINT)
    })?;
    let state = parse_state(&text, LABEL)?;
    cache::store(paths, &digest, &state);
    Ok(state)
}

/// The records of the stage files the hot file counts, from their cache or the files.
fn read_cold(paths: &Paths, hot: &State) -> NsResult<Vec<Stage>> {
    if hot.stage_count == 0 {
        return Ok(Vec::new());
    }
    let key = cache::stages_key(paths, hot.cold_stamp, hot.stage_count);
    if let Some(cold) = cache::load_stages(paths, &key)
        && cold.len() as u64 == hot.stage_count
    {
        return Ok(cold);
    }
    let cold = split::read_files(paths, hot.stage_count)?;
    store_stages_cache(paths, &key, &cold);
    Ok(cold)
}

/// Writes the stage files' cache of `stages` under `key`, dropping stages appended to an older
/// one.
fn store_stages_cache(paths: &Paths, key: &str, stages: &[Stage]) {
    cache::store_at(paths, &cache::stages_path(paths), key, &stages);
    cache::remove(&cache::stages_add_path(paths));
}

fn known_version(v: u32) -> bool {
    v == 1 || v == crate::engine::state::STATE_VERSION
}

/// Parses and validates the text of a hot file (its stages are the hot ones only).
///
/// # Errors
/// A state-kind error naming `label` and the line.
pub fn parse_state(text: &str, label: &str) -> NsResult<State> {
    let state: State = schema::parse_yaml(text, label).map_err(to_state_error)?;
    if !known_version(state.version) {
        return Err(NsError::state(format!(
            "{label}: version {} is not supported",
            state.version
        ))
        .hint(REPAIR_HINT));
    }
    Ok(state)
}

/// Reads and validates `state/budget.json`; the bytes a reader validated before (under the
/// same schema) are taken from their cache ([`cache::remembered`]) without validating again.
///
/// # Errors
/// A state-kind error naming the file, line and column when it is missing or invalid.
pub fn read_budget_file(paths: &Paths) -> NsResult<Budget> {
    let text = read_text(&paths.budget_file(), "state/budget.json")?;
    cache::remembered(paths, "budget", text.as_bytes(), || {
        parse_budget(&text, "state/budget.json")
    })
}

/// Reads and validates `nightshift.yaml` ([`Config::load`]), taking the parsed document from
/// its cache when these bytes were parsed and validated before: every tick, `status` and job
/// reads the same few hundred bytes, and building the schema's validator cost more than the
/// rest of an idle command. The checks no schema says ([`Config::from_raw`]) run every time.
///
/// # Errors
/// As [`Config::load`].
pub fn read_config(paths: &Paths) -> NsResult<Config> {
    let text = Config::read_text(&paths.config())?;
    let raw = cache::remembered(paths, "config", text.as_bytes(), || {
        Config::parse_raw(&text)
    })?;
    Config::from_raw(raw)
}

/// Parses and validates budget text.
///
/// # Errors
/// A state-kind error naming `label`.
pub fn parse_budget(text: &str, label: &str) -> NsResult<Budget> {
    schema::parse_json(text, label).map_err(to_state_error)
}

fn to_state_error(e: NsError) -> NsError {
    NsError {
        code: crate::error::EXIT_STATE,
        hint: Some(REPAIR_HINT.into()),
        ..e
    }
}

/// Writes the stage files that changed, then the budget, then the hot file, which is the
/// commit point: a crash before it leaves the old state whole (new stage files are numbered
/// past its count and named in `state/.adding`, and the next writer's [`load_reconciled`]
/// removes them before anything else; a stage that
/// turned cold is still in the old hot file, which wins); a crash between the budget and the
/// hot file leaves a budget one seq ahead, which [`load_reconciled`] rolls back. Updates the
/// state's record of what the files hold.
///
/// # Errors
/// When a value fails validation (nothing is written then) or a write fails.
pub fn save(paths: &Paths, state: &mut State, budget: &Budget) -> NsResult<()> {
    save_with(paths, state, budget, &[])
}

/// [`save`], writing `copies` (new stages' card copies) with the stage files.
fn save_with(
    paths: &Paths,
    state: &mut State,
    budget: &Budget,
    copies: &[(std::path::PathBuf, Vec<u8>)],
) -> NsResult<()> {
    let plan = split::plan(state);
    schema::check(&plan.hot, "state/state.yaml")?;
    schema::check(budget, "state/budget.json")?;
    // Every file is validated before anything is written.
    let files = stage_files(paths, &plan.files, &plan.hot.packs)?;
    let hot = plan.hot;
    if write_stage_files(paths, &files, copies)? {
        // Ready before the hot file that keys it, so no reader rebuilds it from the files.
        let key = cache::stages_key(paths, hot.cold_stamp, hot.stage_count);
        store_stages_cache(paths, &key, &state.stages);
    }
    write_hot(paths, &hot, budget, &files)?;
    split::saved(state, &hot);
    Ok(())
}

/// Stage files to write: their paths and bytes, validated; and the ids of the new ones, one a
/// line (what `state/.adding` names while they are written).
struct StageFiles {
    /// (path, bytes, new): a new stage's file (named in `state/.adding`) or a stage's file
    /// written again.
    files: Vec<(std::path::PathBuf, Vec<u8>, bool)>,
    added: String,
}

/// Validates and serialises the stage files `(order, stage, new)`: the new stages in one pack
/// when the hot file that will count them lists one at their first number (`packs`), else a
/// file each.
fn stage_files(paths: &Paths, plan: &[(u64, &Stage, bool)], packs: &[u64]) -> NsResult<StageFiles> {
    let new: Vec<&Stage> = plan.iter().filter(|f| f.2).map(|f| f.1).collect();
    let pack = plan
        .iter()
        .find(|f| f.2)
        .map(|f| f.0)
        .filter(|first| packs.contains(first));
    let own: Vec<&(u64, &Stage, bool)> = plan.iter().filter(|f| !(f.2 && pack.is_some())).collect();
    let texts = crate::par::map(&own, |(order, stage, _)| {
        let file = split::StageFile {
            order: *order,
            stage: (*stage).clone(),
        };
        let label = format!("state/{}/{}.yaml", split::STAGES_DIR, stage.id);
        schema::check(&file, &label)?;
        serde_saphyr::to_string(&file)
            .map_err(|e| NsError::bug(format!("cannot serialise {label}: {e}")))
    });
    let mut out = StageFiles {
        files: Vec::with_capacity(own.len() + 1),
        added: String::new(),
    };
    for ((_, stage, new), text) in own.iter().zip(texts) {
        if *new {
            out.added.push_str(stage.id.as_str());
            out.added.push('\n');
        }
        out.files.push((
            split::stage_path(paths, &stage.id),
            text?.into_bytes(),
            *new,
        ));
    }
    if let Some(first) = pack {
        let name = split::pack_name(first);
        out.added.push_str(split::PACK_LINE);
        out.added.push_str(&name);
        out.added.push('\n');
        out.files.push((
            split::pack_path(paths, first),
            split::pack_bytes(paths, first, &new)?,
            true,
        ));
    }
    Ok(out)
}

/// Writes the stage files and `with` (the new stages' card copies), flushed together, after
/// the intent naming the new stages and the copies. Returns whether the stage files were
/// written as serialised (redaction changed none), so that a cache of their records can be
/// written.
fn write_stage_files(
    paths: &Paths,
    files: &StageFiles,
    with: &[(std::path::PathBuf, Vec<u8>)],
) -> NsResult<bool> {
    if !files.added.is_empty() {
        let mut intent = files.added.clone();
        for (path, _) in with {
            if let Some(name) = path.file_name().and_then(|n| n.to_str()) {
                intent.push_str(split::COPY_LINE);
                intent.push_str(name);
                intent.push('\n');
            }
        }
        write_atomic(&split::adding_path(paths), intent.as_bytes())?;
    }
    if files.files.is_empty() && with.is_empty() {
        return Ok(false);
    }
    // The card copies are new when the intent names them (it does whenever stages are added).
    let copies_new = !files.added.is_empty();
    let all: Vec<(&Path, &[u8], bool)> = with
        .iter()
        .map(|(p, b)| (p.as_path(), b.as_slice(), copies_new))
        .chain(
            files
                .files
                .iter()
                .map(|(p, b, new)| (p.as_path(), b.as_slice(), *new)),
        )
        .collect();
    write_files(&all)?;
    failpoint::hit("after-stage-files");
    Ok(files
        .files
        .iter()
        .all(|(_, b, _)| matches!(crate::redact::apply_bytes(b), std::borrow::Cow::Borrowed(_))))
}

/// Writes the budget, then the hot file (the commit point) with its cache, then drops the
/// intent of the stage files just written.
fn write_hot(paths: &Paths, hot: &State, budget: &Budget, files: &StageFiles) -> NsResult<()> {
    let bytes = json_bytes(&paths.budget_file(), budget)?;
    write_atomic(&paths.budget_file(), &bytes)?;
    // Validated before it was written: the next reader need not validate it again.
    cache::store_doc(paths, "budget", &bytes, budget);
    failpoint::hit("after-budget-write");
    let yaml = state_yaml(hot)?;
    // The next reader finds the hot state already parsed (unless redaction changes the file).
    if let std::borrow::Cow::Borrowed(_) = crate::redact::apply_bytes(yaml.as_bytes()) {
        cache::store(paths, &cache::digest(yaml.as_bytes()), hot);
    }
    write_atomic(&paths.state_file(), yaml.as_bytes())?;
    failpoint::hit("after-state-write");
    if !files.added.is_empty() {
        let _ = std::fs::remove_file(split::adding_path(paths));
    }
    Ok(())
}

/// The queue as `add-stage` reads it: the hot file alone when that is enough, else everything.
pub enum ForAdd {
    /// The hot file (its stages the hot ones only) and the budget, in step with the ledger; no
    /// stage file changed since nightshift last wrote one, so a stage exists exactly when its
    /// file does.
    Hot(State, Budget),
    /// The whole state and budget, reconciled ([`load_reconciled`]).
    Full(State, Budget),
}

/// Loads the queue for `add-stage` under the tick lock. Adding stages needs only their
/// number, the ids in use (a file per stage) and the hot file to stay right, so when the files
/// are in step with the ledger and with the stage files' cache the cold stages are not read at
/// all, and one card into ten thousand costs what one card into ten costs; otherwise (an old
/// layout, a crash to recover from, a stage file changed by hand) it is [`load_reconciled`].
///
/// # Errors
/// As [`load_reconciled`].
pub fn load_for_add(paths: &Paths, git: &Git) -> NsResult<ForAdd> {
    let hot = read_hot_file(paths)?;
    if hot.version == crate::engine::state::STATE_VERSION {
        split::clear_leftovers(paths, hot.stage_count)?;
        let budget = read_budget_file(paths)?;
        let key = cache::stages_key(paths, hot.cold_stamp, hot.stage_count);
        if budget.seq == hot.seq
            && cached_ledger_seq(paths) == Some(hot.seq)
            && (hot.stage_count == 0 || cache::stages_current(paths, &key))
        {
            return Ok(ForAdd::Hot(hot, budget));
        }
    }
    let (state, budget) = load_reconciled(paths, || Ok(git))?;
    Ok(ForAdd::Full(state, budget))
}

/// Persists new stages `added` onto a queue loaded as [`ForAdd::Hot`], and commits: their
/// files (numbered past the count) and `copies` (their card copies) with one flush, the stage
/// files' cache extended by them, the budget, the hot file counting them (the commit point, as
/// in [`save`]), one ledger commit. Nothing here reads or writes another stage's file.
///
/// # Errors
/// When validation, a write, or the ledger commit fails.
pub fn append(
    paths: &Paths,
    git: &Git,
    (mut hot, mut budget): (State, Budget),
    added: &[Stage],
    copies: &[(std::path::PathBuf, Vec<u8>)],
    events: &[Event],
) -> NsResult<()> {
    next_seq(&mut hot, &mut budget, events);
    let before = cache::stages_key(paths, hot.cold_stamp, hot.stage_count);
    let first = hot.stage_count;
    let plan: Vec<(u64, &Stage, bool)> = added
        .iter()
        .zip(first..)
        .map(|(s, o)| (o, s, true))
        .collect();
    hot.stage_count += added.len() as u64;
    hot.cold_stamp = hot.seq;
    if split::packed(added.len()) {
        hot.packs.push(first);
    }
    schema::check(&hot, "state/state.yaml")?;
    schema::check(&budget, "state/budget.json")?;
    let files = stage_files(paths, &plan, &hot.packs)?;
    if write_stage_files(paths, &files, copies)? {
        let after = cache::stages_key(paths, hot.cold_stamp, hot.stage_count);
        if first == 0 {
            store_stages_cache(paths, &after, added);
        } else {
            cache::append_stages(paths, &before, &after, added);
        }
    }
    write_hot(paths, &hot, &budget, &files)?;
    // The message names the stages its events are about, from a state that holds them.
    let mut view = hot;
    view.stages.extend(added.iter().cloned());
    committed(paths, git, &view, &budget)
}

/// The hot state (its stages are the hot ones only) and budget at the ledger head, if any.
///
/// # Errors
/// When git fails or the ledger's copy is invalid.
pub fn ledger_state(git: &Git) -> NsResult<Option<(State, Option<Budget>)>> {
    let read = |p: &str| {
        ledger::read_file(git, p).map_err(|e| NsError::from(e).within("cannot read the ledger"))
    };
    let Some(bytes) = read("state/state.yaml")? else {
        return Ok(None);
    };
    let state = parse_state(
        &String::from_utf8_lossy(&bytes),
        "state/state.yaml at the ledger head",
    )?;
    let budget = match read("state/budget.json")? {
        Some(b) => Some(parse_budget(
            &String::from_utf8_lossy(&b),
            "state/budget.json at the ledger head",
        )?),
        None => None,
    };
    Ok(Some((state, budget)))
}

/// The whole state at a ledger commit, from its hot file and its stage files (one `ls-tree`,
/// one `cat-file --batch`), with the raw stage files (path under `state/stages/` on disk,
/// bytes) for a restore, and the commit's budget.
///
/// # Errors
/// When git fails, the commit holds no state, or a file in it is invalid.
pub fn ledger_full_state(git: &Git, commit: &str) -> NsResult<LedgerState> {
    let stages = ledger::list(git, commit, &[&ledger_stages_dir()])
        .map_err(|e| NsError::from(e).within("cannot read the ledger"))?;
    ledger_full_state_listed(git, commit, &stages)
}

/// `state/stages`, as a path in the ledger's tree.
#[must_use]
pub fn ledger_stages_dir() -> String {
    format!("{}/{}", crate::paths::STATE_DIR, split::STAGES_DIR)
}

/// As [`ledger_full_state`], given the listing of the commit's stage files (one process less
/// for a caller that lists other folders in the same `ls-tree`).
///
/// # Errors
/// When git fails, the commit holds no state, or a file in it is invalid.
pub fn ledger_full_state_listed(
    git: &Git,
    commit: &str,
    stages: &[String],
) -> NsResult<LedgerState> {
    let within = |e: crate::git::GitError| NsError::from(e).within("cannot read the ledger");
    let mut specs = vec![
        format!("{commit}:state/state.yaml"),
        format!("{commit}:state/budget.json"),
    ];
    specs.extend(stages.iter().map(|p| format!("{commit}:{p}")));
    let mut blobs = ledger::cat_batch(git, &specs).map_err(within)?.into_iter();
    let label = format!("state/state.yaml at ledger commit {}", short(commit));
    let hot_bytes = blobs.next().flatten().ok_or_else(|| {
        NsError::state(format!(
            "ledger commit {} holds no state/state.yaml",
            short(commit)
        ))
        .hint(REPAIR_HINT)
    })?;
    let budget_bytes = blobs.next().flatten();
    let hot = parse_state(&String::from_utf8_lossy(&hot_bytes), &label)?;
    let budget = match &budget_bytes {
        Some(b) => Some(parse_budget(
            &String::from_utf8_lossy(b),
            &format!("state/budget.json at ledger commit {}", short(commit)),
        )?),
        None => None,
    };
    let mut files = Vec::with_capacity(stages.len());
    let mut parsed = Vec::with_capacity(stages.len());
    for (path, blob) in stages.iter().zip(blobs) {
        let Some(bytes) = blob else { continue };
        let name = path.rsplit('/').next().unwrap_or(path).to_owned();
        if !split::holds_stages(&name) {
            continue;
        }
        let label = format!(
            "state/{}/{name} at ledger commit {}",
            split::STAGES_DIR,
            short(commit)
        );
        let entries = split::entries_of(&name, &String::from_utf8_lossy(&bytes), &label)?;
        // Only the stages (a crashed add-stage's file or pack past the count is not restored).
        if entries
            .first()
            .is_some_and(|e| e.file.order < hot.stage_count)
        {
            files.push((name, bytes));
        }
        parsed.extend(entries);
    }
    let n = hot.stage_count;
    let cold = split::in_order(parsed, n, &|i| {
        format!(
            "ledger commit {} holds no stage file number {i} of {n}",
            short(commit)
        )
    })?;
    Ok(LedgerState {
        state: split::merge(hot, cold),
        budget,
        hot_bytes,
        files,
    })
}

/// What [`ledger_full_state`] read.
pub struct LedgerState {
    pub state: State,
    pub budget: Option<Budget>,
    /// The hot file's bytes, as committed.
    pub hot_bytes: Vec<u8>,
    /// The stage files (file name, bytes), as committed.
    pub files: Vec<(String, Vec<u8>)>,
}

fn short(commit: &str) -> &str {
    commit.get(..10).unwrap_or(commit)
}

/// Loads state and budget, validated, and brings them in step with the ledger: a budget one
/// seq ahead of the state (crash between the two writes) is rolled back; a state ahead of the
/// ledger (crash before the commit) is committed now.
///
/// # Errors
/// A state-kind error (hint: `nightshift repair`) when a file is missing, corrupt, or older
/// than the ledger.
/// `git` is asked for only when the files are not known to be in step with the ledger (an
/// idle tick spawns no git at all).
pub fn load_reconciled<'g>(
    paths: &Paths,
    git: impl FnOnce() -> NsResult<&'g Git>,
) -> NsResult<(State, Budget)> {
    let state = read_state_file(paths)?;
    split::clear_leftovers(paths, state.stage_count)?;
    let mut budget = read_budget_file(paths)?;
    if budget.seq == state.seq && cached_ledger_seq(paths) == Some(state.seq) {
        return Ok((state, budget));
    }
    let git = git()?;
    let head = ledger_state(git)?;
    if budget.seq != state.seq {
        match &head {
            Some((ls, Some(lb))) if budget.seq == state.seq + 1 && ls.seq == state.seq => {
                budget = lb.clone();
                write_json(&paths.budget_file(), &budget)?;
            }
            _ => {
                return Err(NsError::state(format!(
                    "state/budget.json (seq {}) is out of step with state/state.yaml (seq {})",
                    budget.seq, state.seq
                ))
                .hint(REPAIR_HINT));
            }
        }
    }
    let ledger_seq = head.as_ref().map(|(s, _)| s.seq);
    match ledger_seq {
        Some(l) if l > state.seq => {
            return Err(NsError::state(format!(
                "state/state.yaml (seq {}) is older than the ledger (seq {l})",
                state.seq
            ))
            .hint(REPAIR_HINT));
        }
        // In step with the ledger: refresh the cache so later ticks skip the git look.
        Some(l) if l == state.seq => {
            write_atomic(&paths.ledger_seq_file(), state.seq.to_string().as_bytes())?;
        }
        // Ahead of it (a crash before the commit): commit now, which also writes the cache.
        _ => {
            commit(paths, git, &state, &budget, true)?;
        }
    }
    Ok((state, budget))
}

/// The ledger seq the files were last known to be committed at (`state/.ledger-seq`), if any.
#[must_use]
pub fn cached_ledger_seq(paths: &Paths) -> Option<u64> {
    std::fs::read_to_string(paths.ledger_seq_file())
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
}

/// Commits the current files to the ledger with the state's journal as the message.
///
/// # Errors
/// When git fails (the ledger ref moved under us, among others).
pub fn commit(
    paths: &Paths,
    git: &Git,
    state: &State,
    budget: &Budget,
    recovered: bool,
) -> NsResult<String> {
    let msg = crate::ledger_message::message(state, budget, recovered);
    let id = ledger::commit(git, paths, &msg)
        .map_err(|e| NsError::from(e).within("cannot commit to the ledger"))?;
    // The seq cache only lets a later tick skip asking git; lost after a power failure, that
    // tick asks git (see `load_reconciled`), so it needs no fsync.
    write_derived(&paths.ledger_seq_file(), state.seq.to_string().as_bytes())?;
    Ok(id)
}

/// Opens the repository's git.
///
/// # Errors
/// When git is missing or the path is not a repository root.
pub fn open_git(paths: &Paths) -> NsResult<Git> {
    Git::open(&paths.root).map_err(|e| {
        NsError::failure(format!(
            "{} is not a usable git repository",
            paths.root.display()
        ))
        .cause(e.to_string())
    })
}

/// Persists a new state (seq + 1, journal = events) and commits it to the ledger. The one
/// path by which ticks and operator commands change state.
///
/// # Errors
/// When validation, a write, or the ledger commit fails.
pub fn persist(
    paths: &Paths,
    git: &Git,
    state: State,
    budget: Budget,
    events: &[Event],
) -> NsResult<State> {
    persist_with(paths, git, (state, budget), &[], events)
}

/// [`persist`], writing `copies` (new stages' card copies) with the stage files: one flush,
/// named in the same intent, so a command that dies before its commit point leaves neither
/// behind.
///
/// # Errors
/// When validation, a write, or the ledger commit fails.
pub fn persist_with(
    paths: &Paths,
    git: &Git,
    (mut state, mut budget): (State, Budget),
    copies: &[(std::path::PathBuf, Vec<u8>)],
    events: &[Event],
) -> NsResult<State> {
    next_seq(&mut state, &mut budget, events);
    save_with(paths, &mut state, &budget, copies)?;
    committed(paths, git, &state, &budget)?;
    Ok(state)
}

/// The next change's seq on both files, and its events as the state's journal.
fn next_seq(state: &mut State, budget: &mut Budget, events: &[Event]) {
    state.seq += 1;
    budget.seq = state.seq;
    state.journal = events.iter().map(Event::line).collect();
}

/// Commits a state just saved, and now and then packs the ledger.
fn committed(paths: &Paths, git: &Git, state: &State, budget: &Budget) -> NsResult<()> {
    commit(paths, git, state, budget, false)?;
    failpoint::hit("after-ledger-commit");
    if state.seq.is_multiple_of(pack_every()) {
        pack_ledger(paths, git);
    }
    Ok(())
}

/// The most stages a repository holds: [`crate::engine::state::MAX_STAGES`], or
/// `NIGHTSHIFT_MAX_STAGES` when set (tests use a small one).
#[must_use]
pub fn max_stages() -> usize {
    std::env::var("NIGHTSHIFT_MAX_STAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(crate::engine::state::MAX_STAGES)
}

/// Ledger commits between two packings of loose objects (`NIGHTSHIFT_PACK_EVERY` overrides).
fn pack_every() -> u64 {
    std::env::var("NIGHTSHIFT_PACK_EVERY")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(100)
}

/// Starts a detached `git repack -d -n -q --geometric=2` (`-n`: no `update-server-info`, whose
/// `.git/info/refs` would land in the watched `.git/info` beside a running attempt and read as
/// its escape): git plumbing never runs `gc --auto`,
/// and every ledger commit is one small pack (one `fast-import`), so without this the packs
/// only pile up. The geometric roll-up merges the small packs (and any loose objects) into
/// fewer, larger ones, deltified, at a cost that stays proportional to what is new. It
/// outlives the tick and never blocks it; git keeps it safe beside later commits.
fn pack_ledger(paths: &Paths, git: &Git) {
    let cmd = git.command(
        &paths.root,
        &["repack", "-d", "-n", "-q", "--geometric=2"],
        &[],
    );
    if let Err(e) = crate::proc::spawn_detached(cmd, &paths.state_dir().join("logs/repack.log")) {
        eprintln!("nightshift: cannot start git repack: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::state::Stage;

    fn queued(i: usize) -> Stage {
        let id = format!("c{i:05}");
        serde_json::from_value(serde_json::json!({
            "id": id, "title": format!("Stage {id}"),
            "card_hash": "sha256:7c3a55ee2be13c052c2fb87fa810d14a9568e9283e622eb63e9facd3bc0eb5c8",
            "card_path": format!("stage-cards/{id}.md"), "worker": "w", "verifier": "v",
            "fallback": null, "depends_on": [], "acceptance": [format!("test -f {id}.txt")],
            "protected": [], "max_attempts": 3,
            "timeouts": {"worker": 300, "verifier": 300, "acceptance": 120},
            "max_wall_secs": null, "max_tokens": null, "max_usd": null, "attempt": 0,
            "attempt_floor": 0, "status": {"kind": "queued"}, "findings": [], "history": [],
            "added_at": "2027-01-01T01:00:00Z"
        }))
        .expect("a queued stage")
    }

    /// A config remembered by its digest is its JSON ([`read_config`]): taking it back gives
    /// the value parsed from the YAML, for the example `init` writes and for the keys it
    /// leaves out.
    #[test]
    fn a_remembered_config_is_the_parsed_one() {
        let example =
            crate::prompt::render(crate::cmd::init::CONFIG_TEMPLATE, &[("base", "main")]).unwrap();
        let rich = "version: 1\nlanes: 2\nagents:\n  a: { kind: claude, model: claude-sonnet-4-5, auth: { route: api, env: MY_KEY } }\n  b: { kind: codex, auth: { route: api, command: \"pass show openai\" } }\n  c: { kind: aider, family: gpt, model: openai/gpt-4o, auth: { route: api, env: K, pass_as: OPENAI_API_KEY } }\ndefaults: { worker: a, verifier: b }\nnotify: { command: [sh, notify.sh], events: [escalated, halted] }\n";
        for text in [example.as_str(), rich] {
            let raw = Config::parse_raw(text).unwrap();
            let json = serde_json::to_vec(&raw).unwrap();
            let back: crate::config::RawConfig = serde_json::from_slice(&json).unwrap();
            assert_eq!(back, raw, "{text}");
            assert!(Config::from_raw(back).is_ok());
        }
    }

    fn own(order: u64, stage: Stage) -> split::Entry {
        split::Entry {
            own: Some(format!("{}.yaml", stage.id)),
            file: split::StageFile { order, stage },
            label: "own".into(),
        }
    }

    /// A pack reads back as the stages it was written from, numbered from its first; a stage's
    /// own file wins over its entry whichever comes first; a file and a pack entry that name
    /// different stages for one number, or two packs with the same number, are refused.
    #[test]
    fn packs_read_back_and_own_files_win() {
        let paths = Paths::new("/nonexistent");
        let stages: Vec<Stage> = (0..20).map(queued).collect();
        let refs: Vec<&Stage> = stages.iter().collect();
        let bytes = split::pack_bytes(&paths, 5, &refs).unwrap();
        let text = String::from_utf8(bytes).unwrap();
        assert_eq!(text.lines().count(), 21);
        let entries = || split::entries_of("pack-5.jsonl", &text, "p").unwrap();
        let mut later = stages[3].clone();
        later.title = "changed later".into();
        let missing = |i: usize| format!("no {i}");
        for own_first in [false, true] {
            let mut all: Vec<split::Entry> = entries();
            let mine = own(8, later.clone());
            if own_first {
                all.insert(0, mine);
            } else {
                all.push(mine);
            }
            let back = split::in_order(all.into_iter().filter(|e| e.file.order >= 5), 25, &|i| {
                missing(i)
            });
            let err = back.err().map(|e| e.message).unwrap_or_default();
            assert_eq!(err, "no 0", "{own_first}");
            let mut all: Vec<split::Entry> =
                (0..5).map(|i| own(i, queued(100 + i as usize))).collect();
            all.extend(entries());
            all.insert(usize::from(!own_first) * 10, own(8, later.clone()));
            let back = split::in_order(all, 25, &missing).unwrap();
            assert_eq!(back.len(), 25);
            assert_eq!(back[8].title, "changed later", "{own_first}");
            assert_eq!(back[9].id, stages[4].id);
        }
        let mut wrong = entries();
        wrong.push(own(8, queued(99)));
        let err = split::in_order(wrong, 25, &missing).err().unwrap().message;
        assert!(err.contains("`c00099` as number 8"), "{err}");
        let mut twice = entries();
        twice.extend(entries());
        let err = split::in_order(twice, 25, &missing).err().unwrap().message;
        assert!(err.contains("is also number 5"), "{err}");
        assert_eq!(split::pack_first("pack-0.jsonl"), Some(0));
        for not in [
            "pack-07.jsonl",
            "pack-.jsonl",
            "pack-x.jsonl",
            "pack-1.yaml",
            "p.yaml",
        ] {
            assert_eq!(split::pack_first(not), None, "{not}");
        }
    }

    /// What the writer produces, the reader takes back: at 10,000 queued stages the YAML
    /// reader's fixed node budget (250,000) used to refuse the file its own writer made.
    #[test]
    fn ten_thousand_queued_stages_read_back() {
        let mut state = State::new();
        state.stages = (0..10_000).map(queued).collect();
        let text = state_yaml(&state).unwrap();
        let back = parse_state(&text, "state/state.yaml").unwrap();
        assert_eq!(back.stages.len(), 10_000);
        assert!(back == state);
    }
}
