//! The cockpit's one adapter to the rest of nightshift: a [`Snapshot`] of the status model
//! (today `crate::cmd::status`'s `StatusJson`), the active agents with their liveness and
//! deadlines, the needs-you list, and the tail of an attempt's log rendered one line per event.
//! Switching to another status model or log renderer touches this file only.
//!
//! Read-only: it never takes the tick lock, never writes a file, never starts or signals a
//! process. Liveness is asked of the kernel the way `status` asks it (a probe of the job's flock).

use std::path::{Path, PathBuf};

use jiff::Timestamp;

use crate::cmd::status::{BudgetJson, StageJson, StatusJson};
use crate::engine::state::Status;
use crate::error::NsResult;
use crate::paths::Paths;

/// One running (or vanished) agent job.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentRow {
    pub stage: String,
    pub attempt: u32,
    pub role: String,
    pub pid: u32,
    /// The job's lock is held: it is alive.
    pub alive: bool,
    pub started_at: Timestamp,
    pub deadline: Option<Timestamp>,
    /// Relative to the repo root.
    pub log: String,
}

/// Everything one frame shows.
#[derive(Debug)]
pub struct Snapshot {
    pub status: StatusJson,
    pub agents: Vec<AgentRow>,
    pub needs_you: Vec<String>,
    pub now: Timestamp,
}

/// Reads the state files (validated) and the agent registry.
///
/// # Errors
/// When the config or a state file is missing or invalid.
pub fn load(paths: &Paths) -> NsResult<Snapshot> {
    let config = crate::config::Config::load(&paths.config())?;
    let state = crate::store::read_state_file(paths)?;
    let budget = crate::store::read_budget_file(paths)?;
    let seen = crate::observe::observe(paths, &state);
    let limits = crate::tick::limits(&config);
    let stages: Vec<StageJson> = state
        .stages
        .iter()
        .map(|s| crate::cmd::status::stage_json(paths, s, &seen, &budget, &limits))
        .collect();
    let status = StatusJson {
        version: 1,
        seq: state.seq,
        halted: state.halted.as_ref().map(
            |h| serde_json::json!({ "reason": h.reason.to_string(), "cap": h.reason, "at": h.at }),
        ),
        in_flight: state.in_flight(),
        lanes: config.lanes,
        stages,
        paused: serde_json::to_value(&state.paused).unwrap_or_default(),
        budget: BudgetJson {
            tokens: budget.usage.total(),
            usd: budget.usd,
            max_tokens: config.money.max_tokens,
            max_usd: config.money.max_usd,
            families: budget.families.clone(),
            wall_secs: budget.wall_secs,
            max_wall_secs: config.max_wall_secs,
            attempts: budget.attempts,
            consecutive_failures: state.consecutive_failures,
            max_consecutive_failures: config.max_consecutive_failures,
        },
    };
    let deadline = |stage: &str| {
        state
            .stages
            .iter()
            .find(|s| s.id.as_str() == stage)
            .and_then(|s| match &s.status {
                Status::Working { deadline, .. }
                | Status::Checking { deadline, .. }
                | Status::Verifying { deadline, .. } => Some(*deadline),
                _ => None,
            })
    };
    let mut agents = agents(paths);
    for a in &mut agents {
        a.deadline = deadline(&a.stage);
    }
    Ok(Snapshot {
        needs_you: needs_you(&status),
        status,
        agents,
        now: crate::now::now()?,
    })
}

fn agents(paths: &Paths) -> Vec<AgentRow> {
    let mut rows: Vec<AgentRow> = std::fs::read_dir(paths.agents_dir())
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .filter_map(|e| {
            let text = std::fs::read_to_string(e.path()).ok()?;
            let r: crate::job::Registration =
                crate::schema::parse_json(&text, "registration", crate::schema::Doc::Registration)
                    .ok()?;
            let key = crate::ids::JobKey {
                stage: r.stage.clone(),
                attempt: r.attempt,
                role: r.role,
            };
            Some(AgentRow {
                stage: r.stage.to_string(),
                attempt: r.attempt,
                role: r.role.to_string(),
                pid: r.pid,
                alive: crate::lock::is_held(&paths.alive_file(&key)).unwrap_or(false),
                started_at: r.started_at,
                deadline: None,
                log: r.log,
            })
        })
        .collect();
    rows.sort_by(|a, b| (&a.stage, a.attempt, &a.role).cmp(&(&b.stage, b.attempt, &b.role)));
    rows
}

/// What needs a human, one line each, with the next command.
#[must_use]
pub fn needs_you(s: &StatusJson) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(h) = &s.halted {
        let reason = h.get("reason").and_then(|r| r.as_str()).unwrap_or("?");
        out.push(format!(
            "HALTED: {reason} → raise the cap, then `nightshift resume`"
        ));
    }
    for st in s.stages.iter().filter(|x| x.status == "escalated") {
        out.push(format!(
            "{}: {} → `nightshift requeue {}`",
            st.id,
            st.reason.as_deref().unwrap_or("escalated"),
            st.id
        ));
    }
    if let Some(paused) = s.paused.as_object() {
        for (family, p) in paused {
            out.push(format!(
                "{family} paused (usage limit) until {}; resumes by itself",
                p["until"].as_str().unwrap_or("?")
            ));
        }
    }
    out
}

