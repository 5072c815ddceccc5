//! `nightshift report` through the real binary: the digest of a night in Markdown, JSON and
//! HTML (well-formed, self-contained, one timeline bar per attempt), the window remembered
//! between reports, machine sleeps read from the ledger journal, a long ledger read with a
//! fixed number of git processes, and the HTML page rendered by headless Chromium.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use super::night::{Night, PASS, real_git, script, stderr, writes};

const ALL: &str = "2000-01-01T00:00:00Z";

/// A night with one stage done first time (criteria and evidence in its verdict), one that
/// escalates after two partial hand-offs, and one queued afterwards.
fn night() -> Night {
    let mut n = Night::new();
    n.init();
    let verdict = "verdict: { verdict: pass, criteria: [{ id: greets, verdict: pass, evidence: \"out.txt says hi\" }] }";
    let s1 = n.card(
        "s1",
        &format!(
            "acceptance:\n  - grep -q hi out.txt\n{}",
            script(&[writes("out.txt", "hi\n")], &[verdict])
        ),
        "# Objective\nGreet.",
    );
    let partial = "    - steps:\n        - write: { path: half.txt, content: \"half\" }\n        - envelope: { status: partial, summary: \"did half of it\", files_changed: [half.txt] }\n".to_owned();
    let s2 = n.card(
        "s2",
        &format!(
            "max_attempts: 2\nacceptance:\n  - \"true\"\n{}",
            script(&[partial.clone(), partial], &[PASS])
        ),
        "# Objective\nDo it all.",
    );
    n.add(&[&s1, &s2]);
    n.drain(30);
    let s3 = n.card("s3", "depends_on: [s1]\n", "# Objective\nLater.");
    n.add(&[&s3]);
    n
}

fn json(n: &Night, args: &[&str]) -> Value {
    let mut all = vec!["report", "--format", "json"];
    all.extend_from_slice(args);
    serde_json::from_str(&n.ok(&all)).expect("report json")
}

