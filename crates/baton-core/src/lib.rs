//! The baton core library: everything the three front-ends (CLI, Ansible module, Terraform
//! provider) share, behind one facade.
//!
//! Front-ends translate their input into a [`spec::RawSpec`] and call the facade: [`Baton`]
//! for everything that reads or drives systemd ([`Baton::apply`], [`Baton::remove`],
//! [`Baton::status`], [`Baton::observe`], [`Baton::adopt`]), and the pure functions
//! [`validate`], [`check`] and [`render_unit`] for everything that does not. They translate the
//! answer ([`RunResult`], [`ServiceStatus`], [`Observed`], [`Adopted`]) back and hold no logic
//! of their own. Nothing else of the core is visible to them; ARCHITECTURE.md at the root of the
//! repository maps the modules behind the facade.
//!
//! Data flows one way: raw front-end input → `spec` (validated types) → `state` (what is on
//! disk and running) + `plan` → `handover` (through the `systemd` trait) → `result`.
//!
//! Besides the facade, [`migration`] (the probe that proves queued connections move to a new
//! listener) is public for the diagnostics in `integration/`.

#![warn(missing_docs, unreachable_pub)]

pub mod migration;
pub mod spec;

mod adopt;
mod connection;
mod handover;
mod lock;
mod migrate;
mod plan;
mod probe;
mod result;
mod run;
mod safe_fs;
mod secrets;
mod state;
mod status;
// Reached from outside only through `testing` (the D-Bus client and the fake, for tests): in a
// build without that feature its `pub` items are crate-private in effect.
#[cfg_attr(not(feature = "testing"), allow(unreachable_pub))]
mod systemd;
mod unit;
mod unit_dir;

use std::path::Path;

pub use crate::adopt::{AdoptError, Adopted};
pub use crate::handover::{AfterStep, ApplyOptions, Progress, StepDone, PAUSE_AFTER_ENV, PAUSE_EXIT_STATUS};
pub use crate::lock::DEFAULT_DIR as DEFAULT_LOCK_DIR;
pub use crate::result::{
    error_chain, panic_report, panic_text, Failure, FailureKind, FileDiff, Outcome, Redactor, RunResult, MASK,
};
pub use crate::secrets::expected_digest as secret_file_digest;
pub use crate::status::{Observed, ReleaseStatus, ServiceStatus, SocketStatus};
pub use crate::systemd::TIMEOUT_VARIABLES as DBUS_TIMEOUT_VARIABLES;
pub use crate::unit::render::RenderError;

use crate::connection::{Bus, Source};
use crate::spec::{RawSpec, ServiceSpec, SpecError, State};

/// The way in: owns the connection to systemd (made on first use, made again after a failure)
/// and carries out every request of a front-end.
#[derive(Debug)]
pub struct Baton {
    bus: Bus,
}

impl Default for Baton {
    fn default() -> Self {
        Baton::system()
    }
}

/// Reading a service's releases failed: its unit directory or systemd could not be read.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct ReadError(#[from] state::StateError);

impl From<systemd::SystemdError> for ReadError {
    fn from(e: systemd::SystemdError) -> Self {
        ReadError(e.into())
    }
}

/// A spec that passed every check without touching anything.
#[derive(Debug, Clone)]
pub struct Checked {
    /// The validated spec.
    pub spec: ServiceSpec,
    /// The spec with every default written out (what a plan shows as the values applied).
    pub normalised: RawSpec,
    /// The unit the spec renders; None when it names no release or is `absent`.
    pub unit: Option<String>,
}

/// Why [`check`] refused a spec.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckError {
    /// A rule of the spec is broken.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// The unit cannot be rendered (a custom template, a line too long for systemd).
    #[error(transparent)]
    Render(#[from] RenderError),
}

impl CheckError {
    /// The spec field the error is about (e.g. `exec_start[2]`, `template`).
    pub fn field(&self) -> String {
        match self {
            CheckError::Spec(e) => e.field.clone(),
            CheckError::Render(e) => e.field(),
        }
    }
}

/// Checks every rule of the spec (the first rule broken is the error) and fills in the
/// defaults.
pub fn validate(raw: RawSpec) -> Result<ServiceSpec, SpecError> {
    raw.validate()
}

/// The unit file text of the release `spec` names.
pub fn render_unit(spec: &ServiceSpec) -> Result<String, RenderError> {
    unit::render::render(spec)
}

