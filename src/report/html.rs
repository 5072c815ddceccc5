//! The report as one self-contained HTML page (`report --format html`): inline CSS, the inline
//! SVG timeline, no script, no font, no image or link that would reach the network. The page is
//! well-formed XML as well as HTML (every element closed, every attribute quoted, all text
//! escaped), so a strict parser can check it. Pure text from a [`Report`]; no I/O.

use std::fmt::Write as _;

use super::model::Report;
use super::timeline::{SVG_WIDTH, esc, svg, when};
use crate::config::format_duration;

const CSS: &str = "
body { font: 14px/1.45 system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 24px auto; max-width: 1000px; color: #1d2330; background: #fbfbfd; padding: 0 16px; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 26px 0 8px; border-bottom: 1px solid #dde1ea; padding-bottom: 4px; }
.meta { color: #5b6475; margin: 0 0 12px; }
table { border-collapse: collapse; width: 100%; margin: 6px 0 10px; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid #e6e9f0; vertical-align: top; }
th { font-weight: 600; color: #3b4356; background: #f1f3f8; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
code { font: 12.5px ui-monospace, 'SFMono-Regular', Menlo, monospace; background: #eef0f5; padding: 1px 4px; border-radius: 3px; }
.card { border: 1px solid #e2c3c3; background: #fff7f6; border-radius: 6px; padding: 8px 12px; margin: 8px 0; }
.card.paused { border-color: #e8d7a8; background: #fffbef; }
.ok { color: #1f7a3a; } .muted { color: #6b7385; }
ul { margin: 4px 0 8px; padding-left: 20px; }
svg.timeline { background: #fff; border: 1px solid #dde1ea; border-radius: 6px; display: block; }
svg .attempt.passed { fill: #3fa95b; } svg .attempt.failed { fill: #d9534f; }
svg .attempt.cancelled { fill: #9aa1ad; } svg .attempt.in_flight { fill: #4a8fe0; }
svg .seg.worker { fill: #1d3557; } svg .seg.acceptance { fill: #f4a261; } svg .seg.verifier { fill: #8e5ac8; }
svg .sleep { fill: #c9cfdb; opacity: 0.55; } svg .tick { stroke: #eceef3; }
svg text { font: 11px system-ui, sans-serif; fill: #3b4356; } svg text.label { fill: #fff; }
svg g.bar:hover rect.attempt { stroke: #111; stroke-width: 1.5; }
.legend span { display: inline-block; margin-right: 14px; } .legend i { display: inline-block; width: 12px; height: 12px; border-radius: 2px; margin-right: 4px; vertical-align: -2px; }
";

fn short(commit: &str) -> &str {
    commit.get(..10).unwrap_or(commit)
}

/// The HTML page of the report.
#[must_use]
pub fn render(r: &Report) -> String {
    let mut s = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n<meta name=\"viewport\" content=\"width=device-width\"/>\n<title>nightshift report: {}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<h1>nightshift report: {}</h1>\n<p class=\"meta\">From {} to {} ({}); {} ledger commit(s), head <code>{}</code>.</p>\n",
        esc(&r.repo),
        esc(&r.repo),
        when(r.since),
        when(r.generated_at),
        esc(&r.since_reason),
        r.commits,
        esc(short(&r.ledger_head))
    );
    let _ = writeln!(
        s,
        "<h2>Timeline</h2>\n<p class=\"legend\"><span><i style=\"background:#3fa95b\"></i>passed</span><span><i style=\"background:#d9534f\"></i>failed</span><span><i style=\"background:#4a8fe0\"></i>running</span><span><i style=\"background:#9aa1ad\"></i>cancelled</span><span><i style=\"background:#1d3557\"></i>worker</span><span><i style=\"background:#f4a261\"></i>acceptance</span><span><i style=\"background:#8e5ac8\"></i>verifier</span><span><i style=\"background:#c9cfdb\"></i>asleep</span></p>\n{}\n<p class=\"muted\">{} attempt(s) on {} lane(s); hover a bar for its details. The SVG is {SVG_WIDTH} px wide.</p>",
        svg(r),
        r.attempts.len(),
        r.attempts.iter().map(|b| b.lane).max().unwrap_or(0)
    );
    needs_you(&mut s, r);
    done(&mut s, r);
    partial(&mut s, r);
    spend(&mut s, r);
    time(&mut s, r);
    next(&mut s, r);
    s.push_str("</body>\n</html>\n");
    s
}

fn list(s: &mut String, items: &[String]) {
    if items.is_empty() {
        return;
    }
    s.push_str("<ul>");
    for i in items {
        let _ = write!(s, "<li>{}</li>", esc(i));
    }
    s.push_str("</ul>\n");
}

fn needs_you(s: &mut String, r: &Report) {
    s.push_str("<h2>Needs you</h2>\n");
    if r.needs_you.is_empty() {
        s.push_str("<p class=\"ok\">Nothing: no stage is escalated or paused and the repo is not halted.</p>\n");
    }
    for n in &r.needs_you {
        let name = if n.id.is_empty() {
            esc(&n.title)
        } else {
            format!("<code>{}</code> {}", esc(&n.id), esc(&n.title))
        };
        let _ = writeln!(
            s,
            "<div class=\"card {}\"><b>{name}</b>: {}<br/>{}",
            esc(&n.status),
            esc(&n.status),
            esc(&n.why)
        );
        list(s, &n.evidence);
        if let Some(dir) = &n.evidence_dir {
            let _ = write!(s, "<div>evidence: <code>{}</code></div>", esc(dir));
        }
        let _ = writeln!(s, "<div>next: {}</div></div>", esc(&n.next));
    }
}

fn done(s: &mut String, r: &Report) {
    let _ = writeln!(s, "<h2>Done ({})</h2>", r.done.len());
    if r.done.is_empty() {
        s.push_str("<p class=\"muted\">No stage finished in this window.</p>\n");
        return;
    }
    s.push_str("<table><tr><th>stage</th><th>attempt</th><th>verdict</th><th>commit</th><th>time</th><th>agent time</th><th>tokens</th><th>USD</th></tr>\n");
    for d in &r.done {
        let _ = writeln!(
            s,
            "<tr><td><code>{}</code> {}</td><td class=\"n\">{}</td><td>{} ({})</td><td><code>{}</code> on <code>{}</code></td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">${:.2}</td></tr>",
            esc(&d.id),
            esc(&d.title),
            d.attempt,
            esc(d.verdict.as_deref().unwrap_or("none on record")),
            esc(&d.verifier),
            esc(short(&d.commit)),
            esc(&d.branch),
            format_duration(d.elapsed_secs),
            format_duration(d.agent_secs),
            d.tokens,
            d.usd
        );
    }
    s.push_str("</table>\n");
    for d in r.done.iter().filter(|d| !d.evidence.is_empty()) {
        let _ = write!(s, "<div>Evidence for <code>{}</code>:</div>", esc(&d.id));
        list(s, &d.evidence);
    }
}

fn partial(s: &mut String, r: &Report) {
    if r.partial.is_empty() {
        return;
    }
    s.push_str("<h2>Partial work</h2>\n<ul>");
    for p in &r.partial {
        let _ = write!(
            s,
            "<li><code>{}</code> attempt {} ({}): {}{}</li>",
            esc(&p.id),
            p.attempt,
            esc(&p.status),
            esc(&p.summary),
            if p.files.is_empty() {
                String::new()
            } else {
                esc(&format!(" (files: {})", p.files.join(", ")))
            }
        );
    }
    s.push_str("</ul>\n");
}

fn spend(s: &mut String, r: &Report) {
    let sp = &r.spend;
    let cap = |c: Option<String>| c.unwrap_or_else(|| "no cap".into());
    let _ = writeln!(
        s,
        "<h2>Spend</h2>\n<table><tr><th></th><th>this window</th><th>total</th><th>cap</th></tr>\n<tr><td>tokens</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>\n<tr><td>USD</td><td class=\"n\">${:.2}</td><td class=\"n\">${:.2}</td><td class=\"n\">{}</td></tr>\n<tr><td>agent wall time</td><td></td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr></table>",
        sp.window_tokens,
        sp.tokens,
        cap(sp.max_tokens.map(|t| t.to_string())),
        sp.window_usd,
        sp.usd,
        cap(sp.max_usd.map(|u| format!("${u:.2}"))),
        format_duration(sp.wall_secs),
        cap(sp.max_wall_secs.map(format_duration))
    );
    if let Some(host) = super::md::host_caps(sp) {
        let _ = writeln!(s, "<p class=\"muted\">{}</p>", esc(&host));
    }
    if sp.families.is_empty() {
        return;
    }
    s.push_str("<table><tr><th>family</th><th>runs</th><th>tokens (window)</th><th>tokens (total)</th><th>USD (window)</th><th>USD (total)</th></tr>\n");
    for f in &sp.families {
        let _ = writeln!(
            s,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">${:.2}</td><td class=\"n\">${:.2}</td></tr>",
            esc(&f.family),
            f.runs,
            f.window_tokens,
            f.tokens,
            f.window_usd,
            f.usd
        );
    }
    s.push_str("</table>\n");
}

fn time(s: &mut String, r: &Report) {
    s.push_str("<h2>Sleeps and quiet stretches</h2>\n");
    if r.sleeps.is_empty() && r.gaps.is_empty() {
        s.push_str("<p class=\"muted\">The machine did not sleep and the ledger had no quiet stretch.</p>\n");
        return;
    }
    let mut items: Vec<String> = r
        .sleeps
        .iter()
        .map(|sl| {
            format!(
                "asleep from {} to {} ({})",
                when(sl.from),
                when(sl.to),
                format_duration(sl.secs)
            )
        })
        .collect();
    items.extend(r.gaps.iter().map(|g| {
        format!(
            "no state change from {} to {} ({}): the scheduler did not fire, or nothing could move",
            when(g.from),
            when(g.to),
            format_duration(g.secs)
        )
    }));
    list(s, &items);
}

fn next(s: &mut String, r: &Report) {
    s.push_str("<h2>Next</h2>\n");
    if r.queued.is_empty() {
        s.push_str("<p class=\"muted\">Nothing is queued.</p>\n");
        return;
    }
    let items: Vec<String> = r
        .queued
        .iter()
        .map(|q| {
            let waits = if q.waits_on.is_empty() {
                "ready".to_owned()
            } else {
                format!("after {}", q.waits_on.join(", "))
            };
            format!("{} {} ({}, {waits})", q.id, q.title, q.status)
        })
        .collect();
    list(s, &items);
}
