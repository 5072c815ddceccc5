//! The shell's eyes: for each job the state waits on, is there an outcome, a live registered
//! wrapper (pid + start time still match), or a registration whose wrapper is gone (a crash,
//! even when its agent lives on)? Also integration outcomes. An outcome counts only with a valid seal
//! ([`crate::seal`]): one without is reported as forged, naming the file. Reads only; decides
//! nothing.

use crate::engine::observe::{JobSeen, Observations, Outcome};
use crate::engine::state::{State, Status};
use crate::ids::JobKey;
use crate::job::{Registration, read_registration};
use crate::paths::Paths;
use crate::schema;

/// Observes everything the state waits on.
#[must_use]
pub fn observe(paths: &Paths, state: &State) -> Observations {
    let mut seen = Observations::default();
    for stage in &state.stages {
        for (key, _, _) in stage.waiting_jobs() {
            let s = job_seen(paths, &key);
            seen.jobs.insert(key, s);
        }
        if let Status::Integrating { attempt, .. } = stage.status
            && let Ok(Some(o)) = read_sealed(paths, &paths.integration_file(&stage.id, attempt))
        {
            seen.integrations.insert(stage.id.clone(), o);
        }
    }
    seen
}

/// Reads an outcome file; `None` when it is missing or invalid.
#[must_use]
pub fn read_outcome(path: &std::path::Path) -> Option<Outcome> {
    let text = std::fs::read_to_string(path).ok()?;
    schema::parse_json::<Outcome>(&text, "outcome").ok()
}

/// Reads an outcome file and checks its seal: `Ok(None)` when it is missing or invalid,
/// `Err(path)` (repo-relative) when it parses but its seal is missing or wrong.
///
/// # Errors
/// The file's repo-relative path when the outcome is not sealed by its own job.
pub fn read_sealed(paths: &Paths, path: &std::path::Path) -> Result<Option<Outcome>, String> {
    let Ok(bytes) = std::fs::read(path) else {
        return Ok(None);
    };
    let text = String::from_utf8_lossy(&bytes);
    let Ok(o) = schema::parse_json::<Outcome>(&text, "outcome") else {
        return Ok(None);
    };
    if crate::seal::verify(paths, path, &bytes) {
        Ok(Some(o))
    } else {
        Err(paths.rel(path))
    }
}

/// What became of one job.
#[must_use]
pub fn job_seen(paths: &Paths, key: &JobKey) -> JobSeen {
    let outcome_path = paths.outcome_file(key);
    let reg = read_registration(&paths.registry_file(key));
    let finished = |sealed: Result<Option<Outcome>, String>| match sealed {
        Ok(o) => o.map(|o| JobSeen::Finished(Box::new(o))),
        Err(path) => Some(JobSeen::Forged {
            path,
            pgids: reg.as_ref().map(Registration::pgids).unwrap_or_default(),
        }),
    };
    if let Some(seen) = finished(read_sealed(paths, &outcome_path)) {
        return seen;
    }
    let held = crate::lock::is_held(&paths.alive_file(key)).unwrap_or(false);
    match &reg {
        // The wrapper is the job: if it died, whatever it left holding the lock is headless
        // (nobody will write its outcome). Without `/proc` (no start time) the lock decides.
        Some(r) if crate::proc::alive(r.pid, r.start_time) || (held && r.start_time.is_none()) => {
            JobSeen::Running { pgids: r.pgids() }
        }
        None if held => JobSeen::Running { pgids: Vec::new() },
        // The job may have finished between our two looks.
        Some(_) => finished(read_sealed(paths, &outcome_path)).unwrap_or(JobSeen::Vanished),
        // The start creates the job's log before anything else ([`crate::job::spawn`]).
        None if paths.log_file(key).exists() => JobSeen::Absent,
        None => JobSeen::Unstarted,
    }
}
