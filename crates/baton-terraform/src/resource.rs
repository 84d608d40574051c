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
use std::sync::Arc;

use baton_core::spec::RawSpec;
use baton_core::{AdoptError, ApplyOptions, Baton, Failure, Outcome, Progress, RunResult};
use tf_provider::value::Value;
use tf_provider::{AttributePath, Diagnostic, Diagnostics};

use crate::model::{AttrErrors, Service, DEFAULT_UNIT_DIR};

/// The `baton_service` resource. Its reads (refresh, import) share the facade's system-bus
/// connection with the data source; changes connect on their own, as the CLI does.
#[derive(Debug, Default, Clone)]
pub struct ServiceResource {
    baton: Arc<Baton>,
}

impl ServiceResource {
    /// A resource that goes through `baton`.
    pub fn new(baton: Arc<Baton>) -> Self {
        ServiceResource { baton }
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
fn observe(baton: &Baton, prior: &Service) -> Result<Option<Service>, String> {
    let name = name_of(prior)?;
    let unit_dir = prior.unit_dir_or_default();
    let seen = baton.observe(&name, Path::new(&unit_dir)).map_err(|e| e.to_string())?;
    if !seen.exists() {
        return Ok(None);
    }
    let mut now = prior.clone();
    now.id = Value::Value(name.clone());
    let active = seen.status.active_version.clone();
    match &active {
        Some(v) => {
            now.version = Value::Value(v.clone());
            now.state = Value::Value("started".to_owned());
        }
        None => now.state = Value::Value("stopped".to_owned()),
    }
    let version = match &now.version {
        Value::Value(v) => Some(v.clone()),
        _ => None,
    };
    let release = version.as_deref().and_then(|v| seen.release(v));
    now.enabled = Value::Value(release.is_some_and(|r| r.enabled));
    now.unit_text =
        version.as_deref().and_then(|v| seen.unit_text(v)).map_or(Value::Null, |t| Value::Value(t.to_owned()));
    now.unit = match active {
        Some(_) => now.release_unit(),
        None => Value::Null,
    };
    Ok(Some(now))
}

/// Adopts the service `id` (`name`, or `/unit/dir/name`): its active release (else its enabled
/// one, else its newest) read back from the unit file, by the core.
fn import(baton: &Baton, id: &str) -> Result<(Service, Vec<String>), String> {
    let (unit_dir, name) = match id.rsplit_once('/') {
        Some((dir, name)) if id.starts_with('/') => (if dir.is_empty() { "/" } else { dir }, name),
        _ => (DEFAULT_UNIT_DIR, id),
    };
    let adopted = baton.adopt(name, unit_dir).map_err(|e| match e {
        AdoptError::Name(e) => format!("import id {id:?}: {e}"),
        e => e.to_string(),
    })?;
    let (mut service, dropped) = Service::from_raw(&adopted.spec);
    let mut warnings: Vec<String> = dropped
        .into_iter()
        .map(|k| format!("directive {k} is repeated in the unit; a map of maps cannot hold it, so it was left out"))
        .collect();
    if !adopted.exact {
        warnings.push(format!(
            "{} does not read back exactly (edited by hand, or rendered by a custom template): the imported \
             attributes are a best effort, and the next plan shows the unit's difference in `unit_text`",
            adopted.unit_path.display()
        ));
    }
    if let Some(secret_file) = &adopted.secret_file {
        warnings.push(format!(
            "{} reads secret_environment from {}; secret values are never read back: set secret_environment in \
             the configuration (the first apply then rewrites nothing if they are unchanged)",
            adopted.unit_path.display(),
            secret_file.display()
        ));
    }
    service.state = Value::Value(if adopted.active { "started" } else { "stopped" }.to_owned());
    service.enabled = Value::Value(adopted.enabled);
    service.unit_text = Value::Value(adopted.unit_text);
    service.unit = if adopted.active { service.release_unit() } else { Value::Null };
    Ok((service, warnings))
}

/// Progress goes to the plugin's stderr (the Terraform log at DEBUG).
fn log_progress(p: Progress) {
    match p {
        Progress::Step(s) => eprintln!("baton: {s}"),
        Progress::Done(s) => eprintln!("baton: done: {s}"),
        _ => {}
    }
}

/// One `baton apply` of `raw`, as the CLI runs it.
fn run(baton: &Baton, raw: RawSpec) -> RunResult {
    baton.apply(raw, &ApplyOptions::default(), &mut log_progress)
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
        let baton = self.baton.clone();
        let prior = state.clone();
        match blocking(move || observe(&baton, &prior)).await.and_then(|r| r) {
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
        let baton = self.baton.clone();
        match blocking(move || run(&baton, raw)).await {
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
        let baton = self.baton.clone();
        match blocking(move || run(&baton, raw)).await {
            Ok(RunResult::Ok(outcome)) => {
                warn_all(diags, &outcome);
                done
            }
            Ok(RunResult::Failed(f)) => {
                error(diags, summary, failure_detail(&f), AttributePath::root());
                let baton = self.baton.clone();
                let before = prior.clone();
                let now = blocking(move || observe(&baton, &before)).await.and_then(|r| r);
                now.ok().flatten().unwrap_or(prior)
            }
            Err(e) => {
                error(diags, summary, e, AttributePath::root());
                prior
            }
        }
    }

    /// ApplyResourceChange of a delete: every release stopped and removed (`state = "absent"`,
    /// which needs only the name and the unit directory). False when it failed.
    pub async fn delete(&self, diags: &mut Diagnostics, prior: &Service) -> bool {
        let name = name_of(prior).unwrap_or_default();
        let unit_dir = prior.unit_dir_or_default();
        let baton = self.baton.clone();
        let removing = name.clone();
        let removed =
            blocking(move || baton.remove(&removing, Some(&unit_dir), &ApplyOptions::default(), &mut log_progress));
        match removed.await {
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
        let baton = self.baton.clone();
        let wanted = id.clone();
        match blocking(move || import(&baton, &wanted)).await.and_then(|r| r) {
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
