//! `nightshift init`: sets a git repository up for nightshift. Idempotent: what exists is
//! kept, what is missing is created, and the ledger branch gets its first commit.

use std::path::Path;

use crate::engine::budget::Budget;
use crate::engine::effect::Event;
use crate::engine::state::State;
use crate::error::{NsError, NsResult};
use crate::ledger;
use crate::paths::Paths;

pub const CONFIG_TEMPLATE: &str = include_str!("../../templates/config.yaml");

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The branch stage work starts from (default: the current branch, else `main`).
    #[arg(long)]
    pub base: Option<String>,
}

/// # Errors
/// When the directory is not the top of a git work tree, or a file cannot be written.
pub fn run(repo: &Path, args: &Args) -> NsResult<i32> {
    let paths = Paths::new(super::top(repo)?);
    let git = crate::store::open_git(&paths).map_err(|e| {
        e.hint("run `git init` first, and point --repo at the top of the work tree")
    })?;
    let mut done = Vec::new();
    if !paths.config().exists() {
        let base = match &args.base {
            Some(b) => b.clone(),
            None => git
                .try_run(&["symbolic-ref", "--short", "-q", "HEAD"])
                .ok()
                .flatten()
                .unwrap_or_else(|| "main".into()),
        };
        let text = crate::prompt::render(CONFIG_TEMPLATE, &[("base", &base)])
            .map_err(|e| NsError::bug(e.to_string()))?;
        write_user_file(&paths.config(), text.as_bytes(), None)?;
        done.push(format!("wrote nightshift.yaml (base: {base})"));
    }
    crate::config::Config::load(&paths.config())?;
    if ensure_gitignore(&paths)? {
        done.push("added /state/ to .gitignore".into());
    }
    std::fs::create_dir_all(paths.state_dir())
        .map_err(|e| NsError::failure("cannot create state/").cause(e.to_string()))?;
    let _lock = crate::lock::lock(&paths.lock_file())
        .map_err(|e| NsError::failure("cannot take the tick lock").cause(e.to_string()))?;
    let has_ledger = ledger::head(&git)
        .map_err(|e| NsError::from(e).within("cannot read the ledger"))?
        .is_some();
    if !paths.state_file().exists() {
        if has_ledger {
            return Err(NsError::state(
                "state/state.yaml is missing but the ledger branch nightshift/ledger exists",
            )
            .hint("run `nightshift repair` to restore the state from the ledger"));
        }
        crate::store::persist(
            &paths,
            &git,
            State::new(),
            Budget::new(),
            &[Event::repo("initialised")],
        )?;
        done.push("created state/ and the ledger branch nightshift/ledger".into());
    }
    if done.is_empty() {
        println!("nightshift is already set up in {}", paths.root.display());
    } else {
        for d in done {
            println!("{d}");
        }
        println!(
            "next: write a stage card (see `nightshift add-stage --help`) and `nightshift add-stage CARD`"
        );
    }
    Ok(0)
}

fn ensure_gitignore(paths: &Paths) -> NsResult<bool> {
    let path = paths.root.join(".gitignore");
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    if text
        .lines()
        .any(|l| matches!(l.trim(), "/state/" | "state/" | "/state" | "state"))
    {
        return Ok(false);
    }
    let mut out = text;
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str("# nightshift runtime state (its durable part lives on the branch nightshift/ledger)\n/state/\n");
    let mode = std::fs::metadata(&path).ok().map(|m| m.permissions());
    write_user_file(&path, out.as_bytes(), mode)?;
    Ok(true)
}

/// Writes a file of the user's repository atomically: an existing file keeps its mode
/// (`keep`), a new one is created as any editor would (0666 less the umask: 0644 under 022),
/// not with the 0600 of nightshift's own state files.
fn write_user_file(path: &Path, bytes: &[u8], keep: Option<std::fs::Permissions>) -> NsResult<()> {
    use std::io::Write as _;
    use std::os::unix::fs::PermissionsExt as _;
    let io = |e: std::io::Error| {
        NsError::failure(format!("cannot write {}", path.display())).cause(e.to_string())
    };
    let dir = path
        .parent()
        .ok_or_else(|| NsError::bug(format!("{} has no parent directory", path.display())))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .permissions(std::fs::Permissions::from_mode(0o666))
        .tempfile_in(dir)
        .map_err(io)?;
    tmp.write_all(bytes).map_err(io)?;
    if let Some(mode) = keep {
        tmp.as_file().set_permissions(mode).map_err(io)?;
    }
    tmp.as_file().sync_all().map_err(io)?;
    tmp.persist(path).map_err(|e| io(e.error))?;
    Ok(())
}
