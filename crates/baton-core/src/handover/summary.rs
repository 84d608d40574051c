//! The one readable sentence a run's result opens with.

use super::Run;
use crate::plan::Plan;
use crate::spec::{Ident, State};

impl Run<'_> {
    /// What a finished run did, e.g. `app handed over from v1 to v2 in 3.2 s`.
    pub(super) fn summary(&self, plan: &Plan) -> String {
        let spec = self.spec;
        let version = spec.version.as_ref().map(Ident::as_str).unwrap_or_default();
        if !self.changed {
            return match spec.state {
                State::Started => format!("{} {version} is active; nothing changed", spec.name),
                State::Stopped => format!("{} is stopped; nothing changed", spec.name),
                State::Absent => format!("{} is absent; nothing changed", spec.name),
            };
        }
        let secs = self.started.elapsed().as_secs_f64();
        match (spec.state, plan.previous_version.as_deref()) {
            (State::Started, Some(prev)) if prev != version => {
                format!("{} handed over from {prev} to {version} in {secs:.1} s", spec.name)
            }
            (State::Started, _) => format!("{} {version} is active ({secs:.1} s)", spec.name),
            (State::Stopped, _) => format!("{} stopped ({secs:.1} s)", spec.name),
            (State::Absent, _) => format!("{} removed ({secs:.1} s)", spec.name),
        }
    }

    /// What a run in check mode would do.
    pub(super) fn check_summary(&self, plan: &Plan) -> String {
        if self.changed {
            format!("check mode: {} step(s) would run", plan.steps.len())
        } else {
            format!("{} is already as the spec asks; nothing would change", self.spec.name)
        }
    }
}
