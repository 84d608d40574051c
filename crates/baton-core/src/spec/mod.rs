//! The service spec: the raw JSON shape (serde + schemars) and its validation into types that
//! cannot hold an invalid value.
//!
//! Parsing happens in three steps: a size check on the raw bytes, a typed deserialisation that
//! refuses unknown fields and names the path of a wrong type, then [`RawSpec::validate`], which
//! checks every rule of the contract and names the field and the rule when one is broken.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub mod defaults;
mod validate;

/// The largest spec document accepted, in bytes.
pub const MAX_SPEC_BYTES: usize = 1024 * 1024;
/// The longest single argument, environment value or directive value, in bytes.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;
/// The most arguments `exec_start` may hold.
pub const MAX_ARGS: usize = 1024;
/// The most environment variables.
pub const MAX_ENV: usize = 1024;
/// The most directives over all sections.
pub const MAX_DIRECTIVES: usize = 256;
/// The longest path (`template`, `unit_dir`, `working_directory`).
pub const MAX_PATH_BYTES: usize = 4096;

/// A spec that breaks a rule: the field path and the rule, in one readable sentence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {rule}")]
pub struct SpecError {
    /// The path of the offending field, e.g. `exec_start[2]` or `environment.FOO`.
    pub field: String,
    /// The rule it breaks.
    pub rule: String,
}

impl SpecError {
    fn new(field: impl Into<String>, rule: impl Into<String>) -> Self {
        SpecError { field: field.into(), rule: rule.into() }
    }
}

/// The service spec exactly as a user writes it (JSON); every field is checked by
/// [`RawSpec::validate`].
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
#[schemars(title = "baton service spec")]
#[schemars(extend(
    "if" = {"properties": {"state": {"const": "started"}}},
    "then" = {"required": ["version", "exec_start"]}
))]
pub struct RawSpec {
    /// The service, `^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`.
    pub name: String,
    /// The release to be active, same charset as `name`. Required when `state` is `started`
    /// (the default); `stopped` and `absent` act on every release without it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
    /// The argv of the release; the first item is an absolute path. Required when `state` is
    /// `started`; with `stopped`, given together with `version` (that release's unit is written).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exec_start: Vec<String>,
    /// The SO_REUSEPORT port (1–65535): enables listener verification and a default TCP probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
    /// Readiness and health probing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<RawHealth>,
    /// systemd `Type=`: exec (default), simple or notify.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_type: Option<ServiceType>,
    /// systemd `User=`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// systemd `Group=`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// systemd `WorkingDirectory=`, an absolute path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_directory: Option<String>,
    /// Environment variables; keys `^[A-Za-z_][A-Za-z0-9_]*$`, values escaped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<BTreeMap<String, String>>,
    /// `TimeoutStopSec=` of every release unit, in seconds (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_stop_sec: Option<u64>,
    /// `Restart=` (default `always`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart: Option<String>,
    /// Extra unit directives: section → key → value or list of values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub directives: Option<BTreeMap<String, BTreeMap<String, DirectiveValue>>>,
    /// A custom minijinja template replacing the built-in one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// started (default), stopped or absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<State>,
    /// Whether the active release is enabled for boot (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Inactive release units kept on disk for rollback (default 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep: Option<u32>,
    /// Ensure `net.ipv4.tcp_migrate_req=1` before an old release is stopped (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migrate_requests: Option<bool>,
    /// Where unit files live (default `/etc/systemd/system`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit_dir: Option<String>,
    /// Environment variables whose values are secret: same key rules as `environment` (no key
    /// in both), single-line values. They are written only to a root-owned 0600 file that the
    /// unit names with `EnvironmentFile=`, never to the unit itself, results, diffs or errors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("writeOnly" = true))]
    pub secret_environment: Option<BTreeMap<String, String>>,
    /// How releases get their listener: `reuseport` (default; each release binds `port` itself
    /// with SO_REUSEPORT) or `socket` (baton manages `<name>.socket`, systemd holds the
    /// listening socket across releases and passes it with `LISTEN_FDS`; needs `port`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen_mode: Option<ListenMode>,
    /// With `listen_mode: "socket"`: the IP address the socket listens on (default: every
    /// address, IPv4 and IPv6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind_address: Option<String>,
    /// How release units are named: `per-version` (default; `<name>-<version>.service`, one
    /// unit file per release) or `instance` (`<name>@<version>.service`: one template
    /// `<name>@.service` and a drop-in per release, `<name>@<version>.service.d/baton.conf`,
    /// that pins all of the release's settings; `version` must then be a valid instance name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit_naming: Option<UnitNaming>,
}

