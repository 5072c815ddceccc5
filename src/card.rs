//! Stage cards: markdown with YAML front matter. The front matter says who works, who checks,
//! what must pass and what must not be touched; the body (objective, deliverables, criteria) is
//! what agents read. A card is hashed when it is added: the stored copy, not the file the user
//! may still be editing, is what every attempt sees.

use std::path::Path;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::agent::script::Recipe;
use crate::config::RawTimeouts;
use crate::error::{NsError, NsResult};
use crate::ids::StageId;
use crate::schema;

/// The YAML front matter of a stage card (`nightshift template card` prints an example documenting every field).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FrontMatter {
    pub id: StageId,
    pub title: String,
    #[serde(default)]
    pub worker: Option<String>,
    #[serde(default)]
    pub verifier: Option<String>,
    /// A worker to switch to when the worker's family hits its usage limit (instead of
    /// pausing); it must be of another family than the verifier.
    #[serde(default)]
    pub fallback: Option<String>,
    #[serde(default)]
    pub allow_same_family: bool,
    #[serde(default)]
    pub acceptance: Vec<String>,
    #[serde(default)]
    pub depends_on: Vec<StageId>,
    #[serde(default)]
    pub protected: Vec<String>,
    #[serde(default)]
    pub max_attempts: Option<u32>,
    #[serde(default)]
    pub timeouts: Option<RawTimeouts>,
    #[serde(default)]
    pub budget: Option<CardBudget>,
    /// Recipes for the built-in `script` agent (demo and tests).
    #[serde(default)]
    pub script: Option<Recipe>,
    /// This card's own verifier panel (instead of one verifier).
    #[serde(default)]
    pub panel: Option<crate::config::RawPanel>,
    /// `panel`: judged by `defaults.panel` of nightshift.yaml.
    #[serde(default)]
    pub verify: Option<VerifyMode>,
}

/// `verify:` of a card.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum VerifyMode {
    /// The defaults' panel (`defaults.panel` in nightshift.yaml).
    Panel,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CardBudget {
    /// Agent wall time this stage may use across all its attempts, e.g. `2h`.
    #[serde(default)]
    pub max_wall_time: Option<String>,
    /// Tokens this stage may use across all its attempts.
    #[serde(default)]
    pub max_tokens: Option<u64>,
    /// USD this stage may use across all its attempts.
    #[serde(default)]
    pub max_usd: Option<f64>,
}

/// A parsed card with its exact text and hash.
#[derive(Debug, Clone, PartialEq)]
pub struct Card {
    pub front: FrontMatter,
    pub body: String,
    pub text: String,
    pub hash: String,
}

/// `sha256:<hex>` of some bytes.
#[must_use]
pub fn sha256(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut out = String::with_capacity(71);
    out.push_str("sha256:");
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

impl Card {
    /// Parses a card's text. `label` names it in errors.
    ///
    /// # Errors
    /// When the front matter is missing, unterminated, not valid YAML, has unknown keys
    /// (naming the line, counted within the front matter), or the body is empty.
    pub fn parse(text: &str, label: &str) -> NsResult<Self> {
        let hint = "`nightshift template card` prints an example card documenting every field";
        let rest = text
            .strip_prefix("---\n")
            .or_else(|| text.strip_prefix("---\r\n"))
            .ok_or_else(|| {
                NsError::failure(format!(
                    "{label}: a card starts with a `---` line (YAML front matter)"
                ))
                .hint(hint)
            })?;
        let end = find_closing_fence(rest).ok_or_else(|| {
            NsError::failure(format!(
                "{label}: the front matter has no closing `---` line"
            ))
            .hint(hint)
        })?;
        let yaml = &rest[..end];
        let body = rest[end..]
            .split_once('\n')
            .map_or("", |(_, b)| b)
            .trim()
            .to_owned();
        let front: FrontMatter =
            schema::parse_yaml(yaml, &format!("{label} (front matter from line 2)"))
                .map_err(|e| e.hint(hint))?;
        if front.title.trim().is_empty() {
            return Err(NsError::failure(format!("{label}: `title` is empty")).hint(hint));
        }
        for (i, pattern) in front.protected.iter().enumerate() {
            crate::glob::check(pattern).map_err(|why| {
                NsError::failure(format!(
                    "{label}: `protected[{i}]`: `{pattern}` is not a valid glob: {why}"
                ))
                .hint("globs use `*`, `**`, `?`, `{a,b}`, `[...]` and `\\` escapes")
            })?;
        }
        if body.is_empty() {
            return Err(NsError::failure(format!(
                "{label}: the card has no body (the objective, deliverables and criteria agents read)"
            ))
            .hint(hint));
        }
        Ok(Self {
            front,
            body,
            text: text.to_owned(),
            hash: sha256(text.as_bytes()),
        })
    }

    /// Reads and parses a card file.
    ///
    /// # Errors
    /// When the file cannot be read or [`Card::parse`] fails.
    pub fn load(path: &Path, label: &str) -> NsResult<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            NsError::failure(format!("cannot read card {label}")).cause(e.to_string())
        })?;
        Self::parse(&text, label)
    }
}

