//! Printing commands whose reader goes away (`nightshift status | head -1`): they stop writing
//! and exit 0 quietly, never a panic with a backtrace.

use std::process::Stdio;

use super::night::{Night, PASS, script, writes};

#[test]
fn every_printing_command_exits_0_quietly_when_its_reader_is_gone() {
    let mut n = Night::new();
    n.init();
    let worker = vec![writes("a.txt", "a")];
    let c = n.card("a", &script(&worker, &[PASS]), "body");
    n.add(&[&c]);
    n.drain(20);
    for args in [
        &["status"][..],
        &["status", "--json"],
        &["log"],
        &["log", "--json"],
        &["doctor"],
        &["doctor", "--json"],
        &["tick", "--json"],
        &["tick"],
        &["agents"],
        &["agents", "--json"],
        &["report"],
        &["report", "--format", "json"],
        &["repos"],
        &["template"],
        &["template", "card"],
        &["template", "config"],
        &["logs", "a"],
        &["completions", "bash"],
        &["man"],
        &["init"],
        &["--help"],
        &["--version"],
        &["status", "--help"],
        &["tick", "--help"],
    ] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader); // every write now fails with EPIPE
        let out = n
            .ns_command(args)
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !err.contains("panicked") && !err.contains("Broken pipe"),
            "{args:?}: {err}"
        );
        assert!(
            out.status.code() == Some(0),
            "{args:?} exited {:?}: {err}",
            out.status.code()
        );
    }
}
