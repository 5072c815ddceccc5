//! The report as Markdown (`report --format md`, the default): sections in the order a person
//! reads them at 7am — what needs you, what was done, partial work, spend, sleeps and quiet
//! stretches, what runs next. Pure text from a [`Report`]; no I/O.

use std::fmt::Write as _;

use super::model::{Report, Spend};
use super::timeline::when;
use crate::config::format_duration;

fn short(commit: &str) -> &str {
    commit.get(..10).unwrap_or(commit)
}

/// Markdown text of the report.
#[must_use]
pub fn render(r: &Report) -> String {
    let mut s = format!(
        "# nightshift report: {}\n\nFrom {} to {} ({}); {} ledger commit(s), head `{}`.\n\n",
        r.repo,
        when(r.since),
        when(r.generated_at),
        r.since_reason,
        r.commits,
        short(&r.ledger_head)
    );
    needs_you(&mut s, r);
    done(&mut s, r);
    if !r.partial.is_empty() {
        s.push_str("## Partial work\n\n");
        for p in &r.partial {
            let files = if p.files.is_empty() {
                String::new()
            } else {
                format!(" (files: {})", p.files.join(", "))
            };
            let _ = writeln!(
                s,
                "- `{}` attempt {} ({}): {}{files}",
                p.id, p.attempt, p.status, p.summary
            );
        }
        s.push('\n');
    }
    spend(&mut s, &r.spend);
    time(&mut s, r);
    s.push_str("## Next\n\n");
    if r.queued.is_empty() {
        s.push_str("Nothing is queued.\n");
    }
    for q in &r.queued {
        let waits = if q.waits_on.is_empty() {
            "ready".to_owned()
        } else {
            format!("after {}", q.waits_on.join(", "))
        };
        let _ = writeln!(s, "- `{}` {} ({}, {waits})", q.id, q.title, q.status);
    }
    s
}

fn needs_you(s: &mut String, r: &Report) {
    s.push_str("## Needs you\n\n");
    if r.needs_you.is_empty() {
        s.push_str("Nothing: no stage is escalated or paused and the repo is not halted.\n\n");
        return;
    }
    for n in &r.needs_you {
        let name = if n.id.is_empty() {
            n.title.clone()
        } else {
            format!("`{}` {}", n.id, n.title)
        };
        let _ = writeln!(s, "### {name}: {}\n\n{}\n", n.status, n.why);
        for e in &n.evidence {
            let _ = writeln!(s, "- {e}");
        }
        if let Some(dir) = &n.evidence_dir {
            let _ = writeln!(s, "- evidence: `{dir}`");
        }
        let _ = writeln!(s, "\nNext: {}\n", n.next);
    }
}

fn done(s: &mut String, r: &Report) {
    let _ = writeln!(s, "## Done ({})\n", r.done.len());
    if r.done.is_empty() {
        s.push_str("No stage finished in this window.\n\n");
        return;
    }
    s.push_str("| stage | attempt | verdict | commit | time | agent time | tokens | USD |\n|---|---:|---|---|---:|---:|---:|---:|\n");
    for d in &r.done {
        let _ = writeln!(
            s,
            "| `{}` {} | {} | {} ({}) | `{}` on `{}` | {} | {} | {} | ${:.2} |",
            d.id,
            d.title,
            d.attempt,
            d.verdict.as_deref().unwrap_or("none on record"),
            d.verifier,
            short(&d.commit),
            d.branch,
            format_duration(d.elapsed_secs),
            format_duration(d.agent_secs),
            d.tokens,
            d.usd
        );
    }
    s.push('\n');
    for d in r.done.iter().filter(|d| !d.evidence.is_empty()) {
        let _ = writeln!(s, "Evidence for `{}`:\n", d.id);
        for e in &d.evidence {
            let _ = writeln!(s, "- {e}");
        }
        s.push('\n');
    }
}

/// `spent (cap X)` or `spent (no cap)`.
pub fn against<T: std::fmt::Display>(spent: String, cap: Option<T>) -> String {
    match cap {
        Some(c) => format!("{spent} of {c} cap"),
        None => format!("{spent} (no cap)"),
    }
}

/// The host-wide caps as one phrase, when any is set.
#[must_use]
pub fn host_caps(sp: &Spend) -> Option<String> {
    let parts: Vec<String> = [
        sp.host_max_tokens.map(|t| format!("{t} tokens")),
        sp.host_max_usd.map(|u| format!("${u:.2}")),
    ]
    .into_iter()
    .flatten()
    .collect();
    (!parts.is_empty()).then(|| {
        format!(
            "host caps (every repository on this machine): {}",
            parts.join(", ")
        )
    })
}

fn spend(s: &mut String, sp: &Spend) {
    s.push_str("## Spend\n\n");
    let _ = writeln!(
        s,
        "- tokens: {} in this window; {}\n- USD: ${:.2} in this window; {}\n- agent wall time: {}",
        sp.window_tokens,
        against(format!("{} in total", sp.tokens), sp.max_tokens),
        sp.window_usd,
        against(
            format!("${:.2} in total", sp.usd),
            sp.max_usd.map(|u| format!("${u:.2}"))
        ),
        against(
            format_duration(sp.wall_secs),
            sp.max_wall_secs.map(format_duration)
        ),
    );
    if let Some(host) = host_caps(sp) {
        let _ = writeln!(s, "- {host}");
    }
    if !sp.families.is_empty() {
        s.push_str("\n| family | runs | tokens (window) | tokens (total) | USD (window) | USD (total) |\n|---|---:|---:|---:|---:|---:|\n");
        for f in &sp.families {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | ${:.2} | ${:.2} |",
                f.family, f.runs, f.window_tokens, f.tokens, f.window_usd, f.usd
            );
        }
    }
    s.push('\n');
}

fn time(s: &mut String, r: &Report) {
    s.push_str("## Sleeps and quiet stretches\n\n");
    if r.sleeps.is_empty() && r.gaps.is_empty() {
        s.push_str("The machine did not sleep and the ledger had no quiet stretch.\n\n");
        return;
    }
    for sl in &r.sleeps {
        let _ = writeln!(
            s,
            "- asleep from {} to {} ({})",
            when(sl.from),
            when(sl.to),
            format_duration(sl.secs)
        );
    }
    for g in &r.gaps {
        let _ = writeln!(
            s,
            "- no state change from {} to {} ({}): the scheduler did not fire, or nothing could move",
            when(g.from),
            when(g.to),
            format_duration(g.secs)
        );
    }
    s.push('\n');
}
