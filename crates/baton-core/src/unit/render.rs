//! Renders a release's unit file from a validated spec with minijinja, escaping every value for
//! systemd so that nothing a user passes can add a directive or a section, or expand a `$`
//! variable or a `%` specifier.
//!
//! The template only ever sees values that are already escaped for the place they go
//! ([`super::escape`]); a custom template (the spec's `template`) gets the same context, so it
//! stays just as safe.

use std::collections::BTreeMap;
use std::io::{self, Read as _};
use std::path::Path;

use minijinja::{Environment, ErrorKind, UndefinedBehavior};
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use serde::Serialize;

use super::escape::{escape_directive, escape_path, quote_env, quote_exec_args};
use super::parse::{self, read_marks};
use super::{MARK_SERVICE, MARK_VERSION};
use crate::safe_fs::{self, ReadProblem};
use crate::spec::{Ident, ServiceSpec};

/// The built-in unit template, embedded in the binary.
pub(crate) const BUILTIN_TEMPLATE: &str = include_str!("unit.service.j2");

/// The longest line systemd reads in a unit file, in bytes, without its newline. systemd reads
/// unit files with `read_line(f, LONG_LINE_MAX, …)` (`LONG_LINE_MAX` is 1 MiB in its
/// `fileio.h`), which fails with `ENOBUFS` ("No buffer space available") once a line reaches
/// that length: the unit then does not load. Checked against systemd 252 by
/// `integration/tests/hostile_units.rs`.
#[cfg_attr(not(feature = "testing"), allow(unreachable_pub))] // also in `crate::testing`
pub const MAX_LINE_BYTES: usize = (1 << 20) - 1;

/// The largest unit baton renders, in bytes: what it reads back from disk
/// ([`safe_fs::MAX_READ`]), so that every unit it writes is one it can recognise again.
pub(crate) const MAX_UNIT_BYTES: usize = safe_fs::MAX_READ as usize;

/// The largest custom template baton reads, in bytes.
pub(crate) const MAX_TEMPLATE_BYTES: u64 = 64 * 1024;

/// The steps (minijinja instructions) a template may take to render. The built-in template takes
/// a few thousand even for the largest spec; a runaway loop or a macro that calls itself twice
/// runs out in milliseconds.
pub(crate) const TEMPLATE_FUEL: u64 = 200_000;

/// Why a unit could not be rendered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RenderError {
    /// The custom template could not be read, or is not a file baton reads (a symbolic link, a
    /// FIFO, a device, a file over `MAX_TEMPLATE_BYTES`).
    #[error("template: cannot read {path}: {problem}")]
    ReadTemplate {
        /// The template's path.
        path: String,
        /// What is wrong, in words.
        problem: String,
    },
    /// The template failed to compile or render.
    #[error("template: {path} does not render: {detail}")]
    Template {
        /// The template's path, or `built-in`.
        path: String,
        /// minijinja's message with its line.
        detail: String,
    },
    /// The template renders more than `MAX_UNIT_BYTES`.
    #[error("template: {path} renders more than {} MiB; baton writes only units it can read back (at most {} MiB)", MAX_UNIT_BYTES >> 20, MAX_UNIT_BYTES >> 20)]
    TooLarge {
        /// The template's path, or `built-in`.
        path: String,
    },
    /// A rendered line is longer than systemd reads.
    #[error("{field}: renders a line `{key}=…` of {len} bytes; systemd refuses unit file lines of more than {MAX_LINE_BYTES} bytes (the unit would not load)")]
    LineTooLong {
        /// The spec field the line comes from (`exec_start`, `directives.Service.X`, or
        /// `template` for a line of a custom template).
        field: String,
        /// The line's key.
        key: String,
        /// The line's length in bytes.
        len: usize,
    },
    /// A rendered line ends in a backslash, which systemd reads as a line continuation: the next
    /// line would become part of this value.
    #[error("{field}: renders a line `{key}=…` that ends in a backslash, which systemd reads as a line continuation (the next line would become part of the value)")]
    Continuation {
        /// The spec field the line comes from.
        field: String,
        /// The line's key.
        key: String,
    },
    /// The spec names no release (`stopped` or `absent` without `version`): there is no unit to
    /// render.
    #[error("version: is required to render a unit (the spec of {service} names no release)")]
    NoRelease {
        /// The service.
        service: String,
    },
    /// The spec has `secret_environment` but the rendered unit does not name the secret file
    /// (a custom template without `EnvironmentFile={{ environment_file }}` in `[Service]`).
    #[error("template: {path} renders a unit without `EnvironmentFile={file}` in [Service], so the release would start without its secret_environment; add `{{% if environment_file %}}EnvironmentFile={{{{ environment_file }}}}{{% endif %}}` to [Service]")]
    NoSecretFile {
        /// The template's path.
        path: String,
        /// The secret file, as the line names it.
        file: String,
    },
    /// In socket mode, the rendered unit does not name the shared socket with `Sockets=` in
    /// `[Service]` (a custom template without `{{ sockets }}`).
    #[error("template: {path} renders a unit without `Sockets={socket}` in [Service], so the release would not get the shared socket (listen_mode \"socket\"); add `{{% if sockets %}}Sockets={{{{ sockets }}}}{{% endif %}}` to [Service]")]
    NoSockets {
        /// The template's path.
        path: String,
        /// The socket unit.
        socket: String,
    },
    /// The rendered unit lacks baton's ownership marks in `[Unit]`, where `read_marks` (and
    /// so every later run) looks for them.
    #[error("template: {path} renders a unit without {what}; baton cannot own a unit it cannot recognise")]
    MissingMarks {
        /// The template's path.
        path: String,
        /// The marks expected and where others were found, e.g. ``the `X-Baton-Service=a` and
        /// `X-Baton-Version=v1` lines in [Unit] (they are in [Service]; …)``.
        what: String,
    },
}

