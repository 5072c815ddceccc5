//! [`visit_all`]: one host-wide pass over every subscribed repository, in a fair order (round
//! robin from where the last pass of that kind stopped), under one host lock per kind, with a
//! time slice per repository and a time budget for the pass. A repository that is missing,
//! not set up, corrupt, failing or slow never stops the others: each is its own child process
//! ([`run_self`]), and a slow one is left to finish on its own (a tick is never killed
//! half-way). Never touches a repository's files itself.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::passes::{self, PassRecord, RepoRecord};
use super::registry::Registry;
use crate::error::{NsError, NsResult};

/// What kind of pass, and its limits.
#[derive(Debug, Clone)]
pub struct Pass {
    /// `tick`, `heartbeat`, `status`: names the host lock and the record.
    pub name: String,
    /// Rotate the order (round robin) and keep a record; false visits in registry order,
    /// without the host lock, and records nothing (read-only passes such as `status --all`).
    pub fair: bool,
    /// How long one repository may take before the pass moves on.
    pub slice: Duration,
    /// No repository is started after the pass has run this long (the rest go first next time).
    pub budget: Option<Duration>,
}

/// How one subcommand run for a repository ended.
#[derive(Debug, Clone, Serialize)]
pub struct Ran {
    /// The `result` field of its `--json` output (`idle`, `advanced`, `busy`, …), `ok` when it
    /// has none, or `slow` when it was still running at the end of its slice.
    pub result: String,
    /// Its `--json` output, when it finished.
    pub json: Option<serde_json::Value>,
}

/// A failure as shown to the user: the house error shape, serialisable.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    pub code: i32,
    pub message: String,
    pub causes: Vec<String>,
    pub hint: Option<String>,
}

impl From<NsError> for Failure {
    fn from(e: NsError) -> Self {
        Failure {
            code: e.code,
            message: e.message,
            causes: e.causes,
            hint: e.hint,
        }
    }
}

/// One repository's part in a pass.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "visit", rename_all = "snake_case")]
pub enum Visit {
    Done(Ran),
    Failed(Failure),
    /// The pass ran out of budget before this repository.
    Skipped,
}

#[derive(Debug, Clone, Serialize)]
pub struct RepoResult {
    pub repo: PathBuf,
    #[serde(flatten)]
    pub visit: Visit,
    pub millis: u64,
}

/// What a pass did.
#[derive(Debug)]
pub enum PassReport {
    /// Another pass of this kind holds the host lock.
    Busy,
    Done(Vec<RepoResult>),
}

/// Visits every subscribed repository with `f(repo, slice)`.
///
/// `tick --all` is `visit_all(&pass, |r, s| run_self(r, &["tick", "--json"], s))`; a
/// `heartbeat --all` is the same call with `["heartbeat", "--json"]`.
///
/// # Errors
/// Only for host-level trouble: the registry is invalid, or the host lock or record cannot be
/// taken or written. A repository's own failure is a [`Visit::Failed`], never an error here.
pub fn visit_all(
    pass: &Pass,
    mut f: impl FnMut(&Path, Duration) -> NsResult<Ran>,
) -> NsResult<PassReport> {
    let registry = Registry::load()?;
    let repos: Vec<PathBuf> = registry.repos.iter().map(|s| s.path.clone()).collect();
    if !pass.fair {
        let results = repos
            .iter()
            .map(|r| visit_one(r, pass.slice, &mut f))
            .collect();
        return Ok(PassReport::Done(results));
    }
    let dir = crate::host::dir();
    std::fs::create_dir_all(&dir).map_err(|e| {
        NsError::failure(format!("cannot create {}", dir.display())).cause(e.to_string())
    })?;
    let Some(_lock) = crate::lock::try_lock(&passes::lock_file(&pass.name))
        .map_err(|e| NsError::failure("cannot take the host lock").cause(e.to_string()))?
    else {
        return Ok(PassReport::Busy);
    };
    let started_at = crate::now::now()?;
    // The record is a cursor and a summary, not state: an unreadable one starts afresh.
    let last = passes::load(&pass.name).ok().flatten();
    let order = passes::rotated(&repos, last.as_ref().and_then(|l| l.next.as_deref()));
    let start = Instant::now();
    let mut results = Vec::new();
    for repo in &order {
        if pass.budget.is_some_and(|b| start.elapsed() >= b) {
            break;
        }
        results.push(visit_one(repo, pass.slice, &mut f));
    }
    let reached = results.len();
    results.extend(order[reached..].iter().map(|r| RepoResult {
        repo: r.clone(),
        visit: Visit::Skipped,
        millis: 0,
    }));
    let record = record(pass, started_at, last, &order, reached, &results)?;
    passes::save(&record)?;
    Ok(PassReport::Done(results))
}

fn visit_one(
    repo: &Path,
    slice: Duration,
    f: &mut impl FnMut(&Path, Duration) -> NsResult<Ran>,
) -> RepoResult {
    let start = Instant::now();
    let visit = match check_repo(repo).and_then(|()| f(repo, slice)) {
        Ok(ran) => Visit::Done(ran),
        Err(e) => Visit::Failed(e.into()),
    };
    RepoResult {
        repo: repo.to_path_buf(),
        visit,
        millis: u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX),
    }
}

