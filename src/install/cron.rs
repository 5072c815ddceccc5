//! cron: one marked block in the user's crontab (`crontab -l` / `crontab -`), a line per job.
//! Installing twice leaves one block; `uninstall` removes exactly the block and leaves every
//! other byte of the table as it was. Each line changes to the working directory, sets the
//! captured environment and `exec`s the binary itself; nightshift's own host lock stands in
//! for `flock`. Never edits a line outside the markers.

use super::plan::{Plan, Report};
use super::tool;
use crate::error::{NsError, NsResult};

pub const BEGIN: &str = "# BEGIN nightshift (written by `nightshift install cron`; `nightshift uninstall cron` removes it)";
pub const END: &str = "# END nightshift";

/// A word for `sh`, in single quotes; `%` escaped for cron (an unescaped one ends the command).
fn sh(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''")).replace('%', "\\%")
}

/// The cron schedule for an interval, when cron can express it evenly.
///
/// # Errors
/// When the interval is not whole minutes dividing an hour, or whole hours dividing a day.
pub fn schedule(secs: u64) -> NsResult<String> {
    let m = secs / 60;
    let even = secs.is_multiple_of(60) && m > 0;
    let spec = match m {
        1 if even => Some("* * * * *".to_owned()),
        2..=59 if even && 60u64.is_multiple_of(m) => Some(format!("*/{m} * * * *")),
        60 if even => Some("0 * * * *".to_owned()),
        _ if even && m.is_multiple_of(60) && 24u64.is_multiple_of(m / 60) => {
            Some(format!("0 */{} * * *", m / 60))
        }
        _ => None,
    };
    spec.ok_or_else(|| {
        NsError::failure(format!("cron cannot run something every {secs}s evenly"))
            .hint("use whole minutes that divide an hour (1m, 2m, 5m, 10m, 15m, 30m) or hours that divide a day")
    })
}

/// The block for `plan`, markers included, newline-terminated.
///
/// # Errors
/// When an interval cannot be expressed in cron.
pub fn block(plan: &Plan) -> NsResult<String> {
    let env: Vec<String> = plan
        .env
        .iter()
        .map(|(k, v)| format!("{k}={}", sh(v)))
        .collect();
    let mut out = format!("{BEGIN}\n");
    for job in &plan.jobs {
        let argv: Vec<String> = plan.argv(job).iter().map(|a| sh(a)).collect();
        out.push_str(&format!(
            "{} cd {} && {} exec {} >>{} 2>&1\n",
            schedule(job.every_secs)?,
            sh(&plan.workdir.to_string_lossy()),
            env.join(" "),
            argv.join(" "),
            sh(&job.log.to_string_lossy()),
        ));
    }
    out.push_str(END);
    out.push('\n');
    Ok(out)
}

/// The table without nightshift's block, and the block found (if any).
///
/// # Errors
/// When a begin marker has no end marker (the table was edited by hand).
pub fn split(table: &str) -> NsResult<(String, Option<String>)> {
    let Some(begin) = table
        .find(&format!("{BEGIN}\n"))
        .filter(|&i| i == 0 || table[..i].ends_with('\n'))
    else {
        return Ok((table.to_owned(), None));
    };
    let Some(end_rel) = table[begin..].find(&format!("\n{END}")) else {
        return Err(NsError::failure(
            "your crontab has a `# BEGIN nightshift` line but no `# END nightshift` line",
        )
        .hint("fix it with `crontab -e`, then run the command again"));
    };
    let mut end = begin + end_rel + 1 + END.len();
    if table[end..].starts_with('\n') {
        end += 1;
    }
    let rest = format!("{}{}", &table[..begin], &table[end..]);
    Ok((rest, Some(table[begin..end].to_owned())))
}

/// The current table (empty when the user has none).
///
/// # Errors
/// When `crontab` is missing or `crontab -l` fails for another reason than "no crontab".
pub fn read_table() -> NsResult<String> {
    let r = tool::run("crontab", &["-l"], None)?;
    if r.ok {
        return Ok(r.stdout);
    }
    if r.stdout.is_empty() && r.stderr.to_lowercase().contains("no crontab") {
        return Ok(String::new());
    }
    Err(NsError::failure("`crontab -l` failed").cause(r.stderr.trim().to_owned()))
}

fn write_table(table: &str) -> NsResult<()> {
    if table.is_empty() {
        tool::run_ok("crontab", &["-r"], None)?;
    } else {
        tool::run_ok("crontab", &["-"], Some(table))?;
    }
    Ok(())
}

/// Adds or replaces the block (or prints it).
///
/// # Errors
/// When an interval cannot be expressed, or `crontab` fails.
pub fn install(plan: &Plan, print: bool) -> NsResult<Report> {
    let new_block = block(plan)?;
    let mut report = Report::default();
    if print {
        report.say(format!(
            "# added to your crontab (crontab -l / crontab -):\n{new_block}"
        ));
        return Ok(report);
    }
    let table = read_table()?;
    let (rest, old) = split(&table)?;
    if old.as_deref() == Some(new_block.as_str()) {
        return Ok(report);
    }
    let updated = match old {
        // Replace in place, so the block keeps its position.
        Some(old_block) => table.replacen(&old_block, &new_block, 1),
        None if rest.is_empty() || rest.ends_with('\n') => format!("{rest}{new_block}"),
        None => format!("{rest}\n{new_block}"),
    };
    write_table(&updated)?;
    report.changed = true;
    report.say("added the nightshift block to your crontab (see `crontab -l`)");
    Ok(report)
}

/// Removes the block, leaving the rest of the table byte for byte.
///
/// # Errors
/// When `crontab` fails or the block is unterminated.
pub fn uninstall() -> NsResult<Report> {
    let mut report = Report::default();
    if crate::proc::which("crontab").is_none() {
        return Ok(report);
    }
    let (rest, old) = split(&read_table()?)?;
    if old.is_some() {
        write_table(&rest)?;
        report.changed = true;
        report.say("removed the nightshift block from your crontab");
    }
    Ok(report)
}

/// The program each line of the installed block execs; `None` without a block.
#[must_use]
pub fn installed() -> Option<Vec<String>> {
    crate::proc::which("crontab")?;
    let (_, block) = split(&read_table().ok()?).ok()?;
    let programs = block?
        .lines()
        .filter_map(|l| l.split(" exec ").nth(1))
        .map(|rest| {
            let word = rest.strip_prefix('\'').unwrap_or(rest);
            word.split('\'').next().unwrap_or("").replace("\\%", "%")
        })
        .collect();
    Some(programs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules() {
        assert_eq!(schedule(60).unwrap(), "* * * * *");
        assert_eq!(schedule(300).unwrap(), "*/5 * * * *");
        assert_eq!(schedule(3600).unwrap(), "0 * * * *");
        assert_eq!(schedule(7200).unwrap(), "0 */2 * * *");
        assert!(schedule(90).is_err());
        assert!(schedule(420).is_err());
    }

    #[test]
    fn split_removes_exactly_the_block() {
        let block = format!("{BEGIN}\n* * * * * x\n{END}\n");
        let table = format!("MAILTO=me\n0 1 * * * backup\n{block}# trailing\n");
        let (rest, found) = split(&table).unwrap();
        assert_eq!(rest, "MAILTO=me\n0 1 * * * backup\n# trailing\n");
        assert_eq!(found.as_deref(), Some(block.as_str()));
        assert_eq!(split("0 1 * * * backup\n").unwrap().1, None);
        assert!(split(&format!("{BEGIN}\n* * * * * x\n")).is_err());
    }
}
