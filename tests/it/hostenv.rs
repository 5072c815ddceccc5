//! `HostEnv`: a hermetic host for the host-level commands (registry, `tick --all`, install):
//! HOME, XDG_CONFIG_HOME, NIGHTSHIFT_HOME, NIGHTSHIFT_HOST_DIR and NIGHTSHIFT_LAUNCHAGENTS_DIR
//! all inside one temp dir, and fake `crontab` (the table lives in a temp file), `systemctl`
//! and `launchctl` (they log their arguments) first on PATH. The real crontab, ~/.config,
//! systemd and LaunchAgents are never touched.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use super::night::BIN;

pub struct HostEnv {
    _dir: tempfile::TempDir,
    pub root: PathBuf,
    pub minute: i64,
    pub extra_env: Vec<(String, String)>,
}

const GITCONFIG: &str = "[user]\n\tname = Test User\n\temail = test@example.invalid\n[init]\n\tdefaultBranch = main\n[commit]\n\tgpgsign = false\n";

fn script(path: &Path, body: &str) {
    std::fs::write(path, format!("#!/bin/sh\n{body}")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

impl HostEnv {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        for d in [
            "home",
            "xdg-config",
            "nshome",
            "state",
            "agents",
            "bin",
            "tmp",
        ] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::write(root.join("home/.gitconfig"), GITCONFIG).unwrap();
        let bin = root.join("bin");
        let table = root.join("crontab.txt");
        script(
            &bin.join("crontab"),
            &format!(
                "T='{t}'\ncase \"$1\" in\n  -l) if [ -f \"$T\" ]; then cat \"$T\"; else echo 'no crontab for test' >&2; exit 1; fi ;;\n  -r) rm -f \"$T\" ;;\n  -) cat > \"$T\" ;;\n  *) echo \"fake crontab: unexpected $*\" >&2; exit 2 ;;\nesac\n",
                t = table.display()
            ),
        );
        for tool in ["systemctl", "launchctl"] {
            let log = root.join(format!("{tool}.log"));
            let fail = root.join(format!("{tool}.unreachable"));
            script(
                &bin.join(tool),
                &format!(
                    "echo \"$*\" >> '{}'\nif [ -f '{}' ]; then echo 'Failed to connect to bus' >&2; exit 1; fi\nexit 0\n",
                    log.display(),
                    fail.display()
                ),
            );
        }
        Self {
            _dir: dir,
            root,
            minute: 0,
            extra_env: Vec::new(),
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap_or_default()
    }

    /// The PATH the binary sees: the fakes first.
    pub fn path_var(&self) -> String {
        format!(
            "{}:{}",
            self.path("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        )
    }

    pub fn now(&self) -> String {
        jiff::Timestamp::from_second(1_798_765_200 + self.minute * 60)
            .unwrap()
            .to_string()
    }

    pub fn env(&self, cmd: &mut Command) {
        cmd.env_clear()
            .env("PATH", self.path_var())
            .env("HOME", self.path("home"))
            .env("TMPDIR", self.path("tmp"))
            .env("LC_ALL", "C")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("XDG_CONFIG_HOME", self.path("xdg-config"))
            .env("NIGHTSHIFT_HOME", self.path("nshome"))
            .env("NIGHTSHIFT_HOST_DIR", self.path("state"))
            .env("NIGHTSHIFT_LAUNCHAGENTS_DIR", self.path("agents"))
            .env("NIGHTSHIFT_CHAIN", "0")
            .env("NIGHTSHIFT_NOW", self.now())
            .stdin(Stdio::null());
        for (k, v) in &self.extra_env {
            cmd.env(k, v);
        }
    }

    pub fn ns(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(BIN);
        self.env(&mut cmd);
        cmd.current_dir(&self.root).args(args).output().unwrap()
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

    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        serde_json::from_str(&self.ok(args)).unwrap()
    }
}
