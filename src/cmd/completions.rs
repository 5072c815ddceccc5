//! `nightshift completions bash|zsh|fish` and `nightshift man`: shell completion scripts and
//! man pages generated from the command-line definition itself (so they cannot drift).
//! Prints or writes only what was asked for.

use std::path::{Path, PathBuf};

use clap::CommandFactory;

use crate::cli::Cli;
use crate::error::{NsError, NsResult};

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Install, for example:
  nightshift completions bash > ~/.local/share/bash-completion/completions/nightshift
  nightshift completions zsh  > \"${fpath[1]}/_nightshift\"
  nightshift completions fish > ~/.config/fish/completions/nightshift.fish")]
pub struct CompletionsArgs {
    pub shell: Shell,
}

#[derive(Debug, clap::Args)]
pub struct ManArgs {
    /// Write nightshift.1 and one nightshift-<command>.1 per command into DIR instead of
    /// printing nightshift.1.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// # Errors
/// Never in practice: a closed stdout (`| head -1`) ends it quietly.
pub fn completions(_repo: &Path, args: &CompletionsArgs) -> NsResult<i32> {
    let mut cmd = Cli::command();
    // clap_complete panics on a failed write: render into memory, then print.
    let mut out = Vec::new();
    match args.shell {
        Shell::Bash => {
            clap_complete::generate(clap_complete::Shell::Bash, &mut cmd, "nightshift", &mut out)
        }
        Shell::Zsh => {
            clap_complete::generate(clap_complete::Shell::Zsh, &mut cmd, "nightshift", &mut out)
        }
        Shell::Fish => {
            clap_complete::generate(clap_complete::Shell::Fish, &mut cmd, "nightshift", &mut out)
        }
    }
    print_bytes(&out, "the completion script")
}

/// Writes bytes to stdout; a reader that went away (`| head -1`) is not an error.
fn print_bytes(bytes: &[u8], what: &str) -> NsResult<i32> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Ok(()) => Ok(0),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(0),
        Err(e) => Err(NsError::failure(format!("cannot print {what}")).cause(e.to_string())),
    }
}

fn render(cmd: clap::Command, title: &str) -> NsResult<Vec<u8>> {
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd)
        .title(title)
        .render(&mut buf)
        .map_err(|e| NsError::bug(format!("cannot render the man page: {e}")))?;
    Ok(buf)
}

/// # Errors
/// When a page cannot be written into `--dir`.
pub fn man(_repo: &Path, args: &ManArgs) -> NsResult<i32> {
    let cmd = Cli::command();
    let Some(dir) = &args.dir else {
        let page = render(cmd, "nightshift")?;
        return print_bytes(&page, "the man page");
    };
    let write = |name: String, page: Vec<u8>| {
        let path = dir.join(name);
        crate::store::write_atomic(&path, &page).map(|()| println!("wrote {}", path.display()))
    };
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("nightshift-{}", sub.get_name());
        let page = render(sub.clone(), &name)?;
        write(format!("{name}.1"), page)?;
    }
    write("nightshift.1".to_owned(), render(cmd, "nightshift")?)?;
    Ok(0)
}
