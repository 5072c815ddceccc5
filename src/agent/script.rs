//! The built-in `script` agent: an executable (a hidden subcommand of nightshift itself) that
//! acts out a recipe — write files, sleep, hang, spawn a grandchild, exit with a code, end with a
//! handoff envelope or a verdict — and prints Claude Code's stream-json shape, so the demo and
//! the tests exercise the same parsing path real agents use. It never reads or writes `state/`
//! unless a recipe tells it to (which is how tests plant a protected-path violation).
//!
//! Also the `script` kind's room: its argv (`nightshift __script-agent` with the recipe in
//! `NIGHTSHIFT_SCRIPT`), its output read as Claude Code's, and its facts. Never reached by a
//! real run unless an agent's `kind:` says `script`.

use std::io::Write;
use std::path::Path;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::agent::{Doctor, ExitInfo, Invocation, InvokeCtx, Parsed, Usage, Vendor, claude};
use crate::config::Agent;
use crate::envelope::{Criterion, EnvelopeStatus, VerdictKind};
use crate::ids::Role;

/// The `script` kind.
#[derive(Debug, Clone, Copy)]
pub struct Script;

impl Vendor for Script {
    fn name(&self) -> &'static str {
        "script"
    }

    fn default_family(&self) -> Option<&'static str> {
        None
    }

    fn default_silence_secs(&self) -> u64 {
        20 * 60 // it streams like claude
    }

    fn default_key_var(&self) -> Option<&'static str> {
        None
    }

    fn default_command(&self) -> Option<&'static str> {
        None
    }

    fn reports_usage(&self) -> bool {
        true
    }

    fn is_paid(&self) -> bool {
        false
    }

    fn takes_recipe(&self) -> bool {
        true
    }

    fn kind_env(&self) -> &'static [(&'static str, &'static str)] {
        &[]
    }

    fn shared_state(&self, _home: &Path) -> (Vec<std::path::PathBuf>, Vec<std::path::PathBuf>) {
        (Vec::new(), Vec::new())
    }

    fn isolation_env(&self, _dir: &Path, tmp: &Path) -> std::io::Result<Vec<(String, String)>> {
        Ok(vec![crate::agent::auth::path_var("TMPDIR", tmp)])
    }

    /// nightshift itself, playing the recipe the job resolved for the role.
    fn invocation(
        &self,
        _agent: &Agent,
        _role: Role,
        cx: &InvokeCtx<'_>,
    ) -> Result<Invocation, String> {
        let recipe = cx.recipe_file.ok_or("the script agent has no recipe for this role (add a `script:` section to the card or `recipe:` to the agent)")?;
        Ok(Invocation {
            program: cx.self_exe.to_path_buf(),
            args: vec!["__script-agent".into()],
            env: vec![(
                "NIGHTSHIFT_SCRIPT".into(),
                recipe.to_string_lossy().into_owned(),
            )],
        })
    }

    /// It prints Claude Code's stream-json, so it is read as such.
    fn check_agent(&self, _agent: &Agent) -> Result<(), String> {
        Ok(())
    }

    fn parse(&self, stdout: &[u8], _dir: &Path, exit: ExitInfo, _now: jiff::Timestamp) -> Parsed {
        claude::parsed(stdout, exit)
    }

    fn doctor(&self) -> Doctor {
        Doctor::BuiltIn("built-in scripted agent")
    }
}

/// Recipes per role; attempt `n` plays entry `n-1` (the last entry repeats).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    #[serde(default)]
    pub worker: Vec<Play>,
    #[serde(default)]
    pub verifier: Vec<Play>,
}

/// What the agent does in one attempt.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Play {
    pub steps: Vec<Step>,
}

/// One step of a play.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// Write a file (relative to the working directory), creating directories.
    Write { path: String, content: String },
    /// Delete a file.
    Delete { path: String },
    /// Sleep for a duration such as `2s`.
    Sleep(String),
    /// Sleep for ever (until killed).
    Hang,
    /// Start a child that ignores nothing and sleeps for ever, in this process group; its pid
    /// is printed as `grandchild pid N`.
    SpawnGrandchild,
    /// Exit at once with this code, printing no result line (a crash).
    Exit(i32),
    /// Report token usage in the result line.
    Usage(Usage),
    /// End with a handoff envelope for the current stage and attempt.
    Envelope {
        status: EnvelopeStatus,
        summary: String,
        #[serde(default)]
        files_changed: Vec<String>,
    },
    /// End with a verdict for the current stage and attempt.
    Verdict {
        verdict: VerdictKind,
        #[serde(default)]
        findings: Vec<String>,
        #[serde(default)]
        criteria: Vec<Criterion>,
    },
    /// End with this literal final message (for unparseable output).
    Say(String),
    /// End with an API error result (`is_error: true`) and exit 1.
    ApiError { status: u16 },
    /// The CLI refuses a call of this tool (a `system/permission_denied` event).
    DenyTool(String),
    /// End as Claude Code does when a subscription's usage limit is hit: a rejected
    /// `rate_limit_event` with its reset time (Unix seconds), a 429 error result, exit 1.
    UsageLimit { resets_at: i64 },
    /// End as Claude Code does when the API refuses the credentials: a 401 error result,
    /// exit 1.
    AuthFailure,
}

