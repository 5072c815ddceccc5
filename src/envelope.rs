//! Handoff envelopes (worker → nightshift) and verifier verdicts (verifier → nightshift): the
//! typed shapes, and extraction from an agent's final message, where they travel as the last
//! fenced JSON code block.
//!
//! Owns: finding that block, strict parsing (unknown fields, duplicate keys and unknown enum
//! values are errors), version checks and fencing (a handoff that names another stage or
//! attempt never counts). Never reads transcripts, files or state, and never guesses: anything
//! that is not exactly a current, well-formed handoff is an error, and the caller treats an
//! unparseable verdict as a fail, never a pass.
//!
//! Block rule (see [`last_json_block`]): the **last fenced JSON block** of the text wins, even
//! if prose follows it; a fence left open at the end of the text poisons the message (the real
//! handoff was probably cut off, and an earlier example block must not stand in for it).

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The envelope version this build reads and writes.
pub const ENVELOPE_VERSION: u32 = 1;
/// The verdict version this build reads and writes.
pub const VERDICT_VERSION: u32 = 1;

/// A worker's handoff: what it claims to have done in one attempt of one stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    pub version: u32,
    pub stage: String,
    pub attempt: u32,
    pub status: EnvelopeStatus,
    /// What was done, in one or a few sentences. Must not be empty.
    pub summary: String,
    #[serde(default)]
    pub files_changed: Vec<String>,
    #[serde(default)]
    pub notes: Option<String>,
}

/// How far the worker got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EnvelopeStatus {
    Done,
    Blocked,
    Partial,
}

/// A verifier's structured verdict on one attempt of one stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Verdict {
    pub version: u32,
    pub stage: String,
    pub attempt: u32,
    pub verdict: VerdictKind,
    #[serde(default)]
    pub criteria: Vec<Criterion>,
    #[serde(default)]
    pub findings: Vec<String>,
}

/// The verifier's decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum VerdictKind {
    Pass,
    Revise,
    Fail,
}

/// The verdict on one acceptance criterion, with the evidence for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Criterion {
    pub id: String,
    pub verdict: VerdictKind,
    pub evidence: String,
}

/// Why a final message did not yield a usable handoff.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandoffError {
    #[error("no ```json block at the end of the final message")]
    NoBlock,
    #[error("unparseable handoff block: {0}")]
    Unparseable(String),
    #[error(
        "handoff names stage `{found_stage}` attempt {found_attempt}, \
         expected stage `{expected_stage}` attempt {expected_attempt}"
    )]
    WrongAttempt {
        expected_stage: String,
        expected_attempt: u32,
        found_stage: String,
        found_attempt: u32,
    },
    #[error("unsupported handoff version {0}")]
    UnsupportedVersion(u32),
    #[error("invalid handoff: {0}")]
    Invalid(String),
}

/// The content (trimmed) of the last fenced JSON block in `text`.
///
/// A fence is a line that starts (after optional indentation) with three or more backticks.
/// A block counts when its info string's first word is `json` (any case), or when it has no
/// info string and its content starts with `{`. Blocks in other languages are skipped whole,
/// so a fence inside them does not confuse the scan. A block closes at a line holding only
/// backticks, at least as many as opened it.
///
/// Returns `None` when no block counts, or when the text ends inside an open fence (a
/// truncated handoff must not be replaced by an earlier block).
///
/// ```
/// use nightshift::envelope::last_json_block;
/// let text = "first\n```json\n{\"a\":1}\n```\nthen\n```json\n{\"b\":2}\n```\nbye";
/// assert_eq!(last_json_block(text), Some("{\"b\":2}"));
/// assert_eq!(last_json_block("```json\n{\"cut\":"), None);
/// ```
#[must_use]
pub fn last_json_block(text: &str) -> Option<&str> {
    let mut last = None;
    let mut open: Option<OpenFence> = None;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let start = offset;
        offset += line.len();
        match open.take() {
            None => open = opening_fence(line, offset),
            Some(fence) if is_closing_fence(line, fence.ticks) => {
                let content = text[fence.content_start..start].trim();
                if fence.json || (fence.bare && content.starts_with('{')) {
                    last = Some(content);
                }
            }
            Some(fence) => open = Some(fence),
        }
    }
    if open.is_some() { None } else { last }
}

/// A fence that has been opened and not yet closed.
#[derive(Debug, Clone, Copy)]
struct OpenFence {
    ticks: usize,
    json: bool,
    bare: bool,
    content_start: usize,
}

