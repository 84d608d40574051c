//! Reads a spec back from a release unit file that the built-in template rendered: the inverse
//! of [`crate::render`], for front-ends that adopt a service that is already deployed (the
//! Terraform provider's import).
//!
//! Only what the unit holds comes back: `name`, `version`, `exec_start`, `service_type`, `user`,
//! `group`, `working_directory`, `environment`, `timeout_stop_sec`, `restart` and `directives`.
//! Settings of the handover itself (`port`, `health`, `keep`, `migrate_requests`, `template`) are
//! not in the unit and stay unset. [`ReadBack::exact`] tells whether rendering the spec read back
//! gives the file byte for byte (false for a unit edited by hand or rendered by a custom
//! template: the fields are then a best effort). `secret_environment` is never in a unit: only
//! [`ReadBack::secret_file`] tells that the unit names its secret file.

use std::collections::BTreeMap;

use crate::render::{self, MARK_VERSION};
use crate::spec::{DirectiveValue, RawSpec, ServiceType};

/// A spec read back from a unit file.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadBack {
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
pub fn read_back(text: &str, unit_dir: &str) -> Option<ReadBack> {
    let (name, version) = render::read_marks(text)?;
    let mut spec = RawSpec { name, version, unit_dir: Some(unit_dir.to_owned()), ..RawSpec::default() };
    let mut directives: BTreeMap<String, BTreeMap<String, DirectiveValue>> = BTreeMap::new();
    let mut section = "";
    // Lines of the built-in template come first in each section; whatever follows the last of
    // them is an extra directive.
    let mut past_fixed = false;
    let mut seen_after = false;
    let mut secret_file = false;
    for (line_section, key, value) in render::unit_lines(text) {
        if line_section != section {
            section = line_section;
            past_fixed = false;
        }
        if past_fixed {
            let unescaped = unescape_directive(key, value);
            let entry = directives.entry(section.to_owned()).or_default();
            match entry.remove(key) {
                None => entry.insert(key.to_owned(), DirectiveValue::One(unescaped)),
                Some(DirectiveValue::One(first)) => {
                    entry.insert(key.to_owned(), DirectiveValue::Many(vec![first, unescaped]))
                }
                Some(DirectiveValue::Many(mut all)) => {
                    all.push(unescaped);
                    entry.insert(key.to_owned(), DirectiveValue::Many(all))
                }
            };
            continue;
        }
        match (section, key) {
            ("Unit", MARK_VERSION) => past_fixed = true,
            ("Unit", "After") if !seen_after => seen_after = true,
            ("Unit", _) => {}
            ("Service", "Type") => {
                spec.service_type = match value {
                    "simple" => Some(ServiceType::Simple),
                    "notify" => Some(ServiceType::Notify),
                    _ => None,
                }
            }
            ("Service", "ExecStart") => spec.exec_start = unquote_args(value),
            ("Service", "User") => spec.user = Some(value.to_owned()),
            ("Service", "Group") => spec.group = Some(value.to_owned()),
            ("Service", "WorkingDirectory") => spec.working_directory = Some(value.replace("%%", "%")),
            ("Service", "Environment") => {
                for assignment in unquote_args_with(value, false) {
                    if let Some((k, v)) = assignment.split_once('=') {
                        spec.environment.get_or_insert_with(BTreeMap::new).insert(k.to_owned(), v.to_owned());
                    }
                }
            }
            ("Service", "Restart") => spec.restart = (value != "always").then(|| value.to_owned()),
            ("Service", "TimeoutStopSec") => {
                spec.timeout_stop_sec = value.parse().ok().filter(|&t| t != 30);
            }
            ("Service", "EnvironmentFile") => {
                let unit = format!("{}-{}.service", spec.name, spec.version);
                let file = crate::secrets::path(std::path::Path::new(unit_dir), &unit);
                secret_file |= value.replace("%%", "%") == file.to_string_lossy();
            }
            ("Service", "KillSignal") => past_fixed = true,
            ("Service", _) => {}
            ("Install", "WantedBy") => past_fixed = true,
            _ => {}
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
    let exact =
        rendered_spec.validate().ok().and_then(|s| render::render(&s).ok()).is_some_and(|rendered| rendered == text);
    Some(ReadBack { spec, exact, secret_file })
}

/// Undoes [`render::escape_directive`]: `%%` → `%`, and in `Exec*` keys `$$` → `$`.
fn unescape_directive(key: &str, value: &str) -> String {
    let value = value.replace("%%", "%");
    if key.starts_with("Exec") {
        value.replace("$$", "$")
    } else {
        value
    }
}

/// Splits an `ExecStart=` command line rendered by [`render::quote_exec_arg`] into its
/// arguments.
fn unquote_args(value: &str) -> Vec<String> {
    unquote_args_with(value, true)
}

/// Splits space-separated double-quoted words, undoing C escapes, `%%` and (with `dollars`)
/// `$$`. Unquoted words are taken as they are.
fn unquote_args_with(value: &str, dollars: bool) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = value.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let Some(&first) = chars.peek() else {
            break;
        };
        let mut word = String::new();
        if first != '"' {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                word.push(c);
                chars.next();
            }
            out.push(word);
            continue;
        }
        chars.next();
        while let Some(c) = chars.next() {
            match c {
                '"' => break,
                '\\' => match chars.next() {
                    Some('x') => push_hex(&mut word, &mut chars, 2),
                    Some('u') => push_hex(&mut word, &mut chars, 4),
                    Some('U') => push_hex(&mut word, &mut chars, 8),
                    Some('n') => word.push('\n'),
                    Some('t') => word.push('\t'),
                    Some('r') => word.push('\r'),
                    Some(other) => word.push(other),
                    None => {}
                },
                '%' if chars.peek() == Some(&'%') => {
                    chars.next();
                    word.push('%');
                }
                '$' if dollars && chars.peek() == Some(&'$') => {
                    chars.next();
                    word.push('$');
                }
                c => word.push(c),
            }
        }
        out.push(word);
    }
    out
}

fn push_hex(word: &mut String, chars: &mut std::iter::Peekable<std::str::Chars<'_>>, digits: usize) {
    let hex: String = (0..digits).filter_map(|_| chars.next()).collect();
    if let Some(c) = u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
        word.push(c);
    }
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
}
