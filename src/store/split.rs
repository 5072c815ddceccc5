//! The state on disk, split by temperature so that what changes often is small:
//!
//! * `state/state.yaml` (the hot file) holds the repo-level fields and the **hot** stages in
//!   full: those in flight, retrying, paused, escalated, or queued again after an attempt.
//! * `state/stages/<id>.yaml` holds one file per stage ever added, `order: N` (its place in
//!   the order stages were added) and the stage's record as of the last time it was **cold**:
//!   queued and never dispatched (written by `add-stage`), or done or cancelled (rewritten when
//!   it got there). While a stage is hot its file is older than its record in the hot file,
//!   which wins.
//! * `state/stages/pack-<first>.jsonl` holds, instead of a file each, the records of the new
//!   stages of one `add-stage` of [`PACK_AT`] cards or more, as added: a head line (the first
//!   number and the ids, what `add-stage` reads to know the ids taken) and one `{order,
//!   stage}` a line. Creating a thousand files was most of a thousand-card `add-stage` (and on
//!   a disk that had just freed many inodes, several times that). A pack is never rewritten: a
//!   stage of it that changes while cold gets its own file, which wins over its line. The hot
//!   file lists the packs (`packs`).
//!
//! So a dispatch rewrites the hot file only; `add-stage` writes one file per new card, or one
//! pack; a stage that ends rewrites its own file. The ledger commits only what changed (its
//! tree shards `state/stages/`), and a tick's writes and commits cost what changed, not the
//! queue's length.
//!
//! Every stage is in `state/stages/`, numbered `0..stage_count` (the hot file's count); a file
//! or pack numbered at or past it is the leftover of an `add-stage` that died before its
//! commit point (the hot file): `state/.adding` names those files and that pack (and the card
//! copies written with them) while they are written, and the next writer removes them. Reading
//! every file again is slow at ten thousand stages, so their records are cached
//! ([`super::cache`]), keyed by the hot file's `cold_stamp` and `stage_count`.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::engine::state::{Stage, State, Status};
use crate::error::{NsError, NsResult};
use crate::ids::StageId;
use crate::paths::Paths;

/// The directory of stage files under `state/`.
pub const STAGES_DIR: &str = "stages";

/// One stage's file under `state/stages/`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StageFile {
    /// The stage's place in the order stages were added (0 for the first).
    pub order: u64,
    pub stage: Stage,
}

/// What the files held when a state was read: which stages the hot file held (their own file
/// is older than their record), and a signature of every stage's record then, by place, so
/// that a stage that changed while staying cold (a queued stage cancelled, a cancelled one
/// queued again) is written too. Not part of the state's value (two states compare equal
/// whatever they hold).
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    hot: Arc<BTreeSet<StageId>>,
    signs: Arc<Vec<Sign>>,
}

/// What a cold stage's record can change by: its status (and when it got there), its attempt
/// numbers, its findings.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Sign {
    status: &'static str,
    at: Option<jiff::Timestamp>,
    attempt: u32,
    floor: u32,
    findings: usize,
}

fn sign(s: &Stage) -> Sign {
    Sign {
        status: s.status.name(),
        at: match s.status {
            Status::Done { at, .. } | Status::Cancelled { at } => Some(at),
            _ => None,
        },
        attempt: s.attempt,
        floor: s.attempt_floor,
        findings: s.findings.len(),
    }
}