impl RenderError {
    /// The spec field the error is about, as [`crate::spec::SpecError::field`] names fields
    /// (`template`, `exec_start`, `environment.KEY`, `directives.Service.Nice`, …).
    pub fn field(&self) -> String {
        match self {
            RenderError::ReadTemplate { .. }
            | RenderError::Template { .. }
            | RenderError::TooLarge { .. }
            | RenderError::MissingMarks { .. }
            | RenderError::NoSecretFile { .. }
            | RenderError::NoSockets { .. } => "template".to_owned(),
            RenderError::NoRelease { .. } => "version".to_owned(),
            RenderError::LineTooLong { field, .. } | RenderError::Continuation { field, .. } => field.clone(),
        }
    }
}

/// The value of the `EnvironmentFile=` line naming the release's secret file, when the spec
/// has `secret_environment`.
fn secret_file_value(spec: &ServiceSpec, version: &Ident) -> Option<String> {
    (!spec.secret_environment.is_empty())
        .then(|| escape_path(&crate::secrets::path(&spec.unit_dir, &spec.unit_name(version)).to_string_lossy()))
}

/// The value of the `Sockets=` line in socket mode: the service's shared socket unit.
fn socket_value(spec: &ServiceSpec) -> Option<String> {
    (spec.listen_mode == crate::spec::ListenMode::Socket).then(|| spec.socket_unit())
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
    /// `EnvironmentFile=`'s value: the release's secret file (never its values), when the spec
    /// has `secret_environment`.
    environment_file: Option<String>,
    restart: &'a str,
    timeout_stop_sec: u64,
    port: Option<u16>,
    /// `Sockets=`'s value in socket mode: the service's shared socket unit (`<name>.socket`).
    sockets: Option<String>,
    directives: BTreeMap<&'a str, Vec<Line>>,
}

