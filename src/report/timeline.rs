//! The report's timeline: one bar per attempt (built from the durable outcomes' finish times
//! and wall times), packed into lanes so that attempts that overlapped in time sit on separate
//! rows, and its rendering as an inline SVG (bars coloured by outcome, worker / acceptance /
//! verifier segments, sleeps shaded, a `<title>` on each bar for the hover details).
//!
//! Pure: times come from the ledger view and the window; nothing here reads a clock or a file.

use std::fmt::Write as _;

use jiff::Timestamp;

use super::collect::LedgerView;
use super::model::{AttemptBar, Report, Segment, Window};
use crate::engine::observe::Outcome;
use crate::engine::state::{AttemptResult, Stage, Status};
use crate::ids::Role;

/// The SVG's width in pixels (the HTML page is laid out around it).
pub const SVG_WIDTH: u32 = 960;
const LABEL_W: f64 = 64.0;
const ROW_H: f64 = 30.0;
const AXIS_H: f64 = 24.0;

/// When the job of an outcome started: its finish time minus its wall time.
#[must_use]
pub fn started(o: &Outcome) -> Timestamp {
    let wall = i64::try_from(o.wall_secs).unwrap_or(0);
    o.finished_at
        .checked_sub(jiff::SignedDuration::from_secs(wall))
        .unwrap_or(o.finished_at)
}

/// One bar per attempt that overlaps the window, with lanes assigned.
#[must_use]
pub fn bars(view: &LedgerView, window: &Window) -> Vec<AttemptBar> {
    let mut bars: Vec<AttemptBar> = view
        .state
        .stages
        .iter()
        .flat_map(|s| (1..=s.attempt).filter_map(|n| bar(view, s, n, window.now)))
        .filter(|b| b.end >= window.since)
        .collect();
    bars.sort_by(|a, b| (a.start, &a.stage, a.attempt).cmp(&(b.start, &b.stage, b.attempt)));
    let mut lane_ends: Vec<Timestamp> = Vec::new();
    for b in &mut bars {
        let free = lane_ends.iter().position(|end| *end <= b.start);
        let lane = free.unwrap_or(lane_ends.len());
        if lane == lane_ends.len() {
            lane_ends.push(b.end);
        } else {
            lane_ends[lane] = b.end;
        }
        b.lane = u32::try_from(lane + 1).unwrap_or(u32::MAX);
    }
    bars
}

fn bar(view: &LedgerView, s: &Stage, n: u32, now: Timestamp) -> Option<AttemptBar> {
    let id = s.id.to_string();
    let mut segments: Vec<Segment> = [Role::Worker, Role::Acceptance, Role::Verifier]
        .into_iter()
        .filter_map(|role| {
            view.outcomes.get(&(id.clone(), n, role)).map(|o| Segment {
                role: role.to_string(),
                start: started(o),
                end: o.finished_at,
            })
        })
        .collect();
    let record = s.history.iter().rev().find(|h| h.attempt == n);
    let current = s.attempt == n && s.status.in_flight();
    if current && let Some((role, since)) = running(&s.status) {
        segments.push(Segment {
            role: role.to_string(),
            start: since,
            end: now.max(since),
        });
    }
    let (outcome, reason) = match record.map(|r| &r.result) {
        Some(AttemptResult::Passed { .. }) => ("passed", None),
        Some(AttemptResult::Failed { reason }) => ("failed", Some(reason.to_string())),
        Some(AttemptResult::Cancelled) => ("cancelled", None),
        None if current => ("in_flight", None),
        None if matches!(s.status, Status::Done { attempt, .. } if attempt == n) => {
            ("passed", None)
        }
        None => return None,
    };
    let fallback = record.map(|r| r.ended).unwrap_or(now);
    let start = segments.iter().map(|g| g.start).min().unwrap_or(fallback);
    let end = segments
        .iter()
        .map(|g| g.end)
        .chain(record.map(|r| r.ended))
        .max()
        .unwrap_or(fallback)
        .max(start);
    Some(AttemptBar {
        stage: id,
        attempt: n,
        lane: 0,
        start,
        end,
        outcome: outcome.into(),
        reason,
        segments,
    })
}

/// The running job of an in-flight status and when it started.
fn running(status: &Status) -> Option<(Role, Timestamp)> {
    match status {
        Status::Working { since, .. } => Some((Role::Worker, *since)),
        Status::Checking { since, .. } => Some((Role::Acceptance, *since)),
        Status::Verifying { since, .. } => Some((Role::Verifier, *since)),
        _ => None,
    }
}

