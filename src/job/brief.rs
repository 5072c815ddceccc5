//! Assembles the worker and verifier prompts from the embedded templates
//! (`templates/worker-prompt.md`, `templates/verifier-prompt.md`) with the strict renderer:
//! an unfilled placeholder is an error, never a silent gap.

use crate::engine::state::Stage;
use crate::paths::Paths;
use crate::prompt::{RenderError, render};

pub const WORKER_TEMPLATE: &str = include_str!("../../templates/worker-prompt.md");
pub const VERIFIER_TEMPLATE: &str = include_str!("../../templates/verifier-prompt.md");

fn bullets(items: &[String], empty: &str) -> String {
    if items.is_empty() {
        return empty.to_owned();
    }
    items
        .iter()
        .map(|i| format!("- {i}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The worker's prompt for one attempt.
///
/// # Errors
/// When the template has a placeholder this code does not fill (or fills one it lacks).
pub fn worker(
    paths: &Paths,
    stage: &Stage,
    attempt: u32,
    card_body: &str,
) -> Result<String, RenderError> {
    let memory = std::fs::read_to_string(paths.root.join("memory/INDEX.md"))
        .unwrap_or_else(|_| "(this repository has no memory/INDEX.md)".into());
    let findings = if stage.findings.is_empty() {
        "(none: this is the first attempt, or the last one left no findings)".to_owned()
    } else {
        bullets(&stage.findings, "")
    };
    let example = serde_json::json!({
        "version": crate::envelope::ENVELOPE_VERSION, "stage": stage.id.as_str(), "attempt": attempt,
        "status": "done", "summary": "what you did, in one or two sentences",
        "files_changed": ["src/example.rs"], "notes": "anything the verifier should know"
    });
    let example = serde_json::to_string_pretty(&example).unwrap_or_default();
    let attempt_s = attempt.to_string();
    render(
        WORKER_TEMPLATE,
        &[
            ("stage", stage.id.as_str()),
            ("attempt", &attempt_s),
            ("title", &stage.title),
            ("card", card_body),
            ("acceptance", &bullets(&stage.acceptance, "(none)")),
            (
                "protected",
                &bullets(&stage.protected, "(only the defaults)"),
            ),
            ("findings", &findings),
            ("memory", memory.trim()),
            ("envelope_example", &example),
        ],
    )
}

/// The verifier's prompt for one attempt.
///
/// # Errors
/// As [`worker`].
pub fn verifier(
    stage: &Stage,
    attempt: u32,
    card: &str,
    acceptance: &str,
    diff: &str,
) -> Result<String, RenderError> {
    let example = serde_json::json!({
        "version": crate::envelope::VERDICT_VERSION, "stage": stage.id.as_str(), "attempt": attempt,
        "verdict": "pass",
        "criteria": [{"id": "c1", "verdict": "pass", "evidence": "where in the diff this is met"}],
        "findings": ["what must change, if anything"]
    });
    let example = serde_json::to_string_pretty(&example).unwrap_or_default();
    let attempt_s = attempt.to_string();
    let diff = if diff.trim().is_empty() {
        "(the worker changed nothing)"
    } else {
        diff
    };
    render(
        VERIFIER_TEMPLATE,
        &[
            ("stage", stage.id.as_str()),
            ("attempt", &attempt_s),
            ("title", &stage.title),
            ("worker", &stage.worker),
            ("card", card),
            ("acceptance_results", acceptance),
            ("diff", diff),
            ("verdict_example", &example),
        ],
    )
}
