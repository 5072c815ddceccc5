//! `nightshift install KIND` / `uninstall [KIND]`: puts `tick --all` and `heartbeat --all` on a
//! per-user schedule (launchd, systemd or cron), records it in `scheduler.json`, and removes
//! exactly that again. Refuses a second kind over an existing one without `--replace`.
//! Never runs as root's scheduler, never touches a repository.

use std::path::Path;

use crate::error::{NsError, NsResult};
use crate::install::plan::{Report, parse_every};
use crate::install::{Kind, Plan, Platform, SchedulerRecord, kinds, record};

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  nightshift install systemd                 # Linux: user timer + oneshot service
  nightshift install launchd                 # macOS: a LaunchAgent
  nightshift install cron --interval 10m     # anywhere with cron
  nightshift install systemd --print         # show what would be written; change nothing

Every entry runs this binary by its absolute path with `tick --all` (every subscribed
repository: `nightshift subscribe DIR`) and `heartbeat --all`, with the PATH of this shell,
and logs to tick.log / heartbeat.log in the host state directory.")]
pub struct InstallArgs {
    /// Which scheduler.
    pub kind: Kind,
    /// How often `tick --all` runs.
    #[arg(long, default_value = "5m", value_parser = parse_every, value_name = "DURATION")]
    pub interval: u64,
    /// How often `heartbeat --all` (the watchdog) runs.
    #[arg(long, default_value = "1m", value_parser = parse_every, value_name = "DURATION")]
    pub heartbeat: u64,
    /// Print what would be written and run; change nothing.
    #[arg(long)]
    pub print: bool,
    /// Remove a scheduler of another kind first.
    #[arg(long)]
    pub replace: bool,
}

#[derive(Debug, clap::Args)]
pub struct UninstallArgs {
    /// Which scheduler (default: the installed one; with none recorded, every kind found).
    pub kind: Option<Kind>,
}

/// # Errors
/// When another kind is installed (without `--replace`), the kind does not run here, or a
/// file or the scheduler's tool fails.
pub fn install(_repo: &Path, args: &InstallArgs) -> NsResult<i32> {
    let platform = Platform::current();
    let plan = Plan::capture(args.interval, args.heartbeat)?;
    if args.print {
        let report = kinds::install(args.kind, &plan, platform, true)?;
        print(&report);
        return Ok(0);
    }
    let existing = record::load()?;
    clear_other_kinds(args, existing.as_ref(), platform)?;
    std::fs::create_dir_all(&plan.workdir).map_err(|e| {
        NsError::failure(format!("cannot create {}", plan.workdir.display())).cause(e.to_string())
    })?;
    let report = kinds::install(args.kind, &plan, platform, false)?;
    print(&report);
    let recorded = save_record(args, &plan, existing)?;
    if !report.changed && !recorded {
        println!(
            "nightshift is already installed with {}; nothing changed",
            args.kind.name()
        );
        return Ok(0);
    }
    println!(
        "installed: {} runs `tick --all` every {} and `heartbeat --all` every {}; logs in {}",
        args.kind.name(),
        crate::config::format_duration(args.interval),
        crate::config::format_duration(args.heartbeat),
        plan.workdir.display()
    );
    if rustix::process::geteuid().is_root() {
        println!("note: you are root: this is root's own user scheduler, not a system-wide one");
    }
    if crate::hostreg::Registry::load().is_ok_and(|r| r.repos.is_empty()) {
        println!("no repository is subscribed yet: run `nightshift subscribe DIR`");
    }
    Ok(0)
}

/// Refuses when a scheduler of another kind is installed, or removes it with `--replace`.
fn clear_other_kinds(
    args: &InstallArgs,
    existing: Option<&SchedulerRecord>,
    platform: Platform,
) -> NsResult<()> {
    for other in Kind::ALL.into_iter().filter(|k| *k != args.kind) {
        let recorded = existing.is_some_and(|r| r.kind == other);
        if !recorded && kinds::installed(other).is_none() {
            continue;
        }
        if !args.replace {
            return Err(NsError::failure(format!(
                "nightshift is already installed with {}",
                other.name()
            ))
            .hint(format!(
                "nightshift install {} --replace (removes the {} entries first), or nightshift uninstall {}",
                args.kind.name(),
                other.name(),
                other.name()
            )));
        }
        print(&kinds::uninstall(other, platform)?);
    }
    Ok(())
}

/// Writes `scheduler.json` unless it already says the same; returns whether it wrote.
fn save_record(
    args: &InstallArgs,
    plan: &Plan,
    existing: Option<SchedulerRecord>,
) -> NsResult<bool> {
    let mut new = SchedulerRecord {
        version: record::SCHEDULER_VERSION,
        kind: args.kind,
        binary: plan.binary.clone(),
        nightshift_version: env!("CARGO_PKG_VERSION").to_owned(),
        interval_secs: args.interval,
        heartbeat_secs: args.heartbeat,
        installed_at: crate::now::now()?,
    };
    if let Some(old) = existing {
        new.installed_at = old.installed_at;
        if old == new {
            return Ok(false);
        }
        new.installed_at = crate::now::now()?;
    }
    record::save(&new)?;
    Ok(true)
}

/// # Errors
/// When an entry exists and cannot be removed, or the scheduler's tool fails.
pub fn uninstall(_repo: &Path, args: &UninstallArgs) -> NsResult<i32> {
    let platform = Platform::current();
    let recorded = record::load().ok().flatten().map(|r| r.kind);
    let targets: Vec<Kind> = match (args.kind, recorded) {
        (Some(k), _) => vec![k],
        (None, Some(k)) => vec![k],
        (None, None) => Kind::ALL.to_vec(),
    };
    let mut changed = false;
    for kind in &targets {
        let report = kinds::uninstall(*kind, platform)?;
        changed |= report.changed;
        print(&report);
    }
    if recorded.is_none_or(|k| targets.contains(&k)) && record::file().exists() {
        record::remove()?;
        println!("removed {}", record::file().display());
        changed = true;
    }
    if !changed {
        println!("nothing to uninstall");
    }
    Ok(0)
}

fn print(report: &Report) {
    for line in &report.lines {
        println!("{line}");
    }
}
