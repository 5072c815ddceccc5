//! `install` / `uninstall` for systemd, cron and launchd through the real binary, every one
//! pointed at temp dirs with fake `crontab`, `systemctl` and `launchctl` first on PATH: the
//! generated units verify (`systemd-analyze verify`), plists parse back, two installs make one
//! crontab block, a tick run exactly as the entry runs it (its argv and environment under
//! `env -i`) drains a card, and uninstall leaves nothing behind.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::host_tick::{ready_repo, repo_arg};
use super::hostenv::HostEnv;
use super::night::{Night, stderr, stdout};

/// Splits a unit-file value into words: `"…"` quoting with `\\` and `\"`, `%%` → `%`, `$$` → `$`.
fn unit_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut chars = line.trim().chars().peekable();
    while let Some(c) = chars.next() {
        if c == ' ' {
            continue;
        }
        let mut w = String::new();
        if c == '"' {
            while let Some(c) = chars.next() {
                match c {
                    '\\' => w.extend(chars.next()),
                    '"' => break,
                    c => w.push(c),
                }
            }
        } else {
            w.push(c);
            while let Some(&c) = chars.peek() {
                if c == ' ' {
                    break;
                }
                w.push(c);
                chars.next();
            }
        }
        words.push(w.replace("%%", "%").replace("$$", "$"));
    }
    words
}

/// What the systemd service runs: argv, environment, working directory.
fn service_run(text: &str) -> (Vec<String>, Vec<(String, String)>, PathBuf) {
    let value = |key: &'static str| text.lines().filter_map(move |l| l.strip_prefix(key));
    let argv = unit_words(value("ExecStart=").next().unwrap());
    let env = value("Environment=")
        .flat_map(unit_words)
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k.to_owned(), v.to_owned())
        })
        .collect();
    let dir = PathBuf::from(
        value("WorkingDirectory=")
            .next()
            .unwrap()
            .replace("%%", "%"),
    );
    (argv, env, dir)
}

/// Runs argv under `env -i` with exactly `env`, in `dir`.
fn run_as_scheduler(argv: &[String], env: &[(String, String)], dir: &Path) -> std::process::Output {
    let mut cmd = Command::new("env");
    cmd.arg("-i");
    for (k, v) in env {
        cmd.arg(format!("{k}={v}"));
    }
    cmd.args(argv).current_dir(dir).output().unwrap()
}

/// The repo's status on the real clock (the scheduled tick runs on it too).
fn real_status(n: &Night) -> serde_json::Value {
    serde_json::from_str(&stdout(
        &n.ns_env(&["status", "--json"], &[("NIGHTSHIFT_NOW", "")]),
    ))
    .unwrap()
}