/// The `health` object as written by a user.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RawHealth {
    /// HTTP path probed with GET (2xx or 3xx is healthy), e.g. `/health`; null for none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<String>,
    /// Probe with a TCP connect to `port` (default true when `port` is set and `http` is not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<bool>,
    /// How long the new release may take to become ready, in seconds (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_sec: Option<u64>,
    /// Time between probes, in milliseconds (default 200).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_ms: Option<u64>,
    /// Time both releases run while the new one must stay healthy, in seconds (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observe_sec: Option<u64>,
}

/// A directive value: one string, or a list rendered as the same key repeated.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(untagged)]
pub enum DirectiveValue {
    /// One value.
    One(String),
    /// The key repeated once per value.
    Many(Vec<String>),
}

/// systemd's `Type=` for a release.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ServiceType {
    /// `Type=exec`: started once the binary is executed.
    #[default]
    Exec,
    /// `Type=simple`.
    Simple,
    /// `Type=notify`: READY=1 is part of readiness.
    Notify,
}

impl ServiceType {
    /// The value of `Type=`.
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceType::Exec => "exec",
            ServiceType::Simple => "simple",
            ServiceType::Notify => "notify",
        }
    }
}

/// How the releases of a service get their listening socket.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ListenMode {
    /// Each release binds `port` itself with SO_REUSEPORT; old and new share it during a
    /// handover.
    #[default]
    Reuseport,
    /// baton manages `<name>.socket`: systemd holds one listening socket across releases and
    /// passes it to each (`Sockets=`, `LISTEN_FDS`); no queued connection is ever lost.
    Socket,
}

impl ListenMode {
    /// The name used in the spec.
    pub fn as_str(self) -> &'static str {
        match self {
            ListenMode::Reuseport => "reuseport",
            ListenMode::Socket => "socket",
        }
    }
}

/// How the unit of a release is named and stored (see `unit::instance`).
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum UnitNaming {
    /// One unit file per release, `<name>-<version>.service`.
    #[default]
    PerVersion,
    /// Instances of one template, `<name>@<version>.service`: the template `<name>@.service`
    /// holds no setting of a release, and each release's drop-in
    /// `<name>@<version>.service.d/baton.conf` pins all of them.
    Instance,
}

impl UnitNaming {
    /// The name used in the spec.
    pub fn as_str(self) -> &'static str {
        match self {
            UnitNaming::PerVersion => "per-version",
            UnitNaming::Instance => "instance",
        }
    }

    /// The unit name of release `version` of `service`.
    pub fn unit_name(self, service: &str, version: &str) -> String {
        match self {
            UnitNaming::PerVersion => unit_name(service, version),
            UnitNaming::Instance => instance_unit_name(service, version),
        }
    }
}

/// The desired state of the service.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Exactly `version` active, every other release stopped.
    #[default]
    Started,
    /// Every release stopped, files kept.
    Stopped,
    /// Every release stopped and its unit file removed.
    Absent,
}

impl State {
    /// The name used in the spec.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Started => "started",
            State::Stopped => "stopped",
            State::Absent => "absent",
        }
    }
}

/// The values `Restart=` accepts.
pub const RESTART_VALUES: &[&str] =
    &["no", "always", "on-success", "on-failure", "on-abnormal", "on-abort", "on-watchdog"];

/// Sections `directives` may extend.
pub const DIRECTIVE_SECTIONS: &[&str] = &["Unit", "Service", "Install"];

/// Keys baton renders itself, with the spec field that sets them instead.
const OWNED_KEYS: &[(&str, &str, &str)] = &[
    ("Unit", "Description", "name"),
    ("Service", "Type", "service_type"),
    ("Service", "ExecStart", "exec_start"),
    ("Service", "User", "user"),
    ("Service", "Group", "group"),
    ("Service", "WorkingDirectory", "working_directory"),
    ("Service", "Environment", "environment"),
    ("Service", "Restart", "restart"),
    ("Service", "TimeoutStopSec", "timeout_stop_sec"),
    ("Service", "Sockets", "listen_mode"),
];

/// A service or version name: `^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Ident(String);

