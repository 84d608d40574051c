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

/// Checks a free-form value: bounded length, no NUL, no newline or carriage return.
/// Other control characters are allowed and escaped by the renderer where the value is quoted.
fn check_value(field: &str, value: &str, allow_controls: bool) -> Result<(), SpecError> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(SpecError::new(
            field,
            format!("is {} bytes long; the limit is {} bytes", value.len(), MAX_VALUE_BYTES),
        ));
    }
    for (pos, c) in value.char_indices() {
        let bad = match c {
            '\n' | '\r' | '\0' => true,
            c if c.is_control() => !allow_controls,
            _ => false,
        };
        if bad {
            return Err(SpecError::new(
                field,
                format!("contains {} at byte {pos}; values must be a single line", describe_char(value, pos)),
            ));
        }
    }
    Ok(())
}

/// Checks an absolute path without control characters.
fn check_path(field: &str, value: &str) -> Result<PathBuf, SpecError> {
    if value.is_empty() {
        return Err(SpecError::new(field, "must not be empty"));
    }
    if value.len() > MAX_PATH_BYTES {
        return Err(SpecError::new(
            field,
            format!("is {} bytes long; the limit is {} bytes", value.len(), MAX_PATH_BYTES),
        ));
    }
    if let Some(pos) = value.find(|c: char| c.is_control()) {
        return Err(SpecError::new(field, format!("contains {}", describe_char(value, pos))));
    }
    if !value.starts_with('/') {
        return Err(SpecError::new(field, format!("must be an absolute path (starting with '/'), got {value:?}")));
    }
    Ok(PathBuf::from(value))
}

/// Checks a path that the unit holds as it is, unquoted (`WorkingDirectory=`): as
/// [`check_path`], and not ending in a backslash, which systemd reads as a line continuation
/// (the next line of the unit would become part of the path).
fn check_unquoted_path(field: &str, value: &str) -> Result<PathBuf, SpecError> {
    let path = check_path(field, value)?;
    if value.trim_end().ends_with('\\') {
        return Err(SpecError::new(
            field,
            "must not end with a backslash (systemd would read it as a line continuation and swallow the next line)",
        ));
    }
    Ok(path)
}

/// Readiness and health settings with defaults applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Health {
    /// HTTP path to GET, if any.
    pub http: Option<String>,
    /// Whether to probe with a TCP connect.
    pub tcp: bool,
    /// Readiness deadline, in seconds (≥ 1).
    pub timeout_sec: u64,
    /// Time between probes, in milliseconds (≥ 10).
    pub interval_ms: u64,
    /// Time both releases run while the new one must stay healthy, in seconds.
    pub observe_sec: u64,
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
        unit_name(&self.name, version)
    }

    /// The unit name of the release the spec names (None when it names none).
    pub fn unit(&self) -> Option<String> {
        self.version.as_ref().map(|v| self.unit_name(v))
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
        }
    }
}

