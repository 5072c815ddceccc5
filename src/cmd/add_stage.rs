//! `nightshift add-stage CARD...`: validates cards and enqueues them in one ledger commit.
//! Refuses duplicates, unknown or cyclic dependencies, unknown agents and same-family
//! worker/verifier pairs (unless the card allows them). Stores a copy of each card and its
//! hash (a batch's copies in one file); the copy is what agents read.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::card::Card;
use crate::config::{Config, Policy, parse_duration};
use crate::engine::ops::{self, OpError};
use crate::engine::state::{Stage, Status};
use crate::error::{NsError, NsResult};
use crate::ids::StageId;
use crate::ids::stage_branch;
use crate::paths::Paths;
use crate::store;
use crate::store::split;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "A card is markdown with YAML front matter:\n\n---\nid: parse-config\ntitle: Parse the config file\nacceptance:\n  - cargo test config\ndepends_on: []\nprotected: [tests/golden/**]\n---\n# Objective\n...\n\n`nightshift template card` prints an example card documenting every field."
)]
pub struct Args {
    /// Card files (markdown with YAML front matter).
    #[arg(required = true, value_name = "CARD")]
    pub cards: Vec<PathBuf>,
    /// Print the added stages as JSON.
    #[arg(long)]
    pub json: bool,
}

/// # Errors
/// When a card is invalid or refused; nothing is enqueued then.
pub fn run(repo: &Path, args: &Args) -> NsResult<i32> {
    let super::Opened {
        paths,
        config,
        git,
        lock: _guard,
    } = super::opened(repo)?;
    let queue = store::load_for_add(&paths, &git)?;
    let now = crate::now::now()?;
    // Parsed and validated in a few threads; the first card at fault (in the order given) is
    // the one named.
    let cards = crate::par::map(&args.cards, |file| {
        let label = label_of(&paths, file);
        let card = Card::load(file, &label)?;
        let stage = stage_of(&config, &card, &label, now)?;
        Ok((card, stage))
    })
    .into_iter()
    .collect::<NsResult<Vec<(Card, Stage)>>>()?;
    // Which ids are taken: every stage of a whole state; with the hot file alone, those with a
    // stage file or in a pack (every stage is in one or the other, hot or not; a pack's ids are
    // its first line).
    let (have, taken): (usize, Box<Taken>) = match &queue {
        store::ForAdd::Full(state, _) => {
            let ids: HashSet<StageId> = state.stages.iter().map(|s| s.id.clone()).collect();
            (state.stages.len(), Box::new(move |id| ids.contains(id)))
        }
        store::ForAdd::Hot(hot, _) => {
            let mut packed: HashSet<StageId> = HashSet::new();
            for first in &hot.packs {
                packed.extend(split::pack_ids(&paths, *first)?);
            }
            let paths = paths.clone();
            (
                usize::try_from(hot.stage_count).unwrap_or(usize::MAX),
                Box::new(move |id| packed.contains(id) || split::stage_path(&paths, id).exists()),
            )
        }
    };
    ops::check_room(have, cards.len(), store::max_stages()).map_err(|e| {
        NsError::failure(format!("refused: {e}"))
            .hint("nothing was enqueued; archive or cancel stages, or enqueue fewer cards")
    })?;
    let mut events = Vec::new();
    let mut accepted: Vec<Stage> = Vec::new();
    let mut ids: HashSet<StageId> = HashSet::new();
    let mut texts: Vec<String> = Vec::new();
    let mut pending: Vec<(Card, Stage)> = cards;
    while !pending.is_empty() {
        let before = pending.len();
        let mut rest = Vec::new();
        for (card, stage) in pending {
            let known = |d: &StageId| ids.contains(d) || taken(d);
            if stage.depends_on.iter().any(|d| !known(d) && d != &stage.id) {
                rest.push((card, stage));
                continue;
            }
            let event = ops::admit(&known, &stage).map_err(|e| refused(&stage.card_path, &e))?;
            events.push(event);
            ids.insert(stage.id.clone());
            texts.push(card.text);
            accepted.push(stage);
        }
        if rest.len() == before {
            let (card_file, e) = unresolved(&rest, &|d| ids.contains(d) || taken(d));
            return Err(refused(&card_file, &e));
        }
        pending = rest;
    }
    // The card copies are written only once every card is accepted, and taken back if the
    // state cannot be persisted: a refused command leaves nothing behind.
    let seq = match &queue {
        store::ForAdd::Full(state, _) => state.seq,
        store::ForAdd::Hot(hot, _) => hot.seq,
    };
    let copies = card_copies(&paths, &mut accepted, texts, seq + 1);
    // Every copy is durable before the state that refers to them, written and flushed with the
    // new stage files.
    let written = match queue {
        store::ForAdd::Full(mut state, budget) => {
            state.stages.extend(accepted.iter().cloned());
            store::persist_with(&paths, &git, (state, budget), &copies, &events).map(drop)
        }
        store::ForAdd::Hot(hot, budget) => {
            store::append(&paths, &git, (hot, budget), &accepted, &copies, &events)
        }
    };
    if let Err(e) = written {
        for (path, _) in &copies {
            let _ = std::fs::remove_file(path);
        }
        return Err(e);
    }
    if args.json {
        let stages: Vec<_> = accepted.iter().map(|s| serde_json::json!({"id": s.id, "worker": s.worker, "verifier": s.verifier, "card_hash": s.card_hash, "branch": stage_branch(&s.id)})).collect();
        super::print_json(&serde_json::json!({ "version": 1, "added": stages }))?;
    } else {
        for s in &accepted {
            println!(
                "added {}: worker {}, verifier {} ({})",
                s.id, s.worker, s.verifier, s.title
            );
        }
        println!("the next `nightshift tick` dispatches what is ready");
    }
    Ok(0)
}