impl Ident {
    /// Checks `value` against the name rule; `field` names it in the error.
    pub fn parse(field: &str, value: &str) -> Result<Self, SpecError> {
        let rule = "must match ^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$ (1 to 64 letters, digits, '_', '.' or '-', starting with a letter or digit)";
        let bytes = value.as_bytes();
        if bytes.is_empty() {
            return Err(SpecError::new(field, "must not be empty"));
        }
        if bytes.len() > 64 {
            return Err(SpecError::new(field, format!("is {} bytes long; {rule}", bytes.len())));
        }
        if !bytes[0].is_ascii_alphanumeric() {
            return Err(SpecError::new(field, format!("starts with {}; {rule}", describe_char(value, 0))));
        }
        if let Some(pos) = value.find(|c: char| !(c.is_ascii_alphanumeric() || "_.-".contains(c))) {
            return Err(SpecError::new(field, format!("contains {}; {rule}", describe_char(value, pos))));
        }
        Ok(Ident(value.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Ident {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Describes the character at byte `pos` of `s` for an error message.
fn describe_char(s: &str, pos: usize) -> String {
    match s[pos..].chars().next() {
        Some('\n') => "a newline".to_owned(),
        Some('\r') => "a carriage return".to_owned(),
        Some('\0') => "a NUL byte".to_owned(),
        Some(' ') => "a space".to_owned(),
        Some(c) if c.is_control() => format!("the control character U+{:04X}", c as u32),
        Some(c) => format!("{c:?}"),
        None => "nothing".to_owned(),
    }
}

/// Readiness and health settings with defaults applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Health {
    /// HTTP path to GET, if any (as given; [`Health::readiness`] is what a run does).
    pub http: Option<String>,
    /// Whether to probe with a TCP connect (as given or defaulted; see [`Health::readiness`]).
    pub tcp: bool,
    /// Readiness deadline, in seconds (≥ 1).
    pub timeout_sec: u64,
    /// Time between probes, in milliseconds (≥ 10).
    pub interval_ms: u64,
    /// Time both releases run while the new one must stay healthy, in seconds.
    pub observe_sec: u64,
    /// How a new release proves it is ready, decided once from `port`, `http` and `tcp`. Not
    /// an option of the spec, so not serialised with the spec's values.
    #[serde(skip)]
    pub readiness: Readiness,
}

/// How a new release proves it is ready, beyond systemd calling it active. Decided in
/// validation; the handover's readiness loop only follows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum Readiness {
    /// An HTTP `GET path` on the port answers 2xx or 3xx (served by the release's own
    /// processes), and the release listens on the port. `health.http` wins over `health.tcp`.
    Http {
        /// The port.
        port: u16,
        /// The path.
        path: String,
    },
    /// A TCP connect to the port is accepted by the release, and it listens on the port (the
    /// default with a port and no `health.http`).
    Tcp {
        /// The port.
        port: u16,
    },
    /// The release listens on the port (a port with `health.tcp: false` and no HTTP probe).
    Listen {
        /// The port.
        port: u16,
    },
    /// No port: the release must stay up, with the same main process, for
    /// [`Readiness::SETTLE`].
    Settle,
}

impl Readiness {
    /// Without a port to probe, how long a new release must stay up to count as ready.
    pub const SETTLE: std::time::Duration = std::time::Duration::from_secs(1);

    /// The port the release must listen on, if any.
    pub fn port(&self) -> Option<u16> {
        match self {
            Readiness::Http { port, .. } | Readiness::Tcp { port } | Readiness::Listen { port } => Some(*port),
            Readiness::Settle => None,
        }
    }
}

/// One extra directive, validated and ready to render.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Directive {
    /// The key, e.g. `LimitNOFILE`.
    pub key: String,
    /// The value as written by the user (escaped when rendered).
    pub value: String,
}

/// A validated service spec: every value obeys the contract's rules and defaults are applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceSpec {
    /// The service.
    pub name: Ident,
    /// The release to be active; always set for `started`. None when a `stopped` or `absent`
    /// spec names no release (it then acts on every release of the service).
    pub version: Option<Ident>,
    /// argv of the release; the first item is an absolute path. Never empty with `started` or
    /// with a `stopped` spec that names a release; empty when `version` is None (an `absent`
    /// spec renders nothing and may name a release without it).
    pub exec_start: Vec<String>,
    /// The SO_REUSEPORT port.
    pub port: Option<u16>,
    /// Readiness and health.
    pub health: Health,
    /// `Type=`.
    pub service_type: ServiceType,
    /// `User=`.
    pub user: Option<String>,
    /// `Group=`.
    pub group: Option<String>,
    /// `WorkingDirectory=`.
    pub working_directory: Option<PathBuf>,
    /// Environment variables.
    pub environment: BTreeMap<String, String>,
    /// `TimeoutStopSec=`, in seconds.
    pub timeout_stop_sec: u64,
    /// `Restart=`.
    pub restart: String,
    /// Extra directives per section (`Unit`, `Service`, `Install`), in key order.
    pub directives: BTreeMap<String, Vec<Directive>>,
    /// A custom template.
    pub template: Option<PathBuf>,
    /// Desired state.
    pub state: State,
    /// Whether the active release is enabled.
    pub enabled: bool,
    /// Inactive release units kept.
    pub keep: u32,
    /// Ensure `net.ipv4.tcp_migrate_req=1`.
    pub migrate_requests: bool,
    /// Where unit files live.
    pub unit_dir: PathBuf,
    /// Secret environment variables (values only in the release's secret file).
    pub secret_environment: Secrets,
    /// How releases get their listener.
    pub listen_mode: ListenMode,
    /// With socket mode: the address the socket listens on (None: every address).
    pub bind_address: Option<std::net::IpAddr>,
    /// How release units are named.
    pub unit_naming: UnitNaming,
}

/// The values of `secret_environment`: a map that never shows its values when debug-printed or
/// serialised (each value is `********`), so that no log line, panic message or error built
/// from a spec can carry one. [`Secrets::expose`] is the one way to the values.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secrets(BTreeMap<String, String>);

impl Secrets {
    /// The variables with their values, for the secret file and nothing else.
    pub fn expose(&self) -> &BTreeMap<String, String> {
        &self.0
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The variable names, which are not secret.
    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.0.keys()
    }

