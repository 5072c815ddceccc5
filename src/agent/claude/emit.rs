//! The `*_line` emitters with which nightshift's built-in scripted agent prints Claude Code's
//! stream-json shape, field for field (tests compare them with the real CLI's fixtures).
//! Never writes anything itself: each returns one line for the caller to print.

use serde::Serialize;

use crate::agent::Usage;

/// Serializes one output line. The emitted types hold only strings, numbers, booleans and
/// sequences, for which `serde_json` cannot fail; should it ever, the line is empty, which
/// [`parse_stream`](super::parse_stream) skips.
fn to_line<T: Serialize>(line: &T) -> String {
    serde_json::to_string(line).unwrap_or_default()
}

#[derive(Serialize)]
struct InitLine<'a> {
    r#type: &'static str,
    subtype: &'static str,
    cwd: &'a str,
    session_id: &'a str,
    tools: [&'static str; 0],
    mcp_servers: [&'static str; 0],
    model: &'a str,
    #[serde(rename = "permissionMode")]
    permission_mode: &'static str,
    claude_code_version: &'a str,
}

/// The `system/init` line: the real CLI's field names, minimal content (no tools, no MCP
/// servers, `permissionMode` `default`).
///
/// ```
/// use nightshift::agent::claude::{init_line, parse_stream};
/// let s = parse_stream(init_line("s1", "script", "/repo", "0.1.0").as_bytes());
/// assert_eq!(s.model.as_deref(), Some("script"));
/// ```
#[must_use]
pub fn init_line(session_id: &str, model: &str, cwd: &str, version: &str) -> String {
    to_line(&InitLine {
        r#type: "system",
        subtype: "init",
        cwd,
        session_id,
        tools: [],
        mcp_servers: [],
        model,
        permission_mode: "default",
        claude_code_version: version,
    })
}

#[derive(Serialize)]
struct AssistantLine<'a> {
    r#type: &'static str,
    message: AssistantMessage<'a>,
    parent_tool_use_id: Option<&'static str>,
    session_id: &'a str,
}

#[derive(Serialize)]
struct AssistantMessage<'a> {
    r#type: &'static str,
    role: &'static str,
    content: [TextBlock<'a>; 1],
}

#[derive(Serialize)]
struct TextBlock<'a> {
    r#type: &'static str,
    text: &'a str,
}

/// A `system/permission_denied` event, as the CLI prints when it refuses a tool call.
#[must_use]
pub fn permission_denied_line(session_id: &str, tool: &str) -> String {
    to_line(&serde_json::json!({
        "type": "system",
        "subtype": "permission_denied",
        "tool_name": tool,
        "decision_reason_type": "mode",
        "message": format!("{tool} requires approval"),
        "session_id": session_id,
    }))
}

/// An `assistant` event carrying one text block (no usage: the real CLI's is partial anyway).
#[must_use]
pub fn assistant_text_line(session_id: &str, text: &str) -> String {
    to_line(&AssistantLine {
        r#type: "assistant",
        message: AssistantMessage {
            r#type: "message",
            role: "assistant",
            content: [TextBlock {
                r#type: "text",
                text,
            }],
        },
        parent_tool_use_id: None,
        session_id,
    })
}

#[derive(Serialize)]
struct ResultOut<'a> {
    r#type: &'static str,
    subtype: &'static str,
    is_error: bool,
    duration_ms: u64,
    num_turns: u32,
    result: &'a str,
    session_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    total_cost_usd: Option<f64>,
    usage: UsageOut,
    permission_denials: [&'static str; 0],
    terminal_reason: &'static str,
    api_error_status: Option<u16>,
}

#[derive(Serialize)]
struct UsageOut {
    input_tokens: u64,
    cache_creation_input_tokens: u64,
    cache_read_input_tokens: u64,
    output_tokens: u64,
}

/// The final `result` line. Success: subtype `success`, `terminal_reason` `completed`.
/// Error: subtype and `terminal_reason` `error_during_execution` (a generic failure, not an
/// API error; see [`api_error_result_line`] for that). `total_cost_usd` is left out when
/// `cost_usd` is `None`.
#[must_use]
pub fn result_line(
    session_id: &str,
    final_text: &str,
    is_error: bool,
    usage: Usage,
    cost_usd: Option<f64>,
    num_turns: u32,
    duration_ms: u64,
) -> String {
    let (subtype, reason) = if is_error {
        ("error_during_execution", "error_during_execution")
    } else {
        ("success", "completed")
    };
    let mut line = result_out(session_id, final_text, usage, num_turns, duration_ms);
    line.subtype = subtype;
    line.is_error = is_error;
    line.terminal_reason = reason;
    line.total_cost_usd = cost_usd;
    to_line(&line)
}

/// The `result` line of a run that ended on an API error, as the real CLI prints it:
/// `is_error` true, `terminal_reason` `api_error`, `api_error_status` set, and subtype
/// `success` (the real CLI's subtype lies; parsers must trust `is_error`).
#[must_use]
pub fn api_error_result_line(
    session_id: &str,
    final_text: &str,
    status: u16,
    usage: Usage,
    num_turns: u32,
    duration_ms: u64,
) -> String {
    let mut line = result_out(session_id, final_text, usage, num_turns, duration_ms);
    line.is_error = true;
    line.terminal_reason = "api_error";
    line.api_error_status = Some(status);
    to_line(&line)
}

