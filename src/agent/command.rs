//! The `command` kind's room: any executable as an agent. Its argv is the agent's own `args:`
//! with `{prompt_file}` replaced by the prompt's path (also in `NIGHTSHIFT_PROMPT_FILE`); its
//! whole stdout is its final message, and it is classified by exit status alone (it prints no
//! structured events and no usage, so it is unmetered). Never spawns anything: the job wrapper
//! runs the [`Invocation`] built here.

use std::path::Path;

use super::{Doctor, ExitInfo, Invocation, InvokeCtx, LoginProbe, Parsed, Vendor};
use crate::config::Agent;
use crate::ids::Role;

/// The `command` kind.
#[derive(Debug, Clone, Copy)]
pub struct Command;

impl Vendor for Command {
    fn name(&self) -> &'static str {
        "command"
    }

    fn default_family(&self) -> Option<&'static str> {
        None
    }

    fn default_silence_secs(&self) -> u64 {
        60 * 60 // it may print only at the end
    }

    fn default_key_var(&self) -> Option<&'static str> {
        None
    }

    fn default_command(&self) -> Option<&'static str> {
        None
    }

    fn reports_usage(&self) -> bool {
        false
    }

    fn is_paid(&self) -> bool {
        true
    }

    fn takes_recipe(&self) -> bool {
        false
    }

    fn kind_env(&self) -> &'static [(&'static str, &'static str)] {
        &[]
    }

    fn shared_state(&self, _home: &Path) -> (Vec<std::path::PathBuf>, Vec<std::path::PathBuf>) {
        (Vec::new(), Vec::new())
    }

    fn isolation_env(&self, _dir: &Path, tmp: &Path) -> std::io::Result<Vec<(String, String)>> {
        Ok(vec![super::auth::path_var("TMPDIR", tmp)])
    }

    /// The same argv for every role.
    fn invocation(
        &self,
        agent: &Agent,
        _role: Role,
        cx: &InvokeCtx<'_>,
    ) -> Result<Invocation, String> {
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

    fn check_agent(&self, _agent: &Agent) -> Result<(), String> {
        Ok(())
    }

    fn parse(&self, stdout: &[u8], _dir: &Path, exit: ExitInfo, _now: jiff::Timestamp) -> Parsed {
        let text = String::from_utf8_lossy(stdout).into_owned();
        Parsed {
            failure: super::failure::classify_exit(exit, ""),
            final_message: (!text.trim().is_empty()).then_some(text),
            ..Parsed::default()
        }
    }

    fn doctor(&self) -> Doctor {
        Doctor::Cli {
            install_hint: "set `command:` to the executable's absolute path",
            pinned: None,
            version_args: None,
            login: LoginProbe::Own,
        }
    }
}
