//! Validated identifiers: stage ids, attempt numbers and job keys. Every id that ends up in a
//! path passes through here first (no `/`, no `..`, nothing a shell or git would mangle).

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A stage id: `[a-z0-9][a-z0-9._-]{0,63}`, never `..`-like.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct StageId(String);

/// The pattern every stage id matches (also in the JSON Schemas).
pub const STAGE_ID_PATTERN: &str = r"^[a-z0-9][a-z0-9._-]{0,63}$";

impl JsonSchema for StageId {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "StageId".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "string", "pattern": STAGE_ID_PATTERN })
    }
}

/// Why a string is not a valid stage id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not a valid stage id (want 1-64 of a-z 0-9 . _ -, starting with a letter or digit)"
)]
pub struct BadStageId(pub String);

impl StageId {
    /// Parses and validates a stage id.
    ///
    /// # Errors
    /// [`BadStageId`] when the text is empty, too long, starts with punctuation, contains a
    /// character outside `a-z 0-9 . _ -`, or contains `..`.
    pub fn new(s: &str) -> Result<Self, BadStageId> {
        let bytes = s.as_bytes();
        let ok_first = bytes
            .first()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        let ok_rest = bytes.iter().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        });
        if ok_first && ok_rest && bytes.len() <= 64 && !s.contains("..") {
            Ok(Self(s.to_owned()))
        } else {
            Err(BadStageId(s.to_owned()))
        }
    }

    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for StageId {
    type Error = BadStageId;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::new(&s)
    }
}

impl From<StageId> for String {
    fn from(id: StageId) -> Self {
        id.0
    }
}

impl fmt::Display for StageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The three kinds of detached job an attempt is made of.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Worker,
    Acceptance,
    Verifier,
}

impl Role {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Worker => "worker",
            Self::Acceptance => "acceptance",
            Self::Verifier => "verifier",
        }
    }

    /// Parses `worker`, `acceptance` or `verifier`.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "worker" => Some(Self::Worker),
            "acceptance" => Some(Self::Acceptance),
            "verifier" => Some(Self::Verifier),
            _ => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One detached job: a stage, an attempt number (1-based), a role and, for a verifier panel,
/// the member and its run. Its file stem (`<stage>@a<n>-<role>`, a member's
/// `<stage>@a<n>-verifier+<member>+r<run>`) names the registry entry and is unambiguous
/// because neither `@` nor `+` appears in a stage id or an agent name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct JobKey {
    pub stage: StageId,
    pub attempt: u32,
    pub role: Role,
    /// A panel member's verifier job; `None` for every other job.
    pub member: Option<Member>,
}

/// One run of one panel member: the agent's name and its run (1-based) within the attempt.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(deny_unknown_fields)]
pub struct Member {
    pub name: String,
    pub run: u32,
}

impl JobKey {
    /// The key of a stage's job that is not a panel member's.
    #[must_use]
    pub fn new(stage: StageId, attempt: u32, role: Role) -> Self {
        Self {
            stage,
            attempt,
            role,
            member: None,
        }
    }

    #[must_use]
    pub fn stem(&self) -> String {
        match &self.member {
            None => format!("{}@a{}-{}", self.stage, self.attempt, self.role),
            Some(m) => format!(
                "{}@a{}-{}+{}+r{}",
                self.stage, self.attempt, self.role, m.name, m.run
            ),
        }
    }

    /// The inverse of [`JobKey::stem`].
    #[must_use]
    pub fn from_stem(stem: &str) -> Option<Self> {
        let (stage, rest) = stem.split_once('@')?;
        let rest = rest.strip_prefix('a')?;
        let (n, rest) = rest.split_once('-')?;
        let (role, member) = match rest.split_once('+') {
            None => (rest, None),
            Some((role, m)) => {
                let (name, run) = m.rsplit_once('+')?;
                StageId::new(name).ok()?;
                let run = run.strip_prefix('r')?.parse().ok()?;
                (
                    role,
                    Some(Member {
                        name: name.to_owned(),
                        run,
                    }),
                )
            }
        };
        Some(Self {
            stage: StageId::new(stage).ok()?,
            attempt: n.parse().ok()?,
            role: Role::parse(role)?,
            member,
        })
    }

    /// The job's own folder under `state/handoffs/<stage>/a<n>/`: the attempt's folder, or a
    /// member's `panel/<member>/r<run>/`, relative to the attempt's.
    #[must_use]
    pub fn member_dir(&self) -> Option<String> {
        self.member
            .as_ref()
            .map(|m| format!("panel/{}/r{}", m.name, m.run))
    }
}

impl fmt::Display for JobKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} a{} {}", self.stage, self.attempt, self.role)?;
        if let Some(m) = &self.member {
            write!(f, " {} r{}", m.name, m.run)?;
        }
        Ok(())
    }
}

/// The directory name of an attempt under `state/handoffs/<stage>/`.
#[must_use]
pub fn attempt_dir(attempt: u32) -> String {
    format!("a{attempt}")
}

/// The branch that holds a stage's work.
#[must_use]
pub fn stage_branch(stage: &StageId) -> String {
    format!("nightshift/stage/{stage}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_ids() {
        for ok in ["a", "s1", "auth-refactor", "v1.2_x", "0"] {
            assert!(StageId::new(ok).is_ok(), "{ok}");
        }
        for bad in ["", "A", "-x", ".x", "a/b", "a..b", "a b", &"x".repeat(65)] {
            assert!(StageId::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn job_stem_round_trip() {
        let k = JobKey {
            stage: StageId::new("a-b.c").unwrap(),
            attempt: 12,
            role: Role::Verifier,
            member: None,
        };
        assert_eq!(k.stem(), "a-b.c@a12-verifier");
        assert_eq!(JobKey::from_stem(&k.stem()), Some(k.clone()));
        assert_eq!(JobKey::from_stem("x@a1-nobody"), None);
        let m = JobKey {
            member: Some(Member {
                name: "codex.a-1".into(),
                run: 2,
            }),
            ..k
        };
        assert_eq!(m.stem(), "a-b.c@a12-verifier+codex.a-1+r2");
        assert_eq!(JobKey::from_stem(&m.stem()), Some(m));
        assert_eq!(JobKey::from_stem("x@a1-verifier+y"), None);
    }
}
