//! `nightshift demo [DIR]`: a whole night in seconds. Makes a fresh git repository, sets
//! nightshift up with two scripted agents of different families, enqueues the cards of
//! `stage-cards/` (embedded in the binary), and runs `nightshift tick` until every stage is
//! finished; then prints `status` and `log` and where the results are. Needs no agent CLI.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::error::{NsError, NsResult};

pub const CARDS: [(&str, &str); 5] = [
    ("hello.md", include_str!("../../stage-cards/hello.md")),
    ("counter.md", include_str!("../../stage-cards/counter.md")),
    ("shout.md", include_str!("../../stage-cards/shout.md")),
    ("spelling.md", include_str!("../../stage-cards/spelling.md")),
    ("review.md", include_str!("../../stage-cards/review.md")),
];

const DEMO_CONFIG: &str = "\
version: 1
lanes: 2
base: main
integration:
  branch: nightshift/integration
  policy: merge
agents:
  scripted-claude:
    kind: script
    family: claude
  scripted-codex:
    kind: script
    family: codex
defaults:
  worker: scripted-claude
  verifier: scripted-codex
  max_attempts: 3
  timeouts: { worker: 2m, verifier: 2m, acceptance: 1m }
budget:
  max_wall_time: 1h
  max_consecutive_failures: 5
";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where to create the demo repository (must not exist or be empty; default: a new
    /// directory under the system temp dir, kept afterwards).
    pub dir: Option<PathBuf>,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 180)]
    pub timeout: u64,
}

