//! Draws one cockpit frame with ratatui: a header, the stages table (selection marked), the
//! running agents with liveness and deadline bars, spend against caps, the needs-you list and
//! the tail of the selected stage's log. Colour only when allowed (`NO_COLOR` unset); the
//! selection is also marked by `>` so it shows without colour. Pure rendering of [`App`].

use jiff::Timestamp;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Cell, Paragraph, Row, Table, TableState, Wrap};

use super::app::App;
use crate::config::format_duration;

fn fg(app: &App, c: Color) -> Style {
    if app.color {
        Style::default().fg(c)
    } else {
        Style::default()
    }
}

fn status_color(status: &str) -> Color {
    match status {
        "done" => Color::Green,
        "escalated" | "cancelled" => Color::Red,
        "paused" | "retry" => Color::Yellow,
        "queued" => Color::Gray,
        _ => Color::Cyan,
    }
}

/// A text bar of `width` cells filled to `frac` (0..=1).
#[must_use]
pub fn bar(frac: f64, width: usize) -> String {
    let frac = if frac.is_finite() {
        frac.clamp(0.0, 1.0)
    } else {
        0.0
    };
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss,
        reason = "a few cells"
    )]
    let full = (frac * width as f64).round() as usize;
    format!(
        "[{}{}]",
        "#".repeat(full),
        "-".repeat(width - full.min(width))
    )
}

/// Draws the whole frame.
pub fn frame(f: &mut Frame<'_>, app: &App) {
    let [head, middle, log] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Percentage(55),
        Constraint::Min(5),
    ])
    .areas(f.area());
    header(f, head, app);
    let [stages, side] =
        Layout::horizontal([Constraint::Percentage(58), Constraint::Percentage(42)]).areas(middle);
    stages_table(f, stages, app);
    let [agents, spend, needs] = Layout::vertical([
        Constraint::Percentage(40),
        Constraint::Length(6),
        Constraint::Min(3),
    ])
    .areas(side);
    agents_list(f, agents, app);
    spend_box(f, spend, app);
    needs_box(f, needs, app);
    log_box(f, log, app);
}

fn header(f: &mut Frame<'_>, area: Rect, app: &App) {
    let text = match &app.snap {
        Some(s) => format!(
            " nightshift attach: {}  ledger #{}  {}/{} lane(s) busy  {}  | q quit  j/k select  f follow  PgUp/PgDn scroll",
            app.repo,
            s.status.seq,
            s.status.in_flight,
            s.status.lanes,
            s.now.strftime("%H:%M:%S")
        ),
        None => format!(" nightshift attach: {} (no state yet)", app.repo),
    };
    let style = if app.color {
        Style::default()
            .add_modifier(Modifier::BOLD)
            .fg(Color::White)
            .bg(Color::Blue)
    } else {
        Style::default().add_modifier(Modifier::BOLD)
    };
    f.render_widget(Paragraph::new(text).style(style), area);
}

fn stages_table(f: &mut Frame<'_>, area: Rect, app: &App) {
    let stages = app
        .snap
        .as_ref()
        .map(|s| s.status.stages.as_slice())
        .unwrap_or_default();
    let rows: Vec<Row<'_>> = stages
        .iter()
        .map(|st| {
            let note = match (&st.reason, &st.job, &st.commit) {
                (Some(r), _, _) => r.clone(),
                (None, Some(j), _) => format!("job {j}"),
                (None, None, Some(c)) => c.get(..10).unwrap_or(c).to_owned(),
                (None, None, None) if !st.depends_on.is_empty() && st.status == "queued" => {
                    format!("after {}", st.depends_on.join(", "))
                }
                _ => String::new(),
            };
            Row::new(vec![
                Cell::from(st.id.clone()),
                Cell::from(st.status.clone()).style(fg(app, status_color(&st.status))),
                Cell::from(format!("{}/{}", st.attempts_used, st.max_attempts)),
                Cell::from(note),
            ])
        })
        .collect();
    let title = match &app.error {
        Some(e) => format!(" Stages ({}) - {e} ", stages.len()),
        None => format!(" Stages ({}) ", stages.len()),
    };
    let highlight = if app.color {
        Style::default()
            .add_modifier(Modifier::BOLD)
            .bg(Color::DarkGray)
    } else {
        Style::default().add_modifier(Modifier::REVERSED)
    };
    let table = Table::new(
        rows,
        [
            Constraint::Length(14),
            Constraint::Length(11),
            Constraint::Length(7),
            Constraint::Fill(1),
        ],
    )
    .header(
        Row::new(vec!["STAGE", "STATUS", "ATTEMPT", "NOTE"])
            .style(Style::default().add_modifier(Modifier::BOLD)),
    )
    .block(Block::bordered().title(title))
    .row_highlight_style(highlight)
    .highlight_symbol("> ");
    let mut state =
        TableState::default().with_selected((!stages.is_empty()).then_some(app.selected));
    f.render_stateful_widget(table, area, &mut state);
}

fn secs_between(a: Timestamp, b: Timestamp) -> u64 {
    u64::try_from(b.as_second() - a.as_second()).unwrap_or(0)
}