/// A time as shown to people: RFC 3339 to the second, in UTC.
#[must_use]
pub fn when(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Escapes text for XML/HTML content and attribute values.
#[must_use]
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' && c != '\t' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// The visible time range: the bars and sleeps, clamped to the window; the window itself when
/// there is nothing to show.
fn range(r: &Report) -> (i64, i64) {
    let ms = |t: Timestamp| t.as_millisecond();
    let lo = ms(r.since);
    let hi = ms(r.generated_at).max(lo + 1);
    let points: Vec<i64> = r
        .attempts
        .iter()
        .flat_map(|b| [ms(b.start), ms(b.end)])
        .chain(r.sleeps.iter().flat_map(|s| [ms(s.from), ms(s.to)]))
        .map(|t| t.clamp(lo, hi))
        .collect();
    match (points.iter().min(), points.iter().max()) {
        (Some(a), Some(b)) if b > a => {
            let pad = (b - a) / 40;
            ((a - pad).max(lo), (b + pad).min(hi).max(a + 1))
        }
        (Some(a), Some(_)) => (*a - 500, *a + 500),
        _ => (lo, hi),
    }
}

/// The timeline as an SVG element.
#[must_use]
pub fn svg(r: &Report) -> String {
    let lanes = r.attempts.iter().map(|b| b.lane).max().unwrap_or(1).max(1);
    let height = AXIS_H + ROW_H * f64::from(lanes) + 8.0;
    let (t0, t1) = range(r);
    let plot = f64::from(SVG_WIDTH) - LABEL_W - 8.0;
    #[expect(clippy::cast_precision_loss, reason = "pixel positions")]
    let x = |t: Timestamp| {
        LABEL_W + (t.as_millisecond().clamp(t0, t1) - t0) as f64 / (t1 - t0) as f64 * plot
    };
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"timeline\" width=\"{SVG_WIDTH}\" height=\"{height:.0}\" viewBox=\"0 0 {SVG_WIDTH} {height:.0}\" role=\"img\" aria-label=\"timeline of attempts by lane\">\n"
    );
    for sl in &r.sleeps {
        let (a, b) = (x(sl.from), x(sl.to));
        let _ = writeln!(
            s,
            "<rect class=\"sleep\" x=\"{a:.1}\" y=\"{AXIS_H}\" width=\"{:.1}\" height=\"{:.0}\"><title>{}</title></rect>",
            (b - a).max(2.0),
            height - AXIS_H,
            esc(&format!(
                "machine asleep from {} to {} ({})",
                when(sl.from),
                when(sl.to),
                crate::config::format_duration(sl.secs)
            ))
        );
    }
    axis(&mut s, t0, t1, &x);
    for lane in 1..=lanes {
        let y = AXIS_H + ROW_H * f64::from(lane - 1);
        let _ = writeln!(
            s,
            "<text class=\"lane\" x=\"4\" y=\"{:.1}\">lane {lane}</text>",
            y + ROW_H / 2.0 + 4.0
        );
    }
    for b in &r.attempts {
        bar_svg(&mut s, b, &x);
    }
    s.push_str("</svg>");
    s
}

fn axis(s: &mut String, t0: i64, t1: i64, x: &impl Fn(Timestamp) -> f64) {
    for i in 0..=4 {
        let t = t0 + (t1 - t0) * i / 4;
        let Ok(ts) = Timestamp::from_millisecond(t) else {
            continue;
        };
        let px = x(ts);
        let label = ts.strftime("%H:%M:%S").to_string();
        let anchor = match i {
            0 => "start",
            4 => "end",
            _ => "middle",
        };
        let _ = writeln!(
            s,
            "<line class=\"tick\" x1=\"{px:.1}\" y1=\"{:.0}\" x2=\"{px:.1}\" y2=\"2000\"/><text class=\"axis\" x=\"{px:.1}\" y=\"14\" text-anchor=\"{anchor}\">{label}</text>",
            AXIS_H - 4.0
        );
    }
}

fn bar_svg(s: &mut String, b: &AttemptBar, x: &impl Fn(Timestamp) -> f64) {
    let y = AXIS_H + ROW_H * f64::from(b.lane - 1) + 4.0;
    let (a, e) = (x(b.start), x(b.end));
    let w = (e - a).max(4.0);
    let mut tip = format!(
        "{} attempt {}: {}\n{} → {}",
        b.stage,
        b.attempt,
        b.outcome,
        when(b.start),
        when(b.end)
    );
    if let Some(reason) = &b.reason {
        let _ = write!(tip, "\n{reason}");
    }
    for g in &b.segments {
        let secs = g.end.as_second() - g.start.as_second();
        let _ = write!(tip, "\n{}: {secs}s", g.role);
    }
    let _ = writeln!(
        s,
        "<g class=\"bar\"><title>{}</title><rect class=\"attempt {}\" x=\"{a:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{:.0}\" rx=\"3\"/>",
        esc(&tip),
        esc(&b.outcome),
        ROW_H - 8.0
    );
    for g in &b.segments {
        let (ga, ge) = (x(g.start), x(g.end));
        let _ = writeln!(
            s,
            "<rect class=\"seg {}\" x=\"{ga:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"5\"/>",
            esc(&g.role),
            y + ROW_H - 14.0,
            (ge - ga).max(2.0)
        );
    }
    if w >= 70.0 {
        let _ = writeln!(
            s,
            "<text class=\"label\" x=\"{:.1}\" y=\"{:.1}\">{} a{}</text>",
            a + 4.0,
            y + 12.0,
            esc(&b.stage),
            b.attempt
        );
    }
    s.push_str("</g>\n");
}
