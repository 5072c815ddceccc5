//! Codex's structured output (`codex exec --json`): the tolerant reader [`parse_stream`] that
//! sums a run up from its JSON lines.
//!
//! Owns the meaning of the CLI's events (docs: `AGENT-CLIS.md`): usage comes only from
//! `turn.completed.usage`, and a failed turn has **unknown** usage (`None`), never zero.
//! Never reads transcript prose, never fails: any line that is not a JSON object is counted as
//! garbage and skipped (same rules as [`crate::agent::claude::parse_stream`]). Never spawns or
//! reads files; callers hand in bytes.

use std::collections::HashMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::agent::Usage;
use crate::agent::jsonl::{for_each_object, str_field, u64_field};

/// What one `codex exec --json` run says, as far as nightshift cares.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CodexSummary {
    /// `thread.started` `thread_id`.
    pub thread_id: Option<String>,
    /// Text of the last completed `agent_message` item: where the handoff block travels.
    pub final_message: Option<String>,
    /// The last turn event was `turn.completed`.
    pub turn_completed: bool,
    /// The last turn event was `turn.failed`: its `error.message`.
    pub turn_failed: Option<String>,
    /// From the last turn event's usage: `None` when it failed, or when there was none.
    ///
    /// Mapping: codex's `input_tokens` *includes* cached tokens (codex itself computes
    /// "non-cached input" as `input_tokens - cached_input_tokens`), so `input` is
    /// `input_tokens - cached_input_tokens - cache_write_input_tokens` (saturating);
    /// `cache_read` is `cached_input_tokens`; `cache_write` is `cache_write_input_tokens`
    /// (0 when absent); `output` is `output_tokens`, which already includes
    /// `reasoning_output_tokens` (not added again). The four buckets thus add up to
    /// `input_tokens + output_tokens`, without double counting.
    pub usage: Option<Usage>,
    /// `error` events and `error` items whose message starts with `Reconnecting`.
    pub reconnects: u32,
    /// `command_execution` items in the order they started: command and exit code (`None`
    /// while unfinished, or if the run died first).
    pub commands: Vec<(String, Option<i32>)>,
    /// Tool calls that ended (`command_execution`, `file_change`, `mcp_tool_call` items
    /// completed).
    pub tool_calls: u32,
    /// Those that failed (`status: "failed"`, or a command with a non-zero exit code), each as
    /// its command or paths and the last line it printed.
    pub failed_tools: Vec<String>,
    /// Lines skipped because they were not a JSON object (a cut-off last line counts here).
    pub garbage_lines: u32,
}

/// Reads a whole stream. If several turns end, the last turn event wins (for usage too; an
/// earlier turn's usage is not added, and a later failure makes it unknown).
///
/// ```
/// use nightshift::agent::codex::parse_stream;
/// let s = parse_stream(b"{\"type\":\"turn.failed\",\"error\":{\"message\":\"boom\"}}\n");
/// assert_eq!(s.turn_failed.as_deref(), Some("boom"));
/// assert_eq!(s.usage, None);
/// ```
#[must_use]
pub fn parse_stream(bytes: &[u8]) -> CodexSummary {
    let mut acc = Accumulator::default();
    let garbage = for_each_object(bytes, |line| acc.line(line));
    acc.summary.garbage_lines = garbage;
    acc.summary
}

#[derive(Debug, Default)]
struct Accumulator {
    summary: CodexSummary,
    /// Item id → index in `summary.commands`.
    command_ids: HashMap<String, usize>,
}

impl Accumulator {
    fn line(&mut self, object: &Map<String, Value>) {
        let s = &mut self.summary;
        match object.get("type").and_then(Value::as_str) {
            Some("thread.started") => s.thread_id = str_field(object, "thread_id"),
            Some("turn.completed") => {
                s.turn_completed = true;
                s.turn_failed = None;
                s.usage = object
                    .get("usage")
                    .and_then(Value::as_object)
                    .and_then(read_usage);
            }
            Some("turn.failed") => {
                s.turn_completed = false;
                s.usage = None;
                let message = object
                    .get("error")
                    .and_then(Value::as_object)
                    .and_then(|e| str_field(e, "message"));
                s.turn_failed = Some(message.unwrap_or_else(|| "unknown error".to_owned()));
            }
            Some("error") => count_reconnect(s, object),
            Some(kind @ ("item.started" | "item.updated" | "item.completed")) => {
                if let Some(item) = object.get("item").and_then(Value::as_object) {
                    self.item(item, kind == "item.completed");
                }
            }
            _ => {}
        }
    }

