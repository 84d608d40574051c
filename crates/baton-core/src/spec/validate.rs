//! [`RawSpec::validate`]: every rule of the contract, one named step per field or group of
//! fields, each naming the field and the rule when it is broken, and the defaults of
//! [`super::defaults`] applied.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::ops::RangeInclusive;
use std::path::PathBuf;

use super::{
    defaults, describe_char, Directive, DirectiveValue, Health, Ident, ListenMode, RawHealth, RawSpec, Readiness,
    Secrets, ServiceSpec, SpecError, State, UnitNaming, DIRECTIVE_SECTIONS, MAX_ARGS, MAX_DIRECTIVES, MAX_ENV,
    MAX_PATH_BYTES, MAX_VALUE_BYTES, OWNED_KEYS, RESTART_VALUES,
};

impl RawSpec {
    /// Checks every rule of the contract and applies the defaults.
    pub fn validate(self) -> Result<ServiceSpec, SpecError> {
        let name = Ident::parse("name", &self.name)?;
        let state = self.state.unwrap_or(defaults::STATE);
        let version = check_release(state, &self.version, &self.exec_start)?;
        check_exec_start(&self.exec_start)?;
        let port = check_port(self.port)?;
        let health = check_health(self.health.unwrap_or_default(), port)?;
        let user = self.user.map(|u| check_account("user", u)).transpose()?;
        let group = self.group.map(|g| check_account("group", g)).transpose()?;
        let working_directory =
            self.working_directory.map(|d| check_unquoted_path("working_directory", &d)).transpose()?;
        let environment = check_environment(self.environment.unwrap_or_default())?;
        let secret_environment = check_secret_environment(self.secret_environment.unwrap_or_default(), &environment)?;
        let timeout_stop_sec = in_range(
            "timeout_stop_sec",
            self.timeout_stop_sec.unwrap_or(defaults::TIMEOUT_STOP_SEC),
            defaults::TIMEOUT_STOP_SEC_RANGE,
        )?;
        let restart = check_restart(self.restart)?;
        let directives = check_directives(self.directives.unwrap_or_default())?;
        let template = self.template.map(|t| check_path("template", &t)).transpose()?;
        let unit_dir = check_unit_dir(self.unit_dir.as_deref())?;
        let keep = in_range("keep", self.keep.unwrap_or(defaults::KEEP), defaults::KEEP_RANGE)?;
        let listen_mode = self.listen_mode.unwrap_or(defaults::LISTEN_MODE);
        let bind_address = check_listen(listen_mode, port, self.bind_address.as_deref())?;
        let unit_naming = self.unit_naming.unwrap_or(defaults::UNIT_NAMING);
        if let (UnitNaming::Instance, Some(v)) = (unit_naming, &version) {
            check_instance(name.as_str(), v.as_str())?;
        }

        Ok(ServiceSpec {
            name,
            version,
            exec_start: self.exec_start,
            port,
            health,
            service_type: self.service_type.unwrap_or(defaults::SERVICE_TYPE),
            user,
            group,
            working_directory,
            environment,
            timeout_stop_sec,
            restart,
            directives,
            template,
            state,
            enabled: self.enabled.unwrap_or(defaults::ENABLED),
            keep,
            migrate_requests: self.migrate_requests.unwrap_or(defaults::MIGRATE_REQUESTS),
            unit_dir,
            secret_environment,
            listen_mode,
            bind_address,
            unit_naming,
        })
    }
}

