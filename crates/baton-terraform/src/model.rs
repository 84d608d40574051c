//! The attributes of `baton_service` as Terraform sends them (every value known, null or
//! unknown), their translation into the core's [`RawSpec`], the defaults a plan fills in and the
//! computed attributes (`id`, `unit`, `unit_text`). Pure: no I/O, unit-tested.

use std::collections::BTreeMap;

use baton_core::spec::{defaults, DirectiveValue, ListenMode, RawHealth, RawSpec, ServiceType, State, UnitNaming};
use serde::{Deserialize, Serialize};
use tf_provider::value::Value;
use tf_provider::AttributePath;

/// `unit_dir` when the configuration leaves it out (the core's default).
pub const DEFAULT_UNIT_DIR: &str = defaults::UNIT_DIR;

/// The `health` nested attribute.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Health {
    /// `health.http`.
    pub http: Value<String>,
    /// `health.tcp`.
    pub tcp: Value<bool>,
    /// `health.timeout_sec`.
    pub timeout_sec: Value<i64>,
    /// `health.interval_ms`.
    pub interval_ms: Value<i64>,
    /// `health.observe_sec`.
    pub observe_sec: Value<i64>,
}

/// A section of `directives`: key → value.
pub type Section = BTreeMap<String, Value<String>>;

/// Every attribute of `baton_service`, as configuration, plan or state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Service {
    /// Computed: the name.
    pub id: Value<String>,
    /// The service.
    pub name: Value<String>,
    /// The release to be active.
    pub version: Value<String>,
    /// argv of the release.
    pub exec_start: Value<Vec<Value<String>>>,
    /// The SO_REUSEPORT port.
    pub port: Value<i64>,
    /// Readiness and health probing.
    pub health: Value<Health>,
    /// `Type=`.
    pub service_type: Value<String>,
    /// `User=`.
    pub user: Value<String>,
    /// `Group=`.
    pub group: Value<String>,
    /// `WorkingDirectory=`.
    pub working_directory: Value<String>,
    /// `Environment=`.
    pub environment: Value<BTreeMap<String, Value<String>>>,
    /// `TimeoutStopSec=`.
    pub timeout_stop_sec: Value<i64>,
    /// `Restart=`.
    pub restart: Value<String>,
    /// Extra directives: section → key → value.
    pub directives: Value<BTreeMap<String, Value<Section>>>,
    /// A custom template.
    pub template: Value<String>,
    /// started or stopped.
    pub state: Value<String>,
    /// Whether the release is enabled for boot.
    pub enabled: Value<bool>,
    /// Inactive releases kept for rollback.
    pub keep: Value<i64>,
    /// Ensure `net.ipv4.tcp_migrate_req=1`.
    pub migrate_requests: Value<bool>,
    /// Where unit files live.
    pub unit_dir: Value<String>,
    /// `reuseport` or `socket` (baton manages `<name>.socket`).
    pub listen_mode: Value<String>,
    /// Socket mode: the IP address the shared socket listens on.
    pub bind_address: Value<String>,
    /// `per-version` or `instance` (a template and a drop-in per release).
    pub unit_naming: Value<String>,
    /// Secret environment variables (sensitive): only in the release's 0600 secret file.
    pub secret_environment: Value<BTreeMap<String, Value<String>>>,
    /// The host to manage over SSH (null: this machine). Changing it replaces the resource.
    pub host: Value<String>,
    /// Computed: the active unit (null when stopped).
    pub unit: Value<String>,
    /// Computed: the unit file of the release `version`, as on disk.
    pub unit_text: Value<String>,
}

/// A value that does not fit the spec, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrError {
    /// The attribute.
    pub path: AttributePath,
    /// The spec's field and the rule, in one sentence.
    pub msg: String,
}

impl AttrError {
    pub(crate) fn new(path: AttributePath, msg: impl Into<String>) -> Self {
        AttrError { path, msg: msg.into() }
    }
}

/// Every value that does not fit the spec: a plan reports them all at once.
pub type AttrErrors = Vec<AttrError>;

/// What stands in for a value not known yet while the known ones are checked: valid under
/// every rule, so no error ever points at it. (Also what takes an invalid value's place while
/// the others are checked: see `check.rs`.)
pub(crate) mod placeholder {
    pub const IDENT: &str = "x";
    pub const PROGRAM: &str = "/x";
    pub const ARG: &str = "x";
    pub const PORT: u32 = 1;
    pub const HTTP: &str = "/";
}

