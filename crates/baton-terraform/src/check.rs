//! Every invalid attribute of a `baton_service` at once, each at its attribute path.
//!
//! The core's [`RawSpec::validate`] stops at the first rule broken, as a CLI run should. A plan
//! should show them all: so the field of each error is located in the attributes, that value is
//! replaced by one valid under every rule (or its entry dropped), and the spec is checked again,
//! until it passes. The rules stay the core's own (through its facade: [`baton_core::validate`],
//! [`baton_core::render_unit`]); nothing here restates them.

use baton_core::spec::RawSpec;
use tf_provider::AttributePath;

use crate::model::{placeholder, AttrError, AttrErrors, Lowered};

/// At most this many errors are reported (a map of a thousand bad keys need not be listed whole).
const MAX_ERRORS: usize = 50;

/// What a spec error points at, and how to take it out of the way.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Loc {
    /// A top-level attribute.
    Attr(&'static str),
    /// `exec_start[i]`.
    Arg(usize),
    /// `health.<attr>`.
    Health(&'static str),
    /// `environment["KEY"]`.
    Env(String),
    /// `directives["Section"]`.
    Section(String),
    /// `directives["Section"]["Key"]`.
    Directive(String, String),
}

/// The top-level attributes a spec field can name.
const ATTRS: &[&str] = &[
    "name",
    "version",
    "exec_start",
    "port",
    "health",
    "service_type",
    "user",
    "group",
    "working_directory",
    "environment",
    "timeout_stop_sec",
    "restart",
    "directives",
    "template",
    "state",
    "enabled",
    "keep",
    "migrate_requests",
    "unit_dir",
    "listen_mode",
    "bind_address",
    "unit_naming",
];

const HEALTH: &[&str] = &["http", "tcp", "timeout_sec", "interval_ms", "observe_sec"];

/// Whether `field` names `key` (the core writes keys raw in some rules, escaped in others).
fn names(field: &str, key: &str) -> bool {
    field == key || field == key.escape_debug().to_string()
}

/// The location of the core's `field` (e.g. `exec_start[2]`, `environment.FOO`,
/// `directives.Service.LimitNOFILE[1]`) in `raw`; `None` for the spec as a whole.
fn locate(raw: &RawSpec, field: &str) -> Option<Loc> {
    let head_end = field.find(['.', '[']).unwrap_or(field.len());
    let attr = *ATTRS.iter().find(|a| **a == &field[..head_end])?;
    // An entry not found stands for the whole attribute.
    Some(locate_in(raw, field, attr).unwrap_or(Loc::Attr(attr)))
}

fn locate_in(raw: &RawSpec, field: &str, attr: &'static str) -> Option<Loc> {
    let head_end = field.find(['.', '[']).unwrap_or(field.len());
    let (head, rest) = field.split_at(head_end);
    let rest = rest.strip_prefix('.');
    match (attr, rest) {
        ("exec_start", None) if field.len() > head.len() => {
            field[head.len()..].trim_start_matches('[').trim_end_matches(']').parse().ok().map(Loc::Arg)
        }
        ("health", Some(sub)) => HEALTH.iter().find(|h| **h == sub).map(|h| Loc::Health(h)),
        ("environment", Some(key)) => {
            raw.environment.as_ref().and_then(|env| env.keys().find(|k| names(key, k))).map(|k| Loc::Env(k.clone()))
        }
        ("directives", Some(rest)) => {
            let sections = raw.directives.as_ref()?;
            if let Some(s) = sections.keys().find(|s| names(rest, s)) {
                return Some(Loc::Section(s.clone()));
            }
            sections.iter().find_map(|(s, keys)| {
                let after = [s.clone(), s.escape_debug().to_string()]
                    .into_iter()
                    .find_map(|p| rest.strip_prefix(&format!("{p}.")).map(str::to_owned))?;
                // A value after the first of a key's list: `Key[1]`.
                let key = match after.rsplit_once('[') {
                    Some((k, i)) if i.ends_with(']') && i[..i.len() - 1].parse::<usize>().is_ok() => k.to_owned(),
                    _ => after,
                };
                keys.keys().find(|k| names(&key, k)).map(|k| Loc::Directive(s.clone(), k.clone()))
            })
        }
        (attr, _) => Some(Loc::Attr(attr)),
    }
}

impl Loc {
    fn path(&self) -> AttributePath {
        match self {
            Loc::Attr(a) => AttributePath::new(*a),
            Loc::Arg(i) => AttributePath::new("exec_start").index(*i as i64),
            Loc::Health(h) => AttributePath::new("health").attribute(*h),
            Loc::Env(k) => AttributePath::new("environment").key(k.clone()),
            Loc::Section(s) => AttributePath::new("directives").key(s.clone()),
            Loc::Directive(s, k) => AttributePath::new("directives").key(s.clone()).key(k.clone()),
        }
    }

    /// Replaces the value with one that breaks no rule (or drops the entry).
    fn clear(&self, raw: &mut RawSpec) {
        match self {
            Loc::Attr(a) => match *a {
                "name" => raw.name = placeholder::IDENT.to_owned(),
                "version" => raw.version = placeholder::IDENT.to_owned(),
                "exec_start" => raw.exec_start = vec![placeholder::PROGRAM.to_owned()],
                // Still set, so that no error of `health` follows from its absence.
                "port" => raw.port = Some(placeholder::PORT),
                "health" => raw.health = None,
                "service_type" => raw.service_type = None,
                "user" => raw.user = None,
                "group" => raw.group = None,
                "working_directory" => raw.working_directory = None,
                "environment" => raw.environment = None,
                "timeout_stop_sec" => raw.timeout_stop_sec = None,
                "restart" => raw.restart = None,
                "directives" => raw.directives = None,
                "template" => raw.template = None,
                "state" => raw.state = None,
                "enabled" => raw.enabled = None,
                "keep" => raw.keep = None,
                "migrate_requests" => raw.migrate_requests = None,
                "unit_dir" => raw.unit_dir = None,
                "listen_mode" => raw.listen_mode = None,
                "bind_address" => raw.bind_address = None,
                "unit_naming" => raw.unit_naming = None,
                _ => {}
            },
            Loc::Arg(i) => {
                if let Some(arg) = raw.exec_start.get_mut(*i) {
                    *arg = if *i == 0 { placeholder::PROGRAM } else { placeholder::ARG }.to_owned();
                }
            }
            Loc::Health(h) => {
                if let Some(health) = raw.health.as_mut() {
                    match *h {
                        "http" => health.http = None,
                        // A probe that needs no port.
                        "tcp" => health.tcp = Some(false),
                        "timeout_sec" => health.timeout_sec = None,
                        "interval_ms" => health.interval_ms = None,
                        _ => health.observe_sec = None,
                    }
                }
            }
            Loc::Env(k) => {
                if let Some(env) = raw.environment.as_mut() {
                    env.remove(k);
                }
            }
            Loc::Section(s) => {
                if let Some(d) = raw.directives.as_mut() {
                    d.remove(s);
                }
            }
            Loc::Directive(s, k) => {
                if let Some(keys) = raw.directives.as_mut().and_then(|d| d.get_mut(s)) {
                    keys.remove(k);
                }
            }
        }
    }
}

/// The lowered attributes, checked.
#[derive(Debug)]
pub struct Checked {
    /// The spec as the core normalised it: every default written out (and the placeholders of
    /// values still unknown).
    pub normalised: RawSpec,
    /// With every value known, the unit the spec renders.
    pub unit: Option<String>,
}

/// Every error of the lowered attributes (see the module's documentation); with none, the
/// normalised spec and (every value known) the unit it renders.
pub fn check(lowered: Lowered) -> Result<Checked, AttrErrors> {
    let Lowered { mut raw, unknown, mut errors } = lowered;
    let spec = loop {
        if errors.len() >= MAX_ERRORS {
            return Err(errors);
        }
        let e = match baton_core::validate(raw.clone()) {
            Ok(spec) => break spec,
            Err(e) => e,
        };
        let before = raw.clone();
        let loc = locate(&raw, &e.field);
        if let Some(loc) = &loc {
            loc.clear(&mut raw);
        }
        errors.push(AttrError::new(loc.as_ref().map_or_else(AttributePath::root, Loc::path), e.to_string()));
        if raw == before {
            // The error points at nothing that can be taken out of the way: it is the last.
            return Err(errors);
        }
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    let normalised = spec.to_raw();
    if unknown {
        return Ok(Checked { normalised, unit: None });
    }
    baton_core::render_unit(&spec).map(|unit| Checked { normalised, unit: Some(unit) }).map_err(|e| {
        // At the attribute the error names (a line of `exec_start` too long for systemd, …).
        let at = locate(&raw, &e.field()).map_or_else(|| AttributePath::new("template"), |l| l.path());
        vec![AttrError::new(at, e.to_string())]
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use baton_core::spec::{DirectiveValue, RawHealth};
    use tf_provider::AttributePathStep as Step;

    fn raw() -> RawSpec {
        RawSpec {
            name: "web".into(),
            version: "v1".into(),
            exec_start: vec!["/bin/web".into(), "--port".into(), "8080".into()],
            port: Some(8080),
            environment: Some([("A".to_owned(), "b".to_owned())].into()),
            directives: Some(
                [("Service".to_owned(), [("LimitNOFILE".to_owned(), DirectiveValue::One("1".into()))].into())].into(),
            ),
            ..RawSpec::default()
        }
    }

    // Issue 11, item 10: a unit line systemd would refuse is an error of the attribute it comes
    // from, at plan time.
    #[test]
    fn a_unit_line_too_long_for_systemd_is_an_error_of_exec_start() {
        let mut r = raw();
        r.exec_start = std::iter::once("/bin/web".to_owned()).chain((0..9).map(|_| "%".repeat(60_000))).collect();
        let errors = check(Lowered { raw: r, unknown: false, errors: Vec::new() }).expect_err("refused");
        let [e] = errors.as_slice() else { panic!("one error: {errors:?}") };
        assert_eq!(e.path, AttributePath::new("exec_start"));
        assert!(e.msg.starts_with("exec_start: renders a line `ExecStart=…` of"), "{}", e.msg);
    }

    #[test]
    fn locates_every_kind_of_field() {
        let mut r = raw();
        r.environment = Some([("a.b".to_owned(), "c".to_owned())].into());
        assert_eq!(locate(&r, "name"), Some(Loc::Attr("name")));
        assert_eq!(locate(&r, "exec_start"), Some(Loc::Attr("exec_start")));
        assert_eq!(locate(&r, "exec_start[2]"), Some(Loc::Arg(2)));
        assert_eq!(locate(&r, "health.timeout_sec"), Some(Loc::Health("timeout_sec")));
        assert_eq!(locate(&r, "environment.a.b"), Some(Loc::Env("a.b".into())));
        assert_eq!(locate(&r, "directives.Service"), Some(Loc::Section("Service".into())));
        assert_eq!(
            locate(&r, "directives.Service.LimitNOFILE"),
            Some(Loc::Directive("Service".into(), "LimitNOFILE".into()))
        );
        assert_eq!(
            locate(&r, "directives.Service.LimitNOFILE[1]"),
            Some(Loc::Directive("Service".into(), "LimitNOFILE".into()))
        );
        assert_eq!(locate(&r, "spec"), None);
        assert_eq!(
            Loc::Directive("Service".into(), "X".into()).path().steps,
            vec![Step::Attribute("directives".into()), Step::Key("Service".into()), Step::Key("X".into())]
        );
    }

    #[test]
    fn collects_every_error_of_the_core() {
        let mut r = raw();
        r.exec_start = vec!["bin/web".into(), "a\nb".into(), "ok".into(), "c\rd".into()];
        r.port = Some(70_000);
        r.health = Some(RawHealth {
            http: Some("/h".into()),
            timeout_sec: Some(0),
            interval_ms: Some(1),
            ..RawHealth::default()
        });
        r.environment = Some([("BAD KEY".to_owned(), "x".to_owned()), ("2X".to_owned(), "y".to_owned())].into());
        r.restart = Some("sometimes".into());
        r.keep = Some(1000);
        let errors = check(Lowered { raw: r, unknown: false, errors: Vec::new() }).expect_err("invalid");
        let paths: Vec<String> = errors.iter().map(|e| format!("{:?}", e.path.steps)).collect();
        let fields: Vec<&str> = errors.iter().map(|e| e.msg.split(':').next().unwrap_or("")).collect();
        assert_eq!(
            fields,
            // In the core's order: newlines in the arguments are checked before the path.
            [
                "exec_start[1]",
                "exec_start[3]",
                "exec_start[0]",
                "port",
                "health.timeout_sec",
                "health.interval_ms",
                "environment.2X",
                "environment.BAD KEY",
                "restart",
                "keep"
            ],
            "{paths:?}"
        );
        assert!(!errors.iter().any(|e| e.msg.starts_with("health.http")), "a bad port is still a port: {errors:?}");
    }

    #[test]
    fn a_valid_spec_renders_and_an_unknown_one_does_not() {
        let checked = check(Lowered { raw: raw(), unknown: false, errors: Vec::new() }).expect("valid");
        assert!(checked.unit.is_some_and(|u| u.contains("LimitNOFILE=1")));
        assert_eq!(checked.normalised.restart.as_deref(), Some(baton_core::spec::defaults::RESTART));
        let checked = check(Lowered { raw: raw(), unknown: true, errors: Vec::new() }).expect("valid");
        assert_eq!(checked.unit, None);
    }
}
