//! `Night`: a temp git repo set up for nightshift, with scripted agents, a fixed clock
//! (`NIGHTSHIFT_NOW` = base + n·60 s), a hermetic environment (HOME, TMPDIR and git config
//! inside the temp dir; nothing inherited), and helpers to tick and inspect. Set
//! `KEEP_TEMP_DIR=1` to keep the directory of a failing test.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_nightshift");
const BASE_TIME: i64 = 1_798_765_200; // 2027-01-01T01:00:00Z

/// Two scripted agents of different families; recipes come from the cards.
pub const CONFIG: &str = "\
version: 1
lanes: 1
base: main
integration: { branch: nightshift/integration, policy: fast-forward }
agents:
  wclaude: { kind: script, family: claude }
  vcodex: { kind: script, family: codex }
defaults:
  worker: wclaude
  verifier: vcodex
  max_attempts: 3
  timeouts: { worker: 5m, verifier: 5m, acceptance: 2m }
budget:
  max_consecutive_failures: 50
";

pub struct Night {
    dir: Option<tempfile::TempDir>,
    pub root: PathBuf,
    pub repo: PathBuf,
    pub minute: i64,
    pub chain: bool,
    pub extra_env: Vec<(String, String)>,
}

impl Drop for Night {
    fn drop(&mut self) {
        // Kill anything a test left running in this repo (hung agents, grandchildren).
        let agents = self.repo.join("state/active-agents");
        for e in std::fs::read_dir(&agents).into_iter().flatten().flatten() {
            let text = std::fs::read_to_string(e.path()).unwrap_or_default();
            let Ok(v) = serde_json::from_str::<Value>(&text) else {
                continue;
            };
            for g in ["pgid", "child_pgid"].iter().filter_map(|k| v[*k].as_i64()) {
                let _ = Command::new("kill")
                    .args(["-KILL", "--", &format!("-{g}")])
                    .stderr(Stdio::null())
                    .status();
            }
        }
        if std::env::var("KEEP_TEMP_DIR").is_ok()
            && let Some(d) = self.dir.take()
        {
            eprintln!("kept {}", d.keep().display());
        }
    }
}

impl Night {
    /// A fresh repo with one commit on `main`, `nightshift.yaml` = [`CONFIG`], not yet `init`ed.
    pub fn new() -> Self {
        Self::with_config(CONFIG)
    }

    pub fn with_config(config: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().to_path_buf();
        let repo = root.join("repo");
        std::fs::create_dir_all(root.join("home")).unwrap();
        std::fs::create_dir_all(root.join("tmp")).unwrap();
        std::fs::create_dir_all(&repo).unwrap();
        std::fs::write(
            root.join("home/.gitconfig"),
            "[user]\n\tname = Test User\n\temail = test@example.invalid\n[init]\n\tdefaultBranch = main\n[commit]\n\tgpgsign = false\n",
        )
        .unwrap();
        let night = Self {
            dir: Some(dir),
            root,
            repo,
            minute: 0,
            chain: false,
            extra_env: Vec::new(),
        };
        night.git(&["init", "-q", "-b", "main"]);
        night.write("README.md", "# test repo\n");
        night.write("nightshift.yaml", config);
        night.commit_all("initial");
        night
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.repo.join(rel)
    }

    pub fn write(&self, rel: &str, text: &str) {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    /// Writes `text` to `rel` as editors save: a temp file beside it, renamed over it (a new
    /// inode, and the folder's times change).
    pub fn save_by_rename(&self, rel: &str, text: &str) {
        let p = self.path(rel);
        let tmp = p.with_file_name(".edit");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &p).unwrap();
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap_or_default()
    }

