//! `tick --all`, `heartbeat --all` and `status --all`: the host-wide forms of `tick`,
//! `heartbeat` and `status`, over every
//! subscribed repository through [`crate::hostreg::visit_all`]. A broken repository is
//! reported with its error and the command that fixes it; it never stops the others.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use crate::error::{EXIT_FAILURE, NsResult};
use crate::hostreg::visit::{Failure, Pass, PassReport, RepoResult, Visit, run_self};
use crate::hostreg::{passes, visit_all};

/// One `tick --all` pass. Exits 1 when any repository failed (after visiting all of them).
///
/// # Errors
/// Only host-level trouble (an invalid registry, an unwritable host state directory).
pub fn tick_all(slice: Duration, json: bool) -> NsResult<i32> {
    pass_all("tick", slice, json)
}

/// One `heartbeat --all` pass: the watchdog of every subscribed repository, each in its own
/// process. Exits 1 when any repository failed (after visiting all of them).
///
/// # Errors
/// Only host-level trouble (an invalid registry, an unwritable host state directory).
pub fn heartbeat_all(slice: Duration, json: bool) -> NsResult<i32> {
    pass_all("heartbeat", slice, json)
}

/// Runs `nightshift --repo R <command> --json` for every subscribed repository, fairly, under
/// the host lock of that kind of pass.
fn pass_all(command: &str, slice: Duration, json: bool) -> NsResult<i32> {
    let budget = crate::install::record::load()
        .ok()
        .flatten()
        .map(|r| Duration::from_secs(r.interval_secs));
    let pass = Pass {
        name: command.into(),
        fair: true,
        slice,
        budget,
    };
    let report = visit_all(&pass, |repo, slice| {
        run_self(repo, &[command, "--json"], slice)
    })?;
    let PassReport::Done(results) = report else {
        if json {
            super::print_json(&serde_json::json!({ "version": 1, "result": "busy", "repos": [] }))?;
        } else {
            println!("nightshift: another {command} --all is running; nothing to do");
        }
        return Ok(0);
    };
    let failed = results.iter().any(|r| matches!(r.visit, Visit::Failed(_)));
    if json {
        super::print_json(
            &serde_json::json!({ "version": 1, "result": "done", "repos": results }),
        )?;
    } else {
        for r in &results {
            print_tick_line(r);
        }
    }
    Ok(if failed { EXIT_FAILURE } else { 0 })
}

fn print_tick_line(r: &RepoResult) {
    let repo = r.repo.display();
    match &r.visit {
        Visit::Done(ran) if ran.result == "idle" || ran.result == "ok" => {}
        Visit::Done(ran) => println!("{repo}: {}", ran.result),
        Visit::Skipped => {
            println!("{repo}: skipped (the pass ran out of time; it goes first next time)")
        }
        Visit::Failed(f) => print_failure(&repo.to_string(), f),
    }
}

fn print_failure(repo: &str, f: &Failure) {
    println!("{repo}: error: {}", f.message);
    for c in &f.causes {
        println!("  caused by: {c}");
    }
    if let Some(h) = &f.hint {
        println!("  hint: {h}");
    }
}

/// A hint from inside one repository, made runnable from anywhere.
fn with_repo(hint: &str, repo: &Path) -> String {
    if hint.contains("--repo") {
        return hint.to_owned();
    }
    hint.replace(
        "`nightshift ",
        &format!("`nightshift --repo {} ", repo.display()),
    )
}

#[derive(Debug, Serialize)]
struct RepoStatus {
    path: std::path::PathBuf,
    /// `ok`, `halted`, `broken`, `missing` or `not_set_up`.
    state: String,
    /// Stage counts by status.
    stages: BTreeMap<String, u64>,
    in_flight: u64,
    halted: Option<serde_json::Value>,
    error: Option<Failure>,
    last_tick: Option<passes::RepoRecord>,
}

/// `status --all`.
///
/// # Errors
/// Only host-level trouble (an invalid registry).
pub fn status_all(json: bool) -> NsResult<i32> {
    let pass = Pass {
        name: "status".into(),
        fair: false,
        slice: Duration::from_secs(30),
        budget: None,
    };
    let PassReport::Done(results) = visit_all(&pass, |repo, slice| {
        run_self(repo, &["status", "--json"], slice)
    })?
    else {
        return Ok(0);
    };
    let ticks = passes::load("tick").ok().flatten();
    let repos: Vec<RepoStatus> = results
        .iter()
        .map(|r| repo_status(r, ticks.as_ref()))
        .collect();
    let host = host_json(&repos);
    let scheduler = crate::install::record::load().ok().flatten();
    if json {
        super::print_json(&serde_json::json!({
            "version": 1, "scheduler": scheduler, "host": host, "repos": repos,
        }))?;
    } else {
        print_status(&repos, &host, scheduler.as_ref());
    }
    Ok(0)
}

