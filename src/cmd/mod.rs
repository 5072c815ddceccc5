//! One module per subcommand. Each takes the repo path and its parsed arguments and returns an
//! exit code or an [`crate::error::NsError`]; none of them changes state except through
//! [`crate::store::persist`].

pub mod add_stage;
pub mod agents;
pub mod all;
pub mod attach;
pub mod completions;
pub mod demo;
pub mod doctor;
pub mod gc;
pub mod heartbeat;
pub mod init;
pub mod install;
pub mod job;
pub mod log;
pub mod logs;
pub mod notify;
pub mod ops;
pub mod repair;
pub mod report;
pub mod status;
pub mod subscribe;
pub mod template;
pub mod tick;
pub mod watch;

use std::path::Path;

use crate::error::{EXIT_NOT_INIT, NsError, NsResult};
use crate::paths::Paths;

/// Resolves `--repo` to the repository root and checks nightshift is set up there.
///
/// # Errors
/// When the directory does not exist or has no `nightshift.yaml` / state.
pub fn initialised(repo: &Path) -> NsResult<Paths> {
    let root = top(repo)?;
    let paths = Paths::new(root);
    if !paths.config().exists() || !paths.state_dir().exists() {
        return Err(NsError::new(
            EXIT_NOT_INIT,
            format!("{} is not set up for nightshift", paths.root.display()),
        )
        .hint(format!(
            "run `nightshift --repo {} init`",
            paths.root.display()
        )));
    }
    Ok(paths)
}

/// The top of the work tree `--repo` (or the current directory) is in.
///
/// # Errors
/// When the directory does not exist.
pub fn top(repo: &Path) -> NsResult<std::path::PathBuf> {
    crate::paths::work_tree_top(repo).map_err(|e| {
        NsError::failure(format!("cannot open {}", repo.display())).cause(e.to_string())
    })
}

/// Prints a value as pretty JSON on stdout, streamed (no copy of the whole text first).
///
/// # Errors
/// When serialisation fails (a bug) or stdout cannot be written (a reader that went away ends
/// the process with exit 0).
pub fn print_json<T: serde::Serialize>(value: &T) -> NsResult<()> {
    use std::io::{ErrorKind, Write};
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout().lock());
    // A reader that went away (`| head -1`) is not an error: exit 0 at once, as `print!`'s
    // panic on a closed stdout does.
    let unwritten = |kind: ErrorKind, e: &dyn std::fmt::Display| match kind {
        ErrorKind::BrokenPipe => crate::cli::reader_gone(),
        _ => Err(NsError::failure("cannot write to standard output").cause(e.to_string())),
    };
    if let Err(e) = serde_json::to_writer_pretty(&mut out, value) {
        return match e.io_error_kind() {
            Some(kind) => unwritten(kind, &e),
            None => Err(NsError::bug(format!("cannot print json: {e}"))),
        };
    }
    writeln!(out)
        .and_then(|()| out.flush())
        .or_else(|e| unwritten(e.kind(), &e))
}

/// A repository opened for an operator command: the tick lock held (waiting for a running
/// tick), config, git, and the state and budget reconciled with the ledger.
pub struct Locked {
    pub paths: Paths,
    pub config: crate::config::Config,
    pub git: crate::git::Git,
    pub state: crate::engine::state::State,
    pub budget: crate::engine::budget::Budget,
    /// Held until this value is dropped: bind it by name when destructuring.
    pub lock: crate::lock::FileLock,
}

/// Opens `repo` for a state-changing operator command.
///
/// # Errors
/// When the repo is not set up, the lock cannot be taken, or the state is invalid.
pub fn locked(repo: &Path) -> NsResult<Locked> {
    let Opened {
        paths,
        config,
        git,
        lock,
    } = opened(repo)?;
    let (state, budget) = crate::store::load_reconciled(&paths, || Ok(&git))?;
    Ok(Locked {
        paths,
        config,
        git,
        state,
        budget,
        lock,
    })
}

/// A repository opened under the tick lock, its state not read yet.
pub struct Opened {
    pub paths: Paths,
    pub config: crate::config::Config,
    pub git: crate::git::Git,
    /// Held until this value is dropped: bind it by name when destructuring.
    pub lock: crate::lock::FileLock,
}

/// Opens `repo` for a state-changing operator command that reads the state its own way.
///
/// # Errors
/// When the repo is not set up or the lock cannot be taken.
pub fn opened(repo: &Path) -> NsResult<Opened> {
    let paths = initialised(repo)?;
    let config = crate::store::read_config(&paths)?;
    let lock = crate::lock::lock(&paths.lock_file())
        .map_err(|e| NsError::failure("cannot take the tick lock").cause(e.to_string()))?;
    let git = crate::store::open_git(&paths)?;
    Ok(Opened {
        paths,
        config,
        git,
        lock,
    })
}
