//! `nightshift doctor`: checks, without spending a token, that every agent's CLI is there (and
//! its version), that its auth route is usable, that git works and has an identity, and whether
//! a scheduler runs `nightshift tick` (once `nightshift install` ran: that the entries run this
//! binary at this version, that the last pass was recent, that this repo is subscribed). What
//! to check for each kind of agent (its executable, version and login probes) is that kind's own
//! fact (`agent::Vendor::doctor`); this module only runs the probes. Never prints a secret.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use schemars::JsonSchema;
use serde::Serialize;

use crate::agent::{Doctor, LoginProbe};
use crate::config::{Agent, Auth, Config};
use crate::error::NsResult;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print the checks as JSON: `{version, ok, checks: [{name, ok, detail, hint}], warnings}`
    /// (`schemas/doctor-output.schema.json`).
    #[arg(long)]
    pub json: bool,
}

/// What `doctor --json` prints (`schemas/doctor-output.schema.json`).
#[derive(Debug, Serialize, JsonSchema)]
pub struct DoctorOutput {
    pub version: u32,
    /// Every check passed (warnings do not count).
    pub ok: bool,
    pub checks: Vec<Check>,
    /// What does not stop a night but should be known, e.g. an agent whose model has no price.
    pub warnings: Vec<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub detail: String,
    pub hint: Option<String>,
}

fn check(
    name: impl Into<String>,
    ok: bool,
    detail: impl Into<String>,
    hint: Option<String>,
) -> Check {
    Check {
        name: name.into(),
        ok,
        detail: detail.into(),
        hint: if ok { None } else { hint },
    }
}

/// # Errors
/// When the repo is not set up or its config is invalid (those are reported as errors, not
/// checks, because nothing else can be checked then).
pub fn run(repo: &Path, args: &Args) -> NsResult<i32> {
    let paths = super::initialised(repo)?;
    let config = Config::load(&paths.config())?;
    let mut checks = vec![git_check(&paths.root)];
    checks.push(identity_check(&paths.root));
    checks.push(confine_check(&config));
    checks.push(locks_check(&paths, &config));
    for agent in config.agents.values() {
        checks.extend(agent_checks(agent));
        if let Some(c) = shared_state_check(agent) {
            checks.push(c);
        }
    }
    match crate::install::health::checks(&paths.root) {
        Some(installed) => checks.extend(installed),
        None => checks.push(scheduler_check(&paths.root)),
    }
    let sched = crate::awake::scheduler_view(crate::now::now()?);
    if sched.installed {
        let last = sched
            .last_tick
            .map_or_else(|| "never".to_owned(), |t| t.to_string());
        checks.push(check(
            "scheduler ticking",
            !sched.stopped,
            format!("last tick on this host: {last}"),
            Some("the scheduler stopped: reinstall it with `nightshift install`, then check `nightshift status`".into()),
        ));
    }
    let ok = checks.iter().all(|c| c.ok);
    let warnings = config.unpriced_agents();
    if args.json {
        super::print_json(&DoctorOutput {
            version: 1,
            ok,
            checks,
            warnings,
        })?;
    } else {
        for w in &warnings {
            println!("warn {w}");
        }
        for c in &checks {
            println!(
                "{} {:<28} {}",
                if c.ok { "ok  " } else { "FAIL" },
                c.name,
                c.detail
            );
            if let Some(h) = &c.hint {
                println!("     hint: {h}");
            }
        }
    }
    Ok(if ok { 0 } else { crate::error::EXIT_FAILURE })
}

/// Runs a program briefly (see [`crate::proc::run_bounded`]); returns (exit code, stdout, or
/// stderr when stdout is empty).
fn probe(
    program: &Path,
    args: &[&str],
    env: &[(String, String)],
    dir: Option<&Path>,
) -> Result<(Option<i32>, String), String> {
    let mut cmd = Command::new(program);
    cmd.args(args);
    if let Some(d) = dir {
        cmd.current_dir(d);
    }
    let out = crate::proc::run_bounded(cmd, env, Duration::from_secs(30))?;
    let text = if out.stdout.trim().is_empty() {
        out.stderr
    } else {
        out.stdout
    };
    Ok((out.code, text))
}

