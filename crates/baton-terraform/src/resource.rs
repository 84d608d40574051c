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

use crate::model::{AttrError, AttrErrors, Service, DEFAULT_UNIT_DIR};
use crate::remote::{AdoptedView, Remotes, Seen};

/// The `baton_service` resource. Its local reads (refresh, import) share the facade's
/// system-bus connection with the data source; changes connect on their own, as the CLI does.
/// A resource with `host` goes through [`Remotes`] instead: `baton` on that host over SSH.
#[derive(Debug, Default, Clone)]
pub struct ServiceResource {
    baton: Arc<Baton>,
    remotes: Arc<Remotes>,
}

impl ServiceResource {
    /// A resource that goes through `baton`.
    pub fn new(baton: Arc<Baton>) -> Self {
        ServiceResource { baton, remotes: Arc::default() }
    }

    /// The same, with remote hosts reached through `remotes`.
    pub fn with_remotes(mut self, remotes: Arc<Remotes>) -> Self {
        self.remotes = remotes;
        self
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

/// What the local systemd shows of the service `prior` describes.
fn observe_local(baton: &Baton, prior: &Service) -> Result<Seen, String> {
    let name = name_of(prior)?;
    let unit_dir = prior.unit_dir_or_default();
    let seen = baton.observe(&name, Path::new(&unit_dir)).map_err(|e| baton_core::error_chain(&e))?;
    Ok(Seen::from_observed(&seen))
}

/// What is really there for the service `prior` describes, from what a read `seen`: `None`
/// when no release of it is left on disk (it was removed outside Terraform). A release running
/// beside the active one shows in `unit` (as drift: the plan's `unit` is the active one only).
fn from_seen(prior: &Service, seen: &Seen) -> Result<Option<Service>, String> {
    let name = name_of(prior)?;
    if seen.releases.is_empty() {
        return Ok(None);
    }
    let mut now = prior.clone();
    now.id = Value::Value(name.clone());
    let active = seen.active_version.clone();
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
    now.unit_text = release.and_then(|r| r.unit_text.clone()).map_or(Value::Null, Value::Value);
    now.unit = match active {
        Some(_) => now.release_unit(),
        None => Value::Null,
    };
    if let Some(marked) = secrets_drift(prior, &name, release, seen) {
        now.secret_environment = marked;
    }
    let others = seen.others_running();
    if !others.is_empty() {
        let active_unit = now.unit.as_ref_option().cloned().unwrap_or_default();
        now.unit = Value::Value(format!("{active_unit} (also running: {})", others.join(", ")));
    }
    Ok(Some(now))
}

/// What `secret_environment` reads back as when the secret file of the release a read found is
/// not the one the state's values make (changed or removed by hand): the same keys, each with
/// this instead of a value. Only digests are compared; the values never leave the host.
pub const SECRET_DRIFT: &str = "(changed outside Terraform)";

/// `Some(marked map)` when the release's secret file differs from what the state's
/// `secret_environment` renders; None when it matches, there are no secrets, or the host could
/// not read its secret files (not root).
fn secrets_drift(
    prior: &Service,
    name: &str,
    release: Option<&crate::remote::SeenRelease>,
    seen: &Seen,
) -> Option<Value<std::collections::BTreeMap<String, Value<String>>>> {
    let release = release?;
    let Value::Value(secrets) = &prior.secret_environment else { return None };
    let values: std::collections::BTreeMap<String, String> =
        secrets.iter().filter_map(|(k, v)| v.as_ref_option().map(|v| (k.clone(), v.clone()))).collect();
    if values.is_empty() || values.len() != secrets.len() || !seen.secrets_read {
        return None;
    }
    let expected = baton_core::secret_file_digest(name, &release.version, &values);
    (release.secret_sha256.as_deref() != Some(expected.as_str()))
        .then(|| Value::Value(values.keys().map(|k| (k.clone(), Value::Value(SECRET_DRIFT.to_owned()))).collect()))
}

/// Splits a local import id (`name`, or `/unit/dir/name`) into the unit directory and the name.
fn split_local_id(id: &str) -> (&str, &str) {
    match id.rsplit_once('/') {
        Some((dir, name)) if id.starts_with('/') => (if dir.is_empty() { "/" } else { dir }, name),
        _ => (DEFAULT_UNIT_DIR, id),
    }
}

/// Adopts the local service `id` (`name`, or `/unit/dir/name`): its active release (else its
/// enabled one, else its newest) read back from the unit file, by the core.
fn adopt_local(baton: &Baton, id: &str) -> Result<AdoptedView, String> {
    let (unit_dir, name) = split_local_id(id);
    let adopted = baton.adopt(name, unit_dir).map_err(|e| match e {
        AdoptError::Name(e) => format!("import id {id:?}: {e}"),
        e => baton_core::error_chain(&e),
    })?;
    Ok(AdoptedView::from_adopted(adopted))
}

/// The attributes of an adopted service, with the warnings of what could not be read back.
fn import(adopted: AdoptedView) -> (Service, Vec<String>) {
    let (mut service, dropped) = Service::from_raw(&adopted.spec);
    let mut warnings: Vec<String> = dropped
        .into_iter()
        .map(|k| format!("directive {k} is repeated in the unit; a map of maps cannot hold it, so it was left out"))
        .collect();
    if !adopted.exact {
        warnings.push(format!(
            "{} does not read back exactly (edited by hand, or rendered by a custom template): the imported \
             attributes are a best effort, and the next plan shows the unit's difference in `unit_text`",
            adopted.unit_path
        ));
    }
    if let Some(secret_file) = &adopted.secret_file {
        warnings.push(format!(
            "{} reads secret_environment from {}; secret values are never read back: set secret_environment in \
             the configuration (the first apply then rewrites nothing if they are unchanged)",
            adopted.unit_path, secret_file
        ));
    }
    service.state = Value::Value(if adopted.active { "started" } else { "stopped" }.to_owned());
    service.enabled = Value::Value(adopted.enabled);
    service.unit_text = Value::Value(adopted.unit_text);
    service.unit = if adopted.active { service.release_unit() } else { Value::Null };
    (service, warnings)
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

/// Checks `host`: an SSH destination (`host`, `user@host`, `[v6addr]`), never an ssh option.
pub(crate) fn check_host(config: &Service) -> Option<AttrError> {
    let host = config.host()?;
    let bad = host.is_empty()
        || host.starts_with('-')
        || host.chars().any(|c| c.is_whitespace() || c.is_control() || matches!(c, '\'' | '"' | '\\' | '/' | ','));
    bad.then(|| {
        AttrError::new(
            AttributePath::new("host"),
            format!("host: must be an SSH destination (a name, an address or user@host), got {host:?}"),
        )
    })
}

impl ServiceResource {
    /// ValidateResourceConfig: every rule of the spec, on the values already known; every
    /// invalid attribute is reported, each at its path.
    pub fn validate(&self, diags: &mut Diagnostics, config: &Service) {
        let mut errors = config.validate().err().unwrap_or_default();
        errors.extend(check_host(config));
        if !errors.is_empty() {
            attr_errors(diags, errors);
        }
    }

    /// What a read sees of the service `prior` describes, on its host or here.
    async fn seen(&self, prior: &Service) -> Result<Seen, String> {
        match prior.host() {
            Some(host) => {
                let name = name_of(prior)?;
                self.remotes.observe(host, &name, &prior.unit_dir_or_default()).await
            }
            None => {
                let baton = self.baton.clone();
                let prior = prior.clone();
                blocking(move || observe_local(&baton, &prior)).await.and_then(|r| r)
            }
        }
    }

    async fn observe(&self, prior: &Service) -> Result<Option<Service>, String> {
        let seen = self.seen(prior).await?;
        from_seen(prior, &seen)
    }

    /// One `baton apply` of `raw` on `host` (over SSH) or here.
    async fn apply_on(&self, host: Option<&str>, raw: RawSpec) -> Result<RunResult, String> {
        match host {
            Some(host) => Ok(self.remotes.apply(host, &raw).await),
            None => {
                let baton = self.baton.clone();
                blocking(move || run(&baton, raw)).await
            }
        }
    }

    /// ReadResource: what is really there; `None` when the service no longer exists.
    pub async fn read(&self, diags: &mut Diagnostics, state: Service) -> Option<Service> {
        // A host that cannot be reached (or has no baton of this version yet: a read installs
        // nothing) keeps its last known state, with a warning naming it: the plan goes on for the
        // other hosts, and a change planned for this one fails (or installs) at apply.
        if let Some(host) = state.host() {
            if let Err(e) = self.remotes.for_read(host).await {
                warning(diags, format!("Cannot refresh baton_service on host {host}; its last known state is kept"), e);
                return Some(state);
            }
        }
        match self.observe(&state).await {
            Ok(now) => {
                if now.as_ref().is_some_and(|n| n.secret_environment != state.secret_environment) {
                    let on = state.host().map(|h| format!(" on host {h}")).unwrap_or_default();
                    warning(
                        diags,
                        format!("The secret environment file of baton_service{on} was changed outside Terraform"),
                        "It is not the file the state's secret_environment makes (compared by SHA-256; the values \
                         are not shown): the plan writes it again.",
                    );
                }
                now
            }
            Err(e) => {
                let summary = match state.host() {
                    Some(host) => format!("Cannot read the baton service on host {host}"),
                    None => "Cannot read the baton service from systemd".to_owned(),
                };
                error(diags, summary, e, AttributePath::root());
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
        match self.apply_on(done.host(), raw).await {
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
        let summary = match done.host() {
            Some(host) => format!("baton could not apply {} {} on host {host}", raw.name, raw.version),
            None => format!("baton could not apply {} {}", raw.name, raw.version),
        };
        match self.apply_on(done.host(), raw).await {
            Ok(RunResult::Ok(outcome)) => {
                warn_all(diags, &outcome);
                done
            }
            Ok(RunResult::Failed(f)) => {
                error(diags, summary, failure_detail(&f), AttributePath::root());
                self.observe(&prior).await.ok().flatten().unwrap_or(prior)
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
        let removed = match prior.host() {
            Some(host) => {
                let raw = RawSpec {
                    name: name.clone(),
                    unit_dir: Some(unit_dir),
                    state: Some(baton_core::spec::State::Absent),
                    ..RawSpec::default()
                };
                Ok(self.remotes.apply(host, &raw).await)
            }
            None => {
                let baton = self.baton.clone();
                let removing = name.clone();
                blocking(move || baton.remove(&removing, Some(&unit_dir), &ApplyOptions::default(), &mut log_progress))
                    .await
            }
        };
        match removed {
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
        let adopted = match crate::remote::split_import_id(&id) {
            Some((host, rest)) => {
                let (unit_dir, name) = split_local_id(rest);
                self.remotes.adopt(host, name, unit_dir).await.map(|a| (a, Some(host.to_owned())))
            }
            None => {
                let baton = self.baton.clone();
                let wanted = id.clone();
                blocking(move || adopt_local(&baton, &wanted)).await.and_then(|r| r).map(|a| (a, None))
            }
        };
        match adopted.map(|(a, host)| (import(a), host)) {
            Ok(((mut service, warnings), host)) => {
                service.host = host.map_or(Value::Null, Value::Value);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::SeenRelease;

    fn s(v: &str) -> Value<String> {
        Value::Value(v.to_owned())
    }

    fn prior() -> Service {
        Service {
            name: s("web"),
            version: s("v1"),
            exec_start: Value::Value(vec![s("/bin/web")]),
            secret_environment: Value::Value([("DB_PASSWORD".to_owned(), s("hunter2"))].into()),
            ..Service::default()
        }
    }

    fn seen(digest: Option<String>, secrets_read: bool) -> Seen {
        Seen {
            active_version: Some("v1".to_owned()),
            releases: vec![SeenRelease {
                version: "v1".to_owned(),
                unit: "web-v1.service".to_owned(),
                active_state: "active".to_owned(),
                enabled: true,
                unit_text: None,
                secret_sha256: digest,
            }],
            secrets_read,
        }
    }

    #[test]
    fn a_secret_file_changed_by_hand_reads_back_as_drift_without_values() {
        let p = prior();
        let right =
            baton_core::secret_file_digest("web", "v1", &[("DB_PASSWORD".to_owned(), "hunter2".to_owned())].into());
        let now = from_seen(&p, &seen(Some(right), true)).expect("read").expect("exists");
        assert_eq!(now.secret_environment, p.secret_environment, "the same file: no drift");
        for drifted in [seen(Some("0".repeat(64)), true), seen(None, true)] {
            let now = from_seen(&p, &drifted).expect("read").expect("exists");
            assert_ne!(now.secret_environment, p.secret_environment);
            let text = format!("{:?}", now.secret_environment);
            assert!(text.contains(SECRET_DRIFT) && text.contains("DB_PASSWORD") && !text.contains("hunter2"), "{text}");
        }
        // A host that could not read its secret files (not root) tells nothing: no drift.
        let now = from_seen(&p, &seen(None, false)).expect("read").expect("exists");
        assert_eq!(now.secret_environment, p.secret_environment);
    }
}
