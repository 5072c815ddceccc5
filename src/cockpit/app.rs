//! The cockpit's state (selected stage, log follow/scroll) and its event loop: one thread reads
//! the terminal (keys, resizes), one watches the state files ([`super::watch`]), and the main
//! thread blocks on a channel fed by both, reloading only what changed and redrawing. A
//! once-a-second timeout only moves the clock and the deadline bars (no file is read then),
//! and a full reload every 15 s catches a job that died without touching a file.
//!
//! Read-only: it never takes the tick lock and never changes state.

use std::path::PathBuf;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use ratatui::crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use super::source::{self, Snapshot};
use super::watch::{self, Change};
use crate::error::{NsError, NsResult};
use crate::paths::Paths;

/// Lines of log kept for the log pane.
const LOG_LINES: usize = 500;
const SAFETY_RELOAD: Duration = Duration::from_secs(15);

/// What the cockpit shows and where the user is in it.
pub struct App {
    pub paths: Paths,
    pub snap: Option<Snapshot>,
    /// The last load error (a state file being replaced, say), shown instead of a crash.
    pub error: Option<String>,
    pub selected: usize,
    /// Follow the log's end (true) or stay `scroll` lines above it.
    pub follow: bool,
    pub scroll: usize,
    /// The logs shown (the running job's, or every log of the latest attempt).
    pub log_paths: Vec<PathBuf>,
    pub log: Vec<String>,
    pub color: bool,
    pub repo: String,
}

enum Msg {
    Key(KeyEvent),
    Resize,
    Changed(Change),
}

impl App {
    #[must_use]
    pub fn new(paths: Paths, color: bool) -> Self {
        let repo = paths
            .root
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Self {
            paths,
            snap: None,
            error: None,
            selected: 0,
            follow: true,
            scroll: 0,
            log_paths: Vec::new(),
            log: Vec::new(),
            color,
            repo,
        }
    }

    /// Re-reads the state files, then the log.
    pub fn reload(&mut self) {
        match source::load(&self.paths) {
            Ok(s) => {
                self.snap = Some(s);
                self.error = None;
            }
            Err(e) => self.error = Some(e.to_string().lines().next().unwrap_or("").to_owned()),
        }
        let n = self.snap.as_ref().map_or(0, |s| s.status.stages.len());
        self.selected = self.selected.min(n.saturating_sub(1));
        self.reload_log();
    }

    /// Re-reads the selected stage's log.
    pub fn reload_log(&mut self) {
        let stage = self.selected_stage();
        self.log_paths = match (&self.snap, stage) {
            (Some(s), Some(id)) => source::log_paths(&self.paths, s, &id),
            _ => Vec::new(),
        };
        self.log = source::logs_tail(&self.log_paths, LOG_LINES);
    }

    #[must_use]
    pub fn selected_stage(&self) -> Option<String> {
        self.snap
            .as_ref()
            .and_then(|s| s.status.stages.get(self.selected))
            .map(|s| s.id.clone())
    }

    /// Moves the clock on (deadline bars) without reading any file.
    pub fn tick_clock(&mut self) {
        if let (Some(s), Ok(now)) = (self.snap.as_mut(), crate::now::now()) {
            s.now = now;
        }
    }

    /// Handles a key; returns false when the cockpit should exit.
    pub fn key(&mut self, k: KeyEvent) -> bool {
        let n = self.snap.as_ref().map_or(0, |s| s.status.stages.len());
        let before = self.selected;
        match k.code {
            KeyCode::Char('q') | KeyCode::Esc => return false,
            KeyCode::Char('c') if k.modifiers.contains(KeyModifiers::CONTROL) => return false,
            KeyCode::Down | KeyCode::Char('j') | KeyCode::Tab => {
                self.selected = (self.selected + 1).min(n.saturating_sub(1));
            }
            KeyCode::Up | KeyCode::Char('k') | KeyCode::BackTab => {
                self.selected = self.selected.saturating_sub(1);
            }
            KeyCode::Char('f') | KeyCode::End => {
                self.follow = !self.follow || k.code == KeyCode::End;
                self.scroll = 0;
            }
            KeyCode::PageUp => {
                self.follow = false;
                self.scroll = (self.scroll + 10).min(self.log.len());
            }
            KeyCode::PageDown => {
                self.scroll = self.scroll.saturating_sub(10);
                self.follow = self.scroll == 0;
            }
            KeyCode::Char('r') => self.reload(),
            _ => {}
        }
        if self.selected != before {
            self.follow = true;
            self.scroll = 0;
            self.reload_log();
        }
        true
    }
}

/// Runs the full-screen cockpit until `q`.
///
/// # Errors
/// When the terminal cannot be set up or drawn on.
pub fn run(paths: Paths, color: bool) -> NsResult<()> {
    let io =
        |e: std::io::Error| NsError::failure("cannot draw on the terminal").cause(e.to_string());
    let mut app = App::new(paths, color);
    app.reload();
    let (tx, rx) = mpsc::channel::<Msg>();
    watch::spawn(&app.paths, tx.clone(), Msg::Changed);
    std::thread::spawn(move || {
        loop {
            let msg = match event::read() {
                Ok(Event::Key(k)) if k.kind != KeyEventKind::Release => Msg::Key(k),
                Ok(Event::Resize(..)) => Msg::Resize,
                Ok(_) => continue,
                Err(_) => return,
            };
            if tx.send(msg).is_err() {
                return;
            }
        }
    });
    let mut term = super::term::Term::enter().map_err(io)?;
    let mut last_reload = Instant::now();
    loop {
        term.draw(|f| super::draw::frame(f, &app)).map_err(io)?;
        let first = match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(m) => m,
            Err(RecvTimeoutError::Timeout) => {
                if last_reload.elapsed() >= SAFETY_RELOAD {
                    app.reload();
                    last_reload = Instant::now();
                } else {
                    app.tick_clock();
                }
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => return Ok(()),
        };
        // Coalesce a burst (a tick writes several files; an agent streams many lines).
        let (mut state, mut log) = (false, false);
        for m in std::iter::once(first).chain(rx.try_iter()) {
            match m {
                Msg::Key(k) => {
                    if !app.key(k) {
                        return Ok(());
                    }
                }
                Msg::Resize => term.autoresize().map_err(io)?,
                Msg::Changed(Change::State) => state = true,
                Msg::Changed(Change::Log) => log = true,
            }
        }
        if state {
            app.reload();
            last_reload = Instant::now();
        } else if log {
            app.reload_log();
        }
    }
}
