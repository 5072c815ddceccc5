//! Kernel confinement of every process an attempt starts (worker, verifier, acceptance
//! commands and all their descendants): a Linux Landlock ruleset built by the job wrapper
//! before the fork and applied in the child between fork and exec (`no_new_privs`, then
//! `landlock_restrict_self`), so nothing the agent runs can undo it. Owns which paths each role
//! may write ([`Grants`]), whether this kernel can confine at all ([`support`], with the
//! `NIGHTSHIFT_LANDLOCK=unsupported` override that makes a kernel without Landlock testable),
//! and the refusal to dispatch under `confine: strict` without it ([`check_dispatch`]).
//!
//! It must never weaken a ruleset silently: under `strict` a child that cannot be confined is
//! not started. It decides nothing about outcomes and writes no file.

use std::path::{Path, PathBuf};

use landlock::{
    ABI, Access, AccessFs, BitFlags, CompatLevel, Compatible, PathBeneath, PathFd, Ruleset,
    RulesetAttr, RulesetCreated, RulesetCreatedAttr, RulesetStatus,
};

use crate::config::{Config, ConfineMode};
use crate::error::{NsError, NsResult};
use crate::paths::Paths;

/// The ABI whose file-system rights are all handled (measured: the kernels nightshift runs on
/// have ABI 7; an older kernel handles what it knows, a newer one nothing beyond this).
const TARGET_ABI: ABI = ABI::V7;

/// Device files every role may read and write (never create).
const DEVICES: [&str; 8] = [
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
    "/dev/tty",
    "/dev/ptmx",
    "/dev/pts",
];

/// Whether this machine can confine agents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Support {
    /// Landlock is there, with this ABI version.
    Landlock { abi: i32 },
    /// No kernel confinement here, and why.
    Unsupported { why: String },
}

impl Support {
    #[must_use]
    pub fn is_supported(&self) -> bool {
        matches!(self, Self::Landlock { .. })
    }
}

/// Whether the running kernel supports Landlock. `NIGHTSHIFT_LANDLOCK=unsupported` makes it
/// answer as a kernel without Landlock would (for tests and for trying `strict`'s refusal).
#[must_use]
pub fn support() -> Support {
    if std::env::var("NIGHTSHIFT_LANDLOCK").is_ok_and(|v| v == "unsupported") {
        return Support::Unsupported {
            why: "NIGHTSHIFT_LANDLOCK=unsupported treats this kernel as one without Landlock"
                .into(),
        };
    }
    kernel_support()
}

#[cfg(target_os = "linux")]
fn kernel_support() -> Support {
    // A ruleset that must be enforceable: creating it fails where Landlock is missing or
    // disabled, and succeeds (enforcing nothing yet) where it is there.
    let probe = Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .handle_access(AccessFs::from_all(ABI::V1))
        .and_then(Ruleset::create);
    match probe {
        Ok(_) => Support::Landlock { abi: kernel_abi() },
        Err(e) => Support::Unsupported {
            why: format!("this kernel has no usable Landlock ({e})"),
        },
    }
}

/// The highest ABI among those this build knows that the kernel accepts.
#[cfg(target_os = "linux")]
fn kernel_abi() -> i32 {
    let known = [
        (ABI::V7, 7),
        (ABI::V6, 6),
        (ABI::V5, 5),
        (ABI::V4, 4),
        (ABI::V3, 3),
        (ABI::V2, 2),
    ];
    for (abi, n) in known {
        let ok = Ruleset::default()
            .set_compatibility(CompatLevel::HardRequirement)
            .handle_access(AccessFs::from_all(abi))
            .and_then(Ruleset::create)
            .is_ok();
        if ok {
            return n;
        }
    }
    1
}

#[cfg(not(target_os = "linux"))]
fn kernel_support() -> Support {
    Support::Unsupported {
        why: "kernel confinement is implemented for Linux (Landlock) only".into(),
    }
}

/// One line for `doctor` and `status`: what confinement is in force.
#[must_use]
pub fn describe(mode: ConfineMode, support: &Support) -> (bool, String) {
    match (mode, support) {
        (ConfineMode::Strict, Support::Landlock { abi }) => (
            true,
            format!(
                "confined: every worker, verifier and acceptance command runs under a Landlock ruleset (kernel ABI {abi})"
            ),
        ),
        (ConfineMode::Strict, Support::Unsupported { why }) => (
            false,
            format!(
                "agents are NOT confined: {why}; `confine: strict` refuses to dispatch"
            ),
        ),
        (ConfineMode::Detect, Support::Unsupported { why }) => (
            true,
            format!(
                "agents are NOT confined by the kernel (`confine: detect`; {why}): writes outside the workspace are only detected afterwards"
            ),
        ),
        (ConfineMode::Detect, Support::Landlock { .. }) => (
            true,
            "agents are NOT confined by the kernel (`confine: detect`): writes outside the workspace are only detected afterwards".into(),
        ),
        (ConfineMode::Off, _) => (
            true,
            "agents are NOT confined (`confine: off`): an agent can write anywhere you can".into(),
        ),
    }
}

