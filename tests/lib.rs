//! The integration tests: one binary, every test drives the real `nightshift` binary in a temp
//! git repository with a hermetic environment (see `it/night.rs`).

mod it;