/// `version` and `exec_start` as `state` needs them: `started` runs a release, so it needs one;
/// `stopped` and `absent` act on every release of the service and need only its name. A
/// `stopped` spec may still name a release (with its argv) to have its unit written and enabled,
/// as a `started` one would.
fn check_release(state: State, version: &str, exec_start: &[String]) -> Result<Option<Ident>, SpecError> {
    let (given_version, given_argv) = (!version.is_empty(), !exec_start.is_empty());
    match state {
        State::Started if !given_version => {
            return Err(SpecError::new(
                "version",
                "is required when state is started (the release to run); only stopped and absent work without it",
            ))
        }
        State::Started if !given_argv => {
            return Err(SpecError::new(
                "exec_start",
                "must hold at least the program's absolute path: the release's argv is required when state is started",
            ))
        }
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
    if given_version {
        Ok(Some(Ident::parse("version", version)?))
    } else {
        Ok(None)
    }
}

/// The argv: bounded, single-line values, an absolute program path.
fn check_exec_start(exec_start: &[String]) -> Result<(), SpecError> {
    if exec_start.len() > MAX_ARGS {
        return Err(SpecError::new(
            "exec_start",
            format!("has {} arguments; the limit is {MAX_ARGS}", exec_start.len()),
        ));
    }
    for (i, arg) in exec_start.iter().enumerate() {
        check_value(&format!("exec_start[{i}]"), arg, true)?;
    }
    if let Some(program) = exec_start.first() {
        check_path("exec_start[0]", program)?;
    }
    Ok(())
}

/// `listen_mode` and `bind_address`: socket mode needs a port to listen on; `bind_address` is
/// an IP address (no host name, no zone) and only means something in socket mode, where baton
/// writes the `ListenStream=` line.
fn check_listen(
    mode: ListenMode,
    port: Option<u16>,
    bind_address: Option<&str>,
) -> Result<Option<std::net::IpAddr>, SpecError> {
    if mode == ListenMode::Socket && port.is_none() {
        return Err(SpecError::new(
            "listen_mode",
            "\"socket\" needs `port`: the shared socket listens on it (ListenStream=)",
        ));
    }
    let Some(address) = bind_address else {
        return Ok(None);
    };
    if mode != ListenMode::Socket {
        return Err(SpecError::new(
            "bind_address",
            "applies only with listen_mode \"socket\" (in reuseport mode each release binds its own address)",
        ));
    }
    check_value("bind_address", address, false)?;
    address.parse::<std::net::IpAddr>().map(Some).map_err(|_| {
        SpecError::new(
            "bind_address",
            format!("must be an IPv4 or IPv6 address such as 127.0.0.1 or ::1 (no host name, port or zone), got {address:?}"),
        )
    })
}

/// With `unit_naming: "instance"`, `version` is the instance of `<name>@<version>.service`:
/// systemd takes only `[A-Za-z0-9:_.@\\-]` there and unit names of at most 255 bytes. Every
/// version the name rule lets through already obeys it; the check keeps that true if either
/// rule ever changes.
fn check_instance(name: &str, version: &str) -> Result<(), SpecError> {
    const RULE: &str =
        "must be a valid systemd instance name with unit_naming \"instance\" (letters, digits, ':', '_', \
                        '.', '@', '\\' or '-', and <name>@<version>.service at most 255 bytes)";
    let valid_char = |c: char| c.is_ascii_alphanumeric() || ":_.@\\-".contains(c);
    let unit = super::instance_unit_name(name, version);
    if version.is_empty() || !version.chars().all(valid_char) || unit.len() > 255 {
        return Err(SpecError::new("version", format!("{RULE}; got {version:?}")));
    }
    Ok(())
}

fn check_port(port: Option<u32>) -> Result<Option<u16>, SpecError> {
    match port {
        None => Ok(None),
        Some(p) => match u16::try_from(p) {
            Ok(p16) if defaults::PORT_RANGE.contains(&p) => Ok(Some(p16)),
            _ => Err(SpecError::new("port", format!("must be between 1 and 65535, got {p}"))),
        },
    }
}

/// `health`, with its defaults, and the [`Readiness`] it asks for.
fn check_health(raw: RawHealth, port: Option<u16>) -> Result<Health, SpecError> {
    let http = raw.http.map(check_http_path).transpose()?;
    let tcp = raw.tcp.unwrap_or(defaults::health_tcp(port.is_some(), http.is_some()));
    let readiness = match (port, &http) {
        (None, Some(_)) => {
            return Err(SpecError::new("health.http", "needs `port`: the probe connects to the service's port"))
        }
        (None, None) if tcp => {
            return Err(SpecError::new("health.tcp", "needs `port`: the probe connects to the service's port"))
        }
        (None, None) => Readiness::Settle,
        (Some(port), Some(path)) => Readiness::Http { port, path: path.clone() },
        (Some(port), None) if tcp => Readiness::Tcp { port },
        (Some(port), None) => Readiness::Listen { port },
    };
    let timeout_sec = in_range(
        "health.timeout_sec",
        raw.timeout_sec.unwrap_or(defaults::HEALTH_TIMEOUT_SEC),
        defaults::HEALTH_TIMEOUT_SEC_RANGE,
    )?;
    let interval_ms = in_range(
        "health.interval_ms",
        raw.interval_ms.unwrap_or(defaults::HEALTH_INTERVAL_MS),
        defaults::HEALTH_INTERVAL_MS_RANGE,
    )?;
    let observe_sec = in_range(
        "health.observe_sec",
        raw.observe_sec.unwrap_or(defaults::HEALTH_OBSERVE_SEC),
        defaults::HEALTH_OBSERVE_SEC_RANGE,
    )?;
    Ok(Health { http, tcp, timeout_sec, interval_ms, observe_sec, readiness })
}

/// `health.http`: a URL path without spaces.
fn check_http_path(path: String) -> Result<String, SpecError> {
    check_value("health.http", &path, false)?;
    if !path.starts_with('/') {
        return Err(SpecError::new("health.http", format!("must be a path starting with '/', got {path:?}")));
    }
    if let Some(pos) = path.find(|c: char| c.is_whitespace() || !c.is_ascii()) {
        return Err(SpecError::new(
            "health.http",
            format!("contains {}; it must be a URL path without spaces", describe_char(&path, pos)),
        ));
    }
    Ok(path)
}

/// `value` when it lies in `range`, else an error naming `field` and the range.
fn in_range<T: PartialOrd + Display + Copy>(field: &str, value: T, range: RangeInclusive<T>) -> Result<T, SpecError> {
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(SpecError::new(field, format!("must be between {} and {}, got {value}", range.start(), range.end())))
    }
}