/// The hint shown wherever agents are not confined although `strict` asks for it.
pub const HINT: &str = "run on a Linux kernel with Landlock (5.13 or later, `lsm=landlock`), or set `confine: detect` (or `off`) in nightshift.yaml to run unconfined";

/// The tick's check before anything is dispatched: `strict` without kernel support refuses,
/// and so does a workspace directory inside the repository.
///
/// # Errors
/// When `confine: strict` cannot be honoured, or `workspaces:` is inside the checkout.
pub fn check_dispatch(paths: &Paths, config: &Config) -> NsResult<()> {
    let ws = paths
        .clone()
        .with_workspaces(config.workspaces.as_deref())
        .workspaces;
    if ws.starts_with(&paths.root) {
        return Err(NsError::failure(format!(
            "nightshift.yaml: workspaces: {} is inside the repository",
            ws.display()
        ))
        .cause("agents would read the checkout's own instructions and could reach its files")
        .hint("set `workspaces:` to a directory outside the repository, or remove the key"));
    }
    if config.confine != ConfineMode::Strict {
        return Ok(());
    }
    match support() {
        Support::Landlock { .. } => Ok(()),
        Support::Unsupported { why } => Err(NsError::failure(
            "refusing to dispatch: agents are NOT confined and nightshift.yaml says `confine: strict`",
        )
        .cause(why)
        .hint(HINT)),
    }
}

/// What one child of an attempt may write; everything else is read-only (read and execute
/// everywhere, as the CLIs and build tools need).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    /// Directories with every right (create, remove, rename, write, execute).
    pub dirs: Vec<PathBuf>,
    /// Single files that may be written in place (never created or removed).
    pub files: Vec<PathBuf>,
}

impl Grants {
    /// Adds a directory, creating it first (rules need existing paths).
    ///
    /// # Errors
    /// When the directory cannot be created.
    pub fn dir(&mut self, path: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(path)?;
        self.dirs.push(path.to_path_buf());
        Ok(())
    }
}

/// What a child of `role` may write under `confine: strict`, `None` under `detect`/`off`.
/// Worker and acceptance: the stage workspace, the attempt's own directory (its private temp
/// dir and isolated CLI state) and `confine_writable:`. Verifier: only the attempt's own
/// directory. An agent sharing the user's CLI state also gets that state (the weaker mode
/// `doctor` names). Nobody gets `state/`, `nightshift.yaml`, the checkout, another stage's
/// workspace or the repository's `.git`.
///
/// # Errors
/// When a directory to grant cannot be created.
pub fn grants_for(
    config: &Config,
    role: crate::ids::Role,
    workspace: &Path,
    attempt_dir: &Path,
    agent: Option<&crate::config::Agent>,
) -> std::io::Result<Option<Grants>> {
    use crate::ids::Role;
    if config.confine != ConfineMode::Strict {
        return Ok(None);
    }
    let mut g = Grants::default();
    g.dir(attempt_dir)?;
    if matches!(role, Role::Worker | Role::Acceptance) {
        g.dirs.push(workspace.to_path_buf());
        for extra in &config.confine_writable {
            g.dir(extra)?;
        }
    }
    if let Some(agent) = agent.filter(|a| a.share_cli_state) {
        let home = std::env::var_os("HOME").map(PathBuf::from);
        if let Some(home) = home {
            let (dirs, files) = agent.kind.vendor().shared_state(&home);
            for d in dirs {
                g.dir(&d)?;
            }
            g.files.extend(files);
        }
    }
    Ok(Some(g))
}

/// Why a ruleset could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ConfineError {
    #[error("cannot build the Landlock ruleset: {0}")]
    Ruleset(#[from] landlock::RulesetError),
    #[error("cannot open {} for the Landlock ruleset: {source}", .path.display())]
    Path {
        path: PathBuf,
        #[source]
        source: landlock::PathFdError,
    },
    #[error("agents are NOT confined: {0}")]
    Unsupported(String),
}