    fn item(&mut self, item: &Map<String, Value>, completed: bool) {
        if completed {
            self.tool_end(item);
        }
        match item.get("type").and_then(Value::as_str) {
            Some("agent_message") if completed => {
                if let Some(text) = str_field(item, "text") {
                    self.summary.final_message = Some(text);
                }
            }
            Some("command_execution") => self.command(item),
            Some("error") if completed => count_reconnect(&mut self.summary, item),
            _ => {}
        }
    }

    /// Counts a finished tool call and records it when it failed.
    fn tool_end(&mut self, item: &Map<String, Value>) {
        let kind = item.get("type").and_then(Value::as_str);
        if !matches!(
            kind,
            Some("command_execution" | "file_change" | "mcp_tool_call")
        ) {
            return;
        }
        let s = &mut self.summary;
        s.tool_calls = s.tool_calls.saturating_add(1);
        let status_failed = item.get("status").and_then(Value::as_str) == Some("failed");
        let exit = item.get("exit_code").and_then(Value::as_i64);
        if !status_failed && exit.is_none_or(|c| c == 0) {
            return;
        }
        let what = str_field(item, "command").unwrap_or_else(|| {
            let paths: Vec<&str> = item
                .get("changes")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|c| c.get("path").and_then(Value::as_str))
                .collect();
            if paths.is_empty() {
                kind.unwrap_or("tool").to_owned()
            } else {
                paths.join(", ")
            }
        });
        let output = str_field(item, "aggregated_output").unwrap_or_default();
        let last = output.lines().rev().find(|l| !l.trim().is_empty());
        s.failed_tools.push(match last {
            Some(l) => format!("{what}: {}", l.trim()),
            None => what,
        });
    }

    /// Records a command when first seen and updates its exit code on later events.
    fn command(&mut self, item: &Map<String, Value>) {
        let Some(command) = str_field(item, "command") else {
            return;
        };
        let exit_code = item
            .get("exit_code")
            .and_then(Value::as_i64)
            .and_then(|c| i32::try_from(c).ok());
        let commands = &mut self.summary.commands;
        let known = str_field(item, "id").and_then(|id| {
            let next = commands.len();
            let index = *self.command_ids.entry(id).or_insert(next);
            (index < next).then_some(index)
        });
        match known.and_then(|index| commands.get_mut(index)) {
            Some(entry) => *entry = (command, exit_code.or(entry.1)),
            None => commands.push((command, exit_code)),
        }
    }
}

fn count_reconnect(summary: &mut CodexSummary, object: &Map<String, Value>) {
    let message = object.get("message").and_then(Value::as_str);
    if message.is_some_and(|m| m.starts_with("Reconnecting")) {
        summary.reconnects = summary.reconnects.saturating_add(1);
    }
}