#[test]
fn report_digests_the_night_in_json_and_markdown() {
    let n = night();
    let r = json(&n, &["--since", ALL]);
    assert_eq!(r["version"], 1);
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/report.schema.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    assert!(
        validator.is_valid(&r),
        "the report does not match its schema"
    );
    assert_eq!(r["since_reason"], format!("--since {ALL}"));
    let done = r["done"].as_array().unwrap();
    assert_eq!(done.len(), 1, "{r:#}");
    assert_eq!(done[0]["id"], "s1");
    assert_eq!(done[0]["verdict"], "pass");
    assert_eq!(done[0]["verifier"], "vcodex");
    assert_eq!(done[0]["branch"], "nightshift/stage/s1");
    let evidence: Vec<&str> = done[0]["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert!(
        evidence.contains(&"greets (pass): out.txt says hi"),
        "{evidence:?}"
    );
    assert!(
        evidence
            .iter()
            .any(|e| e.starts_with("acceptance `grep -q hi out.txt` exited 0")),
        "{evidence:?}"
    );
    let commit = n.git(&["rev-parse", "nightshift/stage/s1"]);
    assert_eq!(done[0]["commit"], commit);
    let needs = r["needs_you"].as_array().unwrap();
    assert_eq!(needs.len(), 1, "{r:#}");
    assert_eq!(needs[0]["id"], "s2");
    assert_eq!(needs[0]["status"], "escalated");
    assert_eq!(needs[0]["next"], "`nightshift requeue s2`");
    assert_eq!(needs[0]["evidence_dir"], "state/handoffs/s2/a2/");
    assert!(
        needs[0]["why"].as_str().unwrap().contains("did half of it"),
        "{r:#}"
    );
    let partial = r["partial"].as_array().unwrap();
    assert_eq!(partial.len(), 2, "{r:#}");
    assert_eq!(partial[0]["files"][0], "half.txt");
    assert_eq!(r["queued"][0]["id"], "s3");
    assert_eq!(r["queued"][0]["waits_on"].as_array().unwrap().len(), 0);
    // s1 a1, s2 a1 and a2: three bars, on one lane (lanes: 1).
    let bars = r["attempts"].as_array().unwrap();
    assert_eq!(bars.len(), 3, "{r:#}");
    assert!(bars.iter().all(|b| b["lane"] == 1), "{r:#}");
    let s1 = bars.iter().find(|b| b["stage"] == "s1").unwrap();
    assert_eq!(s1["outcome"], "passed");
    let roles: Vec<&str> = s1["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["worker", "acceptance", "verifier"]);
    assert!(r["commits"].as_u64().unwrap() >= 10, "{r:#}");
    let md = n.ok(&["report", "--since", ALL]);
    for needle in [
        "# nightshift report: repo",
        "## Needs you",
        "### `s2` Stage s2: escalated",
        "Next: `nightshift requeue s2`",
        "## Done (1)",
        "- greets (pass): out.txt says hi",
        "## Partial work",
        "- `s3` Stage s3 (queued, ready)",
    ] {
        assert!(md.contains(needle), "{needle}:\n{md}");
    }
}

#[test]
fn the_next_report_starts_where_the_last_one_ended() {
    let mut n = night();
    let first = json(&n, &[]);
    assert_eq!(first["since_reason"], "the last 24h");
    let marker = n.read("state/.last-report");
    assert!(marker.ends_with(&format!(" {}\n", n.now())), "{marker}");
    n.minute += 5;
    let second = json(&n, &[]);
    assert_eq!(second["since_reason"], "since the last report");
    assert_eq!(second["since"], first["generated_at"]);
    assert_eq!(second["commits"], 0, "{second:#}");
    assert_eq!(second["done"].as_array().unwrap().len(), 0, "{second:#}");
    assert_eq!(
        second["attempts"].as_array().unwrap().len(),
        0,
        "{second:#}"
    );
    // What still needs a human is listed again: it still does.
    assert_eq!(second["needs_you"][0]["id"], "s2");
    let out = n.ns(&["report", "--since", "last tuesday"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("hint: e.g. `nightshift report --since 24h`"),
        "{}",
        stderr(&out)
    );
}

/// Appends a commit with these journal lines to the ledger (same tree), as another writer would.
fn journal_commit(n: &Night, lines: &str) {
    let head = n.ledger_head();
    let msg = format!("nightshift: watchdog\n\n{lines}\n");
    let tree = n.git(&["rev-parse", &format!("{head}^{{tree}}")]);
    let commit = n.git(&["commit-tree", &tree, "-p", &head, "-m", &msg]);
    n.git(&["update-ref", "refs/heads/nightshift/ledger", &commit, &head]);
}

#[test]
fn sleeps_in_the_journal_are_listed_and_shaded() {
    let n = night();
    journal_commit(
        &n,
        "repo: slept from 2027-01-01T01:02:00Z to 2027-01-01T01:04:30Z\ns1: not a sleep line",
    );
    let r = json(&n, &["--since", ALL]);
    let sleeps = r["sleeps"].as_array().unwrap();
    assert_eq!(sleeps.len(), 1, "{r:#}");
    assert_eq!(sleeps[0]["secs"], 150);
    let html = n.ok(&["report", "--since", ALL, "--format", "html"]);
    assert_eq!(html.matches("<rect class=\"sleep\"").count(), 1);
    assert!(
        html.contains("machine asleep from 2027-01-01T01:02:00Z"),
        "{html}"
    );
    let md = n.ok(&["report", "--since", ALL]);
    assert!(
        md.contains("- asleep from 2027-01-01T01:02:00Z to 2027-01-01T01:04:30Z (2m30s)"),
        "{md}"
    );
}

/// A strict well-formedness check: every tag closed in order, attributes quoted, entities
/// known. Returns the element names in document order.
fn well_formed(html: &str) -> Vec<String> {
    let body = html.strip_prefix("<!DOCTYPE html>\n").expect("doctype");
    let mut stack: Vec<String> = Vec::new();
    let mut names = Vec::new();
    let mut rest = body;
    while let Some(i) = rest.find(['<', '&']) {
        let (text_part, tail) = rest.split_at(i);
        assert!(!text_part.contains('>'), "stray > before {tail:.60}");
        if tail.starts_with('&') {
            let end = tail.find(';').expect("entity ends");
            let ent = &tail[1..end];
            assert!(
                ["amp", "lt", "gt", "quot", "#39"].contains(&ent),
                "unknown entity {ent}"
            );
            rest = &tail[end + 1..];
            continue;
        }
        let end = tail.find('>').expect("tag ends");
        let tag = &tail[1..end];
        rest = &tail[end + 1..];
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(stack.pop().as_deref(), Some(name), "mismatched </{name}>");
            continue;
        }
        let self_closing = tag.ends_with('/');
        let tag = tag.trim_end_matches('/');
        let name = tag.split_whitespace().next().expect("tag name").to_owned();
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric()),
            "bad tag {name}"
        );
        let attrs = tag[name.len()..].trim();
        let mut a = attrs;
        while !a.is_empty() {
            let eq = a
                .find("=\"")
                .unwrap_or_else(|| panic!("unquoted attribute in <{tag}>"));
            let close = a[eq + 2..].find('"').expect("attribute closes") + eq + 2;
            a = a[close + 1..].trim_start();
        }
        names.push(name.clone());
        if !self_closing {
            if name == "style" {
                let close = rest.find("</style>").expect("style closes");
                rest = &rest[close + "</style>".len()..];
                continue;
            }
            stack.push(name);
        }
    }
    assert!(stack.is_empty(), "unclosed: {stack:?}");
    names
}

