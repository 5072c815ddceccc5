//! Runs the `git` CLI for nightshift: an absolute binary path, stdin from /dev/null,
//! `LC_ALL=C`, and an allow-listed environment so a `GIT_DIR`/`GIT_INDEX_FILE` leaking in from a
//! hook or wrapper can never redirect us at the user's index. Owns no policy: callers decide
//! what to run; this module only makes running it safe and its failures readable.
//!
//! It is also the one place that keeps the repository's own code out of nightshift's git: every
//! invocation disables hooks (`core.hooksPath=/dev/null`), the fsmonitor, signing, ssh,
//! credential helpers, editors and pagers; reads no system config and no system or global
//! attributes file; reads attributes from the empty tree instead of the work tree
//! (`--attr-source`), so a `.gitattributes` written by an agent selects no filter; and, before
//! any command that may convert content or merge, empties every `filter.<x>` and `merge.<x>`
//! driver the repository's config defines (an agent may have planted one in `.git/config` or
//! `.git/info/attributes`).
//!
//! It must never inherit the parent's environment wholesale, never resolve `git` through a
//! relative `PATH` entry, never prompt (no terminal, `GIT_TERMINAL_PROMPT=0`), and never build
//! a git command anywhere but [`Git::command`].

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

mod harden;

use harden::{
    CONVERSION_FREE, EMPTY_TREE_SHA1, EMPTY_TREE_SHA256, FIXED_CONFIG, FIXED_ENV, subcommand,
};

/// Overrides the `git` binary (an absolute path, or a name searched on `PATH`).
pub const GIT_ENV_OVERRIDE: &str = "NIGHTSHIFT_GIT";

/// Parent variables passed through to git (everything else is dropped).
const PASSED_ENV: [&str; 4] = ["PATH", "HOME", "USER", "TMPDIR"];

/// At most this many lines of git's stderr are kept in an error.
const MAX_STDERR_LINES: usize = 20;

/// Why a git invocation failed.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("no `git` executable found on PATH (set {GIT_ENV_OVERRIDE} to its absolute path)")]
    NotFound,
    #[error("{} is not the top of a git work tree", .path.display())]
    NotARepo { path: PathBuf },
    #[error("{}", failed_message(.args, *.code, .stderr))]
    Failed {
        args: String,
        code: Option<i32>,
        stderr: String,
    },
    #[error("could not run git: {0}")]
    Io(#[from] std::io::Error),
}

impl GitError {
    /// The [`GitError::Failed`] for a finished invocation of `git <args>` (for callers of
    /// [`Git::run_raw`] whose exit code was not one they expected).
    #[must_use]
    pub fn from_output(args: &[&str], out: &Output) -> Self {
        Self::Failed {
            args: show_args(args),
            code: out.status.code(),
            stderr: trim_stderr(&String::from_utf8_lossy(&out.stderr)),
        }
    }
}

fn failed_message(args: &str, code: Option<i32>, stderr: &str) -> String {
    let status = match code {
        Some(c) => format!("git {args} exited {c}"),
        None => format!("git {args} was killed by a signal"),
    };
    if stderr.is_empty() {
        status
    } else {
        format!("{status}: {stderr}")
    }
}

/// A git binary bound to one repository's top-level directory.
#[derive(Debug, Clone)]
pub struct Git {
    bin: PathBuf,
    root: PathBuf,
    extra_env: Vec<(String, String)>,
    empty_tree: &'static str,
}

impl Git {
    /// Finds `git` and checks that `repo` is the top of a git work tree.
    ///
    /// # Errors
    /// [`GitError::NotFound`] when no git binary is found, [`GitError::NotARepo`] when `repo`
    /// is not the top-level directory of a work tree, [`GitError::Io`] when it cannot be read.
    pub fn open(repo: &Path) -> Result<Self, GitError> {
        let bin = find_git()?;
        let not_a_repo = || GitError::NotARepo {
            path: repo.to_path_buf(),
        };
        let root = repo.canonicalize().map_err(|_| not_a_repo())?;
        let mut git = Self {
            bin,
            root,
            extra_env: Vec::new(),
            empty_tree: EMPTY_TREE_SHA1,
        };
        let out = git
            .try_run(&["rev-parse", "--show-object-format", "--show-toplevel"])?
            .ok_or_else(not_a_repo)?;
        let mut lines = out.lines();
        if lines.next() == Some("sha256") {
            git.empty_tree = EMPTY_TREE_SHA256;
        }
        let top = lines.next().ok_or_else(not_a_repo)?;
        let top = Path::new(top).canonicalize().map_err(|_| not_a_repo())?;
        if top == git.root {
            Ok(git)
        } else {
            Err(not_a_repo())
        }
    }

