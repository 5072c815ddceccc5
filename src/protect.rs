//! Protected paths: the bytes an agent must not change (stage cards, `state/`,
//! `nightshift.yaml`, and each card's `protected:` globs). The job hashes them in the stage
//! worktree before the worker starts and again after it ends; any difference fails the
//! attempt with the path named. The real files outside the worktree (the repository's
//! `state/`, `nightshift.yaml`, `.git`, the user's checkout) are watched by
//! [`crate::detect`]. Reads only; never restores anything.

use std::collections::BTreeMap;
use std::path::Path;

use crate::engine::state::{Stage, State};

/// The patterns protected for a stage.
#[must_use]
pub fn patterns(state: &State, stage: &Stage) -> Vec<String> {
    let mut p: Vec<String> = vec![
        "nightshift.yaml".into(),
        "state/**".into(),
        "stage-cards/**".into(),
    ];
    p.extend(state.stages.iter().map(|s| s.card_path.clone()));
    p.extend(stage.protected.iter().cloned());
    p.sort();
    p.dedup();
    p
}

/// `path -> sha256` of every file under `root` matching a pattern (`.git` is never walked).
#[must_use]
pub fn snapshot(root: &Path, patterns: &[String]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut prefixes: Vec<&str> = patterns
        .iter()
        .map(|p| crate::glob::literal_prefix(p))
        .collect();
    if prefixes.contains(&"") {
        prefixes = vec![""];
    }
    prefixes.sort_unstable();
    prefixes.dedup();
    for prefix in prefixes {
        walk(root, &root.join(prefix), patterns, &mut out);
    }
    out
}

fn walk(root: &Path, at: &Path, patterns: &[String], out: &mut BTreeMap<String, String>) {
    let Ok(meta) = std::fs::symlink_metadata(at) else {
        return;
    };
    let rel = at
        .strip_prefix(root)
        .unwrap_or(at)
        .to_string_lossy()
        .replace('\\', "/");
    if meta.is_dir() {
        if rel == ".git" || rel.ends_with("/.git") {
            return;
        }
        let Ok(entries) = std::fs::read_dir(at) else {
            return;
        };
        for e in entries.flatten() {
            walk(root, &e.path(), patterns, out);
        }
    } else if patterns.iter().any(|p| crate::glob::matches(p, &rel)) {
        let bytes = if meta.is_symlink() {
            std::fs::read_link(at)
                .map(|t| t.to_string_lossy().into_owned().into_bytes())
                .unwrap_or_default()
        } else {
            std::fs::read(at).unwrap_or_default()
        };
        out.insert(rel, crate::card::sha256(&bytes));
    }
}

/// Paths whose hash differs between two snapshots (added, removed or changed), sorted.
#[must_use]
pub fn changed(before: &BTreeMap<String, String>, after: &BTreeMap<String, String>) -> Vec<String> {
    let mut out: Vec<String> = before
        .iter()
        .filter(|(k, v)| after.get(*k) != Some(v))
        .map(|(k, _)| k.clone())
        .chain(after.keys().filter(|k| !before.contains_key(*k)).cloned())
        .collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_edit_add_and_delete() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        std::fs::create_dir_all(r.join("stage-cards")).unwrap();
        std::fs::create_dir_all(r.join("src")).unwrap();
        std::fs::write(r.join("stage-cards/a.md"), "a").unwrap();
        std::fs::write(r.join("nightshift.yaml"), "x").unwrap();
        std::fs::write(r.join("src/free.rs"), "free").unwrap();
        let pats = vec![
            "nightshift.yaml".to_owned(),
            "stage-cards/**".to_owned(),
            "state/**".to_owned(),
        ];
        let before = snapshot(r, &pats);
        assert_eq!(before.len(), 2);
        std::fs::write(r.join("src/free.rs"), "changed").unwrap();
        assert!(changed(&before, &snapshot(r, &pats)).is_empty());
        std::fs::write(r.join("stage-cards/a.md"), "edited").unwrap();
        std::fs::create_dir_all(r.join("state")).unwrap();
        std::fs::write(r.join("state/x"), "new").unwrap();
        std::fs::remove_file(r.join("nightshift.yaml")).unwrap();
        assert_eq!(
            changed(&before, &snapshot(r, &pats)),
            vec!["nightshift.yaml", "stage-cards/a.md", "state/x"]
        );
    }
}