/// What a run refuses before it touches anything: [`validate`], then the unit rendered when
/// the spec names a release to write (not with `absent`).
pub fn check(raw: RawSpec) -> Result<Checked, CheckError> {
    let spec = validate(raw)?;
    let unit = match (&spec.version, spec.state) {
        (Some(_), State::Started | State::Stopped) => Some(render_unit(&spec)?),
        _ => None,
    };
    Ok(Checked { normalised: spec.to_raw(), spec, unit })
}

impl Baton {
    /// The facade over the system bus (`DBUS_SYSTEM_BUS_ADDRESS`, else the default one).
    pub fn system() -> Self {
        Baton { bus: Bus::new(Source::System) }
    }

    /// The facade over a given systemd (the fake in tests).
    #[cfg(feature = "testing")]
    pub fn with_systemd(sd: std::sync::Arc<dyn systemd::Systemd + Send + Sync>) -> Self {
        Baton { bus: Bus::new(Source::Fixed(sd)) }
    }

    /// Validates `raw` and applies it: a first deploy, a handover, a stop or a removal, as the
    /// spec says. Bad input touches nothing; every error is a [`Failure`]. A run connects to
    /// systemd on its own.
    pub fn apply(&self, raw: RawSpec, opts: &ApplyOptions, progress: &mut dyn FnMut(Progress)) -> RunResult {
        match self.bus.source() {
            Source::System => run::apply(raw, opts, progress),
            Source::Fixed(sd) => match raw.validate() {
                Ok(spec) => run::apply_with(&spec, &**sd, opts, progress),
                Err(e) => RunResult::Failed(Failure::refused(e.to_string())),
            },
        }
    }

    /// Stops and removes every release of the service `name` in `unit_dir` (the default
    /// directory when None): `state = "absent"` of the service, which needs nothing else.
    pub fn remove(
        &self,
        name: &str,
        unit_dir: Option<&str>,
        opts: &ApplyOptions,
        progress: &mut dyn FnMut(Progress),
    ) -> RunResult {
        let raw = RawSpec {
            name: name.to_owned(),
            unit_dir: unit_dir.map(str::to_owned),
            state: Some(State::Absent),
            ..RawSpec::default()
        };
        self.apply(raw, opts, progress)
    }

    /// The service `name` as it is now: each release on disk with its status and unit text.
    pub fn observe(&self, name: &str, unit_dir: &Path) -> Result<Observed, ReadError> {
        self.bus.read(|sd| status::observe(sd, unit_dir, name).map_err(ReadError))
    }

    /// The services with a release in `unit_dir` (the marks of its unit files), sorted.
    pub fn services(&self, unit_dir: &Path) -> Result<Vec<String>, ReadError> {
        unit_dir::services(unit_dir).map_err(|e| ReadError(e.into()))
    }

    /// The status of the service `name` (`baton status`).
    pub fn status(&self, name: &str, unit_dir: &Path) -> Result<ServiceStatus, ReadError> {
        self.observe(name, unit_dir).map(|o| o.status)
    }

    /// Adopts the deployed service `name` of `unit_dir`: the active release, else the enabled
    /// one, else the newest, with its spec read back from its unit file.
    pub fn adopt(&self, name: &str, unit_dir: &str) -> Result<Adopted, AdoptError> {
        spec::Ident::parse("name", name).map_err(AdoptError::Name)?;
        self.bus.read(|sd| adopt::adopt(sd, unit_dir, name))
    }
}

/// What tests need from inside the core (the `testing` feature, enabled by test builds only):
/// the fake systemd for the front-ends' tests, the D-Bus client and the unit format's limits
/// for the integration tests against a real systemd.
#[cfg(feature = "testing")]
pub mod testing {
    pub use crate::systemd::dbus::DbusSystemd;
    pub use crate::systemd::fake::FakeSystemd;
    pub use crate::systemd::{JobResult, Systemd, SystemdError, UnitStatus, NOT_LOADED};
    pub use crate::unit::escape::quote_env;
    pub use crate::unit::render::MAX_LINE_BYTES;
}

/// In a test that cannot run on this machine (no IPv6 loopback, no `sh`): fails under `CI`, where
/// every test must run, and otherwise says why it is skipped.
#[cfg(test)]
pub(crate) fn cannot_test(reason: &str) {
    assert!(std::env::var_os("CI").is_none(), "this test cannot run here, and CI runs every test: {reason}");
    eprintln!("skipped: {reason}");
}