/// A subscribed repository that is gone or not set up fails with the fix as its hint.
fn check_repo(repo: &Path) -> NsResult<()> {
    let shown = repo.display();
    if !repo.is_dir() {
        return Err(NsError::failure(format!("repository {shown} is missing"))
            .cause("the directory does not exist (moved or deleted?)")
            .hint(format!("nightshift unsubscribe {shown}")));
    }
    if !repo.join(crate::paths::CONFIG_FILE).is_file() {
        return Err(
            NsError::failure(format!("{shown} is not set up for nightshift"))
                .cause(format!("{shown}/nightshift.yaml does not exist"))
                .hint(format!(
                    "nightshift --repo {shown} init, or nightshift unsubscribe {shown}"
                )),
        );
    }
    Ok(())
}

fn record(
    pass: &Pass,
    started_at: jiff::Timestamp,
    last: Option<PassRecord>,
    order: &[PathBuf],
    reached: usize,
    results: &[RepoResult],
) -> NsResult<PassRecord> {
    let now = crate::now::now()?;
    let mut repos = last.map(|l| l.repos).unwrap_or_default();
    repos.retain(|k, _| order.iter().any(|r| r.to_string_lossy() == k.as_str()));
    for r in &results[..reached] {
        let key = r.repo.to_string_lossy().into_owned();
        let prev_ok = repos.get(&key).and_then(|p| p.last_ok);
        let (result, error) = match &r.visit {
            Visit::Done(ran) => (ran.result.clone(), None),
            Visit::Failed(f) => ("error".to_owned(), Some(f.message.clone())),
            Visit::Skipped => ("skipped".to_owned(), None),
        };
        let ok = error.is_none();
        repos.insert(
            key,
            RepoRecord {
                at: now,
                result,
                millis: r.millis,
                error,
                last_ok: if ok { Some(now) } else { prev_ok },
            },
        );
    }
    Ok(PassRecord {
        version: passes::PASS_VERSION,
        name: pass.name.clone(),
        started_at,
        finished_at: now,
        next: passes::next_start(order, reached),
        visited: order[..reached].to_vec(),
        repos,
    })
}

/// Runs `<this binary> --repo <repo> <args>` as a child process with the environment of this
/// one, waits at most `slice`, and reads its `--json` output. A child still running after
/// `slice` is left to finish (its repository's own lock keeps the next one out).
///
/// # Errors
/// When the child cannot start, or it exits non-zero: the error is the child's own
/// (`error:` / `caused by:` / `hint:` lines parsed back from its stderr).
pub fn run_self(repo: &Path, args: &[&str], slice: Duration) -> NsResult<Ran> {
    let exe = std::env::current_exe()
        .map_err(|e| NsError::failure("cannot find this executable").cause(e.to_string()))?;
    let io = |e: std::io::Error| {
        NsError::failure(format!("cannot run nightshift for {}", repo.display()))
            .cause(e.to_string())
    };
    let mut out = tempfile::tempfile().map_err(io)?;
    let mut err = tempfile::tempfile().map_err(io)?;
    let mut child = Command::new(exe)
        .arg("--repo")
        .arg(repo)
        .args(args)
        .current_dir(repo)
        .stdin(Stdio::null())
        .stdout(out.try_clone().map_err(io)?)
        .stderr(err.try_clone().map_err(io)?)
        .spawn()
        .map_err(io)?;
    let start = Instant::now();
    let mut nap = Duration::from_millis(1);
    let status = loop {
        if let Some(s) = child.try_wait().map_err(io)? {
            break s;
        }
        if start.elapsed() >= slice {
            return Ok(Ran {
                result: "slow".into(),
                json: None,
            });
        }
        // Most ticks end within tens of milliseconds: look often at first, then every 10 ms.
        std::thread::sleep(nap);
        nap = (nap * 2).min(Duration::from_millis(10));
    };
    let read = |f: &mut std::fs::File| {
        use std::io::{Read, Seek};
        let mut s = String::new();
        let _ = f.seek(std::io::SeekFrom::Start(0));
        let _ = f.read_to_string(&mut s);
        s
    };
    let (stdout, stderr) = (read(&mut out), read(&mut err));
    if !status.success() {
        return Err(parse_error(status.code(), &stderr));
    }
    let json: Option<serde_json::Value> = serde_json::from_str(&stdout).ok();
    let result = json
        .as_ref()
        .and_then(|j| j["result"].as_str())
        .unwrap_or("ok")
        .to_owned();
    Ok(Ran { result, json })
}

/// Reads the house error shape back from a child's stderr.
#[must_use]
pub fn parse_error(code: Option<i32>, stderr: &str) -> NsError {
    let code = code.unwrap_or(crate::error::EXIT_FAILURE);
    let mut e: Option<NsError> = None;
    for line in stderr.lines() {
        if let Some(m) = line.strip_prefix("error: ") {
            e = Some(NsError::new(code, m));
        } else if let Some(c) = line.strip_prefix("  caused by: ") {
            e = e.map(|err| err.cause(c));
        } else if let Some(h) = line.strip_prefix("  hint: ") {
            e = e.map(|err| err.hint(h));
        }
    }
    e.unwrap_or_else(|| {
        let last = stderr.lines().last().unwrap_or("no output");
        NsError::new(code, format!("nightshift exited with code {code}")).cause(last)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_error_is_read_back_in_the_house_shape() {
        let e = parse_error(
            Some(3),
            "error: state/state.yaml is not valid\n  caused by: line 2\n  hint: run `nightshift repair`\n",
        );
        assert_eq!(e.code, 3);
        assert_eq!(e.message, "state/state.yaml is not valid");
        assert_eq!(e.causes, ["line 2"]);
        assert_eq!(e.hint.as_deref(), Some("run `nightshift repair`"));
        let e = parse_error(Some(101), "thread 'main' panicked\n");
        assert!(e.message.contains("code 101"));
    }
}