fn opening_fence(line: &str, content_start: usize) -> Option<OpenFence> {
    let body = line.trim_start();
    let ticks = body.bytes().take_while(|b| *b == b'`').count();
    if ticks < 3 {
        return None;
    }
    let info = body[ticks..].trim();
    let lang = info.split_whitespace().next().unwrap_or("");
    Some(OpenFence {
        ticks,
        json: lang.eq_ignore_ascii_case("json"),
        bare: info.is_empty(),
        content_start,
    })
}

fn is_closing_fence(line: &str, ticks: usize) -> bool {
    let body = line.trim();
    body.len() >= ticks && body.bytes().all(|b| b == b'`')
}

/// Parses and checks the worker's envelope from its final message.
///
/// Checks, in order: a block exists, it is a JSON object, its `version` is
/// [`ENVELOPE_VERSION`], it names `stage` and `attempt` (fencing), it matches [`Envelope`]
/// exactly, and its summary and file names are not empty.
///
/// # Errors
///
/// [`HandoffError::NoBlock`] without a usable block; [`HandoffError::UnsupportedVersion`] for
/// another version; [`HandoffError::WrongAttempt`] when it names another stage or attempt;
/// [`HandoffError::Unparseable`] for bad JSON, unknown or duplicate fields or bad values;
/// [`HandoffError::Invalid`] for an empty summary or an empty file name.
pub fn parse_envelope(text: &str, stage: &str, attempt: u32) -> Result<Envelope, HandoffError> {
    let envelope: Envelope = parse_block(text, stage, attempt, ENVELOPE_VERSION)?;
    if envelope.summary.trim().is_empty() {
        return Err(HandoffError::Invalid("summary is empty".to_owned()));
    }
    if envelope.files_changed.iter().any(|f| f.trim().is_empty()) {
        return Err(HandoffError::Invalid(
            "files_changed has an empty entry".to_owned(),
        ));
    }
    Ok(envelope)
}

/// Parses and checks a verifier's verdict from its final message.
///
/// Same checks as [`parse_envelope`] (with [`VERDICT_VERSION`]), plus: criterion ids are not
/// empty and unique, and an overall `pass` may not contain a criterion that is not `pass`
/// (a contradictory verdict is never read as a pass).
///
/// # Errors
///
/// As [`parse_envelope`]; [`HandoffError::Invalid`] for an empty or repeated criterion id or a
/// `pass` with a failing criterion.
pub fn parse_verdict(text: &str, stage: &str, attempt: u32) -> Result<Verdict, HandoffError> {
    let verdict: Verdict = parse_block(text, stage, attempt, VERDICT_VERSION)?;
    let mut seen = std::collections::BTreeSet::new();
    for criterion in &verdict.criteria {
        if criterion.id.trim().is_empty() {
            return Err(HandoffError::Invalid(
                "a criterion has an empty id".to_owned(),
            ));
        }
        if !seen.insert(criterion.id.as_str()) {
            return Err(HandoffError::Invalid(format!(
                "criterion `{}` appears twice",
                criterion.id
            )));
        }
        if verdict.verdict == VerdictKind::Pass && criterion.verdict != VerdictKind::Pass {
            return Err(HandoffError::Invalid(format!(
                "verdict is pass but criterion `{}` is not",
                criterion.id
            )));
        }
    }
    Ok(verdict)
}

