//! Being told: `notify: { command: PROGRAM_OR_ARGV_LIST, events: [...] }` in `nightshift.yaml`.
//! On the events the user picks (`escalated`, `halted`, `auth`, `paused`, `drained`,
//! `scheduler_stopped`) nightshift starts the command detached (through `nightshift __notify`,
//! which feeds it the event as JSON on stdin and kills it at its timeout), with a one-line
//! summary as its last argument. Bursts are coalesced: at most one call per minute per event
//! kind; what a burst held back is sent as one call once the minute has passed
//! (`state/notify.json` remembers the last call and what is held). Never blocks a tick, never
//! fails one: a notification that cannot be sent is logged to `state/logs/notify.log`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use jiff::Timestamp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::engine::state::{Escalation, State, Status};
use crate::paths::Paths;

pub const NOTIFY_VERSION: u32 = 1;
/// Seconds between two calls for the same event kind.
pub const COALESCE_SECS: i64 = 60;
/// Default time a notify command may run.
pub const DEFAULT_TIMEOUT_SECS: u64 = 30;

/// The events a user can be told about.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum NotifyEvent {
    /// A stage escalated (it needs a person).
    Escalated,
    /// The repo halted: a cap fired.
    Halted,
    /// An agent's credentials failed.
    Auth,
    /// A model family hit its usage limit.
    Paused,
    /// The queue emptied: every stage is done, escalated or cancelled.
    Drained,
    /// The scheduler has not ticked for three intervals.
    SchedulerStopped,
}

impl NotifyEvent {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Escalated => "escalated",
            Self::Halted => "halted",
            Self::Auth => "auth",
            Self::Paused => "paused",
            Self::Drained => "drained",
            Self::SchedulerStopped => "scheduler_stopped",
        }
    }
}

/// A program (a string) or a whole argv (a list): never run through a shell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Argv(pub Vec<String>);

impl<'de> Deserialize<'de> for Argv {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Argv;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a program or a list of arguments")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Argv, E> {
                Ok(Argv(vec![v.to_owned()]))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Argv, A::Error> {
                let mut out = Vec::new();
                while let Some(s) = a.next_element::<String>()? {
                    out.push(s);
                }
                Ok(Argv(out))
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for Argv {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Argv".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "oneOf": [
                { "type": "string", "minLength": 1 },
                { "type": "array", "items": { "type": "string" }, "minItems": 1 }
            ]
        })
    }
}

/// `notify:` as written in `nightshift.yaml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawNotify {
    /// The program, or its argv; the one-line summary is appended as the last argument.
    pub command: Argv,
    /// The events to be told about.
    pub events: Vec<NotifyEvent>,
    /// How long the command may run before it is killed (default 30s).
    #[serde(default)]
    pub timeout: Option<String>,
}

/// `notify:`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notify {
    pub argv: Vec<String>,
    pub events: BTreeSet<NotifyEvent>,
    pub timeout_secs: u64,
}

/// Validates `notify:`.
///
/// # Errors
/// A message naming the key at fault.
pub fn validate(raw: &RawNotify) -> Result<Notify, String> {
    if raw.command.0.first().is_none_or(String::is_empty) {
        return Err("notify.command: name a program (or a list: program and arguments)".into());
    }
    if raw.events.is_empty() {
        return Err("notify.events: pick at least one of escalated, halted, auth, paused, drained, scheduler_stopped".into());
    }
    let timeout_secs = match &raw.timeout {
        Some(t) => crate::config::parse_duration(t).map_err(|e| format!("notify.timeout: {e}"))?,
        None => DEFAULT_TIMEOUT_SECS,
    };
    Ok(Notify {
        argv: raw.command.0.clone(),
        events: raw.events.iter().copied().collect(),
        timeout_secs,
    })
}

/// What the command reads on stdin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Message {
    pub version: u32,
    pub event: NotifyEvent,
    /// The repository root.
    pub repo: String,
    pub stage: Option<String>,
    pub summary: String,
    pub at: Timestamp,
    /// Further events of this kind folded into this call (a burst, sent a minute later).
    pub coalesced: u32,
}

/// One thing that happened, before it is sent.
pub type Happened = Held;