/// A batch's card copies in one file (`state/cards/batch-<seq>.json`): a JSON object from each
/// stage id to its card's text, as added. One file instead of one per card: creating a
/// thousand files and flushing them is most of what a thousand-card `add-stage` costs.
#[must_use]
pub fn pack(cards: &[(&StageId, &str)]) -> Vec<u8> {
    let map: std::collections::BTreeMap<&str, &str> = cards
        .iter()
        .map(|(id, text)| (id.as_str(), *text))
        .collect();
    let mut bytes = serde_json::to_vec_pretty(&map).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}

/// The name of the pack of the batch that makes ledger seq `seq`.
#[must_use]
pub fn pack_name(seq: u64) -> String {
    format!("batch-{seq}.json")
}

/// Reads the card copy of stage `id` (in `pack` when given, else `state/cards/<id>.md`) and
/// parses it.
///
/// # Errors
/// When the file cannot be read, the pack does not hold the card, or [`Card::parse`] fails.
pub fn load_copy(paths: &crate::paths::Paths, id: &StageId, pack: Option<&str>) -> NsResult<Card> {
    let Some(pack) = pack else {
        return Card::load(&paths.card_copy(id), &format!("state/cards/{id}.md"));
    };
    let label = format!("state/cards/{pack}");
    let bytes = std::fs::read(paths.state_dir().join("cards").join(pack))
        .map_err(|e| NsError::failure(format!("cannot read card {label}")).cause(e.to_string()))?;
    let mut map: std::collections::BTreeMap<String, String> = serde_json::from_slice(&bytes)
        .map_err(|e| NsError::failure(format!("{label} is not valid")).cause(e.to_string()))?;
    let text = map
        .remove(id.as_str())
        .ok_or_else(|| NsError::failure(format!("{label} holds no card `{id}`")))?;
    Card::parse(&text, &format!("{label} (card {id})"))
}

fn find_closing_fence(rest: &str) -> Option<usize> {
    let mut offset = 0;
    for line in rest.split_inclusive('\n') {
        if line.trim_end() == "---" {
            return Some(offset);
        }
        offset += line.len();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const CARD: &str = "---\nid: s1\ntitle: First\nacceptance:\n  - test -f out.txt\n---\n# Objective\nWrite out.txt.\n";

    #[test]
    fn parses_a_card() {
        let c = Card::parse(CARD, "s1.md").unwrap();
        assert_eq!(c.front.id.as_str(), "s1");
        assert_eq!(c.front.acceptance, vec!["test -f out.txt"]);
        assert!(c.body.starts_with("# Objective"));
        assert!(c.hash.starts_with("sha256:"));
    }

    #[test]
    fn rejects_unknown_keys_with_line() {
        let text = "---\nid: s1\ntitle: t\nacceptence: []\n---\nbody\n";
        let e = Card::parse(text, "s1.md").unwrap_err().to_string();
        assert!(e.contains("acceptence"), "{e}");
        assert!(e.contains('3'), "line missing: {e}");
    }

    #[test]
    fn rejects_bad_id_and_missing_fence() {
        assert!(Card::parse("---\nid: ../x\ntitle: t\n---\nb\n", "x.md").is_err());
        assert!(Card::parse("id: s1\n", "x.md").is_err());
        assert!(Card::parse("---\nid: s1\ntitle: t\n", "x.md").is_err());
        assert!(Card::parse("---\nid: s1\ntitle: t\n---\n\n", "x.md").is_err());
    }
}
