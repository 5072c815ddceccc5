//! Runs one child of a job (an agent or an acceptance command): its own process group, stdin
//! from /dev/null, an allow-listed environment, the kernel ruleset of its role when confined
//! (built before the fork, applied between fork and exec: [`crate::confine`]), stdout teed to the log and kept for parsing,
//! stderr to the log, a deadline enforced by killing the group, and whatever the child left
//! behind in its group killed when it ends.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::lock::FileLock;

/// Most bytes of stdout kept in memory for parsing (the log keeps everything).
const KEEP_BYTES: usize = 64 << 20;

/// Variables a child may inherit from nightshift's own environment; everything else is
/// dropped, so the user's shell secrets and other vendors' keys never reach an agent.
pub const ALLOWED_ENV: [&str; 10] = [
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "TMPDIR", "LANG", "LC_ALL", "LC_CTYPE", "TZ",
];

/// What to run.
#[derive(Debug, Clone)]
pub struct ChildSpec {
    pub program: PathBuf,
    pub args: Vec<String>,
    /// Added on top of the allow-listed variables.
    pub env: Vec<(String, String)>,
    pub cwd: PathBuf,
    /// What it may write, when it runs confined (`None`: unconfined).
    pub grants: Option<crate::confine::Grants>,
}

/// How it ended.
#[derive(Debug, Clone, Default)]
pub struct ChildResult {
    pub exit: Option<i32>,
    pub signal: Option<i32>,
    pub timed_out: bool,
    pub stdout: Vec<u8>,
}

/// Runs `spec` to its end or its deadline. `on_start` receives the child's pid and pgid (the
/// wrapper records them in its registration).
///
/// # Errors
/// When the log cannot be opened or the program cannot be started.
pub fn run_child(
    spec: &ChildSpec,
    log: &Path,
    timeout: Duration,
    alive: &FileLock,
    on_start: &mut dyn FnMut(u32, i32),
) -> std::io::Result<ChildResult> {
    use std::os::unix::process::{CommandExt, ExitStatusExt};
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    let mut cmd = Command::new(&spec.program);
    cmd.args(&spec.args).current_dir(&spec.cwd).env_clear();
    for key in ALLOWED_ENV {
        if let Ok(v) = std::env::var(key) {
            cmd.env(key, v);
        }
    }
    cmd.envs(spec.env.iter().map(|(k, v)| (k, v)));
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log_file.try_clone()?);
    cmd.process_group(0);
    if let Some(grants) = &spec.grants {
        crate::confine::prepare(grants)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::PermissionDenied, e))?
            .apply(&mut cmd);
    }
    // The agent inherits the job's liveness lock: while any of its processes lives, the lock
    // is held and ticks see the attempt as alive.
    rustix::io::fcntl_setfd(alive.file(), rustix::io::FdFlags::empty())?;
    let mut child = cmd.spawn()?;
    let pid = child.id();
    let pgid = i32::try_from(pid).unwrap_or(0);
    on_start(pid, pgid);
    let kept = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    if let Some(mut out) = child.stdout.take() {
        let kept = Arc::clone(&kept);
        let mut log_file = log_file;
        std::thread::spawn(move || {
            let mut buf = [0u8; 64 * 1024];
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let _ = log_file.write_all(&buf[..n]);
                if let Ok(mut k) = kept.lock() {
                    if k.len() + n > KEEP_BYTES {
                        let cut = k.len() / 2;
                        k.drain(..cut);
                    }
                    k.extend_from_slice(&buf[..n]);
                }
            }
            let _ = tx.send(());
        });
    }
    let start = Instant::now();
    let mut timed_out = false;
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break st;
        }
        if start.elapsed() >= timeout {
            timed_out = true;
            crate::proc::kill_group(pgid, Duration::from_secs(5));
            break child.wait()?;
        }
        std::thread::sleep(Duration::from_millis(25));
    };
    // Whatever the child left running dies with the attempt: its group, then every other
    // descendant (daemons in sessions of their own are re-parented to this subreaper).
    crate::proc::kill_group(pgid, Duration::from_secs(1));
    let daemons = crate::kill::kill_descendants(Duration::from_secs(1));
    if !daemons.is_empty() {
        eprintln!(
            "nightshift: killed {} process(es) the child left behind: {daemons:?}",
            daemons.len()
        );
    }
    let _ = rx.recv_timeout(Duration::from_secs(5));
    let stdout = kept.lock().map(|k| k.clone()).unwrap_or_default();
    Ok(ChildResult {
        exit: status.code(),
        signal: status.signal(),
        timed_out,
        stdout,
    })
}

/// The last `lines` lines of some output, as text.
#[must_use]
pub fn tail(bytes: &[u8], lines: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
