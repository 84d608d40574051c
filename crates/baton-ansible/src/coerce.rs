//! Ansible's loose typing, converted the way `AnsibleModule` converts a module's declared option
//! types, before the core's strict spec parsing sees the options.
//!
//! Task values often arrive as strings (`port: "{{ app_port }}"` renders `"8080"`), YAML turns
//! `version: 2` into an integer and `restart: no` into `false`. Like `AnsibleModule`:
//! - an `int` option takes a string of digits or an integral float;
//! - a `bool` option takes Ansible's boolean words (`yes`/`no`, `on`/`off`, `true`/`false`,
//!   `y`/`n`, `t`/`f`, `1`/`0`, any case) and the integers 1 and 0;
//! - a `str` option (and each item of `exec_start`) takes a number or a boolean, converted
//!   with a warning, or refused, as `_ansible_string_conversion_action` (Ansible's
//!   `STRING_CONVERSION_ACTION`: warn, error or ignore) says; `restart: no` becomes `"no"`;
//! - values of `environment` and `directives` (dicts of strings) take numbers and booleans
//!   silently (`WORKERS: 4`, `LimitNOFILE: 65536`).
//!
//! Anything else is left as it is, for the core to refuse with the option's name. The option
//! table is checked against the spec's JSON Schema by a test, so it cannot drift.

use serde_json::{Map, Number, Value};

/// What to do when a number or boolean is given for a string option.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Conversion {
    /// Convert and warn (Ansible's default).
    #[default]
    Warn,
    /// Refuse.
    Error,
    /// Convert silently.
    Ignore,
}

impl Conversion {
    /// From `_ansible_string_conversion_action` (absent or unknown: warn).
    pub fn from_ansible(v: Option<&Value>) -> Self {
        match v.and_then(Value::as_str).map(str::to_ascii_lowercase).as_deref() {
            Some("error") => Conversion::Error,
            Some("ignore") => Conversion::Ignore,
            _ => Conversion::Warn,
        }
    }
}

/// The Ansible type of an option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `str`.
    Str,
    /// `int`.
    Int,
    /// `bool`.
    Bool,
    /// `list` of `str`.
    StrList,
    /// `dict` of `str` values.
    StrMap,
    /// `dict` of sections, each a `dict` of `str` or `list` of `str`.
    Directives,
    /// `dict` with the suboptions in [`HEALTH`].
    Health,
}

/// Every option of the spec and its Ansible type.
pub const OPTIONS: &[(&str, Kind)] = &[
    ("name", Kind::Str),
    ("version", Kind::Str),
    ("exec_start", Kind::StrList),
    ("port", Kind::Int),
    ("health", Kind::Health),
    ("service_type", Kind::Str),
    ("user", Kind::Str),
    ("group", Kind::Str),
    ("working_directory", Kind::Str),
    ("environment", Kind::StrMap),
    ("timeout_stop_sec", Kind::Int),
    ("restart", Kind::Str),
    ("directives", Kind::Directives),
    ("template", Kind::Str),
    ("state", Kind::Str),
    ("enabled", Kind::Bool),
    ("keep", Kind::Int),
    ("migrate_requests", Kind::Bool),
    ("unit_dir", Kind::Str),
    ("secret_environment", Kind::StrMap),
    ("listen_mode", Kind::Str),
    ("bind_address", Kind::Str),
    ("unit_naming", Kind::Str),
];

/// The suboptions of `health`.
pub const HEALTH: &[(&str, Kind)] = &[
    ("http", Kind::Str),
    ("tcp", Kind::Bool),
    ("timeout_sec", Kind::Int),
    ("interval_ms", Kind::Int),
    ("observe_sec", Kind::Int),
];

/// Ansible's reading of a boolean: its words in any case, and the integers 1 and 0.
pub fn ansible_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => match n.as_u64() {
            Some(1) => Some(true),
            Some(0) => Some(false),
            _ => None,
        },
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "y" | "yes" | "on" | "1" | "true" | "t" => Some(true),
            "n" | "no" | "off" | "0" | "false" | "f" => Some(false),
            _ => None,
        },
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

/// Converts the options in place; returns the warnings, or the refusal under
/// [`Conversion::Error`].
pub fn coerce(options: &mut Map<String, Value>, action: Conversion) -> Result<Vec<String>, String> {
    let mut c = Coercer { action, warnings: Vec::new() };
    c.fields(options, OPTIONS, "")?;
    Ok(c.warnings)
}

struct Coercer {
    action: Conversion,
    warnings: Vec<String>,
}

