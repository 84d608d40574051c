//! Properties of the rendered unit: for any accepted argv and environment, decoding the rendered
//! lines with systemd's documented rules (specifiers, then unquoting with C escapes, then `$$`)
//! gives back exactly the input; and every unit of a hostile corpus passes `systemd-analyze
//! verify` without a single warning.

use std::collections::BTreeMap;

use baton_core::render_unit as render;
use baton_core::spec::{RawSpec, ServiceSpec};
use proptest::prelude::*;

/// systemd's pass over a doubled special character (`%` for specifiers, `$` for variables):
/// `%%` is a literal `%`; any other `%x` would be expanded, which no rendered value may allow.
fn resolve_doubled(s: &str, special: char) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == special {
            match chars.next() {
                Some(c) if c == special => out.push(special),
                other => return Err(format!("{special}{other:?} would be expanded in {s:?}")),
            }
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

/// systemd's specifier pass.
fn resolve_specifiers(s: &str) -> Result<String, String> {
    resolve_doubled(s, '%')
}

/// systemd's C unescaping of one escape after a backslash.
fn cunescape(chars: &mut std::iter::Peekable<std::str::Chars<'_>>, out: &mut String) -> Result<(), String> {
    let c = chars.next().ok_or("dangling backslash")?;
    match c {
        'a' => out.push('\u{7}'),
        'b' => out.push('\u{8}'),
        'f' => out.push('\u{c}'),
        'n' => out.push('\n'),
        'r' => out.push('\r'),
        't' => out.push('\t'),
        'v' => out.push('\u{b}'),
        '\\' | '"' | '\'' => out.push(c),
        's' => out.push(' '),
        'x' => {
            let hex: String = chars.by_ref().take(2).collect();
            let v = u8::from_str_radix(&hex, 16).map_err(|e| e.to_string())?;
            out.push(char::from(v));
        }
        'u' => {
            let hex: String = chars.by_ref().take(4).collect();
            let v = u32::from_str_radix(&hex, 16).map_err(|e| e.to_string())?;
            out.push(char::from_u32(v).ok_or("bad \\u")?);
        }
        other => return Err(format!("unknown escape \\{other}")),
    }
    Ok(())
}

/// systemd's word splitting with quotes and C escapes (extract_first_word with
/// EXTRACT_UNQUOTE|EXTRACT_CUNESCAPE).
fn split_words(s: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ' ' || *c == '\t') {
            chars.next();
        }
        if chars.peek().is_none() {
            return Ok(words);
        }
        let mut word = String::new();
        let mut quote: Option<char> = None;
        while let Some(&c) = chars.peek() {
            match (quote, c) {
                (None, ' ' | '\t') => break,
                (None, '"' | '\'') => {
                    quote = Some(c);
                    chars.next();
                }
                (Some(q), c) if c == q => {
                    quote = None;
                    chars.next();
                }
                (_, '\\') => {
                    chars.next();
                    cunescape(&mut chars, &mut word)?;
                }
                (_, c) => {
                    word.push(c);
                    chars.next();
                }
            }
        }
        if quote.is_some() {
            return Err("unterminated quote".to_owned());
        }
        words.push(word);
    }
}

/// systemd's `$` pass on an argument: `$$` is a literal `$`; `$X`/`${X}` would be expanded.
fn resolve_dollars(s: &str) -> Result<String, String> {
    resolve_doubled(s, '$')
}

fn line_value<'a>(unit: &'a str, key: &str) -> Vec<&'a str> {
    unit.lines().filter_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('='))).collect()
}

fn decode_exec_start(unit: &str) -> Result<Vec<String>, String> {
    let lines = line_value(unit, "ExecStart");
    assert_eq!(lines.len(), 1, "exactly one ExecStart line in:\n{unit}");
    let words = split_words(&resolve_specifiers(lines[0])?)?;
    words.iter().map(|w| resolve_dollars(w)).collect()
}

fn decode_environment(unit: &str) -> Result<BTreeMap<String, String>, String> {
    let mut env = BTreeMap::new();
    for line in line_value(unit, "Environment") {
        for word in split_words(&resolve_specifiers(line)?)? {
            let (k, v) = word.split_once('=').ok_or("assignment without =")?;
            env.insert(k.to_owned(), v.to_owned());
        }
    }
    Ok(env)
}

