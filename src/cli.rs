//! The command line: clap definitions and dispatch to `cmd::*`. Prints errors in the house
//! shape (`error:` / `caused by:` / `hint:`) and maps them to the named exit codes.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::cmd;
use crate::error::{EXIT_CODES_HELP, NsError};

#[derive(Debug, Parser)]
#[command(
    name = "nightshift",
    version,
    about = "Runs coding agents unattended overnight, and checks their work before it counts.",
    long_about = "Runs coding agents unattended overnight, and checks their work before it counts.\n\n\
Write stage cards (one unit of work each), enqueue them with `nightshift add-stage`, and let a \
scheduler run `nightshift tick` every few minutes. Each tick advances every ready stage by one \
step (dispatch a worker, run acceptance, dispatch a verifier of another model family, \
integrate, retry or escalate) and records it on the git branch nightshift/ledger. In the \
morning, `nightshift report` tells you what happened (`nightshift attach` shows a night in \
progress).\n\n\
Try it: `nightshift demo` runs a whole night on the built-in scripted agent in seconds. \
`nightshift template card` prints an example stage card.",
    after_help = EXIT_CODES_HELP
)]
pub struct Cli {
    /// The repository to work on: any directory inside its work tree (default: the current
    /// directory).
    #[arg(long, global = true, value_name = "DIR")]
    pub repo: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Set up nightshift in a git repository (idempotent): nightshift.yaml, state/, .gitignore
    /// entries and the ledger branch.
    Init(cmd::init::Args),
    /// Validate stage cards and enqueue them. The card is copied and hashed: later edits to
    /// the file do not change a dispatched attempt.
    AddStage(cmd::add_stage::Args),
    /// Advance every ready stage by one step and exit (what the scheduler runs). Exits 0 at
    /// once if another tick is running.
    Tick(cmd::tick::Args),
    /// Show every stage, what it waits on, and the budget.
    Status(cmd::status::Args),
    /// The watchdog, for the scheduler to run every minute: kills attempts past their deadline
    /// (awake time) or silent past their agent's `silence:` window, records crashes, reaps
    /// orphans, and warns when the scheduler stopped. Never dispatches.
    Heartbeat(cmd::heartbeat::Args),
    /// List every registered attempt: stage, role, agent, pid/pgid, age, last progress,
    /// deadline left and log.
    Agents(cmd::agents::Args),
    /// Show an attempt's log as a person reads it (messages and tool calls); `--follow` to
    /// keep reading until the job ends, `--raw` for the JSON events.
    Logs(cmd::logs::Args),
    /// Wait until a stage's current attempt ends: exit 0 if it passed, 1 if it failed, 5 when
    /// `--timeout` expires. Never ticks by itself.
    Watch(cmd::watch::Args),
    /// Show the ledger history (one entry per state change), newest first.
    Log(cmd::log::Args),
    /// The morning digest from the ledger: what was done (verdict, evidence, commit, spend),
    /// what needs you and the exact next command, spend against caps, sleeps, the queue.
    /// `--format html` writes one self-contained page with a timeline of every attempt.
    Report(cmd::report::Args),
    /// A live full-screen cockpit: stages, running agents with liveness and deadlines, spend,
    /// the selected attempt's log and what needs you. Read-only; a plain refreshing table when
    /// stdout is not a terminal.
    Attach(cmd::attach::Args),
    /// Put an escalated, cancelled or done stage back in the queue with a fresh attempt count.
    Requeue(cmd::ops::StageArg),
    /// Cancel a stage, killing its running job if any.
    Cancel(cmd::ops::StageArg),
    /// Clear a budget halt and the counters that caused it.
    Resume(cmd::ops::NoArgs),
    /// Restore a deleted or corrupt state/state.yaml or state/budget.json from the ledger.
    Repair(cmd::repair::Args),
    /// Remove the workspaces of done, cancelled or removed stages (branches stay), attempt
    /// logs older than a retention, and pack the ledger.
    Gc(cmd::gc::Args),
    /// Check, without spending tokens, that agents' CLIs and auth routes, git and the
    /// scheduler are ready. Exits 1 if any check fails.
    Doctor(cmd::doctor::Args),
    /// Run a whole night on the built-in scripted agent, in seconds, in a fresh repository.
    Demo(cmd::demo::Args),
    /// Add a repository to this host's registry: `tick --all` visits it.
    Subscribe(cmd::subscribe::DirArg),
    /// Remove a repository (even a deleted one) from this host's registry.
    Unsubscribe(cmd::subscribe::DirArg),
    /// List the repositories `tick --all` visits.
    Repos(cmd::subscribe::ReposArgs),
    /// Run `tick --all` and `heartbeat --all` on a schedule, as your user: a LaunchAgent
    /// (macOS), a systemd user timer (Linux) or a crontab block.
    Install(cmd::install::InstallArgs),
    /// Remove exactly what `install` wrote.
    Uninstall(cmd::install::UninstallArgs),
    /// Print a template built into this binary: `card` (an example stage card), `config`
    /// (the documented nightshift.yaml), `worker-prompt`, `verifier-prompt`; none lists them.
    Template(cmd::template::Args),
    /// Print a shell completion script.
    Completions(cmd::completions::CompletionsArgs),
    /// Print the man page (or write one per command with --dir).
    Man(cmd::completions::ManArgs),
    /// (internal) Run one detached job: a worker, acceptance run or verifier.
    #[command(name = "__job", hide = true)]
    Job(cmd::job::Args),
    /// (internal) Run the notify command for one event.
    #[command(name = "__notify", hide = true)]
    Notify(cmd::notify::Args),
    /// (internal) The built-in scripted agent.
    #[command(name = "__script-agent", hide = true)]
    ScriptAgent,
}

