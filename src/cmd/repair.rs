//! `nightshift repair`: restores a deleted or corrupt `state/state.yaml`, `state/budget.json` or
//! stage file (`state/stages/`) from the ledger head, or commits a valid state the ledger is missing; first removes stale git
//! locks a killed git left ([`crate::gitlocks`]). Says exactly what it removed and restored, and
//! from which commit.

use std::path::Path;

use crate::error::{NsError, NsResult};
use crate::{ledger, lock, store};

#[derive(Debug, clap::Args)]
pub struct Args {}

/// # Errors
/// When there is no ledger to restore from, or the ledger's copy is itself invalid.
pub fn run(repo: &Path, _args: &Args) -> NsResult<i32> {
    let paths = super::initialised(repo)?;
    let _lock = lock::lock(&paths.lock_file())
        .map_err(|e| NsError::failure("cannot take the tick lock").cause(e.to_string()))?;
    let git = store::open_git(&paths)?;
    if let Ok(config) = crate::config::Config::load(&paths.config()) {
        let ws = paths.clone().with_workspaces(config.workspaces.as_deref());
        let removed = crate::gitlocks::clear(&ws, &git, &config.integration_branch)
            .map_err(|e| NsError::from(e).within("cannot look for stale git locks"))?;
        for l in &removed {
            println!("{}", l.removed_text());
        }
    }
    // The stage files are read themselves, not through their cache, which would hide a
    // damaged one until the cache is next rebuilt.
    let state = store::read_hot_file(&paths).and_then(|hot| {
        store::split::read_files(&paths, hot.stage_count).map(|cold| store::split::merge(hot, cold))
    });
    let budget = store::read_budget_file(&paths);
    if state.is_ok() && budget.is_ok() && store::load_reconciled(&paths, || Ok(&git)).is_ok() {
        println!(
            "state/state.yaml and state/budget.json are valid and in step with the ledger: nothing to repair"
        );
        return Ok(0);
    }
    let head = ledger::head(&git).map_err(|e| NsError::from(e).within("cannot read the ledger"))?;
    let Some(commit) = head else {
        return Err(NsError::state(
            "there is no ledger (branch nightshift/ledger) to restore from",
        )
        .hint("if this repo was never set up, run `nightshift init`"));
    };
    let read = store::ledger_full_state(&git, &commit)?;
    let lbudget = read.budget.ok_or_else(|| {
        NsError::state(format!(
            "the ledger head {commit} holds no state/budget.json"
        ))
    })?;
    for err in [state.err(), budget.err()].into_iter().flatten() {
        println!("unusable: {}", err.message);
    }
    // The stage files first (one flush), then the budget, then the hot file that counts them.
    let stages: Vec<(std::path::PathBuf, Vec<u8>)> = read
        .files
        .into_iter()
        .map(|(name, bytes)| {
            (
                paths.state_dir().join(store::split::STAGES_DIR).join(name),
                bytes,
            )
        })
        .collect();
    store::write_batch(&stages)?;
    store::write_json(&paths.budget_file(), &lbudget)?;
    store::write_atomic(&paths.state_file(), &read.hot_bytes)?;
    store::write_atomic(
        &paths.ledger_seq_file(),
        read.state.seq.to_string().as_bytes(),
    )?;
    let _ = std::fs::remove_file(paths.ledger_index());
    store::cache::remove(&store::cache::stages_path(&paths));
    let files = if stages.is_empty() {
        String::new()
    } else {
        format!(" and {} stage files", stages.len())
    };
    println!(
        "restored state/state.yaml, state/budget.json{files} from ledger commit {} (#{})",
        commit.get(..10).unwrap_or(&commit),
        read.state.seq
    );
    println!("next: `nightshift status`, then let the scheduler tick");
    Ok(0)
}