/// A ruleset built in the parent, ready to be applied in a child.
#[derive(Debug)]
pub struct Prepared {
    ruleset: RulesetCreated,
}

/// Builds the ruleset for `grants`: read and execute under `/`, the device files, and every
/// right in the granted places. Every file-system right of the target ABI is handled (refer
/// included, so renames across the granted directories work and nothing else is reachable).
///
/// # Errors
/// When the kernel cannot confine, or a granted path cannot be opened.
pub fn prepare(grants: &Grants) -> Result<Prepared, ConfineError> {
    if let Support::Unsupported { why } = support() {
        return Err(ConfineError::Unsupported(why));
    }
    let all = AccessFs::from_all(TARGET_ABI);
    let read = AccessFs::from_read(TARGET_ABI);
    let device: BitFlags<AccessFs> =
        AccessFs::ReadFile | AccessFs::WriteFile | AccessFs::Truncate | AccessFs::IoctlDev;
    let file: BitFlags<AccessFs> = AccessFs::ReadFile | AccessFs::WriteFile | AccessFs::Truncate;
    let mut ruleset = Ruleset::default().handle_access(all)?.create()?;
    ruleset = ruleset.add_rule(rule(Path::new("/"), read)?)?;
    for dev in DEVICES.iter().map(Path::new).filter(|p| p.exists()) {
        let rights = if dev.is_dir() { device | read } else { device };
        ruleset = ruleset.add_rule(rule(dev, rights)?)?;
    }
    for dir in &grants.dirs {
        ruleset = ruleset.add_rule(rule(dir, all)?)?;
    }
    for f in grants.files.iter().filter(|f| f.is_file()) {
        ruleset = ruleset.add_rule(rule(f, file)?)?;
    }
    Ok(Prepared { ruleset })
}

fn rule(path: &Path, access: BitFlags<AccessFs>) -> Result<PathBeneath<PathFd>, ConfineError> {
    let fd = PathFd::new(path).map_err(|source| ConfineError::Path {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(PathBeneath::new(fd, access))
}

impl Prepared {
    /// Makes `cmd`'s child confine itself between fork and exec. The child refuses to exec
    /// (the spawn fails with `EPERM`) when the ruleset is not enforced.
    pub fn apply(self, cmd: &mut std::process::Command) {
        use std::os::unix::process::CommandExt;
        let ruleset = self.ruleset;
        let restrict = move || -> std::io::Result<()> {
            // Only async-signal-safe work here: dup the ruleset fd, prctl, one syscall.
            let status = ruleset
                .try_clone()?
                .restrict_self()
                .map_err(|_| std::io::Error::from_raw_os_error(1))?;
            if !status.no_new_privs || status.ruleset == RulesetStatus::NotEnforced {
                return Err(std::io::Error::from_raw_os_error(1));
            }
            Ok(())
        };
        // SAFETY: the closure allocates nothing and takes no lock; it only duplicates a file
        // descriptor and makes the prctl and landlock_restrict_self system calls, which are
        // safe between fork and exec.
        unsafe {
            cmd.pre_exec(restrict);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_override_reads_as_a_kernel_without_landlock() {
        // The override is read from the environment; only this process's view changes.
        let s = Support::Unsupported { why: "x".into() };
        let (ok, line) = describe(ConfineMode::Strict, &s);
        assert!(!ok);
        assert!(line.contains("NOT confined"), "{line}");
        let (ok, line) = describe(ConfineMode::Off, &s);
        assert!(ok && line.contains("NOT confined"), "{line}");
        let (ok, line) = describe(ConfineMode::Strict, &Support::Landlock { abi: 7 });
        assert!(ok && line.contains("ABI 7"), "{line}");
    }

    #[test]
    fn a_confined_child_writes_only_where_granted() {
        if !support().is_supported() {
            return; // measured by the integration suite's strict/unsupported cases
        }
        let dir = tempfile::tempdir().unwrap();
        let ok = dir.path().join("ok");
        let no = dir.path().join("no");
        std::fs::create_dir_all(&no).unwrap();
        let mut grants = Grants::default();
        grants.dir(&ok).unwrap();
        let mut cmd = std::process::Command::new("/bin/sh");
        cmd.arg("-c").arg(
            "echo a > ok/a && mv ok/a ok/b && (sleep 0; echo x > no/x) 2>/dev/null; test ! -e no/x",
        );
        cmd.current_dir(dir.path());
        prepare(&grants).unwrap().apply(&mut cmd);
        let status = cmd.status().unwrap();
        assert!(status.success());
        assert!(ok.join("b").exists());
        assert!(!no.join("x").exists());
    }
}
