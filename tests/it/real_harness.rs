//! What the real-CLI tests (`real_claude`, `real_codex`, `real_gemini`, `real_aider`,
//! `real_night`) share:
//! finding the installed CLI ([`real_cli`]), a hermetic scratch area to run it in
//! ([`Sandbox`]), one time-limited run with its output kept for failure messages ([`Run`]),
//! and fixture capture ([`save_fixture`]). Each test file keeps its own arguments, fakes and
//! assertions; this module never knows which CLI it runs or what a scenario expects.
//!
//! Environment switches: `NIGHTSHIFT_<NAME>_BIN` overrides where a CLI is found;
//! `NIGHTSHIFT_REQUIRE_REAL_CLIS=1` turns a missing CLI into a failure instead of a skip;
//! `NIGHTSHIFT_UPDATE_FIXTURES=1` rewrites the captured outputs in
//! `tests/fixtures/agent-cli-output/` (temp root → `/tmp/run`); `NIGHTSHIFT_SHOW_CLI_OUTPUT=1`
//! prints every run's stdout and stderr (with `--nocapture`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Each CLI run is killed after this long (the tests expect far less).
pub const RUN_LIMIT: Duration = Duration::from_secs(90);

/// The real agent CLI `name` (`claude`, `codex`, `gemini`, `aider`): `$NIGHTSHIFT_<NAME>_BIN`,
/// else the copy `.ci/run` installs in `tests/agent-clis/` (`npm ci` for the Node CLIs, a
/// virtual environment `.venv` for aider). Missing: the calling test prints `SKIP` and
/// returns, unless `NIGHTSHIFT_REQUIRE_REAL_CLIS=1` (CI), where it fails.
pub fn real_cli(name: &str) -> Option<PathBuf> {
    let var = format!("NIGHTSHIFT_{}_BIN", name.to_uppercase());
    let (dir, install) = if name == "aider" {
        (
            ".venv/bin",
            "python3 -m venv tests/agent-clis/.venv && tests/agent-clis/.venv/bin/pip install aider-chat==0.86.2",
        )
    } else {
        ("node_modules/.bin", "`npm ci` in tests/agent-clis")
    };
    let bin = std::env::var_os(&var).map_or_else(
        || {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/agent-clis")
                .join(dir)
                .join(name)
        },
        PathBuf::from,
    );
    if bin.is_file() {
        return Some(bin);
    }
    let msg = format!(
        "the real {name} CLI is not at {} (run {install}, or set {var})",
        bin.display()
    );
    assert!(
        std::env::var("NIGHTSHIFT_REQUIRE_REAL_CLIS").as_deref() != Ok("1"),
        "{msg}, and NIGHTSHIFT_REQUIRE_REAL_CLIS=1"
    );
    eprintln!("SKIP: {msg}");
    None
}

/// A scratch area for running a real CLI directly: `home/` (with a hermetic `.gitconfig`),
/// `tmp/`, any extra directories, and `repo/`, a git repository with one commit.
pub struct Sandbox {
    _dir: tempfile::TempDir,
    pub root: PathBuf,
    pub repo: PathBuf,
}

impl Sandbox {
    pub fn new(extra_dirs: &[&str]) -> Self {
        Self::with(extra_dirs, &[])
    }

    /// Like [`Sandbox::new`], with these files (relative to `repo/`) in the first commit too.
    pub fn with(extra_dirs: &[&str], repo_files: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().to_path_buf();
        for d in ["home", "tmp", "repo"].iter().chain(extra_dirs) {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::write(
            root.join("home/.gitconfig"),
            "[user]\n\tname = Test\n\temail = test@example.com\n[init]\n\tdefaultBranch = main\n",
        )
        .unwrap();
        let sb = Self {
            _dir: dir,
            repo: root.join("repo"),
            root,
        };
        std::fs::write(sb.repo.join("README.md"), "hello readme\n").unwrap();
        for (rel, text) in repo_files {
            std::fs::write(sb.repo.join(rel), text).unwrap();
        }
        for args in [
            &["init", "-q"][..],
            &["add", "."],
            &["commit", "-qm", "init"],
        ] {
            sb.git(args);
        }
        sb
    }

    /// The text of `rel` in `repo/`.
    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.repo.join(rel)).unwrap()
    }

    fn git(&self, args: &[&str]) {
        let ok = self
            .command(Path::new("git"))
            .args(args)
            .stdout(Stdio::null())
            .status()
            .expect("git")
            .success();
        assert!(ok, "git {args:?}");
    }

    /// `bin` on a cleared environment (PATH, HOME=home/, TMPDIR=tmp/), in `repo/`, with
    /// stdin from /dev/null.
    pub fn command(&self, bin: &Path) -> Command {
        let mut cmd = Command::new(bin);
        cmd.current_dir(&self.repo)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.root.join("home"))
            .env("TMPDIR", self.root.join("tmp"))
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `cmd` (made by [`Sandbox::command`]) as `label` says, in its own process group
    /// with its output captured in files here, and kills the whole group after [`RUN_LIMIT`]:
    /// a run that had to be killed fails the test with its output. `lines` says how stdout
    /// becomes [`Run::lines`].
    pub fn run(&self, label: &str, mut cmd: Command, lines: Lines) -> Run {
        use std::os::unix::process::CommandExt;
        let (out, err) = (self.root.join("stdout.txt"), self.root.join("stderr.txt"));
        cmd.stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap())
            .process_group(0);
        let started = Instant::now();
        let mut child = cmd.spawn().expect("spawn the CLI");
        let status = loop {
            if let Some(s) = child.try_wait().expect("wait") {
                break Some(s);
            }
            if started.elapsed() > RUN_LIMIT {
                let _ = Command::new("kill")
                    .args(["-KILL", "--", &format!("-{}", child.id())])
                    .stderr(Stdio::null())
                    .status();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let stdout = std::fs::read_to_string(&out).unwrap_or_default();
        let run = Run {
            code: status.and_then(|s| s.code()),
            elapsed: started.elapsed(),
            lines: lines.parse(&stdout),
            stdout,
            stderr: std::fs::read_to_string(&err).unwrap_or_default(),
        };
        eprintln!("{label}: exit {:?} in {:.1?}", run.code, run.elapsed);
        if std::env::var("NIGHTSHIFT_SHOW_CLI_OUTPUT").as_deref() == Ok("1") {
            eprintln!("{}", run.dump());
        }
        assert!(
            status.is_some(),
            "{label} did not finish within {RUN_LIMIT:?}\n{}",
            run.dump()
        );
        run
    }
}

