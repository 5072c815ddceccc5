//! Agent adapters: how each kind of agent CLI is invoked for a role and how its structured
//! output is read. One adapter per `kind`; each builds a single argv per role and parses only
//! structured output (never transcript prose). Adapters never spawn anything themselves: the
//! job wrapper ([`crate::job`]) runs the [`Invocation`] they describe.

pub mod auth;
pub mod claude;
pub mod codex;
pub mod failure;
pub mod gemini;
pub mod script;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Token usage of one agent run, with cache tokens kept apart (LESSONS: never fold them in).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Usage {
    pub input: u64,
    pub output: u64,
    pub cache_read: u64,
    pub cache_write: u64,
}

impl Usage {
    #[must_use]
    pub fn total(&self) -> u64 {
        self.input + self.output + self.cache_read + self.cache_write
    }
}

use std::path::{Path, PathBuf};

use crate::config::{Agent, AgentKind};
use crate::ids::Role;

/// How to start an agent: program, argv and the variables it needs beyond the allow-list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
}

/// What an adapter needs to build an invocation.
#[derive(Debug, Clone, Copy)]
pub struct InvokeCtx<'a> {
    pub prompt: &'a str,
    /// The same prompt, in a file (for agents that take a path).
    pub prompt_file: &'a Path,
    pub worktree: &'a Path,
    /// `script` kind: the recipe the job resolved for this role.
    pub recipe_file: Option<&'a Path>,
    /// nightshift's own executable (the `script` kind runs it).
    pub self_exe: &'a Path,
}

