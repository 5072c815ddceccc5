//! `nightshift report`: the morning digest, built from the ledger branch (never from volatile
//! files). [`collect`] reads the ledger with a fixed number of git processes, [`model`] builds
//! the report as data, [`timeline`] packs attempts into lanes and draws the SVG, and [`md`] /
//! [`html`] render it. Only `cmd::report` does I/O around these; nothing here writes state.

pub mod collect;
pub mod evidence;
pub mod html;
pub mod md;
pub mod model;
pub mod timeline;

pub use model::{Report, Window, build};