fn html_report(n: &Night) -> (String, String) {
    let out = n.path("state/report.html");
    let printed = n.ok(&[
        "report",
        "--since",
        ALL,
        "--format",
        "html",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(printed.trim(), out.to_str().unwrap());
    let html = std::fs::read_to_string(&out).unwrap();
    (out.display().to_string(), html)
}

#[test]
fn html_is_one_well_formed_self_contained_page_with_a_bar_per_attempt() {
    let n = night();
    let (_, html) = html_report(&n);
    let names = well_formed(&html);
    assert_eq!(names.iter().filter(|n| *n == "svg").count(), 1);
    assert_eq!(html.matches("<rect class=\"attempt ").count(), 3, "{html}");
    assert_eq!(html.matches("<rect class=\"attempt passed\"").count(), 1);
    assert_eq!(html.matches("<rect class=\"attempt failed\"").count(), 2);
    assert!(html.matches("<rect class=\"seg worker\"").count() == 3);
    assert!(
        html.contains("<title>s1 attempt 1: passed"),
        "hover details"
    );
    for banned in [
        "<script", "<link", "<img", "src=", "url(", "@import", "https://",
    ] {
        assert!(!html.contains(banned), "{banned} in the page");
    }
    // The only URL is the SVG namespace, which is never fetched.
    assert_eq!(html.matches("http://").count(), 1);
}

/// Git processes are few and do not grow with the history.
#[test]
fn a_long_ledger_is_read_with_a_fixed_number_of_git_processes() {
    let mut n = night();
    // 3,000 more ledger commits, written with one fast-import.
    let head = n.ledger_head();
    let mut stream = String::new();
    for i in 0..3000 {
        let msg = format!(
            "nightshift #{}: s3: noted\n\ns3: noted {i}\n\nNightshift-Seq: {}\n",
            100 + i,
            100 + i
        );
        stream.push_str(&format!(
            "commit refs/heads/nightshift/ledger\ncommitter nightshift <nightshift@localhost> {} +0000\ndata {}\n{msg}\n",
            1_700_000_000 + i,
            msg.len()
        ));
        if i == 0 {
            stream.push_str(&format!("from {head}\n"));
        }
        stream.push('\n');
    }
    let mut child = Command::new("git")
        .args(["fast-import", "--quiet", "--force"])
        .current_dir(&n.repo)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stream.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success());
    let log = n.root.join("git-calls.log");
    let wrapper = n.root.join("git-wrapper.sh");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\necho \"$1 $2\" >> '{}'\nexec '{}' \"$@\"\n",
            log.display(),
            real_git().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    n.extra_env
        .push(("NIGHTSHIFT_GIT".into(), wrapper.display().to_string()));
    let r = json(&n, &["--since", ALL]);
    let total: u64 = n
        .git(&["rev-list", "--count", "nightshift/ledger"])
        .parse()
        .unwrap();
    assert!(total > 3000);
    assert_eq!(r["commits"].as_u64().unwrap(), total);
    let calls = std::fs::read_to_string(&log).unwrap();
    // open, head, ls-tree, two cat-file batches, log, and the commit before the window; each
    // `log` is preceded by the read of the repository's filter and merge drivers that hardened
    // git does before any command that may convert content (a fixed number all the same).
    assert!(calls.lines().count() <= 9, "{calls}");
}

/// `chromium` on PATH; under `CI=true` its absence fails the test, elsewhere it skips.
fn chromium() -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .flat_map(|d| ["chromium", "chromium-browser"].map(|b| d.join(b)))
        .find(|p| p.is_file());
    if found.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "chromium is not installed, and CI=true (.ci/run installs it)"
        );
        eprintln!("SKIP: chromium is not installed (apt-get install chromium)");
    }
    found
}