/// Builds the one argv an agent kind uses for a role.
///
/// # Errors
/// When the agent's program cannot be found on PATH, or the role needs something the config
/// lacks (a `script` agent with no recipe).
pub fn invocation(agent: &Agent, role: Role, cx: &InvokeCtx<'_>) -> Result<Invocation, String> {
    let mut inv = match agent.kind {
        AgentKind::Script => script_invocation(cx)?,
        AgentKind::Claude => claude_invocation(agent, role, cx)?,
        AgentKind::Codex => codex_invocation(agent, role, cx)?,
        AgentKind::Gemini => gemini_invocation(agent, role, cx)?,
        AgentKind::Command => command_invocation(agent, cx)?,
    };
    inv.env
        .extend(agent.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    Ok(inv)
}

fn resolve(agent: &Agent, default: &str) -> Result<PathBuf, String> {
    let name = agent.command.as_deref().unwrap_or(default);
    crate::proc::which(name).ok_or_else(|| {
        format!(
            "agent `{}`: `{name}` is not on PATH (set `command:` to its absolute path)",
            agent.name
        )
    })
}

fn script_invocation(cx: &InvokeCtx<'_>) -> Result<Invocation, String> {
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

fn claude_invocation(agent: &Agent, role: Role, cx: &InvokeCtx<'_>) -> Result<Invocation, String> {
    let mut args: Vec<String> = vec![
        "-p".into(),
        cx.prompt.into(),
        "--output-format".into(),
        "stream-json".into(),
        "--verbose".into(),
    ];
    match role {
        Role::Verifier => args.extend(["--permission-mode".into(), "plan".into()]),
        Role::Worker | Role::Acceptance => args.extend([
            "--permission-mode".into(),
            "acceptEdits".into(),
            "--allowedTools".into(),
            "Bash,Read,Edit,Write,Glob,Grep".into(),
        ]),
    }
    if let Some(m) = &agent.model {
        args.extend(["--model".into(), m.clone()]);
    }
    args.extend(agent.args.iter().cloned());
    Ok(Invocation {
        program: resolve(agent, "claude")?,
        args,
        env: Vec::new(),
    })
}

fn codex_invocation(agent: &Agent, role: Role, cx: &InvokeCtx<'_>) -> Result<Invocation, String> {
    let sandbox = match role {
        Role::Verifier => "read-only",
        Role::Worker | Role::Acceptance => "workspace-write",
    };
    let mut args: Vec<String> = vec![
        "exec".into(),
        "--json".into(),
        "--sandbox".into(),
        sandbox.into(),
        "-C".into(),
        cx.worktree.to_string_lossy().into_owned(),
        // Give up on an unreachable server instead of retrying for ever; no plugin sync, no
        // analytics linger, no compressed request bodies.
        "--disable".into(),
        "unbounded_connection_retries".into(),
        "--disable".into(),
        "plugins".into(),
        "--disable".into(),
        "enable_request_compression".into(),
        "-c".into(),
        "analytics.enabled=false".into(),
    ];
    if let Some(m) = &agent.model {
        args.extend(["-c".into(), format!("model=\"{m}\"")]);
    }
    args.extend(agent.args.iter().cloned());
    args.push(cx.prompt.into());
    // Codex prints usage-limit reset times in local time: make that UTC.
    Ok(Invocation {
        program: resolve(agent, "codex")?,
        args,
        env: vec![("TZ".into(), "UTC".into())],
    })
}

/// The verifier's policy: plan mode (read-only) plus read-only git commands.
pub const GEMINI_VERIFIER_POLICY: &str = "[[rule]]\ntoolName = \"run_shell_command\"\ncommandPrefix = [\"git diff\", \"git log\", \"git show\", \"git status\"]\ndecision = \"allow\"\npriority = 100\nmodes = [\"plan\"]\n";

/// Gemini CLI, headless: `-p PROMPT --output-format stream-json --skip-trust`; the worker in
/// `yolo` (the only mode with a shell tool), the verifier in `plan` with a policy that allows
/// read-only git commands (written next to the prompt).
fn gemini_invocation(agent: &Agent, role: Role, cx: &InvokeCtx<'_>) -> Result<Invocation, String> {
    let mut args: Vec<String> = vec![
        "-p".into(),
        cx.prompt.into(),
        "--output-format".into(),
        "stream-json".into(),
        "--skip-trust".into(),
    ];
    if let Some(m) = &agent.model {
        args.extend(["-m".into(), m.clone()]);
    }
    match role {
        Role::Verifier => {
            let policy = cx.prompt_file.with_file_name("verifier-policy.toml");
            std::fs::write(&policy, GEMINI_VERIFIER_POLICY)
                .map_err(|e| format!("cannot write {}: {e}", policy.display()))?;
            args.extend([
                "--approval-mode".into(),
                "plan".into(),
                "--policy".into(),
                policy.to_string_lossy().into_owned(),
            ]);
        }
        Role::Worker | Role::Acceptance => args.extend(["--approval-mode".into(), "yolo".into()]),
    }
    args.extend(agent.args.iter().cloned());
    Ok(Invocation {
        program: resolve(agent, "gemini")?,
        args,
        env: Vec::new(),
    })
}

/// Any executable: `{prompt_file}` in its args is replaced by the prompt's path, which is also
/// in `NIGHTSHIFT_PROMPT_FILE`; its stdout is its final message.
fn command_invocation(agent: &Agent, cx: &InvokeCtx<'_>) -> Result<Invocation, String> {
    let program = agent
        .command
        .as_deref()
        .ok_or_else(|| format!("agent `{}`: kind `command` needs `command:`", agent.name))?;
    let file = cx.prompt_file.to_string_lossy().into_owned();
    let args = agent
        .args
        .iter()
        .map(|a| a.replace("{prompt_file}", &file))
        .collect();
    let program = crate::proc::which(program)
        .ok_or_else(|| format!("agent `{}`: `{program}` is not on PATH", agent.name))?;
    Ok(Invocation {
        program,
        args,
        env: vec![("NIGHTSHIFT_PROMPT_FILE".into(), file)],
    })
}

/// How an agent process ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExitInfo {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    /// nightshift killed it at its deadline.
    pub timed_out: bool,
}

/// What nightshift reads from an agent's structured output.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Parsed {
    pub final_message: Option<String>,
    pub failure: Option<failure::AgentFailure>,
    pub usage: Option<Usage>,
    pub cost_usd: Option<f64>,
    pub session_id: Option<String>,
    pub model: Option<String>,
    pub cli_version: Option<String>,
    pub permission_denials: u32,
}