    /// Runs `git init -q -b <branch>` in the existing directory `dir` (hardened like every
    /// other invocation) and opens the new repository.
    ///
    /// # Errors
    /// As [`Git::open`], and [`GitError::Failed`] when `git init` fails.
    pub fn init(dir: &Path, branch: &str) -> Result<Self, GitError> {
        let bare = Self {
            bin: find_git()?,
            root: dir.to_path_buf(),
            extra_env: Vec::new(),
            empty_tree: EMPTY_TREE_SHA1,
        };
        bare.run_in(dir, &["init", "-q", "-b", branch], &[], None)?;
        Self::open(dir)
    }

    /// Adds a variable to the environment of every later invocation (after the allow-list,
    /// before per-call pairs). Used to pin `HOME`/`GIT_CONFIG_GLOBAL` for hermetic runs.
    #[must_use]
    pub fn with_env(mut self, key: &str, value: &str) -> Self {
        self.extra_env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// The canonical top-level directory of the repository.
    #[must_use]
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The absolute path of the git binary.
    #[must_use]
    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// Runs git in the repository root and returns its stdout, trailing newlines trimmed.
    ///
    /// # Errors
    /// [`GitError::Failed`] when git exits non-zero, [`GitError::Io`] when it cannot be run.
    pub fn run(&self, args: &[&str]) -> Result<String, GitError> {
        let out = self.run_in(&self.root, args, &[], None)?;
        Ok(stdout_text(&out))
    }

    /// Like [`Git::run`] but a non-zero exit is `Ok(None)` (e.g. `rev-parse --verify` of a
    /// missing ref).
    ///
    /// # Errors
    /// [`GitError::Io`] (or [`GitError::NotFound`]) only when git cannot be run at all.
    pub fn try_run(&self, args: &[&str]) -> Result<Option<String>, GitError> {
        let out = self.run_raw(&self.root, args, &[], None)?;
        Ok(out.status.success().then(|| stdout_text(&out)))
    }

    /// Runs git in `dir` with extra `env` pairs and optional stdin bytes.
    ///
    /// # Errors
    /// [`GitError::Failed`] when git exits non-zero, [`GitError::Io`] when it cannot be run.
    pub fn run_in(
        &self,
        dir: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        stdin: Option<&[u8]>,
    ) -> Result<Output, GitError> {
        let out = self.run_raw(dir, args, env, stdin)?;
        if out.status.success() {
            Ok(out)
        } else {
            Err(GitError::from_output(args, &out))
        }
    }

    /// Like [`Git::run_in`] but returns the output whatever the exit status (for commands
    /// whose exit code carries meaning, such as `merge-tree`).
    ///
    /// # Errors
    /// [`GitError::Io`] (or [`GitError::NotFound`]) only when git cannot be run at all.
    pub fn run_raw(
        &self,
        dir: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        stdin: Option<&[u8]>,
    ) -> Result<Output, GitError> {
        let mut cmd = self.command(dir, args, env);
        cmd.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        let mut child = cmd.spawn().map_err(spawn_error)?;
        let feed = child.stdin.take();
        std::thread::scope(|s| {
            if let (Some(mut pipe), Some(bytes)) = (feed, stdin) {
                // A write error means git exited early; its status reports why.
                s.spawn(move || pipe.write_all(bytes));
            }
            child.wait_with_output()
        })
        .map_err(GitError::Io)
    }

    /// The one builder of a git command: the hardened config and environment, then `args`,
    /// run in `dir` with stdout and stderr piped. Callers that spawn it themselves (a detached
    /// repack) still get every protection.
    #[must_use]
    pub fn command(&self, dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut cmd = self.bare_command(dir);
        for c in FIXED_CONFIG {
            cmd.arg("-c").arg(c);
        }
        cmd.arg(format!("--attr-source={}", self.empty_tree));
        if !subcommand(args).is_some_and(|s| CONVERSION_FREE.contains(&s)) {
            for c in self.driver_overrides(dir) {
                cmd.arg("-c").arg(c);
            }
        }
        cmd.args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd
    }

    /// `git` in `dir` with the allow-listed, fixed and extra environment, and no arguments.
    fn bare_command(&self, dir: &Path) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.current_dir(dir)
            .env_clear()
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for key in PASSED_ENV {
            if let Some(v) = std::env::var_os(key) {
                cmd.env(key, v);
            }
        }
        cmd.envs(FIXED_ENV);
        for (k, v) in &self.extra_env {
            cmd.env(k, v);
        }
        cmd
    }

