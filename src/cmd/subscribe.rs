//! `nightshift subscribe [DIR]`, `unsubscribe [DIR]`, `repos [--json]`: the host registry of
//! repositories that `tick --all` visits. Changes only the registry, never a repository.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{NsError, NsResult};
use crate::hostreg::registry::{self, Subscription};

#[derive(Debug, clap::Args)]
pub struct DirArg {
    /// The repository (default: `--repo`, else the current directory).
    pub dir: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct ReposArgs {
    /// Print `{version, registry, repos: [{path, subscribed_at, exists, initialised}]}`.
    #[arg(long)]
    pub json: bool,
}

/// # Errors
/// When the directory is not a repository set up for nightshift, or the registry is invalid.
pub fn subscribe(repo: &Path, args: &DirArg) -> NsResult<i32> {
    let dir = args.dir.as_deref().unwrap_or(repo);
    let paths = super::initialised(dir)?;
    let root = paths.root;
    let now = crate::now::now()?;
    let added = registry::update(|r| {
        if r.contains(&root) {
            return false;
        }
        r.repos.push(Subscription {
            path: root.clone(),
            subscribed_at: now,
        });
        true
    })?;
    if added {
        println!(
            "subscribed {}: `nightshift tick --all` visits it",
            root.display()
        );
    } else {
        println!("{} is already subscribed", root.display());
    }
    Ok(0)
}

/// # Errors
/// When the directory is not subscribed, or the registry is invalid.
pub fn unsubscribe(repo: &Path, args: &DirArg) -> NsResult<i32> {
    let root = registry::absolute(args.dir.as_deref().unwrap_or(repo));
    let removed = registry::update(|r| {
        let before = r.repos.len();
        r.repos.retain(|s| s.path != root);
        before != r.repos.len()
    })?;
    if !removed {
        return Err(
            NsError::failure(format!("{} is not subscribed", root.display()))
                .hint("`nightshift repos` lists the subscribed repositories"),
        );
    }
    println!("unsubscribed {}", root.display());
    Ok(0)
}

#[derive(Debug, Serialize)]
struct RepoJson {
    path: PathBuf,
    subscribed_at: jiff::Timestamp,
    exists: bool,
    initialised: bool,
}

/// # Errors
/// When the registry is invalid.
pub fn repos(_repo: &Path, args: &ReposArgs) -> NsResult<i32> {
    let reg = crate::hostreg::Registry::load()?;
    let rows: Vec<RepoJson> = reg
        .repos
        .iter()
        .map(|s| RepoJson {
            path: s.path.clone(),
            subscribed_at: s.subscribed_at,
            exists: s.path.is_dir(),
            initialised: s.path.join(crate::paths::CONFIG_FILE).is_file(),
        })
        .collect();
    if args.json {
        return super::print_json(&serde_json::json!({
            "version": 1,
            "registry": registry::file(),
            "repos": rows,
        }))
        .map(|()| 0);
    }
    if rows.is_empty() {
        println!("no repository is subscribed: run `nightshift subscribe DIR`");
    }
    for r in &rows {
        let note = match (r.exists, r.initialised) {
            (false, _) => "  (missing)",
            (true, false) => "  (not set up)",
            _ => "",
        };
        println!("{}{note}", r.path.display());
    }
    Ok(0)
}
