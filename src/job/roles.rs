//! What each role of a job does between registering and writing its outcome: the worker
//! (prepare the worktree, hash protected paths, run the agent, read its envelope, hash again,
//! snapshot the deliverable and scan it for secrets), the acceptance run (the card's commands
//! and its done dependencies' commands, run by nightshift itself on the snapshot), and the
//! verifier (the snapshot's diff + acceptance results to an agent of another family, read its
//! verdict, void it if it wrote). Every role is watched for writes outside its workspace
//! ([`super::guard`]). Every failure becomes data in the outcome.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::agent::{self, InvokeCtx};
use crate::config::{Agent, Config};
use crate::engine::observe::{AgentRun, CommandResult, Outcome, OutcomeResult};
use crate::engine::state::{Stage, State};
use crate::envelope;
use crate::ids::Role;
use crate::job::guard::{self, Guard};
use crate::job::run::{ChildResult, ChildSpec, run_child, tail};
use crate::job::{JobArgs, JobError, Registration, setup_failure};
use crate::lock::FileLock;
use crate::paths::Paths;
use crate::{git::Git, protect, store, worktree};

pub struct RoleCtx<'a> {
    pub paths: &'a Paths,
    pub args: &'a JobArgs,
    pub alive: &'a FileLock,
    pub reg: &'a mut Registration,
}

/// Runs the job's role; never fails (failures are the outcome).
pub fn run_role(mut cx: RoleCtx<'_>) -> OutcomeResult {
    let role = cx.args.job.role;
    let result = match role {
        Role::Worker => worker(&mut cx),
        Role::Acceptance => acceptance(&mut cx),
        Role::Verifier => verifier(&mut cx),
    };
    result.unwrap_or_else(|e| setup_failure(role, (&e).into(), role_agent(cx.paths, cx.args)))
}

/// The agent the job's role runs, read from `state.yaml` (for the run record of a job that
/// could not set up; `None` for acceptance or when it cannot be read).
fn role_agent(paths: &Paths, args: &JobArgs) -> Option<String> {
    let state = store::read_state_file(paths).ok()?;
    let stage = state.stage(&args.job.stage)?;
    match args.job.role {
        Role::Worker => Some(stage.worker.clone()),
        Role::Verifier => Some(stage.verifier.clone()),
        Role::Acceptance => None,
    }
}

struct Setup {
    config: Config,
    /// The job's paths with the configured workspace directory.
    paths: Paths,
    state: State,
    stage: Stage,
    git: Git,
    card: crate::card::Card,
}

fn setup(cx: &RoleCtx<'_>) -> Result<Setup, JobError> {
    let config = crate::store::read_config(cx.paths)?;
    crate::redact::install(&config);
    let state = store::read_state_file(cx.paths)?;
    let stage = state
        .stage(&cx.args.job.stage)
        .cloned()
        .ok_or_else(|| JobError::StageGone(cx.args.job.stage.clone()))?;
    let git = Git::open(&cx.paths.root)?;
    let card = crate::card::load_copy(cx.paths, &stage.id, stage.card_pack.as_deref())?;
    if card.hash != stage.card_hash {
        return Err(JobError::CardChanged(stage.id));
    }
    let paths = cx
        .paths
        .clone()
        .with_workspaces(config.workspaces.as_deref());
    Ok(Setup {
        paths,
        config,
        state,
        stage,
        git,
        card,
    })
}

fn agent_of<'c>(config: &'c Config, name: &str) -> Result<&'c Agent, JobError> {
    config
        .agents
        .get(name)
        .ok_or_else(|| JobError::UnknownAgent(name.to_owned()))
}

