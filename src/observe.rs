//! The shell's eyes: for each job the state waits on, is there an outcome, a live registered
//! process (its lock is held, or pid + start time still match), or a registration whose
//! processes are gone? Also integration outcomes. Reads only; decides nothing.

use crate::engine::observe::{JobSeen, Observations, Outcome};
use crate::engine::state::{State, Status};
use crate::ids::JobKey;
use crate::job::read_registration;
use crate::paths::Paths;
use crate::schema;

/// Observes everything the state waits on.
#[must_use]
pub fn observe(paths: &Paths, state: &State) -> Observations {
    let mut seen = Observations::default();
    for stage in &state.stages {
        if let Some((role, attempt)) = stage.status.waiting_on() {
            let key = JobKey {
                stage: stage.id.clone(),
                attempt,
                role,
            };
            let s = job_seen(paths, &key);
            seen.jobs.insert(key, s);
        }
        if let Status::Integrating { attempt, .. } = stage.status
            && let Some(o) = read_outcome(&paths.integration_file(&stage.id, attempt))
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

/// What became of one job.
#[must_use]
pub fn job_seen(paths: &Paths, key: &JobKey) -> JobSeen {
    let outcome_path = paths.outcome_file(key);
    if let Some(o) = read_outcome(&outcome_path) {
        return JobSeen::Finished(Box::new(o));
    }
    let reg = read_registration(&paths.registry_file(key));
    let held = crate::lock::is_held(&paths.alive_file(key)).unwrap_or(false);
    match reg {
        Some(r) if held || crate::proc::alive(r.pid, r.start_time) => {
            JobSeen::Running { pgids: r.pgids() }
        }
        None if held => JobSeen::Running { pgids: Vec::new() },
        // The job may have finished between our two looks.
        Some(_) => read_outcome(&outcome_path)
            .map_or(JobSeen::Vanished, |o| JobSeen::Finished(Box::new(o))),
        None => JobSeen::Absent,
    }
}
