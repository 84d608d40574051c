//! Renders a release's unit file from a validated spec with minijinja, escaping every value for
//! systemd so that nothing a user passes can add a directive or a section, or expand a `$`
//! variable or a `%` specifier.
//!
//! The template only ever sees values that are already escaped for the place they go; a custom
//! template (the spec's `template`) gets the same context, so it stays just as safe.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;

use crate::spec::{Ident, ServiceSpec};

/// The built-in unit template, embedded in the binary.
pub const BUILTIN_TEMPLATE: &str = include_str!("unit.service.j2");

/// The `[Unit]` key that marks a unit file as a release of a baton service.
pub const MARK_SERVICE: &str = "X-Baton-Service";
/// The `[Unit]` key that names the release a unit file belongs to.
pub const MARK_VERSION: &str = "X-Baton-Version";

/// Why a unit could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The custom template could not be read.
    #[error("template: cannot read {path}: {source}")]
    ReadTemplate {
        /// The template's path.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The template failed to compile or render.
    #[error("template: {path} does not render: {detail}")]
    Template {
        /// The template's path, or `built-in`.
        path: String,
        /// minijinja's message with its line.
        detail: String,
    },
    /// The spec names no release (`stopped` or `absent` without `version`): there is no unit to
    /// render.
    #[error("version: is required to render a unit (the spec of {service} names no release)")]
    NoRelease {
        /// The service.
        service: String,
    },
    /// The rendered unit lacks baton's ownership marks.
    #[error("template: {path} renders a unit without the `{MARK_SERVICE}={service}` and `{MARK_VERSION}={version}` lines in [Unit]; baton cannot own a unit it cannot recognise")]
    MissingMarks {
        /// The template's path.
        path: String,
        /// The expected service.
        service: String,
        /// The expected version.
        version: String,
    },
}

/// Quotes one `ExecStart=` argument: double quotes, C escapes for `\`, `"` and control
/// characters, `$$` for `$` and `%%` for `%`.
pub fn quote_exec_arg(arg: &str) -> String {
    let mut out = String::with_capacity(arg.len() + 2);
    out.push('"');
    for c in arg.chars() {
        match c {
            '$' => out.push_str("$$"),
            _ => push_quoted_char(&mut out, c),
        }
    }
    out.push('"');
    out
}

/// Quotes one `Environment=` assignment `KEY=value`: double quotes, C escapes and `%%`.
/// `Environment=` does not expand `$`, so a `$` stays as it is.
pub fn quote_env(key: &str, value: &str) -> String {
    let mut out = String::with_capacity(key.len() + value.len() + 3);
    out.push('"');
    out.push_str(key);
    out.push('=');
    for c in value.chars() {
        push_quoted_char(&mut out, c);
    }
    out.push('"');
    out
}

fn push_quoted_char(out: &mut String, c: char) {
    match c {
        '\\' => out.push_str("\\\\"),
        '"' => out.push_str("\\\""),
        '%' => out.push_str("%%"),
        c if (c as u32) < 0x80 && c.is_control() => {
            let _ = write!(out, "\\x{:02x}", c as u32);
        }
        c if c.is_control() => {
            let _ = write!(out, "\\u{:04x}", c as u32);
        }
        c => out.push(c),
    }
}

/// Escapes a plain directive value: `%%` for `%`, and for command lines (`Exec*` keys) `$$` for `$`.
pub fn escape_directive(key: &str, value: &str) -> String {
    let is_command = key.starts_with("Exec");
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '%' => out.push_str("%%"),
            '$' if is_command => out.push_str("$$"),
            c => out.push(c),
        }
    }
    out
}

/// Escapes a path value (`WorkingDirectory=`): `%%` for `%`.
fn escape_path(value: &str) -> String {
    value.replace('%', "%%")
}

/// One rendered `Key=value` pair.
#[derive(Debug, Serialize)]
struct Line {
    key: String,
    value: String,
}

/// What a template sees: every value already escaped for where it goes.
#[derive(Debug, Serialize)]
struct Context<'a> {
    name: &'a str,
    version: &'a str,
    unit: String,
    description: String,
    mark_service: &'static str,
    mark_version: &'static str,
    service_type: &'static str,
    exec_start: String,
    user: Option<&'a str>,
    group: Option<&'a str>,
    working_directory: Option<String>,
    environment: Vec<String>,
    restart: &'a str,
    timeout_stop_sec: u64,
    port: Option<u16>,
    directives: BTreeMap<&'a str, Vec<Line>>,
}

