//! `nightshift __notify` (hidden): runs the user's notify command for one event, detached
//! from the tick that raised it. See [`crate::notify`].

use std::path::PathBuf;

use crate::error::NsResult;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The event as JSON (fed to the command's stdin, then removed).
    #[arg(long)]
    pub message: PathBuf,
    #[arg(long)]
    pub timeout_secs: u64,
    /// The command and its arguments (the summary last).
    #[arg(last = true, required = true)]
    pub argv: Vec<String>,
}

/// # Errors
/// Never: failures are printed to the notify log.
pub fn run(a: &Args) -> NsResult<i32> {
    Ok(crate::notify::deliver(&a.message, a.timeout_secs, &a.argv))
}