impl Recipe {
    /// The play for a role and attempt (attempt is 1-based; the last play repeats).
    #[must_use]
    pub fn play(&self, role: crate::ids::Role, attempt: u32) -> Option<&Play> {
        let plays = match role {
            crate::ids::Role::Worker => &self.worker,
            crate::ids::Role::Verifier => &self.verifier,
            crate::ids::Role::Acceptance => return None,
        };
        let i = usize::try_from(attempt.saturating_sub(1)).unwrap_or(usize::MAX);
        plays.get(i).or_else(|| plays.last())
    }
}

/// What the running script needs to know, from its environment.
#[derive(Debug, Clone)]
pub struct ScriptEnv {
    pub stage: String,
    pub attempt: u32,
}

/// Runs a play, printing stream-json to `out`. Returns the process exit code.
pub fn run(play: &Play, env: &ScriptEnv, cwd: &Path, out: &mut impl Write) -> i32 {
    let session = format!("script-{}-a{}", env.stage, env.attempt);
    let _ = writeln!(
        out,
        "{}",
        claude::init_line(
            &session,
            "script",
            &cwd.to_string_lossy(),
            env!("CARGO_PKG_VERSION")
        )
    );
    let mut usage = Usage::default();
    let mut final_text: Option<String> = None;
    let mut api_error = None;
    for step in &play.steps {
        match run_step(step, env, cwd, &session, out, &mut usage) {
            Flow::Continue => {}
            Flow::Exit(code) => return code,
            Flow::Final(text) => final_text = Some(text),
            Flow::ApiError(status) => api_error = Some(status),
        }
    }
    let (text, is_error) = match api_error {
        Some(status) => (format!("API Error: {status}"), true),
        None => (final_text.unwrap_or_default(), false),
    };
    if !is_error {
        let _ = writeln!(out, "{}", claude::assistant_text_line(&session, &text));
    }
    let turns = u32::try_from(play.steps.len()).unwrap_or(u32::MAX);
    let _ = writeln!(
        out,
        "{}",
        claude::result_line(&session, &text, is_error, usage, None, turns, 1)
    );
    let _ = out.flush();
    i32::from(is_error)
}

enum Flow {
    Continue,
    Exit(i32),
    Final(String),
    ApiError(u16),
}

fn run_step(
    step: &Step,
    env: &ScriptEnv,
    cwd: &Path,
    session: &str,
    out: &mut impl Write,
    usage: &mut Usage,
) -> Flow {
    match step {
        Step::Write { path, content } => {
            let p = cwd.join(path);
            if let Some(dir) = p.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            let ok = std::fs::write(&p, content).is_ok();
            let _ = writeln!(
                out,
                "{}",
                claude::assistant_text_line(
                    session,
                    &format!("write {path}: {}", if ok { "ok" } else { "failed" })
                )
            );
            Flow::Continue
        }
        Step::Delete { path } => {
            let _ = std::fs::remove_file(cwd.join(path));
            Flow::Continue
        }
        Step::Sleep(d) => {
            let secs = crate::config::parse_duration(d).unwrap_or(1);
            let _ = out.flush();
            std::thread::sleep(std::time::Duration::from_secs(secs));
            Flow::Continue
        }
        Step::Hang => {
            let _ = out.flush();
            loop {
                std::thread::sleep(std::time::Duration::from_secs(3600));
            }
        }
        Step::SpawnGrandchild => {
            let pid = spawn_grandchild();
            let _ = writeln!(
                out,
                "{}",
                claude::assistant_text_line(session, &format!("grandchild pid {pid}"))
            );
            let _ = out.flush();
            Flow::Continue
        }
        Step::Exit(code) => {
            let _ = out.flush();
            Flow::Exit(*code)
        }
        Step::Usage(u) => {
            *usage = *u;
            Flow::Continue
        }
        Step::Envelope {
            status,
            summary,
            files_changed,
        } => {
            let json = serde_json::json!({
                "version": crate::envelope::ENVELOPE_VERSION, "stage": env.stage, "attempt": env.attempt,
                "status": status, "summary": summary, "files_changed": files_changed,
            });
            Flow::Final(fenced(summary, &json))
        }
        Step::Verdict {
            verdict,
            findings,
            criteria,
        } => {
            let json = serde_json::json!({
                "version": crate::envelope::VERDICT_VERSION, "stage": env.stage, "attempt": env.attempt,
                "verdict": verdict, "criteria": criteria, "findings": findings,
            });
            Flow::Final(fenced("Review complete.", &json))
        }
        Step::Say(text) => Flow::Final(text.clone()),
        Step::ApiError { status } => Flow::ApiError(*status),
        Step::UsageLimit { resets_at } => {
            let event = serde_json::json!({"type": "rate_limit_event", "rate_limit_info": {"status": "rejected", "resetsAt": resets_at, "rateLimitType": "five_hour"}, "session_id": session});
            let _ = writeln!(out, "{event}");
            let text = "You've hit your 5-hour limit";
            let _ = writeln!(
                out,
                "{}",
                claude::api_error_result_line(session, text, 429, *usage, 1, 1)
            );
            let _ = out.flush();
            Flow::Exit(1)
        }
        Step::AuthFailure => {
            let text = "Failed to authenticate. API Error: 401 invalid x-api-key";
            let _ = writeln!(
                out,
                "{}",
                claude::api_error_result_line(session, text, 401, *usage, 1, 1)
            );
            let _ = out.flush();
            Flow::Exit(1)
        }
        Step::DenyTool(tool) => {
            let _ = writeln!(out, "{}", claude::permission_denied_line(session, tool));
            Flow::Continue
        }
    }
}

