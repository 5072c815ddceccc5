//! `nightshift report [--since WHEN] [--format md|html|json] [--out FILE]`: the morning
//! digest from the ledger. The window starts at `--since`, else at the last report (remembered
//! in `state/.last-report`, a volatile cache: `<ledger seq> <RFC 3339 time>`), else 24 h ago.
//! It only reads the ledger; the one file it writes besides `--out` is that marker.

use std::path::{Path, PathBuf};

use jiff::{SignedDuration, Timestamp};

use crate::error::{NsError, NsResult};
use crate::report::collect::{self, CommitWindow};
use crate::report::model::{Caps, Window, attempt_in_window};

/// The default window when there is no earlier report.
const DEFAULT_SECS: u64 = 24 * 3600;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Md,
    Html,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where the window starts: a duration back from now (`24h`, `90m`, `7d`) or an RFC 3339
    /// time (`2026-01-01T22:00:00Z`). Default: the last report, or 24h.
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    /// `md` (default), `html` (one self-contained page with a timeline) or `json`.
    #[arg(long, value_enum, default_value = "md")]
    pub format: Format,
    /// Same as `--format json`.
    #[arg(long)]
    pub json: bool,
    /// Write the report to FILE (atomically) and print its path, instead of printing it.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// # Errors
/// When the repo is not set up, `--since` is invalid, the ledger cannot be read or the output
/// cannot be written.
pub fn run(repo: &Path, args: &Args) -> NsResult<i32> {
    let paths = super::initialised(repo)?;
    let config = crate::store::read_config(&paths)?;
    let git = crate::git::Git::open(&paths.root).map_err(|e| {
        NsError::failure(format!(
            "{} is not a usable git repository",
            paths.root.display()
        ))
        .cause(e.to_string())
    })?;
    let now = crate::now::now()?;
    let (window, commits) = window(&paths, args.since.as_deref(), now)?;
    let view = collect::read(&git, commits, |st, id, n| {
        attempt_in_window(st, id, n, window.since)
    })?;
    let repo_name = paths
        .root
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let caps = Caps {
        max_tokens: config.money.max_tokens,
        max_usd: config.money.max_usd,
        host_max_tokens: config.money.host_max_tokens,
        host_max_usd: config.money.host_max_usd,
        max_wall_secs: config.max_wall_secs,
    };
    let report = crate::report::build(&view, &window, &repo_name, caps);
    let format = if args.json { Format::Json } else { args.format };
    let text = match format {
        Format::Md => crate::report::md::render(&report),
        Format::Html => crate::report::html::render(&report),
        Format::Json => {
            serde_json::to_string_pretty(&report)
                .map_err(|e| NsError::bug(format!("cannot serialise the report: {e}")))?
                + "\n"
        }
    };
    match &args.out {
        Some(out) => {
            crate::store::write_atomic(out, text.as_bytes())?;
            println!("{}", out.display());
        }
        None => print!("{text}"),
    }
    let marker = format!("{} {}\n", view.state.seq, now);
    crate::store::write_atomic(&marker_file(&paths), marker.as_bytes())?;
    Ok(0)
}

fn marker_file(paths: &crate::paths::Paths) -> PathBuf {
    paths.state_dir().join(".last-report")
}

/// The window and which ledger commits it covers.
fn window(
    paths: &crate::paths::Paths,
    since: Option<&str>,
    now: Timestamp,
) -> NsResult<(Window, CommitWindow)> {
    if let Some(text) = since {
        let at = parse_since(text, now)?;
        let w = Window {
            since: at,
            now,
            reason: format!("--since {text}"),
        };
        return Ok((w, CommitWindow::Since(at)));
    }
    let marker = std::fs::read_to_string(marker_file(paths)).unwrap_or_default();
    let mut parts = marker.split_whitespace();
    let last = match (
        parts.next().map(str::parse::<u64>),
        parts.next().map(str::parse::<Timestamp>),
    ) {
        (Some(Ok(seq)), Some(Ok(at))) if at <= now => Some((seq, at)),
        _ => None,
    };
    Ok(match last {
        Some((seq, at)) => (
            Window {
                since: at,
                now,
                reason: "since the last report".into(),
            },
            CommitWindow::AfterSeq(seq),
        ),
        None => {
            let at = back(now, DEFAULT_SECS);
            (
                Window {
                    since: at,
                    now,
                    reason: "the last 24h".into(),
                },
                CommitWindow::Since(at),
            )
        }
    })
}

fn back(now: Timestamp, secs: u64) -> Timestamp {
    let d = SignedDuration::from_secs(i64::try_from(secs).unwrap_or(i64::MAX / 2));
    now.checked_sub(d).unwrap_or(Timestamp::MIN)
}

/// `24h`-style durations back from `now`, or an RFC 3339 time.
///
/// # Errors
/// A usage-style failure naming both accepted forms.
pub fn parse_since(text: &str, now: Timestamp) -> NsResult<Timestamp> {
    if let Ok(t) = text.trim().parse::<Timestamp>() {
        return Ok(t);
    }
    crate::config::parse_duration(text)
        .map(|secs| back(now, secs))
        .map_err(|e| {
            NsError::failure(format!(
                "--since `{text}` is neither a duration nor an RFC 3339 time"
            ))
            .cause(e)
            .hint("e.g. `nightshift report --since 24h` or `--since 2026-01-01T22:00:00Z`")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_durations_and_times() {
        let now: Timestamp = "2027-01-02T06:00:00Z".parse().unwrap();
        assert_eq!(
            parse_since("24h", now).unwrap().to_string(),
            "2027-01-01T06:00:00Z"
        );
        assert_eq!(
            parse_since("90m", now).unwrap().to_string(),
            "2027-01-02T04:30:00Z"
        );
        assert_eq!(
            parse_since("2026-12-31T22:00:00Z", now)
                .unwrap()
                .to_string(),
            "2026-12-31T22:00:00Z"
        );
        let e = parse_since("yesterday", now).unwrap_err();
        assert!(e.to_string().contains("neither a duration"), "{e}");
    }
}