/// `<name>-<version>.service`.
pub fn unit_name(name: &Ident, version: &Ident) -> String {
    format!("{name}-{version}.service")
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

impl RawSpec {
    /// Checks every rule of the contract and applies the defaults.
    pub fn validate(self) -> Result<ServiceSpec, SpecError> {
        let name = Ident::parse("name", &self.name)?;
        let state = self.state.unwrap_or_default();
        // `started` runs a release, so it needs one; `stopped` and `absent` act on every release
        // of the service and need only its name. A `stopped` spec may still name a release (with
        // its argv) to have its unit written and enabled, as a `started` one would.
        let (given_version, given_argv) = (!self.version.is_empty(), !self.exec_start.is_empty());
        match state {
            State::Started if !given_version => {
                return Err(SpecError::new(
                    "version",
                    "is required when state is started (the release to run); only stopped and absent work without it",
                ))
            }
            State::Started if !given_argv => return Err(SpecError::new(
                "exec_start",
                "must hold at least the program's absolute path: the release's argv is required when state is started",
            )),
            State::Stopped if given_version && !given_argv => {
                return Err(SpecError::new(
                    "exec_start",
                    "is required with `version` when state is stopped (the release's unit is written); \
                     leave out both to stop every release",
                ))
            }
            State::Stopped if given_argv && !given_version => {
                return Err(SpecError::new(
                    "version",
                    "is required with `exec_start` when state is stopped (the release whose unit is written); \
                     leave out both to stop every release",
                ))
            }
            _ => {}
        }
        let version = if given_version { Some(Ident::parse("version", &self.version)?) } else { None };

        if self.exec_start.len() > MAX_ARGS {
            return Err(SpecError::new(
                "exec_start",
                format!("has {} arguments; the limit is {MAX_ARGS}", self.exec_start.len()),
            ));
        }
        for (i, arg) in self.exec_start.iter().enumerate() {
            check_value(&format!("exec_start[{i}]"), arg, true)?;
        }
        if let Some(program) = self.exec_start.first() {
            check_path("exec_start[0]", program)?;
        }

        let port = match self.port {
            None => None,
            Some(p) if (1..=65535).contains(&p) => Some(p as u16),
            Some(p) => return Err(SpecError::new("port", format!("must be between 1 and 65535, got {p}"))),
        };

        let raw_health = self.health.unwrap_or_default();
        let http = match raw_health.http {
            None => None,
            Some(path) => {
                check_value("health.http", &path, false)?;
                if !path.starts_with('/') {
                    return Err(SpecError::new(
                        "health.http",
                        format!("must be a path starting with '/', got {path:?}"),
                    ));
                }
                if let Some(pos) = path.find(|c: char| c.is_whitespace() || !c.is_ascii()) {
                    return Err(SpecError::new(
                        "health.http",
                        format!("contains {}; it must be a URL path without spaces", describe_char(&path, pos)),
                    ));
                }
                Some(path)
            }
        };
        let tcp = raw_health.tcp.unwrap_or(port.is_some() && http.is_none());
        if (tcp || http.is_some()) && port.is_none() {
            let which = if http.is_some() { "health.http" } else { "health.tcp" };
            return Err(SpecError::new(which, "needs `port`: the probe connects to the service's port"));
        }
        let timeout_sec = raw_health.timeout_sec.unwrap_or(30);
        if !(1..=3600).contains(&timeout_sec) {
            return Err(SpecError::new("health.timeout_sec", format!("must be between 1 and 3600, got {timeout_sec}")));
        }
        let interval_ms = raw_health.interval_ms.unwrap_or(200);
        if !(10..=60_000).contains(&interval_ms) {
            return Err(SpecError::new(
                "health.interval_ms",
                format!("must be between 10 and 60000, got {interval_ms}"),
            ));
        }
        let observe_sec = raw_health.observe_sec.unwrap_or(0);
        if observe_sec > 3600 {
            return Err(SpecError::new("health.observe_sec", format!("must be between 0 and 3600, got {observe_sec}")));
        }
        let health = Health { http, tcp, timeout_sec, interval_ms, observe_sec };

        let user = self.user.map(|u| check_account("user", u)).transpose()?;
        let group = self.group.map(|g| check_account("group", g)).transpose()?;
        let working_directory =
            self.working_directory.map(|d| check_unquoted_path("working_directory", &d)).transpose()?;

        let environment = self.environment.unwrap_or_default();
        if environment.len() > MAX_ENV {
            return Err(SpecError::new(
                "environment",
                format!("has {} variables; the limit is {MAX_ENV}", environment.len()),
            ));
        }
        for (key, value) in &environment {
            check_env_key("environment", key)?;
            check_value(&format!("environment.{key}"), value, true)?;
        }

        let secret_environment = self.secret_environment.unwrap_or_default();
        if secret_environment.len() > MAX_ENV {
            return Err(SpecError::new(
                "secret_environment",
                format!("has {} variables; the limit is {MAX_ENV}", secret_environment.len()),
            ));
        }
        for (key, value) in &secret_environment {
            check_env_key("secret_environment", key)?;
            // The value is never quoted in an error: only where the rule breaks.
            check_value(&format!("secret_environment.{key}"), value, true)?;
            if environment.contains_key(key) {
                return Err(SpecError::new(
                    format!("secret_environment.{key}"),
                    "is also set in `environment`; set each variable in only one of them",
                ));
            }
        }

        let timeout_stop_sec = self.timeout_stop_sec.unwrap_or(30);
        if !(1..=86_400).contains(&timeout_stop_sec) {
            return Err(SpecError::new(
                "timeout_stop_sec",
                format!("must be between 1 and 86400, got {timeout_stop_sec}"),
            ));
        }

        let restart = self.restart.unwrap_or_else(|| "always".to_owned());
        if !RESTART_VALUES.contains(&restart.as_str()) {
            return Err(SpecError::new(
                "restart",
                format!("must be one of {}, got {restart:?}", RESTART_VALUES.join(", ")),
            ));
        }

        let directives = check_directives(self.directives.unwrap_or_default())?;

        let template = self.template.map(|t| check_path("template", &t)).transpose()?;
        let unit_dir = check_path("unit_dir", self.unit_dir.as_deref().unwrap_or("/etc/systemd/system"))?;
        if unit_dir.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
            return Err(SpecError::new("unit_dir", "must not contain '..'"));
        }

        let keep = self.keep.unwrap_or(2);
        if keep > 100 {
            return Err(SpecError::new("keep", format!("must be between 0 and 100, got {keep}")));
        }

        Ok(ServiceSpec {
            name,
            version,
            exec_start: self.exec_start,
            port,
            health,
            service_type: self.service_type.unwrap_or_default(),
            user,
            group,
            working_directory,
            environment,
            timeout_stop_sec,
            restart,
            directives,
            template,
            state,
            enabled: self.enabled.unwrap_or(true),
            keep,
            migrate_requests: self.migrate_requests.unwrap_or(true),
            unit_dir,
            secret_environment: Secrets::from(secret_environment),
        })
    }
}

