//! Every path nightshift reads or writes inside a repository, in one place. Paths handed to
//! other modules are absolute (joined onto the repo root); paths stored in files or shown to
//! the user are relative to the repo root (LESSONS: no absolute home paths in committed files).

use std::path::{Path, PathBuf};

use crate::ids::{JobKey, StageId, attempt_dir};

pub const CONFIG_FILE: &str = "nightshift.yaml";
pub const STATE_DIR: &str = "state";
pub const LEDGER_BRANCH: &str = "nightshift/ledger";
pub const LEDGER_REF: &str = "refs/heads/nightshift/ledger";

/// The repository root and every nightshift path below it, plus where the stage workspaces
/// live (outside the checkout).
#[derive(Debug, Clone)]
pub struct Paths {
    pub root: PathBuf,
    /// The directory holding this repository's stage workspaces.
    pub workspaces: PathBuf,
}

impl Paths {
    /// The paths of the repository at `root`, with the default workspace directory.
    #[must_use]
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        let workspaces = default_workspaces(&root);
        Self { root, workspaces }
    }
    /// The same paths with the workspace directory `nightshift.yaml` configures, if any.
    #[must_use]
    pub fn with_workspaces(mut self, configured: Option<&Path>) -> Self {
        if let Some(dir) = configured {
            self.workspaces = dir.join(repo_key(&self.root));
        }
        self
    }
    #[must_use]
    pub fn config(&self) -> PathBuf {
        self.root.join(CONFIG_FILE)
    }
    #[must_use]
    pub fn state_dir(&self) -> PathBuf {
        self.root.join(STATE_DIR)
    }
    #[must_use]
    pub fn state_file(&self) -> PathBuf {
        self.state_dir().join("state.yaml")
    }
    #[must_use]
    pub fn budget_file(&self) -> PathBuf {
        self.state_dir().join("budget.json")
    }
    /// The tick lock (flock, released by the kernel on death).
    #[must_use]
    pub fn lock_file(&self) -> PathBuf {
        self.state_dir().join(".lock")
    }
    /// Serialises git's worktree admin (`worktree add`/`prune`/`remove` write and delete
    /// `.git/worktrees/<id>/`): lanes that create or prune workspaces at once would otherwise
    /// lose each other's admin files.
    #[must_use]
    pub fn worktrees_lock(&self) -> PathBuf {
        self.state_dir().join(".worktrees.lock")
    }
    /// Left by a finished job whose chained tick found the lock busy.
    #[must_use]
    pub fn poke_file(&self) -> PathBuf {
        self.state_dir().join(".poke")
    }
    /// The ledger's private index (never the user's).
    #[must_use]
    pub fn ledger_index(&self) -> PathBuf {
        self.state_dir().join(".ledger-index")
    }
    /// Seq of the state last committed to the ledger (a cache; the ledger is the truth).
    #[must_use]
    pub fn ledger_seq_file(&self) -> PathBuf {
        self.state_dir().join(".ledger-seq")
    }
    /// The copy of a stage card taken by `add-stage` (what agents read; hashed).
    #[must_use]
    pub fn card_copy(&self, stage: &StageId) -> PathBuf {
        self.state_dir().join("cards").join(format!("{stage}.md"))
    }
    #[must_use]
    pub fn handoff_dir(&self, stage: &StageId, attempt: u32) -> PathBuf {
        self.state_dir()
            .join("handoffs")
            .join(stage.as_str())
            .join(attempt_dir(attempt))
    }
    /// A job's own folder for its prompt, recipe and outcome: the attempt's handoff folder,
    /// or a panel member's `panel/<member>/r<run>/` inside it.
    #[must_use]
    pub fn job_dir(&self, job: &JobKey) -> PathBuf {
        let dir = self.handoff_dir(&job.stage, job.attempt);
        match job.member_dir() {
            Some(m) => dir.join(m),
            None => dir,
        }
    }
    /// The outcome file a job writes when it ends.
    #[must_use]
    pub fn outcome_file(&self, job: &JobKey) -> PathBuf {
        self.job_dir(job).join(format!("{}.json", job.role))
    }
    /// The outcome of the integration effect (written by the tick itself).
    #[must_use]
    pub fn integration_file(&self, stage: &StageId, attempt: u32) -> PathBuf {
        self.handoff_dir(stage, attempt).join("integration.json")
    }
    #[must_use]
    pub fn agents_dir(&self) -> PathBuf {
        self.state_dir().join("active-agents")
    }
    #[must_use]
    pub fn registry_file(&self, job: &JobKey) -> PathBuf {
        self.agents_dir().join(format!("{}.json", job.stem()))
    }
    /// Held (flock) by the job's wrapper and inherited by its agent for their whole lives.
    #[must_use]
    pub fn alive_file(&self, job: &JobKey) -> PathBuf {
        self.agents_dir().join(format!("{}.lock", job.stem()))
    }
    #[must_use]
    pub fn log_file(&self, job: &JobKey) -> PathBuf {
        self.state_dir()
            .join("logs")
            .join(job.stage.as_str())
            .join(format!("{}.log", job_tag(job)))
    }
    /// A job's isolated CLI state (config dir, temp dir); volatile.
    #[must_use]
    pub fn agent_state(&self, job: &JobKey) -> PathBuf {
        self.state_dir()
            .join("agent-state")
            .join(job.stage.as_str())
            .join(job_tag(job))
    }
    /// The job wrapper's own scratch folder (private git indexes), where no agent writes: a
    /// wrapper killed mid-way leaves it, and the verified kill of the job removes it.
    #[must_use]
    pub fn scratch(&self, job: &JobKey) -> PathBuf {
        self.state_dir()
            .join(".scratch")
            .join(format!("{}-{}", job.stage.as_str(), job_tag(job)))
    }
    /// The stage's workspace (a linked worktree), outside the checkout.
    #[must_use]
    pub fn worktree(&self, stage: &StageId) -> PathBuf {
        self.workspaces.join(stage.as_str())
    }
    /// `path` relative to the repo root, for storing and showing.
    #[must_use]
    pub fn rel(&self, path: &Path) -> String {
        path.strip_prefix(&self.root)
            .unwrap_or(path)
            .to_string_lossy()
            .into_owned()
    }
}

