//! systemd: a user `.service` (`Type=oneshot`, `KillMode=process`) and `.timer` per job, from
//! `systemd/nightshift.{service,timer}.in`, in `$XDG_CONFIG_HOME/systemd/user` (else
//! `~/.config/systemd/user`, as systemd itself looks). Reloads and enables them when a user
//! manager answers; otherwise says which commands to run. Never writes system units.

use std::path::PathBuf;

use super::plan::{Job, Plan, Platform, Report, remove_files, render, write_files};
use super::tool;
use crate::error::{NsError, NsResult};

const SERVICE: &str = include_str!("../../systemd/nightshift.service.in");
const TIMER: &str = include_str!("../../systemd/nightshift.timer.in");
const JOBS: [&str; 2] = ["tick", "heartbeat"];

/// The systemd user unit directory.
#[must_use]
pub fn unit_dir() -> PathBuf {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    var("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| var("HOME").map(|h| PathBuf::from(h).join(".config")))
        .unwrap_or_else(|| PathBuf::from(".config"))
        .join("systemd/user")
}

fn unit_paths() -> Vec<PathBuf> {
    JOBS.iter()
        .flat_map(|j| {
            ["service", "timer"].map(|ext| unit_dir().join(format!("nightshift-{j}.{ext}")))
        })
        .collect()
}

fn timers() -> Vec<String> {
    JOBS.iter()
        .map(|j| format!("nightshift-{j}.timer"))
        .collect()
}

/// `%` is a specifier in unit files; inside quotes `\` and `"` are escaped; `$` expands
/// variables in `ExecStart=`.
fn quote(s: &str, dollar: bool) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '%' => out.push_str("%%"),
            '$' if dollar => out.push_str("$$"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn bare(s: &str) -> String {
    s.replace('%', "%%")
}

/// The `(path, text)` of every unit for `plan`.
///
/// # Errors
/// When a template has an unfilled placeholder (a bug).
pub fn units(plan: &Plan) -> NsResult<Vec<(PathBuf, String)>> {
    let environment = plan
        .env
        .iter()
        .map(|(k, v)| format!("Environment={}", quote(&format!("{k}={v}"), false)))
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = Vec::new();
    for job in &plan.jobs {
        let exec_start = plan
            .argv(job)
            .iter()
            .map(|a| quote(a, true))
            .collect::<Vec<_>>()
            .join(" ");
        let values = [
            ("job", job.name.to_owned()),
            ("exec_start", exec_start),
            ("workdir", bare(&plan.workdir.to_string_lossy())),
            ("environment", environment.clone()),
            ("log", bare(&job.log.to_string_lossy())),
        ];
        let service = render(SERVICE, "systemd/nightshift.service.in", &values)?;
        let timer = render(TIMER, "systemd/nightshift.timer.in", &timer_values(job))?;
        out.push((
            unit_dir().join(format!("nightshift-{}.service", job.name)),
            service,
        ));
        out.push((
            unit_dir().join(format!("nightshift-{}.timer", job.name)),
            timer,
        ));
    }
    Ok(out)
}

fn timer_values(job: &Job) -> [(&'static str, String); 3] {
    [
        ("job", job.name.to_owned()),
        ("every", format!("{}s", job.every_secs)),
        ("jitter", format!("{}s", (job.every_secs / 10).clamp(1, 30))),
    ]
}

/// Writes (or prints) the units and enables the timers.
///
/// # Errors
/// On macOS (no systemd) unless printing, or when a unit cannot be written.
pub fn install(plan: &Plan, platform: Platform, print: bool) -> NsResult<Report> {
    let files = units(plan)?;
    let mut report = Report::default();
    let enable = format!("systemctl --user enable --now {}", timers().join(" "));
    if print {
        for (path, text) in &files {
            report.say(format!("# {}\n{text}", path.display()));
        }
        report.say(format!(
            "# then: systemctl --user daemon-reload && {enable}"
        ));
        return Ok(report);
    }
    if platform == Platform::MacOs {
        return Err(
            NsError::failure("systemd does not run on macOS").hint("nightshift install launchd")
        );
    }
    report.changed = write_files(&files, &mut report)?;
    if !report.changed {
        return Ok(report);
    }
    let reload = tool::run("systemctl", &["--user", "daemon-reload"], None);
    if reload.as_ref().is_ok_and(|r| r.ok) {
        let mut args = vec!["--user", "enable", "--now"];
        let t = timers();
        args.extend(t.iter().map(String::as_str));
        tool::run_ok("systemctl", &args, None)?;
        report.say(format!("enabled {}", t.join(" ")));
    } else {
        report.say("no systemd user manager answered; to start the timers, run:");
        report.say(format!("  systemctl --user daemon-reload && {enable}"));
        report.say("on a machine nobody is logged into, also run `loginctl enable-linger $USER` so the timers run without a session");
    }
    Ok(report)
}

/// Stops and disables the timers (when a user manager answers) and removes every unit.
///
/// # Errors
/// When a unit exists and cannot be removed.
pub fn uninstall() -> NsResult<Report> {
    let mut report = Report::default();
    if !unit_paths().iter().any(|p| p.exists()) {
        return Ok(report);
    }
    let t = timers();
    let mut args = vec!["--user", "disable", "--now"];
    args.extend(t.iter().map(String::as_str));
    let _ = tool::run("systemctl", &args, None);
    report.changed = remove_files(&unit_paths(), &mut report)?;
    let _ = tool::run("systemctl", &["--user", "daemon-reload"], None);
    Ok(report)
}

/// The program each installed service runs (the first word of `ExecStart=`); `None` when
/// no unit is installed.
#[must_use]
pub fn installed() -> Option<Vec<String>> {
    let programs: Vec<String> = JOBS
        .iter()
        .filter_map(|j| {
            std::fs::read_to_string(unit_dir().join(format!("nightshift-{j}.service"))).ok()
        })
        .filter_map(|t| {
            let line = t.lines().find_map(|l| l.strip_prefix("ExecStart="))?;
            Some(first_word(line))
        })
        .collect();
    (!programs.is_empty()).then_some(programs)
}

fn first_word(line: &str) -> String {
    let Some(rest) = line.strip_prefix('"') else {
        return line
            .split_whitespace()
            .next()
            .unwrap_or("")
            .replace("%%", "%");
    };
    let mut out = String::new();
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            '"' => break,
            c => out.push(c),
        }
    }
    out.replace("%%", "%").replace("$$", "$")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_round_trips_through_first_word() {
        let odd = "/opt/my \"tools\"/100%/$bin\\x";
        assert_eq!(first_word(&format!("{} tick --all", quote(odd, true))), odd);
        assert_eq!(
            first_word("/usr/bin/nightshift tick"),
            "/usr/bin/nightshift"
        );
    }
}