/// A user or group: a systemd-valid name or a numeric id.
fn check_account(field: &str, value: String) -> Result<String, SpecError> {
    let rule = "must be a user/group name (^[A-Za-z_][A-Za-z0-9_-]{0,31}$) or a numeric id";
    if value.is_empty() {
        return Err(SpecError::new(field, "must not be empty"));
    }
    if value.bytes().all(|b| b.is_ascii_digit()) {
        return match value.parse::<u32>() {
            Ok(id) if id < u32::MAX => Ok(value),
            _ => Err(SpecError::new(field, format!("{rule}; {value} is out of range"))),
        };
    }
    let first_ok = value.as_bytes()[0].is_ascii_alphabetic() || value.starts_with('_');
    let rest_ok = value.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !first_ok || !rest_ok || value.len() > 32 {
        return Err(SpecError::new(field, format!("{rule}, got {value:?}")));
    }
    Ok(value)
}

fn check_env_key(field: &str, key: &str) -> Result<(), SpecError> {
    let ok = !key.is_empty()
        && key.len() <= 256
        && (key.as_bytes()[0].is_ascii_alphabetic() || key.starts_with('_'))
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(SpecError::new(
            format!("{field}.{}", key.escape_debug()),
            "key must match ^[A-Za-z_][A-Za-z0-9_]*$ (at most 256 bytes)",
        ))
    }
}

fn check_directives(
    raw: BTreeMap<String, BTreeMap<String, DirectiveValue>>,
) -> Result<BTreeMap<String, Vec<Directive>>, SpecError> {
    let mut out = BTreeMap::new();
    let mut count = 0usize;
    for (section, keys) in raw {
        if !DIRECTIVE_SECTIONS.contains(&section.as_str()) {
            return Err(SpecError::new(
                format!("directives.{}", section.escape_debug()),
                format!("unknown section; directives may extend only {}", DIRECTIVE_SECTIONS.join(", ")),
            ));
        }
        let mut list = Vec::new();
        for (key, value) in keys {
            let field = format!("directives.{section}.{}", key.escape_debug());
            let key_ok = !key.is_empty()
                && key.len() <= 64
                && key.as_bytes()[0].is_ascii_alphabetic()
                && key.chars().all(|c| c.is_ascii_alphanumeric());
            if !key_ok {
                return Err(SpecError::new(field, "key must match ^[A-Za-z][A-Za-z0-9]{0,63}$"));
            }
            if let Some((_, _, instead)) = OWNED_KEYS.iter().find(|(s, k, _)| *s == section && *k == key) {
                return Err(SpecError::new(field, format!("is rendered by baton; set the `{instead}` field instead")));
            }
            let values = match value {
                DirectiveValue::One(v) => vec![v],
                DirectiveValue::Many(vs) => vs,
            };
            if values.is_empty() {
                return Err(SpecError::new(field, "an empty list renders nothing; leave the key out"));
            }
            for (i, v) in values.into_iter().enumerate() {
                let vfield = if i == 0 { field.clone() } else { format!("{field}[{i}]") };
                check_value(&vfield, &v, false)?;
                if v.ends_with('\\') {
                    return Err(SpecError::new(vfield, "must not end with a backslash (it would continue the line)"));
                }
                count += 1;
                if count > MAX_DIRECTIVES {
                    return Err(SpecError::new("directives", format!("more than {MAX_DIRECTIVES} values")));
                }
                list.push(Directive { key: key.clone(), value: v });
            }
        }
        out.insert(section, list);
    }
    Ok(out)
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
    fn port_enables_default_tcp_probe() {
        let s = spec(r#"{"name":"a","version":"1","exec_start":["/x"],"port":8080}"#).expect("valid");
        assert!(s.health.tcp);
        let s = spec(r#"{"name":"a","version":"1","exec_start":["/x"],"port":8080,"health":{"http":"/h"}}"#)
            .expect("valid");
        assert!(!s.health.tcp);
        assert_eq!(s.health.http.as_deref(), Some("/h"));
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
