//! The attributes of `baton_service` as Terraform sends them (every value known, null or
//! unknown), their translation into the core's [`RawSpec`], the defaults a plan fills in and the
//! computed attributes (`id`, `unit`, `unit_text`). Pure: no I/O, unit-tested.

use std::collections::BTreeMap;

use baton_core::render;
use baton_core::spec::{DirectiveValue, RawHealth, RawSpec, ServiceType, SpecError, State};
use serde::{Deserialize, Serialize};
use tf_provider::value::Value;
use tf_provider::AttributePath;

/// `unit_dir` when the configuration leaves it out.
pub const DEFAULT_UNIT_DIR: &str = "/etc/systemd/system";
/// `service_type` when left out.
pub const DEFAULT_SERVICE_TYPE: &str = "exec";
/// `timeout_stop_sec` when left out.
pub const DEFAULT_TIMEOUT_STOP_SEC: i64 = 30;
/// `restart` when left out.
pub const DEFAULT_RESTART: &str = "always";
/// `state` when left out.
pub const DEFAULT_STATE: &str = "started";
/// `keep` when left out.
pub const DEFAULT_KEEP: i64 = 2;
/// `health.timeout_sec` when left out.
pub const DEFAULT_HEALTH_TIMEOUT_SEC: i64 = 30;
/// `health.interval_ms` when left out.
pub const DEFAULT_HEALTH_INTERVAL_MS: i64 = 200;
/// `health.observe_sec` when left out.
pub const DEFAULT_HEALTH_OBSERVE_SEC: i64 = 0;

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
    fn new(path: AttributePath, msg: impl Into<String>) -> Self {
        AttrError { path, msg: msg.into() }
    }
}

impl From<SpecError> for AttrError {
    fn from(e: SpecError) -> Self {
        AttrError { path: spec_path(&e.field), msg: e.to_string() }
    }
}

/// The attribute path of a spec field such as `exec_start[2]`, `health.tcp`,
/// `environment.FOO` or `directives.Service.LimitNOFILE`.
pub fn spec_path(field: &str) -> AttributePath {
    let (head, rest) = field.split_once('.').unwrap_or((field, ""));
    let (attr, index) = match head.split_once('[') {
        Some((a, i)) => (a, i.trim_end_matches(']').parse::<i64>().ok()),
        None => (head, None),
    };
    if attr == "spec" || attr.is_empty() {
        return AttributePath::root();
    }
    let mut path = AttributePath::new(attr.to_owned());
    if let Some(i) = index {
        path.add_index(i);
    }
    if rest.is_empty() {
        return path;
    }
    match attr {
        "health" => {
            path.add_attribute(rest.to_owned());
        }
        "environment" => {
            path.add_key(rest.to_owned());
        }
        "directives" => {
            let (section, key) = rest.split_once('.').unwrap_or((rest, ""));
            path.add_key(section.to_owned());
            if !key.is_empty() {
                let key = key.split('[').next().unwrap_or(key);
                path.add_key(key.to_owned());
            }
        }
        _ => {}
    }
    path
}

/// Reads values and notes whether any was unknown.
#[derive(Debug, Default)]
struct Reader {
    unknown: bool,
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

    fn count<T: TryFrom<i64>>(
        &mut self,
        v: &Value<i64>,
        path: AttributePath,
        field: &str,
    ) -> Result<Option<T>, AttrError> {
        match self.opt(v) {
            None => Ok(None),
            Some(n) if n < 0 => Err(AttrError::new(path, format!("{field}: must not be negative, got {n}"))),
            Some(n) => {
                T::try_from(n).map(Some).map_err(|_| AttrError::new(path, format!("{field}: {n} is out of range")))
            }
        }
    }

    fn string_list(&mut self, v: &Value<Vec<Value<String>>>, field: &str) -> Result<Option<Vec<String>>, AttrError> {
        let Some(items) = self.opt(v) else {
            return Ok(None);
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            match item {
                Value::Value(s) => out.push(s.clone()),
                Value::Unknown => self.unknown = true,
                Value::Null => {
                    return Err(AttrError::new(
                        AttributePath::new(field.to_owned()).index(i as i64),
                        format!("{field}[{i}]: must not be null"),
                    ))
                }
            }
        }
        Ok(Some(out))
    }

