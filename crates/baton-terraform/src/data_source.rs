//! The `baton_service` data source: a service's releases as they are now, read from its unit
//! files and from systemd (the same read as `baton status`), for outputs and other resources.
//!
//! With `host`, the read runs `baton status --json` on that host over the provider's SSH
//! connection to it (the resource's, shared for the run); without, it reads this machine.
//!
//! A service with no release on disk is an error naming the service and the directory: a typo in
//! `name` must not read as "nothing deployed". (Terraform reads a data source that depends on a
//! resource still to be created only after that resource was applied.)

use std::path::Path;
use std::sync::Arc;

use baton_core::{Baton, ReleaseStatus, ServiceStatus};
use serde::{Deserialize, Serialize};
use tf_provider::value::Value;
use tf_provider::{AttributePath, Diagnostics};

use crate::model::{Service, DEFAULT_UNIT_DIR};
use crate::remote::Remotes;
use crate::resource::{check_host, error};

/// The attributes of the `baton_service` data source.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServiceInfo {
    /// Computed: the service's name.
    pub id: Value<String>,
    /// The service.
    pub name: Value<String>,
    /// Where its unit files live.
    pub unit_dir: Value<String>,
    /// The host to read over SSH (null: this machine).
    pub host: Value<String>,
    /// Computed: the active release (null when none runs).
    pub version: Value<String>,
    /// Computed: `started` or `stopped`.
    pub state: Value<String>,
    /// Computed: the active unit (null when none runs).
    pub unit: Value<String>,
    /// Computed: whether the active release is enabled for boot (null when none runs).
    pub enabled: Value<bool>,
    /// Computed: the active release's main PID (null when none runs).
    pub main_pid: Value<i64>,
    /// Computed: every release on disk, in the order of their unit names.
    pub releases: Value<Vec<Value<String>>>,
}

/// A read that found nothing to describe, or could not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadError {
    /// No release of the service in the unit directory.
    NotFound(String),
    /// systemd or the unit directory could not be read.
    Failed(String),
}

/// A value, or null.
fn known<T>(v: Option<T>) -> Value<T> {
    v.map_or(Value::Null, Value::Value)
}

/// The data source's attributes from a service's status; `None` when it has no release.
pub fn from_status(config: &ServiceInfo, unit_dir: &str, st: &ServiceStatus) -> Option<ServiceInfo> {
    if st.releases.is_empty() {
        return None;
    }
    let active = st.active_version.as_deref().and_then(|v| st.releases.iter().find(|r| r.version == v));
    Some(ServiceInfo {
        id: Value::Value(st.name.clone()),
        name: config.name.clone(),
        unit_dir: Value::Value(unit_dir.to_owned()),
        host: config.host.clone(),
        version: known(active.map(|r| r.version.clone())),
        state: Value::Value(if active.is_some() { "started" } else { "stopped" }.to_owned()),
        unit: known(active.map(|r| r.unit.clone())),
        enabled: known(active.map(|r| r.enabled)),
        main_pid: known(active.map(|r| i64::from(r.main_pid))),
        releases: Value::Value(st.releases.iter().map(|r| Value::Value(r.version.clone())).collect()),
    })
}

fn name_and_dir(config: &ServiceInfo) -> (String, String) {
    let name = config.name.as_ref_option().cloned().unwrap_or_default();
    let unit_dir = config.unit_dir.as_ref_option().map_or(DEFAULT_UNIT_DIR, String::as_str).to_owned();
    (name, unit_dir)
}

/// The attributes from `st`, or the error naming the service and where it was looked for.
fn found(config: &ServiceInfo, unit_dir: &str, st: &ServiceStatus) -> Result<ServiceInfo, ReadError> {
    let (name, _) = name_and_dir(config);
    from_status(config, unit_dir, st).ok_or_else(|| {
        let on = config.host.as_ref_option().map(|h| format!(" on host {h}")).unwrap_or_default();
        ReadError::NotFound(format!(
            "there is no release of service {name:?} in {unit_dir}{on}: no unit file there carries \
             X-Baton-Service={name} (deploy it first, or check `name`, `unit_dir` and `host`)"
        ))
    })
}

/// Reads the service `config` names from its unit directory and systemd (a failed read is
/// tried once more on a fresh connection, by the core).
pub fn read(baton: &Baton, config: &ServiceInfo) -> Result<ServiceInfo, ReadError> {
    let (name, unit_dir) = name_and_dir(config);
    let st = baton.status(&name, Path::new(&unit_dir)).map_err(|e| ReadError::Failed(baton_core::error_chain(&e)))?;
    found(config, &unit_dir, &st)
}

/// One release in `baton status --json`.
#[derive(Debug, Deserialize)]
struct RemoteRelease {
    version: String,
    unit: String,
    #[serde(default)]
    active_state: String,
    #[serde(default)]
    sub_state: String,
    enabled: bool,
    #[serde(default)]
    main_pid: u32,
    #[serde(default)]
    active_since_unix: Option<u64>,
}