fn worker(cx: &mut RoleCtx<'_>) -> Result<OutcomeResult, JobError> {
    let s = setup(cx)?;
    let start = cx
        .args
        .start_point
        .clone()
        .unwrap_or_else(|| s.config.base.clone());
    let wt = worktree::prepare(&s.git, &s.paths, &s.stage.id, &start)?;
    let branch = crate::ids::stage_branch(&s.stage.id);
    let own_git = crate::workspace::prepare_agent_git(&s.git, &s.paths, &s.stage.id, &wt, &branch)?;
    let patterns = protect::patterns(&s.state, &s.stage);
    let before = protect::snapshot(&wt, &patterns);
    let base = guard::head_of(&s.git, &wt)?;
    let job = cx.args.job.clone();
    let guard = Guard::start(cx.paths, &s.git, &job, &s.state);
    let body = s.card.body.clone();
    let template = super::brief::template(
        cx.paths,
        s.config.prompt_worker.as_deref(),
        super::brief::WORKER_TEMPLATE,
    )?;
    let text = super::brief::worker(&template, cx.paths, &s.stage, cx.args.job.attempt, &body)?;
    let agent = agent_of(&s.config, &s.stage.worker)?;
    let run = run_agent(cx, &s.config, agent, &wt, Some(&own_git), &text, &s.card)?;
    let after = protect::snapshot(&wt, &patterns);
    let escaped = guard.escaped();
    let tree = crate::snapshot::take(&s.git, &wt, &base, &cx.paths.scratch(&cx.args.job))?;
    let secret = guard::secret_in(&s.git, &base, &tree)?;
    let (envelope, envelope_error) = match &run.final_message {
        Some(m) => match envelope::parse_envelope(m, s.stage.id.as_str(), cx.args.job.attempt) {
            Ok(e) => (Some(e), None),
            Err(e) => (None, Some(e.to_string())),
        },
        None => (None, Some("the agent produced no final message".into())),
    };
    let mut run = run;
    bound_final_message(&mut run, &cx.paths.rel(&cx.paths.log_file(&cx.args.job)));
    run.failure = agent::failure::refused_tools(
        run.failure.take(),
        run.permission_denials,
        envelope.is_some(),
    );
    Ok(OutcomeResult::Worker {
        run,
        envelope,
        envelope_error,
        protected_changed: protect::changed(&before, &after),
        setup_error: None,
        base: Some(base),
        snapshot: Some(tree),
        escaped,
        secret,
    })
}

fn verifier(cx: &mut RoleCtx<'_>) -> Result<OutcomeResult, JobError> {
    let s = setup(cx)?;
    let wt = s.paths.worktree(&s.stage.id);
    let job = cx.args.job.clone();
    let d = guard::worker_snapshot(cx.paths, &job)?;
    if job.member.is_some() {
        // Panel members share the workspace: one restores it, under a lock, the others find
        // it already holding the snapshot.
        let dir = cx.paths.handoff_dir(&job.stage, job.attempt).join("panel");
        std::fs::create_dir_all(&dir)?;
        let _restoring = crate::lock::lock(&dir.join("restore.lock"))?;
        if crate::snapshot::take(&s.git, &wt, &d.base, &cx.paths.scratch(&job))? != d.tree {
            crate::snapshot::restore(&s.git, &wt, &d.tree)?;
        }
    } else {
        crate::snapshot::restore(&s.git, &wt, &d.tree)?;
    }
    let diff = crate::snapshot::diff(&s.git, &d.base, &d.tree)?;
    let acc_key = crate::ids::JobKey {
        role: Role::Acceptance,
        member: None,
        ..cx.args.job.clone()
    };
    let acceptance = std::fs::read_to_string(cx.paths.outcome_file(&acc_key)).unwrap_or_default();
    let acceptance = serde_json::from_str::<Outcome>(&acceptance)
        .map(|o| describe_acceptance(&o))
        .unwrap_or_else(|_| "(no acceptance results recorded)".into());
    let template = super::brief::template(
        cx.paths,
        s.config.prompt_verifier.as_deref(),
        super::brief::VERIFIER_TEMPLATE,
    )?;
    let text = super::brief::verifier(
        &template,
        &s.stage,
        cx.args.job.attempt,
        &s.card.body,
        &acceptance,
        &diff,
    )?;
    let name = job.member.as_ref().map_or(&s.stage.verifier, |m| &m.name);
    let agent = agent_of(&s.config, name)?;
    let guard = Guard::start(&s.paths, &s.git, &job, &s.state);
    let run = run_agent(cx, &s.config, agent, &wt, None, &text, &s.card)?;
    let escaped = guard.escaped();
    let now = crate::snapshot::take(&s.git, &wt, &d.base, &cx.paths.scratch(&job))?;
    let wrote = crate::snapshot::changed(&s.git, &d.tree, &now)?;
    let (verdict, verdict_error) = match &run.final_message {
        Some(m) => match envelope::parse_verdict(m, s.stage.id.as_str(), cx.args.job.attempt) {
            Ok(v) => (Some(v), None),
            Err(e) => (None, Some(e.to_string())),
        },
        None => (None, Some("the verifier produced no final message".into())),
    };
    let mut run = run;
    bound_final_message(&mut run, &cx.paths.rel(&cx.paths.log_file(&cx.args.job)));
    run.failure = agent::failure::refused_tools(
        run.failure.take(),
        run.permission_denials,
        verdict.is_some(),
    );
    Ok(OutcomeResult::Verifier {
        run,
        setup_error: None,
        verdict,
        verdict_error,
        wrote,
        escaped,
    })
}