fn fenced(lead: &str, json: &serde_json::Value) -> String {
    let body = serde_json::to_string_pretty(json).unwrap_or_default();
    format!("{lead}\n\n```json\n{body}\n```")
}

/// Starts `sleep` for a day in our process group and returns its pid (0 if it failed).
fn spawn_grandchild() -> u32 {
    std::process::Command::new("sleep")
        .arg("86400")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map(|c| c.id())
        .unwrap_or(0)
}

/// Where a `script` agent's recipe may come from: the card's `script:` section and the agent's
/// own `recipe:` file. A panel member (`agent_first`) follows its own agent's recipe when it
/// has one, otherwise the card's verifier plays.
#[derive(Debug, Clone, Copy)]
pub struct RecipeSource<'a> {
    pub card: Option<&'a Recipe>,
    pub agent_first: bool,
}

/// Resolves the recipe a `script` agent plays for a role — the card's `script:` section, else
/// the agent's `recipe:` file — and writes it next to the attempt's handoff as
/// `<role>-recipe.json`. Returns `None` for other agent kinds.
///
/// # Errors
/// When the agent's recipe file cannot be read or parsed.
pub fn write_recipe(
    paths: &crate::paths::Paths,
    agent: &crate::config::Agent,
    source: &RecipeSource<'_>,
    dir: &Path,
    role: crate::ids::Role,
) -> Result<Option<std::path::PathBuf>, String> {
    if agent.kind != crate::config::AgentKind::Script {
        return Ok(None);
    }
    let from_card = source.card.filter(|r| r.play(role, 1).is_some()).cloned();
    let from_agent = || -> Result<Option<Recipe>, String> {
        let Some(file) = &agent.recipe else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(paths.root.join(file))
            .map_err(|e| format!("agent `{}`: cannot read recipe {file}: {e}", agent.name))?;
        crate::schema::parse_yaml::<Recipe>(&text, file)
            .map(Some)
            .map_err(|e| e.to_string())
    };
    let recipe = if source.agent_first {
        from_agent()?.or(from_card)
    } else {
        match from_card {
            Some(r) => Some(r),
            None => from_agent()?,
        }
    };
    let Some(recipe) = recipe else {
        return Ok(None);
    };
    let path = dir.join(format!("{role}-recipe.json"));
    let text = serde_json::to_string_pretty(&recipe).map_err(|e| e.to_string())?;
    std::fs::write(&path, text).map_err(|e| e.to_string())?;
    Ok(Some(path))
}

/// The `__script-agent` entry point: reads the recipe and attempt from the environment.
#[must_use]
pub fn main_from_env() -> i32 {
    let Ok(file) = std::env::var("NIGHTSHIFT_SCRIPT") else {
        eprintln!(
            "error: NIGHTSHIFT_SCRIPT is not set (the script agent is run by nightshift jobs)"
        );
        return 2;
    };
    let recipe: Recipe = match std::fs::read_to_string(&file)
        .map_err(|e| e.to_string())
        .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot read recipe {file}: {e}");
            return 2;
        }
    };
    let attempt = std::env::var("NIGHTSHIFT_ATTEMPT")
        .ok()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1);
    // A panel member plays the entry of its run within the attempt (a re-dispatched member
    // plays its next entry); every other job the entry of its attempt.
    let entry = std::env::var("NIGHTSHIFT_MEMBER_RUN")
        .ok()
        .and_then(|a| a.parse().ok())
        .unwrap_or(attempt);
    let role = std::env::var("NIGHTSHIFT_ROLE")
        .ok()
        .and_then(|r| crate::ids::Role::parse(&r))
        .unwrap_or(crate::ids::Role::Worker);
    let env = ScriptEnv {
        stage: std::env::var("NIGHTSHIFT_STAGE").unwrap_or_default(),
        attempt,
    };
    let Some(play) = recipe.play(role, entry) else {
        eprintln!("error: the recipe has no play for the {role}");
        return 2;
    };
    let cwd = std::env::current_dir().unwrap_or_default();
    run(play, &env, &cwd, &mut std::io::stdout().lock())
}