impl Coercer {
    fn fields(&mut self, obj: &mut Map<String, Value>, table: &[(&str, Kind)], prefix: &str) -> Result<(), String> {
        for (name, kind) in table {
            if let Some(v) = obj.get_mut(*name) {
                self.value(v, *kind, &format!("{prefix}{name}"))?;
            }
        }
        Ok(())
    }

    fn value(&mut self, v: &mut Value, kind: Kind, path: &str) -> Result<(), String> {
        match kind {
            Kind::Str => self.string(v, path, true)?,
            Kind::Int => {
                if let Some(n) = int(v) {
                    *v = Value::Number(n);
                }
            }
            Kind::Bool => {
                if !v.is_null() {
                    if let Some(b) = ansible_bool(v) {
                        *v = Value::Bool(b);
                    }
                }
            }
            Kind::StrList => {
                if let Value::Array(items) = v {
                    for (i, item) in items.iter_mut().enumerate() {
                        self.string(item, &format!("{path}[{i}]"), true)?;
                    }
                }
            }
            Kind::StrMap => {
                if let Value::Object(map) = v {
                    for (k, item) in map.iter_mut() {
                        self.string(item, &format!("{path}.{k}"), false)?;
                    }
                }
            }
            Kind::Directives => {
                if let Value::Object(sections) = v {
                    for (section, keys) in sections.iter_mut() {
                        let Value::Object(keys) = keys else { continue };
                        for (key, item) in keys.iter_mut() {
                            let p = format!("{path}.{section}.{key}");
                            match item {
                                Value::Array(items) => {
                                    for (i, it) in items.iter_mut().enumerate() {
                                        self.string(it, &format!("{p}[{i}]"), false)?;
                                    }
                                }
                                other => self.string(other, &p, false)?,
                            }
                        }
                    }
                }
            }
            Kind::Health => {
                if let Value::Object(h) = v {
                    self.fields(h, HEALTH, &format!("{path}."))?;
                }
            }
        }
        Ok(())
    }

    /// A number or boolean where a string belongs: converted, with a warning when `warn`.
    fn string(&mut self, v: &mut Value, path: &str, warn: bool) -> Result<(), String> {
        let (text, what) = match v {
            Value::Number(n) => (n.to_string(), if n.is_f64() { "float" } else { "integer" }),
            // YAML reads `restart: no` as false; systemd's word is "no".
            Value::Bool(false) if path == "restart" => {
                *v = Value::String("no".to_owned());
                return Ok(());
            }
            Value::Bool(b) => (b.to_string(), "boolean"),
            Value::Null | Value::String(_) | Value::Array(_) | Value::Object(_) => return Ok(()),
        };
        if warn {
            match self.action {
                Conversion::Error => {
                    return Err(format!(
                        "{path}: is the {what} {v}, not a string; quote the value in the task \
                         (string_conversion_action is error)"
                    ))
                }
                Conversion::Warn => self.warnings.push(format!(
                    "{path}: the {what} {v} was converted to the string {text:?}; if this does not look like \
                     what you expect, quote the entire value in the task"
                )),
                Conversion::Ignore => {}
            }
        }
        *v = Value::String(text);
        Ok(())
    }
}

