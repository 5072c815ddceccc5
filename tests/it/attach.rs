//! `nightshift attach` through the real binary: the full-screen cockpit driven under tmux
//! (its own server socket per test: `new-session -d`, `send-keys`, `capture-pane`,
//! `resize-window`), and the plain refreshing table when stdout is not a terminal.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::night::{BIN, Night, PASS, script, wait_for_child, writes};

/// A repo with `s1` done and `s2`'s worker running (it wrote a file, then hangs).
fn night() -> Night {
    let mut n = Night::new();
    n.init();
    let s1 = n.card(
        "s1",
        &format!(
            "acceptance:\n  - \"true\"\n{}",
            script(&[writes("out.txt", "hi\n")], &[PASS])
        ),
        "# Objective\nGreet.",
    );
    n.add(&[&s1]);
    n.drain(10);
    let hang =
        "    - steps:\n        - write: { path: started.txt, content: \"x\" }\n        - hang\n"
            .to_owned();
    let s2 = n.card("s2", &script(&[hang], &[PASS]), "# Objective\nRun long.");
    n.add(&[&s2]);
    n.tick();
    wait_for_child(&n, "s2@a1-worker");
    n
}

/// `tmux` on PATH; under `CI=true` its absence fails the test, elsewhere it skips.
fn tmux() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .map(|d| d.join("tmux"))
        .find(|p| p.is_file());
    if found.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "tmux is not installed, and CI=true (.ci/run installs it)"
        );
        eprintln!("SKIP: tmux is not installed (apt-get install tmux)");
    }
    found
}

/// A tmux server of our own (socket in the test's temp dir), killed on drop.
struct Tmux {
    bin: PathBuf,
    socket: PathBuf,
}