/// Reads values into the raw spec: an unknown value becomes a placeholder (and is noted), a
/// value the spec cannot even hold (a null item, a negative count, an unknown keyword) becomes
/// an error and a placeholder, so that the other attributes are still checked.
#[derive(Debug, Default)]
struct Reader {
    unknown: bool,
    errors: AttrErrors,
}

impl Reader {
    fn opt<T: Clone>(&mut self, v: &Value<T>) -> Option<T> {
        match v {
            Value::Value(x) => Some(x.clone()),
            Value::Null => None,
            Value::Unknown => {
                self.unknown = true;
                None
            }
        }
    }

    /// A value that the spec requires: the placeholder while unknown.
    fn required(&mut self, v: &Value<String>, placeholder: &str) -> String {
        match v {
            Value::Unknown => {
                self.unknown = true;
                placeholder.to_owned()
            }
            other => other.as_ref_option().cloned().unwrap_or_default(),
        }
    }

    fn count<T: TryFrom<i64>>(&mut self, v: &Value<i64>, path: AttributePath, field: &str) -> Option<T> {
        let n = self.opt(v)?;
        let msg = if n < 0 {
            format!("{field}: must not be negative, got {n}")
        } else {
            format!("{field}: {n} is out of range")
        };
        match T::try_from(n) {
            Ok(x) if n >= 0 => Some(x),
            _ => {
                self.errors.push(AttrError::new(path, msg));
                None
            }
        }
    }

    fn keyword<T>(&mut self, v: &Value<String>, parse: impl Fn(&str) -> Result<T, AttrError>) -> Option<T> {
        let s = self.opt(v)?;
        match parse(&s) {
            Ok(x) => Some(x),
            Err(e) => {
                self.errors.push(e);
                None
            }
        }
    }

    fn string_list(&mut self, v: &Value<Vec<Value<String>>>, field: &str) -> Option<Vec<String>> {
        let items = match v {
            Value::Unknown => {
                self.unknown = true;
                return Some(vec![placeholder::PROGRAM.to_owned()]);
            }
            other => other.as_ref_option()?.clone(),
        };
        let stand_in = |i: usize| if i == 0 { placeholder::PROGRAM } else { placeholder::ARG }.to_owned();
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            out.push(match item {
                Value::Value(s) => s.clone(),
                Value::Unknown => {
                    self.unknown = true;
                    stand_in(i)
                }
                Value::Null => {
                    self.errors.push(AttrError::new(
                        AttributePath::new(field.to_owned()).index(i as i64),
                        format!("{field}[{i}]: must not be null"),
                    ));
                    stand_in(i)
                }
            });
        }
        Some(out)
    }

    fn string_map(
        &mut self,
        v: &Value<BTreeMap<String, Value<String>>>,
        path: &AttributePath,
        field: &str,
    ) -> Option<BTreeMap<String, String>> {
        let entries = self.opt(v)?;
        let mut out = BTreeMap::new();
        for (k, item) in entries {
            match item {
                Value::Value(s) => {
                    out.insert(k, s);
                }
                // Left out while unknown: no rule of a map's entry depends on another.
                Value::Unknown => self.unknown = true,
                Value::Null => self
                    .errors
                    .push(AttrError::new(path.clone().key(k.clone()), format!("{field}.{k}: must not be null"))),
            }
        }
        Some(out)
    }
}

/// The attributes lowered into the core's raw spec.
#[derive(Debug)]
pub(crate) struct Lowered {
    /// The spec, with placeholders for unknown values and for values that broke a rule on the
    /// way.
    pub raw: RawSpec,
    /// Whether a value was unknown.
    pub unknown: bool,
    /// The values the raw spec cannot hold.
    pub errors: AttrErrors,
}

/// Parses `state`: `started` or `stopped` (`absent` is what destroying the resource does).
pub fn parse_state(s: &str) -> Result<State, AttrError> {
    match s {
        "started" => Ok(State::Started),
        "stopped" => Ok(State::Stopped),
        "absent" => Err(AttrError::new(
            AttributePath::new("state"),
            "state: \"absent\" is what destroying the resource does; remove the resource from the \
             configuration (or run `terraform destroy`) instead",
        )),
        other => Err(AttrError::new(
            AttributePath::new("state"),
            format!("state: must be \"started\" or \"stopped\", got {other:?}"),
        )),
    }
}