/// Runs the scheduled tick until the repo's only stage is done.
fn drain_as_scheduler(n: &Night, run: impl Fn() -> std::process::Output) {
    for _ in 0..30 {
        let out = run();
        assert!(
            out.status.success(),
            "scheduled tick failed: {}",
            stderr(&out)
        );
        let start = Instant::now();
        loop {
            let st = real_status(n);
            let s = &st["stages"][0];
            if s["status"] == "done" {
                return;
            }
            if !matches!(s["job"].as_str(), Some("running" | "starting")) {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "job never settled: {st:#}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    panic!("not drained: {:#}", real_status(n));
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn this_binary() -> String {
    std::fs::canonicalize(super::night::BIN)
        .unwrap()
        .display()
        .to_string()
}

// Lesson: when the scheduler's job exits, systemd may kill its whole cgroup (KillMode=process).
// Lesson: under a scheduler PATH is minimal: the unit carries the PATH captured at install.
#[test]
fn systemd_units_verify_a_tick_run_as_the_unit_drains_a_card_and_uninstall_leaves_nothing() {
    let host = HostEnv::new();
    let n = ready_repo("s");
    // Nothing subscribed yet: install still works, and says what to do next.
    let out = host.ok(&["install", "systemd"]);
    assert!(out.contains("nightshift subscribe"), "{out}");
    host.ok(&["subscribe", &repo_arg(&n)]);
    let units = host.path("xdg-config/systemd/user");
    assert_eq!(
        files_in(&units),
        [
            "nightshift-heartbeat.service",
            "nightshift-heartbeat.timer",
            "nightshift-tick.service",
            "nightshift-tick.timer"
        ]
    );
    let log = host.read("systemctl.log");
    assert!(log.contains("--user daemon-reload"), "{log}");
    assert!(
        log.contains("--user enable --now nightshift-tick.timer nightshift-heartbeat.timer"),
        "{log}"
    );

    let rec: serde_json::Value = serde_json::from_str(&host.read("nshome/scheduler.json")).unwrap();
    assert_eq!(rec["kind"], "systemd");
    assert_eq!(rec["binary"], this_binary());
    assert_eq!(rec["interval_secs"], 300);
    assert_eq!(rec["heartbeat_secs"], 60);
    assert_eq!(rec["nightshift_version"], env!("CARGO_PKG_VERSION"));

    // The same kind again: a no-op that exits 0 and calls nothing.
    assert!(host.ok(&["install", "systemd"]).contains("nothing changed"));
    assert_eq!(host.read("systemctl.log"), log);

    let service = std::fs::read_to_string(units.join("nightshift-tick.service")).unwrap();
    for line in ["Type=oneshot", "KillMode=process"] {
        assert!(service.contains(line), "{service}");
    }
    let timer = std::fs::read_to_string(units.join("nightshift-tick.timer")).unwrap();
    for line in [
        "OnBootSec=",
        "OnUnitActiveSec=300s",
        "Persistent=true",
        "RandomizedDelaySec=30s",
    ] {
        assert!(timer.contains(line), "{timer}");
    }
    let heartbeat = std::fs::read_to_string(units.join("nightshift-heartbeat.service")).unwrap();
    assert_eq!(
        service_run(&heartbeat).0,
        [this_binary(), "heartbeat".into(), "--all".into()]
    );
    verify_units(&host, &units);

    let (argv, env, dir) = service_run(&service);
    assert_eq!(
        argv,
        [this_binary(), "tick".into(), "--all".into()],
        "the binary itself, no shell"
    );
    let keys: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "PATH",
            "HOME",
            "NIGHTSHIFT_HOME",
            "NIGHTSHIFT_HOST_DIR",
            "XDG_CONFIG_HOME"
        ]
    );
    assert!(
        env[0]
            .1
            .starts_with(&host.path("bin").display().to_string()),
        "PATH captured at install"
    );
    assert_eq!(dir, host.path("state"));
    drain_as_scheduler(&n, || run_as_scheduler(&argv, &env, &dir));

    let out = host.ok(&["uninstall"]);
    assert!(out.contains("removed"), "{out}");
    assert!(
        host.read("systemctl.log")
            .contains("--user disable --now nightshift-tick.timer nightshift-heartbeat.timer")
    );
    assert_eq!(
        files_in(&units),
        Vec::<String>::new(),
        "uninstall leaves no unit behind"
    );
    assert!(!host.path("nshome/scheduler.json").exists());
    assert!(host.ok(&["uninstall"]).contains("nothing to uninstall"));
}

/// `systemd-analyze verify` on the generated units (CI installs systemd when it is missing).
fn verify_units(host: &HostEnv, units: &Path) {
    let Some(analyze) = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
    else {
        assert!(
            std::env::var("CI").is_err(),
            "systemd-analyze is missing on CI"
        );
        eprintln!("SKIP: systemd-analyze is not installed");
        return;
    };
    let runtime = host.path("runtime");
    std::fs::create_dir_all(&runtime).unwrap();
    std::fs::set_permissions(
        &runtime,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let mut cmd = Command::new(analyze);
    host.env(&mut cmd);
    let out = cmd
        .env("XDG_RUNTIME_DIR", &runtime)
        .args(["--user", "verify"])
        .args(files_in(units).iter().map(|f| units.join(f)))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "systemd-analyze verify: {}{}",
        stdout(&out),
        stderr(&out)
    );
    let complaints: Vec<&str> = std::str::from_utf8(&out.stderr)
        .unwrap()
        .lines()
        .filter(|l| l.contains("nightshift"))
        .collect();
    assert!(
        complaints.is_empty(),
        "systemd-analyze verify: {complaints:#?}"
    );
}

#[test]
fn systemd_without_a_user_manager_prints_the_commands_and_linger() {
    let host = HostEnv::new();
    std::fs::write(host.path("systemctl.unreachable"), "").unwrap();
    let out = host.ok(&["install", "systemd", "--interval", "10m"]);
    assert!(
        out.contains("systemctl --user daemon-reload && systemctl --user enable --now"),
        "{out}"
    );
    assert!(out.contains("loginctl enable-linger"), "{out}");
    let timer = host.read("xdg-config/systemd/user/nightshift-tick.timer");
    assert!(timer.contains("OnUnitActiveSec=600s"), "{timer}");
    // --print writes nothing.
    let host2 = HostEnv::new();
    let out = host2.ok(&["install", "systemd", "--print"]);
    assert!(out.contains("KillMode=process"), "{out}");
    assert!(!host2.path("xdg-config/systemd").exists());
    assert!(!host2.path("nshome/scheduler.json").exists());
}

// Lesson: under cron the working directory is $HOME and PATH is minimal: the line sets both.
#[test]
fn cron_block_is_idempotent_refuses_a_second_kind_and_uninstall_restores_the_table_byte_for_byte() {
    let host = HostEnv::new();
    let n = ready_repo("c");
    host.ok(&["subscribe", &repo_arg(&n)]);
    let mine = "MAILTO=me@example.invalid\n0 3 * * * /usr/bin/backup --all   \n# a comment\n";
    std::fs::write(host.path("crontab.txt"), mine).unwrap();
    host.ok(&["install", "cron"]);
    assert!(host.ok(&["install", "cron"]).contains("nothing changed"));
    let table = host.read("crontab.txt");
    assert!(table.starts_with(mine), "{table}");
    assert_eq!(table.matches("# BEGIN nightshift").count(), 1, "{table}");
    assert_eq!(table.matches("# END nightshift").count(), 1, "{table}");
    let lines: Vec<&str> = table[mine.len()..].lines().collect();
    assert_eq!(lines.len(), 4, "{table}");
    assert!(lines[1].starts_with("*/5 * * * * cd "), "{table}");
    assert!(lines[2].starts_with("* * * * * cd "), "{table}");
    assert!(
        lines[1].contains(&format!(" exec '{}' 'tick' '--all' >>", this_binary())),
        "{table}"
    );
    assert!(lines[2].contains("'heartbeat' '--all'"), "{table}");
    assert!(
        !lines[1].contains("sh -c") && !lines[1].contains(" env "),
        "{table}"
    );

    // The line as cron runs it: `sh -c` with cron's own bare environment.
    let command: String = lines[1].splitn(6, ' ').nth(5).unwrap().replace("\\%", "%");
    let cron_env = [
        ("HOME".to_owned(), host.path("home").display().to_string()),
        ("PATH".to_owned(), "/usr/bin:/bin".to_owned()),
        ("SHELL".to_owned(), "/bin/sh".to_owned()),
    ];
    let argv = ["/bin/sh".to_owned(), "-c".to_owned(), command];
    drain_as_scheduler(&n, || {
        run_as_scheduler(&argv, &cron_env, &host.path("home"))
    });
    assert!(
        host.path("state/tick.log").exists(),
        "output goes to the log in the host state dir"
    );

    let out = host.ns(&["install", "systemd"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("already installed with cron"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("--replace"), "{}", stderr(&out));
    host.ok(&["install", "systemd", "--replace"]);
    assert_eq!(
        host.read("crontab.txt"),
        mine,
        "--replace removed exactly the block"
    );
    host.ok(&["install", "cron", "--replace"]);
    assert!(
        !host
            .path("xdg-config/systemd/user/nightshift-tick.service")
            .exists()
    );

    host.ok(&["uninstall", "cron"]);
    assert_eq!(
        host.read("crontab.txt"),
        mine,
        "every other byte of the table is as it was"
    );
    assert!(!host.path("nshome/scheduler.json").exists());

    // A table that held only the block is removed, not left empty.
    std::fs::remove_file(host.path("crontab.txt")).unwrap();
    host.ok(&["install", "cron"]);
    host.ok(&["uninstall"]);
    assert!(!host.path("crontab.txt").exists());
    let out = host.ns(&["install", "cron", "--interval", "7m"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "cron cannot run every 7m evenly"
    );
}

// Lesson: launchd kills the job's process group when it exits (AbandonProcessGroup = true).
#[test]
fn launchd_plists_parse_back_load_through_launchctl_and_run_as_launchd_would() {
    let mut host = HostEnv::new();
    let n = ready_repo("l");
    host.ok(&["subscribe", &repo_arg(&n)]);
    let out = host.ok(&["install", "launchd", "--print"]);
    assert!(out.contains("<key>AbandonProcessGroup</key>"), "{out}");
    assert_eq!(
        files_in(&host.path("agents")),
        Vec::<String>::new(),
        "--print writes nothing"
    );
    let out = host.ns(&["install", "launchd"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("only on macOS"), "{}", stderr(&out));

    host.extra_env
        .push(("NIGHTSHIFT_PLATFORM".into(), "macos".into()));
    host.ok(&["install", "launchd"]);
    let agents = host.path("agents");
    assert_eq!(
        files_in(&agents),
        [
            "dev.nightshift.heartbeat.plist",
            "dev.nightshift.tick.plist"
        ]
    );
    let uid = rustix::process::getuid().as_raw();
    let log = host.read("launchctl.log");
    assert!(
        log.contains(&format!(
            "bootstrap gui/{uid} {}",
            agents.join("dev.nightshift.tick.plist").display()
        )),
        "{log}"
    );
    let dict: plist::Dictionary =
        plist::from_file(agents.join("dev.nightshift.tick.plist")).unwrap();
    assert_eq!(dict["Label"].as_string(), Some("dev.nightshift.tick"));
    let argv: Vec<String> = dict["ProgramArguments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_string().unwrap().to_owned())
        .collect();
    assert_eq!(argv, [this_binary(), "tick".into(), "--all".into()]);
    assert_eq!(dict["StartInterval"].as_unsigned_integer(), Some(300));
    assert_eq!(dict["RunAtLoad"].as_boolean(), Some(true));
    assert_eq!(dict["AbandonProcessGroup"].as_boolean(), Some(true));
    assert_eq!(dict["ProcessType"].as_string(), Some("Background"));
    let tick_log = host.path("state/tick.log").display().to_string();
    assert_eq!(dict["StandardOutPath"].as_string(), Some(tick_log.as_str()));
    assert_eq!(
        dict["StandardErrorPath"].as_string(),
        Some(tick_log.as_str())
    );
    let env: Vec<(String, String)> = dict["EnvironmentVariables"]
        .as_dictionary()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_string().unwrap().to_owned()))
        .collect();
    assert!(env.iter().any(|(k, v)| k == "NIGHTSHIFT_HOME" && *v == host.path("nshome").display().to_string()));
    let dir = PathBuf::from(dict["WorkingDirectory"].as_string().unwrap());
    let hb: plist::Dictionary =
        plist::from_file(agents.join("dev.nightshift.heartbeat.plist")).unwrap();
    assert_eq!(hb["StartInterval"].as_unsigned_integer(), Some(60));
    drain_as_scheduler(&n, || run_as_scheduler(&argv, &env, &dir));

    host.ok(&["uninstall"]);
    assert!(
        host.read("launchctl.log")
            .contains(&format!("bootout gui/{uid}/dev.nightshift.tick"))
    );
    assert_eq!(files_in(&agents), Vec::<String>::new());
}

#[test]
fn doctor_checks_the_installed_binary_version_subscription_and_last_tick() {
    let mut host = HostEnv::new();
    let n = Night::new();
    n.init();
    host.ok(&["install", "systemd"]);
    let doctor = |host: &HostEnv| -> serde_json::Value {
        let out = host.ns(&["--repo", &repo_arg(&n), "doctor", "--json"]);
        serde_json::from_str(&stdout(&out)).unwrap()
    };
    let check = |v: &serde_json::Value, name: &str| {
        v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .cloned()
            .unwrap()
    };
    let v = doctor(&host);
    assert_eq!(check(&v, "scheduler")["ok"], true, "{v:#}");
    assert_eq!(check(&v, "scheduler binary")["ok"], true, "{v:#}");
    assert_eq!(check(&v, "last tick")["ok"], true, "just installed: {v:#}");
    assert_eq!(check(&v, "subscribed")["ok"], false);
    assert!(
        check(&v, "subscribed")["hint"]
            .as_str()
            .unwrap()
            .contains("nightshift subscribe")
    );

    host.ok(&["subscribe", &repo_arg(&n)]);
    host.ok(&["tick", "--all"]);
    host.minute += 30;
    let v = doctor(&host);
    assert_eq!(check(&v, "subscribed")["ok"], true);
    assert_eq!(
        check(&v, "last tick")["ok"],
        false,
        "30 minutes without a pass: {v:#}"
    );
    assert!(
        check(&v, "last tick")["hint"]
            .as_str()
            .unwrap()
            .contains("tick.log")
    );

    let rec = host
        .read("nshome/scheduler.json")
        .replace(&this_binary(), "/opt/old/nightshift");
    std::fs::write(host.path("nshome/scheduler.json"), rec).unwrap();
    let v = doctor(&host);
    let c = check(&v, "scheduler binary");
    assert_eq!(c["ok"], false, "{v:#}");
    assert!(
        c["detail"]
            .as_str()
            .unwrap()
            .contains("/opt/old/nightshift"),
        "{c:#}"
    );
    assert!(
        c["hint"]
            .as_str()
            .unwrap()
            .contains("nightshift install systemd"),
        "{c:#}"
    );
}

#[test]
fn completions_and_man_pages_are_generated_from_the_command_line() {
    let host = HostEnv::new();
    let bash = host.ok(&["completions", "bash"]);
    assert!(
        bash.contains("_nightshift") && bash.contains("subscribe"),
        "{bash}"
    );
    assert!(
        host.ok(&["completions", "zsh"])
            .starts_with("#compdef nightshift")
    );
    assert!(
        host.ok(&["completions", "fish"])
            .contains("complete -c nightshift")
    );
    let man = host.ok(&["man"]);
    assert!(
        man.contains(".TH nightshift 1") && man.contains("install"),
        "{man}"
    );
    host.ok(&["man", "--dir", &host.path("man").display().to_string()]);
    let pages = files_in(&host.path("man"));
    for p in ["nightshift.1", "nightshift-install.1", "nightshift-tick.1"] {
        assert!(pages.iter().any(|f| f == p), "{pages:?}");
    }
}
