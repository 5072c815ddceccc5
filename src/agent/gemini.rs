//! Gemini CLI's room: the facts about the `gemini` kind, its one argv per role
//! (`gemini -p PROMPT --output-format stream-json --skip-trust`; the worker in `yolo`, the only
//! mode with a shell tool, the verifier in `plan` with a policy allowing read-only git
//! commands), the settings of an isolated home, its output reader ([`parse_stream`], in `parse`,
//! with the fixed error shapes in `api_error`), its failure classifier ([`classify_gemini`], in
//! `classify`) and doctor's check (an auth type selected in its settings). Observed on
//! @google/gemini-cli 0.61.0. Never spawns anything: the job wrapper runs the [`Invocation`]
//! built here.

mod api_error;
mod classify;
mod parse;

use std::path::Path;

pub use api_error::{GeminiError, status_from_exit_code};
pub use classify::classify_gemini;
pub use parse::{GeminiSummary, parse_stream};

use super::{Doctor, ExitInfo, Invocation, InvokeCtx, LoginProbe, LoginStatus, Parsed, Vendor};
use crate::config::Agent;
use crate::ids::Role;

/// The verifier's policy: plan mode (read-only) plus read-only git commands.
pub const GEMINI_VERIFIER_POLICY: &str = "[[rule]]\ntoolName = \"run_shell_command\"\ncommandPrefix = [\"git diff\", \"git log\", \"git show\", \"git status\"]\ndecision = \"allow\"\npriority = 100\nmodes = [\"plan\"]\n";

/// Gemini CLI settings for an isolated home: API-key auth (the environment alone makes it pick
/// a gateway auth type and refuse), no usage statistics or telemetry (its only outside
/// traffic), no auto-update or IDE, bounded retries, and a repo's `.env` ignored.
pub const GEMINI_SETTINGS: &str = r#"{"security":{"auth":{"selectedType":"gemini-api-key"}},"privacy":{"usageStatisticsEnabled":false},"telemetry":{"enabled":false},"general":{"enableAutoUpdate":false,"enableAutoUpdateNotification":false,"maxAttempts":2},"ide":{"enabled":false},"advanced":{"ignoreLocalEnv":true}}"#;

/// The `gemini` kind.
#[derive(Debug, Clone, Copy)]
pub struct Gemini;

impl Vendor for Gemini {
    fn name(&self) -> &'static str {
        "gemini"
    }

    fn default_family(&self) -> Option<&'static str> {
        Some("gemini")
    }

    fn default_silence_secs(&self) -> u64 {
        20 * 60 // stream-json events as it works
    }

    fn default_key_var(&self) -> Option<&'static str> {
        Some("GEMINI_API_KEY")
    }

    fn default_command(&self) -> Option<&'static str> {
        Some("gemini")
    }

    fn reports_usage(&self) -> bool {
        true
    }

    fn is_paid(&self) -> bool {
        true
    }

    fn takes_recipe(&self) -> bool {
        false
    }

    fn kind_env(&self) -> &'static [(&'static str, &'static str)] {
        // One process (the relaunching parent ignores SIGTERM).
        &[("GEMINI_CLI_NO_RELAUNCH", "true")]
    }

    fn shared_state(&self, home: &Path) -> (Vec<std::path::PathBuf>, Vec<std::path::PathBuf>) {
        (vec![home.join(".gemini")], Vec::new())
    }

    fn isolation_env(&self, dir: &Path, tmp: &Path) -> std::io::Result<Vec<(String, String)>> {
        let home = dir.join("gemini");
        std::fs::create_dir_all(home.join(".gemini"))?;
        std::fs::write(home.join(".gemini/settings.json"), GEMINI_SETTINGS)?;
        Ok(vec![
            super::auth::path_var("GEMINI_CLI_HOME", &home),
            super::auth::path_var("TMPDIR", tmp),
        ])
    }

    /// The verifier's policy file is written next to the prompt.
    fn invocation(
        &self,
        agent: &Agent,
        role: Role,
        cx: &InvokeCtx<'_>,
    ) -> Result<Invocation, String> {
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
            Role::Worker | Role::Acceptance => {
                args.extend(["--approval-mode".into(), "yolo".into()]);
            }
        }
        args.extend(agent.args.iter().cloned());
        Ok(Invocation {
            program: super::resolve(agent, "gemini")?,
            args,
            env: Vec::new(),
        })
    }

    fn check_agent(&self, _agent: &Agent) -> Result<(), String> {
        Ok(())
    }

    fn parse(&self, stdout: &[u8], _dir: &Path, exit: ExitInfo, now: jiff::Timestamp) -> Parsed {
        let s = parse_stream(stdout);
        Parsed {
            failure: classify_gemini(&s, exit, now),
            final_message: s.final_message,
            usage: s.usage,
            session_id: s.session_id,
            model: s.model,
            permission_denials: s.permission_denials,
            ..Parsed::default()
        }
    }

    fn doctor(&self) -> Doctor {
        Doctor::Cli {
            install_hint: "set `command:` to the executable's absolute path",
            pinned: None,
            version_args: Some(&["--version"]),
            login: LoginProbe::Inspect(inspect_login),
        }
    }
}

/// Gemini CLI has no login-status command: check that its settings select an auth type
/// (without one, a headless run exits 41 "Invalid auth method selected").
fn inspect_login() -> LoginStatus {
    let home = std::env::var_os("GEMINI_CLI_HOME")
        .or_else(|| std::env::var_os("HOME"))
        .map(std::path::PathBuf::from)
        .unwrap_or_default();
    let settings = home.join(".gemini/settings.json");
    let text = std::fs::read_to_string(&settings).unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    let hint =
        "run `gemini` once interactively to sign in, or use `auth: { route: api, env: ... }`";
    match v["security"]["auth"]["selectedType"].as_str() {
        Some(t) => LoginStatus {
            ok: true,
            detail: format!(
                "subscription login: auth type `{t}` selected in {}",
                settings.display()
            ),
            hint: hint.into(),
        },
        None => LoginStatus {
            ok: false,
            detail: format!("no auth type selected in {}", settings.display()),
            hint: hint.into(),
        },
    }
}