/// An integer option given as a string of digits or an integral float.
fn int(v: &Value) -> Option<Number> {
    match v {
        Value::String(s) => s.trim().parse::<u64>().ok().map(Number::from),
        Value::Number(n) if n.is_f64() => {
            let x = n.as_f64()?;
            (x >= 0.0 && x.fract() == 0.0 && x <= u32::MAX as f64).then(|| Number::from(x as u64))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(v: Value, action: Conversion) -> (Value, Result<Vec<String>, String>) {
        let Value::Object(mut m) = v else { panic!("object") };
        let r = coerce(&mut m, action);
        (Value::Object(m), r)
    }

    #[test]
    fn converts_like_ansible_module() {
        let (v, w) = run(
            json!({
                "name": "app", "version": 2, "exec_start": ["/bin/app", "--port", 8080, "--ratio", 1.5],
                "port": "8080", "timeout_stop_sec": 10.0, "keep": " 3 ",
                "enabled": "yes", "migrate_requests": "Off", "restart": false,
                "health": {"tcp": 1, "timeout_sec": "5", "observe_sec": 0, "http": "/h"},
                "environment": {"WORKERS": 4, "DEBUG": true, "NAME": "x"},
                "directives": {"Service": {"LimitNOFILE": 65536, "ExecStartPre": ["/bin/true", 7]}},
            }),
            Conversion::Warn,
        );
        assert_eq!(
            v,
            json!({
                "name": "app", "version": "2", "exec_start": ["/bin/app", "--port", "8080", "--ratio", "1.5"],
                "port": 8080, "timeout_stop_sec": 10, "keep": 3,
                "enabled": true, "migrate_requests": false, "restart": "no",
                "health": {"tcp": true, "timeout_sec": 5, "observe_sec": 0, "http": "/h"},
                "environment": {"WORKERS": "4", "DEBUG": "true", "NAME": "x"},
                "directives": {"Service": {"LimitNOFILE": "65536", "ExecStartPre": ["/bin/true", "7"]}},
            })
        );
        let w = w.expect("no refusal");
        let paths: Vec<&str> = w.iter().map(|w| w.split(':').next().unwrap_or("")).collect();
        assert_eq!(paths, ["version", "exec_start[2]", "exec_start[4]"]);
    }

    #[test]
    fn leaves_what_it_cannot_convert_for_the_core_to_refuse() {
        let input = json!({"port": "http", "enabled": "maybe", "exec_start": "/bin/app", "keep": -1, "health": [1],
                           "environment": {"A": null}, "prot": "8080"});
        let (v, w) = run(input.clone(), Conversion::Warn);
        assert_eq!(v, input);
        assert_eq!(w, Ok(vec![]));
    }

    #[test]
    fn ignore_converts_silently_and_error_refuses() {
        let (v, w) = run(json!({"version": 2}), Conversion::Ignore);
        assert_eq!((v, w), (json!({"version": "2"}), Ok(vec![])));
        let (_, w) = run(json!({"name": true}), Conversion::Error);
        assert!(w.expect_err("refused").starts_with("name: is the boolean true, not a string"));
        // Dict values are never refused: they are not options of type str.
        let (_, w) = run(json!({"environment": {"A": 1}}), Conversion::Error);
        assert_eq!(w, Ok(vec![]));
    }

    #[test]
    fn reads_ansible_booleans() {
        for t in ["yes", "Y", "on", "TRUE", "t", "1"] {
            assert_eq!(ansible_bool(&json!(t)), Some(true), "{t}");
        }
        for f in ["no", "N", "off", "False", "f", "0"] {
            assert_eq!(ansible_bool(&json!(f)), Some(false), "{f}");
        }
        assert_eq!(ansible_bool(&json!(1)), Some(true));
        assert_eq!(ansible_bool(&json!(2)), None);
        assert_eq!(ansible_bool(&json!("maybe")), None);
    }

    #[test]
    fn option_table_matches_the_spec_schema() {
        let schema = serde_json::to_value(schemars::schema_for!(baton_core::spec::RawSpec)).expect("schema");
        let kind_of = |prop: &Value, defs: &Value| -> String {
            let prop = match prop.get("anyOf").and_then(|a| a[0]["$ref"].as_str()) {
                Some(r) => &defs[r.trim_start_matches("#/$defs/")],
                None => prop,
            };
            match &prop["type"] {
                Value::String(t) => t.clone(),
                Value::Array(ts) => ts.iter().filter_map(Value::as_str).find(|t| *t != "null").unwrap_or("").to_owned(),
                _ if prop.get("enum").is_some() || prop.get("oneOf").is_some() => "string".to_owned(),
                _ => String::new(),
            }
        };
        let expect = |k: Kind| match k {
            Kind::Str => "string",
            Kind::Int => "integer",
            Kind::Bool => "boolean",
            Kind::StrList => "array",
            Kind::StrMap | Kind::Directives | Kind::Health => "object",
        };
        let defs = &schema["$defs"];
        let props = schema["properties"].as_object().expect("properties");
        let mut names: Vec<&str> = props.keys().map(String::as_str).collect();
        let mut ours: Vec<&str> = OPTIONS.iter().map(|(n, _)| *n).collect();
        names.sort_unstable();
        ours.sort_unstable();
        assert_eq!(ours, names, "OPTIONS must list every field of the spec");
        for (name, kind) in OPTIONS {
            assert_eq!(kind_of(&props[*name], defs), expect(*kind), "type of {name}");
        }
        let health = defs["RawHealth"]["properties"].as_object().expect("health properties");
        let mut hnames: Vec<&str> = health.keys().map(String::as_str).collect();
        let mut hours: Vec<&str> = HEALTH.iter().map(|(n, _)| *n).collect();
        hnames.sort_unstable();
        hours.sort_unstable();
        assert_eq!(hours, hnames, "HEALTH must list every field of health");
        for (name, kind) in HEALTH {
            assert_eq!(kind_of(&health[*name], defs), expect(*kind), "type of health.{name}");
        }
    }
}
