//! The one entry point every front-end calls: raw spec in, contract result out. Validation
//! comes first, so bad input touches nothing; every error becomes `{"failed": true, "msg"}`.

use crate::handover::{self, ApplyOptions, Progress};
use crate::unit::render;
use crate::result::{Failure, FailureKind, Redactor, RunResult};
use crate::spec::{RawSpec, ServiceSpec, State};
use crate::systemd::dbus::DbusSystemd;
use crate::systemd::Systemd;

/// Validates `raw`, connects to systemd on the system bus and applies it.
pub fn apply(raw: RawSpec, opts: &ApplyOptions, progress: &mut dyn FnMut(Progress)) -> RunResult {
    let spec = match raw.validate() {
        Ok(s) => s,
        Err(e) => return RunResult::Failed(Failure::refused(e.to_string())),
    };
    // A template that cannot render is bad input too: refuse it before anything is touched.
    if spec.state != State::Absent && spec.version.is_some() {
        if let Err(e) = render::render(&spec) {
            return RunResult::Failed(Failure { name: Some(spec.name.to_string()), ..Failure::refused(e.to_string()) });
        }
    }
    let sd = match DbusSystemd::connect() {
        Ok(sd) => sd,
        Err(e) => {
            return RunResult::Failed(Failure {
                name: Some(spec.name.to_string()),
                ..Failure::msg(e.to_string()).with_kind(FailureKind::Environment)
            })
        }
    };
    apply_with(&spec, &sd, opts, progress)
}

/// Applies a validated spec through any [`Systemd`] (the fake in tests).
pub fn apply_with(
    spec: &ServiceSpec,
    sd: &dyn Systemd,
    opts: &ApplyOptions,
    progress: &mut dyn FnMut(Progress),
) -> RunResult {
    let mut result = match handover::apply(spec, sd, opts, progress) {
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
