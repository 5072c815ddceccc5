//! Runs the schedulers' own tools (`crontab`, `systemctl`, `launchctl`), looked up on `PATH`
//! (tests put fakes first), with this process's environment (a user manager is reached through
//! it), stdin from /dev/null or the given text, and never through a shell.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::error::{NsError, NsResult};

/// How a tool ended.
#[derive(Debug, Clone)]
pub struct ToolRun {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `program args…`, feeding `input` on stdin when given.
///
/// # Errors
/// When the program is not on `PATH` or cannot be started.
pub fn run(program: &str, args: &[&str], input: Option<&str>) -> NsResult<ToolRun> {
    let shown = format!("{program} {}", args.join(" "));
    let path = crate::proc::which(program).ok_or_else(|| {
        NsError::failure(format!("`{program}` is not on PATH")).hint(format!(
            "install {program}, or pick another kind: `nightshift install --help`"
        ))
    })?;
    let io =
        |e: std::io::Error| NsError::failure(format!("cannot run `{shown}`")).cause(e.to_string());
    let mut child = Command::new(path)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(io)?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin.write_all(text.as_bytes()).map_err(io)?;
    }
    let out = child.wait_with_output().map_err(io)?;
    Ok(ToolRun {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// Runs a tool and fails unless it succeeds.
///
/// # Errors
/// As [`run`], or when it exits non-zero (its stderr is the cause).
pub fn run_ok(program: &str, args: &[&str], input: Option<&str>) -> NsResult<ToolRun> {
    let r = run(program, args, input)?;
    if r.ok {
        return Ok(r);
    }
    Err(
        NsError::failure(format!("`{program} {}` failed", args.join(" ")))
            .cause(r.stderr.trim().to_owned()),
    )
}