    fn env(&self, cmd: &mut Command) {
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.root.join("home"))
            .env("TMPDIR", self.root.join("tmp"))
            .env("LC_ALL", "C")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("NIGHTSHIFT_NOW", self.now())
            .env("NIGHTSHIFT_CHAIN", if self.chain { "1" } else { "0" })
            .stdin(Stdio::null());
        for (k, v) in &self.extra_env {
            cmd.env(k, v);
        }
    }

    pub fn now(&self) -> String {
        jiff::Timestamp::from_second(BASE_TIME + self.minute * 60)
            .unwrap()
            .to_string()
    }

    pub fn git(&self, args: &[&str]) -> String {
        let mut cmd = Command::new("git");
        self.env(&mut cmd);
        let out = cmd
            .args(args)
            .current_dir(&self.repo)
            .output()
            .expect("git");
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    pub fn commit_all(&self, msg: &str) {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "--allow-empty", "-m", msg]);
    }

    /// Runs the binary in the repo (`--repo` is set).
    pub fn ns(&self, args: &[&str]) -> Output {
        self.ns_env(args, &[])
    }

    pub fn ns_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = self.ns_command(args);
        cmd.envs(env.iter().copied());
        cmd.output().expect("nightshift")
    }

    /// The stage's workspace, in its default place outside the checkout (under the host
    /// state directory in the night's `HOME`).
    pub fn workspace(&self, stage: &str) -> PathBuf {
        let root = self.root.join("home/.local/state/nightshift/workspaces");
        std::fs::read_dir(&root)
            .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
            .flatten()
            .map(|e| e.path().join(stage))
            .find(|p| p.is_dir())
            .unwrap_or_else(|| panic!("no workspace of {stage} under {}", root.display()))
    }

    /// Runs the binary from `dir` (any directory), without `--repo`.
    pub fn ns_at(&self, dir: &Path, args: &[&str]) -> Output {
        let mut cmd = Command::new(BIN);
        self.env(&mut cmd);
        cmd.current_dir(dir)
            .args(args)
            .output()
            .expect("nightshift")
    }

    /// The command [`Night::ns`] runs, for a test that wires its pipes itself.
    pub fn ns_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        self.env(&mut cmd);
        cmd.current_dir(&self.repo)
            .arg("--repo")
            .arg(&self.repo)
            .args(args);
        cmd
    }

    /// Runs and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.ns(args);
        assert!(
            out.status.success(),
            "nightshift {args:?} failed ({:?}):\n{}\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `init`, and commits what it wrote so the base branch is clean.
    pub fn init(&self) -> &Self {
        self.ok(&["init"]);
        self.commit_all("nightshift init");
        self
    }

    /// Writes a card under stage-cards/, commits it, and returns its path.
    pub fn card(&self, id: &str, front: &str, body: &str) -> String {
        let rel = format!("stage-cards/{id}.md");
        self.write(
            &rel,
            &format!("---\nid: {id}\ntitle: Stage {id}\n{front}---\n{body}\n"),
        );
        self.commit_all(&format!("card {id}"));
        rel
    }

    /// One card per id, each with the same front matter `front`; their paths.
    pub fn cards(&self, ids: &[&str], front: &str) -> Vec<String> {
        ids.iter().map(|id| self.card(id, front, "body")).collect()
    }

    pub fn add(&self, cards: &[&str]) {
        let mut args = vec!["add-stage"];
        args.extend_from_slice(cards);
        self.ok(&args);
    }

    /// One tick at the current minute, then the clock moves on a minute.
    pub fn tick(&mut self) -> Output {
        let out = self.ns(&["tick"]);
        self.minute += 1;
        out
    }

    /// One tick with the failpoint `point` armed, then the clock moves on a minute; whether
    /// the tick died there by SIGKILL (a tick that never reached the point exits normally).
    pub fn tick_killed_at(&mut self, point: &str) -> bool {
        let out = self.ns_env(&["tick"], &[("NIGHTSHIFT_FAILPOINT", point)]);
        self.minute += 1;
        std::os::unix::process::ExitStatusExt::signal(&out.status) == Some(9)
    }

    pub fn status(&self) -> Value {
        serde_json::from_str(&self.ok(&["status", "--json"])).expect("status json")
    }

    pub fn stage(&self, id: &str) -> Value {
        self.status()["stages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == id)
            .cloned()
            .unwrap_or(Value::Null)
    }

    /// Waits (real time) until no job the state waits on is still starting or running.
    pub fn settle(&self) {
        let start = Instant::now();
        loop {
            let st = self.status();
            let jobs: Vec<&str> = st["stages"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|s| s["job"].as_str())
                .collect();
            // A job still "starting" after a few seconds with no wrapper process of this
            // repository alive never will (a crash ate its spawn): the engine's spawn grace
            // period judges that, not the harness. One whose wrapper lives is only slow (a
            // loaded machine) and is waited for.
            let starting_too_long =
                start.elapsed() > Duration::from_secs(5) && !self.job_wrapper_alive();
            if !jobs
                .iter()
                .any(|j| *j == "running" || (*j == "starting" && !starting_too_long))
            {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "jobs did not settle: {st:#}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether a job wrapper of this repository runs: a `nightshift __job --repo <repo>`
    /// process, per `/proc` (a zombie has no command line and does not count).
    fn job_wrapper_alive(&self) -> bool {
        use std::os::unix::ffi::OsStrExt;
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return false;
        };
        let canonical = std::fs::canonicalize(&self.repo).unwrap_or_else(|_| self.repo.clone());
        let ours = |arg: &[u8]| {
            let p = Path::new(std::ffi::OsStr::from_bytes(arg));
            p == self.repo || p == canonical
        };
        dir.flatten().any(|e| {
            let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) else {
                return false;
            };
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            args.contains(&b"__job".as_slice())
                && args.windows(2).any(|w| w[0] == b"--repo" && ours(w[1]))
        })
    }

    /// Tick, settle, repeat until every stage is final (or `max` ticks). Returns the ticks used.
    pub fn drain(&mut self, max: usize) -> usize {
        for n in 1..=max {
            let out = self.tick();
            assert!(
                out.status.success(),
                "tick failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            self.settle();
            let st = self.status();
            if st["stages"].as_array().unwrap().iter().all(|s| {
                matches!(
                    s["status"].as_str(),
                    Some("done" | "escalated" | "cancelled")
                )
            }) {
                return n;
            }
        }
        panic!("not drained after {max} ticks: {:#}", self.status());
    }

    /// `git fsck` of the repository (ignoring dangling objects) is clean.
    pub fn assert_fsck_clean(&self, context: &str) {
        let fsck = Command::new("git")
            .args(["fsck", "--no-dangling"])
            .current_dir(&self.repo)
            .output()
            .unwrap();
        assert!(
            fsck.status.success(),
            "{context}: {}",
            String::from_utf8_lossy(&fsck.stderr)
        );
    }

    pub fn ledger_head(&self) -> String {
        self.git(&["rev-parse", "refs/heads/nightshift/ledger"])
    }

    /// Every event line in the ledger, oldest first.
    pub fn events(&self) -> Vec<String> {
        let log: Value = serde_json::from_str(&self.ok(&["log", "--json"])).unwrap();
        let mut out: Vec<String> = Vec::new();
        for e in log["entries"].as_array().unwrap().iter().rev() {
            for ev in e["events"].as_array().unwrap() {
                let who = ev["stage"].as_str().unwrap_or("repo");
                out.push(format!("{who}: {}", ev["text"].as_str().unwrap()));
            }
        }
        out
    }

    pub fn count_events(&self, needle: &str) -> usize {
        self.events().iter().filter(|e| e.contains(needle)).count()
    }
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A worker that writes one file and hands off `done`.
pub fn writes(path: &str, content: &str) -> String {
    format!(
        "    - steps:\n        - write: {{ path: {path}, content: {content:?} }}\n        - envelope: {{ status: done, summary: \"wrote {path}\" }}\n"
    )
}

/// A card's `script:` section from worker plays and verifier plays (each already indented).
pub fn script(worker: &[String], verifier: &[&str]) -> String {
    let mut s = String::from("script:\n  worker:\n");
    for w in worker {
        s.push_str(w);
    }
    s.push_str("  verifier:\n");
    for v in verifier {
        s.push_str(&format!("    - steps:\n        - {v}\n"));
    }
    s
}

pub const PASS: &str = "verdict: { verdict: pass }";

/// Waits until a job has registered its child (agent) process group; returns the registration.
pub fn wait_for_child(n: &Night, stem: &str) -> Value {
    let start = Instant::now();
    loop {
        let text = n.read(&format!("state/active-agents/{stem}.json"));
        if let Ok(v) = serde_json::from_str::<Value>(&text)
            && v["child_pgid"].is_i64()
        {
            return v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{stem} never started its child"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The absolute path of `git` on PATH.
pub fn real_git() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("git"))
        .find(|p| p.is_file())
        .expect("git on PATH")
}