fn agents_list(f: &mut Frame<'_>, area: Rect, app: &App) {
    let mut lines: Vec<Line<'_>> = Vec::new();
    if let Some(s) = &app.snap {
        for a in &s.agents {
            let live = if a.alive { "alive" } else { "GONE" };
            let ran = secs_between(a.started_at, s.now);
            let deadline = match a.deadline {
                Some(d) => {
                    let total = secs_between(a.started_at, d).max(1);
                    #[expect(clippy::cast_precision_loss, reason = "a bar")]
                    let frac = ran as f64 / total as f64;
                    format!(
                        "{} {}/{}",
                        bar(frac, 10),
                        format_duration(ran),
                        format_duration(total)
                    )
                }
                None => format!("{} ran", format_duration(ran)),
            };
            let style = fg(app, if a.alive { Color::Green } else { Color::Red });
            lines.push(Line::styled(
                format!(
                    "{} a{} {} pid {} {live} {deadline}",
                    a.stage, a.attempt, a.role, a.pid
                ),
                style,
            ));
        }
    }
    if lines.is_empty() {
        lines.push(Line::from("no agent running"));
    }
    let n = app.snap.as_ref().map_or(0, |s| s.agents.len());
    f.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(format!(" Agents ({n}) "))),
        area,
    );
}

fn spend_box(f: &mut Frame<'_>, area: Rect, app: &App) {
    let mut lines = Vec::new();
    if let Some(s) = &app.snap {
        let b = &s.status.budget;
        #[expect(clippy::cast_precision_loss, reason = "a bar")]
        let tokens = match b.max_tokens {
            Some(cap) => format!(
                "tokens {} {}/{cap}",
                bar(b.tokens as f64 / cap.max(1) as f64, 10),
                b.tokens
            ),
            None => format!("tokens {} (no cap)", b.tokens),
        };
        let usd = match b.max_usd {
            Some(cap) => format!(
                "USD    {} ${:.2}/${cap:.2}",
                bar(b.usd / cap.max(f64::MIN_POSITIVE), 10),
                b.usd
            ),
            None => format!("USD    ${:.2} (no cap)", b.usd),
        };
        #[expect(clippy::cast_precision_loss, reason = "a bar")]
        let wall = match b.max_wall_secs {
            Some(cap) => format!(
                "wall   {} {}/{}",
                bar(b.wall_secs as f64 / cap.max(1) as f64, 10),
                format_duration(b.wall_secs),
                format_duration(cap)
            ),
            None => format!("wall   {} (no cap)", format_duration(b.wall_secs)),
        };
        lines.extend([Line::from(tokens), Line::from(usd), Line::from(wall)]);
        let families: Vec<String> = b
            .families
            .iter()
            .map(|(name, fs)| format!("{name} {} tok ${:.2}", fs.usage.total(), fs.usd))
            .collect();
        if !families.is_empty() {
            lines.push(Line::from(families.join("  ")));
        }
    }
    f.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(" Spend ")),
        area,
    );
}

fn needs_box(f: &mut Frame<'_>, area: Rect, app: &App) {
    let items = app
        .snap
        .as_ref()
        .map(|s| s.needs_you.as_slice())
        .unwrap_or_default();
    let lines: Vec<Line<'_>> = if items.is_empty() {
        vec![Line::from("nothing needs you")]
    } else {
        items
            .iter()
            .map(|n| Line::styled(n.clone(), fg(app, Color::Red)))
            .collect()
    };
    f.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: true })
            .block(Block::bordered().title(format!(" Needs you ({}) ", items.len()))),
        area,
    );
}

fn log_box(f: &mut Frame<'_>, area: Rect, app: &App) {
    let rel = match app.log_paths.as_slice() {
        [] => "no log yet".to_owned(),
        [one] => app.paths.rel(one),
        [first, ..] => {
            let name = first
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let attempt = name.split('-').next().unwrap_or("");
            first.parent().map_or_else(String::new, |d| {
                format!("{}/{attempt}-*.log", app.paths.rel(d))
            })
        }
    };
    let mode = if app.follow {
        "following".to_owned()
    } else {
        format!("{} up", app.scroll)
    };
    let title = format!(
        " Log: {} [{rel}] ({mode}) ",
        app.selected_stage().unwrap_or_default()
    );
    let height = usize::from(area.height.saturating_sub(2));
    let end = app
        .log
        .len()
        .saturating_sub(if app.follow { 0 } else { app.scroll });
    let start = end.saturating_sub(height);
    let lines: Vec<Line<'_>> = app.log[start..end]
        .iter()
        .map(|l| Line::from(l.as_str()))
        .collect();
    f.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(title)),
        area,
    );
}

#[cfg(test)]
mod tests {
    use super::bar;

    #[test]
    fn bars_fill_and_clamp() {
        assert_eq!(bar(0.0, 4), "[----]");
        assert_eq!(bar(0.5, 4), "[##--]");
        assert_eq!(bar(3.0, 4), "[####]");
        assert_eq!(bar(f64::NAN, 4), "[----]");
    }
}