fn parse_listen_mode(s: &str) -> Result<ListenMode, AttrError> {
    match s {
        "reuseport" => Ok(ListenMode::Reuseport),
        "socket" => Ok(ListenMode::Socket),
        other => Err(AttrError::new(
            AttributePath::new("listen_mode"),
            format!("listen_mode: must be \"reuseport\" or \"socket\", got {other:?}"),
        )),
    }
}

fn parse_unit_naming(s: &str) -> Result<UnitNaming, AttrError> {
    match s {
        "per-version" => Ok(UnitNaming::PerVersion),
        "instance" => Ok(UnitNaming::Instance),
        other => Err(AttrError::new(
            AttributePath::new("unit_naming"),
            format!("unit_naming: must be \"per-version\" or \"instance\", got {other:?}"),
        )),
    }
}

fn parse_service_type(s: &str) -> Result<ServiceType, AttrError> {
    match s {
        "exec" => Ok(ServiceType::Exec),
        "simple" => Ok(ServiceType::Simple),
        "notify" => Ok(ServiceType::Notify),
        other => Err(AttrError::new(
            AttributePath::new("service_type"),
            format!("service_type: must be \"exec\", \"simple\" or \"notify\", got {other:?}"),
        )),
    }
}

/// Sets a null `value` to the core's `default` (unknown stays unknown).
fn fill<T>(value: &mut Value<T>, default: Option<T>) {
    if let (Value::Null, Some(d)) = (&*value, default) {
        *value = Value::Value(d);
    }
}

fn known_str(v: &Value<String>) -> Option<&str> {
    match v {
        Value::Value(s) => Some(s.as_str()),
        _ => None,
    }
}

impl Service {
    /// The attributes as the core's raw spec (see [`Lowered`]). `id`, `unit` and `unit_text`
    /// are outputs and ignored.
    pub(crate) fn lower(&self) -> Lowered {
        let mut r = Reader::default();
        let name = r.required(&self.name, placeholder::IDENT);
        let version = r.required(&self.version, placeholder::IDENT);
        let exec_start = r.string_list(&self.exec_start, "exec_start");
        let port = match &self.port {
            Value::Unknown => {
                r.unknown = true;
                Some(placeholder::PORT)
            }
            // A port the spec cannot hold still counts as set: no error of `health` follows.
            port => r
                .count::<u32>(port, AttributePath::new("port"), "port")
                .or(port.is_value().then_some(placeholder::PORT)),
        };
        let health = match r.opt(&self.health) {
            None => None,
            Some(h) => {
                let at = |a: &str| AttributePath::new("health").attribute(a.to_owned());
                let http = match &h.http {
                    Value::Unknown => {
                        r.unknown = true;
                        Some(placeholder::HTTP.to_owned())
                    }
                    http => http.as_ref_option().cloned(),
                };
                Some(RawHealth {
                    http,
                    tcp: r.opt(&h.tcp),
                    timeout_sec: r.count(&h.timeout_sec, at("timeout_sec"), "health.timeout_sec"),
                    interval_ms: r.count(&h.interval_ms, at("interval_ms"), "health.interval_ms"),
                    observe_sec: r.count(&h.observe_sec, at("observe_sec"), "health.observe_sec"),
                })
            }
        };
        let service_type = r.keyword(&self.service_type, parse_service_type);
        let environment = r.string_map(&self.environment, &AttributePath::new("environment"), "environment");
        let timeout_stop_sec =
            r.count(&self.timeout_stop_sec, AttributePath::new("timeout_stop_sec"), "timeout_stop_sec");
        let directives = r.opt(&self.directives).map(|sections| {
            let mut out = BTreeMap::new();
            for (section, keys) in sections {
                let path = AttributePath::new("directives").key(section.clone());
                let field = format!("directives.{section}");
                if let Some(keys) = r.string_map(&keys, &path, &field) {
                    out.insert(section, keys.into_iter().map(|(k, v)| (k, DirectiveValue::One(v))).collect());
                }
            }
            out
        });
        let state = r.keyword(&self.state, parse_state);
        let keep = r.count(&self.keep, AttributePath::new("keep"), "keep");
        let listen_mode = r.keyword(&self.listen_mode, parse_listen_mode);
        let unit_naming = r.keyword(&self.unit_naming, parse_unit_naming);
        let raw = RawSpec {
            name,
            version,
            exec_start: exec_start.unwrap_or_default(),
            port,
            health,
            service_type,
            user: r.opt(&self.user),
            group: r.opt(&self.group),
            working_directory: r.opt(&self.working_directory),
            environment,
            timeout_stop_sec,
            restart: r.opt(&self.restart),
            directives,
            template: r.opt(&self.template),
            state,
            enabled: r.opt(&self.enabled),
            keep,
            migrate_requests: r.opt(&self.migrate_requests),
            unit_dir: r.opt(&self.unit_dir),
            listen_mode,
            bind_address: r.opt(&self.bind_address),
            unit_naming,
            secret_environment: r.string_map(
                &self.secret_environment,
                &AttributePath::new("secret_environment"),
                "secret_environment",
            ),
        };
        Lowered { raw, unknown: r.unknown, errors: r.errors }
    }