    /// `-c` overrides emptying every content filter and custom merge driver the repository's
    /// config (includes followed) defines as seen from `dir`. Reading config runs nothing.
    fn driver_overrides(&self, dir: &Path) -> Vec<String> {
        let mut cmd = self.bare_command(dir);
        cmd.args(["config", "--name-only", "-z", "--get-regexp"])
            .arg(r"^(filter|merge)\..+\.")
            .stdin(Stdio::null());
        let Ok(out) = cmd.output() else {
            return Vec::new();
        };
        harden::overrides_for(&String::from_utf8_lossy(&out.stdout))
    }
}

fn spawn_error(e: std::io::Error) -> GitError {
    if e.kind() == std::io::ErrorKind::NotFound {
        GitError::NotFound
    } else {
        GitError::Io(e)
    }
}

fn stdout_text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout)
        .trim_end_matches(['\n', '\r'])
        .to_owned()
}

/// The arguments as one readable line (arguments with spaces are single-quoted).
fn show_args(args: &[&str]) -> String {
    let shown: Vec<String> = args
        .iter()
        .map(|a| {
            if a.is_empty() || a.contains(char::is_whitespace) {
                format!("'{a}'")
            } else {
                (*a).to_owned()
            }
        })
        .collect();
    shown.join(" ")
}

fn trim_stderr(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.trim().lines().collect();
    if lines.len() <= MAX_STDERR_LINES {
        return lines.join("\n");
    }
    let more = lines.len() - MAX_STDERR_LINES;
    format!(
        "{}\n… ({more} more lines)",
        lines[..MAX_STDERR_LINES].join("\n")
    )
}

/// The absolute git binary: `$NIGHTSHIFT_GIT` if set, else `git` searched on `PATH`.
fn find_git() -> Result<PathBuf, GitError> {
    let name = std::env::var(GIT_ENV_OVERRIDE)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "git".into());
    let found = crate::proc::which(&name).ok_or(GitError::NotFound)?;
    if !name.contains('/') {
        return Ok(found); // a PATH hit: absolute and executable already
    }
    // An explicit path must exist and be executable.
    match found.canonicalize() {
        Ok(p) if crate::proc::is_executable(&p) => Ok(p),
        _ => Err(GitError::NotFound),
    }
}

/// Hermetic repositories for tests in this crate: a temp `HOME` with its own global config.
#[cfg(test)]
pub(crate) mod testing {
    use super::Git;
    use std::path::{Path, PathBuf};

    pub(crate) struct TestRepo {
        pub dir: tempfile::TempDir,
        pub git: Git,
    }

    impl TestRepo {
        pub fn root(&self) -> PathBuf {
            self.git.root().to_path_buf()
        }

        pub fn write(&self, rel: &str, text: &str) {
            let p = self.root().join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }

        /// Stages everything and commits; returns the new HEAD.
        pub fn commit_all(&self, msg: &str) -> String {
            self.git.run(&["add", "-A"]).unwrap();
            self.git
                .run(&["commit", "-q", "--allow-empty", "-m", msg])
                .unwrap();
            self.git.run(&["rev-parse", "HEAD"]).unwrap()
        }
    }

    /// A fresh repository on branch `main` (unborn HEAD).
    pub(crate) fn repo() -> TestRepo {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        let root = dir.path().join("repo");
        std::fs::create_dir_all(&home).unwrap();
        std::fs::create_dir_all(&root).unwrap();
        let global = home.join(".gitconfig");
        std::fs::write(
            &global,
            "[user]\n\tname = Test\n\temail = test@example.com\n[init]\n\tdefaultBranch = main\n",
        )
        .unwrap();
        init(&root, &home, &global);
        let git = Git::open(&root)
            .unwrap()
            .with_env("HOME", path_str(&home))
            .with_env("GIT_CONFIG_GLOBAL", path_str(&global));
        TestRepo { dir, git }
    }

