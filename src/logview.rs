//! An attempt's log rendered for a person: the agent's messages and tool calls, not raw JSON
//! events. Understands Claude Code stream-json, Codex `--json` JSONL and Gemini CLI
//! stream-json, line by line (the shape of each event says which); any other line (stderr,
//! acceptance output, a `command` agent's text) is shown as it is. Pure: text in, lines out.

use serde_json::Value;

/// Longest rendered line (longer ones are cut with `…`).
const WIDTH: usize = 240;

/// Renders a whole log.
#[must_use]
pub fn render(raw: &str) -> Vec<String> {
    let mut r = Renderer::default();
    for line in raw.lines() {
        r.line(line);
    }
    r.finish()
}

/// Renders a log incrementally (for `logs --follow` and the attach cockpit).
#[derive(Debug, Default)]
pub struct Renderer {
    out: Vec<String>,
    /// Gemini streams an assistant message in deltas: they are joined into one message.
    pending: String,
}

impl Renderer {
    /// Feeds one raw line.
    pub fn line(&mut self, line: &str) {
        let v: Option<Value> = line
            .trim_start()
            .starts_with('{')
            .then(|| serde_json::from_str(line).ok())
            .flatten();
        let Some(v) = v else {
            self.flush();
            if !line.trim().is_empty() {
                self.push(line.to_owned());
            }
            return;
        };
        if v["type"] == "message" && v["role"] == "assistant" && v["delta"] == true {
            self.pending
                .push_str(v["content"].as_str().unwrap_or_default());
            return;
        }
        self.flush();
        for l in event(&v) {
            self.push(l);
        }
    }

    /// Takes the lines rendered so far (joining any message still streaming).
    pub fn take(&mut self) -> Vec<String> {
        std::mem::take(&mut self.out)
    }

    /// Ends the log and returns every line not yet taken.
    #[must_use]
    pub fn finish(mut self) -> Vec<String> {
        self.flush();
        self.out
    }

    fn flush(&mut self) {
        if !self.pending.is_empty() {
            let text = std::mem::take(&mut self.pending);
            for l in said(&text) {
                self.push(l);
            }
        }
    }

    fn push(&mut self, line: String) {
        self.out.push(cut(&line));
    }
}

fn cut(s: &str) -> String {
    if s.chars().count() <= WIDTH {
        return s.to_owned();
    }
    let mut t: String = s.chars().take(WIDTH - 1).collect();
    t.push('…');
    t
}

/// An agent's message: the first line marked, the rest indented.
fn said(text: &str) -> Vec<String> {
    text.trim()
        .lines()
        .enumerate()
        .map(|(i, l)| {
            if i == 0 {
                format!("agent: {l}")
            } else {
                format!("       {l}").trim_end().to_owned()
            }
        })
        .collect()
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_default()
}

fn first_line(text: &str) -> &str {
    text.lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default()
}

/// The lines of one JSON event, by its shape.
fn event(v: &Value) -> Vec<String> {
    match s(v, "type") {
        "system" if s(v, "subtype") == "init" => {
            vec![format!("── session started (model {})", s(v, "model"))]
        }
        "init" => vec![format!("── session started (model {})", s(v, "model"))],
        "thread.started" => vec!["── session started".to_owned()],
        "assistant" => claude_content(&v["message"]["content"]),
        "user" => claude_results(&v["message"]["content"]),
        "result" => vec![result_line(v)],
        "rate_limit_event" => vec![format!(
            "── rate limit: {}",
            s(&v["rate_limit_info"], "status")
        )],
        "item.completed" => codex_item(&v["item"]),
        "turn.completed" => vec![format!(
            "── turn completed ({} input, {} output tokens)",
            v["usage"]["input_tokens"], v["usage"]["output_tokens"]
        )],
        "turn.failed" => vec![format!("── turn failed: {}", s(&v["error"], "message"))],
        "error" => vec![format!("error: {}", s(v, "message"))],
        "message" if s(v, "role") == "assistant" => said(s(v, "content")),
        "tool_use" => vec![format!(
            "tool: {} {}",
            s(v, "tool_name"),
            brief_input(&v["parameters"])
        )],
        "tool_result" => {
            let out = first_line(s(v, "output"));
            vec![
                format!("  ↳ {} {out}", s(v, "status"))
                    .trim_end()
                    .to_owned(),
            ]
        }
        // Prompts echoed back, turn starts, item starts: not news to a person.
        _ => Vec::new(),
    }
}