/// `input_tokens` and `output_tokens` are required (else the usage is unknown, not zero).
fn read_usage(usage: &Map<String, Value>) -> Option<Usage> {
    let input = u64_field(usage, "input_tokens")?;
    let output = u64_field(usage, "output_tokens")?;
    let cache_read = u64_field(usage, "cached_input_tokens").unwrap_or(0);
    let cache_write = u64_field(usage, "cache_write_input_tokens").unwrap_or(0);
    Some(Usage {
        input: input.saturating_sub(cache_read).saturating_sub(cache_write),
        output,
        cache_read,
        cache_write,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const WORKER: &str =
        include_str!("../../../tests/fixtures/agent-cli-output/codex-worker.stdout.jsonl");
    const REVIEWER: &str =
        include_str!("../../../tests/fixtures/agent-cli-output/codex-reviewer.stdout.jsonl");
    const RETRY_429: &str =
        include_str!("../../../tests/fixtures/agent-cli-output/codex-retry-429.stdout.jsonl");
    const FAIL_500: &str =
        include_str!("../../../tests/fixtures/agent-cli-output/codex-fail-500.stdout.jsonl");

    const ECHO: &str = "/bin/bash -lc 'echo hello > out.txt'";

    #[test]
    fn worker_fixture() {
        let s = parse_stream(WORKER.as_bytes());
        assert_eq!(
            s.thread_id.as_deref(),
            Some("01a203e2-9c6b-7543-a6c0-e6172df35d78")
        );
        assert!(s.turn_completed);
        assert_eq!(s.turn_failed, None);
        assert_eq!(
            s.usage,
            Some(Usage {
                input: 5300,
                output: 180,
                cache_read: 900,
                cache_write: 0
            })
        );
        assert_eq!(s.usage.map(|u| u.input + u.cache_read), Some(6200));
        assert_eq!(s.commands, vec![(ECHO.to_owned(), Some(0))]);
        assert_eq!((s.reconnects, s.garbage_lines), (0, 0));
        let message = s.final_message.unwrap_or_default();
        assert!(message.starts_with("Done: created out.txt and notes.md."));
        assert!(message.ends_with("```"));
    }

    #[test]
    fn reviewer_fixture_records_failed_commands() {
        let s = parse_stream(REVIEWER.as_bytes());
        assert!(s.turn_completed);
        assert_eq!(s.commands.len(), 2);
        assert_eq!(s.commands[0].1, Some(0));
        assert_eq!(
            s.commands[1],
            (
                "/bin/bash -lc 'echo tampered > review.txt'".to_owned(),
                Some(1)
            )
        );
        assert!(
            s.final_message
                .is_some_and(|m| m.starts_with("Review complete."))
        );
        assert_eq!(
            s.usage,
            Some(Usage {
                input: 3600,
                output: 120,
                cache_read: 0,
                cache_write: 0
            })
        );
    }

    #[test]
    fn retry_429_fixture_counts_reconnects() {
        let s = parse_stream(RETRY_429.as_bytes());
        assert_eq!(s.reconnects, 1);
        assert!(s.turn_completed);
        assert!(s.usage.is_some());
    }

    #[test]
    fn fail_500_fixture_has_unknown_usage() {
        let s = parse_stream(FAIL_500.as_bytes());
        assert!(!s.turn_completed);
        assert_eq!(
            s.turn_failed.as_deref(),
            Some("We’re currently experiencing high demand, which may cause temporary errors.")
        );
        assert_eq!(s.usage, None);
        // Only the "Reconnecting..." error counts; the final error is not a reconnect.
        assert_eq!(s.reconnects, 1);
        assert_eq!(s.commands, vec![(ECHO.to_owned(), Some(0))]);
        assert_eq!(
            s.final_message.as_deref(),
            Some("I'll create out.txt first.")
        );
    }

    #[test]
    fn truncated_stream_has_no_turn_end() {
        let cut = &WORKER.as_bytes()[..WORKER.len() - 40];
        let s = parse_stream(cut);
        assert!(!s.turn_completed);
        assert_eq!((s.turn_failed, s.usage), (None, None));
        assert_eq!(s.garbage_lines, 1);
        assert!(s.final_message.is_some());
    }

    #[test]
    fn unfinished_command_has_no_exit_code() {
        let line = r#"{"type":"item.started","item":{"id":"i1","type":"command_execution","command":"sleep 99","exit_code":null,"status":"in_progress"}}"#;
        let s = parse_stream(line.as_bytes());
        assert_eq!(s.commands, vec![("sleep 99".to_owned(), None)]);
    }

    #[test]
    fn completion_without_start_and_items_without_ids_are_kept() {
        let lines = [
            r#"{"type":"item.completed","item":{"type":"command_execution","command":"a","exit_code":2}}"#,
            r#"{"type":"item.completed","item":{"type":"command_execution","command":"b","exit_code":3}}"#,
            r#"{"type":"item.completed","item":{"id":"x","type":"command_execution","command":"c","exit_code":-1}}"#,
            r#"{"type":"item.completed","item":{"id":"y","type":"command_execution","command":"d","exit_code":99999999999}}"#,
        ];
        let s = parse_stream(lines.join("\n").as_bytes());
        let got: Vec<_> = s.commands.iter().map(|(c, e)| (c.as_str(), *e)).collect();
        assert_eq!(
            got,
            vec![("a", Some(2)), ("b", Some(3)), ("c", Some(-1)), ("d", None)]
        );
    }

    #[test]
    fn error_items_count_as_reconnects() {
        let lines = [
            r#"{"type":"item.completed","item":{"id":"e","type":"error","message":"Reconnecting... 2/5"}}"#,
            r#"{"type":"item.completed","item":{"id":"f","type":"error","message":"something else"}}"#,
            r#"{"type":"error","message":"Reconnecting... 3/5"}"#,
        ];
        assert_eq!(parse_stream(lines.join("\n").as_bytes()).reconnects, 2);
    }

    #[test]
    fn usage_mapping_and_unknowns() {
        let line = |usage: &str| format!(r#"{{"type":"turn.completed","usage":{usage}}}"#);
        let s = parse_stream(
            line(r#"{"input_tokens":100,"cached_input_tokens":30,"cache_write_input_tokens":20,"output_tokens":50,"reasoning_output_tokens":40}"#)
                .as_bytes(),
        );
        assert_eq!(
            s.usage,
            Some(Usage {
                input: 50,
                output: 50,
                cache_read: 30,
                cache_write: 20
            })
        );
        // Missing required fields: unknown, not zero.
        for usage in [
            r#"{"input_tokens":1}"#,
            r#"{"output_tokens":1}"#,
            "null",
            r#""x""#,
        ] {
            let s = parse_stream(line(usage).as_bytes());
            assert!(s.turn_completed);
            assert_eq!(s.usage, None, "{usage}");
        }
        // No usage key at all.
        assert_eq!(parse_stream(br#"{"type":"turn.completed"}"#).usage, None);
        // Cached larger than input (a buggy backend) saturates instead of wrapping.
        let s = parse_stream(
            line(r#"{"input_tokens":1,"cached_input_tokens":5,"output_tokens":0}"#).as_bytes(),
        );
        assert_eq!(s.usage.map(|u| u.input), Some(0));
    }

    #[test]
    fn last_turn_event_wins() {
        let ok = r#"{"type":"turn.completed","usage":{"input_tokens":1,"output_tokens":1}}"#;
        let failed = r#"{"type":"turn.failed","error":{}}"#;
        let s = parse_stream(format!("{ok}\n{failed}").as_bytes());
        assert!(!s.turn_completed);
        assert_eq!(s.turn_failed.as_deref(), Some("unknown error"));
        assert_eq!(s.usage, None);
        let s = parse_stream(format!("{failed}\n{ok}").as_bytes());
        assert!(s.turn_completed);
        assert_eq!(s.turn_failed, None);
        assert!(s.usage.is_some());
    }

    #[test]
    fn garbage_and_invalid_utf8_are_tolerated() {
        let mut input = b"\xff\xfe\n[]\nnope\n\n".to_vec();
        input.extend_from_slice(
            b"{\"type\":\"item.completed\",\"item\":{\"type\":\"agent_message\",\"text\":\"a\xffb\"}}\r\n{\"type\"",
        );
        let s = parse_stream(&input);
        assert_eq!(s.garbage_lines, 4);
        assert_eq!(s.final_message.as_deref(), Some("a\u{fffd}b"));
    }

    #[test]
    fn huge_input_is_parsed_line_by_line() {
        let text = "z".repeat(10_000);
        let line = format!(
            r#"{{"type":"item.completed","item":{{"type":"agent_message","text":"{text}"}}}}"#
        );
        let mut input = String::with_capacity(51_000_000);
        while input.len() < 50_000_000 {
            input.push_str(&line);
            input.push_str("\nnot json\n");
        }
        input.push_str(r#"{"type":"turn.completed","usage":{"input_tokens":1,"output_tokens":2}}"#);
        let s = parse_stream(input.as_bytes());
        assert!(s.turn_completed);
        assert!(s.garbage_lines > 4_000);
        assert_eq!(s.final_message.map(|m| m.len()), Some(10_000));
    }

    #[test]
    fn empty_input() {
        assert_eq!(parse_stream(b""), CodexSummary::default());
    }
}