impl PartialEq for Loaded {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// Whether a stage lives in its own file rather than the hot file: queued and never tried, or
/// ended done or cancelled.
#[must_use]
pub fn is_cold(s: &Stage) -> bool {
    match s.status {
        Status::Done { .. } | Status::Cancelled { .. } => true,
        Status::Queued => {
            s.attempt == 0 && s.history.is_empty() && s.findings.is_empty() && s.panel.is_none()
        }
        _ => false,
    }
}

/// The file of a stage.
#[must_use]
pub fn stage_path(paths: &Paths, id: &StageId) -> PathBuf {
    paths
        .state_dir()
        .join(STAGES_DIR)
        .join(format!("{}.yaml", id.as_str()))
}

/// The pack whose first stage is number `first`.
#[must_use]
pub fn pack_path(paths: &Paths, first: u64) -> PathBuf {
    paths.state_dir().join(STAGES_DIR).join(pack_name(first))
}

/// The intent file naming the stage files an `add-stage` is writing.
#[must_use]
pub fn adding_path(paths: &Paths) -> PathBuf {
    paths.state_dir().join(".adding")
}

/// What a save writes: the hot file's value and the stage files that changed.
pub struct Plan<'s> {
    pub hot: State,
    /// (order, stage, new): new stages' files and those of stages that turned cold.
    pub files: Vec<(u64, &'s Stage, bool)>,
}

/// Splits `state` into the hot file and the stage files to write. A stage is written when it
/// is new (past the count the files held when read) or turned cold since.
#[must_use]
pub fn plan(state: &State) -> Plan<'_> {
    let known = usize::try_from(state.stage_count).unwrap_or(usize::MAX);
    let mut packs = state.packs.clone();
    if packed(state.stages.len().saturating_sub(known)) {
        packs.push(state.stage_count);
    }
    let mut files = Vec::new();
    let mut hot_stages = Vec::new();
    for (i, s) in state.stages.iter().enumerate() {
        let order = i as u64;
        let cold = is_cold(s);
        if i >= known {
            files.push((order, s, true));
        } else if cold
            && (state.loaded.hot.contains(&s.id) || state.loaded.signs.get(i) != Some(&sign(s)))
        {
            files.push((order, s, false));
        }
        if !cold {
            hot_stages.push(s.clone());
        }
    }
    let hot = State {
        version: crate::engine::state::STATE_VERSION,
        seq: state.seq,
        halted: state.halted.clone(),
        consecutive_failures: state.consecutive_failures,
        stage_count: state.stages.len() as u64,
        cold_stamp: if files.is_empty() {
            state.cold_stamp
        } else {
            state.seq
        },
        packs,
        stages: hot_stages,
        paused: state.paused.clone(),
        kills: state.kills.clone(),
        journal: state.journal.clone(),
        loaded: Loaded::default(),
    };
    Plan { hot, files }
}

/// After a save of `plan`: the in-memory state now matches the files.
pub fn saved(state: &mut State, hot: &State) {
    state.stage_count = hot.stage_count;
    state.cold_stamp = hot.cold_stamp;
    state.packs.clone_from(&hot.packs);
    state.loaded = loaded_of(hot, &state.stages);
}

fn loaded_of(hot: &State, stages: &[Stage]) -> Loaded {
    Loaded {
        hot: Arc::new(hot.stages.iter().map(|s| s.id.clone()).collect()),
        signs: Arc::new(stages.iter().map(sign).collect()),
    }
}

/// The whole state from the hot file and the stage files' records (in order): each hot stage
/// replaces its file's record; a hot stage without a file (a version-1 hot file) follows them.
#[must_use]
pub fn merge(mut hot: State, mut cold: Vec<Stage>) -> State {
    let hot_stages = std::mem::take(&mut hot.stages);
    let places: Vec<Option<usize>> = if hot_stages.is_empty() {
        Vec::new()
    } else {
        let at: HashMap<&StageId, usize> =
            cold.iter().enumerate().map(|(i, s)| (&s.id, i)).collect();
        hot_stages.iter().map(|s| at.get(&s.id).copied()).collect()
    };
    let ids: BTreeSet<StageId> = hot_stages.iter().map(|s| s.id.clone()).collect();
    for (s, place) in hot_stages.into_iter().zip(places) {
        match place {
            Some(i) => cold[i] = s,
            None => cold.push(s),
        }
    }
    hot.stages = cold;
    hot.loaded = Loaded {
        hot: Arc::new(ids),
        signs: Arc::new(hot.stages.iter().map(sign).collect()),
    };
    hot
}

