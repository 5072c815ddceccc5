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

/// Most bytes of diff put in a verifier prompt. Prompts travel as one argument, and Linux
/// refuses any single argument over 128 KiB (`MAX_ARG_STRLEN`): keep well below it.
pub const PROMPT_DIFF_BYTES: usize = 64 * 1024;

/// The diff as the verifier sees it: cut at [`PROMPT_DIFF_BYTES`] with a note saying how to
/// read the rest.
fn bounded_diff(diff: &str) -> String {
    if diff.trim().is_empty() {
        return "(the worker changed nothing)".into();
    }
    if diff.len() <= PROMPT_DIFF_BYTES {
        return diff.to_owned();
    }
    let mut cut = PROMPT_DIFF_BYTES;
    while !diff.is_char_boundary(cut) {
        cut -= 1;
    }
    format!(
        "{}\n... (diff cut at {} KiB of {} KiB: run `git diff HEAD` and `git status` in your working directory for the rest)",
        &diff[..cut],
        PROMPT_DIFF_BYTES / 1024,
        diff.len() / 1024
    )
}

/// A document's JSON Schema, compact, for a prompt.
fn schema_text<T: schemars::JsonSchema>() -> String {
    serde_json::to_string(&crate::schema::schema_of::<T>()).unwrap_or_default()
}

/// The template for a role: the repo's override (`prompts:` in nightshift.yaml), else the
/// built-in one.
///
/// # Errors
/// When the override file cannot be read.
pub fn template(
    paths: &Paths,
    over: Option<&str>,
    builtin: &'static str,
) -> Result<String, super::JobError> {
    match over {
        Some(rel) => std::fs::read_to_string(paths.root.join(rel)).map_err(|source| {
            super::JobError::Template {
                path: rel.to_owned(),
                source,
            }
        }),
        None => Ok(builtin.to_owned()),
    }
}

/// The worker's prompt for one attempt.
///
/// # Errors
/// When the template has a placeholder this code does not fill (or fills one it lacks).
pub fn worker(
    template: &str,
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
    let schema = schema_text::<crate::envelope::Envelope>();
    render(
        template,
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
            ("envelope_schema", &schema),
        ],
    )
}

/// The verifier's prompt for one attempt. `card` is the card's body (objective, deliverables,
/// criteria), not its front matter: a script agent's recipe is the worker's business.
///
/// # Errors
/// As [`worker`].
pub fn verifier(
    template: &str,
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
    let diff = bounded_diff(diff);
    let schema = schema_text::<crate::envelope::Verdict>();
    let protected = bullets(&stage.protected, "(only the defaults)");
    let mut vars = vec![
        ("stage", stage.id.as_str()),
        ("attempt", &attempt_s),
        ("title", &stage.title),
        ("worker", &stage.worker),
        ("card", card),
        ("acceptance_results", acceptance),
        ("diff", &diff),
        ("verdict_example", &example),
        ("verdict_schema", &schema),
    ];
    // `{{protected}}` came after `prompts.verifier:` overrides were written: an override that
    // does not use it still renders (every other variable stays strict).
    if uses(template, "protected") {
        vars.push(("protected", &protected));
    }
    render(template, &vars)
}

/// Whether `template` has the placeholder `name` (`{{name}}` or `{{ name }}`).
fn uses(template: &str, name: &str) -> bool {
    template.contains(&format!("{{{{{name}}}}}")) || template.contains(&format!("{{{{ {name} }}}}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_huge_diff_is_cut_below_the_argument_limit() {
        let diff = "+é\n".repeat(100_000);
        let out = bounded_diff(&diff);
        assert!(out.len() < 128 * 1024, "{}", out.len());
        assert!(out.contains("git diff HEAD"));
        assert_eq!(bounded_diff("  \n"), "(the worker changed nothing)");
        assert_eq!(bounded_diff("+a\n"), "+a\n");
    }
}