fn repo_status(r: &RepoResult, ticks: Option<&passes::PassRecord>) -> RepoStatus {
    let last_tick = ticks.and_then(|t| t.repos.get(&*r.repo.to_string_lossy()).cloned());
    let mut s = RepoStatus {
        path: r.repo.clone(),
        state: "ok".into(),
        stages: BTreeMap::new(),
        in_flight: 0,
        halted: None,
        error: None,
        last_tick,
    };
    match &r.visit {
        Visit::Done(ran) => {
            let j = ran.json.clone().unwrap_or_default();
            for st in j["stages"].as_array().into_iter().flatten() {
                let k = st["status"].as_str().unwrap_or("?").to_owned();
                *s.stages.entry(k).or_default() += 1;
            }
            s.in_flight = j["in_flight"].as_u64().unwrap_or(0);
            s.halted = j.get("halted").filter(|h| !h.is_null()).cloned();
            if s.halted.is_some() {
                s.state = "halted".into();
            }
        }
        Visit::Failed(f) => {
            let mut f = f.clone();
            f.hint = f.hint.map(|h| with_repo(&h, &r.repo));
            s.state = if !r.repo.is_dir() {
                "missing"
            } else if !r.repo.join(crate::paths::CONFIG_FILE).is_file() {
                "not_set_up"
            } else {
                "broken"
            }
            .into();
            s.error = Some(f);
        }
        Visit::Skipped => s.state = "skipped".into(),
    }
    s
}

/// Host-wide spend and the host caps the repositories configure (the tightest applies).
fn host_json(repos: &[RepoStatus]) -> serde_json::Value {
    let (tokens, usd) = crate::host::totals();
    let mut max_tokens: Option<u64> = None;
    let mut max_usd: Option<f64> = None;
    for r in repos.iter().filter(|r| r.error.is_none()) {
        let Ok(c) = crate::config::Config::load(&r.path.join(crate::paths::CONFIG_FILE)) else {
            continue;
        };
        if let Some(t) = c.money.host_max_tokens {
            max_tokens = Some(max_tokens.map_or(t, |m| m.min(t)));
        }
        if let Some(u) = c.money.host_max_usd {
            max_usd = Some(max_usd.map_or(u, |m| m.min(u)));
        }
    }
    serde_json::json!({ "tokens": tokens, "usd": usd, "max_tokens": max_tokens, "max_usd": max_usd })
}

fn print_status(
    repos: &[RepoStatus],
    host: &serde_json::Value,
    scheduler: Option<&crate::install::SchedulerRecord>,
) {
    match scheduler {
        Some(s) => println!(
            "scheduler: {} (tick --all every {}s, heartbeat --all every {}s)",
            s.kind.name(),
            s.interval_secs,
            s.heartbeat_secs
        ),
        None => println!("scheduler: none installed (`nightshift install systemd|launchd|cron`)"),
    }
    let cap = |v: &serde_json::Value| {
        if v.is_null() {
            "none".to_owned()
        } else {
            v.to_string()
        }
    };
    println!(
        "host: {} tokens, ${:.2} spent; host caps: max_tokens {}, max_usd {}",
        host["tokens"],
        host["usd"].as_f64().unwrap_or(0.0),
        cap(&host["max_tokens"]),
        cap(&host["max_usd"])
    );
    if repos.is_empty() {
        println!("no repository is subscribed: run `nightshift subscribe DIR`");
    }
    for r in repos {
        let mut parts: Vec<String> = r.stages.iter().map(|(k, n)| format!("{n} {k}")).collect();
        if parts.is_empty() && r.error.is_none() {
            parts.push("no stages".into());
        }
        if let Some(t) = &r.last_tick {
            parts.push(format!("last tick {} at {:.0}", t.result, t.at));
        }
        println!("{:<10} {}  {}", r.state, r.path.display(), parts.join("; "));
        if let Some(h) = &r.halted {
            println!("           halted: {}", h["reason"].as_str().unwrap_or("?"));
        }
        if let Some(f) = &r.error {
            println!("           error: {}", f.message);
            for c in &f.causes {
                println!("           caused by: {c}");
            }
            if let Some(h) = &f.hint {
                println!("           fix: {h}");
            }
        }
    }
}