/// The logs to show for a stage: the running job's, else every log of the stage's latest
/// attempt in the order its jobs ran (worker, acceptance, verifier).
#[must_use]
pub fn log_paths(paths: &Paths, snap: &Snapshot, stage: &str) -> Vec<PathBuf> {
    if let Some(a) = snap.agents.iter().find(|a| a.stage == stage) {
        return vec![paths.root.join(&a.log)];
    }
    let Some(st) = snap.status.stages.iter().find(|s| s.id == stage) else {
        return Vec::new();
    };
    let dir = paths.state_dir().join("logs").join(stage);
    ["worker", "acceptance", "verifier"]
        .iter()
        .map(|role| dir.join(format!("a{}-{role}.log", st.attempt)))
        .filter(|p| p.is_file())
        .collect()
}

/// The last `max` lines of several logs, each introduced by its file name when there are more
/// than one.
#[must_use]
pub fn logs_tail(paths: &[PathBuf], max: usize) -> Vec<String> {
    let mut lines = Vec::new();
    for p in paths {
        if paths.len() > 1 {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            lines.push(format!("── {name} ──"));
        }
        lines.extend(log_tail(p, max));
    }
    let cut = lines.len().saturating_sub(max);
    lines.drain(..cut);
    lines
}

/// The last `max` events of a log, one line each. Reads at most the last 256 KiB.
#[must_use]
pub fn log_tail(path: &Path, max: usize) -> Vec<String> {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(path) else {
        return vec![format!("(no log yet at {})", path.display())];
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let from = len.saturating_sub(256 * 1024);
    let mut bytes = Vec::new();
    if f.seek(SeekFrom::Start(from)).is_err() || f.read_to_end(&mut bytes).is_err() {
        return vec![format!("(cannot read {})", path.display())];
    }
    let text = String::from_utf8_lossy(&bytes);
    let mut lines: Vec<String> = text
        .lines()
        .skip(usize::from(from > 0))
        .flat_map(render_line)
        .collect();
    let cut = lines.len().saturating_sub(max);
    lines.drain(..cut);
    lines
}

/// One log line as zero or more display lines: assistant text and tool calls of Claude Code's
/// stream-json, Codex's JSONL and Gemini CLI's stream-json; other lines as they are.
#[must_use]
pub fn render_line(line: &str) -> Vec<String> {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
        return if line.trim().is_empty() {
            Vec::new()
        } else {
            vec![line.to_owned()]
        };
    };
    let first = |s: &str| {
        s.lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .to_owned()
    };
    let short = |v: &serde_json::Value| {
        let s = match v {
            serde_json::Value::Object(m) => m
                .get("command")
                .or_else(|| m.get("file_path"))
                .or_else(|| m.get("path"))
                .map_or_else(
                    || v.to_string(),
                    |x| x.as_str().map_or_else(|| x.to_string(), str::to_owned),
                ),
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        s.chars().take(100).collect::<String>()
    };
    match v["type"].as_str().unwrap_or("") {
        "assistant" => v["message"]["content"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| match c["type"].as_str() {
                Some("text") => Some(first(c["text"].as_str().unwrap_or(""))),
                Some("tool_use") => Some(format!(
                    "→ {} {}",
                    c["name"].as_str().unwrap_or("?"),
                    short(&c["input"])
                )),
                _ => None,
            })
            .collect(),
        "result" => vec![format!(
            "■ result: {}{}",
            v["subtype"].as_str().unwrap_or("?"),
            if v["is_error"].as_bool() == Some(true) {
                " (error)"
            } else {
                ""
            }
        )],
        "item.completed" | "item.started" => {
            let item = &v["item"];
            match (v["type"].as_str(), item["type"].as_str()) {
                (Some("item.completed"), Some("agent_message")) => {
                    vec![first(item["text"].as_str().unwrap_or(""))]
                }
                (Some("item.started"), Some("command_execution")) => {
                    vec![format!("→ $ {}", short(&item["command"]))]
                }
                (Some("item.completed"), Some("file_change")) => {
                    vec![format!("→ edit {}", short(&item["changes"][0]))]
                }
                _ => Vec::new(),
            }
        }
        "turn.failed" | "error" => vec![format!("■ {}", first(&v.to_string()))],
        "message" if v["role"] == "assistant" => vec![first(v["content"].as_str().unwrap_or(""))],
        "tool_use" => vec![format!(
            "→ {} {}",
            v["tool_name"].as_str().unwrap_or("?"),
            short(&v["parameters"])
        )],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render_fixture(name: &str) -> Vec<String> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/agent-cli-output")
            .join(name);
        let text = std::fs::read_to_string(path).unwrap();
        text.lines().flat_map(render_line).collect()
    }

    #[test]
    fn claude_stream_renders_text_and_tool_calls() {
        let lines = render_fixture("claude-worker.stdout.jsonl");
        assert_eq!(
            lines,
            [
                "I'll create out.txt first.",
                "→ Bash echo hello > out.txt",
                "→ Write /tmp/run/repo/notes.md",
                "Done: created out.txt and notes.md.",
                "■ result: success",
            ]
        );
    }

    #[test]
    fn codex_jsonl_renders_messages_and_commands() {
        let lines = render_fixture("codex-worker.stdout.jsonl");
        assert_eq!(lines[0], "I'll create out.txt first.");
        assert_eq!(lines[1], "→ $ /bin/bash -lc 'echo hello > out.txt'");
        assert!(lines.iter().any(|l| l.starts_with("→ edit ")), "{lines:?}");
        assert_eq!(lines.last().unwrap(), "Done: created out.txt and notes.md.");
    }

    #[test]
    fn gemini_and_plain_lines() {
        let lines = render_fixture("gemini-worker.stdout.jsonl");
        assert!(!lines.is_empty());
        assert_eq!(render_line("plain text"), ["plain text"]);
        assert!(render_line("  ").is_empty());
    }
}
