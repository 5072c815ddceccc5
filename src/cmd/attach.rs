//! `nightshift attach [--once]`: the live cockpit on a terminal, or a plain table printed
//! again on every change when stdout is not a terminal. Colour unless `NO_COLOR` is set.
//! Read-only: no lock, no dispatch, no state written.

use std::io::IsTerminal;
use std::path::Path;

use crate::error::NsResult;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print the plain table once and exit (also what happens without a terminal, repeated on
    /// every change).
    #[arg(long)]
    pub once: bool,
}

/// # Errors
/// When the repo is not set up, a state file is invalid, or the terminal cannot be used.
pub fn run(repo: &Path, args: &Args) -> NsResult<i32> {
    let paths = super::initialised(repo)?;
    let color = std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    if args.once || !std::io::stdout().is_terminal() {
        let name = paths
            .root
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        crate::cockpit::plain::run(&paths, &name, args.once)?;
    } else {
        crate::cockpit::app::run(paths, color)?;
    }
    Ok(0)
}
