//! The `nightshift` binary: parses the command line and hands over to [`nightshift::cli`].
//! Owns nothing else; all behaviour lives in the library so tests can reach it.

fn main() {
    std::process::exit(nightshift::cli::main());
}
