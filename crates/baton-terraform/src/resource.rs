//! `baton_service`: the Terraform lifecycle translated into core calls.
//!
//! | Terraform | baton |
//! |---|---|
//! | create | `apply` of the spec: a first deploy |
//! | update (any attribute but `name`/`unit_dir`) | `apply` of the new spec: a handover, in place |
//! | read | the releases on disk and in systemd: the active `version`, `state`, `enabled` and the unit's text |
//! | delete | `apply` with `state = "absent"` |
//! | import | the active release's unit file read back into attributes |
//!
//! The core is synchronous (blocking D-Bus): every call runs on tokio's blocking pool.

use std::path::Path;
use std::sync::{Arc, Mutex};

use baton_core::handover::{ApplyOptions, Progress};
use baton_core::readback;
use baton_core::result::{Failure, Outcome, RunResult};
use baton_core::spec::RawSpec;
use baton_core::state;
use baton_core::systemd::dbus::DbusSystemd;
use baton_core::systemd::SystemdError;
use tf_provider::value::Value;
use tf_provider::{AttributePath, Diagnostic, Diagnostics};

use crate::model::{AttrErrors, Service, DEFAULT_UNIT_DIR};

/// One system-bus connection shared by the reads (refresh and import) of a provider process;
/// dropped and made again after an error. Changes (`apply`) connect on their own, as the CLI does.
#[derive(Debug, Default)]
pub struct SharedBus {
    conn: Mutex<Option<Arc<DbusSystemd>>>,
}

impl SharedBus {
    pub(crate) fn get(&self) -> Result<Arc<DbusSystemd>, SystemdError> {
        let mut guard = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = guard.as_ref() {
            return Ok(c.clone());
        }
        let c = Arc::new(DbusSystemd::connect()?);
        *guard = Some(c.clone());
        Ok(c)
    }

