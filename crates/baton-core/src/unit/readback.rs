//! Reads a spec back from a release unit file that the built-in template rendered: the inverse
//! of [`super::render`], for front-ends that adopt a service that is already deployed (the
//! Terraform provider's import).
//!
//! Only what the unit holds comes back: `name`, `version`, `exec_start`, `service_type`, `user`,
//! `group`, `working_directory`, `environment`, `timeout_stop_sec`, `restart` and `directives`.
//! Settings of the handover itself (`port`, `health`, `keep`, `migrate_requests`, `template`) are
//! not in the unit and stay unset. [`ReadBack::exact`] tells whether rendering the spec read back
//! gives the file byte for byte (false for a unit edited by hand or rendered by a custom
//! template: the fields are then a best effort). `secret_environment` is never in a unit: only
//! [`ReadBack::secret_file`] tells that the unit names its secret file.
//!
//! The unit is read by section and key, never by line order: a key a spec field renders goes
//! back to that field, a line the built-in template writes as it is (`KillMode=mixed`, …) is
//! the template's, and every other line is an extra directive.

use std::collections::BTreeMap;
use std::path::Path;

use super::escape::{unescape_directive, unescape_path, unquote_env, unquote_exec_args};
use super::parse::{self, Directive};
use super::render::{self, BUILTIN_TEMPLATE};
use super::{MARK_SERVICE, MARK_VERSION};
use crate::spec::{defaults, DirectiveValue, RawSpec, ServiceType, UnitNaming};

/// A spec read back from a unit file.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ReadBack {
    /// The spec: the unit's fields, everything else unset (defaults).
    pub spec: RawSpec,
    /// Whether rendering `spec` with the built-in template reproduces the file exactly (with
    /// `secret_environment` set, when the unit names its secret file).
    pub exact: bool,
    /// Whether the unit names the release's secret file (`EnvironmentFile=`): the spec had
    /// `secret_environment`, whose values are not in the unit and are not read back.
    pub secret_file: bool,
}

/// Reads the spec back from `text`, a release unit of `unit_dir`. `None` when the file does not
/// carry baton's marks.
pub(crate) fn read_back(text: &str, unit_dir: &str) -> Option<ReadBack> {
    let original = text;
    let (name, version) = parse::read_marks(text)?;
    // An instance's drop-in reads back as the unit it was made from, in instance naming.
    let (plain, naming) = if super::instance::is_drop_in(text) {
        (super::instance::without_resets(text), UnitNaming::Instance)
    } else {
        (text.to_owned(), UnitNaming::PerVersion)
    };
    let text = plain.as_str();
    let secret_path = crate::secrets::path(Path::new(unit_dir), &naming.unit_name(&name, &version));
    let mut spec = RawSpec {
        name,
        version,
        unit_dir: Some(unit_dir.to_owned()),
        unit_naming: (naming == UnitNaming::Instance).then_some(naming),
        ..RawSpec::default()
    };
    let mut directives: BTreeMap<String, BTreeMap<String, DirectiveValue>> = BTreeMap::new();
    // The lines the built-in template writes as they are, each taken once.
    let mut template_lines = template_constants();
    let mut secret_file = false;
    for d in parse::directives(text) {
        match (d.section, d.key) {
            // The marks and the description: made from the name and version.
            ("Unit", MARK_SERVICE | MARK_VERSION | "Description") => {}
            ("Service", "Type") => {
                spec.service_type = match d.value {
                    "simple" => Some(ServiceType::Simple),
                    "notify" => Some(ServiceType::Notify),
                    _ => None,
                }
            }
            ("Service", "ExecStart") => spec.exec_start = unquote_exec_args(d.value),
            ("Service", "User") => spec.user = Some(d.value.to_owned()),
            ("Service", "Group") => spec.group = Some(d.value.to_owned()),
            ("Service", "WorkingDirectory") => spec.working_directory = Some(unescape_path(d.value)),
            ("Service", "Environment") => {
                spec.environment.get_or_insert_with(BTreeMap::new).extend(unquote_env(d.value));
            }
            // Socket mode: the release takes its listener from the service's socket.
            ("Service", "Sockets") if d.value == crate::spec::socket_unit_name(&spec.name) => {
                spec.listen_mode = Some(crate::spec::ListenMode::Socket);
            }
            ("Service", "Restart") => spec.restart = (d.value != defaults::RESTART).then(|| d.value.to_owned()),
            ("Service", "TimeoutStopSec") => {
                spec.timeout_stop_sec = d.value.parse().ok().filter(|&t| t != defaults::TIMEOUT_STOP_SEC);
            }
            ("Service", "EnvironmentFile")
                if !secret_file && unescape_path(d.value) == secret_path.to_string_lossy() =>
            {
                secret_file = true;
            }
            _ => match template_lines.iter().position(|t| *t == d) {
                Some(i) => {
                    template_lines.swap_remove(i);
                }
                None => add_directive(&mut directives, d),
            },
        }
    }
    if !directives.is_empty() {
        spec.directives = Some(directives);
    }
    // The secret values are not in the unit: any value renders the same text.
    let mut rendered_spec = spec.clone();
    if secret_file {
        rendered_spec.secret_environment = Some(BTreeMap::from([("_".to_owned(), String::new())]));
    }
    let exact = rendered_spec
        .validate()
        .ok()
        .and_then(|s| render::render(&s).ok())
        .is_some_and(|rendered| rendered == original);
    Some(ReadBack { spec, exact, secret_file })
}