/// What a change of state (`old` → `new`) is worth telling.
#[must_use]
pub fn changes(old: &State, new: &State) -> Vec<Happened> {
    let mut out = Vec::new();
    for (i, s) in new.stages.iter().enumerate() {
        let Status::Escalated { reason, .. } = &s.status else {
            continue;
        };
        if old
            .same_stage(i, &s.id)
            .is_some_and(|o| matches!(o.status, Status::Escalated { .. }))
        {
            continue;
        }
        let event = if matches!(reason, Escalation::Auth { .. }) {
            NotifyEvent::Auth
        } else {
            NotifyEvent::Escalated
        };
        out.push(Happened {
            event,
            stage: Some(s.id.to_string()),
            summary: format!("nightshift: `{}` escalated: {reason}", s.id),
        });
    }
    if let (None, Some(h)) = (&old.halted, &new.halted) {
        out.push(Happened {
            event: NotifyEvent::Halted,
            stage: None,
            summary: format!("nightshift: halted: {}", h.reason),
        });
    }
    for (family, p) in &new.paused {
        if !old.paused.contains_key(family) {
            out.push(Happened {
                event: NotifyEvent::Paused,
                stage: None,
                summary: format!("nightshift: {family} usage limit; paused until {}", p.until),
            });
        }
    }
    let open = |st: &State| st.stages.iter().any(|s| !s.status.terminal());
    if open(old) && !open(new) {
        let done = new
            .stages
            .iter()
            .filter(|s| matches!(s.status, Status::Done { .. }))
            .count();
        out.push(Happened {
            event: NotifyEvent::Drained,
            stage: None,
            summary: format!(
                "nightshift: queue drained: {done} of {} stage(s) done",
                new.stages.len()
            ),
        });
    }
    out
}

/// An event held back by a burst.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Held {
    pub event: NotifyEvent,
    pub stage: Option<String>,
    pub summary: String,
}

/// `state/notify.json`: when each event kind was last sent (volatile).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Sent {
    pub version: u32,
    pub last: BTreeMap<String, Timestamp>,
    /// Events held back by a burst, per kind, sent together once its minute has passed.
    #[serde(default)]
    pub held: BTreeMap<String, Vec<Held>>,
    /// A key per event kind that must change before it is sent again (the scheduler's last
    /// tick, for `scheduler_stopped`).
    #[serde(default)]
    pub keys: BTreeMap<String, String>,
}

fn sent_file(paths: &Paths) -> std::path::PathBuf {
    paths.state_dir().join("notify.json")
}

fn read_sent(paths: &Paths) -> Sent {
    std::fs::read_to_string(sent_file(paths))
        .ok()
        .and_then(|t| crate::schema::parse_json(&t, "state/notify.json").ok())
        .unwrap_or_default()
}

/// Sends what happened, for the events the config picked. `key`, when given, must differ from
/// the last call's key for that event kind. Events of a kind sent less than a minute ago are
/// held, and sent together by the first call of `send` (every tick and heartbeat makes one)
/// after the minute has passed.
pub fn send(
    paths: &Paths,
    notify: Option<&Notify>,
    happened: &[Happened],
    key: Option<&str>,
    now: Timestamp,
) {
    let Some(notify) = notify else { return };
    let wanted: Vec<&Happened> = happened
        .iter()
        .filter(|h| notify.events.contains(&h.event))
        .collect();
    if wanted.is_empty() && !sent_file(paths).exists() {
        return;
    }
    let _lock = crate::lock::lock(&paths.state_dir().join(".notify-lock"));
    let mut sent = read_sent(paths);
    let mut dirty = flush_held(paths, notify, &mut sent, now);
    for h in wanted {
        let kind = h.event.as_str().to_owned();
        if let Some(k) = key
            && sent.keys.get(&kind).is_some_and(|old| old == k)
        {
            continue;
        }
        dirty = true;
        if let Some(k) = key {
            sent.keys.insert(kind.clone(), k.to_owned());
        }
        if recent(&sent, &kind, now) {
            sent.held.entry(kind).or_default().push(h.clone());
            continue;
        }
        call(paths, notify, &mut sent, h, 0, now);
    }
    if dirty {
        sent.version = NOTIFY_VERSION;
        if let Err(e) = crate::store::write_json(&sent_file(paths), &sent) {
            log(paths, &e.to_string());
        }
    }
}

