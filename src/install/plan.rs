//! What an installed scheduler runs, captured once at install time: the absolute path of this
//! binary, the working directory, an explicit `PATH` (so `git`, `claude`, `codex` and
//! `gemini` are found from a scheduler's bare environment), the variables that decide where
//! nightshift keeps its files, the logs, and the two jobs with their intervals. Pure data
//! plus the environment reads that build it; writes nothing.

use std::path::{Path, PathBuf};

use crate::error::{NsError, NsResult};

/// Variables passed to the scheduled job when they are set at install time: they decide where
/// the registry, the host state and the logs are.
pub const PASSED_ENV: [&str; 5] = [
    "HOME",
    "NIGHTSHIFT_HOME",
    "NIGHTSHIFT_HOST_DIR",
    "XDG_CONFIG_HOME",
    "XDG_STATE_HOME",
];

/// The CLIs whose directories must be on the captured `PATH`.
const TOOLS: [&str; 4] = ["git", "claude", "codex", "gemini"];

/// The platform whose scheduler commands run (`NIGHTSHIFT_PLATFORM=macos|linux` overrides
/// the build target, so the launchd path can be exercised on Linux).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    MacOs,
    Linux,
}

impl Platform {
    #[must_use]
    pub fn current() -> Self {
        match std::env::var("NIGHTSHIFT_PLATFORM").as_deref() {
            Ok("macos") => Platform::MacOs,
            Ok("linux") => Platform::Linux,
            _ if cfg!(target_os = "macos") => Platform::MacOs,
            _ => Platform::Linux,
        }
    }
}

/// One scheduled job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// `tick` or `heartbeat`: names the unit, the plist and the log.
    pub name: &'static str,
    /// The arguments after the binary.
    pub args: Vec<String>,
    pub every_secs: u64,
    /// Its output log, in the host state directory.
    pub log: PathBuf,
}

/// Everything a unit, plist or cron line needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub binary: PathBuf,
    pub workdir: PathBuf,
    /// `PATH` first, then [`PASSED_ENV`] that were set, in that order.
    pub env: Vec<(String, String)>,
    pub jobs: Vec<Job>,
}

impl Plan {
    /// Captures the plan from this process: its executable, environment and the host state
    /// directory (created, since the logs go there).
    ///
    /// # Errors
    /// When this executable cannot be found or a path cannot be written into a unit (a
    /// newline in it).
    pub fn capture(interval_secs: u64, heartbeat_secs: u64) -> NsResult<Self> {
        let binary = std::env::current_exe()
            .and_then(std::fs::canonicalize)
            .map_err(|e| NsError::failure("cannot find this executable").cause(e.to_string()))?;
        let workdir = crate::host::dir();
        let path = captured_path(&binary);
        let mut env = vec![("PATH".to_owned(), path)];
        for k in PASSED_ENV {
            if let Some(v) = std::env::var_os(k).filter(|v| !v.is_empty()) {
                env.push((k.to_owned(), v.to_string_lossy().into_owned()));
            }
        }
        let job = |name: &'static str, every_secs| Job {
            name,
            args: vec![name.to_owned(), "--all".to_owned()],
            every_secs,
            log: workdir.join(format!("{name}.log")),
        };
        let plan = Plan {
            binary,
            jobs: vec![job("tick", interval_secs), job("heartbeat", heartbeat_secs)],
            workdir,
            env,
        };
        plan.check()?;
        Ok(plan)
    }

    /// The argv of a job: the binary itself, then its arguments.
    #[must_use]
    pub fn argv(&self, job: &Job) -> Vec<String> {
        std::iter::once(self.binary.to_string_lossy().into_owned())
            .chain(job.args.iter().cloned())
            .collect()
    }

    fn check(&self) -> NsResult<()> {
        let texts = self
            .env
            .iter()
            .flat_map(|(k, v)| [k.clone(), v.clone()])
            .chain([
                self.binary.to_string_lossy().into_owned(),
                self.workdir.to_string_lossy().into_owned(),
            ]);
        for t in texts {
            if t.contains(['\n', '\r', '\0']) {
                return Err(NsError::failure(format!(
                    "cannot write `{}` into a scheduler entry",
                    t.escape_debug()
                ))
                .cause("it contains a newline or NUL"));
            }
        }
        Ok(())
    }
}

