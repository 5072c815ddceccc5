//! launchd: one LaunchAgent plist per job (`dev.nightshift.tick`, `dev.nightshift.heartbeat`),
//! built with the `plist` crate from `launchd/nightshift.plist`, in
//! `$NIGHTSHIFT_LAUNCHAGENTS_DIR` (else `~/Library/LaunchAgents`); loaded with
//! `launchctl bootstrap gui/<uid>` and unloaded with `bootout` on macOS. Elsewhere only
//! `--print` works. Never writes a LaunchDaemon (system-wide).

use std::path::PathBuf;

use plist::{Dictionary, Value};

use super::plan::{Plan, Platform, Report, remove_files, write_files};
use super::tool;
use crate::error::{NsError, NsResult};

const TEMPLATE: &str = include_str!("../../launchd/nightshift.plist");
const JOBS: [&str; 2] = ["tick", "heartbeat"];

/// The LaunchAgents directory.
#[must_use]
pub fn agents_dir() -> PathBuf {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if let Some(d) = var("NIGHTSHIFT_LAUNCHAGENTS_DIR") {
        return PathBuf::from(d);
    }
    var("HOME")
        .map_or_else(|| PathBuf::from("."), PathBuf::from)
        .join("Library/LaunchAgents")
}

#[must_use]
pub fn label(job: &str) -> String {
    format!("dev.nightshift.{job}")
}

fn plist_path(job: &str) -> PathBuf {
    agents_dir().join(format!("{}.plist", label(job)))
}

fn bug(e: impl std::fmt::Display) -> NsError {
    NsError::bug(format!("launchd/nightshift.plist: {e}"))
}

/// The `(path, xml)` of every plist for `plan`.
///
/// # Errors
/// When the template does not parse or a value is left unfilled (bugs).
pub fn plists(plan: &Plan) -> NsResult<Vec<(PathBuf, String)>> {
    let mut out = Vec::new();
    for job in &plan.jobs {
        let mut dict: Dictionary = plist::from_bytes(TEMPLATE.as_bytes()).map_err(bug)?;
        let s = |t: &std::path::Path| Value::String(t.to_string_lossy().into_owned());
        dict.insert("Label".into(), Value::String(label(job.name)));
        dict.insert(
            "ProgramArguments".into(),
            Value::Array(plan.argv(job).into_iter().map(Value::String).collect()),
        );
        dict.insert(
            "StartInterval".into(),
            Value::Integer(job.every_secs.into()),
        );
        dict.insert("WorkingDirectory".into(), s(&plan.workdir));
        let env: Dictionary = plan
            .env
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        dict.insert("EnvironmentVariables".into(), Value::Dictionary(env));
        dict.insert("StandardOutPath".into(), s(&job.log));
        dict.insert("StandardErrorPath".into(), s(&job.log));
        let mut xml = Vec::new();
        plist::to_writer_xml(&mut xml, &Value::Dictionary(dict)).map_err(bug)?;
        let mut text = String::from_utf8(xml).map_err(bug)?;
        text.push('\n');
        if text.contains("{{") {
            return Err(bug("a placeholder was left unfilled"));
        }
        out.push((plist_path(job.name), text));
    }
    Ok(out)
}

fn domain() -> String {
    format!("gui/{}", rustix::process::getuid().as_raw())
}

/// Writes (or prints) the plists and loads them with `launchctl bootstrap`.
///
/// # Errors
/// Off macOS unless printing; when a plist cannot be written or `launchctl` refuses it.
pub fn install(plan: &Plan, platform: Platform, print: bool) -> NsResult<Report> {
    let files = plists(plan)?;
    let mut report = Report::default();
    if print {
        for (path, text) in &files {
            report.say(format!("# {}\n{text}", path.display()));
        }
        report.say(format!(
            "# then, for each: launchctl bootstrap {} <plist>",
            domain()
        ));
        return Ok(report);
    }
    if platform != Platform::MacOs {
        return Err(NsError::failure("launchd runs only on macOS")
            .hint("nightshift install launchd --print (to see the plists), or nightshift install systemd / cron"));
    }
    report.changed = write_files(&files, &mut report)?;
    if !report.changed {
        return Ok(report);
    }
    for (path, _) in &files {
        let target = format!("{}/{}", domain(), label_of(path));
        let _ = tool::run("launchctl", &["bootout", &target], None);
        tool::run_ok(
            "launchctl",
            &["bootstrap", &domain(), &path.to_string_lossy()],
            None,
        )?;
        report.say(format!("loaded {target}"));
    }
    Ok(report)
}

fn label_of(path: &std::path::Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Unloads (on macOS) and removes every plist.
///
/// # Errors
/// When a plist exists and cannot be removed.
pub fn uninstall(platform: Platform) -> NsResult<Report> {
    let mut report = Report::default();
    let paths: Vec<PathBuf> = JOBS.iter().map(|j| plist_path(j)).collect();
    if platform == Platform::MacOs {
        for j in JOBS.iter().filter(|j| plist_path(j).exists()) {
            let target = format!("{}/{}", domain(), label(j));
            if tool::run("launchctl", &["bootout", &target], None).is_ok_and(|r| r.ok) {
                report.say(format!("unloaded {target}"));
            }
        }
    }
    report.changed = remove_files(&paths, &mut report)?;
    Ok(report)
}

/// The program each installed plist runs (`ProgramArguments[0]`); `None` when none is there.
#[must_use]
pub fn installed() -> Option<Vec<String>> {
    let programs: Vec<String> = JOBS
        .iter()
        .filter_map(|j| plist::from_file::<_, Dictionary>(plist_path(j)).ok())
        .filter_map(|d| {
            d.get("ProgramArguments")?
                .as_array()?
                .first()?
                .as_string()
                .map(str::to_owned)
        })
        .collect();
    (!programs.is_empty()).then_some(programs)
}