/// Reads every stage file and pack (slow at thousands of stages: the cache answers instead
/// when it can): the records numbered `0..count`, in order.
///
/// # Errors
/// A state-kind error naming the file (and a pack's line) at fault, or the number missing.
pub fn read_files(paths: &Paths, count: u64) -> NsResult<Vec<Stage>> {
    let unreadable = |what: &str, e: &std::io::Error| {
        NsError::state(format!("{what} cannot be read"))
            .cause(e.to_string())
            .hint(super::REPAIR_HINT)
    };
    let dir = format!("state/{STAGES_DIR}/");
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(paths.state_dir().join(STAGES_DIR))
        .map_err(|e| unreadable(&format!("{dir} ({count} stages expected)"), &e))?
    {
        let entry = entry.map_err(|e| unreadable(&dir, &e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !holds_stages(&name) {
            continue;
        }
        let label = format!("{dir}{name}");
        let text = std::fs::read_to_string(entry.path()).map_err(|e| unreadable(&label, &e))?;
        entries.extend(entries_of(&name, &text, &label)?);
    }
    in_order(entries, count, &|i| {
        format!("{dir} holds no stage number {i} (state/state.yaml counts {count})")
    })
    .map_err(|e| e.hint(super::REPAIR_HINT))
}

/// Whether a file of `state/stages/` named `name` holds stages: a stage's own file or a pack.
#[must_use]
pub fn holds_stages(name: &str) -> bool {
    !name.starts_with('.') && (name.ends_with(".yaml") || pack_first(name).is_some())
}

/// The stage records in the file `name` of `state/stages/` (its text `text`, named `label` in
/// errors): one for a stage's own file, each entry of a pack.
///
/// # Errors
/// A state-kind error naming `label` (and the line of a pack) when the file is not valid.
pub fn entries_of(name: &str, text: &str, label: &str) -> NsResult<Vec<Entry>> {
    if pack_first(name).is_some() {
        return parse_pack(text, label);
    }
    Ok(vec![Entry {
        own: Some(name.to_owned()),
        file: parse(text, label)?,
        label: label.to_owned(),
    }])
}

/// One stage's record as a file holds it.
pub struct Entry {
    /// The name of the stage's own file; `None` for an entry of a pack.
    pub own: Option<String>,
    pub file: StageFile,
    /// The file (and a pack's line), for errors.
    pub label: String,
}

/// The records of the entries read, by their number `0..count`; a record numbered past it is
/// a crashed `add-stage`'s leftover, not a stage yet. A stage's own file wins over its entry
/// in a pack (it is written when the stage changes after the pack). `missing` words the error
/// for a number nothing holds.
///
/// # Errors
/// A state-kind error when a file holds another stage than its name says, a stage's own file
/// and its pack entry name different stages, two files (or packs) have the same number, or a
/// number is missing.
pub fn in_order(
    entries: impl IntoIterator<Item = Entry>,
    count: u64,
    missing: &dyn Fn(usize) -> String,
) -> NsResult<Vec<Stage>> {
    let state_error = NsError::state;
    let mut slots: Vec<Option<Entry>> = Vec::new();
    slots.resize_with(usize::try_from(count).unwrap_or(usize::MAX), || None);
    for entry in entries {
        let Some(slot) = usize::try_from(entry.file.order)
            .ok()
            .and_then(|i| slots.get_mut(i))
        else {
            continue;
        };
        if let Some(name) = &entry.own
            && name.strip_suffix(".yaml") != Some(entry.file.stage.id.as_str())
        {
            return Err(state_error(format!(
                "{} holds stage `{}`, not `{}`",
                entry.label,
                entry.file.stage.id,
                name.trim_end_matches(".yaml")
            )));
        }
        let Some(held) = slot.take() else {
            *slot = Some(entry);
            continue;
        };
        if held.own.is_some() == entry.own.is_some() {
            return Err(state_error(format!(
                "{}: {} is also number {}",
                entry.label, held.label, entry.file.order
            )));
        }
        if held.file.stage.id != entry.file.stage.id {
            return Err(state_error(format!(
                "{} holds stage `{}` as number {}, {} holds `{}`",
                entry.label, entry.file.stage.id, entry.file.order, held.label, held.file.stage.id
            )));
        }
        *slot = Some(if entry.own.is_some() { entry } else { held });
    }
    slots
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            s.map(|e| e.file.stage)
                .ok_or_else(|| state_error(missing(i)))
        })
        .collect()
}