fn check_environment(environment: BTreeMap<String, String>) -> Result<BTreeMap<String, String>, SpecError> {
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
    Ok(environment)
}

/// `secret_environment`: the rules of `environment`, no key in both, and no value ever quoted
/// in an error (only where the rule breaks).
fn check_secret_environment(
    secrets: BTreeMap<String, String>,
    environment: &BTreeMap<String, String>,
) -> Result<Secrets, SpecError> {
    if secrets.len() > MAX_ENV {
        return Err(SpecError::new(
            "secret_environment",
            format!("has {} variables; the limit is {MAX_ENV}", secrets.len()),
        ));
    }
    for (key, value) in &secrets {
        check_env_key("secret_environment", key)?;
        check_value(&format!("secret_environment.{key}"), value, true)?;
        if environment.contains_key(key) {
            return Err(SpecError::new(
                format!("secret_environment.{key}"),
                "is also set in `environment`; set each variable in only one of them",
            ));
        }
    }
    Ok(Secrets::from(secrets))
}

fn check_restart(restart: Option<String>) -> Result<String, SpecError> {
    let restart = restart.unwrap_or_else(|| defaults::RESTART.to_owned());
    if !RESTART_VALUES.contains(&restart.as_str()) {
        return Err(SpecError::new(
            "restart",
            format!("must be one of {}, got {restart:?}", RESTART_VALUES.join(", ")),
        ));
    }
    Ok(restart)
}

fn check_unit_dir(unit_dir: Option<&str>) -> Result<PathBuf, SpecError> {
    let unit_dir = check_path("unit_dir", unit_dir.unwrap_or(defaults::UNIT_DIR))?;
    if unit_dir.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
        return Err(SpecError::new("unit_dir", "must not contain '..'"));
    }
    Ok(unit_dir)
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
                // systemd strips trailing whitespace before it looks for a continuation.
                if v.trim_end().ends_with('\\') {
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

    #[test]
    fn an_instance_name_follows_systemds_rule() {
        assert!(check_instance("app", "v2.1_rc-3").is_ok());
        assert!(check_instance("app", &"v".repeat(64)).is_ok());
        for bad in ["", "v 2", "v/2", "v%i", "é"] {
            let e = check_instance("app", bad).expect_err(bad);
            assert_eq!(e.field, "version");
            assert!(e.rule.contains("valid systemd instance name"), "{e}");
        }
        let e = check_instance(&"a".repeat(200), &"v".repeat(60)).expect_err("too long");
        assert!(e.rule.contains("at most 255 bytes"), "{e}");
        // Through the spec: instance naming is accepted for every version the name rule allows.
        let raw = RawSpec {
            name: "app".into(),
            version: "v1.2-rc_3".into(),
            exec_start: vec!["/bin/app".into()],
            unit_naming: Some(UnitNaming::Instance),
            ..RawSpec::default()
        };
        assert_eq!(raw.validate().expect("valid").unit().as_deref(), Some("app@v1.2-rc_3.service"));
    }
}