fn git_check(root: &Path) -> Check {
    match crate::git::Git::open(root).and_then(|g| g.run(&["--version"])) {
        Ok(v) => check("git", true, v, None),
        Err(e) => check(
            "git",
            false,
            e.to_string(),
            Some("install git and make sure it is on PATH".into()),
        ),
    }
}

fn identity_check(root: &Path) -> Check {
    let get = |k: &str| {
        crate::git::Git::open(root)
            .ok()
            .and_then(|g| g.try_run(&["config", k]).ok().flatten())
    };
    match (get("user.name"), get("user.email")) {
        (Some(n), Some(e)) => check("git identity", true, format!("{n} <{e}>"), None),
        _ => check(
            "git identity",
            false,
            "user.name or user.email is not set (nightshift's own commits do not need it; your review commits do)",
            Some("git config --global user.name \"Your Name\" && git config --global user.email you@example.com".into()),
        ),
    }
}

/// Stale git lock files ([`crate::gitlocks`]); the ref locks only when no tick is running
/// (a running tick holds them for a moment).
fn locks_check(paths: &crate::paths::Paths, config: &Config) -> Check {
    let name = "git locks";
    let Ok(git) = crate::git::Git::open(&paths.root) else {
        return check(name, true, "not checked (git does not work here)", None);
    };
    let tick = crate::lock::try_lock(&paths.lock_file()).ok().flatten();
    let ws = paths.clone().with_workspaces(config.workspaces.as_deref());
    match crate::gitlocks::find(&ws, &git, &config.integration_branch, tick.is_some()) {
        Ok(found) if found.is_empty() => check(name, true, "no stale lock files", None),
        Ok(found) => check(
            name,
            false,
            format!(
                "stale: {}",
                found
                    .iter()
                    .map(|l| format!("{} ({})", l.shown, l.what))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Some("`nightshift repair` removes them (the next tick does too)".into()),
        ),
        Err(e) => check(name, false, e.to_string(), None),
    }
}

fn confine_check(config: &Config) -> Check {
    let (ok, detail) = crate::confine::describe(config.confine, &crate::confine::support());
    check("confinement", ok, detail, Some(crate::confine::HINT.into()))
}

/// An agent that shares the user's own CLI state writes it while confined: the weaker mode.
fn shared_state_check(agent: &Agent) -> Option<Check> {
    let home = std::path::PathBuf::from(std::env::var_os("HOME")?);
    let (dirs, _) = agent.kind.vendor().shared_state(&home);
    if !agent.share_cli_state || dirs.is_empty() {
        return None;
    }
    let list: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    Some(check(
        format!("agent {} state", agent.name),
        true,
        format!(
            "weaker mode: shares your own CLI state ({}), which stays writable to the agent; a hook planted there runs later, unconfined. An `api` route (share_cli_state: false) gets a fresh per-attempt state instead",
            list.join(", ")
        ),
        None,
    ))
}

fn agent_checks(agent: &Agent) -> Vec<Check> {
    let name = format!("agent {}", agent.name);
    let vendor = agent.kind.vendor();
    let (install_hint, version_args, pinned, login) = match vendor.doctor() {
        Doctor::BuiltIn(what) => return vec![check(name, true, what, None)],
        Doctor::Cli {
            install_hint,
            version_args,
            pinned,
            login,
        } => (install_hint, version_args, pinned, login),
    };
    let program = agent
        .command
        .as_deref()
        .or(vendor.default_command())
        .unwrap_or("");
    let found = crate::proc::which(program).filter(|p| crate::proc::is_executable(p));
    let Some(path) = found else {
        if program.contains('/') {
            return vec![check(
                name,
                false,
                format!("`{program}` does not exist or is not an executable file"),
                Some(format!(
                    "fix `agents.{}.command` in nightshift.yaml ({install_hint})",
                    agent.name
                )),
            )];
        }
        return vec![check(
            name,
            false,
            format!("`{program}` is not on PATH"),
            Some(install_hint.into()),
        )];
    };
    let (version, printed) = match version_args {
        None => (path.display().to_string(), String::new()),
        Some(args) => probe(&path, args, &[], None).map_or_else(
            |e| (format!("{}: {e}", path.display()), String::new()),
            |(_, out)| (format!("{} ({})", out.trim(), path.display()), out),
        ),
    };
    // A pinned kind runs only the version its output was measured on.
    let pin_ok = pinned.is_none_or(|want| {
        printed
            .split_whitespace()
            .any(|w| w.trim_start_matches('v') == want)
    });
    let version = match pinned {
        Some(want) if !pin_ok => format!("{version}: nightshift drives version {want} only"),
        _ => version,
    };
    vec![
        check(name, pin_ok, version, Some(install_hint.into())),
        auth_check(agent, &path, login),
    ]
}

fn auth_check(agent: &Agent, path: &Path, login: LoginProbe) -> Check {
    let name = format!("auth {}", agent.name);
    let hint = Some(format!(
        "fix `agents.{}.auth` in nightshift.yaml",
        agent.name
    ));
    let secret = match crate::agent::auth::secret(agent) {
        Ok(s) => s,
        Err(e) => return check(name, false, e.to_string(), hint),
    };
    match &agent.auth {
        Auth::ApiEnv { source, pass_as } => check(
            name,
            true,
            format!("api key from ${source}, passed as {pass_as}"),
            None,
        ),
        Auth::ApiCommand { pass_as, .. } => check(
            name,
            secret.is_some(),
            format!("api key from a command, passed as {pass_as}"),
            hint,
        ),
        Auth::Subscription => subscription_check(path, &name, login),
    }
}

/// Checks a subscription login the way the agent's kind says, without spending a token.
fn subscription_check(path: &Path, name: &str, login: LoginProbe) -> Check {
    let status = match login {
        LoginProbe::Own => return check(name, true, "the command's own", None),
        LoginProbe::Inspect(inspect) => inspect(),
        LoginProbe::Status {
            args,
            judge,
            probe_hint,
        } => match probe(path, args, &[], None) {
            Ok((code, out)) => judge(code, &out),
            Err(e) => return check(name, false, e, Some(probe_hint.into())),
        },
    };
    check(name, status.ok, status.detail, Some(status.hint))
}

/// Looks for a cron line, systemd user timer or LaunchAgent that runs `nightshift … tick`.
fn scheduler_check(root: &Path) -> Check {
    let home = std::env::var_os("HOME")
        .map(std::path::PathBuf::from)
        .unwrap_or_default();
    let unit_dirs = [
        home.join(".config/systemd/user"),
        home.join("Library/LaunchAgents"),
    ];
    let in_units = unit_dirs
        .iter()
        .flat_map(|d| std::fs::read_dir(d).into_iter().flatten().flatten())
        .any(|e| {
            std::fs::read_to_string(e.path())
                .is_ok_and(|t| t.contains("nightshift") && t.contains("tick"))
        });
    let in_cron = crate::proc::which("crontab")
        .and_then(|c| probe(&c, &["-l"], &[], Some(root)).ok())
        .is_some_and(|(code, out)| {
            code == Some(0)
                && out.lines().any(|l| {
                    !l.trim_start().starts_with('#')
                        && l.contains("nightshift")
                        && l.contains("tick")
                })
        });
    let found = [
        (in_cron, "cron"),
        (in_units, "a systemd user unit or LaunchAgent"),
    ]
    .iter()
    .filter(|(f, _)| *f)
    .map(|(_, n)| *n)
    .collect::<Vec<_>>();
    if found.is_empty() {
        check(
            "scheduler",
            false,
            "no cron line, systemd user unit or LaunchAgent runs `nightshift tick`",
            Some(format!(
                "nightshift install {} && nightshift subscribe {}",
                if cfg!(target_os = "macos") {
                    "launchd"
                } else {
                    "systemd"
                },
                root.display()
            )),
        )
    } else {
        check(
            "scheduler",
            true,
            format!("found in {}", found.join(" and ")),
            None,
        )
    }
}