/// Renders the unit of the release `spec.version`.
pub fn render(spec: &ServiceSpec) -> Result<String, RenderError> {
    let Some(version) = &spec.version else {
        return Err(RenderError::NoRelease { service: spec.name.to_string() });
    };
    let (source, path) = match &spec.template {
        None => (BUILTIN_TEMPLATE.to_owned(), "built-in".to_owned()),
        Some(p) => {
            let path = p.display().to_string();
            let text = std::fs::read_to_string(p)
                .map_err(|source| RenderError::ReadTemplate { path: path.clone(), source })?;
            (text, path)
        }
    };
    let unit = render_with(spec, version, &source, &path)?;
    let marks_ok = has_mark(&unit, MARK_SERVICE, spec.name.as_str()) && has_mark(&unit, MARK_VERSION, version.as_str());
    if !marks_ok {
        return Err(RenderError::MissingMarks { path, service: spec.name.to_string(), version: version.to_string() });
    }
    Ok(unit)
}

fn has_mark(unit: &str, key: &str, value: &str) -> bool {
    unit.lines().any(|l| l.trim() == format!("{key}={value}"))
}

fn render_with(spec: &ServiceSpec, version: &Ident, source: &str, path: &str) -> Result<String, RenderError> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_keep_trailing_newline(true);
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    // Unit files are not HTML: never auto-escape, the context is already escaped for systemd.
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    let template_error = |e: minijinja::Error| RenderError::Template {
        path: path.to_owned(),
        detail: match e.line() {
            Some(line) => format!("{e} (line {line})"),
            None => e.to_string(),
        },
    };
    env.add_template("unit", source).map_err(template_error)?;
    let tmpl = env.get_template("unit").map_err(template_error)?;

    let directives = spec
        .directives
        .iter()
        .map(|(section, list)| {
            let lines =
                list.iter().map(|d| Line { key: d.key.clone(), value: escape_directive(&d.key, &d.value) }).collect();
            (section.as_str(), lines)
        })
        .collect();
    let ctx = Context {
        name: spec.name.as_str(),
        version: version.as_str(),
        unit: spec.unit_name(version),
        description: format!("{} {version} (managed by baton)", spec.name),
        mark_service: MARK_SERVICE,
        mark_version: MARK_VERSION,
        service_type: spec.service_type.as_str(),
        exec_start: spec.exec_start.iter().map(|a| quote_exec_arg(a)).collect::<Vec<_>>().join(" "),
        user: spec.user.as_deref(),
        group: spec.group.as_deref(),
        working_directory: spec.working_directory.as_ref().map(|p| escape_path(&p.to_string_lossy())),
        environment: spec.environment.iter().map(|(k, v)| quote_env(k, v)).collect(),
        restart: &spec.restart,
        timeout_stop_sec: spec.timeout_stop_sec,
        port: spec.port,
        directives,
    };
    tmpl.render(ctx).map_err(template_error)
}

/// The directives of a unit file as `(section, key, value)`, in order: section names without
/// brackets, keys and values trimmed; blank lines and comments (`#`, `;`) skipped.
pub fn unit_lines(unit_text: &str) -> impl Iterator<Item = (&str, &str, &str)> {
    let mut section = "";
    unit_text.lines().filter_map(move |line| {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            return None;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name;
            return None;
        }
        let (key, value) = line.split_once('=')?;
        Some((section, key.trim(), value.trim()))
    })
}

/// Reads baton's marks back from a unit file: `(service, version)` when both are present in
/// `[Unit]`.
pub fn read_marks(unit_text: &str) -> Option<(String, String)> {
    let (mut service, mut version) = (None, None);
    for (section, key, value) in unit_lines(unit_text) {
        match (section, key) {
            ("Unit", MARK_SERVICE) => service = Some(value.to_owned()),
            ("Unit", MARK_VERSION) => version = Some(value.to_owned()),
            _ => {}
        }
    }
    Some((service?, version?))
}