/// An `add-stage` of at least this many cards writes their stages into one pack.
pub const PACK_AT: usize = 16;

/// Whether `new` stages added at once go into a pack.
#[must_use]
pub fn packed(new: usize) -> bool {
    new >= PACK_AT
}

/// The name of the pack whose first stage is number `first`.
#[must_use]
pub fn pack_name(first: u64) -> String {
    format!("pack-{first}.jsonl")
}

/// The number of the first stage of the pack named `name`, if it names one.
#[must_use]
pub fn pack_first(name: &str) -> Option<u64> {
    let n = name.strip_prefix("pack-")?.strip_suffix(".jsonl")?;
    // One spelling a number: `pack-07.jsonl` is not a pack.
    n.parse::<u64>().ok().filter(|v| v.to_string() == n)
}

/// A pack's first line: the number of its first stage and the ids of its stages, in order
/// (what `add-stage` reads to know the ids taken without reading the records).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PackHead {
    first: u64,
    ids: Vec<StageId>,
}

/// A pack's bytes: its head, then one stage file's value a line, as JSON, each validated.
/// `stages` are numbered from `first`.
///
/// # Errors
/// When a record fails validation (named by the line it would have).
pub fn pack_bytes(paths: &Paths, first: u64, stages: &[&Stage]) -> NsResult<Vec<u8>> {
    let label = paths.rel(&pack_path(paths, first));
    let head = PackHead {
        first,
        ids: stages.iter().map(|s| s.id.clone()).collect(),
    };
    let numbered: Vec<(u64, &Stage)> = (first..).zip(stages.iter().copied()).collect();
    let lines = crate::par::map(&numbered, |&(order, stage)| {
        let file = StageFile {
            order,
            stage: stage.clone(),
        };
        let at = format!("{label} (line {})", order - first + 2);
        crate::schema::check(&file, &at)?;
        serde_json::to_string(&file)
            .map_err(|e| NsError::bug(format!("cannot serialise {at}: {e}")))
    });
    let mut out = serde_json::to_vec(&head)
        .map_err(|e| NsError::bug(format!("cannot serialise {label}: {e}")))?;
    out.push(b'\n');
    for line in lines {
        out.extend_from_slice(line?.as_bytes());
        out.push(b'\n');
    }
    Ok(out)
}

/// Parses and validates a pack (named `label` in errors, with the line at fault): each entry
/// must be numbered in turn from the head's first number and be the stage the head names.
///
/// # Errors
/// A state-kind error naming `label` and the line.
pub fn parse_pack(text: &str, label: &str) -> NsResult<Vec<Entry>> {
    let mut lines = text.lines();
    let head = parse_head(lines.next().unwrap_or_default(), label)?;
    let records: Vec<&str> = lines.collect();
    if records.len() != head.ids.len() {
        return Err(NsError::state(format!(
            "{label} holds {} stage records; its head names {}",
            records.len(),
            head.ids.len()
        ))
        .hint(super::REPAIR_HINT));
    }
    let numbered: Vec<(String, &str)> = records
        .iter()
        .enumerate()
        .map(|(i, line)| (format!("{label} (line {})", i + 2), *line))
        .collect();
    let parsed = crate::par::map(&numbered, |(at, line)| {
        crate::schema::parse_json::<StageFile>(line, at).map_err(super::to_state_error)
    });
    let mut out = Vec::with_capacity(records.len());
    for (i, ((at, _), (file, id))) in numbered
        .into_iter()
        .zip(parsed.into_iter().zip(&head.ids))
        .enumerate()
    {
        let file = file?;
        let want = head.first + i as u64;
        if file.order != want || &file.stage.id != id {
            return Err(NsError::state(format!(
                "{at} holds stage `{}` number {}; the head says `{id}` number {want}",
                file.stage.id, file.order
            ))
            .hint(super::REPAIR_HINT));
        }
        out.push(Entry {
            own: None,
            file,
            label: at,
        });
    }
    Ok(out)
}