fn result_out<'a>(
    session_id: &'a str,
    final_text: &'a str,
    usage: Usage,
    num_turns: u32,
    duration_ms: u64,
) -> ResultOut<'a> {
    ResultOut {
        r#type: "result",
        subtype: "success",
        is_error: false,
        duration_ms,
        num_turns,
        result: final_text,
        session_id,
        total_cost_usd: None,
        usage: UsageOut {
            input_tokens: usage.input,
            cache_creation_input_tokens: usage.cache_write,
            cache_read_input_tokens: usage.cache_read,
            output_tokens: usage.output,
        },
        permission_denials: [],
        terminal_reason: "completed",
        api_error_status: None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::agent::claude::{StreamSummary, parse_stream};

    const WORKER: &str =
        include_str!("../../../tests/fixtures/agent-cli-output/claude-worker.stdout.jsonl");
    const FAIL_500: &str =
        include_str!("../../../tests/fixtures/agent-cli-output/claude-fail-500.stdout.jsonl");

    #[test]
    fn emitted_lines_round_trip() {
        let usage = Usage {
            input: 10,
            output: 20,
            cache_read: 30,
            cache_write: 40,
        };
        let stream = [
            init_line("sess-1", "script", "/tmp/repo \"q\"", "0.1.0"),
            assistant_text_line("sess-1", "hello\n```json\n{\"a\":1}\n```"),
            result_line(
                "sess-1",
                "final \u{1f319}",
                false,
                usage,
                Some(0.5),
                2,
                1234,
            ),
        ]
        .join("\n");
        let s = parse_stream(stream.as_bytes());
        let expected = StreamSummary {
            saw_result: true,
            is_error: false,
            final_message: Some("final \u{1f319}".to_owned()),
            terminal_reason: Some("completed".to_owned()),
            api_error_status: None,
            usage: Some(usage),
            cost_usd: Some(0.5),
            session_id: Some("sess-1".to_owned()),
            model: Some("script".to_owned()),
            cli_version: Some("0.1.0".to_owned()),
            num_turns: Some(2),
            retries: 0,
            permission_denials: 0,
            garbage_lines: 0,
            api_error: None,
            api_error_type: None,
            limit_resets_at: None,
        };
        assert_eq!(s, expected);
    }

    #[test]
    fn emitted_api_error_result_looks_like_the_real_one() {
        let usage = Usage {
            input: 1500,
            output: 60,
            cache_read: 200,
            cache_write: 0,
        };
        let line = api_error_result_line("s", "API Error: 500", 500, usage, 2, 10);
        assert!(line.contains(r#""subtype":"success""#));
        let ours = parse_stream(line.as_bytes());
        let real = parse_stream(FAIL_500.as_bytes());
        assert!(ours.is_error);
        assert_eq!(ours.api_error_status, real.api_error_status);
        assert_eq!(ours.terminal_reason, real.terminal_reason);
        assert_eq!(ours.usage, real.usage);
    }

    #[test]
    fn emitted_error_result_round_trips() {
        let line = result_line("s", "boom", true, Usage::default(), None, 1, 1);
        let s = parse_stream(line.as_bytes());
        assert!(s.saw_result && s.is_error);
        assert_eq!(s.terminal_reason.as_deref(), Some("error_during_execution"));
        assert_eq!(s.cost_usd, None);
        assert_eq!(s.usage, Some(Usage::default()));
    }

    /// The emitted lines use the real CLI's field names: every key we emit appears on the
    /// same kind of line in the real fixtures.
    #[test]
    fn emitted_field_names_match_the_real_cli() {
        let real = parse_lines(WORKER);
        let ours = [
            init_line("s", "m", "/", "v"),
            assistant_text_line("s", "t"),
            result_line("s", "r", false, Usage::default(), Some(0.1), 1, 1),
            api_error_result_line("s", "r", 529, Usage::default(), 1, 1),
        ];
        for line in ours {
            let ours: Value = serde_json::from_str(&line).unwrap();
            let kind = ours["type"].as_str().unwrap();
            let theirs = real.iter().find(|l| l["type"] == kind).unwrap();
            assert_keys_subset(&ours, theirs, kind);
        }
    }

    fn parse_lines(text: &str) -> Vec<Value> {
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn assert_keys_subset(ours: &Value, theirs: &Value, path: &str) {
        let (Some(ours), Some(theirs)) = (ours.as_object(), theirs.as_object()) else {
            return;
        };
        for (key, value) in ours {
            let their = theirs.get(key);
            assert!(
                their.is_some(),
                "`{path}.{key}` is not a field of the real CLI"
            );
            if let Some(their) = their {
                let (ours_first, theirs_first) = (first_elem(value), first_elem(their));
                assert_keys_subset(ours_first, theirs_first, &format!("{path}.{key}"));
            }
        }
    }

    fn first_elem(value: &Value) -> &Value {
        value.as_array().and_then(|a| a.first()).unwrap_or(value)
    }
}