impl Tmux {
    fn cmd(&self, args: &[&str]) -> String {
        let out = Command::new(&self.bin)
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .env_remove("TMUX")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn capture(&self) -> String {
        self.cmd(&["capture-pane", "-p", "-t", "t"])
    }

    /// Waits until the screen satisfies `ok`; returns it.
    fn wait(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let screen = self.capture();
            if ok(&screen) {
                return screen;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "{what}; screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new(&self.bin)
            .arg("-S")
            .arg(&self.socket)
            .arg("kill-server")
            .stderr(Stdio::null())
            .status();
    }
}

/// Starts `nightshift attach` in a detached 120x40 session; its exit code goes to `exit_file`.
fn start(n: &Night, bin: PathBuf, exit_file: &Path, extra_env: &str) -> Tmux {
    let t = Tmux {
        bin,
        // One server per session: a socket of a server that is still shutting down is never reused.
        socket: exit_file.with_extension("sock"),
    };
    let shell = format!(
        "env -i PATH='{}' HOME='{}' TERM=xterm-256color NIGHTSHIFT_NOW='{}' {extra_env} '{BIN}' --repo '{}' attach; echo \"exit=$?\" > '{}'; sleep 30",
        std::env::var("PATH").unwrap_or_default(),
        n.root.join("home").display(),
        n.now(),
        n.repo.display(),
        exit_file.display()
    );
    t.cmd(&[
        "-f",
        "/dev/null",
        "new-session",
        "-d",
        "-s",
        "t",
        "-x",
        "120",
        "-y",
        "40",
        &shell,
    ]);
    t
}

#[test]
fn cockpit_under_tmux_shows_stages_agents_switches_logs_redraws_and_quits() {
    let Some(bin) = tmux() else { return };
    let n = night();
    let exit_file = n.root.join("attach.exit");
    let t = start(&n, bin, &exit_file, "");
    let screen = t.wait("stage and agent rows", |s| {
        s.contains("Stages (2)") && s.contains("s2 a1 worker pid") && s.contains("Log: s1")
    });
    for needle in [
        "s1",
        "done",
        "s2",
        "working",
        "1/3",
        "alive",
        "Needs you (0)",
        "Spend",
    ] {
        assert!(screen.contains(needle), "{needle}:\n{screen}");
    }
    assert!(
        screen.lines().any(|l| l.contains("> s1")),
        "s1 selected:\n{screen}"
    );
    // A finished stage shows the logs of its last attempt (the pane holds the tail: the
    // verifier's, rendered as `logs` renders it).
    for needle in [
        "Log: s1 [state/logs/s1/a1-*.log]",
        "── a1-verifier.log ──",
        "agent: Review complete.",
    ] {
        assert!(screen.contains(needle), "{needle}:\n{screen}");
    }
    // `j` selects s2, and the log pane switches to its running worker's log.
    t.cmd(&["send-keys", "-t", "t", "j"]);
    let screen = t.wait("the log follows the selection", |s| {
        s.contains("Log: s2 [state/logs/s2/a1-worker.log]") && s.contains("write started.txt: ok")
    });
    assert!(
        screen.lines().any(|l| l.contains("> s2")),
        "s2 selected:\n{screen}"
    );
    // A resize redraws the whole frame at the new size.
    t.cmd(&["resize-window", "-t", "t", "-x", "100", "-y", "30"]);
    let screen = t.wait("a redraw at 100x30", |s| {
        s.lines()
            .any(|l| l.starts_with('└') && l.ends_with('┘') && l.chars().count() == 100)
    });
    assert!(screen.lines().all(|l| l.chars().count() <= 100), "{screen}");
    assert!(screen.contains("Log: s2"), "{screen}");
    // It only reads: a state change by an operator command goes through while it runs.
    n.ok(&["cancel", "s2"]);
    t.wait("the cancel shows", |s| s.contains("cancelled"));
    t.cmd(&["send-keys", "-t", "t", "q"]);
    let start = Instant::now();
    while std::fs::read_to_string(&exit_file)
        .unwrap_or_default()
        .trim()
        != "exit=0"
    {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "attach did not exit 0 on q"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn no_color_means_no_colour_codes() {
    let Some(bin) = tmux() else { return };
    let n = night();
    let screen_with = |env: &str, exit: &str| {
        let t = start(&n, bin.clone(), &n.root.join(exit), env);
        t.wait("drawn", |s| s.contains("Stages (2)"));
        let s = t.cmd(&["capture-pane", "-p", "-e", "-t", "t"]);
        t.cmd(&["send-keys", "-t", "t", "q"]);
        s
    };
    // tmux reports colours as 256-colour SGR codes (foreground 38;5;N, background 48;5;N).
    let colour = |s: &str| s.contains("\u{1b}[38;5;") || s.contains("\u{1b}[48;5;");
    let coloured = screen_with("", "a.exit");
    assert!(colour(&coloured), "expected colour codes:\n{coloured:?}");
    let plain = screen_with("NO_COLOR=1", "b.exit");
    assert!(!colour(&plain), "colour despite NO_COLOR:\n{plain:?}");
    assert!(plain.contains("> s1"), "{plain}");
}

#[test]
fn without_a_terminal_it_prints_a_table_again_on_every_change() {
    let n = night();
    let once = n.ok(&["attach", "--once"]);
    assert!(once.contains("STAGE"), "{once}");
    assert!(
        once.lines()
            .any(|l| l.starts_with("s2") && l.contains("working")),
        "{once}"
    );
    assert!(once.contains("  s2 a1 worker pid "), "{once}");
    let mut child = Command::new(BIN)
        .args(["--repo", n.repo.to_str().unwrap(), "attach"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", n.root.join("home"))
        .env("NIGHTSHIFT_NOW", n.now())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let read_until = |needle: &str| {
        let mut seen = String::new();
        loop {
            let line = rx
                .recv_timeout(Duration::from_secs(20))
                .unwrap_or_else(|_| panic!("no {needle:?} in:\n{seen}"));
            seen.push_str(&line);
            seen.push('\n');
            if line.contains(needle) {
                return seen;
            }
        }
    };
    let first = read_until("needs you:");
    assert!(
        !first.contains('\u{1b}'),
        "escape codes in a pipe: {first:?}"
    );
    n.ok(&["cancel", "s2"]);
    let second = read_until("cancelled");
    assert!(second.contains("STAGE"), "{second}");
    let _ = child.kill();
    let _ = child.wait();
}