/// Renders the unit of the release `spec.version`, and refuses a unit systemd would not read as
/// baton means it: a line longer than systemd reads, a line ending in a backslash (a
/// continuation that swallows the next line), or no ownership marks in `[Unit]`.
pub(crate) fn render(spec: &ServiceSpec) -> Result<String, RenderError> {
    let Some(version) = &spec.version else {
        return Err(RenderError::NoRelease { service: spec.name.to_string() });
    };
    let (source, path) = match &spec.template {
        None => (BUILTIN_TEMPLATE.to_owned(), "built-in".to_owned()),
        Some(p) => {
            let path = p.display().to_string();
            let text = read_template(p).map_err(|problem| RenderError::ReadTemplate { path: path.clone(), problem })?;
            (text, path)
        }
    };
    let unit = render_with(spec, version, &source, &path)?;
    check_lines(spec, &unit)?;
    check_marks(&unit, spec.name.as_str(), version.as_str()).map_err(|found| RenderError::MissingMarks {
        path: path.clone(),
        what: format!("the `{MARK_SERVICE}={}` and `{MARK_VERSION}={version}` lines in [Unit]{found}", spec.name),
    })?;
    // A template that leaves out `Sockets=` would start a release without the shared socket.
    if let Some(socket) = socket_value(spec) {
        if !parse::values(&unit, "Service", "Sockets").any(|v| v.split_whitespace().any(|s| s == socket)) {
            return Err(RenderError::NoSockets { path, socket });
        }
    }
    // A template that leaves out the secret file would start the release without its secrets.
    if let Some(file) = secret_file_value(spec, version) {
        if !parse::values(&unit, "Service", "EnvironmentFile").any(|v| v == file) {
            return Err(RenderError::NoSecretFile { path, file });
        }
    }
    // An instance's unit is its drop-in: the same text, with the template's lists emptied.
    if spec.unit_naming == crate::spec::UnitNaming::Instance {
        return Ok(super::instance::drop_in(&unit));
    }
    Ok(unit)
}

/// Reads a custom template: opened with `O_NOFOLLOW|O_NONBLOCK` (a symbolic link is refused, a
/// FIFO never blocks), a regular file of at most [`MAX_TEMPLATE_BYTES`], UTF-8.
fn read_template(path: &Path) -> Result<String, String> {
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
    let fd = rustix::fs::open(path, flags, Mode::empty()).map_err(|e| match e {
        Errno::LOOP => "it is a symbolic link; name the template file itself".to_owned(),
        e => io::Error::from(e).to_string(),
    })?;
    let file = std::fs::File::from(fd);
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err(ReadProblem::NotRegular(safe_fs::describe(&meta.file_type())).to_string());
    }
    let too_large = || format!("it is larger than {} KiB, the limit for a template", MAX_TEMPLATE_BYTES >> 10);
    if meta.len() > MAX_TEMPLATE_BYTES {
        return Err(too_large());
    }
    let mut bytes = Vec::new();
    file.take(MAX_TEMPLATE_BYTES + 1).read_to_end(&mut bytes).map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_TEMPLATE_BYTES {
        return Err(too_large());
    }
    String::from_utf8(bytes).map_err(|e| format!("it is not UTF-8 text ({e})"))
}

/// Whether `unit` carries the marks of release `version` of `service` as [`read_marks`] reads
/// them: the same check every later run makes, so baton never writes a unit it would then
/// disown. The error says where marks were found instead, if anywhere.
fn check_marks(unit: &str, service: &str, version: &str) -> Result<(), String> {
    match read_marks(unit) {
        Some((s, v)) if s == service && v == version => Ok(()),
        Some((s, v)) => Err(format!(" (it is marked as release {v} of service {s})")),
        None => {
            let elsewhere: Vec<String> = parse::directives(unit)
                .filter(|d| d.section != "Unit" && (d.key == MARK_SERVICE || d.key == MARK_VERSION))
                .map(|d| format!("[{}]", d.section))
                .collect();
            match elsewhere.first() {
                Some(section) => Err(format!(" (they are in {section}; baton and systemd read them only in [Unit])")),
                None => Err(String::new()),
            }
        }
    }
}

/// The spec field a rendered `key` of `section` comes from, for an error message.
fn field_of(spec: &ServiceSpec, section: &str, key: &str) -> String {
    let own = match (section, key) {
        ("Service", "ExecStart") => Some("exec_start"),
        ("Service", "WorkingDirectory") => Some("working_directory"),
        ("Service", "Environment") => Some("environment"),
        ("Service", "User") => Some("user"),
        ("Service", "Group") => Some("group"),
        _ => None,
    };
    if let Some(field) = own {
        return field.to_owned();
    }
    if spec.directives.get(section).is_some_and(|list| list.iter().any(|d| d.key == key)) {
        return format!("directives.{section}.{key}");
    }
    if spec.template.is_some() {
        "template".to_owned()
    } else {
        "spec".to_owned()
    }
}