    /// The values, e.g. for a redactor.
    pub fn values(&self) -> impl Iterator<Item = &String> {
        self.0.values()
    }
}

impl From<BTreeMap<String, String>> for Secrets {
    fn from(map: BTreeMap<String, String>) -> Self {
        Secrets(map)
    }
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.0.keys().map(|k| (k, crate::result::MASK))).finish()
    }
}

impl Serialize for Secrets {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.keys().map(|k| (k, crate::result::MASK)))
    }
}

impl ServiceSpec {
    /// The unit name of a release of this service.
    pub fn unit_name(&self, version: &Ident) -> String {
        self.unit_naming.unit_name(self.name.as_str(), version.as_str())
    }

    /// The unit name of the release the spec names (None when it names none).
    pub fn unit(&self) -> Option<String> {
        self.version.as_ref().map(|v| self.unit_name(v))
    }

    /// The file that holds the release the spec names: `<unit_dir>/<unit>`, or with
    /// `unit_naming: "instance"` its drop-in `<unit_dir>/<unit>.d/baton.conf` (None when the
    /// spec names no release).
    pub fn release_path(&self) -> Option<PathBuf> {
        self.unit().map(|unit| crate::unit_dir::release_path(&self.unit_dir, &unit))
    }

    /// With `unit_naming: "instance"`, the template of the instance units,
    /// `<unit_dir>/<name>@.service`.
    pub fn template_path(&self) -> Option<PathBuf> {
        (self.unit_naming == UnitNaming::Instance).then(|| self.unit_dir.join(template_unit_name(self.name.as_str())))
    }

    /// The service's socket unit, `<name>.socket` (written only in socket mode).
    pub fn socket_unit(&self) -> String {
        socket_unit_name(self.name.as_str())
    }