/// Parses an agent's stdout by its kind and classifies how it ended.
#[must_use]
pub fn parse(kind: AgentKind, stdout: &[u8], exit: ExitInfo, now: jiff::Timestamp) -> Parsed {
    let mut p = match kind {
        AgentKind::Claude | AgentKind::Script => {
            let s = claude::parse_stream(stdout);
            Parsed {
                failure: failure::classify_claude(&s, exit),
                final_message: s.final_message,
                usage: s.usage,
                cost_usd: s.cost_usd,
                session_id: s.session_id,
                model: s.model,
                cli_version: s.cli_version,
                permission_denials: s.permission_denials,
            }
        }
        AgentKind::Codex => {
            let s = codex::parse_stream(stdout);
            Parsed {
                failure: failure::classify_codex(&s, exit, now),
                final_message: s.final_message,
                usage: s.usage,
                session_id: s.thread_id,
                ..Parsed::default()
            }
        }
        AgentKind::Gemini => {
            let s = gemini::parse_stream(stdout);
            Parsed {
                failure: failure::classify_gemini(&s, exit, now),
                final_message: s.final_message,
                usage: s.usage,
                session_id: s.session_id,
                model: s.model,
                permission_denials: s.permission_denials,
                ..Parsed::default()
            }
        }
        AgentKind::Command => {
            let text = String::from_utf8_lossy(stdout).into_owned();
            Parsed {
                failure: failure::classify_exit(exit, ""),
                final_message: (!text.trim().is_empty()).then_some(text),
                ..Parsed::default()
            }
        }
    };
    if exit.timed_out {
        p.failure = None; // the engine reports the timeout itself
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Agent, AgentKind, Auth};

    fn agent(kind: AgentKind, command: &str, model: Option<&str>, args: &[&str]) -> Agent {
        Agent {
            name: "a".into(),
            kind,
            command: Some(command.into()),
            args: args.iter().map(|s| (*s).to_owned()).collect(),
            env: [("EXTRA".to_owned(), "1".to_owned())].into_iter().collect(),
            model: model.map(str::to_owned),
            family: "f".into(),
            recipe: None,
            auth: Auth::Subscription,
            share_cli_state: true,
            silence_secs: None,
        }
    }

    fn show(a: &Agent, role: Role) -> String {
        let dir = tempfile::tempdir().unwrap();
        let prompt_file = dir.path().join("worker-prompt.md");
        let cx = InvokeCtx {
            prompt: "PROMPT",
            prompt_file: &prompt_file,
            worktree: Path::new("/w"),
            recipe_file: Some(Path::new("/h/worker-recipe.json")),
            self_exe: Path::new("/bin/nightshift"),
        };
        let inv = invocation(a, role, &cx).unwrap();
        let env: Vec<String> = inv.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let tmp = dir.path().to_string_lossy().into_owned();
        format!(
            "{} {}\nenv: {}",
            inv.program.display(),
            inv.args.join(" "),
            env.join(" ")
        )
        .replace(&tmp, "$TMP")
    }

    /// One argv per kind and role (the adapters' whole contract with each CLI).
    #[test]
    fn argv_per_kind_and_role() {
        let claude = agent(
            AgentKind::Claude,
            "/bin/claude",
            Some("claude-sonnet-4-5"),
            &["--max-turns", "40"],
        );
        let codex = agent(AgentKind::Codex, "/bin/codex", Some("gpt-5-codex"), &[]);
        let gemini = agent(
            AgentKind::Gemini,
            "/bin/gemini",
            Some("gemini-2.5-pro"),
            &[],
        );
        let command = agent(
            AgentKind::Command,
            "/bin/sh",
            None,
            &["-c", "my-agent --prompt {prompt_file}"],
        );
        let script = agent(AgentKind::Script, "unused", None, &[]);
        let mut out = String::new();
        for (name, a) in [
            ("claude", &claude),
            ("codex", &codex),
            ("gemini", &gemini),
            ("command", &command),
            ("script", &script),
        ] {
            for role in [Role::Worker, Role::Verifier] {
                out.push_str(&format!("## {name} {role}\n{}\n", show(a, role)));
            }
        }
        insta::assert_snapshot!(out);
    }
}