/// `baton status --json` as a remote host prints it.
#[derive(Debug, Deserialize)]
struct RemoteStatus {
    name: String,
    active_version: Option<String>,
    releases: Vec<RemoteRelease>,
}

impl From<RemoteStatus> for ServiceStatus {
    fn from(r: RemoteStatus) -> ServiceStatus {
        ServiceStatus {
            name: r.name,
            active_version: r.active_version,
            releases: r
                .releases
                .into_iter()
                .map(|r| ReleaseStatus {
                    version: r.version,
                    unit: r.unit,
                    active_state: r.active_state,
                    sub_state: r.sub_state,
                    enabled: r.enabled,
                    main_pid: r.main_pid,
                    active_since_unix: r.active_since_unix,
                })
                .collect(),
            socket: None,
        }
    }
}

/// Reads the service on `host`: `baton status --json` there (read-only: no lock, no write).
async fn read_remote(remotes: &Remotes, host: &str, config: &ServiceInfo) -> Result<ServiceInfo, ReadError> {
    let (name, unit_dir) = name_and_dir(config);
    let conn = remotes.for_read(host).await.map_err(ReadError::Failed)?;
    let out =
        conn.baton(&["status", "--json", "--unit-dir", &unit_dir, &name], None).await.map_err(ReadError::Failed)?;
    let st: RemoteStatus = out.json(host, "baton status").map_err(ReadError::Failed)?;
    found(config, &unit_dir, &st.into())
}

/// The `baton_service` data source.
#[derive(Debug, Clone)]
pub struct ServiceDataSource {
    baton: Arc<Baton>,
    remotes: Arc<Remotes>,
}

impl ServiceDataSource {
    /// A data source reading through `baton`.
    pub fn new(baton: Arc<Baton>) -> Self {
        ServiceDataSource { baton, remotes: Arc::default() }
    }

    /// The same, with remote hosts reached through `remotes` (the resource's connections).
    pub fn with_remotes(mut self, remotes: Arc<Remotes>) -> Self {
        self.remotes = remotes;
        self
    }

    /// ValidateDataResourceConfig: `name` and `unit_dir` under the spec's rules, `host` under
    /// the resource's, each reported.
    pub fn validate(&self, diags: &mut Diagnostics, config: &ServiceInfo) {
        // The resource's checks, with everything else still "unknown" (so never at fault).
        let as_service = Service {
            name: config.name.clone(),
            unit_dir: config.unit_dir.clone(),
            host: config.host.clone(),
            version: Value::Unknown,
            exec_start: Value::Unknown,
            ..Service::default()
        };
        let mut errors = as_service.validate().err().unwrap_or_default();
        errors.extend(check_host(&as_service));
        {
            for e in errors {
                error(diags, "Invalid baton_service data source", e.msg, e.path);
            }
        }
    }