/// The ids of the stages of the pack whose first stage is number `first` (its first line
/// alone is read).
///
/// # Errors
/// When the pack cannot be read or its head is not valid.
pub fn pack_ids(paths: &Paths, first: u64) -> NsResult<Vec<StageId>> {
    use std::io::BufRead;
    let path = pack_path(paths, first);
    let label = paths.rel(&path);
    let mut head = String::new();
    std::fs::File::open(&path)
        .map(std::io::BufReader::new)
        .and_then(|mut r| r.read_line(&mut head))
        .map_err(|e| {
            NsError::state(format!("{label} cannot be read"))
                .cause(e.to_string())
                .hint(super::REPAIR_HINT)
        })?;
    Ok(parse_head(&head, &label)?.ids)
}

/// A pack's first line, `line`, of the pack named `label`.
fn parse_head(line: &str, label: &str) -> NsResult<PackHead> {
    serde_json::from_str(line).map_err(|e| {
        NsError::state(format!("{label} (line 1) is not a stage pack's head"))
            .cause(e.to_string())
            .hint(super::REPAIR_HINT)
    })
}

/// Parses and validates one stage file.
///
/// # Errors
/// A state-kind error naming `label` and the line.
pub fn parse(text: &str, label: &str) -> NsResult<StageFile> {
    crate::schema::parse_yaml::<StageFile>(text, label).map_err(super::to_state_error)
}

/// The prefix of a line of `state/.adding` that names a card copy (a file name under
/// `state/cards/`) written with the new stages; the other lines are stage ids.
pub const COPY_LINE: &str = "copy ";

/// The prefix of a line of `state/.adding` that names a stage pack written with the new stages
/// (instead of their own files).
pub const PACK_LINE: &str = "pack ";

/// Removes the files a dead `add-stage` left (named in `state/.adding`: stage files and packs
/// numbered at or past the hot file's count, and the card copies written with them when none
/// of its stages reached the count), then the intent itself. Runs under the tick lock.
///
/// # Errors
/// When a leftover cannot be removed.
pub fn clear_leftovers(paths: &Paths, stage_count: u64) -> NsResult<()> {
    let intent = adding_path(paths);
    let Ok(text) = std::fs::read_to_string(&intent) else {
        return Ok(());
    };
    let remove = |file: &std::path::Path| match std::fs::remove_file(file) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(NsError::failure(format!("cannot remove {}", paths.rel(file))).cause(e.to_string()))
        }
        _ => Ok(()),
    };
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let mut committed = false;
    for id in lines
        .iter()
        .filter(|l| !l.starts_with(COPY_LINE) && !l.starts_with(PACK_LINE))
    {
        let Ok(id) = StageId::new(id) else { continue };
        let file = stage_path(paths, &id);
        let Ok(body) = std::fs::read_to_string(&file) else {
            continue;
        };
        let order = body
            .lines()
            .find_map(|l| l.strip_prefix("order:"))
            .and_then(|n| n.trim().parse::<u64>().ok());
        // Numbered inside the count: the add reached its commit point; the file is a stage.
        if order.is_some_and(|o| o < stage_count) {
            committed = true;
            continue;
        }
        remove(&file)?;
    }
    for first in lines
        .iter()
        .filter_map(|l| pack_first(l.strip_prefix(PACK_LINE)?))
    {
        if first < stage_count {
            committed = true;
        } else {
            remove(&pack_path(paths, first))?;
        }
    }
    // The copies go with their stages: all of them reached the commit point, or none did.
    for name in lines.iter().filter_map(|l| l.strip_prefix(COPY_LINE)) {
        let plain = !name.is_empty() && !name.contains(['/', '\\']) && !name.starts_with('.');
        if !committed && plain {
            remove(&paths.state_dir().join("cards").join(name))?;
        }
    }
    std::fs::remove_file(&intent).map_err(|e| {
        NsError::failure(format!("cannot remove {}", paths.rel(&intent))).cause(e.to_string())
    })
}