/// `a<n>-<role>`, a panel member's `a<n>-verifier-<member>-r<run>`: a job's name in its
/// stage's log and agent-state folders.
fn job_tag(job: &JobKey) -> String {
    match &job.member {
        None => format!("{}-{}", attempt_dir(job.attempt), job.role),
        Some(m) => format!(
            "{}-{}-{}-r{}",
            attempt_dir(job.attempt),
            job.role,
            m.name,
            m.run
        ),
    }
}

/// The top of the git work tree that holds `dir` (the nearest ancestor with a `.git` entry,
/// as git finds it), so nightshift works from any subdirectory; `dir` itself (canonical) when
/// there is none.
///
/// # Errors
/// When `dir` does not exist.
pub fn work_tree_top(dir: &Path) -> std::io::Result<PathBuf> {
    let dir = std::fs::canonicalize(dir)?;
    Ok(dir
        .ancestors()
        .find(|d| d.join(".git").exists())
        .unwrap_or(&dir)
        .to_path_buf())
}

/// `<repo dir name>-<12 hex of the root path's SHA-256>`: one directory per repository.
#[must_use]
pub fn repo_key(root: &Path) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(root.as_os_str().as_encoded_bytes());
    let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    let name = root
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "repo".to_owned());
    format!("{name}-{hex}")
}

/// The default workspace directory: `workspaces/<repo key>` under the host state directory.
fn default_workspaces(root: &Path) -> PathBuf {
    crate::host::dir().join("workspaces").join(repo_key(root))
}