    /// The spec with every default written out: the options a front-end reports as what it
    /// applied (Ansible's `invocation.module_args`). Validating it gives this spec again.
    pub fn to_raw(&self) -> RawSpec {
        let directives = self
            .directives
            .iter()
            .map(|(section, list)| {
                let mut keys: BTreeMap<String, DirectiveValue> = BTreeMap::new();
                for d in list {
                    match keys.get_mut(&d.key) {
                        None => {
                            keys.insert(d.key.clone(), DirectiveValue::One(d.value.clone()));
                        }
                        Some(DirectiveValue::One(first)) => {
                            let first = std::mem::take(first);
                            keys.insert(d.key.clone(), DirectiveValue::Many(vec![first, d.value.clone()]));
                        }
                        Some(DirectiveValue::Many(values)) => values.push(d.value.clone()),
                    }
                }
                (section.clone(), keys)
            })
            .collect();
        let path = |p: &PathBuf| p.to_string_lossy().into_owned();
        RawSpec {
            name: self.name.to_string(),
            version: self.version.as_ref().map(Ident::to_string).unwrap_or_default(),
            exec_start: self.exec_start.clone(),
            port: self.port.map(u32::from),
            health: Some(RawHealth {
                http: self.health.http.clone(),
                tcp: Some(self.health.tcp),
                timeout_sec: Some(self.health.timeout_sec),
                interval_ms: Some(self.health.interval_ms),
                observe_sec: Some(self.health.observe_sec),
            }),
            service_type: Some(self.service_type),
            user: self.user.clone(),
            group: self.group.clone(),
            working_directory: self.working_directory.as_ref().map(path),
            environment: Some(self.environment.clone()),
            timeout_stop_sec: Some(self.timeout_stop_sec),
            restart: Some(self.restart.clone()),
            directives: Some(directives),
            template: self.template.as_ref().map(path),
            state: Some(self.state),
            enabled: Some(self.enabled),
            keep: Some(self.keep),
            migrate_requests: Some(self.migrate_requests),
            unit_dir: Some(path(&self.unit_dir)),
            // Left out when empty: an option declared no_log shows as null when not given.
            secret_environment: (!self.secret_environment.is_empty()).then(|| self.secret_environment.expose().clone()),
            listen_mode: Some(self.listen_mode),
            bind_address: self.bind_address.map(|a| a.to_string()),
            unit_naming: Some(self.unit_naming),
        }
    }
}

/// `<service>-<version>.service`: the one place a release's unit name is made.
pub fn unit_name(service: &str, version: &str) -> String {
    format!("{service}-{version}.service")
}

/// `<service>@<version>.service`: the unit name of a release with `unit_naming: "instance"`.
pub fn instance_unit_name(service: &str, version: &str) -> String {
    format!("{service}@{version}.service")
}

/// `<service>@.service`: the template of a service's instance units.
pub fn template_unit_name(service: &str) -> String {
    format!("{service}@.service")
}

/// Whether `unit` is the unit name of release `version` of `service` in either naming.
pub fn is_release_unit(service: &str, version: &str, unit: &str) -> bool {
    unit == unit_name(service, version) || unit == instance_unit_name(service, version)
}

/// `<service>.socket`: the one place the name of a service's shared socket unit is made.
pub fn socket_unit_name(service: &str) -> String {
    format!("{service}.socket")
}

/// Parses a spec document: size limit, JSON syntax, field types, then every rule.
pub fn parse(input: &[u8]) -> Result<ServiceSpec, SpecError> {
    parse_raw(input)?.validate()
}

/// Parses a spec document into its raw form: size limit, JSON syntax and field types only.
pub fn parse_raw(input: &[u8]) -> Result<RawSpec, SpecError> {
    if input.len() > MAX_SPEC_BYTES {
        return Err(SpecError::new("spec", format!("is {} bytes; the limit is {} bytes", input.len(), MAX_SPEC_BYTES)));
    }
    let value: serde_json::Value = serde_json::from_slice(input).map_err(|e| {
        if e.is_eof() {
            SpecError::new("spec", format!("the JSON ends early ({e})"))
        } else if e.to_string().starts_with("trailing characters") {
            SpecError::new("spec", format!("has trailing data after the JSON object ({e})"))
        } else {
            SpecError::new("spec", format!("is not valid JSON ({e})"))
        }
    })?;
    from_value(value)
}