    /// ReadDataSource: the service as it is now.
    pub async fn read(&self, diags: &mut Diagnostics, config: ServiceInfo) -> Option<ServiceInfo> {
        self.validate(diags, &config);
        if !diags.errors.is_empty() {
            return None;
        }
        let read = match config.host.as_ref_option() {
            Some(host) => read_remote(&self.remotes, host, &config).await,
            None => {
                let baton = self.baton.clone();
                let wanted = config.clone();
                tokio::task::spawn_blocking(move || read(&baton, &wanted))
                    .await
                    .map_err(|e| ReadError::Failed(format!("the baton worker thread failed: {e}")))
                    .and_then(|r| r)
            }
        };
        let name = config.name.as_ref_option().cloned().unwrap_or_default();
        match read {
            Ok(info) => Some(info),
            Err(ReadError::NotFound(msg)) => {
                error(diags, format!("baton service {name:?} not found"), msg, AttributePath::new("name"));
                None
            }
            Err(ReadError::Failed(msg)) => {
                let summary = match config.host.as_ref_option() {
                    Some(host) => format!("Cannot read baton service {name:?} on host {host}"),
                    None => format!("Cannot read baton service {name:?}"),
                };
                error(diags, summary, msg, AttributePath::root());
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use baton_core::testing::{FakeSystemd, Systemd as _};

    fn s(v: &str) -> Value<String> {
        Value::Value(v.to_owned())
    }

    /// Writes the unit file of `version` of `web` into `dir`, as baton renders it.
    fn deploy(dir: &Path, version: &str) -> String {
        let spec = baton_core::spec::parse_raw(
            format!(
                r#"{{"name":"web","version":"{version}","exec_start":["/bin/web"],"unit_dir":"{}"}}"#,
                dir.display()
            )
            .as_bytes(),
        )
        .expect("valid spec");
        let text = baton_core::check(spec).expect("valid").unit.expect("renders");
        let unit = format!("web-{version}.service");
        std::fs::write(dir.join(&unit), text).expect("write the unit");
        unit
    }

    fn config(dir: &Path) -> ServiceInfo {
        ServiceInfo { name: s("web"), unit_dir: s(&dir.display().to_string()), ..ServiceInfo::default() }
    }

    #[test]
    fn reads_the_active_release_and_every_release_on_disk() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sd = Arc::new(FakeSystemd::new());
        let baton = Baton::with_systemd(sd.clone());
        deploy(dir.path(), "v1");
        let v2 = deploy(dir.path(), "v2");
        sd.set_running(&v2, true);
        let info = read(&baton, &config(dir.path())).expect("found");
        assert_eq!(info.id, s("web"));
        assert_eq!(info.version, s("v2"));
        assert_eq!(info.state, s("started"));
        assert_eq!(info.unit, s("web-v2.service"));
        assert_eq!(info.enabled, Value::Value(true));
        let pid = sd.unit_status(&v2).expect("status").main_pid;
        assert!(pid > 0);
        assert_eq!(info.main_pid, Value::Value(i64::from(pid)));
        assert_eq!(info.releases, Value::Value(vec![s("v1"), s("v2")]));
        assert_eq!(info.unit_dir, s(&dir.path().display().to_string()));
    }

    #[test]
    fn a_stopped_service_has_releases_but_no_active_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sd = Arc::new(FakeSystemd::new());
        let baton = Baton::with_systemd(sd.clone());
        deploy(dir.path(), "v1");
        let info = read(&baton, &config(dir.path())).expect("found");
        assert_eq!(info.state, s("stopped"));
        assert_eq!(info.version, Value::Null);
        assert_eq!(info.unit, Value::Null);
        assert_eq!(info.enabled, Value::Null);
        assert_eq!(info.main_pid, Value::Null);
        assert_eq!(info.releases, Value::Value(vec![s("v1")]));
    }

    #[test]
    fn a_missing_service_is_an_error_naming_it_and_the_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sd = Arc::new(FakeSystemd::new());
        let baton = Baton::with_systemd(sd.clone());
        deploy(dir.path(), "v1");
        let mut c = config(dir.path());
        c.name = s("wbe");
        match read(&baton, &c) {
            Err(ReadError::NotFound(msg)) => {
                assert!(msg.contains("\"wbe\"") && msg.contains(&dir.path().display().to_string()), "{msg}")
            }
            other => panic!("expected NotFound, got {other:?}"),
        }
    }

    #[test]
    fn a_remote_status_reads_as_a_local_one() {
        let json = br#"{"name":"web","active_version":"v2","releases":[
            {"version":"v1","unit":"web-v1.service","active_state":"inactive","sub_state":"dead","enabled":false,"main_pid":0,"active_since_unix":null},
            {"version":"v2","unit":"web-v2.service","active_state":"active","sub_state":"running","enabled":true,"main_pid":42,"active_since_unix":7}]}"#;
        let out = crate::remote::RemoteOutput { status: Some(0), stdout: json.to_vec(), stderr: String::new() };
        let st: RemoteStatus = out.json("h1", "baton status").expect("parses");
        let c = ServiceInfo { name: s("web"), host: s("h1"), ..ServiceInfo::default() };
        let info = found(&c, "/etc/systemd/system", &st.into()).expect("found");
        assert_eq!((info.version, info.main_pid, info.host), (s("v2"), Value::Value(42), s("h1")));
        assert_eq!(info.releases, Value::Value(vec![s("v1"), s("v2")]));
        let none = ServiceStatus { name: "web".into(), active_version: None, releases: vec![], socket: None };
        match found(&c, "/etc/systemd/system", &none) {
            Err(ReadError::NotFound(msg)) => assert!(msg.contains("on host h1"), "{msg}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn validation_reports_host() {
        let ds = ServiceDataSource::new(Arc::default());
        let mut diags = Diagnostics::default();
        ds.validate(&mut diags, &ServiceInfo { name: s("web"), host: s("-oProxyCommand=x"), ..ServiceInfo::default() });
        let at: Vec<_> = diags.errors.iter().map(|d| d.attribute.steps.clone()).collect();
        assert_eq!(at, vec![AttributePath::new("host").steps], "{diags:?}");
    }

    #[test]
    fn validation_reports_name_and_unit_dir() {
        let ds = ServiceDataSource::new(Arc::default());
        let mut diags = Diagnostics::default();
        ds.validate(
            &mut diags,
            &ServiceInfo { name: s("bad name"), unit_dir: s("relative"), ..ServiceInfo::default() },
        );
        let at: Vec<_> = diags.errors.iter().map(|d| d.attribute.steps.clone()).collect();
        assert_eq!(at, vec![AttributePath::new("name").steps, AttributePath::new("unit_dir").steps], "{diags:?}");
        let mut diags = Diagnostics::default();
        ds.validate(&mut diags, &ServiceInfo { name: Value::Unknown, ..ServiceInfo::default() });
        assert!(diags.errors.is_empty(), "{diags:?}");
    }
}