/// Refuses a rendered line that systemd would not read as written: longer than
/// [`MAX_LINE_BYTES`], or ending in a backslash (a continuation).
fn check_lines(spec: &ServiceSpec, unit: &str) -> Result<(), RenderError> {
    let mut section = "";
    for line in unit.split('\n') {
        let trimmed = line.trim();
        if let Some(name) = trimmed.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name;
        }
        let key = || trimmed.split_once('=').map_or(trimmed, |(k, _)| k).trim().chars().take(64).collect::<String>();
        if line.len() > MAX_LINE_BYTES {
            return Err(RenderError::LineTooLong {
                field: field_of(spec, section, &key()),
                key: key(),
                len: line.len(),
            });
        }
        if trimmed.ends_with('\\') {
            return Err(RenderError::Continuation { field: field_of(spec, section, &key()), key: key() });
        }
    }
    Ok(())
}

/// Refuses, before rendering, a value whose line systemd would not read: the line checks of
/// [`check_lines`], naming the spec field (a line of 1 MiB would otherwise only show as a unit
/// over the size cap).
fn check_values(ctx: &Context<'_>, spec: &ServiceSpec) -> Result<(), RenderError> {
    let mut lines: Vec<(String, &str, &str)> = vec![("exec_start".to_owned(), "ExecStart", ctx.exec_start.as_str())];
    if let Some(dir) = &ctx.working_directory {
        lines.push(("working_directory".to_owned(), "WorkingDirectory", dir));
    }
    for ((key, _), line) in spec.environment.iter().zip(&ctx.environment) {
        lines.push((format!("environment.{key}"), "Environment", line));
    }
    for (section, list) in &ctx.directives {
        for d in list {
            lines.push((format!("directives.{section}.{}", d.key), &d.key, &d.value));
        }
    }
    for (field, key, value) in lines {
        let len = key.len() + 1 + value.len();
        if len > MAX_LINE_BYTES {
            return Err(RenderError::LineTooLong { field, key: key.to_owned(), len });
        }
        if value.trim_end().ends_with('\\') {
            return Err(RenderError::Continuation { field, key: key.to_owned() });
        }
    }
    Ok(())
}

/// A writer that takes at most [`MAX_UNIT_BYTES`] and then fails (minijinja then stops).
struct Capped {
    out: Vec<u8>,
    overflowed: bool,
}