/// Renders `file` with headless Chromium at `w`×`h` into `png`.
pub fn screenshot(chromium: &Path, file: &Path, png: &Path, w: u32, h: u32, home: &Path) {
    let out = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            "--disable-dev-shm-usage",
            &format!("--screenshot={}", png.display()),
            &format!("--window-size={w},{h}"),
            &format!("file://{}", file.display()),
        ])
        .env("HOME", home)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "chromium: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn chromium_renders_the_report_to_a_non_blank_png() {
    let Some(chromium) = chromium() else { return };
    let n = night();
    let (file, _) = html_report(&n);
    let png = n.root.join("report.png");
    screenshot(
        &chromium,
        Path::new(&file),
        &png,
        1200,
        900,
        &n.root.join("home"),
    );
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&png).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!((info.width, info.height), (1200, 900));
    let px = info.color_type.samples();
    let pixels: Vec<&[u8]> = buf[..info.buffer_size()].chunks(px).collect();
    let distinct: std::collections::BTreeSet<&[u8]> = pixels.iter().copied().collect();
    assert!(
        distinct.len() > 20,
        "the page rendered blank ({} colours)",
        distinct.len()
    );
    // The timeline's passed (green) and failed (red) bars are on the page.
    let near = |c: [u8; 3]| {
        pixels
            .iter()
            .any(|p| p.iter().zip(c).all(|(a, b)| a.abs_diff(b) < 12))
    };
    assert!(near([0x3f, 0xa9, 0x5b]), "no passed bar in the image");
    assert!(near([0xd9, 0x53, 0x4f]), "no failed bar in the image");
}

#[test]
fn report_before_init_says_how_to_set_up() {
    let n = Night::new();
    let out = n.ns(&["report"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
}

#[test]
fn demo_ends_by_writing_the_report_and_printing_its_path() {
    let n = Night::new();
    let dir = n.root.join("demo");
    // The demo as a user runs it: the real clock, chained ticks.
    let out = Command::new(super::night::BIN)
        .args(["demo", dir.to_str().unwrap()])
        .current_dir(&n.root)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", n.root.join("home"))
        .env("TMPDIR", n.root.join("tmp"))
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let last = text.lines().last().unwrap();
    let path = last
        .strip_prefix("the morning report (open it in a browser): ")
        .unwrap_or_else(|| panic!("last line: {last}"));
    assert_eq!(Path::new(path), dir.join("state/report.html"));
    let html = std::fs::read_to_string(path).unwrap();
    well_formed(&html);
    // Five cards; `spelling` fails acceptance once and `review` is sent back once.
    assert_eq!(html.matches("<rect class=\"attempt ").count(), 7, "{html}");
    assert_eq!(html.matches("<rect class=\"attempt failed\"").count(), 2);
    // Two lanes: the first two stages run side by side, and no more than two at once.
    assert!(
        html.contains(">lane 2</text>") && !html.contains(">lane 3</text>"),
        "{html}"
    );
}

#[test]
fn a_halt_is_the_first_thing_that_needs_you_and_the_retry_is_next() {
    let cfg = super::night::CONFIG.replace(
        "max_consecutive_failures: 50",
        "max_consecutive_failures: 2\n  max_tokens: 5000000",
    ) + "host:\n  max_tokens: 90000000\n";
    let mut n = Night::with_config(&cfg);
    n.init();
    let front = format!(
        "max_attempts: 5\nacceptance: [\"false\"]\n{}",
        script(&[writes("a", "a")], &[PASS])
    );
    let c = n.card("s1", &front, "body");
    n.add(&[&c]);
    for _ in 0..12 {
        n.tick();
        n.settle();
    }
    let r = json(&n, &["--since", ALL]);
    let halt = &r["needs_you"][0];
    assert_eq!(halt["status"], "halted", "{r:#}");
    assert_eq!(
        halt["why"],
        "budget.max_consecutive_failures: 2 attempts failed in a row (cap 2)"
    );
    assert_eq!(
        halt["next"],
        "raise the cap in nightshift.yaml if needed, then `nightshift resume`"
    );
    assert_eq!(r["queued"][0]["id"], "s1");
    assert_eq!(r["queued"][0]["status"], "retry");
    let bars = r["attempts"].as_array().unwrap();
    assert_eq!(bars.len(), 2, "{r:#}");
    assert!(bars.iter().all(|b| b["outcome"] == "failed"));
    assert_eq!(bars[0]["reason"], "acceptance `false` exited 1");
    let once = n.ok(&["attach", "--once"]);
    assert!(
        once.contains("budget.max_consecutive_failures: 2 attempts failed in a row"),
        "{once}"
    );
}
