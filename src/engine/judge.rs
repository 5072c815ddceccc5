//! The gates, judged: reads a finished job's outcome (worker envelope and protected paths,
//! acceptance results, verifier verdict) and says whether the stage may go on, or the typed
//! reason it failed. Pure, like the rest of the engine: it only reads the outcome.

use crate::agent::failure::AgentFailure;
use crate::engine::observe::OutcomeResult;
use crate::engine::state::{FailReason, Stage};
use crate::envelope::{EnvelopeStatus, VerdictKind};
use crate::ids::Role;

/// Reads a finished job's outcome as a gate: `Ok` to go on, or the typed reason it failed.
///
/// # Errors
/// The reason the gate failed.
pub fn judge(result: &OutcomeResult, role: Role, stage: &Stage) -> Result<(), FailReason> {
    escapes(result, role)?;
    match result {
        OutcomeResult::Worker {
            run,
            envelope,
            envelope_error,
            protected_changed,
            setup_error,
            secret,
            ..
        } => {
            if let Some(e) = setup_error {
                return Err(setup(role, e));
            }
            agent_ok(run, role, stage)?;
            if let Some(path) = protected_changed.first() {
                return Err(FailReason::ProtectedPath { path: path.clone() });
            }
            if let Some(hit) = secret {
                return Err(FailReason::SecretInDeliverable {
                    path: hit.path.clone(),
                    name: hit.name.clone(),
                });
            }
            let Some(env) = envelope else {
                let detail = envelope_error
                    .clone()
                    .unwrap_or_else(|| "no final message".into());
                return Err(
                    if detail.contains("no ```json block") || run.final_message.is_none() {
                        FailReason::NoEnvelope { detail }
                    } else {
                        FailReason::InvalidEnvelope { detail }
                    },
                );
            };
            match env.status {
                EnvelopeStatus::Done => Ok(()),
                EnvelopeStatus::Blocked | EnvelopeStatus::Partial => Err(FailReason::NotDone {
                    status: format!("{:?}", env.status).to_lowercase(),
                    summary: env.summary.clone(),
                }),
            }
        }
        OutcomeResult::Acceptance {
            commands,
            setup_error,
            ..
        } => {
            if let Some(e) = setup_error {
                return Err(setup(role, e));
            }
            match commands.iter().find(|c| !c.passed()) {
                Some(c) => Err(FailReason::AcceptanceFailed {
                    command: c.command.clone(),
                    exit: c.exit,
                    timed_out: c.timed_out,
                    refused: c.refused_writes(),
                }),
                None if commands.len() < stage.acceptance.len() => {
                    Err(FailReason::Crashed { role })
                }
                None => Ok(()),
            }
        }
        OutcomeResult::Verifier {
            run,
            verdict,
            verdict_error,
            setup_error,
            ..
        } => {
            if let Some(e) = setup_error {
                return Err(setup(role, e));
            }
            agent_ok(run, role, stage)?;
            let Some(v) = verdict else {
                let detail = verdict_error
                    .clone()
                    .unwrap_or_else(|| "no final message".into());
                return Err(FailReason::InvalidVerdict { detail });
            };
            match v.verdict {
                VerdictKind::Pass => Ok(()),
                VerdictKind::Revise => Err(FailReason::Revise {
                    findings: v.findings.clone(),
                }),
                VerdictKind::Fail => Err(FailReason::Rejected {
                    findings: v.findings.clone(),
                }),
            }
        }
        OutcomeResult::Integration { .. } => Err(FailReason::Crashed { role }),
    }
}

fn setup(role: Role, e: &crate::engine::observe::SetupError) -> FailReason {
    FailReason::Setup {
        role,
        cause: e.cause,
        detail: e.detail.clone(),
    }
}

/// Writes outside the workspace fail any role first (naming the file), then a verifier that
/// changed the workspace has its verdict voided.
fn escapes(result: &OutcomeResult, role: Role) -> Result<(), FailReason> {
    let (escaped, wrote): (&[String], &[String]) = match result {
        OutcomeResult::Worker { escaped, .. } | OutcomeResult::Acceptance { escaped, .. } => {
            (escaped, &[])
        }
        OutcomeResult::Verifier { escaped, wrote, .. } => (escaped, wrote),
        OutcomeResult::Integration { .. } => (&[], &[]),
    };
    if let Some(path) = escaped.first() {
        return Err(FailReason::Escaped {
            role,
            path: path.clone(),
        });
    }
    if !wrote.is_empty() {
        return Err(FailReason::VerifierWrote {
            paths: wrote.to_vec(),
        });
    }
    Ok(())
}

pub(super) fn agent_ok(
    run: &crate::engine::observe::AgentRun,
    role: Role,
    stage: &Stage,
) -> Result<(), FailReason> {
    if run.timed_out {
        let after_secs = match role {
            Role::Worker => stage.timeouts.worker,
            Role::Verifier => stage.timeouts.verifier,
            Role::Acceptance => stage.timeouts.acceptance,
        };
        return Err(FailReason::TimedOut { role, after_secs });
    }
    if let Some(failure) = &run.failure {
        return Err(FailReason::Agent {
            role,
            failure: failure.clone(),
        });
    }
    if run.is_error || run.exit != Some(0) {
        let failure = match (run.exit, run.signal) {
            (None, Some(signal)) => AgentFailure::Killed { signal },
            (exit, _) => AgentFailure::Crashed {
                exit,
                detail: run.error_detail.clone().unwrap_or_default(),
            },
        };
        return Err(FailReason::Agent { role, failure });
    }
    Ok(())
}