/// A batch of at least this many cards keeps their copies in one file.
const PACK_AT: usize = 16;

/// The card copies to write for the stages `accepted` (their texts in `texts`), to be committed
/// as ledger seq `seq`: a file each (`state/cards/<id>.md`), or for a large batch one pack
/// (`state/cards/batch-<seq>.json`) that each stage then names.
fn card_copies(
    paths: &Paths,
    accepted: &mut [Stage],
    texts: Vec<String>,
    seq: u64,
) -> Vec<(PathBuf, Vec<u8>)> {
    if accepted.len() < PACK_AT {
        return accepted
            .iter()
            .zip(texts)
            .map(|(s, text)| (paths.card_copy(&s.id), text.into_bytes()))
            .collect();
    }
    let name = crate::card::pack_name(seq);
    let cards: Vec<(&StageId, &str)> = accepted
        .iter()
        .zip(&texts)
        .map(|(s, t)| (&s.id, t.as_str()))
        .collect();
    let bytes = crate::card::pack(&cards);
    for s in accepted.iter_mut() {
        s.card_pack = Some(name.clone());
    }
    vec![(paths.state_dir().join("cards").join(name), bytes)]
}

/// Whether a stage id is taken in the queue.
type Taken = dyn Fn(&StageId) -> bool;

fn label_of(paths: &Paths, file: &Path) -> String {
    std::fs::canonicalize(file).map_or_else(|_| file.display().to_string(), |abs| paths.rel(&abs))
}

/// A refusal naming the card file it is about.
fn refused(card_file: &str, e: &OpError) -> NsError {
    NsError::failure(format!("{card_file}: refused: {e}"))
        .hint("nothing was enqueued; fix the card(s) and run add-stage again")
}

fn unresolved(rest: &[(Card, Stage)], known: &dyn Fn(&StageId) -> bool) -> (String, OpError) {
    let in_batch = |d: &StageId| rest.iter().any(|(_, s)| &s.id == d);
    for (_, s) in rest {
        if let Some(d) = s.depends_on.iter().find(|d| !known(d) && !in_batch(d)) {
            return (
                s.card_path.clone(),
                OpError::UnknownDependency {
                    stage: s.id.clone(),
                    dependency: d.clone(),
                },
            );
        }
    }
    let cycle: Vec<String> = rest.iter().map(|(_, s)| s.id.to_string()).collect();
    let files: Vec<&str> = rest.iter().map(|(_, s)| s.card_path.as_str()).collect();
    (
        files.join(", "),
        OpError::Cycle {
            stage: rest[0].1.id.clone(),
            cycle: cycle.join(" -> "),
        },
    )
}