fn describe_acceptance(o: &Outcome) -> String {
    let OutcomeResult::Acceptance {
        commands,
        changed_files,
        ..
    } = &o.result
    else {
        return String::new();
    };
    if commands.is_empty() {
        return "(the card has no acceptance commands)".into();
    }
    let left = if changed_files.is_empty() {
        String::new()
    } else {
        format!(
            "\n- the commands changed these files, which are not part of the deliverable: `{}`",
            changed_files.join("`, `")
        )
    };
    let lines = commands
        .iter()
        .map(|c| {
            format!(
                "- `{}`: {} ({}s)",
                c.command,
                if c.passed() {
                    "passed".to_owned()
                } else {
                    format!("FAILED, exit {:?}", c.exit)
                },
                c.secs
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    lines + &left
}

/// Runs an agent for the job's role and reads its structured output; `own_git` is the
/// worker's own git view of the workspace (writable to it, selected by `GIT_DIR`).
fn run_agent(
    cx: &mut RoleCtx<'_>,
    config: &Config,
    agent: &Agent,
    wt: &Path,
    own_git: Option<&Path>,
    prompt_text: &str,
    card: &crate::card::Card,
) -> Result<AgentRun, JobError> {
    let job = &cx.args.job;
    let dir = cx.paths.job_dir(job);
    std::fs::create_dir_all(&dir)?;
    let prompt_file = dir.join(format!("{}-prompt.md", job.role));
    let prompt_text = &*crate::redact::apply(prompt_text);
    store::write_atomic(&prompt_file, prompt_text.as_bytes())?;
    let source = agent::script::RecipeSource {
        card: card.front.script.as_ref(),
        agent_first: job.member.is_some(),
    };
    let recipe_file = agent::script::write_recipe(cx.paths, agent, &source, &dir, job.role)
        .map_err(JobError::Invocation)?;
    let self_exe = std::env::current_exe()?;
    let attempt_dir = cx.paths.agent_state(job);
    let mut grants = crate::confine::grants_for(config, job.role, wt, &attempt_dir, Some(agent))?;
    if let Some(g) = grants.as_mut() {
        g.dirs.extend(own_git.map(Path::to_path_buf));
    }
    let ictx = InvokeCtx {
        confined: grants.is_some(),
        prompt: prompt_text,
        prompt_file: &prompt_file,
        worktree: wt,
        attempt_dir: &attempt_dir,
        recipe_file: recipe_file.as_deref(),
        self_exe: &self_exe,
    };
    present(agent)?;
    let inv = agent::invocation(agent, job.role, &ictx).map_err(JobError::Invocation)?;
    let secret = match agent::auth::secret(agent) {
        Ok(s) => s,
        Err(failure) => return Ok(AgentRun::failed(&agent.name, failure)),
    };
    if let Some((name, value)) = &secret {
        crate::redact::add(name, value);
    }
    let mut env = agent::auth::kind_env(agent.kind);
    env.extend(inv.env.iter().cloned());
    env.extend(private_tmp(&attempt_dir)?);
    if let Some(dir) = own_git {
        env.extend(crate::workspace::agent_git_env(dir, wt));
    }
    env.extend(agent::auth::isolation_env(agent, &attempt_dir)?);
    env.extend(secret);
    env.extend(nightshift_env(cx));
    let spec = ChildSpec {
        program: inv.program.clone(),
        args: inv.args.clone(),
        env,
        cwd: wt.to_path_buf(),
        grants,
    };
    let res = start_child(cx, &spec, Duration::from_secs(cx.args.timeout_secs))?;
    read_run(agent, &res, &attempt_dir)
}

/// The most bytes of an agent's final message kept in its outcome (and so in the ledger).
pub const MAX_FINAL_MESSAGE: usize = 64 * 1024;

/// Cuts a final message longer than [`MAX_FINAL_MESSAGE`] (after the envelope or verdict was
/// read from the whole text) and says where the full text is: the attempt's log, which holds
/// the agent's whole output and never enters the ledger.
fn bound_final_message(run: &mut AgentRun, log: &str) {
    let Some(m) = run.final_message.as_mut() else {
        return;
    };
    if m.len() <= MAX_FINAL_MESSAGE {
        return;
    }
    let total = m.len();
    let mut cut = MAX_FINAL_MESSAGE;
    while !m.is_char_boundary(cut) {
        cut -= 1;
    }
    m.truncate(cut);
    m.push_str(&format!(
        "\n[… cut at {cut} of {total} bytes; the full text is in {log}]"
    ));
}

/// Checks that the agent's program exists before anything runs: a command that is not on PATH,
/// or an absolute path that is not an executable file, is [`JobError::AgentMissing`].
fn present(agent: &Agent) -> Result<(), JobError> {
    let vendor = agent.kind.vendor();
    if matches!(vendor.doctor(), agent::Doctor::BuiltIn(_)) {
        return Ok(());
    }
    let Some(program) = agent.command.as_deref().or(vendor.default_command()) else {
        return Ok(()); // the kind's own invocation names what is missing
    };
    match crate::proc::which(program) {
        Some(p) if crate::proc::is_executable(&p) => Ok(()),
        _ => Err(JobError::AgentMissing {
            agent: agent.name.clone(),
            program: program.to_owned(),
        }),
    }
}

/// The agent's structured output, read into the run record.
fn read_run(agent: &Agent, res: &ChildResult, dir: &Path) -> Result<AgentRun, JobError> {
    let exit = agent::ExitInfo {
        code: res.exit,
        signal: res.signal,
        timed_out: res.timed_out,
    };
    let now = crate::now::now()?;
    let parsed = agent::parse(agent.kind, &res.stdout, dir, exit, now);
    Ok(AgentRun {
        agent: agent.name.clone(),
        exit: res.exit,
        signal: res.signal,
        timed_out: res.timed_out,
        is_error: parsed.failure.is_some(),
        error_detail: parsed.failure.as_ref().map(ToString::to_string),
        usage: parsed.usage,
        cost_usd: parsed.cost_usd,
        session_id: parsed.session_id,
        final_message: parsed.final_message,
        failure: parsed.failure,
        model: parsed.model,
        cli_version: parsed.cli_version,
        permission_denials: parsed.permission_denials,
    })
}

/// The attempt's private temp dir (`<attempt dir>/tmp`), as `TMPDIR` and
/// `CLAUDE_CODE_TMPDIR`, in every mode: without it the CLIs share `/tmp` (and `/var/tmp`).
fn private_tmp(attempt_dir: &Path) -> std::io::Result<Vec<(String, String)>> {
    let tmp = attempt_dir.join("tmp");
    std::fs::create_dir_all(&tmp)?;
    let tmp = tmp.to_string_lossy().into_owned();
    Ok(vec![
        ("TMPDIR".into(), tmp.clone()),
        ("CLAUDE_CODE_TMPDIR".into(), tmp),
    ])
}

fn nightshift_env(cx: &RoleCtx<'_>) -> Vec<(String, String)> {
    let job = &cx.args.job;
    let member = job.member.iter().flat_map(|m| {
        [
            ("NIGHTSHIFT_MEMBER".to_owned(), m.name.clone()),
            ("NIGHTSHIFT_MEMBER_RUN".to_owned(), m.run.to_string()),
        ]
    });
    member
        .chain([
            ("NIGHTSHIFT_STAGE".into(), job.stage.to_string()),
            ("NIGHTSHIFT_ATTEMPT".into(), job.attempt.to_string()),
            ("NIGHTSHIFT_ROLE".into(), job.role.to_string()),
            (
                "NIGHTSHIFT_REPO".into(),
                cx.paths.root.to_string_lossy().into_owned(),
            ),
        ])
        .collect()
}

fn start_child(
    cx: &mut RoleCtx<'_>,
    spec: &ChildSpec,
    timeout: Duration,
) -> Result<ChildResult, JobError> {
    let log = cx.paths.log_file(&cx.args.job);
    if let Some(d) = log.parent() {
        std::fs::create_dir_all(d)?;
    }
    let paths = cx.paths;
    let job = cx.args.job.clone();
    let reg = &mut *cx.reg;
    reg.command = std::iter::once(spec.program.to_string_lossy().into_owned())
        .chain(spec.args.iter().map(|a| shorten(a)))
        .collect();
    let mut on_start = |pid: u32, pgid: i32| {
        reg.child_pid = Some(pid);
        reg.child_pgid = Some(pgid);
        reg.child_start_time = crate::proc::start_time(pid);
        let _ = store::write_json(&paths.registry_file(&job), &*reg);
    };
    let res = run_child(spec, &log, timeout, cx.alive, &mut on_start).map_err(|source| {
        JobError::Start {
            program: spec.program.clone(),
            source,
        }
    })?;
    crate::redact::rewrite_file(&log)?;
    Ok(res)
}

/// Prompts are long; the registry keeps the command readable.
fn shorten(arg: &str) -> String {
    if arg.len() > 200 {
        format!("<{} chars>", arg.len())
    } else {
        arg.to_owned()
    }
}

fn acceptance(cx: &mut RoleCtx<'_>) -> Result<OutcomeResult, JobError> {
    let s = setup(cx)?;
    let wt = s.paths.worktree(&s.stage.id);
    if !wt.is_dir() {
        return Err(JobError::WorktreeMissing(wt.to_string_lossy().into_owned()));
    }
    let attempt_dir = cx.paths.agent_state(&cx.args.job);
    let grants = crate::confine::grants_for(&s.config, Role::Acceptance, &wt, &attempt_dir, None)?;
    let mut env = nightshift_env(cx);
    env.extend(private_tmp(&attempt_dir)?);
    let job = cx.args.job.clone();
    let d = guard::worker_snapshot(cx.paths, &job)?;
    crate::snapshot::restore(&s.git, &wt, &d.tree)?;
    let guard = Guard::start(&s.paths, &s.git, &job, &s.state);
    let commands = s.state.regression_commands(&s.stage);
    let deadline = Instant::now() + Duration::from_secs(cx.args.timeout_secs);
    let mut results = Vec::new();
    for command in commands {
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_secs(1));
        let spec = ChildSpec {
            program: PathBuf::from("/bin/sh"),
            args: vec!["-c".into(), format!("exec 2>&1\n{command}")],
            env: env.clone(),
            cwd: wt.clone(),
            grants: grants.clone(),
        };
        let started = Instant::now();
        let res = start_child(cx, &spec, left)?;
        let r = CommandResult {
            command,
            exit: res.exit,
            timed_out: res.timed_out,
            secs: started.elapsed().as_secs(),
            output_tail: tail(&res.stdout, 40),
        };
        let passed = r.passed();
        results.push(r);
        if !passed {
            break;
        }
    }
    let escaped = guard.escaped();
    let after = crate::snapshot::take(&s.git, &wt, &d.base, &cx.paths.scratch(&cx.args.job))?;
    Ok(OutcomeResult::Acceptance {
        deliverable: crate::snapshot::changed(&s.git, &d.base, &d.tree)?,
        commands: results,
        setup_error: None,
        changed_files: crate::snapshot::changed(&s.git, &d.tree, &after)?,
        snapshot: Some(d.tree),
        escaped,
    })
}