fn recent(sent: &Sent, kind: &str, now: Timestamp) -> bool {
    sent.last
        .get(kind)
        .is_some_and(|t| (now.as_second() - t.as_second()).abs() < COALESCE_SECS)
}

/// Sends, as one call per kind, the events held back by a burst whose minute has passed.
fn flush_held(paths: &Paths, notify: &Notify, sent: &mut Sent, now: Timestamp) -> bool {
    let due: Vec<String> = sent
        .held
        .keys()
        .filter(|k| !recent(sent, k, now))
        .cloned()
        .collect();
    for kind in &due {
        let Some(held) = sent.held.remove(kind).filter(|h| !h.is_empty()) else {
            continue;
        };
        let n = u32::try_from(held.len()).unwrap_or(u32::MAX);
        let mut one = held[0].clone();
        if held.len() > 1 {
            let all: Vec<&str> = held.iter().map(|h| h.summary.as_str()).collect();
            one.summary = format!(
                "nightshift: {} more `{kind}`: {}",
                held.len(),
                all.join(" | ")
            );
            one.stage = None;
        }
        call(paths, notify, sent, &one, n.saturating_sub(1), now);
    }
    !due.is_empty()
}

fn call(
    paths: &Paths,
    notify: &Notify,
    sent: &mut Sent,
    h: &Happened,
    coalesced: u32,
    now: Timestamp,
) {
    let msg = Message {
        version: NOTIFY_VERSION,
        event: h.event,
        repo: paths.root.to_string_lossy().into_owned(),
        stage: h.stage.clone(),
        summary: h.summary.clone(),
        at: now,
        coalesced,
    };
    if let Err(e) = start(paths, notify, &msg) {
        log(paths, &format!("cannot start the notify command: {e}"));
    }
    sent.last.insert(h.event.as_str().to_owned(), now);
}

fn log(paths: &Paths, line: &str) {
    use std::io::Write;
    let path = paths.state_dir().join("logs/notify.log");
    if let Some(d) = path.parent() {
        let _ = std::fs::create_dir_all(d);
    }
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = writeln!(f, "nightshift: {line}");
    }
}

/// Starts `nightshift __notify` detached; it runs the command with the message on stdin.
fn start(paths: &Paths, notify: &Notify, msg: &Message) -> std::io::Result<u32> {
    let body = serde_json::to_string(msg).map_err(std::io::Error::other)?;
    let dir = paths.state_dir().join("notify");
    std::fs::create_dir_all(&dir)?;
    let file = dir.join(format!(
        "{}-{}.json",
        msg.event.as_str(),
        msg.at.as_second()
    ));
    std::fs::write(&file, body)?;
    let mut cmd = std::process::Command::new(std::env::current_exe()?);
    cmd.arg("__notify")
        .arg("--message")
        .arg(&file)
        .arg("--timeout-secs")
        .arg(notify.timeout_secs.to_string())
        .arg("--")
        .args(&notify.argv)
        .arg(&msg.summary)
        .current_dir(&paths.root);
    crate::proc::spawn_detached(cmd, &paths.state_dir().join("logs/notify.log"))
}

/// The `__notify` helper: runs `argv` with the message file on stdin and the allow-listed
/// environment, kills it at `timeout_secs`, removes the message file. Returns its exit code.
#[must_use]
pub fn deliver(message: &Path, timeout_secs: u64, argv: &[String]) -> i32 {
    let Some((program, args)) = argv.split_first() else {
        eprintln!("nightshift: notify: no command");
        return 2;
    };
    let Some(exe) = crate::proc::which(program) else {
        eprintln!("nightshift: notify: `{program}` is not on PATH");
        let _ = std::fs::remove_file(message);
        return 1;
    };
    let stdin = match std::fs::File::open(message) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("nightshift: notify: cannot read {}: {e}", message.display());
            return 1;
        }
    };
    let mut cmd = std::process::Command::new(exe);
    cmd.args(args);
    let code = match crate::proc::run_bounded_stdin(
        cmd,
        stdin,
        std::time::Duration::from_secs(timeout_secs),
    ) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("nightshift: notify: `{program}`: {e}");
            1
        }
    };
    let _ = std::fs::remove_file(message);
    code
}