/// Reads a single-valued key of `[Service]` back from a unit file (the last one wins, as in
/// systemd), e.g. `User`.
pub fn read_service_key(unit_text: &str, key: &str) -> Option<String> {
    unit_lines(unit_text).filter(|(s, k, _)| *s == "Service" && *k == key).last().map(|(_, _, v)| v.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::parse;

    fn spec(json: &str) -> ServiceSpec {
        parse(json.as_bytes()).expect("valid spec")
    }

    #[test]
    fn builtin_unit_minimal() {
        let s = spec(r#"{"name":"app","version":"v1","exec_start":["/usr/bin/app","--port","8080"]}"#);
        insta::assert_snapshot!(render(&s).expect("renders"));
    }

    #[test]
    fn builtin_unit_full() {
        let s = spec(
            r#"{"name":"web","version":"2.4.1","exec_start":["/opt/web/bin/web","--listen",":8080"],
                "port":8080,"service_type":"notify","user":"web","group":"web",
                "working_directory":"/srv/web","environment":{"RUST_LOG":"info","GREETING":"hello world"},
                "timeout_stop_sec":45,"restart":"on-failure",
                "directives":{"Service":{"LimitNOFILE":"65536","ExecStartPre":["/bin/true","/bin/echo $HOME 50%"]},
                              "Unit":{"After":["network-online.target","postgresql.service"]}}}"#,
        );
        insta::assert_snapshot!(render(&s).expect("renders"));
    }

    #[test]
    fn hostile_values_are_escaped() {
        let s = spec(
            r#"{"name":"app","version":"v1","exec_start":["/bin/echo","a b","\"q\"","back\\slash","$HOME","${PATH}","100%","%n",";","'single'","tab\there","ünïcødé","x\u0001y"],
                "environment":{"EVIL":"x\" Foo=\"bar","PCT":"%h $HOME \\"}}"#,
        );
        insta::assert_snapshot!(render(&s).expect("renders"));
    }

    #[test]
    fn quoting_rules() {
        assert_eq!(quote_exec_arg("a b"), r#""a b""#);
        assert_eq!(quote_exec_arg("$X%y\"\\"), r#""$$X%%y\"\\""#);
        assert_eq!(quote_exec_arg("\t"), r#""\x09""#);
        assert_eq!(quote_env("K", "$X%y\"\\"), r#""K=$X%%y\"\\""#);
        assert_eq!(escape_directive("ExecStartPre", "/bin/echo $A 5%"), "/bin/echo $$A 5%%");
        assert_eq!(escape_directive("Nice", "$A 5%"), "$A 5%%");
    }

    #[test]
    fn marks_read_back() {
        let s = spec(r#"{"name":"app","version":"v1","exec_start":["/x"],"user":"nobody"}"#);
        let text = render(&s).expect("renders");
        assert_eq!(read_marks(&text), Some(("app".to_owned(), "v1".to_owned())));
        assert_eq!(read_service_key(&text, "User").as_deref(), Some("nobody"));
        assert_eq!(read_marks("[Service]\nX-Baton-Service=a\nX-Baton-Version=b\n"), None);
    }

    #[test]
    fn custom_template_and_its_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let good = dir.path().join("good.j2");
        std::fs::write(
            &good,
            "[Unit]\n{{ mark_service }}={{ name }}\n{{ mark_version }}={{ version }}\n[Service]\nExecStart={{ exec_start }}\n",
        )
        .expect("write");
        let json = format!(r#"{{"name":"a","version":"v1","exec_start":["/x","%"],"template":"{}"}}"#, good.display());
        assert_eq!(
            render(&spec(&json)).expect("renders"),
            "[Unit]\nX-Baton-Service=a\nX-Baton-Version=v1\n[Service]\nExecStart=\"/x\" \"%%\"\n"
        );

        let broken = dir.path().join("broken.j2");
        std::fs::write(&broken, "[Unit]\n{{ nope }}\n").expect("write");
        let json = format!(r#"{{"name":"a","version":"v1","exec_start":["/x"],"template":"{}"}}"#, broken.display());
        let e = render(&spec(&json)).expect_err("undefined variable").to_string();
        assert!(e.starts_with("template: ") && e.contains("does not render"), "{e}");

        let unmarked = dir.path().join("unmarked.j2");
        std::fs::write(&unmarked, "[Service]\nExecStart={{ exec_start }}\n").expect("write");
        let json = format!(r#"{{"name":"a","version":"v1","exec_start":["/x"],"template":"{}"}}"#, unmarked.display());
        let e = render(&spec(&json)).expect_err("no marks").to_string();
        assert!(e.contains("without the `X-Baton-Service=a`"), "{e}");

        let json = r#"{"name":"a","version":"v1","exec_start":["/x"],"template":"/nonexistent/t.j2"}"#;
        let e = render(&spec(json)).expect_err("missing").to_string();
        assert!(e.starts_with("template: cannot read /nonexistent/t.j2"), "{e}");
    }
}