/// The directives the built-in template writes as they are, with no value of the spec in them
/// (`After=network.target`, `KillMode=mixed`, …), read from the template itself. Each is matched
/// once, by section, key and value; when an extra directive repeats one, the first equal line is
/// taken as the template's.
fn template_constants() -> Vec<Directive<'static>> {
    let templated = |s: &str| s.contains("{{") || s.contains("{%") || s.contains("{#");
    parse::directives(BUILTIN_TEMPLATE).filter(|d| !templated(d.key) && !templated(d.value)).collect()
}

/// Adds an extra directive, unescaped; a key seen again becomes a list, in file order.
fn add_directive(directives: &mut BTreeMap<String, BTreeMap<String, DirectiveValue>>, d: Directive<'_>) {
    let value = unescape_directive(d.key, d.value);
    let entry = directives.entry(d.section.to_owned()).or_default();
    match entry.remove(d.key) {
        None => entry.insert(d.key.to_owned(), DirectiveValue::One(value)),
        Some(DirectiveValue::One(first)) => entry.insert(d.key.to_owned(), DirectiveValue::Many(vec![first, value])),
        Some(DirectiveValue::Many(mut all)) => {
            all.push(value);
            entry.insert(d.key.to_owned(), DirectiveValue::Many(all))
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::parse;

    fn round_trip(json: &str) -> ReadBack {
        let spec = parse(json.as_bytes()).expect("valid spec");
        let text = render::render(&spec).expect("renders");
        let back = read_back(&text, "/etc/systemd/system").expect("marked");
        assert!(back.exact, "not exact:\n{text}\n{:#?}", back.spec);
        let again = back.spec.clone().validate().expect("valid again");
        assert_eq!(render::render(&again).expect("renders"), text);
        back
    }

    #[test]
    fn minimal_unit_reads_back() {
        let back = round_trip(r#"{"name":"app","version":"v1","exec_start":["/usr/bin/app","--port","8080"]}"#);
        assert_eq!(back.spec.name, "app");
        assert_eq!(back.spec.version, "v1");
        assert_eq!(back.spec.exec_start, ["/usr/bin/app", "--port", "8080"]);
        assert_eq!(back.spec.restart, None);
        assert_eq!(back.spec.timeout_stop_sec, None);
        assert_eq!(back.spec.directives, None);
    }

    #[test]
    fn full_unit_reads_back() {
        let back = round_trip(
            r#"{"name":"web","version":"2.4.1","exec_start":["/opt/web/bin/web","--listen",":8080"],
                "port":8080,"service_type":"notify","user":"web","group":"web",
                "working_directory":"/srv/50%","environment":{"RUST_LOG":"info","GREETING":"hello world"},
                "timeout_stop_sec":45,"restart":"on-failure",
                "directives":{"Service":{"LimitNOFILE":"65536","ExecStartPre":["/bin/true","/bin/echo $HOME 50%"]},
                              "Unit":{"After":["network-online.target","postgresql.service"]},
                              "Install":{"Alias":"w.service"}}}"#,
        );
        assert_eq!(back.spec.service_type, Some(ServiceType::Notify));
        assert_eq!(back.spec.working_directory.as_deref(), Some("/srv/50%"));
        assert_eq!(back.spec.timeout_stop_sec, Some(45));
        let env = back.spec.environment.expect("environment");
        assert_eq!(env["GREETING"], "hello world");
        let d = back.spec.directives.expect("directives");
        assert_eq!(
            d["Service"]["ExecStartPre"],
            DirectiveValue::Many(vec!["/bin/true".into(), "/bin/echo $HOME 50%".into()])
        );
        assert_eq!(d["Install"]["Alias"], DirectiveValue::One("w.service".into()));
    }

    #[test]
    fn hostile_values_read_back() {
        round_trip(
            r#"{"name":"app","version":"v1","exec_start":["/bin/echo","a b","\"q\"","back\\slash","$HOME","${PATH}","100%","%n",";","'single'","tab\there","ünïcødé","x\u0001y","\u0085"],
                "environment":{"EVIL":"x\" Foo=\"bar","PCT":"%h $HOME \\","EQ":"a=b"}}"#,
        );
    }

    #[test]
    fn a_unit_with_secrets_reads_back_exactly_without_their_values() {
        let spec = parse(
            br#"{"name":"app","version":"v1","exec_start":["/x"],"unit_dir":"/srv/u%1","secret_environment":{"PW":"hunter2"}}"#,
        )
        .expect("valid");
        let text = render::render(&spec).expect("renders");
        let back = read_back(&text, "/srv/u%1").expect("marked");
        assert!(back.exact && back.secret_file, "{back:?}");
        assert_eq!(back.spec.secret_environment, None);
        assert_eq!(back.spec.directives, None, "the EnvironmentFile= line is no directive");
        let plain = read_back(
            &render::render(&parse(br#"{"name":"app","version":"v1","exec_start":["/x"]}"#).expect("valid"))
                .expect("renders"),
            "/u",
        )
        .expect("marked");
        assert!(plain.exact && !plain.secret_file);
    }

    #[test]
    fn hand_edited_unit_is_not_exact() {
        let spec = parse(br#"{"name":"app","version":"v1","exec_start":["/x"]}"#).expect("valid");
        let text = render::render(&spec).expect("renders").replace("Restart=always", "Nice=5\nRestart=no");
        let back = read_back(&text, "/u").expect("marked");
        assert!(!back.exact, "Nice= is not a line of the built-in template");
        assert_eq!(back.spec.restart.as_deref(), Some("no"));
        assert_eq!(read_back("[Service]\nExecStart=/x\n", "/u"), None);
    }

    /// The blocks of a template's section: a line, or an `{% if %}`/`{% for %}` block.
    type Blocks<'a> = Vec<Vec<&'a str>>;

    /// A way to put the blocks of a section in another order.
    type Reorder = fn(&mut Blocks<'_>);

    /// The built-in template with the blocks of each section put in another order by `reorder`.
    fn reordered_template(reorder: impl Fn(&mut Blocks<'_>)) -> String {
        let mut out = String::new();
        let mut blocks: Blocks<'_> = Vec::new();
        let flush = |out: &mut String, blocks: &mut Blocks<'_>| {
            reorder(blocks);
            for line in blocks.drain(..).flatten() {
                out.push_str(line);
                out.push('\n');
            }
        };
        let mut open = false;
        for line in BUILTIN_TEMPLATE.lines() {
            if line.starts_with('[') {
                flush(&mut out, &mut blocks);
                out.push_str(line);
                out.push('\n');
            } else if line.starts_with('#') || line.trim().is_empty() {
                // The header comment stays first; blank lines are left out.
                if blocks.is_empty() && !out.contains('[') {
                    out.push_str(line);
                    out.push('\n');
                }
            } else if open {
                blocks.last_mut().expect("an open block").push(line);
                open = !line.starts_with("{% end");
            } else {
                blocks.push(vec![line]);
                open = line.starts_with("{% if") || line.starts_with("{% for");
            }
        }
        flush(&mut out, &mut blocks);
        out
    }

    /// Issue 13: read-back does not depend on the built-in template's line order.
    #[test]
    fn a_reordered_template_reads_back_to_the_same_spec() {
        let json = r#"{"name":"web","version":"2.4.1","exec_start":["/opt/web/bin/web","--listen",":8080 %n $X"],
                "service_type":"notify","user":"web","group":"web","unit_dir":"/u",
                "working_directory":"/srv/50%","environment":{"RUST_LOG":"info","GREETING":"hello \"world\""},
                "secret_environment":{"PW":"hunter2"},"timeout_stop_sec":45,"restart":"on-failure",
                "directives":{"Service":{"LimitNOFILE":"65536","KillMode":"process","ExecStartPre":["/bin/true","/bin/echo $HOME 50%"]},
                              "Unit":{"After":["network-online.target","postgresql.service"]},
                              "Install":{"WantedBy":"graphical.target","Alias":"w.service"}}}"#;
        let builtin = render::render(&parse(json.as_bytes()).expect("valid")).expect("renders");
        let expected = read_back(&builtin, "/u").expect("marked");
        assert!(expected.exact && expected.secret_file, "{builtin}");
        let dir = tempfile::tempdir().expect("tempdir");
        let reorders: [(&str, Reorder); 3] = [
            ("reversed", |b| b.reverse()),
            ("rotated", |b| {
                let half = b.len() / 2;
                b.rotate_left(half)
            }),
            ("as is", |_| {}),
        ];
        for (how, reorder) in reorders {
            let template = dir.path().join(format!("{}.j2", how.replace(' ', "-")));
            std::fs::write(&template, reordered_template(reorder)).expect("write the template");
            let mut with_template: serde_json::Value = serde_json::from_str(json).expect("json");
            with_template["template"] = template.display().to_string().into();
            let text = render::render(&parse(with_template.to_string().as_bytes()).expect("valid")).expect("renders");
            if how != "as is" {
                assert_ne!(text, builtin, "{how}: the lines moved");
            }
            let back = read_back(&text, "/u").expect("marked");
            assert_eq!(back.spec, expected.spec, "{how}:\n{text}");
            assert!(back.secret_file, "{how}:\n{text}");
        }
    }

    #[test]
    fn directives_equal_to_a_template_line_read_back() {
        let back = round_trip(
            r#"{"name":"a","version":"v1","exec_start":["/x"],
                "directives":{"Unit":{"After":"network.target"},"Service":{"KillSignal":"SIGTERM","EnvironmentFile":"/etc/a.env"}}}"#,
        );
        let d = back.spec.directives.expect("directives");
        assert_eq!(d["Unit"]["After"], DirectiveValue::One("network.target".into()));
        assert_eq!(d["Service"]["KillSignal"], DirectiveValue::One("SIGTERM".into()));
        assert_eq!(d["Service"]["EnvironmentFile"], DirectiveValue::One("/etc/a.env".into()));
        assert!(!back.secret_file);
    }
}
