//! The one entry point every front-end calls: raw spec in, contract result out. Validation
//! comes first, so bad input touches nothing; every error becomes `{"failed": true, "msg"}`.

use crate::connection::{Resilient, Source};
use crate::handover::{self, ApplyFailure, ApplyOptions, Progress};
use crate::result::{error_chain, Failure, FailureKind, Outcome, Redactor, RunResult};
use crate::spec::{RawSpec, ServiceSpec};
use crate::systemd::{Systemd, SystemdError};

/// Validates `raw`, renders its unit (once: the run uses this text), connects to systemd on the
/// system bus and applies it.
pub(crate) fn apply(raw: RawSpec, opts: &ApplyOptions, progress: &mut dyn FnMut(Progress)) -> RunResult {
    let spec = match raw.validate() {
        Ok(s) => s,
        Err(e) => return RunResult::Failed(Failure::refused(e.to_string())),
    };
    // A template that cannot render is bad input too: refuse it before anything is touched.
    let rendered = match handover::render_target(&spec) {
        Ok(rendered) => rendered,
        Err(e) => {
            return RunResult::Failed(Failure {
                name: Some(spec.name.to_string()),
                ..Failure::refused(error_chain(&e))
            })
        }
    };
    let sd = match Resilient::over(&Source::System).connected() {
        Ok(sd) => sd,
        Err(e) => {
            return RunResult::Failed(Failure {
                name: Some(spec.name.to_string()),
                ..Failure::msg(error_chain(&e)).with_kind(match e {
                    SystemdError::Setting { .. } => FailureKind::Refused,
                    _ => FailureKind::Environment,
                })
            })
        }
    };
    let result = handover::apply_rendered(&spec, rendered.as_deref(), &sd, opts, progress);
    contract_result(&spec, result)
}

/// Applies a validated spec through any [`Systemd`] (the fake in tests).
pub(crate) fn apply_with(
    spec: &ServiceSpec,
    sd: &dyn Systemd,
    opts: &ApplyOptions,
    progress: &mut dyn FnMut(Progress),
) -> RunResult {
    contract_result(spec, handover::apply(spec, sd, opts, progress))
}

/// The run's result as the contract shapes it, with every secret of the spec masked.
fn contract_result(spec: &ServiceSpec, result: Result<Outcome, Box<ApplyFailure>>) -> RunResult {
    let mut result = match result {
        Ok(outcome) => RunResult::Ok(outcome),
        Err(failure) => RunResult::Failed(Failure::from(*failure)),
    };
    // baton itself never writes a secret into a result; a release's journal lines (in a
    // failure) may still quote one: masked in every front-end.
    let secrets: Vec<&str> = spec.secret_environment.values().map(String::as_str).collect();
    if !secrets.is_empty() {
        Redactor::values_only(&secrets).result(&mut result);
    }
    result
}