/// This process's `PATH`, absolute entries only, without duplicates, plus the directories of
/// this binary and of each tool found, so a scheduler finds them all.
fn captured_path(binary: &Path) -> String {
    let mut dirs: Vec<PathBuf> = Vec::new();
    let mut add = |d: PathBuf| {
        if d.is_absolute() && !dirs.contains(&d) {
            dirs.push(d);
        }
    };
    let current = std::env::var_os("PATH").unwrap_or_default();
    for d in std::env::split_paths(&current) {
        add(d);
    }
    for tool in TOOLS {
        if let Some(dir) = crate::proc::which(tool).and_then(|p| p.parent().map(Path::to_path_buf))
        {
            add(dir);
        }
    }
    if let Some(dir) = binary.parent() {
        add(dir.to_path_buf());
    }
    for d in ["/usr/local/bin", "/usr/bin", "/bin"] {
        add(PathBuf::from(d));
    }
    std::env::join_paths(dirs)
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".to_owned())
}

/// What an install or uninstall did: whether anything changed, and lines for the user.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub changed: bool,
    pub lines: Vec<String>,
}

impl Report {
    pub fn say(&mut self, line: impl Into<String>) {
        self.lines.push(line.into());
    }
}

/// Writes `files` unless each already has exactly that content; returns whether any changed.
///
/// # Errors
/// When a file cannot be written.
pub fn write_files(files: &[(PathBuf, String)], report: &mut Report) -> NsResult<bool> {
    let mut changed = false;
    for (path, text) in files {
        if std::fs::read_to_string(path).is_ok_and(|t| t == *text) {
            continue;
        }
        crate::store::write_atomic(path, text.as_bytes())?;
        report.say(format!("wrote {}", path.display()));
        changed = true;
    }
    Ok(changed)
}

/// Removes `paths` that exist; returns whether any did.
///
/// # Errors
/// When one exists and cannot be removed.
pub fn remove_files(paths: &[PathBuf], report: &mut Report) -> NsResult<bool> {
    let mut removed = false;
    for p in paths {
        match std::fs::remove_file(p) {
            Ok(()) => {
                report.say(format!("removed {}", p.display()));
                removed = true;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(
                    NsError::failure(format!("cannot remove {}", p.display())).cause(e.to_string())
                );
            }
        }
    }
    Ok(removed)
}

/// Fills `{{name}}` placeholders; any left unfilled is an error (a template and the code out
/// of step).
///
/// # Errors
/// When a placeholder remains.
pub fn render(template: &str, label: &str, values: &[(&str, String)]) -> NsResult<String> {
    let mut out = template.to_owned();
    for (k, v) in values {
        out = out.replace(&format!("{{{{{k}}}}}"), v);
    }
    if let Some(at) = out.find("{{") {
        let rest: String = out[at..].chars().take(30).collect();
        return Err(NsError::bug(format!(
            "template {label} has an unfilled placeholder at `{rest}`"
        )));
    }
    Ok(out)
}

/// Parses an `--interval` / `--heartbeat` value such as `5m` into seconds.
///
/// # Errors
/// When it is not a duration or is under 10 seconds.
pub fn parse_every(text: &str) -> Result<u64, String> {
    let secs = crate::config::parse_duration(text)?;
    if secs < 10 {
        return Err(format!("`{text}` is too short (at least 10s)"));
    }
    Ok(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_is_strict() {
        let ok = render("a={{a}}", "t", &[("a", "1".into())]).unwrap();
        assert_eq!(ok, "a=1");
        let e = render("a={{a}} b={{b}}", "t", &[("a", "1".into())]).unwrap_err();
        assert!(e.to_string().contains("{{b}}"), "{e}");
    }

    #[test]
    fn intervals() {
        assert_eq!(parse_every("5m"), Ok(300));
        assert!(parse_every("5s").is_err());
        assert!(parse_every("soon").is_err());
    }
}