    fn string_map(
        &mut self,
        v: &Value<BTreeMap<String, Value<String>>>,
        path: &AttributePath,
        field: &str,
    ) -> Result<Option<BTreeMap<String, String>>, AttrError> {
        let Some(entries) = self.opt(v) else {
            return Ok(None);
        };
        let mut out = BTreeMap::new();
        for (k, item) in entries {
            match item {
                Value::Value(s) => {
                    out.insert(k, s);
                }
                Value::Unknown => self.unknown = true,
                Value::Null => {
                    return Err(AttrError::new(path.clone().key(k.clone()), format!("{field}.{k}: must not be null")))
                }
            }
        }
        Ok(Some(out))
    }
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

/// `value`, or `default` when it is null (unknown stays unknown).
fn or_default<T: Clone>(value: &Value<T>, default: T) -> Value<T> {
    match value {
        Value::Null => Value::Value(default),
        other => other.clone(),
    }
}

fn known_str(v: &Value<String>) -> Option<&str> {
    match v {
        Value::Value(s) => Some(s.as_str()),
        _ => None,
    }
}

impl Service {
    /// The core's raw spec of these attributes; `Ok(None)` while a value is still unknown.
    /// `id`, `unit` and `unit_text` are outputs and ignored.
    pub fn to_raw(&self) -> Result<Option<RawSpec>, AttrError> {
        let mut r = Reader::default();
        let name = r.opt(&self.name);
        let version = r.opt(&self.version);
        let exec_start = r.string_list(&self.exec_start, "exec_start")?;
        let port = r.count::<u32>(&self.port, AttributePath::new("port"), "port")?;
        let health = match r.opt(&self.health) {
            None => None,
            Some(h) => {
                let at = |a: &str| AttributePath::new("health").attribute(a.to_owned());
                Some(RawHealth {
                    http: r.opt(&h.http),
                    tcp: r.opt(&h.tcp),
                    timeout_sec: r.count(&h.timeout_sec, at("timeout_sec"), "health.timeout_sec")?,
                    interval_ms: r.count(&h.interval_ms, at("interval_ms"), "health.interval_ms")?,
                    observe_sec: r.count(&h.observe_sec, at("observe_sec"), "health.observe_sec")?,
                })
            }
        };
        let service_type = r.opt(&self.service_type).map(|s| parse_service_type(&s)).transpose()?;
        let environment = r.string_map(&self.environment, &AttributePath::new("environment"), "environment")?;
        let timeout_stop_sec =
            r.count(&self.timeout_stop_sec, AttributePath::new("timeout_stop_sec"), "timeout_stop_sec")?;
        let directives = match r.opt(&self.directives) {
            None => None,
            Some(sections) => {
                let mut out = BTreeMap::new();
                for (section, keys) in sections {
                    let path = AttributePath::new("directives").key(section.clone());
                    let field = format!("directives.{section}");
                    if let Some(keys) = r.string_map(&keys, &path, &field)? {
                        out.insert(section, keys.into_iter().map(|(k, v)| (k, DirectiveValue::One(v))).collect());
                    }
                }
                Some(out)
            }
        };
        let state = r.opt(&self.state).map(|s| parse_state(&s)).transpose()?;
        let keep = r.count(&self.keep, AttributePath::new("keep"), "keep")?;
        let raw = RawSpec {
            name: name.unwrap_or_default(),
            version: version.unwrap_or_default(),
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
        };
        Ok(if r.unknown { None } else { Some(raw) })
    }

    /// Checks the attributes that are known against every rule of the spec; nothing while a
    /// value is unknown (it is checked again once known).
    pub fn validate(&self) -> Result<(), AttrError> {
        if let Some(raw) = self.to_raw()? {
            let spec = raw.validate()?;
            render::render(&spec).map_err(|e| AttrError::new(AttributePath::new("template"), e.to_string()))?;
        }
        Ok(())
    }

    /// The unit name of the release `version`.
    pub fn release_unit(&self) -> Value<String> {
        match (&self.name, &self.version) {
            (Value::Value(n), Value::Value(v)) => Value::Value(format!("{n}-{v}.service")),
            (Value::Null, _) | (_, Value::Null) => Value::Null,
            _ => Value::Unknown,
        }
    }

    /// Sets `id`, `unit` and `unit_text` from the other attributes (unknown while they are).
    pub fn compute_outputs(&mut self) -> Result<(), AttrError> {
        self.id = self.name.clone();
        self.unit = match &self.state {
            Value::Value(s) if s == "started" => self.release_unit(),
            Value::Value(_) | Value::Null => Value::Null,
            Value::Unknown => Value::Unknown,
        };
        self.unit_text = match self.to_raw()? {
            None => Value::Unknown,
            Some(raw) => {
                let spec = raw.validate()?;
                let text =
                    render::render(&spec).map_err(|e| AttrError::new(AttributePath::new("template"), e.to_string()))?;
                Value::Value(text)
            }
        };
        Ok(())
    }