/// # Errors
/// When the directory cannot be used, git is missing, or the night does not drain in time.
pub fn run(args: &Args) -> NsResult<i32> {
    let dir = make_dir(args.dir.as_deref())?;
    println!("demo repository: {}", dir.display());
    seed_repo(&dir)?;
    nightshift(&dir, &["init"])?;
    git(&dir, &["add", "-A"])?;
    git(&dir, &["commit", "-q", "-m", "nightshift init"])?;
    let cards: Vec<String> = CARDS
        .iter()
        .map(|(name, _)| format!("stage-cards/{name}"))
        .collect();
    let mut add = vec!["add-stage"];
    add.extend(cards.iter().map(String::as_str));
    nightshift(&dir, &add)?;
    println!("\nrunning the night (ticks chain as jobs finish)...");
    let start = Instant::now();
    loop {
        nightshift_quiet(&dir, &["tick"])?;
        if drained(&dir)? {
            break;
        }
        if start.elapsed() > Duration::from_secs(args.timeout) {
            nightshift(&dir, &["status"])?;
            return Err(
                NsError::failure(format!("the demo did not finish in {}s", args.timeout))
                    .hint(format!("look at the logs in {}/state/logs/", dir.display())),
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    println!("drained in {:.1}s\n", start.elapsed().as_secs_f64());
    nightshift(&dir, &["status"])?;
    println!();
    nightshift(&dir, &["log", "-n", "12"])?;
    println!("\nresults in {}:", dir.display());
    println!("  git log --oneline --graph nightshift/integration   # verified work, merged");
    println!("  git branch --list 'nightshift/stage/*'              # one branch per stage");
    println!("  git log nightshift/ledger                           # the night's journal");
    println!(
        "  ls state/handoffs/*/                                # envelopes, acceptance results, verdicts"
    );
    let report = dir.join("state").join("report.html");
    let out = report.to_string_lossy().into_owned();
    nightshift_quiet(&dir, &["report", "--format", "html", "--out", &out])?;
    println!("\nthe morning report (open it in a browser): {out}");
    Ok(0)
}

fn make_dir(dir: Option<&Path>) -> NsResult<PathBuf> {
    let io = |e: std::io::Error| {
        NsError::failure("cannot create the demo directory").cause(e.to_string())
    };
    match dir {
        Some(d) => {
            if d.exists() && std::fs::read_dir(d).map_err(io)?.next().is_some() {
                return Err(NsError::failure(format!("{} is not empty", d.display()))
                    .hint("name a new or empty directory, or omit it"));
            }
            std::fs::create_dir_all(d).map_err(io)?;
            std::fs::canonicalize(d).map_err(io)
        }
        None => tempfile::Builder::new()
            .prefix("nightshift-demo-")
            .tempdir()
            .map(tempfile::TempDir::keep)
            .map_err(io),
    }
}

fn seed_repo(dir: &Path) -> NsResult<()> {
    let write = |p: &str, t: &str| {
        let path = dir.join(p);
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d)
                .map_err(|e| NsError::failure(format!("cannot write {p}")).cause(e.to_string()))?;
        }
        std::fs::write(&path, t)
            .map_err(|e| NsError::failure(format!("cannot write {p}")).cause(e.to_string()))
    };
    git(dir, &["init", "-q", "-b", "main"])?;
    write(
        "README.md",
        "# nightshift demo\n\nA repository worked on overnight by scripted agents.\n",
    )?;
    write("nightshift.yaml", DEMO_CONFIG)?;
    for (name, text) in CARDS {
        write(&format!("stage-cards/{name}"), text)?;
    }
    git(dir, &["add", "-A"])?;
    git(dir, &["commit", "-q", "-m", "demo: cards and config"])?;
    Ok(())
}

/// Runs git in the demo repository (through [`crate::git::Git`], like every git call), as the
/// demo's own identity.
fn git(dir: &Path, args: &[&str]) -> NsResult<()> {
    const WHO: [&str; 4] = [
        "-c",
        "user.name=nightshift demo",
        "-c",
        "user.email=demo@nightshift.invalid",
    ];
    if args.first() == Some(&"init") {
        crate::git::Git::init(dir, "main")?;
        return Ok(());
    }
    let repo = crate::git::Git::open(dir)?;
    let all: Vec<&str> = WHO.iter().copied().chain(args.iter().copied()).collect();
    repo.run(&all)?;
    Ok(())
}

fn self_cmd(dir: &Path, args: &[&str]) -> NsResult<Command> {
    let exe = std::env::current_exe()
        .map_err(|e| NsError::failure("cannot find the nightshift binary").cause(e.to_string()))?;
    let mut cmd = Command::new(exe);
    cmd.arg("--repo")
        .arg(dir)
        .args(args)
        .current_dir(dir)
        .stdin(std::process::Stdio::null());
    Ok(cmd)
}

fn nightshift(dir: &Path, args: &[&str]) -> NsResult<()> {
    let status = self_cmd(dir, args)?
        .status()
        .map_err(|e| NsError::failure("cannot run nightshift").cause(e.to_string()))?;
    if status.success() {
        Ok(())
    } else {
        Err(NsError::failure(format!(
            "`nightshift {}` failed",
            args.join(" ")
        )))
    }
}

fn nightshift_quiet(dir: &Path, args: &[&str]) -> NsResult<()> {
    let out = self_cmd(dir, args)?
        .output()
        .map_err(|e| NsError::failure("cannot run nightshift").cause(e.to_string()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(
            NsError::failure(format!("`nightshift {}` failed", args.join(" ")))
                .cause(String::from_utf8_lossy(&out.stderr).trim().to_owned()),
        )
    }
}

fn drained(dir: &Path) -> NsResult<bool> {
    let out = self_cmd(dir, &["status", "--json"])?
        .output()
        .map_err(|e| NsError::failure("cannot run nightshift").cause(e.to_string()))?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| NsError::bug(format!("status --json is not json: {e}")))?;
    let halted = !v["halted"].is_null();
    let all_final = v["stages"].as_array().is_some_and(|s| {
        s.iter().all(|x| {
            matches!(
                x["status"].as_str(),
                Some("done" | "escalated" | "cancelled")
            )
        })
    });
    // Halted with nothing running: nothing more will happen without the operator.
    let running = v["stages"].as_array().is_some_and(|s| {
        s.iter().any(|x| {
            matches!(
                x["job"].as_str(),
                Some("running" | "starting" | "not started")
            )
        })
    });
    Ok(all_final || (halted && !running))
}
