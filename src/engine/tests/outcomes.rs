//! Outcome files as the job wrappers would write them (worker, acceptance, verifier,
//! integration) and helpers that read a step's effects for assertions. Pure data builders:
//! they never decide what the engine should do with an outcome.

use super::sim::{FINDING, Work};
use crate::agent::Usage;
use crate::engine::effect::{Effect, SpawnPlan};
use crate::engine::observe::{AgentRun, CommandResult, OutcomeResult};
use crate::envelope::{
    ENVELOPE_VERSION, Envelope, EnvelopeStatus, VERDICT_VERSION, Verdict, VerdictKind,
};

pub(super) fn agent_run(agent: &str, ok: bool) -> AgentRun {
    AgentRun {
        agent: agent.into(),
        exit: Some(if ok { 0 } else { 1 }),
        is_error: !ok,
        error_detail: (!ok).then(|| "boom".to_owned()),
        usage: Some(Usage {
            input: 1000,
            output: 100,
            cache_read: 10,
            cache_write: 1,
        }),
        final_message: Some("done; handoff below".into()),
        ..AgentRun::default()
    }
}

pub(super) fn worker_result(id: &str, attempt: u32, work: Work) -> OutcomeResult {
    let envelope = |status| {
        Some(Envelope {
            version: ENVELOPE_VERSION,
            stage: id.into(),
            attempt,
            status,
            summary: "did the thing".into(),
            files_changed: vec!["src/lib.rs".into()],
            notes: None,
        })
    };
    let (run, envelope, envelope_error, protected_changed, setup_error) = match work {
        Work::Done => (
            agent_run("claude", true),
            envelope(EnvelopeStatus::Done),
            None,
            vec![],
            None,
        ),
        Work::Blocked => (
            agent_run("claude", true),
            envelope(EnvelopeStatus::Blocked),
            None,
            vec![],
            None,
        ),
        Work::Partial => (
            agent_run("claude", true),
            envelope(EnvelopeStatus::Partial),
            None,
            vec![],
            None,
        ),
        Work::NoEnvelope => (
            agent_run("claude", true),
            None,
            Some("no ```json block in the final message".to_owned()),
            vec![],
            None,
        ),
        Work::AgentError => (agent_run("claude", false), None, None, vec![], None),
        Work::ProtectedPath => (
            agent_run("claude", true),
            envelope(EnvelopeStatus::Done),
            None,
            vec!["Cargo.lock".to_owned()],
            None,
        ),
        Work::SetupError => (
            AgentRun::default(),
            None,
            None,
            vec![],
            Some(crate::engine::observe::SetupError {
                cause: crate::engine::state::SetupCause::Workspace,
                detail: "worktree add failed".to_owned(),
            }),
        ),
    };
    OutcomeResult::Worker {
        run,
        envelope,
        envelope_error,
        protected_changed,
        setup_error,
        base: Some("c0ffee".into()),
        snapshot: Some("4b825dc642cb6eb9a060e54bf8d69288fbee4904".into()),
        escaped: Vec::new(),
        secret: None,
    }
}

pub(super) fn acceptance_result(commands: &[String], pass: bool) -> OutcomeResult {
    let mut results: Vec<CommandResult> = commands
        .iter()
        .map(|c| CommandResult {
            command: c.clone(),
            exit: Some(0),
            timed_out: false,
            secs: 3,
            output_tail: "ok".into(),
        })
        .collect();
    if !pass {
        match results.first_mut() {
            Some(first) => first.exit = Some(1),
            None => results.push(CommandResult {
                command: "false".into(),
                exit: Some(1),
                timed_out: false,
                secs: 0,
                output_tail: String::new(),
            }),
        }
    }
    OutcomeResult::Acceptance {
        deliverable: Vec::new(),
        commands: results,
        setup_error: None,
        snapshot: None,
        changed_files: Vec::new(),
        escaped: Vec::new(),
    }
}

/// A verifier outcome; `None` is a run without a valid verdict.
pub(super) fn verifier_result(id: &str, attempt: u32, kind: Option<VerdictKind>) -> OutcomeResult {
    OutcomeResult::Verifier {
        setup_error: None,
        run: agent_run("codex", true),
        verdict: kind.map(|verdict| Verdict {
            version: VERDICT_VERSION,
            stage: id.into(),
            attempt,
            verdict,
            criteria: Vec::new(),
            findings: if verdict == VerdictKind::Pass {
                Vec::new()
            } else {
                vec![FINDING.into()]
            },
        }),
        verdict_error: kind
            .is_none()
            .then(|| "no ```json block in the final message".to_owned()),
        wrote: Vec::new(),
        escaped: Vec::new(),
    }
}

pub(super) fn integration_result(attempt: u32, ok: bool) -> OutcomeResult {
    OutcomeResult::Integration {
        commit: ok.then(|| format!("c0ffee{attempt:02}")),
        error: (!ok).then(|| "merge conflict in src/lib.rs".to_owned()),
        detail: if ok {
            "fast-forwarded".into()
        } else {
            "not integrated".into()
        },
    }
}

// --- effects --------------------------------------------------------------------------------

pub(super) fn spawns(effects: &[Effect]) -> impl Iterator<Item = &SpawnPlan> {
    effects.iter().filter_map(|e| match e {
        Effect::Spawn(plan) => Some(plan),
        Effect::Kill { .. } | Effect::Integrate { .. } => None,
    })
}

/// Effects as short strings, for assertions.
pub(super) fn show(effects: &[Effect]) -> Vec<String> {
    effects
        .iter()
        .map(|e| match e {
            Effect::Spawn(p) => format!("spawn {}", p.job.stem()),
            Effect::Kill { job } => format!("kill {}", job.stem()),
            Effect::Integrate { stage, attempt } => format!("integrate {stage}@a{attempt}"),
        })
        .collect()
}

pub(super) fn plan_of<'a>(effects: &'a [Effect], stem: &str) -> &'a SpawnPlan {
    spawns(effects)
        .find(|p| p.job.stem() == stem)
        .unwrap_or_else(|| panic!("no spawn of {stem} in {:?}", show(effects)))
}