/// Runs the command line and returns the exit code.
#[must_use]
pub fn main() -> i32 {
    quiet_on_closed_stdout();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                crate::error::EXIT_USAGE
            } else {
                0
            };
        }
    };
    let repo = cli.repo.clone().unwrap_or_else(|| PathBuf::from("."));
    let result = match cli.command {
        Command::Init(a) => cmd::init::run(&repo, &a),
        Command::AddStage(a) => cmd::add_stage::run(&repo, &a),
        Command::Tick(a) => cmd::tick::run(&repo, &a),
        Command::Status(a) => cmd::status::run(&repo, &a),
        Command::Log(a) => cmd::log::run(&repo, &a),
        Command::Heartbeat(a) => cmd::heartbeat::run(&repo, &a),
        Command::Agents(a) => cmd::agents::run(&repo, &a),
        Command::Logs(a) => cmd::logs::run(&repo, &a),
        Command::Watch(a) => cmd::watch::run(&repo, &a),
        Command::Notify(a) => cmd::notify::run(&a),
        Command::Report(a) => cmd::report::run(&repo, &a),
        Command::Attach(a) => cmd::attach::run(&repo, &a),
        Command::Requeue(a) => cmd::ops::requeue(&repo, &a),
        Command::Cancel(a) => cmd::ops::cancel(&repo, &a),
        Command::Resume(a) => cmd::ops::resume(&repo, &a),
        Command::Repair(a) => cmd::repair::run(&repo, &a),
        Command::Gc(a) => cmd::gc::run(&repo, &a),
        Command::Doctor(a) => cmd::doctor::run(&repo, &a),
        Command::Demo(a) => cmd::demo::run(&a),
        Command::Subscribe(a) => cmd::subscribe::subscribe(&repo, &a),
        Command::Unsubscribe(a) => cmd::subscribe::unsubscribe(&repo, &a),
        Command::Repos(a) => cmd::subscribe::repos(&repo, &a),
        Command::Install(a) => cmd::install::install(&repo, &a),
        Command::Uninstall(a) => cmd::install::uninstall(&repo, &a),
        Command::Template(a) => cmd::template::run(&repo, &a),
        Command::Completions(a) => cmd::completions::completions(&repo, &a),
        Command::Man(a) => cmd::completions::man(&repo, &a),
        Command::Job(a) => cmd::job::run(&a),
        Command::ScriptAgent => Ok(crate::agent::script::main_from_env()),
    };
    match result {
        Ok(code) => code,
        Err(e) => report(&e),
    }
}

fn report(e: &NsError) -> i32 {
    eprintln!("{e}");
    e.code
}

/// Ends the process quietly with exit 0: its reader stopped reading (`| head -1`), so there
/// is no one left to tell anything.
pub(crate) fn reader_gone() -> ! {
    std::process::exit(crate::error::EXIT_OK)
}

/// A reader that stopped reading (`nightshift status | head -1`) is not an error: `print!`
/// panics on a closed stdout, so the panic hook ends such a process quietly with exit 0. Any
/// other panic is a bug in nightshift: the default report, then the documented exit code 70.
fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let text = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("");
        if text.starts_with("failed printing to stdout") && text.contains("Broken pipe") {
            reader_gone();
        }
        default(info);
        eprintln!("nightshift: this is a bug in nightshift; please report it with the lines above");
        std::process::exit(crate::error::EXIT_BUG);
    }));
}