    /// The core's raw spec of these attributes; `Ok(None)` while a value is still unknown.
    pub fn to_raw(&self) -> Result<Option<RawSpec>, AttrErrors> {
        let low = self.lower();
        if !low.errors.is_empty() {
            return Err(low.errors);
        }
        Ok((!low.unknown).then_some(low.raw))
    }

    /// Checks the attributes against every rule of the spec and returns every one that breaks
    /// a rule (a value still unknown is checked again once known). With every value known and
    /// valid, the unit file they render.
    pub fn check(&self) -> Result<Option<String>, AttrErrors> {
        crate::check::check(self.lower()).map(|c| c.unit)
    }

    /// [`Service::check`] without the unit.
    pub fn validate(&self) -> Result<(), AttrErrors> {
        self.check().map(|_| ())
    }

    /// The unit name of the release `version`, as `unit_naming` names it (`<name>-<version>.service`
    /// or `<name>@<version>.service`).
    pub fn release_unit(&self) -> Value<String> {
        let naming = match &self.unit_naming {
            Value::Value(s) => parse_unit_naming(s).unwrap_or(defaults::UNIT_NAMING),
            Value::Null => defaults::UNIT_NAMING,
            _ => return Value::Unknown,
        };
        match (&self.name, &self.version) {
            (Value::Value(n), Value::Value(v)) => Value::Value(naming.unit_name(n, v)),
            (Value::Null, _) | (_, Value::Null) => Value::Null,
            _ => Value::Unknown,
        }
    }

    /// Sets `id` and `unit` from the other attributes (unknown while they are), and `unit_text`.
    fn set_outputs(&mut self, unit_text: Option<String>) {
        self.id = self.name.clone();
        self.unit = match &self.state {
            Value::Value(s) if s == "started" => self.release_unit(),
            Value::Value(_) | Value::Null => Value::Null,
            Value::Unknown => Value::Unknown,
        };
        self.unit_text = unit_text.map_or(Value::Unknown, Value::Value);
    }

