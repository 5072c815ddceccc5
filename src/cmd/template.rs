//! `nightshift template`: prints the templates built into this binary (an example stage card,
//! the documented `nightshift.yaml`, the worker's and the verifier's prompts), so an installed
//! binary needs no copy of the repository's `templates/` to write a card or override a prompt.

use std::path::Path;

use crate::error::{EXIT_USAGE, NsError, NsResult};

/// An example stage card documenting every field.
pub const CARD_TEMPLATE: &str = include_str!("../../templates/stage-card.md");

/// Every template: name, what it is, and its text.
const TEMPLATES: [(&str, &str); 4] = [
    ("card", "an example stage card documenting every field"),
    (
        "config",
        "the nightshift.yaml `init` writes, documenting every key",
    ),
    (
        "worker-prompt",
        "the worker's prompt (override with `prompts.worker:`)",
    ),
    (
        "verifier-prompt",
        "the verifier's prompt (override with `prompts.verifier:`)",
    ),
];

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Which template: `card`, `config`, `worker-prompt` or `verifier-prompt`; none lists
    /// them.
    pub name: Option<String>,
}

/// # Errors
/// When `name` is not a template.
pub fn run(_repo: &Path, args: &Args) -> NsResult<i32> {
    let Some(name) = &args.name else {
        println!("templates built into nightshift (print one with `nightshift template NAME`):");
        for (n, what) in TEMPLATES {
            println!("  {n:<16} {what}");
        }
        return Ok(0);
    };
    let text = match name.as_str() {
        "card" => CARD_TEMPLATE.to_owned(),
        "config" => crate::prompt::render(super::init::CONFIG_TEMPLATE, &[("base", "main")])
            .map_err(|e| NsError::bug(e.to_string()))?,
        "worker-prompt" => crate::job::brief::WORKER_TEMPLATE.to_owned(),
        "verifier-prompt" => crate::job::brief::VERIFIER_TEMPLATE.to_owned(),
        other => {
            let names: Vec<&str> = TEMPLATES.iter().map(|(n, _)| *n).collect();
            return Err(NsError::new(EXIT_USAGE, format!("no template `{other}`"))
                .hint(format!("one of: {}", names.join(", "))));
        }
    };
    print!("{text}");
    Ok(0)
}
