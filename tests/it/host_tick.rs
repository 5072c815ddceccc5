//! The host registry and `tick --all` / `status --all` through the real binary: subscribe,
//! unsubscribe and `repos`; a pass that advances the healthy repository past a corrupt and a
//! deleted one; round robin; one host-wide lock.

use std::fs::OpenOptions;

use super::hostenv::HostEnv;
use super::night::{CONFIG, Night, PASS, script, stderr, stdout, writes};

pub fn ready_repo(id: &str) -> Night {
    ready_repo_with(id, CONFIG)
}

fn ready_repo_with(id: &str, config: &str) -> Night {
    let n = Night::with_config(config);
    n.init();
    let front = format!(
        "acceptance:\n  - test -f {id}.txt\n{}",
        script(&[writes(&format!("{id}.txt"), "x\n")], &[PASS])
    );
    let c = n.card(id, &front, "# Objective\nWrite the file.");
    n.add(&[&c]);
    n
}

pub fn repo_arg(n: &Night) -> String {
    n.repo.display().to_string()
}

#[test]
fn subscribe_is_idempotent_and_refuses_what_is_not_set_up() {
    let host = HostEnv::new();
    let n = Night::new();
    let out = host.ns(&["subscribe", &repo_arg(&n)]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(stderr(&out).contains("init"), "{}", stderr(&out));
    n.init();
    host.ok(&["subscribe", &repo_arg(&n)]);
    assert!(
        host.ok(&["subscribe", &repo_arg(&n)])
            .contains("already subscribed")
    );
    let v = host.json(&["repos", "--json"]);
    let repos = v["repos"].as_array().unwrap();
    assert_eq!(repos.len(), 1, "{v:#}");
    assert_eq!(repos[0]["initialised"], true);
    assert!(
        host.path("nshome/repos.json").is_file(),
        "the registry lives in NIGHTSHIFT_HOME"
    );

    // A deleted repository can still be unsubscribed by its path; an unknown one cannot.
    let path = n.repo.clone();
    std::fs::remove_dir_all(&path).unwrap();
    assert!(host.ok(&["repos"]).contains("(missing)"));
    host.ok(&["unsubscribe", &path.display().to_string()]);
    let out = host.ns(&["unsubscribe", &path.display().to_string()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("nightshift repos"),
        "{}",
        stderr(&out)
    );

    // A registry that does not validate is named, never guessed at.
    std::fs::write(
        host.path("nshome/repos.json"),
        "{\"version\":1,\"repos\":[{}]}",
    )
    .unwrap();
    let out = host.ns(&["repos"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("repos.json"), "{}", stderr(&out));
}

#[test]
fn tick_all_advances_the_healthy_repo_past_a_corrupt_and_a_deleted_one() {
    let mut host = HostEnv::new();
    let capped = format!("{CONFIG}host: {{ max_tokens: 987654321 }}\n");
    let (good, corrupt, gone) = (
        ready_repo_with("g", &capped),
        ready_repo("c"),
        ready_repo("d"),
    );
    for n in [&good, &corrupt, &gone] {
        host.ok(&["subscribe", &repo_arg(n)]);
    }
    let bad = "seq: [oops\n";
    corrupt.write("state/state.yaml", bad);
    std::fs::remove_dir_all(&gone.repo).unwrap();

    let mut done = false;
    for _ in 0..30 {
        let out = host.ns(&["tick", "--all", "--json"]);
        assert_eq!(
            out.status.code(),
            Some(1),
            "a failed repo makes the pass exit 1: {}",
            stderr(&out)
        );
        let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
        assert_eq!(v["repos"].as_array().unwrap().len(), 3, "{v:#}");
        host.minute += 1;
        good.settle();
        if good.stage("g")["status"] == "done" {
            done = true;
            break;
        }
    }
    assert!(done, "the healthy repo never finished: {:#}", good.status());
    assert_eq!(
        corrupt.read("state/state.yaml"),
        bad,
        "a corrupt state file is never overwritten"
    );

    let v = host.json(&["status", "--all", "--json"]);
    let by = |n: &Night| {
        v["repos"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["path"] == repo_arg(n))
            .cloned()
            .unwrap()
    };
    assert_eq!(by(&good)["state"], "ok", "{v:#}");
    assert_eq!(by(&good)["stages"]["done"], 1);
    assert_eq!(by(&corrupt)["state"], "broken");
    let hint = by(&corrupt)["error"]["hint"].as_str().unwrap().to_owned();
    assert!(
        hint.contains(&format!("nightshift --repo {} repair", repo_arg(&corrupt))),
        "{hint}"
    );
    assert_eq!(by(&gone)["state"], "missing");
    assert!(
        by(&gone)["error"]["hint"]
            .as_str()
            .unwrap()
            .contains("unsubscribe")
    );
    assert_eq!(
        by(&good)["last_tick"]["result"],
        "advanced",
        "the last pass integrated it"
    );
    assert_eq!(by(&corrupt)["last_tick"]["result"], "error");

    assert_eq!(
        v["host"]["max_tokens"], 987654321,
        "the host cap is shown: {v:#}"
    );
    let text = host.ok(&["status", "--all"]);
    assert!(
        text.contains("broken") && text.contains("missing"),
        "{text}"
    );
    assert!(text.contains("fix: run `nightshift --repo"), "{text}");
    assert!(text.contains("host caps: max_tokens 987654321"), "{text}");
}

#[test]
fn tick_all_is_round_robin_under_one_host_lock() {
    let host = HostEnv::new();
    let repos: Vec<Night> = (0..3)
        .map(|_| {
            let n = Night::new();
            n.init();
            n
        })
        .collect();
    for n in &repos {
        host.ok(&["subscribe", &repo_arg(n)]);
    }
    let names: Vec<String> = repos.iter().map(repo_arg).collect();
    let visited = || -> Vec<String> {
        let rec: serde_json::Value =
            serde_json::from_str(&host.read("state/tick-all.json")).unwrap();
        rec["visited"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap().to_owned())
            .collect()
    };
    host.ok(&["tick", "--all"]);
    assert_eq!(visited(), names);
    host.ok(&["tick", "--all"]);
    assert_eq!(
        visited(),
        [names[1].clone(), names[2].clone(), names[0].clone()]
    );
    host.ok(&["tick", "--all"]);
    assert_eq!(
        visited(),
        [names[2].clone(), names[0].clone(), names[1].clone()]
    );

    // While another pass holds the host lock, a second one exits 0 at once and records nothing.
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(host.path("state/tick-all.lock"))
        .unwrap();
    lock.try_lock().unwrap();
    let v = host.json(&["tick", "--all", "--json"]);
    assert_eq!(v["result"], "busy");
    assert_eq!(
        visited(),
        [names[2].clone(), names[0].clone(), names[1].clone()]
    );
    drop(lock);
    host.ok(&["tick", "--all"]);
    assert_eq!(visited(), names);
}

#[test]
fn a_slow_repo_gets_its_slice_and_the_pass_moves_on() {
    let mut host = HostEnv::new();
    let (slow, fast) = (ready_repo("s"), ready_repo("f"));
    for n in [&slow, &fast] {
        host.ok(&["subscribe", &repo_arg(n)]);
    }
    // git is slow, once, in the first repository only (a hung network file system, say).
    let real_git = String::from_utf8(
        std::process::Command::new("sh")
            .args(["-c", "command -v git"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let wrapper = host.path("bin/slow-git");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\ncase \"$PWD\" in '{}'*) [ -e '{m}' ] || {{ touch '{m}'; sleep 3; }} ;; esac\nexec '{}' \"$@\"\n",
            slow.repo.display(),
            real_git.trim(),
            m = host.path("slept").display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    host.extra_env
        .push(("NIGHTSHIFT_GIT".into(), wrapper.display().to_string()));

    let v = host.json(&["tick", "--all", "--slice", "1s", "--json"]);
    let result = |n: &Night| {
        v["repos"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["repo"] == repo_arg(n))
            .map(|r| r["result"].as_str().unwrap_or_default().to_owned())
            .unwrap()
    };
    assert_eq!(result(&slow), "slow", "{v:#}");
    assert_eq!(result(&fast), "advanced", "{v:#}");

    // The slow tick was left to finish on its own, holding its repository's lock meanwhile.
    let lock = OpenOptions::new()
        .write(true)
        .open(slow.path("state/.lock"))
        .unwrap();
    lock.lock().unwrap();
    drop(lock);
    assert_ne!(
        slow.stage("s")["status"],
        "queued",
        "the slow tick still did its step"
    );
}

/// `heartbeat --all` (what the installed scheduler runs every minute) visits every subscribed
/// repository; a deleted one is reported with its fix and never stops the healthy one.
#[test]
fn heartbeat_all_checks_every_repo_and_a_broken_one_never_stops_the_others() {
    let host = HostEnv::new();
    let (good, gone) = (ready_repo("g"), ready_repo("d"));
    for n in [&good, &gone] {
        host.ok(&["subscribe", &repo_arg(n)]);
    }
    std::fs::remove_dir_all(&gone.repo).unwrap();
    let out = host.ns(&["heartbeat", "--all", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let repos = v["repos"].as_array().unwrap();
    assert_eq!(repos.len(), 2, "{v:#}");
    assert!(
        good.path("state/heartbeat.json").is_file(),
        "the healthy repo's watchdog ran: {v:#}"
    );
    let text = v.to_string();
    assert!(text.contains("unsubscribe"), "the fix is named: {v:#}");
}