fn validate(argv: Vec<String>, env: BTreeMap<String, String>) -> Option<ServiceSpec> {
    RawSpec {
        name: "app".to_owned(),
        version: "v1".to_owned(),
        exec_start: argv,
        environment: Some(env),
        ..RawSpec::default()
    }
    .validate()
    .ok()
}

fn hostile_string() -> impl Strategy<Value = String> {
    let pieces = prop_oneof![
        Just("\"".to_owned()),
        Just("\\".to_owned()),
        Just("'".to_owned()),
        Just("$".to_owned()),
        Just("${X}".to_owned()),
        Just("%".to_owned()),
        Just("%n".to_owned()),
        Just(";".to_owned()),
        Just(" ".to_owned()),
        Just("\t".to_owned()),
        Just("\u{1}".to_owned()),
        Just("\u{7f}".to_owned()),
        Just("\u{85}".to_owned()),
        Just("ü".to_owned()),
        Just("[Service]".to_owned()),
        Just("\n".to_owned()),
        any::<char>().prop_map(String::from),
        "[a-z]{1,4}",
    ];
    prop::collection::vec(pieces, 0..12).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn exec_start_and_environment_round_trip(
        args in prop::collection::vec(hostile_string(), 0..6),
        env in prop::collection::btree_map("[A-Z_][A-Z0-9_]{0,8}", hostile_string(), 0..4),
    ) {
        let mut argv = vec!["/bin/prog".to_owned()];
        argv.extend(args);
        if let Some(spec) = validate(argv.clone(), env.clone()) {
            let unit = render(&spec).expect("an accepted spec renders");
            prop_assert_eq!(decode_exec_start(&unit).map_err(TestCaseError::fail)?, argv);
            prop_assert_eq!(decode_environment(&unit).map_err(TestCaseError::fail)?, env);
            // No value can open a section or add a line.
            let sections: Vec<_> = unit.lines().filter(|l| l.starts_with('[')).collect();
            prop_assert_eq!(sections, ["[Unit]", "[Service]", "[Install]"]);
        } else {
            // Only NUL, newlines and carriage returns are refused in these values.
            let bad = argv.iter().chain(env.values()).any(|v| v.contains(['\n', '\r', '\0']));
            prop_assert!(bad, "refused without a reason: {:?} {:?}", argv, env);
        }
    }
}

/// One corpus entry: argv and environment.
type HostileCase<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)]);

/// Every hostile-but-accepted spec renders a unit that systemd itself loads without a warning.
#[test]
fn hostile_units_pass_systemd_analyze_verify() {
    let dir = tempfile::tempdir().expect("tempdir");
    let corpus: &[HostileCase] = &[
        (&["/bin/echo", "a b", "\"q\"", "back\\slash", "$HOME", "${PATH}", "100%", "%n"], &[("A", "x\" Foo=\"bar")]),
        (&["/bin/echo", ";", "'single'", "tab\there", "ünïcødé", "x\u{1}y", "\u{7f}"], &[("PCT", "%h $HOME \\")]),
        (&["/bin/echo", "[Service]", "ExecStartPre=/bin/false", "\\", "\\\"", "-"], &[("B", "[Install]")]),
        (&["/bin/echo", &"long".repeat(4096)], &[("LONG", &"v".repeat(16 * 1024))]),
    ];
    for (i, (argv, env)) in corpus.iter().enumerate() {
        let spec = validate(
            argv.iter().map(|s| s.to_string()).collect(),
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        )
        .expect("accepted");
        let unit = render(&spec).expect("renders");
        assert_eq!(decode_exec_start(&unit).expect("decodes"), *argv);
        let path = dir.path().join(format!("app{i}-v1.service"));
        std::fs::write(&path, &unit).expect("write");
        let out = std::process::Command::new("systemd-analyze")
            .arg("verify")
            .arg(&path)
            .output()
            .expect("systemd-analyze must be installed (make deps installs it)");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let about_us: Vec<_> = stderr.lines().filter(|l| l.contains(&format!("app{i}-v1"))).collect();
        assert!(out.status.success() && about_us.is_empty(), "systemd-analyze verify complained:\n{stderr}\n{unit}");
    }
}
