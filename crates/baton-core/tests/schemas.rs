//! The committed JSON Schemas in `schemas/` must match the Rust types; `make schemas` (which
//! sets BATON_UPDATE_SCHEMAS=1) rewrites them, and this test fails on drift.

use std::path::PathBuf;

use baton_core::spec::RawSpec;
use baton_core::RunResult;

fn check(file: &str, schema: schemars::Schema) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../schemas").join(file);
    let mut text = serde_json::to_string_pretty(&schema).expect("serialise");
    text.push('\n');
    if std::env::var_os("BATON_UPDATE_SCHEMAS").is_some() {
        std::fs::write(&path, &text).expect("write schema");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == text,
        "{} is out of date with the Rust types: run `make schemas` and commit the result",
        path.display()
    );
}

#[test]
fn service_schema_is_current() {
    check("service.schema.json", schemars::schema_for!(RawSpec));
}

#[test]
fn result_schema_is_current() {
    check("result.schema.json", schemars::schema_for!(RunResult));
}
