//! `doctor`'s scheduler checks once something is installed: the entries exist and run this
//! binary at this version, the last `tick --all` pass ended recently, and this repository is
//! subscribed. Reads only; each failed check carries the exact command that fixes it.

use std::path::Path;

use crate::cmd::doctor::Check;
use crate::install::{kinds, record};

fn check(name: &str, ok: bool, detail: String, hint: String) -> Check {
    Check {
        name: name.to_owned(),
        ok,
        detail,
        hint: (!ok).then_some(hint),
    }
}

/// The scheduler checks, or `None` when nothing is recorded as installed (the caller then
/// looks for a hand-written entry).
#[must_use]
pub fn checks(root: &Path) -> Option<Vec<Check>> {
    let rec = match record::load() {
        Ok(r) => r?,
        Err(e) => {
            let hint = e.hint.clone().unwrap_or_default();
            return Some(vec![check("scheduler", false, e.message, hint)]);
        }
    };
    let kind = rec.kind.name();
    let reinstall = format!("nightshift install {kind}");
    let programs = kinds::installed(rec.kind);
    let mut out = vec![check(
        "scheduler",
        programs.is_some(),
        match &programs {
            Some(_) => format!(
                "{kind}: tick --all every {}s, heartbeat --all every {}s",
                rec.interval_secs, rec.heartbeat_secs
            ),
            None => format!("scheduler.json says {kind}, but no {kind} entry exists"),
        },
        reinstall.clone(),
    )];
    let this = std::env::current_exe()
        .and_then(std::fs::canonicalize)
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let version = env!("CARGO_PKG_VERSION");
    let stale: Vec<String> = programs
        .unwrap_or_default()
        .into_iter()
        .chain([rec.binary.to_string_lossy().into_owned()])
        .filter(|p| *p != this)
        .collect();
    let same = stale.is_empty() && rec.nightshift_version == version;
    out.push(check(
        "scheduler binary",
        same,
        if same {
            format!("runs {this} ({version})")
        } else {
            format!(
                "runs {} ({}), but this is {this} ({version})",
                stale.first().map_or(this.as_str(), String::as_str),
                rec.nightshift_version
            )
        },
        format!("{reinstall} (with this binary) points it here"),
    ));
    out.push(last_tick(&rec));
    let subscribed = crate::hostreg::Registry::load().is_ok_and(|r| r.contains(root));
    out.push(check(
        "subscribed",
        subscribed,
        if subscribed {
            "tick --all visits this repository".to_owned()
        } else {
            "tick --all does not visit this repository".to_owned()
        },
        format!("nightshift subscribe {}", root.display()),
    ));
    Some(out)
}

fn last_tick(rec: &record::SchedulerRecord) -> Check {
    let now = crate::now::now().unwrap_or_else(|_| jiff::Timestamp::now());
    let slack =
        i64::try_from(rec.interval_secs.saturating_mul(2).saturating_add(60)).unwrap_or(i64::MAX);
    let log = crate::host::dir().join("tick.log");
    let hint = format!(
        "read {}; run `{} tick --all` yourself to see what fails",
        log.display(),
        rec.binary.display()
    );
    let last = crate::hostreg::passes::load("tick").ok().flatten();
    let (ok, detail) = match last {
        Some(p) => {
            let ago = now.duration_since(p.finished_at).as_secs();
            (
                ago <= slack,
                format!(
                    "last tick --all pass ended {ago}s ago (expected every {}s)",
                    rec.interval_secs
                ),
            )
        }
        None => {
            let ago = now.duration_since(rec.installed_at).as_secs();
            (
                ago <= slack,
                format!("no tick --all pass yet; installed {ago}s ago"),
            )
        }
    };
    check("last tick", ok, detail, hint)
}