fn claude_content(content: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for c in content.as_array().into_iter().flatten() {
        match s(c, "type") {
            "text" => out.extend(said(s(c, "text"))),
            "tool_use" => out.push(format!(
                "tool: {} {}",
                s(c, "name"),
                brief_input(&c["input"])
            )),
            _ => {}
        }
    }
    out
}

fn claude_results(content: &Value) -> Vec<String> {
    content
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| s(c, "type") == "tool_result")
        .map(|c| {
            let text = c["content"].as_str().map_or_else(
                || {
                    c["content"][0]["text"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned()
                },
                str::to_owned,
            );
            let mark = if c["is_error"] == true { "error" } else { "ok" };
            format!("  ↳ {mark} {}", first_line(&text))
                .trim_end()
                .to_owned()
        })
        .collect()
}

/// The gist of a tool call's input: its command, path, or pattern.
fn brief_input(input: &Value) -> String {
    for key in [
        "command",
        "file_path",
        "path",
        "pattern",
        "url",
        "description",
    ] {
        if let Some(t) = input[key].as_str() {
            return first_line(t).to_owned();
        }
    }
    String::new()
}

fn codex_item(item: &Value) -> Vec<String> {
    match s(item, "type") {
        "agent_message" => said(s(item, "text")),
        "reasoning" => vec![format!("thinking: {}", first_line(s(item, "text")))],
        "command_execution" => vec![format!(
            "tool: shell {} → exit {}",
            s(item, "command"),
            item["exit_code"]
        )],
        "file_change" => item["changes"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| format!("tool: {} {}", s(c, "kind"), s(c, "path")))
            .collect(),
        "error" => vec![format!("error: {}", s(item, "message"))],
        other if !other.is_empty() => vec![format!("{other}")],
        _ => Vec::new(),
    }
}

fn result_line(v: &Value) -> String {
    if let Some(status) = v["status"].as_str() {
        // Gemini.
        return format!(
            "── result: {status} ({} input, {} output tokens)",
            v["stats"]["input_tokens"], v["stats"]["output_tokens"]
        );
    }
    let outcome = if v["is_error"] == true { "error" } else { "ok" };
    let cost = v["total_cost_usd"]
        .as_f64()
        .map(|c| format!(", ${c:.4}"))
        .unwrap_or_default();
    format!(
        "── result: {outcome} ({} input, {} output tokens{cost})",
        v["usage"]["input_tokens"], v["usage"]["output_tokens"]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/agent-cli-output")
                .join(name),
        )
        .unwrap()
    }

    #[test]
    fn claude_stream_reads_as_messages_and_tools() {
        let lines = render(&fixture("claude-worker.stdout.jsonl"));
        let text = lines.join("\n");
        assert!(text.contains("agent: I'll create out.txt first."), "{text}");
        assert!(text.contains("tool: Bash echo hello > out.txt"), "{text}");
        assert!(text.contains("── result: ok"), "{text}");
        assert!(!text.contains("\"type\""), "{text}");
    }

    #[test]
    fn codex_jsonl_reads_as_messages_and_tools() {
        let text = render(&fixture("codex-worker.stdout.jsonl")).join("\n");
        assert!(text.contains("agent: I'll create out.txt first."), "{text}");
        assert!(
            text.contains("tool: shell /bin/bash -lc 'echo hello > out.txt' → exit 0"),
            "{text}"
        );
        assert!(text.contains("tool: add /tmp/run/repo/notes.md"), "{text}");
        assert!(text.contains("── turn completed"), "{text}");
    }

    #[test]
    fn gemini_deltas_join_into_one_message() {
        let text = render(&fixture("gemini-worker.stdout.jsonl")).join("\n");
        assert!(
            text.contains("agent: Done: wrote notes.md and shell.txt."),
            "{text}"
        );
        assert!(
            text.contains("tool: write_file /tmp/run/repo/notes.md"),
            "{text}"
        );
        assert!(text.contains("── result: success"), "{text}");
        assert_eq!(text.matches("agent: ").count(), 1, "{text}");
    }

    #[test]
    fn plain_lines_pass_through() {
        assert_eq!(
            render("warning: x\n\n{not json\n"),
            vec!["warning: x", "{not json"]
        );
    }
}