    pub(crate) fn reset(&self) {
        *self.conn.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Runs `f` with the connection; after a failure, once more on a fresh connection (systemd
    /// may have been re-executed since the last call).
    fn with<T>(&self, f: impl Fn(&DbusSystemd) -> Result<T, state::StateError>) -> Result<T, String> {
        let first = self.get().map_err(|e| e.to_string()).and_then(|c| f(&c).map_err(|e| e.to_string()));
        match first {
            Ok(v) => Ok(v),
            Err(_) => {
                self.reset();
                let c = self.get().map_err(|e| e.to_string())?;
                f(&c).map_err(|e| e.to_string())
            }
        }
    }
}

/// The `baton_service` resource.
#[derive(Debug, Default, Clone)]
pub struct ServiceResource {
    bus: Arc<SharedBus>,
}

impl ServiceResource {
    /// A resource whose reads go through `bus`.
    pub fn new(bus: Arc<SharedBus>) -> Self {
        ServiceResource { bus }
    }
}

/// An error diagnostic. Built field by field: tf-provider's constructors append a backtrace to
/// the detail whenever `RUST_BACKTRACE` is set.
pub fn error(diags: &mut Diagnostics, summary: impl Into<String>, detail: impl Into<String>, at: AttributePath) {
    diags.add_error(Diagnostic { summary: summary.into().into(), detail: detail.into().into(), attribute: at });
}

/// A warning diagnostic (see [`error`]).
pub fn warning(diags: &mut Diagnostics, summary: impl Into<String>, detail: impl Into<String>) {
    diags.add_warning(Diagnostic {
        summary: summary.into().into(),
        detail: detail.into().into(),
        attribute: AttributePath::root(),
    });
}

/// One error diagnostic per invalid attribute, at its path.
fn attr_errors(diags: &mut Diagnostics, errors: AttrErrors) {
    for e in errors {
        error(diags, "Invalid baton_service", e.msg, e.path);
    }
}

fn name_of(s: &Service) -> Result<String, String> {
    match &s.name {
        Value::Value(n) => Ok(n.clone()),
        _ => Err("the state holds no service name".to_owned()),
    }
}

/// What is really there for the service `prior` describes: `None` when no release of it is
/// left on disk (it was removed outside Terraform).
fn observe(bus: &SharedBus, prior: &Service) -> Result<Option<Service>, String> {
    let name = name_of(prior)?;
    let unit_dir = prior.unit_dir_or_default();
    let target = match prior.release_unit() {
        Value::Value(u) => u,
        _ => format!("{name}-.service"),
    };
    let st = bus.with(|sd| state::read(sd, Path::new(&unit_dir), &name, &target))?;
    if st.releases.is_empty() {
        return Ok(None);
    }
    let mut now = prior.clone();
    now.id = Value::Value(name.clone());
    match st.active_version() {
        Some(v) => {
            now.version = Value::Value(v);
            now.state = Value::Value("started".to_owned());
        }
        None => now.state = Value::Value("stopped".to_owned()),
    }
    let release = match &now.version {
        Value::Value(v) => st.release(v),
        _ => None,
    };
    now.enabled = Value::Value(release.is_some_and(|r| r.status.is_enabled()));
    now.unit_text = release.map_or(Value::Null, |r| Value::Value(r.file.text.clone()));
    now.unit = match st.active_version() {
        Some(_) => now.release_unit(),
        None => Value::Null,
    };
    Ok(Some(now))
}

/// Adopts the service `id` (`name`, or `/unit/dir/name`): its active release (else its enabled
/// one, else its newest) read back from the unit file.
fn import(bus: &SharedBus, id: &str) -> Result<(Service, Vec<String>), String> {
    let (unit_dir, name) = match id.rsplit_once('/') {
        Some((dir, name)) if id.starts_with('/') => (if dir.is_empty() { "/" } else { dir }, name),
        _ => (DEFAULT_UNIT_DIR, id),
    };
    baton_core::spec::Ident::parse("name", name).map_err(|e| format!("import id {id:?}: {e}"))?;
    let st = bus.with(|sd| state::read(sd, Path::new(unit_dir), name, &format!("{name}-.service")))?;
    let active = st.active_version();
    let release = active
        .as_deref()
        .and_then(|v| st.release(v))
        .or_else(|| st.releases.iter().find(|r| r.status.is_enabled()))
        .or_else(|| st.releases.iter().max_by_key(|r| r.file.modified))
        .ok_or_else(|| format!("there is no release of service {name} in {unit_dir}"))?;
    let back = readback::read_back(&release.file.text, unit_dir)
        .ok_or_else(|| format!("{} carries no baton marks", release.file.path.display()))?;
    let (mut service, dropped) = Service::from_raw(&back.spec);
    let mut warnings: Vec<String> = dropped
        .into_iter()
        .map(|k| format!("directive {k} is repeated in the unit; a map of maps cannot hold it, so it was left out"))
        .collect();
    if !back.exact {
        warnings.push(format!(
            "{} does not read back exactly (edited by hand, or rendered by a custom template): the imported \
             attributes are a best effort, and the next plan shows the unit's difference in `unit_text`",
            release.file.path.display()
        ));
    }
    if back.secret_file {
        warnings.push(format!(
            "{} reads secret_environment from {}; secret values are never read back: set secret_environment in \
             the configuration (the first apply then rewrites nothing if they are unchanged)",
            release.file.path.display(),
            baton_core::secrets::path(Path::new(unit_dir), &release.file.unit).display()
        ));
    }
    service.state = Value::Value(if active.is_some() { "started" } else { "stopped" }.to_owned());
    service.enabled = Value::Value(release.status.is_enabled());
    service.unit_text = Value::Value(release.file.text.clone());
    service.unit = if active.is_some() { service.release_unit() } else { Value::Null };
    Ok((service, warnings))
}

/// One `baton apply` of `raw`, as the CLI runs it; progress goes to the plugin's stderr (the
/// Terraform log at DEBUG).
fn run(raw: RawSpec) -> RunResult {
    baton_core::run::apply(raw, &ApplyOptions::default(), &mut |p| match p {
        Progress::Step(s) => eprintln!("baton: {s}"),
        Progress::Done(s) => eprintln!("baton: done: {s}"),
        Progress::Waiting { .. } => {}
    })
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, String> {
    tokio::task::spawn_blocking(f).await.map_err(|e| format!("the baton worker thread failed: {e}"))
}

fn warn_all(diags: &mut Diagnostics, outcome: &Outcome) {
    for w in &outcome.warnings {
        warning(diags, "baton", w.clone());
    }
}

/// The failure as Terraform shows it: the reason (with the failed release's journal lines) and
/// what is still serving.
fn failure_detail(f: &Failure) -> String {
    let mut detail = f.msg.clone();
    if !f.actions.is_empty() {
        detail.push_str("\n\nSteps taken: ");
        detail.push_str(&f.actions.join("; "));
    }
    match (&f.version, f.rolled_back) {
        (Some(v), _) => detail.push_str(&format!("\n\nRelease {v} is still active; the state records it.")),
        (None, true) => detail.push_str("\n\nThe new release was stopped; no release is active."),
        (None, false) => {}
    }
    detail
}

/// The state of a resource after Terraform's apply: the plan recomputed now that the whole
/// configuration is known.
fn final_state(planned: &Service, config: &Service, diags: &mut Diagnostics) -> Option<(Service, RawSpec)> {
    let done = match Service::plan(planned, config) {
        Ok(s) => s,
        Err(e) => {
            attr_errors(diags, e);
            return None;
        }
    };
    match done.to_raw() {
        Ok(Some(raw)) => Some((done, raw)),
        Ok(None) => {
            error(diags, "baton_service: a value is still unknown at apply time", "", AttributePath::root());
            None
        }
        Err(e) => {
            attr_errors(diags, e);
            None
        }
    }
}

impl ServiceResource {
    /// ValidateResourceConfig: every rule of the spec, on the values already known; every
    /// invalid attribute is reported, each at its path.
    pub fn validate(&self, diags: &mut Diagnostics, config: &Service) {
        if let Err(e) = config.validate() {
            attr_errors(diags, e);
        }
    }

    /// ReadResource: what is really there; `None` when the service no longer exists.
    pub async fn read(&self, diags: &mut Diagnostics, state: Service) -> Option<Service> {
        let bus = self.bus.clone();
        let prior = state.clone();
        match blocking(move || observe(&bus, &prior)).await.and_then(|r| r) {
            Ok(now) => now,
            Err(e) => {
                error(diags, "Cannot read the baton service from systemd", e, AttributePath::root());
                Some(state)
            }
        }
    }

    /// PlanResourceChange of a create or an update: the planned state and the attributes whose
    /// change replaces the resource.
    pub fn plan(
        &self,
        diags: &mut Diagnostics,
        prior: Option<&Service>,
        proposed: &Service,
        config: &Service,
    ) -> Option<(Service, Vec<AttributePath>)> {
        match Service::plan(proposed, config) {
            Ok(p) => {
                let replace = prior.map(|prior| Service::replace_triggers(prior, &p)).unwrap_or_default();
                Some((p, replace))
            }
            Err(e) => {
                attr_errors(diags, e);
                None
            }
        }
    }

    /// ApplyResourceChange of a create: a first deploy. `None` when nothing was deployed.
    pub async fn create(&self, diags: &mut Diagnostics, planned: &Service, config: &Service) -> Option<Service> {
        let (done, raw) = final_state(planned, config, diags)?;
        let name = raw.name.clone();
        match blocking(move || run(raw)).await {
            Ok(RunResult::Ok(outcome)) => {
                warn_all(diags, &outcome);
                Some(done)
            }
            Ok(RunResult::Failed(f)) => {
                error(diags, format!("baton could not deploy {name}"), failure_detail(&f), AttributePath::root());
                None
            }
            Err(e) => {
                error(diags, format!("baton could not deploy {name}"), e, AttributePath::root());
                None
            }
        }
    }

    /// ApplyResourceChange of an update: a handover. After a failure, the state describes what
    /// really runs (the old release, as a refresh sees it).
    pub async fn update(
        &self,
        diags: &mut Diagnostics,
        prior: Service,
        planned: &Service,
        config: &Service,
    ) -> Service {
        let Some((done, raw)) = final_state(planned, config, diags) else {
            return prior;
        };
        let summary = format!("baton could not apply {} {}", raw.name, raw.version);
        match blocking(move || run(raw)).await {
            Ok(RunResult::Ok(outcome)) => {
                warn_all(diags, &outcome);
                done
            }
            Ok(RunResult::Failed(f)) => {
                error(diags, summary, failure_detail(&f), AttributePath::root());
                let bus = self.bus.clone();
                let before = prior.clone();
                let now = blocking(move || observe(&bus, &before)).await.and_then(|r| r);
                now.ok().flatten().unwrap_or(prior)
            }
            Err(e) => {
                error(diags, summary, e, AttributePath::root());
                prior
            }
        }
    }

    /// ApplyResourceChange of a delete: `state = "absent"`. False when it failed.
    pub async fn delete(&self, diags: &mut Diagnostics, prior: &Service) -> bool {
        let raw = match prior.to_raw() {
            Ok(Some(raw)) => raw,
            _ => RawSpec {
                name: name_of(prior).unwrap_or_default(),
                unit_dir: Some(prior.unit_dir_or_default()),
                ..RawSpec::default()
            },
        };
        let raw = RawSpec {
            // Removing needs only the name and the unit directory.
            version: if raw.version.is_empty() { "removed".to_owned() } else { raw.version },
            exec_start: if raw.exec_start.is_empty() { vec!["/bin/true".to_owned()] } else { raw.exec_start },
            state: Some(baton_core::spec::State::Absent),
            ..raw
        };
        let name = raw.name.clone();
        match blocking(move || run(raw)).await {
            Ok(RunResult::Ok(outcome)) => {
                warn_all(diags, &outcome);
                true
            }
            Ok(RunResult::Failed(f)) => {
                error(diags, format!("baton could not remove {name}"), failure_detail(&f), AttributePath::root());
                false
            }
            Err(e) => {
                error(diags, format!("baton could not remove {name}"), e, AttributePath::root());
                false
            }
        }
    }

    /// ImportResourceState: the service `id` adopted from its unit file.
    pub async fn import(&self, diags: &mut Diagnostics, id: String) -> Option<Service> {
        let bus = self.bus.clone();
        let wanted = id.clone();
        match blocking(move || import(&bus, &wanted)).await.and_then(|r| r) {
            Ok((service, warnings)) => {
                for w in warnings {
                    warning(diags, "baton_service import", w);
                }
                Some(service)
            }
            Err(e) => {
                error(diags, format!("Cannot import baton_service {id:?}"), e, AttributePath::root());
                None
            }
        }
    }
}