/// Block → version check → fencing → strict typed parse. The loose [`serde_json::Value`]
/// pass only serves the version and fencing checks (so a stale or newer handoff is named as
/// such even when its shape differs); the typed parse reads the original text again, so
/// duplicate keys are rejected rather than silently resolved.
fn parse_block<T: DeserializeOwned>(
    text: &str,
    stage: &str,
    attempt: u32,
    version: u32,
) -> Result<T, HandoffError> {
    let block = last_json_block(text).ok_or(HandoffError::NoBlock)?;
    let loose: serde_json::Value =
        serde_json::from_str(block).map_err(|e| HandoffError::Unparseable(e.to_string()))?;
    let Some(object) = loose.as_object() else {
        return Err(HandoffError::Unparseable(
            "the block is not a JSON object".to_owned(),
        ));
    };
    let found_version = object.get("version").and_then(serde_json::Value::as_u64);
    if let Some(found) = found_version.and_then(|v| u32::try_from(v).ok())
        && found != version
    {
        return Err(HandoffError::UnsupportedVersion(found));
    }
    let found_stage = object.get("stage").and_then(serde_json::Value::as_str);
    let found_attempt = object.get("attempt").and_then(serde_json::Value::as_u64);
    if let (Some(found_stage), Some(found_attempt)) = (found_stage, found_attempt)
        && (found_stage != stage || found_attempt != u64::from(attempt))
    {
        return Err(HandoffError::WrongAttempt {
            expected_stage: stage.to_owned(),
            expected_attempt: attempt,
            found_stage: found_stage.to_owned(),
            found_attempt: u32::try_from(found_attempt).unwrap_or(u32::MAX),
        });
    }
    serde_json::from_str(block).map_err(|e| HandoffError::Unparseable(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAGE: &str = "auth-refactor";

    fn envelope_json(stage: &str, attempt: u32) -> String {
        format!(
            r#"{{"version": 1, "stage": "{stage}", "attempt": {attempt}, "status": "done",
"summary": "refactored auth", "files_changed": ["src/auth.rs"]}}"#
        )
    }

    fn message(block: &str) -> String {
        format!("All done.\n\n```json\n{block}\n```\n")
    }

    #[test]
    fn parses_a_good_envelope() {
        let env = parse_envelope(&message(&envelope_json(STAGE, 2)), STAGE, 2).unwrap();
        assert_eq!(env.version, ENVELOPE_VERSION);
        assert_eq!(env.status, EnvelopeStatus::Done);
        assert_eq!(env.files_changed, vec!["src/auth.rs".to_owned()]);
        assert_eq!(env.notes, None);
    }

    #[test]
    fn defaults_apply_to_optional_fields() {
        let block = r#"{"version":1,"stage":"s","attempt":1,"status":"partial","summary":"x"}"#;
        let env = parse_envelope(&message(block), "s", 1).unwrap();
        assert_eq!(env.status, EnvelopeStatus::Partial);
        assert!(env.files_changed.is_empty());
    }

    #[test]
    fn no_block_is_no_block() {
        let err = parse_envelope("I did it, trust me.", STAGE, 1).unwrap_err();
        assert_eq!(err, HandoffError::NoBlock);
        assert_eq!(
            err.to_string(),
            "no ```json block at the end of the final message"
        );
        assert_eq!(parse_envelope("", STAGE, 1), Err(HandoffError::NoBlock));
    }

    #[test]
    fn last_of_two_blocks_wins() {
        let text = format!(
            "{}{}",
            message(&envelope_json(STAGE, 1)),
            message(&envelope_json(STAGE, 2))
        );
        assert_eq!(parse_envelope(&text, STAGE, 2).unwrap().attempt, 2);
        assert!(matches!(
            parse_envelope(&text, STAGE, 1),
            Err(HandoffError::WrongAttempt { .. })
        ));
    }

    #[test]
    fn block_in_the_middle_then_prose_then_final_block() {
        let text = format!(
            "Example from the prompt:\n```json\n{}\n```\nSome prose about it.\n\n\
             Now mine:\n```json\n{}\n```\nThanks!",
            envelope_json("other", 9),
            envelope_json(STAGE, 3)
        );
        assert_eq!(parse_envelope(&text, STAGE, 3).unwrap().stage, STAGE);
    }

    #[test]
    fn last_block_wins_even_with_prose_after_it() {
        let text = format!(
            "{}\nLet me know if you need more.",
            message(&envelope_json(STAGE, 1))
        );
        assert!(parse_envelope(&text, STAGE, 1).is_ok());
    }

    #[test]
    fn truncated_block_is_no_block() {
        let text = format!("Done.\n```json\n{}", &envelope_json(STAGE, 1)[..40]);
        assert_eq!(parse_envelope(&text, STAGE, 1), Err(HandoffError::NoBlock));
    }

    #[test]
    fn truncated_final_block_does_not_fall_back_to_an_earlier_one() {
        let text = format!(
            "{}Real one:\n```json\n{{\"version\": 1, \"stage\"",
            message(&envelope_json(STAGE, 1))
        );
        assert_eq!(parse_envelope(&text, STAGE, 1), Err(HandoffError::NoBlock));
    }

    #[test]
    fn unknown_field_is_unparseable() {
        let block =
            r#"{"version":1,"stage":"s","attempt":1,"status":"done","summary":"x","extra":true}"#;
        let err = parse_envelope(&message(block), "s", 1).unwrap_err();
        assert!(
            matches!(&err, HandoffError::Unparseable(m) if m.contains("extra")),
            "{err}"
        );
    }

    #[test]
    fn duplicate_key_is_unparseable() {
        let block = r#"{"version":1,"stage":"s","attempt":1,"status":"done","status":"blocked","summary":"x"}"#;
        let err = parse_envelope(&message(block), "s", 1).unwrap_err();
        assert!(
            matches!(&err, HandoffError::Unparseable(m) if m.contains("duplicate")),
            "{err}"
        );
    }

    #[test]
    fn bad_json_missing_field_and_non_object_are_unparseable() {
        for block in [
            "{not json}",
            r#"{"version":1,"stage":"s","attempt":1,"summary":"x"}"#,
            r#"{"version":1,"stage":"s","attempt":1,"status":"finished","summary":"x"}"#,
            "[1, 2]",
        ] {
            let err = parse_envelope(&message(block), "s", 1).unwrap_err();
            assert!(
                matches!(err, HandoffError::Unparseable(_)),
                "{block}: {err}"
            );
        }
    }

    #[test]
    fn wrong_attempt_or_stage_is_fenced_off() {
        let err = parse_envelope(&message(&envelope_json(STAGE, 1)), STAGE, 2).unwrap_err();
        assert_eq!(
            err,
            HandoffError::WrongAttempt {
                expected_stage: STAGE.to_owned(),
                expected_attempt: 2,
                found_stage: STAGE.to_owned(),
                found_attempt: 1,
            }
        );
        assert_eq!(
            err.to_string(),
            "handoff names stage `auth-refactor` attempt 1, expected stage `auth-refactor` attempt 2"
        );
        let err = parse_envelope(&message(&envelope_json("other", 2)), STAGE, 2).unwrap_err();
        assert!(matches!(err, HandoffError::WrongAttempt { .. }));
    }

    #[test]
    fn stale_handoff_is_wrong_attempt_even_with_another_shape() {
        let block =
            r#"{"version":1,"stage":"s","attempt":1,"status":"done","summary":"x","old":1}"#;
        let err = parse_envelope(&message(block), "s", 2).unwrap_err();
        assert!(matches!(
            err,
            HandoffError::WrongAttempt {
                found_attempt: 1,
                ..
            }
        ));
    }

    #[test]
    fn other_version_is_unsupported() {
        let block =
            r#"{"version":2,"stage":"s","attempt":1,"status":"done","summary":"x","new":1}"#;
        assert_eq!(
            parse_envelope(&message(block), "s", 1),
            Err(HandoffError::UnsupportedVersion(2))
        );
    }

    #[test]
    fn empty_summary_or_file_is_invalid() {
        let block = r#"{"version":1,"stage":"s","attempt":1,"status":"done","summary":"  "}"#;
        assert!(matches!(
            parse_envelope(&message(block), "s", 1),
            Err(HandoffError::Invalid(_))
        ));
        let block = r#"{"version":1,"stage":"s","attempt":1,"status":"done","summary":"x","files_changed":[""]}"#;
        assert!(matches!(
            parse_envelope(&message(block), "s", 1),
            Err(HandoffError::Invalid(_))
        ));
    }

    #[test]
    fn huge_text_is_handled() {
        let prose = "lorem ipsum ``` not a fence {{ }}\n".repeat(200_000);
        let text = format!("{prose}{}", message(&envelope_json(STAGE, 1)));
        assert!(text.len() > 5_000_000);
        assert!(parse_envelope(&text, STAGE, 1).is_ok());
        assert_eq!(parse_envelope(&prose, STAGE, 1), Err(HandoffError::NoBlock));
    }

    #[test]
    fn huge_block_is_unparseable_not_a_crash() {
        let block = format!("{{\"version\":1,\"summary\":\"{}\"", "x".repeat(3_000_000));
        assert!(matches!(
            parse_envelope(&message(&block), "s", 1),
            Err(HandoffError::Unparseable(_))
        ));
    }

    #[test]
    fn block_rules() {
        // Bare fence counts only when it holds an object.
        assert_eq!(last_json_block("```\n{\"a\":1}\n```"), Some("{\"a\":1}"));
        assert_eq!(last_json_block("```\nplain\n```"), None);
        // Other languages are skipped whole, including a json fence inside them.
        let text = "```json\n{\"a\":1}\n```\n````markdown\n```json\n{\"b\":2}\n```\n````\n";
        assert_eq!(last_json_block(text), Some("{\"a\":1}"));
        // Info string attributes, case, indentation and CRLF.
        assert_eq!(
            last_json_block("  ```JSON title=x\r\n{\"a\":1}\r\n  ```\r\n"),
            Some("{\"a\":1}")
        );
        // Inline backticks are not fences.
        assert_eq!(last_json_block("see ```json {\"a\":1}``` here"), None);
        // Multi-byte text around the block.
        assert_eq!(
            last_json_block("été — ok\n```json\n{\"é\":\"—\"}\n```\n🌙"),
            Some("{\"é\":\"—\"}")
        );
    }

    #[test]
    fn real_cli_final_message_block_is_found() {
        // The fixtures' fake model wraps its block in {"handoff": {...}} with no stage or
        // attempt: the block is found, but it is not an envelope of this schema.
        let text = "Done: created out.txt and notes.md.\n\n```json\n{\"handoff\": {\"version\": 1, \
                    \"status\": \"done\", \"summary\": \"created out.txt and notes.md\", \
                    \"files_changed\": [\"out.txt\", \"notes.md\"]}}\n```";
        assert!(last_json_block(text).is_some_and(|b| b.starts_with("{\"handoff\"")));
        assert!(matches!(
            parse_envelope(text, "s", 1),
            Err(HandoffError::Unparseable(_))
        ));
    }

    fn verdict_message(verdict: &str, criteria: &str) -> String {
        message(&format!(
            r#"{{"version":1,"stage":"s","attempt":1,"verdict":"{verdict}","criteria":[{criteria}],"findings":["f"]}}"#
        ))
    }

    #[test]
    fn parses_verdicts() {
        let crit = r#"{"id":"c1","verdict":"pass","evidence":"tests green"}"#;
        let v = parse_verdict(&verdict_message("pass", crit), "s", 1).unwrap();
        assert_eq!(v.verdict, VerdictKind::Pass);
        assert_eq!(v.criteria[0].id, "c1");
        let crit = r#"{"id":"c1","verdict":"fail","evidence":"red"}"#;
        let v = parse_verdict(&verdict_message("revise", crit), "s", 1).unwrap();
        assert_eq!(v.verdict, VerdictKind::Revise);
        let minimal = message(r#"{"version":1,"stage":"s","attempt":1,"verdict":"fail"}"#);
        assert!(parse_verdict(&minimal, "s", 1).unwrap().criteria.is_empty());
    }

    #[test]
    fn verdict_maybe_is_unparseable() {
        let err = parse_verdict(&verdict_message("maybe", ""), "s", 1).unwrap_err();
        assert!(matches!(err, HandoffError::Unparseable(_)), "{err}");
        let crit = r#"{"id":"c1","verdict":"probably","evidence":""}"#;
        let err = parse_verdict(&verdict_message("pass", crit), "s", 1).unwrap_err();
        assert!(matches!(err, HandoffError::Unparseable(_)), "{err}");
    }

    #[test]
    fn contradictory_or_sloppy_verdicts_are_invalid() {
        let fail = r#"{"id":"c1","verdict":"fail","evidence":"red"}"#;
        let pass = r#"{"id":"c1","verdict":"pass","evidence":"ok"}"#;
        let blank = r#"{"id":" ","verdict":"pass","evidence":"ok"}"#;
        for (kind, criteria) in [
            ("pass", fail.to_owned()),
            ("fail", format!("{pass},{pass}")),
            ("pass", blank.to_owned()),
        ] {
            let err = parse_verdict(&verdict_message(kind, &criteria), "s", 1).unwrap_err();
            assert!(matches!(err, HandoffError::Invalid(_)), "{criteria}: {err}");
        }
    }

    #[test]
    fn verdict_is_fenced_and_versioned() {
        let text = verdict_message("pass", "");
        assert!(matches!(
            parse_verdict(&text, "s", 2),
            Err(HandoffError::WrongAttempt { .. })
        ));
        let text = message(r#"{"version":7,"stage":"s","attempt":1,"verdict":"pass"}"#);
        assert_eq!(
            parse_verdict(&text, "s", 1),
            Err(HandoffError::UnsupportedVersion(7))
        );
    }

    #[test]
    fn envelope_is_not_a_verdict() {
        let err = parse_verdict(&message(&envelope_json("s", 1)), "s", 1).unwrap_err();
        assert!(matches!(err, HandoffError::Unparseable(_)));
    }

    #[test]
    fn round_trips_through_serde() {
        let env = Envelope {
            version: ENVELOPE_VERSION,
            stage: "s".to_owned(),
            attempt: 4,
            status: EnvelopeStatus::Blocked,
            summary: "needs a decision".to_owned(),
            files_changed: vec![],
            notes: Some("which db?".to_owned()),
        };
        let json = serde_json::to_string(&env).unwrap();
        assert_eq!(parse_envelope(&message(&json), "s", 4).unwrap(), env);
    }
}
