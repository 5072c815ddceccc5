//! The registry of document types: which Rust type each file nightshift reads or writes is, and
//! its schema's file under `schemas/` (committed; a test keeps the files in step with the
//! types). Adding a file format is one `impl Document` and one line in [`ALL`].
//!
//! Only this module knows every document type; [`crate::schema`] knows none, so the domain
//! modules that parse documents never import each other through it.

use crate::hostreg::docs::HostDocument;
use crate::schema::{Document, Remembered, compiles, schema_of};

impl Document for crate::config::RawConfig {
    const SCHEMA_FILE: &'static str = "config.schema.json";
}
impl Remembered for crate::config::RawConfig {
    const SCHEMA_TEXT: &'static str = include_str!("../schemas/config.schema.json");
}
impl Document for crate::card::FrontMatter {
    const SCHEMA_FILE: &'static str = "stage-card.schema.json";
}
impl Document for crate::engine::state::State {
    const SCHEMA_FILE: &'static str = "state.schema.json";
}
impl Document for crate::store::split::StageFile {
    const SCHEMA_FILE: &'static str = "stage-file.schema.json";
}
impl Document for crate::engine::budget::Budget {
    const SCHEMA_FILE: &'static str = "budget.schema.json";
}
impl Remembered for crate::engine::budget::Budget {
    const SCHEMA_TEXT: &'static str = include_str!("../schemas/budget.schema.json");
}
impl Document for crate::envelope::Envelope {
    const SCHEMA_FILE: &'static str = "envelope.schema.json";
}
impl Document for crate::envelope::Verdict {
    const SCHEMA_FILE: &'static str = "verdict.schema.json";
}
impl Document for crate::job::Registration {
    const SCHEMA_FILE: &'static str = "active-agent.schema.json";
}
impl Document for crate::engine::observe::Outcome {
    const SCHEMA_FILE: &'static str = "outcome.schema.json";
}
impl Document for crate::agent::script::Recipe {
    const SCHEMA_FILE: &'static str = "script-recipe.schema.json";
}
impl Document for crate::watchdog::HeartbeatDoc {
    const SCHEMA_FILE: &'static str = "heartbeat.schema.json";
}
impl Document for crate::notify::Sent {
    const SCHEMA_FILE: &'static str = "notify-sent.schema.json";
}
impl Document for crate::notify::Message {
    const SCHEMA_FILE: &'static str = "notify-message.schema.json";
}
impl Document for crate::awake::AwakeEntry {
    const SCHEMA_FILE: &'static str = "awake-record.schema.json";
}
impl Document for crate::hostreg::registry::Registry {
    const SCHEMA_FILE: &'static str = "host-repos.schema.json";
}
impl HostDocument for crate::hostreg::registry::Registry {
    const VERSION: u32 = crate::hostreg::registry::REGISTRY_VERSION;
    fn version(&self) -> u32 {
        self.version
    }
}
impl Document for crate::hostreg::passes::PassRecord {
    const SCHEMA_FILE: &'static str = "host-pass.schema.json";
}
impl HostDocument for crate::hostreg::passes::PassRecord {
    const VERSION: u32 = crate::hostreg::passes::PASS_VERSION;
    fn version(&self) -> u32 {
        self.version
    }
}
impl Document for crate::install::record::SchedulerRecord {
    const SCHEMA_FILE: &'static str = "scheduler.schema.json";
}
impl HostDocument for crate::install::record::SchedulerRecord {
    const VERSION: u32 = crate::install::record::SCHEDULER_VERSION;
    fn version(&self) -> u32 {
        self.version
    }
}

/// One registered document type: its schema file, its generated schema, and whether the
/// schema compiles.
pub struct Registered {
    pub file: &'static str,
    pub schema: fn() -> serde_json::Value,
    pub compiles: fn() -> bool,
}

const fn entry<T: Document>() -> Registered {
    Registered {
        file: T::SCHEMA_FILE,
        schema: schema_of::<T>,
        compiles: compiles::<T>,
    }
}

/// A document nightshift only prints (never reads back), such as `report --format json`.
const fn output<T: schemars::JsonSchema>(file: &'static str) -> Registered {
    Registered {
        file,
        schema: schema_of::<T>,
        compiles: output_compiles::<T>,
    }
}

fn output_compiles<T: schemars::JsonSchema>() -> bool {
    jsonschema::validator_for(&schema_of::<T>()).is_ok()
}

/// Every document type with a schema under `schemas/`.
pub const ALL: [Registered; 24] = [
    entry::<crate::config::RawConfig>(),
    entry::<crate::card::FrontMatter>(),
    entry::<crate::engine::state::State>(),
    entry::<crate::store::split::StageFile>(),
    entry::<crate::engine::budget::Budget>(),
    entry::<crate::envelope::Envelope>(),
    entry::<crate::envelope::Verdict>(),
    entry::<crate::job::Registration>(),
    entry::<crate::engine::observe::Outcome>(),
    entry::<crate::agent::script::Recipe>(),
    entry::<crate::watchdog::HeartbeatDoc>(),
    entry::<crate::notify::Sent>(),
    entry::<crate::notify::Message>(),
    entry::<crate::awake::AwakeEntry>(),
    entry::<crate::hostreg::registry::Registry>(),
    entry::<crate::hostreg::passes::PassRecord>(),
    entry::<crate::install::record::SchedulerRecord>(),
    output::<crate::report::Report>("report.schema.json"),
    output::<crate::view::StatusView>("status-output.schema.json"),
    output::<crate::cmd::tick::TickOutput>("tick-output.schema.json"),
    output::<crate::cmd::log::LogOutput>("log-output.schema.json"),
    output::<crate::cmd::agents::AgentsOutput>("agents-output.schema.json"),
    output::<crate::cmd::doctor::DoctorOutput>("doctor-output.schema.json"),
    output::<crate::gc::GcReport>("gc.schema.json"),
];

/// Renders every schema as pretty JSON, for `schemas/` (see the `schemas_in_step` test).
#[must_use]
pub fn render_all() -> Vec<(&'static str, String)> {
    ALL.iter()
        .map(|d| {
            let text = serde_json::to_string_pretty(&(d.schema)()).unwrap_or_default();
            (d.file, format!("{text}\n"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed `schemas/*.json` are exactly what the types generate. Run with
    /// `NIGHTSHIFT_BLESS=1` to rewrite them after changing a type.
    #[test]
    fn schemas_in_step() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
        let bless = std::env::var("NIGHTSHIFT_BLESS").is_ok();
        for (name, text) in render_all() {
            let path = dir.join(name);
            if bless {
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(&path, &text).unwrap();
            }
            let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(
                on_disk == text,
                "schemas/{name} is stale: rerun with NIGHTSHIFT_BLESS=1"
            );
        }
    }

    #[test]
    fn every_schema_compiles() {
        for d in &ALL {
            assert!((d.compiles)(), "{}", d.file);
        }
    }
}
