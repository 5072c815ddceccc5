//! Processes: spawning detached jobs (new session, stdin from /dev/null, output to a log),
//! reading a process's start time (identity is pid + start time, never pid alone), and killing
//! whole process groups: TERM, a grace period, KILL, then checking the group is empty.
//! Never signals a single pid when a group is meant, and never waits on an agent in a tick.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};

/// Spawns `cmd` detached: its own session and process group, stdin from /dev/null, stdout
/// and stderr appended to `log`. Returns the child's pid. The child is not waited for.
///
/// # Errors
/// When the log cannot be opened or the spawn fails.
pub fn spawn_detached(cmd: Command, log: &Path) -> std::io::Result<u32> {
    spawn_detached_to(cmd, open_log(log)?)
}

/// Opens (creating it and its folder) a log to append to.
///
/// # Errors
/// When the folder or the file cannot be created or opened.
pub fn open_log(log: &Path) -> std::io::Result<std::fs::File> {
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
}

/// [`spawn_detached`] with its log already open.
///
/// # Errors
/// When the spawn fails.
pub fn spawn_detached_to(mut cmd: Command, out: std::fs::File) -> std::io::Result<u32> {
    use std::os::unix::process::CommandExt;
    let err = out.try_clone()?;
    cmd.stdin(Stdio::null()).stdout(out).stderr(err);
    // SAFETY: setsid is async-signal-safe and allocates nothing.
    unsafe {
        cmd.pre_exec(|| {
            rustix::process::setsid().map_err(std::io::Error::from)?;
            Ok(())
        });
    }
    let child = cmd.spawn()?;
    Ok(child.id())
}

/// A process's start time in clock ticks since boot (Linux `/proc/<pid>/stat` field 22), or
/// `None` when the process is gone, is a zombie, or the platform has no `/proc`. Zombies count
/// as gone: `kill(pid, 0)` would still answer for them.
#[must_use]
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces or parentheses: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); field 22 is index 19.
    if fields.first().is_some_and(|s| *s == "Z" || *s == "X") {
        return None;
    }
    fields.get(19)?.parse().ok()
}

/// True when a process with this pid and start time is alive (not a zombie, not a recycled
/// pid). Without `/proc`, falls back to `kill(pid, 0)`.
#[must_use]
pub fn alive(pid: u32, started: Option<u64>) -> bool {
    if Path::new("/proc/self/stat").exists() {
        return started.is_some() && start_time(pid) == started;
    }
    pid_of(pid).is_some_and(|p| rustix::process::test_kill_process(p).is_ok())
}

fn pid_of(raw: u32) -> Option<Pid> {
    Pid::from_raw(i32::try_from(raw).ok()?)
}

/// True when any process is left in the group.
#[must_use]
pub fn group_alive(pgid: i32) -> bool {
    Pid::from_raw(pgid).is_some_and(|p| {
        rustix::process::test_kill_process_group(p).is_ok() && group_has_live_member(pgid)
    })
}

/// `kill(-pgid, 0)` also answers for zombies; on Linux, look for a member that is not one.
fn group_has_live_member(pgid: i32) -> bool {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return true;
    };
    dir.flatten().any(|e| {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            return false;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return false;
        };
        let Some(close) = stat.rfind(')') else {
            return false;
        };
        let f: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        // fields after ')': state(0) ppid(1) pgrp(2)
        f.first().is_some_and(|s| *s != "Z" && *s != "X")
            && f.get(2).and_then(|g| g.parse::<i32>().ok()) == Some(pgid)
    })
}

/// The signal to send at `elapsed` into a kill with a `grace` period (pure; see [`kill_group`]).
#[must_use]
pub fn kill_plan(elapsed: Duration, grace: Duration) -> Signal {
    if elapsed < grace {
        Signal::TERM
    } else {
        Signal::KILL
    }
}