fn stage_of(config: &Config, card: &Card, label: &str, now: jiff::Timestamp) -> NsResult<Stage> {
    let f = &card.front;
    let err = |m: String| {
        NsError::failure(format!("{label}: {m}"))
            .hint("`nightshift template card` prints an example card; agents are defined in nightshift.yaml")
    };
    let worker = f
        .worker
        .clone()
        .unwrap_or_else(|| config.default_worker.clone());
    let w = config.agents.get(&worker).ok_or_else(|| {
        err(format!(
            "worker `{worker}` is not an agent in nightshift.yaml"
        ))
    })?;
    let verifier = config.pick_verifier(&worker, f.verifier.as_deref()).ok_or_else(|| err(format!("no agent of a family other than `{}` to verify `{worker}`; add one to nightshift.yaml", w.family)))?;
    let v = config.agents.get(&verifier).ok_or_else(|| {
        err(format!(
            "verifier `{verifier}` is not an agent in nightshift.yaml"
        ))
    })?;
    if v.family == w.family && !f.allow_same_family {
        return Err(err(format!(
            "refused: worker `{worker}` and verifier `{verifier}` are both of family `{}`; cross-family review is the point (set `allow_same_family: true` to override)",
            w.family
        )));
    }
    if let Some(fb) = &f.fallback {
        let fa = config.agents.get(fb).ok_or_else(|| {
            err(format!(
                "fallback `{fb}` is not an agent in nightshift.yaml"
            ))
        })?;
        if fa.family == v.family || fa.family == w.family {
            return Err(err(format!(
                "fallback `{fb}` is of family `{}`: it must differ from the worker's (`{}`) and the verifier's (`{}`)",
                fa.family, w.family, v.family
            )));
        }
    }
    if f.depends_on.len() > 1 && config.policy == Policy::None {
        return Err(err("a stage with several dependencies starts from the integration branch, which policy `none` never fills".into()));
    }
    let dur = |key: &str, v: Option<&String>, d: u64| {
        v.map_or(Ok(d), |s| {
            parse_duration(s).map_err(|e| err(format!("timeouts.{key}: {e}")))
        })
    };
    let t = f.timeouts.clone().unwrap_or_default();
    let timeouts = crate::config::Timeouts {
        worker: dur("worker", t.worker.as_ref(), config.timeouts.worker)?,
        verifier: dur("verifier", t.verifier.as_ref(), config.timeouts.verifier)?,
        acceptance: dur(
            "acceptance",
            t.acceptance.as_ref(),
            config.timeouts.acceptance,
        )?,
    };
    let max_wall_secs = match f.budget.as_ref().and_then(|b| b.max_wall_time.as_ref()) {
        Some(s) => Some(parse_duration(s).map_err(|e| err(format!("budget.max_wall_time: {e}")))?),
        None => None,
    };
    let max_attempts = f.max_attempts.unwrap_or(config.max_attempts);
    if max_attempts == 0 {
        return Err(err("max_attempts must be at least 1".into()));
    }
    let panel = panel_of(config, card, &worker, label)?;
    Ok(Stage {
        id: f.id.clone(),
        title: f.title.clone(),
        card_hash: card.hash.clone(),
        card_path: label.to_owned(),
        worker,
        verifier,
        fallback: f.fallback.clone(),
        depends_on: f.depends_on.clone(),
        acceptance: f.acceptance.clone(),
        protected: f.protected.clone(),
        max_attempts,
        timeouts,
        max_wall_secs,
        max_tokens: f.budget.as_ref().and_then(|b| b.max_tokens),
        max_usd: f.budget.as_ref().and_then(|b| b.max_usd),
        attempt: 0,
        attempt_floor: 0,
        status: Status::Queued,
        findings: Vec::new(),
        history: Vec::new(),
        added_at: now,
        panel,
        card_pack: None,
    })
}

/// The stage's verifier panel: the card's own `panel:`; else `defaults.panel` when the card
/// says `verify: panel` (always) or `defaults.panel_when` is set (when a deliverable path
/// matches). Members of the worker's family are refused, naming the file and the key.
fn panel_of(
    config: &Config,
    card: &Card,
    worker: &str,
    label: &str,
) -> NsResult<Option<crate::engine::state::Panel>> {
    let f = &card.front;
    let hint = "see templates/stage-card.md and docs/panel.md";
    let (raw, when_paths, file) = match (&f.panel, f.verify, &config.panel) {
        (Some(p), _, _) => (p, Vec::new(), label),
        (None, Some(crate::card::VerifyMode::Panel), Some(p)) => {
            (p, Vec::new(), crate::paths::CONFIG_FILE)
        }
        (None, Some(crate::card::VerifyMode::Panel), None) => {
            return Err(NsError::failure(format!(
                "{label}: verify: panel, but nightshift.yaml has no `defaults.panel`"
            ))
            .hint(hint));
        }
        (None, None, Some(p)) if !config.panel_when.is_empty() => {
            (p, config.panel_when.clone(), crate::paths::CONFIG_FILE)
        }
        (None, None, _) => return Ok(None),
    };
    let key = if file == label {
        "panel"
    } else {
        "defaults.panel"
    };
    crate::config::check_panel(&config.agents, worker, raw, key).map_err(|m| {
        NsError::failure(format!("{file}: {m}"))
            .hint(format!("{hint}; the panel was refused for `{label}`"))
    })?;
    Ok(Some(crate::engine::state::Panel {
        members: raw.members.clone(),
        quorum: raw.quorum,
        when_paths,
        rounds: Vec::new(),
    }))
}
