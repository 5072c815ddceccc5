//! The terminal while the cockpit runs: raw mode, the alternate screen and a hidden cursor,
//! all undone when [`Term`] is dropped (on `q`, on an error, and on a panic's unwinding), so
//! the user's shell is never left in raw mode.

use std::io::Stdout;

use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::{cursor, execute, terminal};

/// The cockpit's terminal; restores the user's terminal when dropped.
pub struct Term {
    inner: Terminal<CrosstermBackend<Stdout>>,
}

impl Term {
    /// Enters raw mode and the alternate screen.
    ///
    /// # Errors
    /// When the terminal refuses raw mode or cannot be written.
    pub fn enter() -> std::io::Result<Self> {
        terminal::enable_raw_mode()?;
        let mut out = std::io::stdout();
        if let Err(e) = execute!(out, terminal::EnterAlternateScreen, cursor::Hide) {
            let _ = terminal::disable_raw_mode();
            return Err(e);
        }
        let inner = Terminal::new(CrosstermBackend::new(out))?;
        Ok(Self { inner })
    }

    /// Draws one frame (only the cells that changed reach the terminal).
    ///
    /// # Errors
    /// When the terminal cannot be written.
    pub fn draw(&mut self, f: impl FnOnce(&mut ratatui::Frame<'_>)) -> std::io::Result<()> {
        self.inner.draw(f).map(|_| ())
    }

    /// Adopts the terminal's new size; the next draw repaints everything. (Not
    /// `Terminal::clear`: it asks the terminal for the cursor position and waits for the
    /// answer on stdin, which the input thread is reading, so the frame would stall.)
    ///
    /// # Errors
    /// When the size cannot be read.
    pub fn autoresize(&mut self) -> std::io::Result<()> {
        self.inner.autoresize()
    }
}

impl Drop for Term {
    fn drop(&mut self) {
        let _ = execute!(
            std::io::stdout(),
            cursor::Show,
            terminal::LeaveAlternateScreen
        );
        let _ = terminal::disable_raw_mode();
    }
}