    fn init(root: &Path, home: &Path, global: &Path) {
        let status = std::process::Command::new("git")
            .args(["init", "-q", "-b", "main"])
            .current_dir(root)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", home)
            .env("GIT_CONFIG_GLOBAL", global)
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn path_str(p: &Path) -> &str {
        p.to_str().unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::testing::repo;
    use super::*;

    #[test]
    fn open_finds_root_and_absolute_bin() {
        let r = repo();
        assert!(r.git.bin().is_absolute());
        assert_eq!(
            r.git.root(),
            r.dir.path().join("repo").canonicalize().unwrap()
        );
    }

    #[test]
    fn open_rejects_subdir_and_non_repo() {
        let r = repo();
        std::fs::create_dir_all(r.root().join("sub")).unwrap();
        assert!(matches!(
            Git::open(&r.root().join("sub")),
            Err(GitError::NotARepo { .. })
        ));
        let plain = tempfile::tempdir().unwrap();
        assert!(matches!(
            Git::open(plain.path()),
            Err(GitError::NotARepo { .. })
        ));
    }

    #[test]
    fn try_run_maps_failure_to_none() {
        let r = repo();
        let missing = r.git.try_run(&["rev-parse", "--verify", "-q", "nope"]);
        assert_eq!(missing.unwrap(), None);
        r.commit_all("init");
        let head = r.git.try_run(&["rev-parse", "HEAD"]).unwrap().unwrap();
        assert_eq!(head.len(), 40);
    }

    #[test]
    fn failed_error_is_readable() {
        let r = repo();
        let err = r.git.run(&["rev-parse", "--verify", "x y"]).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("git rev-parse --verify 'x y' exited 128: fatal:"),
            "{msg}"
        );
    }

    #[test]
    fn stdin_is_fed_and_env_pairs_apply() {
        let r = repo();
        let out = r
            .git
            .run_in(
                &r.root(),
                &["hash-object", "--stdin"],
                &[],
                Some(b"hello\n"),
            )
            .unwrap();
        let id = String::from_utf8(out.stdout).unwrap();
        assert_eq!(id.trim(), "ce013625030ba8dba906f756967f9e9ca394464a");
        let out = r
            .git
            .run_in(
                &r.root(),
                &["var", "GIT_AUTHOR_IDENT"],
                &[("GIT_AUTHOR_NAME", "Zed")],
                None,
            )
            .unwrap();
        assert!(String::from_utf8_lossy(&out.stdout).starts_with("Zed <test@example.com>"));
    }

    #[test]
    fn planted_hooks_filters_and_drivers_never_run() {
        let r = repo();
        let marks = r.dir.path().join("marks");
        std::fs::create_dir_all(&marks).unwrap();
        let m = marks.display();
        r.write("a.txt", "a\n");
        r.commit_all("init");
        let git_dir = r.root().join(".git");
        for hook in [
            "pre-commit",
            "post-commit",
            "post-checkout",
            "reference-transaction",
        ] {
            let p = git_dir.join("hooks").join(hook);
            std::fs::write(&p, format!("#!/bin/sh\ntouch {m}/{hook}\n")).unwrap();
            let mut perm = std::fs::metadata(&p).unwrap().permissions();
            std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
            std::fs::set_permissions(&p, perm).unwrap();
        }
        r.write(".gitattributes", "* filter=x\n");
        std::fs::write(git_dir.join("info/attributes"), "* filter=y merge=y\n").unwrap();
        let mut config = std::fs::read_to_string(git_dir.join("config")).unwrap();
        config.push_str(&format!(
            "[core]\n\tfsmonitor = touch {m}/fsmonitor\n[filter \"x\"]\n\tclean = touch {m}/x; cat\n[filter \"y\"]\n\tprocess = touch {m}/y\n\tsmudge = touch {m}/y-smudge; cat\n"
        ));
        std::fs::write(git_dir.join("config"), config).unwrap();
        r.write("b.txt", "b\n");
        r.git.run(&["add", "-A"]).unwrap();
        r.git.run(&["commit", "-q", "-m", "second"]).unwrap();
        r.git.run(&["checkout", "-q", "-b", "other"]).unwrap();
        r.git.run(&["checkout", "-q", "-f", "main"]).unwrap();
        let ran: Vec<_> = std::fs::read_dir(&marks).unwrap().collect();
        assert!(ran.is_empty(), "{ran:?}");
    }

    #[test]
    fn stderr_is_capped() {
        let long: String = (0..30).map(|i| format!("line {i}\n")).collect();
        let t = trim_stderr(&long);
        assert_eq!(t.lines().count(), MAX_STDERR_LINES + 1);
        assert!(t.ends_with("(10 more lines)"));
    }
}
