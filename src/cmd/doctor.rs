//! `nightshift doctor`: checks, without spending a token, that every agent's CLI is there (and
//! its version), that its auth route is usable, that git works and has an identity, and whether
//! a scheduler runs `nightshift tick`. Never prints a secret.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde::Serialize;

use crate::config::{Agent, AgentKind, Auth, Config};
use crate::error::NsResult;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print the checks as JSON: `{version, ok, checks: [{name, ok, detail, hint}]}`.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
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
    for agent in config.agents.values() {
        checks.extend(agent_checks(agent));
    }
    checks.push(scheduler_check(&paths.root));
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
    if args.json {
        super::print_json(&serde_json::json!({ "version": 1, "ok": ok, "checks": checks }))?;
    } else {
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

fn agent_checks(agent: &Agent) -> Vec<Check> {
    let name = format!("agent {}", agent.name);
    let default = match agent.kind {
        AgentKind::Claude => "claude",
        AgentKind::Codex => "codex",
        AgentKind::Gemini => "gemini",
        AgentKind::Command => agent.command.as_deref().unwrap_or(""),
        AgentKind::Script => return vec![check(name, true, "built-in scripted agent", None)],
    };
    let program = agent.command.as_deref().unwrap_or(default);
    let Some(path) = crate::proc::which(program) else {
        let hint = match agent.kind {
            AgentKind::Claude => {
                "npm install -g @anthropic-ai/claude-code, or set `command:` to its absolute path"
            }
            AgentKind::Codex => {
                "npm install -g @openai/codex, or set `command:` to its absolute path"
            }
            _ => "set `command:` to the executable's absolute path",
        };
        return vec![check(
            name,
            false,
            format!("`{program}` is not on PATH"),
            Some(hint.into()),
        )];
    };
    let version = match agent.kind {
        AgentKind::Command => path.display().to_string(),
        _ => probe(&path, &["--version"], &[], None).map_or_else(
            |e| format!("{}: {e}", path.display()),
            |(_, out)| format!("{} ({})", out.trim(), path.display()),
        ),
    };
    vec![check(name, true, version, None), auth_check(agent, &path)]
}

fn auth_check(agent: &Agent, path: &Path) -> Check {
    let name = format!("auth {}", agent.name);
    let hint = Some(format!(
        "fix `agents.{}.auth` in nightshift.yaml",
        agent.name
    ));
    let secret = match crate::agent::auth::secret(agent) {
        Ok(s) => s,
        Err(e) => return check(name, false, e.to_string(), hint),
    };
    match (&agent.auth, agent.kind) {
        (Auth::ApiEnv { source, pass_as }, _) => check(
            name,
            true,
            format!("api key from ${source}, passed as {pass_as}"),
            None,
        ),
        (Auth::ApiCommand { pass_as, .. }, _) => check(
            name,
            secret.is_some(),
            format!("api key from a command, passed as {pass_as}"),
            hint,
        ),
        (Auth::Subscription, AgentKind::Claude) => claude_login(path, &name),
        (Auth::Subscription, AgentKind::Codex) => codex_login(path, &name),
        (Auth::Subscription, AgentKind::Gemini) => gemini_login(&name),
        (Auth::Subscription, _) => check(name, true, "the command's own", None),
    }
}

fn claude_login(path: &Path, name: &str) -> Check {
    match probe(path, &["auth", "status", "--json"], &[], None) {
        Ok((_, out)) => {
            let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
            let method = v["authMethod"].as_str().unwrap_or("none");
            let ok = v["loggedIn"].as_bool() == Some(true) && method != "api_key";
            check(
                name,
                ok,
                format!(
                    "subscription login: loggedIn={}, authMethod={method}",
                    v["loggedIn"]
                ),
                Some("run `claude auth login`, or use `auth: { route: api, env: ... }`".into()),
            )
        }
        Err(e) => check(
            name,
            false,
            e,
            Some("run `claude auth status` yourself to see why".into()),
        ),
    }
}

fn codex_login(path: &Path, name: &str) -> Check {
    match probe(path, &["login", "status"], &[], None) {
        Ok((code, out)) => check(
            name,
            code == Some(0),
            format!("subscription login: {}", out.trim()),
            Some("run `codex login`, or use `auth: { route: api, env: ... }`".into()),
        ),
        Err(e) => check(
            name,
            false,
            e,
            Some("run `codex login status` yourself to see why".into()),
        ),
    }
}

/// Gemini CLI has no login-status command: check that its settings select an auth type
/// (without one, a headless run exits 41 "Invalid auth method selected").
fn gemini_login(name: &str) -> Check {
    let home = std::env::var_os("GEMINI_CLI_HOME")
        .or_else(|| std::env::var_os("HOME"))
        .map(std::path::PathBuf::from)
        .unwrap_or_default();
    let settings = home.join(".gemini/settings.json");
    let text = std::fs::read_to_string(&settings).unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    match v["security"]["auth"]["selectedType"].as_str() {
        Some(t) => check(name, true, format!("subscription login: auth type `{t}` selected in {}", settings.display()), None),
        None => check(name, false, format!("no auth type selected in {}", settings.display()), Some("run `gemini` once interactively to sign in, or use `auth: { route: api, env: ... }`".into())),
    }
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
                "add to `crontab -e`: */5 * * * * {} --repo {} tick",
                std::env::current_exe()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|_| "nightshift".into()),
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
