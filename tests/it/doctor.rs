//! `nightshift doctor`: checks without spending tokens, never prints a secret.

use super::night::{CONFIG, Night, stdout};

#[test]
fn doctor_reports_each_check_and_never_prints_the_secret() {
    let cfg = CONFIG.replace(
        "  vcodex: { kind: script, family: codex }",
        "  vcodex: { kind: script, family: codex }\n  keyed: { kind: command, command: sh, family: other, auth: { route: api, env: MY_AGENT_KEY, pass_as: AGENT_KEY } }\n  missing: { kind: command, command: no-such-agent-cli, family: other2 }",
    );
    let mut n = Night::with_config(&cfg);
    n.init();
    let out = n.ns(&["doctor", "--json"]);
    assert_eq!(out.status.code(), Some(1), "a failed check exits 1");
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let by = |name: &str| {
        v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(by("git")["ok"], true);
    assert_eq!(by("agent wclaude")["ok"], true);
    assert_eq!(by("agent missing")["ok"], false);
    assert!(
        by("agent missing")["hint"]
            .as_str()
            .unwrap()
            .contains("command")
    );
    assert_eq!(
        by("auth keyed")["ok"],
        false,
        "route api with the variable unset fails closed"
    );
    assert!(
        by("auth keyed")["detail"]
            .as_str()
            .unwrap()
            .contains("$MY_AGENT_KEY is not set")
    );
    assert_eq!(by("scheduler")["ok"], false);

    n.extra_env
        .push(("MY_AGENT_KEY".into(), "sk-doctor-canary".into()));
    let out = n.ns(&["doctor"]);
    let text = stdout(&out);
    assert!(text.contains("ok   auth keyed"), "{text}");
    assert!(
        !text.contains("sk-doctor-canary")
            && !String::from_utf8_lossy(&out.stderr).contains("sk-doctor-canary")
    );
}

#[test]
fn doctor_finds_a_cron_line() {
    let mut n = Night::new();
    n.init();
    // A fake `crontab` on PATH that lists a nightshift tick line (the real crontab is never read).
    let bin = n.root.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let script = bin.join("crontab");
    std::fs::write(
        &script,
        "#!/bin/sh\necho '*/5 * * * * /usr/local/bin/nightshift --repo /r tick'\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    n.extra_env.push(("PATH".into(), path));
    let v: serde_json::Value = serde_json::from_str(&stdout(&n.ns(&["doctor", "--json"]))).unwrap();
    let sched = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "scheduler")
        .cloned()
        .unwrap();
    assert_eq!(sched["ok"], true, "{sched}");
}

#[test]
fn doctor_fails_an_aider_of_another_version_than_the_pinned_one() {
    let bins = tempfile::tempdir().unwrap();
    let bin = |name: &str, version: &str| {
        let path = bins.path().join(name);
        std::fs::write(&path, format!("#!/bin/sh\necho 'aider {version}'\n")).unwrap();
        let mut p = std::fs::metadata(&path).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut p, 0o755);
        std::fs::set_permissions(&path, p).unwrap();
        path.display().to_string()
    };
    let (pinned, other) = (bin("aider-pinned", "0.86.2"), bin("aider-old", "0.85.1"));
    let agent = |name: &str, command: &str| {
        format!(
            "\n  {name}: {{ kind: aider, command: {command}, family: gpt, model: openai/gpt-4o, auth: {{ route: api, env: K, pass_as: OPENAI_API_KEY }} }}"
        )
    };
    let cfg = CONFIG.replace(
        "  vcodex: { kind: script, family: codex }",
        &format!(
            "  vcodex: {{ kind: script, family: codex }}{}{}",
            agent("aok", &pinned),
            agent("aold", &other)
        ),
    );
    let n = Night::with_config(&cfg);
    n.init();
    let out = n.ns(&["doctor", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let by = |name: &str| {
        v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(by("agent aok")["ok"], true, "{v:#}");
    let old = by("agent aold");
    assert_eq!(old["ok"], false, "{v:#}");
    assert!(
        old["detail"]
            .as_str()
            .unwrap()
            .contains("nightshift drives version 0.86.2 only"),
        "{old}"
    );
    assert!(
        old["hint"].as_str().unwrap().contains("aider-chat==0.86.2"),
        "{old}"
    );
}
