//! `nightshift logs STAGE`: an attempt's log rendered for a person (the agent's messages and
//! tool calls; `--raw` for the JSON events), optionally followed until the job ends. Reads
//! only.

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use crate::error::{NsError, NsResult};
use crate::ids::{JobKey, Role, StageId};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The stage.
    pub stage: String,
    /// The attempt (default: the stage's latest).
    #[arg(long)]
    pub attempt: Option<u32>,
    /// `worker`, `acceptance` or `verifier` (default: the job the stage waits on, else the
    /// worker's log).
    #[arg(long)]
    pub role: Option<String>,
    /// Keep printing as the log grows, until the job ends.
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Print the log as written (raw JSON events).
    #[arg(long)]
    pub raw: bool,
}

/// # Errors
/// When the stage, attempt or role is unknown, or the log does not exist.
pub fn run(repo: &Path, args: &Args) -> NsResult<i32> {
    let paths = super::initialised(repo)?;
    let state = crate::store::read_state_file(&paths)?;
    let id = StageId::new(&args.stage).map_err(|e| NsError::failure(e.to_string()))?;
    let stage = state.stage(&id).ok_or_else(|| {
        NsError::failure(format!("no stage `{id}`")).hint("`nightshift status` lists the stages")
    })?;
    let attempt = args.attempt.unwrap_or(stage.attempt);
    if attempt == 0 {
        return Err(NsError::failure(format!(
            "`{id}` has not started an attempt yet"
        )));
    }
    let role = match &args.role {
        Some(r) => Role::parse(r).ok_or_else(|| {
            NsError::failure(format!("unknown role `{r}`"))
                .hint("use --role worker, --role acceptance or --role verifier")
        })?,
        None => default_role(&paths, stage, attempt),
    };
    // A stage waiting on its panel: the first running member's log.
    let member = stage
        .waiting_jobs()
        .into_iter()
        .map(|(k, ..)| k)
        .find(|k| k.attempt == attempt && k.role == role && k.member.is_some());
    let key = member.unwrap_or(JobKey {
        stage: id.clone(),
        attempt,
        role,
        member: None,
    });
    let log = paths.log_file(&key);
    if !log.exists() {
        return Err(
            NsError::failure(format!("no {role} log for `{id}` attempt {attempt}"))
                .cause(format!("{} does not exist", paths.rel(&log)))
                .hint(format!(
                    "`nightshift agents` shows what runs; try `nightshift logs {id} --role worker`"
                )),
        );
    }
    follow(&paths, &key, &log, args)
}

/// The job the stage waits on for this attempt, else the worker (or the first role that left
/// a log).
fn default_role(
    paths: &crate::paths::Paths,
    stage: &crate::engine::state::Stage,
    attempt: u32,
) -> Role {
    if let Some((role, a)) = stage.status.waiting_on()
        && a == attempt
    {
        return role;
    }
    [Role::Worker, Role::Verifier, Role::Acceptance]
        .into_iter()
        .find(|r| {
            paths
                .log_file(&JobKey {
                    stage: stage.id.clone(),
                    attempt,
                    role: *r,
                    member: None,
                })
                .exists()
        })
        .unwrap_or(Role::Worker)
}

fn follow(paths: &crate::paths::Paths, key: &JobKey, log: &Path, args: &Args) -> NsResult<i32> {
    let io = |e: std::io::Error| {
        NsError::failure(format!("cannot read {}", paths.rel(log))).cause(e.to_string())
    };
    let mut file = std::fs::File::open(log).map_err(io)?;
    let mut renderer = crate::logview::Renderer::default();
    let mut partial = String::new();
    loop {
        let mut chunk = String::new();
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io)?;
        chunk.push_str(&String::from_utf8_lossy(&bytes));
        partial.push_str(&chunk);
        // Only whole lines are rendered; the rest waits for more.
        let cut = partial.rfind('\n').map_or(0, |i| i + 1);
        let whole: String = partial.drain(..cut).collect();
        for line in whole.lines() {
            if args.raw {
                println!("{line}");
            } else {
                renderer.line(line);
            }
        }
        for l in renderer.take() {
            println!("{l}");
        }
        let ended = paths.outcome_file(key).exists() && !paths.registry_file(key).exists();
        if !args.follow || (ended && bytes.is_empty()) {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    if !partial.is_empty() {
        if args.raw {
            println!("{partial}");
        } else {
            renderer.line(&partial);
        }
    }
    for l in renderer.finish() {
        println!("{l}");
    }
    Ok(0)
}