    /// The planned state: the proposed one checked by the core, every attribute the
    /// configuration leaves out taken from the core's normalised spec (its defaults), and the
    /// outputs computed.
    ///
    /// Defaults come from the configuration, never from the prior state: a prior state that a
    /// refresh found drifted (`state = "stopped"`, `enabled = false`) plans back to the spec.
    pub fn plan(proposed: &Service, config: &Service) -> Result<Service, AttrErrors> {
        let mut p = proposed.clone();
        // What the configuration says; null stands for the core's default.
        p.service_type = config.service_type.clone();
        p.timeout_stop_sec = config.timeout_stop_sec;
        p.restart = config.restart.clone();
        p.state = config.state.clone();
        p.enabled = config.enabled;
        p.keep = config.keep;
        p.migrate_requests = config.migrate_requests;
        p.unit_dir = config.unit_dir.clone();
        p.listen_mode = config.listen_mode.clone();
        p.unit_naming = config.unit_naming.clone();
        p.health = config.health.clone();
        let checked = crate::check::check(p.lower())?;
        // Every default written out (values still unknown stand as placeholders there, and stay
        // unknown here: only a null is filled in).
        let d = &checked.normalised;
        fill(&mut p.service_type, d.service_type.map(|t| t.as_str().to_owned()));
        fill(&mut p.timeout_stop_sec, d.timeout_stop_sec.map(|t| t as i64));
        fill(&mut p.restart, d.restart.clone());
        fill(&mut p.state, d.state.map(|s| s.as_str().to_owned()));
        fill(&mut p.enabled, d.enabled);
        fill(&mut p.keep, d.keep.map(i64::from));
        fill(&mut p.migrate_requests, d.migrate_requests);
        fill(&mut p.unit_dir, d.unit_dir.clone());
        fill(&mut p.listen_mode, d.listen_mode.map(|m| m.as_str().to_owned()));
        fill(&mut p.unit_naming, d.unit_naming.map(|m| m.as_str().to_owned()));
        if let (Value::Value(h), Some(dh)) = (&mut p.health, &d.health) {
            // The TCP default depends on `port` and `http`: unknown while either is.
            if h.tcp.is_null() && (config.port.is_unknown() || h.http.is_unknown()) {
                h.tcp = Value::Unknown;
            }
            fill(&mut h.tcp, dh.tcp);
            fill(&mut h.timeout_sec, dh.timeout_sec.map(|t| t as i64));
            fill(&mut h.interval_ms, dh.interval_ms.map(|t| t as i64));
            fill(&mut h.observe_sec, dh.observe_sec.map(|t| t as i64));
        }
        p.set_outputs(checked.unit);
        Ok(p)
    }

    /// Attributes whose change makes it another service: a change replaces the resource.
    pub fn replace_triggers(prior: &Service, planned: &Service) -> Vec<AttributePath> {
        let mut out = Vec::new();
        if prior.name != planned.name {
            out.push(AttributePath::new("name"));
        }
        if prior.unit_dir != planned.unit_dir {
            out.push(AttributePath::new("unit_dir"));
        }
        if prior.host != planned.host {
            out.push(AttributePath::new("host"));
        }
        out
    }

    /// `host`, when set (the resource lives on a remote host).
    pub fn host(&self) -> Option<&str> {
        known_str(&self.host)
    }

    /// `unit_dir` as a path (the default when null).
    pub fn unit_dir_or_default(&self) -> String {
        known_str(&self.unit_dir).unwrap_or(DEFAULT_UNIT_DIR).to_owned()
    }