/// Converts a JSON value (as the Ansible and Terraform front-ends hold it) into the raw spec:
/// field types only, every error naming the field's path.
pub fn from_value(value: serde_json::Value) -> Result<RawSpec, SpecError> {
    use serde_json::Value;
    let kind = |v: &Value| match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    };
    // serde would accept an array for a struct; only objects are specs.
    let Value::Object(obj) = &value else {
        return Err(SpecError::new("spec", format!("must be a JSON object, got {}", kind(&value))));
    };
    if let Some(h) = obj.get("health").filter(|h| !h.is_object() && !h.is_null()) {
        return Err(SpecError::new("health", format!("must be an object, got {}", kind(h))));
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        let path = path.trim_end_matches(".?").trim_end_matches('?').trim_end_matches('.').to_owned();
        let field = if path.is_empty() { "spec".to_owned() } else { path };
        // serde quotes the value it could not take: never a secret's.
        if field.starts_with("secret_environment") {
            return SpecError::new(
                field,
                "must be an object of strings (names to values); the value given is not shown because it may be secret",
            );
        }
        // serde reports a missing field at its parent; name the field itself.
        if let Some(rest) = message.strip_prefix("missing field `") {
            if let Some((name, _)) = rest.split_once('`') {
                let field = if field == "spec" { name.to_owned() } else { format!("{field}.{name}") };
                return SpecError::new(field, "is required");
            }
        }
        SpecError::new(field, message)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> Result<ServiceSpec, SpecError> {
        parse(json.as_bytes())
    }

    const BASE: &str = r#"{"name":"app","version":"v1","exec_start":["/usr/bin/app","--port","8080"]}"#;

    #[test]
    fn minimal_spec_gets_defaults() {
        let s = spec(BASE).expect("valid");
        assert_eq!(s.unit().as_deref(), Some("app-v1.service"));
        assert_eq!(s.timeout_stop_sec, 30);
        assert_eq!(s.restart, "always");
        assert_eq!(s.keep, 2);
        assert!(s.enabled && s.migrate_requests);
        assert_eq!(s.state, State::Started);
        assert_eq!(s.unit_dir, PathBuf::from("/etc/systemd/system"));
        assert!(!s.health.tcp, "no port, no default probe");
    }

    #[test]
    fn a_directive_ending_in_a_backslash_before_blanks_is_refused() {
        // systemd strips trailing blanks, then reads a final backslash as a continuation.
        for value in [r#""a\\""#, r#""\\ ""#, r#""x\\   ""#] {
            let json = format!(
                r#"{{"name":"a","version":"1","exec_start":["/x"],"directives":{{"Install":{{"Alias":{value}}}}}}}"#
            );
            let err = spec(&json).expect_err(&json);
            assert_eq!(err.field, "directives.Install.Alias", "{json}");
            assert!(err.to_string().contains("backslash"), "{err}");
        }
    }

    #[test]
    fn port_enables_default_tcp_probe() {
        let s = spec(r#"{"name":"a","version":"1","exec_start":["/x"],"port":8080}"#).expect("valid");
        assert!(s.health.tcp);
        let s = spec(r#"{"name":"a","version":"1","exec_start":["/x"],"port":8080,"health":{"http":"/h"}}"#)
            .expect("valid");
        assert!(!s.health.tcp);
        assert_eq!(s.health.http.as_deref(), Some("/h"));
    }

    #[test]
    fn readiness_is_decided_in_validation() {
        let readiness = |extra: &str| {
            spec(&format!(r#"{{"name":"a","version":"1","exec_start":["/x"]{extra}}}"#))
                .expect("valid")
                .health
                .readiness
        };
        assert_eq!(readiness(""), Readiness::Settle);
        assert_eq!(readiness(r#","port":80"#), Readiness::Tcp { port: 80 });
        assert_eq!(readiness(r#","port":80,"health":{"tcp":false}"#), Readiness::Listen { port: 80 });
        let http = Readiness::Http { port: 80, path: "/h".to_owned() };
        assert_eq!(readiness(r#","port":80,"health":{"http":"/h"}"#), http);
        assert_eq!(readiness(r#","port":80,"health":{"http":"/h","tcp":true}"#), http, "HTTP wins over TCP");
        assert_eq!(http.port(), Some(80));
        assert_eq!(Readiness::Settle.port(), None);
        assert_eq!(unit_name("app", "v1"), "app-v1.service");
    }

    fn err(json: &str) -> String {
        spec(json).expect_err("must be refused").to_string()
    }

    #[test]
    fn errors_name_the_field_and_rule() {
        assert!(err(r#"{"name":"a/b","version":"v1","exec_start":["/x"]}"#).starts_with("name: contains '/'"));
        assert!(err(r#"{"name":"..","version":"v1","exec_start":["/x"]}"#).starts_with("name: starts with '.'"));
        assert!(err(r#"{"name":"a","version":"v 1","exec_start":["/x"]}"#).starts_with("version: contains a space"));
        assert!(err(r#"{"name":"a","version":"v1","exec_start":["x"]}"#)
            .starts_with("exec_start[0]: must be an absolute path"));
        assert!(err(r#"{"name":"a","version":"v1","exec_start":[]}"#)
            .starts_with("exec_start: must hold at least the program's absolute path"));
        assert!(err(r#"{"name":"a","version":"v1","exec_start":["/x","a","b\nc"]}"#)
            .starts_with("exec_start[2]: contains a newline"));
        assert!(err(r#"{"name":"a","version":"v1","exec_start":["/x"],"environment":{"A=B":"c"}}"#)
            .starts_with("environment.A=B: key must match"));
        assert!(err(r#"{"name":"a","version":"v1","exec_start":["/x"],"environment":{"A":"x\u0000"}}"#)
            .starts_with("environment.A: contains a NUL byte"));
        assert!(
            err(r#"{"name":"a","version":"v1","exec_start":["/x"],"port":70000}"#).starts_with("port: must be between")
        );
        assert!(err(r#"{"name":"a","version":"v1","exec_start":["/x"],"directives":{"Service]\n[Unit":{}}}"#)
            .starts_with("directives.Service]\\n[Unit: unknown section"));
        assert!(err(r#"{"name":"a","version":"v1","exec_start":["/x"],"directives":{"Service":{"ExecStart":"/y"}}}"#)
            .contains("set the `exec_start` field instead"));
        assert!(err(
            r#"{"name":"a","version":"v1","exec_start":["/x"],"directives":{"Service":{"Nice":"1\n[Install]"}}}"#
        )
        .starts_with("directives.Service.Nice: contains a newline"));
        assert!(err(r#"{"name":"a","version":"v1","exec_start":["/x"],"restart":"sometimes"}"#)
            .starts_with("restart: must be one of"));
        assert!(err(r#"{"name":"a","version":"v1","exec_start":["/x"],"health":{"http":"/h"}}"#)
            .starts_with("health.http: needs `port`"));
    }

    #[test]
    fn type_errors_name_the_path() {
        assert!(err(r#"{"name":"a","version":"v1","exec_start":["/x"],"port":"80"}"#).starts_with("port: invalid type"));
        assert!(err(r#"{"name":"a","version":"v1","exec_start":["/x", 3]}"#).starts_with("exec_start[1]: invalid type"));
        assert!(err(r#"{"name":"a","version":"v1","exec_start":["/x"],"health":{"timeout_sec":-1}}"#)
            .starts_with("health.timeout_sec: invalid value"));
        assert!(
            err(r#"{"name":"a","version":"v1","exec_start":["/x"],"colour":"red"}"#).contains("unknown field `colour`")
        );
        let e = err(r#"{"name":"a","version":"v1""#);
        assert!(e.contains("the JSON ends early"), "{e}");
        assert!(
            err(r#"{"name":"a",}"#).contains("spec: is not valid JSON")
                || err(r#"{"name":"a",}"#).contains("is not valid JSON")
        );
        assert_eq!(err(r#"{"version":"v1","exec_start":["/x"]}"#), "name: is required");
        assert!(err(r#"{"name":"a","version":"v1","exec_start":["/x"]} {}"#).starts_with("spec: has trailing data"));
    }

    #[test]
    fn only_started_needs_version_and_exec_start() {
        // started (also by default) names the missing field.
        assert_eq!(
            err(r#"{"name":"a","exec_start":["/x"]}"#),
            "version: is required when state is started (the release to run); only stopped and absent work without it"
        );
        assert!(err(r#"{"name":"a","state":"started","version":"v1"}"#)
            .starts_with("exec_start: must hold at least the program's absolute path"));
        assert!(err(r#"{"name":"a"}"#).starts_with("version: is required when state is started"));
        // stopped and absent need only the name (and optionally unit_dir).
        for state in ["stopped", "absent"] {
            let s = spec(&format!(r#"{{"name":"a","state":"{state}","unit_dir":"/srv/units"}}"#)).expect(state);
            assert_eq!((s.version, s.unit_dir), (None, PathBuf::from("/srv/units")));
            assert!(s.exec_start.is_empty());
        }
        // stopped may name a release, with its argv (its unit is written): both or neither.
        let s = spec(r#"{"name":"a","state":"stopped","version":"v1","exec_start":["/x"]}"#).expect("both");
        assert_eq!(s.unit().as_deref(), Some("a-v1.service"));
        assert!(err(r#"{"name":"a","state":"stopped","version":"v1"}"#)
            .starts_with("exec_start: is required with `version` when state is stopped"));
        assert!(err(r#"{"name":"a","state":"stopped","exec_start":["/x"]}"#)
            .starts_with("version: is required with `exec_start` when state is stopped"));
        // absent ignores a release but still refuses a bad value.
        assert!(spec(r#"{"name":"a","state":"absent","version":"v1"}"#).is_ok());
        assert!(err(r#"{"name":"a","state":"absent","version":"v 1"}"#).starts_with("version: contains a space"));
        assert!(err(r#"{"name":"a","state":"absent","exec_start":["x"]}"#)
            .starts_with("exec_start[0]: must be an absolute"));
    }

    #[test]
    fn to_raw_writes_out_every_default_and_validates_to_the_same_spec() {
        let full = r#"{"name":"a","version":"v1","exec_start":["/x","y"],"port":80,"health":{"http":"/h"},
            "user":"web","working_directory":"/srv","environment":{"K":"v"},
            "directives":{"Service":{"ExecStartPre":["/bin/true","/bin/false"],"Nice":"5"},"Install":{}}}"#;
        for doc in [BASE, full, r#"{"name":"a","state":"stopped"}"#, r#"{"name":"a","state":"absent","version":"v1"}"#]
        {
            let s = spec(doc).expect("valid");
            assert_eq!(s.to_raw().validate().expect("valid again"), s, "{doc}");
        }
        let raw = serde_json::to_value(spec(BASE).expect("valid").to_raw()).expect("json");
        assert_eq!(raw["keep"], 2);
        assert_eq!(raw["timeout_stop_sec"], 30);
        assert_eq!(raw["state"], "started");
        assert_eq!(
            raw["health"],
            serde_json::json!({"tcp": false, "timeout_sec": 30, "interval_ms": 200, "observe_sec": 0})
        );
        let raw = serde_json::to_value(spec(full).expect("valid").to_raw()).expect("json");
        assert_eq!(
            raw["directives"]["Service"],
            serde_json::json!({"ExecStartPre": ["/bin/true", "/bin/false"], "Nice": "5"})
        );
        let raw =
            serde_json::to_value(spec(r#"{"name":"a","state":"stopped"}"#).expect("valid").to_raw()).expect("json");
        assert!(raw.get("version").is_none() && raw.get("exec_start").is_none(), "{raw}");
    }

    #[test]
    fn secret_environment_follows_the_environment_rules_and_never_shows_a_value() {
        let s = spec(r#"{"name":"a","version":"v1","exec_start":["/x"],"secret_environment":{"PW":"hunter2"}}"#)
            .expect("valid");
        assert_eq!(s.secret_environment.expose()["PW"], "hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
        assert!(!serde_json::to_string(&s).expect("json").contains("hunter2"));
        assert_eq!(s.to_raw().validate().expect("valid again"), s);
        for (doc, start) in [
            (r#"{"PW-1":"x"}"#, "secret_environment.PW-1: key must match"),
            (r#"{"PW":"hunter2\nX"}"#, "secret_environment.PW: contains a newline"),
            (r#"{"PW":12345}"#, "secret_environment.PW: must be an object of strings"),
            (r#"{"A":"hunter2"}"#, "secret_environment.A: is also set in `environment`"),
        ] {
            let e = err(&format!(
                r#"{{"name":"a","version":"v1","exec_start":["/x"],"environment":{{"A":"1"}},"secret_environment":{doc}}}"#
            ));
            assert!(e.starts_with(start), "{e}");
            assert!(!e.contains("hunter2") && !e.contains("12345"), "{e}");
        }
    }

    #[test]
    fn huge_values_are_refused() {
        let big = "a".repeat(5 * 1024 * 1024);
        let doc = format!(r#"{{"name":"a","version":"v1","exec_start":["/x","{big}"]}}"#);
        assert!(err(&doc).starts_with("spec: is 524"), "{}", err(&doc));
        let big = "a".repeat(100 * 1024);
        let doc = format!(r#"{{"name":"a","version":"v1","exec_start":["/x","{big}"]}}"#);
        assert!(err(&doc).starts_with("exec_start[1]: is 102400 bytes long"));
    }
}