impl io::Write for Capped {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.out.len() + buf.len() > MAX_UNIT_BYTES {
            self.overflowed = true;
            return Err(io::Error::other("the unit is too large"));
        }
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn render_with(spec: &ServiceSpec, version: &Ident, source: &str, path: &str) -> Result<String, RenderError> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_keep_trailing_newline(true);
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    // Unit files are not HTML: never auto-escape, the context is already escaped for systemd.
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    // A runaway loop or macro stops after TEMPLATE_FUEL steps, at `terraform plan` time too.
    env.set_fuel(Some(TEMPLATE_FUEL));
    let template_error = |e: minijinja::Error| {
        let what = match e.kind() {
            ErrorKind::OutOfFuel => {
                format!("it takes more than {TEMPLATE_FUEL} steps (a loop or a macro that does too much work): {e}")
            }
            _ => e.to_string(),
        };
        RenderError::Template {
            path: path.to_owned(),
            // minijinja names the place itself, `(in <path>:<line>)`, when it knows both.
            detail: match e.line() {
                Some(line) if !what.contains(&format!(":{line})")) => format!("{what} (line {line})"),
                _ => what,
            },
        }
    };
    // Compiled outside the environment's registry, which stays empty: `include`, `import` and
    // `extends` find no template, so a template reads nothing but itself.
    let tmpl = env.template_from_named_str(path, source).map_err(template_error)?;

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
        exec_start: quote_exec_args(&spec.exec_start),
        user: spec.user.as_deref(),
        group: spec.group.as_deref(),
        working_directory: spec.working_directory.as_ref().map(|p| escape_path(&p.to_string_lossy())),
        environment: spec.environment.iter().map(|(k, v)| quote_env(k, v)).collect(),
        environment_file: secret_file_value(spec, version),
        restart: &spec.restart,
        timeout_stop_sec: spec.timeout_stop_sec,
        port: spec.port,
        sockets: socket_value(spec),
        directives,
    };
    check_values(&ctx, spec)?;
    let mut out = Capped { out: Vec::new(), overflowed: false };
    match tmpl.render_captured_to(ctx, &mut out) {
        Ok(_) => {}
        Err(_) if out.overflowed => return Err(RenderError::TooLarge { path: path.to_owned() }),
        Err(e) => return Err(template_error(e)),
    }
    // The template and every value are strings, so the output is UTF-8.
    String::from_utf8(out.out)
        .map_err(|e| RenderError::Template { path: path.to_owned(), detail: format!("the output is not UTF-8: {e}") })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::parse;

    fn spec(json: &str) -> ServiceSpec {
        parse(json.as_bytes()).expect("valid spec")
    }

    #[test]
    fn secret_environment_renders_only_the_file_its_values_live_in() {
        let s = spec(
            r#"{"name":"app","version":"v1","exec_start":["/x"],"unit_dir":"/srv/u%x","secret_environment":{"PW":"hunter2"}}"#,
        );
        let unit = render(&s).expect("renders");
        assert!(!unit.contains("hunter2"), "{unit}");
        assert!(unit.contains("\nEnvironmentFile=/srv/u%%x/baton-secrets/app-v1.service.env\n"), "{unit}");
        // Without secrets, no EnvironmentFile= line.
        let plain = spec(r#"{"name":"app","version":"v1","exec_start":["/x"]}"#);
        assert!(!render(&plain).expect("renders").contains("EnvironmentFile="));
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
    fn marks_read_back() {
        let s = spec(r#"{"name":"app","version":"v1","exec_start":["/x"],"user":"nobody"}"#);
        let text = render(&s).expect("renders");
        assert_eq!(read_marks(&text), Some(("app".to_owned(), "v1".to_owned())));
        assert_eq!(parse::read_service_key(&text, "User").as_deref(), Some("nobody"));
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

    /// A spec with `template` set to `path`.
    fn with_template(path: &Path) -> ServiceSpec {
        spec(&format!(r#"{{"name":"a","version":"v1","exec_start":["/x"],"template":"{}"}}"#, path.display()))
    }

    /// Writes a template into `dir` and renders the spec `a`/`v1` with it.
    fn render_template(dir: &Path, name: &str, text: &str) -> Result<String, RenderError> {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write the template");
        render(&with_template(&path))
    }

    const MARKS: &str = "[Unit]\n{{ mark_service }}={{ name }}\n{{ mark_version }}={{ version }}\n[Service]\nExecStart={{ exec_start }}\n";

    // Issue 11, item 8.
    #[test]
    fn trailing_backslash_in_working_directory_is_refused() {
        // The spec's own rule names the field.
        let e = parse(br#"{"name":"a","version":"v1","exec_start":["/x"],"working_directory":"/tmp\\"}"#)
            .expect_err("refused")
            .to_string();
        assert!(e.starts_with("working_directory: must not end with a backslash"), "{e}");
        // The renderer refuses it too, for a spec built without the parser.
        let mut s = spec(r#"{"name":"a","version":"v1","exec_start":["/x"],"working_directory":"/tmp"}"#);
        s.working_directory = Some("/tmp\\".into());
        let e = render(&s).expect_err("refused").to_string();
        assert!(
            e.starts_with("working_directory: renders a line `WorkingDirectory=…` that ends in a backslash"),
            "{e}"
        );
        // Any line of a custom template: the next line (here the version mark) would be swallowed.
        let dir = tempfile::tempdir().expect("tempdir");
        let text = MARKS.replace("[Unit]\n", "[Unit]\nDescription=a\\\n");
        let e = render_template(dir.path(), "cont.j2", &text).expect_err("refused").to_string();
        assert!(e.starts_with("template: renders a line `Description=…` that ends in a backslash"), "{e}");
        // Quoted values may end in a backslash: it is escaped, and the line ends in a quote.
        let s = spec(r#"{"name":"a","version":"v1","exec_start":["/x","y\\"],"environment":{"A":"\\"}}"#);
        let text = render(&s).expect("renders");
        assert!(text.contains(r#"ExecStart="/x" "y\\""#) && text.contains(r#"Environment="A=\\""#), "{text}");
    }

    // Issue 11, item 9.
    #[test]
    fn runaway_template_loops_run_out_of_fuel() {
        let dir = tempfile::tempdir().expect("tempdir");
        let loops =
            format!("{MARKS}{{% for i in range(10000) %}}{{% for j in range(10000) %}}{{% endfor %}}{{% endfor %}}\n");
        let t0 = std::time::Instant::now();
        let e = render_template(dir.path(), "loops.j2", &loops).expect_err("out of fuel").to_string();
        assert!(e.contains("does not render: it takes more than 200000 steps"), "{e}");
        assert!(t0.elapsed() < std::time::Duration::from_secs(2), "took {:?}", t0.elapsed());
    }

    // Issue 11, item 9.
    #[test]
    fn macro_doubling_template_runs_out_of_fuel_without_eating_memory() {
        // m40 calls m39 twice, ..., m0 says "x": 2^40 calls, 1 TiB of output if nothing stops it.
        let mut text = String::from("{% macro m0() %}x{% endmacro %}\n");
        for i in 1..=40 {
            text.push_str(&format!(
                "{{% macro m{i}() %}}{{{{ m{j}() }}}}{{{{ m{j}() }}}}{{% endmacro %}}\n",
                j = i - 1
            ));
        }
        text.push_str(MARKS);
        text.push_str("Nice={{ m40() }}\n");
        let dir = tempfile::tempdir().expect("tempdir");
        let t0 = std::time::Instant::now();
        let e = render_template(dir.path(), "doubling.j2", &text).expect_err("out of fuel").to_string();
        assert!(e.contains("it takes more than 200000 steps"), "{e}");
        assert!(t0.elapsed() < std::time::Duration::from_secs(2), "took {:?}", t0.elapsed());
    }

    // Issue 11, item 9.
    #[test]
    fn template_output_is_capped_at_one_mebibyte() {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = format!("{MARKS}{{% for i in range(100) %}}# {{{{ \"x\" * 100000 }}}}\n{{% endfor %}}");
        let e = render_template(dir.path(), "big.j2", &text).expect_err("too large").to_string();
        assert!(e.contains("renders more than 1 MiB"), "{e}");
    }

    // Issue 11, item 9.
    #[test]
    fn templates_are_read_only_from_small_regular_files() {
        let t0 = std::time::Instant::now();
        let e = render(&with_template(Path::new("/dev/zero"))).expect_err("a device").to_string();
        assert_eq!(e, "template: cannot read /dev/zero: it is a character device, not a regular file");

        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("fifo.j2");
        rustix::fs::mknodat(rustix::fs::CWD, &fifo, rustix::fs::FileType::Fifo, Mode::from_raw_mode(0o600), 0)
            .expect("mkfifo");
        let e = render(&with_template(&fifo)).expect_err("a FIFO").to_string();
        assert!(e.ends_with("it is a FIFO, not a regular file"), "{e}");

        let good = dir.path().join("good.j2");
        std::fs::write(&good, MARKS).expect("write");
        assert!(render(&with_template(&good)).is_ok());
        let link = dir.path().join("link.j2");
        std::os::unix::fs::symlink(&good, &link).expect("symlink");
        let e = render(&with_template(&link)).expect_err("a symbolic link").to_string();
        assert!(e.ends_with("it is a symbolic link; name the template file itself"), "{e}");

        let big = dir.path().join("big.j2");
        std::fs::write(&big, format!("{MARKS}{}", "#\n".repeat(40 * 1024))).expect("write");
        let e = render(&with_template(&big)).expect_err("too large").to_string();
        assert!(e.ends_with("it is larger than 64 KiB, the limit for a template"), "{e}");
        assert!(t0.elapsed() < std::time::Duration::from_secs(2), "took {:?}", t0.elapsed());
    }

    // Issue 11, item 9: the fuel is ample for the largest spec the built-in template renders.
    #[test]
    fn the_largest_spec_renders_within_the_fuel() {
        let env: BTreeMap<String, String> = (0..crate::spec::MAX_ENV).map(|i| (format!("V{i}"), "x".into())).collect();
        let mut service = serde_json::Map::new();
        for i in 0..crate::spec::MAX_DIRECTIVES {
            service.insert(format!("X{i}"), serde_json::Value::from("1"));
        }
        let doc = serde_json::json!({"name": "a", "version": "v1", "exec_start": vec!["/x"; crate::spec::MAX_ARGS],
            "environment": env, "directives": {"Service": service}});
        let text = render(&spec(&doc.to_string())).expect("renders");
        assert_eq!(text.lines().filter(|l| l.starts_with("Environment=")).count(), crate::spec::MAX_ENV);
    }

    // Issue 11, item 10.
    #[test]
    fn lines_longer_than_systemd_reads_are_refused_naming_the_field() {
        // 9 arguments of 60000 `%`: a 540 KB spec whose ExecStart= line doubles every `%`.
        let args: Vec<String> = std::iter::once("/x".to_owned()).chain((0..9).map(|_| "%".repeat(60_000))).collect();
        let doc = serde_json::json!({"name": "a", "version": "v1", "exec_start": args});
        let e = render(&spec(&doc.to_string())).expect_err("too long").to_string();
        assert!(e.starts_with("exec_start: renders a line `ExecStart=…` of 1080041 bytes; systemd refuses unit file lines of more than 1048575 bytes"), "{e}");
        // A custom template that builds a long line itself: over the output cap too.
        let dir = tempfile::tempdir().expect("tempdir");
        let text = format!("{MARKS}Nice={{{{ \"1\" * {} }}}}\n", MAX_LINE_BYTES);
        let e = render_template(dir.path(), "long.j2", &text).expect_err("too long").to_string();
        assert!(e.contains("renders more than 1 MiB"), "{e}");
        // The line check on its own: the longest line systemd reads passes, one byte more does not.
        let s = with_template(&dir.path().join("long.j2"));
        let unit = |len: usize| format!("[Service]\nNice={}\n", "1".repeat(len - "Nice=".len()));
        assert!(check_lines(&s, &unit(MAX_LINE_BYTES)).is_ok());
        let e = check_lines(&s, &unit(MAX_LINE_BYTES + 1)).expect_err("too long").to_string();
        assert!(e.starts_with("template: renders a line `Nice=…` of 1048576 bytes"), "{e}");
    }

    // Issue 11, item 12.
    #[test]
    fn marks_outside_unit_are_refused_as_read_marks_would_disown_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = "[Unit]\nDescription=x\n[Service]\n{{ mark_service }}={{ name }}\n{{ mark_version }}={{ version }}\nExecStart={{ exec_start }}\n";
        let e = render_template(dir.path(), "service-marks.j2", text).expect_err("refused").to_string();
        assert!(e.contains("without the `X-Baton-Service=a` and `X-Baton-Version=v1` lines in [Unit] (they are in [Service]; baton and systemd read them only in [Unit])"), "{e}");
        // Marks of another release are refused too.
        let e = render_template(dir.path(), "other.j2", &MARKS.replace("={{ version }}", "=v2")).expect_err("refused");
        assert!(e.to_string().contains("(it is marked as release v2 of service a)"), "{e}");
        // What render accepts, read_marks reads back.
        let text = render_template(dir.path(), "good.j2", MARKS).expect("renders");
        assert_eq!(read_marks(&text), Some(("a".to_owned(), "v1".to_owned())));
    }

    #[test]
    fn include_and_import_find_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        for stmt in ["{% include \"unit\" %}", "{% import \"unit\" as u %}", "{% include \"/etc/passwd\" %}"] {
            let e = render_template(dir.path(), "inc.j2", &format!("{MARKS}{stmt}\n")).expect_err(stmt).to_string();
            assert!(e.contains("does not render") && e.contains("not found"), "{stmt}: {e}");
        }
    }
}