/// How a CLI's stdout becomes [`Run::lines`].
#[derive(Debug, Clone, Copy)]
pub enum Lines {
    /// Every non-empty line is a JSON value; anything else fails the test.
    Json,
    /// The lines that parse as JSON; the others are skipped.
    JsonOnly,
    /// None: stdout is one document, read by the test itself.
    Whole,
}

impl Lines {
    fn parse(self, stdout: &str) -> Vec<Value> {
        match self {
            Self::Json => stdout
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
                .collect(),
            Self::JsonOnly => stdout
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect(),
            Self::Whole => Vec::new(),
        }
    }
}

/// One finished run of a real CLI.
pub struct Run {
    pub code: Option<i32>,
    pub elapsed: Duration,
    pub stdout: String,
    pub stderr: String,
    /// stdout's JSON lines, as [`Lines`] said.
    pub lines: Vec<Value>,
}

impl Run {
    /// Everything the run printed, for a failing assertion's message.
    pub fn dump(&self) -> String {
        format!(
            "exit {:?} after {:?}\nstdout:\n{}\nstderr:\n{}",
            self.code, self.elapsed, self.stdout, self.stderr
        )
    }

    /// The last line, which must be of type `result`.
    pub fn result(&self) -> &Value {
        let last = self
            .lines
            .last()
            .unwrap_or_else(|| panic!("no output\nstderr: {}", self.stderr));
        assert_eq!(last["type"], "result", "last line is not a result: {last}");
        last
    }

    /// The last line, whatever its type.
    pub fn last(&self) -> &Value {
        self.lines.last().expect("the CLI printed no JSON line")
    }

    /// The lines of type `ty`.
    pub fn of_type<'a>(&'a self, ty: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.lines.iter().filter(move |l| l["type"] == ty)
    }

    /// The lines of type `ty` and subtype `subtype`.
    pub fn of_subtype<'a>(
        &'a self,
        ty: &'a str,
        subtype: &'a str,
    ) -> impl Iterator<Item = &'a Value> + 'a {
        self.of_type(ty).filter(move |l| l["subtype"] == subtype)
    }

    /// The `item` of each line of type `event` whose item is of type `item_type`.
    pub fn items(&self, event: &str, item_type: &str) -> Vec<&Value> {
        self.lines
            .iter()
            .filter(|l| l["type"] == event && l["item"]["type"] == item_type)
            .map(|l| &l["item"])
            .collect()
    }
}

/// Writes `text` to `tests/fixtures/agent-cli-output/NAME`, the sandbox's root shown as
/// `/tmp/run`, when `NIGHTSHIFT_UPDATE_FIXTURES=1`.
pub fn save_fixture(name: &str, sb: &Sandbox, text: &str) {
    if std::env::var("NIGHTSHIFT_UPDATE_FIXTURES").as_deref() != Ok("1") {
        return;
    }
    let text = text.replace(&sb.root.display().to_string(), "/tmp/run");
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/agent-cli-output")
        .join(name);
    std::fs::write(&path, text).unwrap();
    eprintln!("wrote {}", path.display());
}

/// The base URL of a port on 127.0.0.1 that nobody listens on.
pub fn dead_port_url() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("http://127.0.0.1:{port}")
}

/// The system clock in Unix seconds (the CLIs compare reset times with it).
pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}