    /// The planned state: the proposed one with every default filled in where the
    /// configuration leaves an attribute out, and the outputs computed.
    ///
    /// Defaults come from the configuration, never from the prior state: a prior state that a
    /// refresh found drifted (`state = "stopped"`, `enabled = false`) plans back to the spec.
    pub fn plan(proposed: &Service, config: &Service) -> Result<Service, AttrError> {
        let mut p = proposed.clone();
        p.service_type = or_default(&config.service_type, DEFAULT_SERVICE_TYPE.to_owned());
        p.timeout_stop_sec = or_default(&config.timeout_stop_sec, DEFAULT_TIMEOUT_STOP_SEC);
        p.restart = or_default(&config.restart, DEFAULT_RESTART.to_owned());
        p.state = or_default(&config.state, DEFAULT_STATE.to_owned());
        p.enabled = or_default(&config.enabled, true);
        p.keep = or_default(&config.keep, DEFAULT_KEEP);
        p.migrate_requests = or_default(&config.migrate_requests, true);
        p.unit_dir = or_default(&config.unit_dir, DEFAULT_UNIT_DIR.to_owned());
        p.health = match &config.health {
            Value::Value(h) => Value::Value(Health {
                http: h.http.clone(),
                tcp: match (&h.tcp, &config.port, &h.http) {
                    (Value::Null, Value::Unknown, _) | (Value::Null, _, Value::Unknown) => Value::Unknown,
                    (Value::Null, port, http) => Value::Value(port.is_value() && http.is_null()),
                    (tcp, _, _) => *tcp,
                },
                timeout_sec: or_default(&h.timeout_sec, DEFAULT_HEALTH_TIMEOUT_SEC),
                interval_ms: or_default(&h.interval_ms, DEFAULT_HEALTH_INTERVAL_MS),
                observe_sec: or_default(&h.observe_sec, DEFAULT_HEALTH_OBSERVE_SEC),
            }),
            other => other.clone(),
        };
        p.compute_outputs()?;
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
        out
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
            service_type: Value::Value(raw.service_type.unwrap_or_default().as_str().to_owned()),
            user: s(&raw.user),
            group: s(&raw.group),
            working_directory: s(&raw.working_directory),
            environment: raw.environment.as_ref().map_or(Value::Null, |env| {
                Value::Value(env.iter().map(|(k, v)| (k.clone(), Value::Value(v.clone()))).collect())
            }),
            timeout_stop_sec: Value::Value(raw.timeout_stop_sec.map_or(DEFAULT_TIMEOUT_STOP_SEC, |t| t as i64)),
            restart: Value::Value(raw.restart.clone().unwrap_or_else(|| DEFAULT_RESTART.to_owned())),
            directives,
            template: s(&raw.template),
            state: Value::Value(raw.state.unwrap_or_default().as_str().to_owned()),
            enabled: Value::Value(raw.enabled.unwrap_or(true)),
            keep: Value::Value(raw.keep.map_or(DEFAULT_KEEP, i64::from)),
            migrate_requests: Value::Value(raw.migrate_requests.unwrap_or(true)),
            unit_dir: Value::Value(raw.unit_dir.clone().unwrap_or_else(|| DEFAULT_UNIT_DIR.to_owned())),
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

    #[test]
    fn spec_errors_name_the_attribute() {
        let mut c = config();
        c.exec_start = Value::Value(vec![s("/bin/x"), s("a\nb")]);
        let e = c.validate().expect_err("newline");
        assert_eq!(e.path.steps, vec![AttributePathStep::Attribute("exec_start".into()), AttributePathStep::Index(1)]);
        assert!(e.msg.contains("newline"), "{}", e.msg);

        let mut c = config();
        c.environment = Value::Value([("BAD KEY".to_owned(), s("x"))].into());
        let e = c.validate().expect_err("bad key");
        assert_eq!(
            e.path.steps,
            vec![AttributePathStep::Attribute("environment".into()), AttributePathStep::Key("BAD KEY".into())]
        );

        let mut c = config();
        c.state = s("absent");
        assert!(c.validate().expect_err("absent").msg.contains("destroy"));
        let mut c = config();
        c.port = Value::Value(-1);
        assert!(c.validate().expect_err("negative").msg.contains("negative"));
        let mut c = config();
        c.health = Value::Value(Health { timeout_sec: Value::Value(0), ..Health::default() });
        let e = c.validate().expect_err("timeout");
        assert_eq!(
            e.path.steps,
            vec![AttributePathStep::Attribute("health".into()), AttributePathStep::Attribute("timeout_sec".into())]
        );
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
        let back = baton_core::readback::read_back(&text, DEFAULT_UNIT_DIR).expect("marked");
        assert!(back.exact);
        let (mut imported, dropped) = Service::from_raw(&back.spec);
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