/// Kills a whole process group: TERM, wait up to `grace`, KILL, then wait (bounded) until no
/// member is left. Returns true when the group is empty.
pub fn kill_group(pgid: i32, grace: Duration) -> bool {
    let Some(p) = Pid::from_raw(pgid) else {
        return true;
    };
    if pgid <= 1 {
        return true;
    }
    let start = Instant::now();
    let _ = rustix::process::kill_process_group(p, Signal::TERM);
    while group_alive(pgid) {
        if kill_plan(start.elapsed(), grace) == Signal::KILL {
            let _ = rustix::process::kill_process_group(p, Signal::KILL);
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while group_alive(pgid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    !group_alive(pgid)
}

/// Resolves a program name to an absolute path by searching the absolute entries of `PATH`
/// (a path with a `/` is returned as is). Under cron and launchd PATH is minimal, so resolve
/// before spawning.
#[must_use]
pub fn which(program: &str) -> Option<std::path::PathBuf> {
    if program.contains('/') {
        return Some(std::path::PathBuf::from(program));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .filter(|dir| dir.is_absolute())
        .map(|d| d.join(program))
        .find(|p| is_executable(p))
}

/// A regular file with an execute bit.
#[must_use]
pub fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_is_term_then_kill() {
        let g = Duration::from_secs(2);
        assert_eq!(kill_plan(Duration::ZERO, g), Signal::TERM);
        assert_eq!(kill_plan(Duration::from_secs(3), g), Signal::KILL);
    }

    #[test]
    fn own_start_time_is_stable() {
        let me = std::process::id();
        let t = start_time(me);
        assert!(t.is_some());
        assert!(alive(me, t));
        assert!(!alive(me, t.map(|v| v + 1)));
    }

    #[test]
    fn kills_a_group_with_a_grandchild() {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "trap '' TERM; sleep 600 & sleep 600"]);
        let pid = spawn_detached(cmd, &dir.path().join("log")).unwrap();
        let pgid = i32::try_from(pid).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        assert!(group_alive(pgid));
        assert!(kill_group(pgid, Duration::from_millis(300)));
        assert!(!group_alive(pgid));
    }
}

/// How a bounded helper command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bounded {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs a short helper command (a secret command, a `--version` probe) with the allow-listed
/// environment plus `env`, stdin from /dev/null, and a time limit; kills it when the limit
/// passes. Meant for commands with small output.
///
/// # Errors
/// When it cannot start, or does not finish within `limit`.
pub fn run_bounded(
    mut cmd: Command,
    env: &[(String, String)],
    limit: Duration,
) -> Result<Bounded, String> {
    cmd.env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for key in crate::job::ALLOWED_ENV {
        if let Ok(v) = std::env::var(key) {
            cmd.env(key, v);
        }
    }
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    let mut child = cmd.spawn().map_err(|e| e.to_string())?;
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            let read = |r: Option<&mut dyn std::io::Read>| {
                let mut s = String::new();
                if let Some(r) = r {
                    let _ = r.read_to_string(&mut s);
                }
                s
            };
            let stdout = read(child.stdout.as_mut().map(|o| o as &mut dyn std::io::Read));
            let stderr = read(child.stderr.as_mut().map(|e| e as &mut dyn std::io::Read));
            return Ok(Bounded {
                code: status.code(),
                stdout,
                stderr,
            });
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("it did not finish within {}s", limit.as_secs()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs a helper command (a notification) in its own process group with `stdin`, the
/// allow-listed environment and inherited stdout/stderr; kills the group at `limit`. Returns
/// its exit code (`-1` when killed by a signal).
///
/// # Errors
/// When it cannot start, or does not finish within `limit` (it is then killed).
pub fn run_bounded_stdin(
    mut cmd: Command,
    stdin: std::fs::File,
    limit: Duration,
) -> Result<i32, String> {
    use std::os::unix::process::CommandExt;
    cmd.env_clear().stdin(Stdio::from(stdin)).process_group(0);
    for key in crate::job::ALLOWED_ENV {
        if let Ok(v) = std::env::var(key) {
            cmd.env(key, v);
        }
    }
    let mut child = cmd.spawn().map_err(|e| e.to_string())?;
    let pgid = i32::try_from(child.id()).unwrap_or(0);
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            return Ok(status.code().unwrap_or(-1));
        }
        if start.elapsed() > limit {
            kill_group(pgid, Duration::from_secs(2));
            let _ = child.wait();
            return Err(format!(
                "it did not finish within {}s; killed",
                limit.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