    /// The attributes of a spec read back from a unit file (import): the unit's fields, and
    /// the defaults for everything the unit does not hold. Returns the directive keys that a
    /// `map(map(string))` cannot hold (a key repeated in the unit).
    pub fn from_raw(raw: &RawSpec) -> (Service, Vec<String>) {
        let s = |v: &Option<String>| v.clone().map_or(Value::Null, Value::Value);
        let mut dropped = Vec::new();
        let directives = raw.directives.as_ref().map_or(Value::Null, |sections| {
            Value::Value(
                sections
                    .iter()
                    .map(|(section, keys)| {
                        let keys = keys
                            .iter()
                            .filter_map(|(k, v)| match v {
                                DirectiveValue::One(v) => Some((k.clone(), Value::Value(v.clone()))),
                                DirectiveValue::Many(_) => {
                                    dropped.push(format!("{section}.{k}"));
                                    None
                                }
                            })
                            .collect();
                        (section.clone(), Value::Value(keys))
                    })
                    .collect(),
            )
        });
        let service = Service {
            id: Value::Value(raw.name.clone()),
            name: Value::Value(raw.name.clone()),
            version: Value::Value(raw.version.clone()),
            exec_start: Value::Value(raw.exec_start.iter().cloned().map(Value::Value).collect()),
            port: raw.port.map_or(Value::Null, |p| Value::Value(i64::from(p))),
            health: Value::Null,
            service_type: Value::Value(raw.service_type.unwrap_or(defaults::SERVICE_TYPE).as_str().to_owned()),
            user: s(&raw.user),
            group: s(&raw.group),
            working_directory: s(&raw.working_directory),
            environment: raw.environment.as_ref().map_or(Value::Null, |env| {
                Value::Value(env.iter().map(|(k, v)| (k.clone(), Value::Value(v.clone()))).collect())
            }),
            timeout_stop_sec: Value::Value(raw.timeout_stop_sec.unwrap_or(defaults::TIMEOUT_STOP_SEC) as i64),
            restart: Value::Value(raw.restart.clone().unwrap_or_else(|| defaults::RESTART.to_owned())),
            directives,
            template: s(&raw.template),
            state: Value::Value(raw.state.unwrap_or(defaults::STATE).as_str().to_owned()),
            enabled: Value::Value(raw.enabled.unwrap_or(defaults::ENABLED)),
            keep: Value::Value(i64::from(raw.keep.unwrap_or(defaults::KEEP))),
            migrate_requests: Value::Value(raw.migrate_requests.unwrap_or(defaults::MIGRATE_REQUESTS)),
            unit_dir: Value::Value(raw.unit_dir.clone().unwrap_or_else(|| DEFAULT_UNIT_DIR.to_owned())),
            listen_mode: Value::Value(raw.listen_mode.unwrap_or(defaults::LISTEN_MODE).as_str().to_owned()),
            bind_address: s(&raw.bind_address),
            unit_naming: Value::Value(raw.unit_naming.unwrap_or(defaults::UNIT_NAMING).as_str().to_owned()),
            // A unit names its secret file, never the values: they cannot be read back.
            secret_environment: Value::Null,
            // Set by a remote import (`host:name`).
            host: Value::Null,
            unit: Value::Null,
            unit_text: Value::Null,
        };
        (service, dropped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tf_provider::AttributePathStep;

    fn s(v: &str) -> Value<String> {
        Value::Value(v.to_owned())
    }

    fn config() -> Service {
        Service {
            name: s("web"),
            version: s("v1"),
            exec_start: Value::Value(vec![s("/usr/bin/web"), s("--port"), s("8080")]),
            port: Value::Value(8080),
            health: Value::Value(Health {
                tcp: Value::Value(true),
                timeout_sec: Value::Value(20),
                ..Health::default()
            }),
            environment: Value::Value([("RUST_LOG".to_owned(), s("info"))].into()),
            directives: Value::Value(
                [("Service".to_owned(), Value::Value([("LimitNOFILE".to_owned(), s("65536"))].into()))].into(),
            ),
            ..Service::default()
        }
    }

    #[test]
    fn secret_environment_is_lowered_but_never_in_unit_text() {
        let c = Service {
            name: s("app"),
            version: s("v1"),
            exec_start: Value::Value(vec![s("/bin/app")]),
            secret_environment: Value::Value([("DB_PASSWORD".to_owned(), s("hunter2"))].into()),
            ..Service::default()
        };
        let raw = c.to_raw().expect("valid").expect("known");
        assert_eq!(raw.secret_environment.expect("lowered")["DB_PASSWORD"], "hunter2");
        let text = c.check().expect("valid").expect("unit text");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("EnvironmentFile=/etc/systemd/system/baton-secrets/app-v1.service.env"), "{text}");
        assert!(crate::schema::service().block.attributes["secret_environment"].sensitive);
    }

    #[test]
    fn plan_fills_defaults_and_outputs() {
        let c = config();
        let p = Service::plan(&c, &c).expect("plans");
        assert_eq!(p.id, s("web"));
        assert_eq!(p.unit, s("web-v1.service"));
        assert_eq!(p.state, s("started"));
        assert_eq!(p.service_type, s("exec"));
        assert_eq!(p.timeout_stop_sec, Value::Value(30));
        assert_eq!(p.keep, Value::Value(2));
        assert_eq!(p.unit_dir, s(DEFAULT_UNIT_DIR));
        let h = p.health.as_ref_option().expect("health").clone();
        assert_eq!(h.tcp, Value::Value(true));
        assert_eq!(h.timeout_sec, Value::Value(20));
        assert_eq!(h.interval_ms, Value::Value(200));
        assert_eq!(h.observe_sec, Value::Value(0));
        let text = p.unit_text.as_ref_option().expect("unit text");
        assert!(text.contains("ExecStart=\"/usr/bin/web\" \"--port\" \"8080\""), "{text}");
        assert!(text.contains("LimitNOFILE=65536"), "{text}");
        // Planning the plan again changes nothing: no endless diff from defaults.
        assert_eq!(Service::plan(&p, &c).expect("plans"), p);
    }

    #[test]
    fn drifted_prior_plans_back_to_the_spec() {
        let c = config();
        let mut drifted = Service::plan(&c, &c).expect("plans");
        drifted.state = s("stopped");
        drifted.enabled = Value::Value(false);
        drifted.unit = Value::Null;
        // Terraform proposes the prior value of an optional+computed attribute left out.
        let p = Service::plan(&drifted, &c).expect("plans");
        assert_eq!(p.state, s("started"));
        assert_eq!(p.enabled, Value::Value(true));
        assert_eq!(p.unit, s("web-v1.service"));
    }

    #[test]
    fn unit_names_the_instance_with_instance_units() {
        let c = Service { unit_naming: s("instance"), ..config() };
        let p = Service::plan(&c, &c).expect("plans");
        assert_eq!(p.unit, s("web@v1.service"));
        assert_eq!(p.release_unit(), s("web@v1.service"));
        let c = Service { unit_naming: Value::Unknown, ..config() };
        assert_eq!(c.release_unit(), Value::Unknown);
        assert_eq!(config().release_unit(), s("web-v1.service"), "per-version by default");
    }

    #[test]
    fn unknown_values_make_outputs_unknown() {
        let mut c = config();
        c.version = Value::Unknown;
        let p = Service::plan(&c, &c).expect("plans");
        assert_eq!(p.unit, Value::Unknown);
        assert_eq!(p.unit_text, Value::Unknown);
        assert_eq!(p.id, s("web"));
        let mut c = config();
        c.port = Value::Unknown;
        if let Value::Value(h) = &mut c.health {
            h.tcp = Value::Null;
        }
        let p = Service::plan(&c, &c).expect("plans");
        assert_eq!(p.health.as_ref_option().expect("health").tcp, Value::Unknown);
        assert!(c.validate().is_ok(), "unknown values are checked later");
    }

    /// The only error of a configuration.
    #[track_caller]
    fn one_error(c: &Service) -> AttrError {
        let mut errors = c.validate().expect_err("invalid");
        assert_eq!(errors.len(), 1, "{errors:?}");
        errors.remove(0)
    }

    #[test]
    fn spec_errors_name_the_attribute() {
        let mut c = config();
        c.exec_start = Value::Value(vec![s("/bin/x"), s("a\nb")]);
        let e = one_error(&c);
        assert_eq!(e.path.steps, vec![AttributePathStep::Attribute("exec_start".into()), AttributePathStep::Index(1)]);
        assert!(e.msg.contains("newline"), "{}", e.msg);

        let mut c = config();
        c.environment = Value::Value([("BAD KEY".to_owned(), s("x"))].into());
        let e = one_error(&c);
        assert_eq!(
            e.path.steps,
            vec![AttributePathStep::Attribute("environment".into()), AttributePathStep::Key("BAD KEY".into())]
        );

        let mut c = config();
        c.state = s("absent");
        assert!(one_error(&c).msg.contains("destroy"));
        let mut c = config();
        c.port = Value::Value(-1);
        assert!(one_error(&c).msg.contains("negative"));
        let mut c = config();
        c.health = Value::Value(Health { timeout_sec: Value::Value(0), ..Health::default() });
        let e = one_error(&c);
        assert_eq!(
            e.path.steps,
            vec![AttributePathStep::Attribute("health".into()), AttributePathStep::Attribute("timeout_sec".into())]
        );
    }

    /// Every invalid attribute is reported, each at its path: what the spec cannot hold (a
    /// keyword, a negative count, a null item) and what breaks the core's rules alike.
    #[test]
    fn every_invalid_attribute_is_reported() {
        let mut c = config();
        c.name = s("bad name");
        c.exec_start = Value::Value(vec![s("relative"), Value::Null, s("ok")]);
        c.port = Value::Value(-5);
        c.service_type = s("forking");
        c.restart = s("sometimes");
        c.environment = Value::Value([("BAD KEY".to_owned(), s("x")), ("OK".to_owned(), s("y\nz"))].into());
        c.directives = Value::Value(
            [
                ("Service".to_owned(), Value::Value([("ExecStart".to_owned(), s("/bin/y"))].into())),
                ("Nope".to_owned(), Value::Value([("A".to_owned(), s("1"))].into())),
            ]
            .into(),
        );
        c.keep = Value::Value(500);
        c.state = s("running");
        let errors = c.validate().expect_err("invalid");
        let at: Vec<String> = errors
            .iter()
            .map(|e| {
                e.path
                    .steps
                    .iter()
                    .map(|s| match s {
                        AttributePathStep::Attribute(a) => format!(".{a}"),
                        AttributePathStep::Key(k) => format!("[{k:?}]"),
                        AttributePathStep::Index(i) => format!("[{i}]"),
                    })
                    .collect::<String>()
            })
            .collect();
        let mut sorted = at.clone();
        sorted.sort();
        assert_eq!(
            sorted,
            [
                ".directives[\"Nope\"]",
                ".directives[\"Service\"][\"ExecStart\"]",
                ".environment[\"BAD KEY\"]",
                ".environment[\"OK\"]",
                ".exec_start[0]",
                ".exec_start[1]",
                ".keep",
                ".name",
                ".port",
                ".restart",
                ".service_type",
                ".state",
            ],
            "{errors:#?}"
        );
        // Each message names the field and the rule.
        let port = &errors[at.iter().position(|a| a == ".port").expect("port")];
        assert!(port.msg.contains("port") && port.msg.contains("negative"), "{}", port.msg);
        // The plan reports the same errors.
        assert_eq!(Service::plan(&c, &c).expect_err("invalid").len(), errors.len());
    }

    /// A value still unknown does not stop the known ones from being checked, nor is an error
    /// ever reported at it.
    #[test]
    fn known_values_are_checked_beside_unknown_ones() {
        let mut c = config();
        c.name = Value::Unknown;
        c.port = Value::Unknown;
        c.exec_start = Value::Value(vec![Value::Unknown, s("a\nb")]);
        c.keep = Value::Value(500);
        let errors = c.validate().expect_err("invalid");
        let paths: Vec<_> = errors.iter().map(|e| e.path.steps.clone()).collect();
        assert_eq!(
            paths,
            vec![
                vec![AttributePathStep::Attribute("exec_start".into()), AttributePathStep::Index(1)],
                vec![AttributePathStep::Attribute("keep".into())],
            ],
            "{errors:?}"
        );
        let mut c = config();
        c.exec_start = Value::Unknown;
        c.health = Value::Value(Health { http: Value::Unknown, ..Health::default() });
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn name_and_unit_dir_replace() {
        let c = config();
        let p = Service::plan(&c, &c).expect("plans");
        let mut renamed = c.clone();
        renamed.name = s("api");
        let q = Service::plan(&renamed, &renamed).expect("plans");
        assert_eq!(Service::replace_triggers(&p, &q), vec![AttributePath::new("name")]);
        let mut bumped = c.clone();
        bumped.version = s("v2");
        let q = Service::plan(&bumped, &bumped).expect("plans");
        assert!(Service::replace_triggers(&p, &q).is_empty(), "a version bump is an in-place update");
    }

    #[test]
    fn import_round_trip_plans_no_change() {
        let c = config();
        let p = Service::plan(&c, &c).expect("plans");
        let text = p.unit_text.as_ref_option().expect("text").clone();
        // As an import reads it back: the unit deployed, then adopted.
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("web-v1.service"), &text).expect("write the unit");
        let sd = std::sync::Arc::new(baton_core::testing::FakeSystemd::new());
        sd.set_running("web-v1.service", true);
        let unit_dir = dir.path().to_str().expect("utf-8");
        let back = baton_core::Baton::with_systemd(sd).adopt("web", unit_dir).expect("adopted");
        assert!(back.exact && back.active);
        let (mut imported, dropped) = Service::from_raw(&back.spec);
        imported.unit_dir = s(DEFAULT_UNIT_DIR);
        assert!(dropped.is_empty());
        imported.unit_text = s(&text);
        imported.unit = s("web-v1.service");
        // What the unit holds comes back; the handover settings are not in the unit.
        let mut c2 = c.clone();
        c2.port = Value::Null;
        c2.health = Value::Null;
        let q = Service::plan(&imported, &c2).expect("plans");
        assert_eq!(q, imported);
    }
}
