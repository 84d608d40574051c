//! Fuzzing (proptest, many cases) of the spec parser and the renderer: arbitrary bytes and
//! arbitrary spec-shaped JSON never panic, and every accepted spec renders a unit whose
//! sections and directives are exactly the intended ones — no value adds or hides a line.

use std::collections::BTreeMap;

use baton_core::render_unit as render;
use baton_core::spec::{parse, ServiceSpec};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

fn hostile_string() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("\n".to_owned()),
        Just("\r".to_owned()),
        Just("\0".to_owned()),
        Just("[Service]".to_owned()),
        Just("=".to_owned()),
        Just("\\".to_owned()),
        Just("\"".to_owned()),
        Just("$".to_owned()),
        Just("%".to_owned()),
        Just(" ".to_owned()),
        Just("/".to_owned()),
        Just(".".to_owned()),
        Just("-".to_owned()),
        any::<char>().prop_map(String::from),
        "[a-zA-Z0-9_]{1,6}",
    ];
    prop::collection::vec(piece, 0..8).prop_map(|v| v.concat())
}

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        (0u32..70000).prop_map(|n| json!(n)),
        hostile_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(hostile_string(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Spec-shaped documents: mostly plausible fields, some with hostile or wrong-typed values.
fn spec_json() -> impl Strategy<Value = Value> {
    let name = prop_oneof![Just("app".to_owned()), "[a-z][a-z0-9_.-]{0,8}", hostile_string()];
    let version = prop_oneof![Just("v1".to_owned()), "[0-9][a-z0-9.]{0,6}", hostile_string()];
    let argv = prop::collection::vec(hostile_string(), 0..5)
        .prop_map(|rest| std::iter::once("/bin/prog".to_owned()).chain(rest).collect::<Vec<_>>());
    let env =
        prop::collection::btree_map(prop_oneof!["[A-Z_][A-Z0-9_]{0,6}", hostile_string()], hostile_string(), 0..4);
    let directive_value = prop_oneof![
        hostile_string().prop_map(Value::String),
        prop::collection::vec(hostile_string(), 0..3).prop_map(|v| json!(v)),
    ];
    let section =
        prop_oneof![Just("Unit".to_owned()), Just("Service".to_owned()), Just("Install".to_owned()), hostile_string()];
    let key = prop_oneof![
        "[A-Z][A-Za-z]{0,10}",
        Just("ExecStartPre".to_owned()),
        Just("ExecStart".to_owned()),
        hostile_string()
    ];
    let directives =
        prop::collection::btree_map(section, prop::collection::btree_map(key, directive_value, 0..3), 0..3);
    let extras = prop::collection::btree_map(
        prop_oneof![
            Just("port"),
            Just("user"),
            Just("group"),
            Just("working_directory"),
            Just("timeout_stop_sec"),
            Just("restart"),
            Just("state"),
            Just("keep"),
            Just("service_type"),
            Just("health"),
            Just("enabled"),
            Just("unknown_field"),
        ],
        prop_oneof![
            any_json(),
            (1u32..65535).prop_map(|n| json!(n)),
            Just(json!("web")),
            Just(json!("/srv/app")),
            Just(json!("notify")),
            Just(json!({"tcp": true, "timeout_sec": 5})),
        ],
        0..4,
    );
    (name, version, argv, env, directives, extras).prop_map(|(name, version, argv, env, directives, extras)| {
        let mut spec =
            json!({"name": name, "version": version, "exec_start": argv, "environment": env, "directives": directives});
        let obj = spec.as_object_mut().expect("object");
        for (k, v) in extras {
            obj.insert(k.to_owned(), v);
        }
        spec
    })
}

/// `(section, key)` of every directive line, in order.
fn directive_lines(unit: &str) -> Vec<(String, String)> {
    let mut section = String::new();
    let mut out = Vec::new();
    for line in unit.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.starts_with('[') {
            section = line.to_owned();
            continue;
        }
        let (key, _) =
            line.split_once('=').unwrap_or_else(|| panic!("a line that is neither section nor directive: {line:?}"));
        out.push((section.clone(), key.to_owned()));
    }
    out
}

/// The lines the built-in template must produce for `spec`, in order.
fn intended(spec: &ServiceSpec) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut push = |section: &str, key: &str| out.push((format!("[{section}]"), key.to_owned()));
    let extra = |section: &str| spec.directives.get(section).cloned().unwrap_or_default();
    for key in ["Description", "After", "X-Baton-Service", "X-Baton-Version"] {
        push("Unit", key);
    }
    for d in extra("Unit") {
        push("Unit", &d.key);
    }
    push("Service", "Type");
    push("Service", "ExecStart");
    if spec.user.is_some() {
        push("Service", "User");
    }
    if spec.group.is_some() {
        push("Service", "Group");
    }
    if spec.working_directory.is_some() {
        push("Service", "WorkingDirectory");
    }
    for _ in &spec.environment {
        push("Service", "Environment");
    }
    for key in ["Restart", "TimeoutStopSec", "KillMode", "KillSignal"] {
        push("Service", key);
    }
    for d in extra("Service") {
        push("Service", &d.key);
    }
    push("Install", "WantedBy");
    for d in extra("Install") {
        push("Install", &d.key);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse(&bytes);
    }

    #[test]
    fn arbitrary_json_never_panics(value in any_json()) {
        let _ = parse(value.to_string().as_bytes());
    }

    #[test]
    fn accepted_specs_render_exactly_the_intended_directives(doc in spec_json()) {
        let text = doc.to_string();
        match parse(text.as_bytes()) {
            Ok(spec) => {
                let unit = render(&spec).expect("an accepted spec renders");
                prop_assert_eq!(directive_lines(&unit), intended(&spec), "{}", unit);
            }
            Err(e) => {
                // Every refusal names a field and a rule.
                let msg = e.to_string();
                prop_assert!(msg.contains(": ") && !e.field.is_empty(), "{}", msg);
            }
        }
    }
}

#[test]
fn the_generator_reaches_accepted_specs() {
    // Guard against a generator that only ever produces refusals (then the property above
    // would prove nothing): a plain spec from the same shape is accepted.
    let doc = json!({"name": "app", "version": "v1", "exec_start": ["/bin/prog", "a b"], "environment": {"A": "$x"},
        "directives": {"Service": {"LimitNOFILE": "1024", "ExecStartPre": ["/bin/true", "/bin/echo 5%"]}}});
    let spec = parse(doc.to_string().as_bytes()).expect("accepted");
    let unit = render(&spec).expect("renders");
    assert_eq!(directive_lines(&unit), intended(&spec));
    let counts: BTreeMap<_, usize> = directive_lines(&unit).into_iter().fold(BTreeMap::new(), |mut m, (_, k)| {
        *m.entry(k).or_default() += 1;
        m
    });
    assert_eq!(counts["ExecStartPre"], 2);
}
