//! The "Schema" sections of the provider's docs (`plugins/terraform/docs`), generated from the
//! provider's schemas in the layout of tfplugindocs (Required / Optional / Read-Only, then one
//! section per nested attribute), between markers in hand-written pages.
//!
//! `cargo test -p baton-terraform` fails when a page differs from its schema;
//! `BATON_UPDATE_DOCS=1 cargo test -p baton-terraform docs` rewrites the generated parts.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use tf_provider::schema::{Attribute, AttributeConstraint, AttributeType, Schema};

/// Opens the generated part of a page.
pub const BEGIN: &str = "<!-- BEGIN GENERATED SCHEMA: from the provider's schema; \
                         rewrite with `BATON_UPDATE_DOCS=1 cargo test -p baton-terraform docs`, do not edit -->";
/// Closes it.
pub const END: &str = "<!-- END GENERATED SCHEMA -->";

/// Every page with a generated part, relative to `plugins/terraform/docs`, and its schema.
pub fn pages() -> Vec<(&'static str, Schema)> {
    vec![
        ("index.md", crate::schema::provider()),
        ("resources/service.md", crate::schema::service()),
        ("data-sources/service.md", crate::schema::service_data()),
    ]
}

/// `plugins/terraform/docs` of this checkout.
pub fn docs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../plugins/terraform/docs")
}

/// tfplugindocs' name of a type.
fn type_name(t: &AttributeType) -> String {
    match t {
        AttributeType::String => "String".to_owned(),
        AttributeType::Number => "Number".to_owned(),
        AttributeType::Bool => "Boolean".to_owned(),
        AttributeType::List(inner) => format!("List of {}", type_name(inner)),
        AttributeType::Set(inner) => format!("Set of {}", type_name(inner)),
        AttributeType::Map(inner) => format!("Map of {}", type_name(inner)),
        AttributeType::Object(_) => "Object".to_owned(),
        AttributeType::Tuple(_) => "Tuple".to_owned(),
        AttributeType::AttributeSingle(_) => "Attributes".to_owned(),
        AttributeType::AttributeList(_) => "Attributes List".to_owned(),
        AttributeType::AttributeSet(_) => "Attributes Set".to_owned(),
        AttributeType::AttributeMap(_) => "Attributes Map".to_owned(),
        AttributeType::Any => "Dynamic".to_owned(),
    }
}

fn nested(t: &AttributeType) -> Option<&HashMap<String, Attribute>> {
    match t {
        AttributeType::AttributeSingle(a)
        | AttributeType::AttributeList(a)
        | AttributeType::AttributeSet(a)
        | AttributeType::AttributeMap(a) => Some(a),
        _ => None,
    }
}

/// The block inside a nested block.
fn nested_block(b: &tf_provider::schema::NestedBlock) -> &tf_provider::schema::Block {
    use tf_provider::schema::NestedBlock;
    match b {
        NestedBlock::Single(b)
        | NestedBlock::List(b)
        | NestedBlock::Set(b)
        | NestedBlock::Map(b)
        | NestedBlock::Group(b)
        | NestedBlock::Optional(b) => b,
    }
}

/// tfplugindocs' group of an attribute.
fn group_of(c: &AttributeConstraint) -> &'static str {
    match c {
        AttributeConstraint::Required => "Required",
        AttributeConstraint::Optional | AttributeConstraint::OptionalComputed => "Optional",
        AttributeConstraint::Computed => "Read-Only",
    }
}

/// The attributes of one level, grouped and sorted as tfplugindocs does; nested attributes are
/// queued as `(anchor path, name, attributes)` for their own sections.
fn level<'a>(
    out: &mut String,
    attrs: &'a HashMap<String, Attribute>,
    path: &str,
    heading: impl Fn(&str) -> String,
    queue: &mut Vec<(String, String, &'a HashMap<String, Attribute>)>,
) {
    let mut names: Vec<&String> = attrs.keys().collect();
    names.sort();
    for group in ["Required", "Optional", "Read-Only"] {
        let in_group: Vec<&&String> =
            names.iter().filter(|n| group_of(&attrs[n.as_str()].constraint) == group).collect();
        if in_group.is_empty() {
            continue;
        }
        let _ = write!(out, "{}\n\n", heading(group));
        for name in in_group {
            let a = &attrs[name.as_str()];
            let mut kind = type_name(&a.attr_type);
            if a.sensitive {
                kind.push_str(", Sensitive");
            }
            if a.deprecated {
                kind.push_str(", Deprecated");
            }
            let _ = write!(out, "- `{name}` ({kind}) {}", a.description.content.trim());
            if let Some(inner) = nested(&a.attr_type) {
                let anchor = format!("{path}--{name}");
                let _ = write!(out, " (see [below for nested schema](#nestedatt{anchor}))");
                queue.push((anchor, (*name).clone(), inner));
            }
            out.push('\n');
        }
        out.push('\n');
    }
}

/// The generated "Schema" section of `schema` (without the markers).
pub fn markdown(schema: &Schema) -> String {
    let mut out = String::from("## Schema\n\n");
    let mut queue = Vec::new();
    level(&mut out, &schema.block.attributes, "", |g| format!("### {g}"), &mut queue);
    // Nested blocks (the provider's `ssh`): listed, then each in its own section.
    let mut blocks: Vec<(&String, &tf_provider::schema::NestedBlock)> = schema.block.blocks.iter().collect();
    blocks.sort_by_key(|(name, _)| name.as_str());
    if !blocks.is_empty() {
        out.push_str(
            "### Blocks

",
        );
        for (name, nested) in &blocks {
            let _ = writeln!(
                out,
                "- `{name}` (Block, Optional) {} (see [below for nested schema](#nestedblock--{name}))",
                nested_block(nested).description.content.trim()
            );
        }
        out.push('\n');
        for (name, nested) in &blocks {
            let _ = write!(out, "<a id=\"nestedblock--{name}\"></a>\n### Nested Schema for `{name}`\n\n");
            let attrs = &nested_block(nested).attributes;
            level(&mut out, attrs, &format!("--{name}"), |g| format!("{g}:"), &mut queue);
        }
    }
    while !queue.is_empty() {
        let (anchor, name, attrs) = queue.remove(0);
        let _ = write!(out, "<a id=\"nestedatt{anchor}\"></a>\n### Nested Schema for `{name}`\n\n");
        let mut more = Vec::new();
        level(&mut out, attrs, &anchor, |g| format!("{g}:"), &mut more);
        queue.extend(more);
    }
    out.truncate(out.trim_end().len());
    out.push('\n');
    out
}

/// `page` with its generated part replaced by `generated`; an error when the markers are not
/// there exactly once, in order.
pub fn splice(page: &str, generated: &str) -> Result<String, String> {
    let (before, rest) = page.split_once(BEGIN).ok_or("the BEGIN GENERATED SCHEMA marker is missing")?;
    let (_, after) = rest.split_once(END).ok_or("the END GENERATED SCHEMA marker is missing")?;
    if after.contains(BEGIN) || after.contains(END) || before.contains(END) {
        return Err("the generated part's markers must appear exactly once, BEGIN before END".to_owned());
    }
    Ok(format!("{before}{BEGIN}\n{generated}{END}{after}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The docs' schema sections are the provider's schemas: a test fails on drift, and
    /// `BATON_UPDATE_DOCS=1` rewrites them.
    #[test]
    fn docs_schema_sections_match_the_provider() {
        let update = std::env::var_os("BATON_UPDATE_DOCS").is_some();
        let mut stale = Vec::new();
        for (page, schema) in pages() {
            let path = docs_dir().join(page);
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let want = splice(&text, &markdown(&schema)).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            if want != text {
                if update {
                    std::fs::write(&path, want).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                } else {
                    stale.push(path.display().to_string());
                }
            }
        }
        assert!(
            stale.is_empty(),
            "the schema sections of {stale:?} differ from the provider's schema; rewrite them with \
             `BATON_UPDATE_DOCS=1 cargo test -p baton-terraform docs` and commit the result"
        );
    }

    #[test]
    fn markdown_groups_sorts_and_links_nested_attributes() {
        let md = markdown(&crate::schema::service());
        let required = md.find("### Required").expect("required");
        let optional = md.find("### Optional").expect("optional");
        let read_only = md.find("### Read-Only").expect("read-only");
        assert!(required < optional && optional < read_only, "{md}");
        assert!(md.find("- `exec_start` (List of String)") < md.find("- `name` (String)"), "sorted: {md}");
        assert!(md.contains("- `directives` (Map of Map of String)"), "{md}");
        assert!(md.contains("- `enabled` (Boolean)"), "{md}");
        assert!(md.contains("(see [below for nested schema](#nestedatt--health))"), "{md}");
        assert!(
            md.contains("<a id=\"nestedatt--health\"></a>\n### Nested Schema for `health`\n\nOptional:\n\n"),
            "{md}"
        );
        // Every attribute, nested ones included, is listed once.
        let schema = crate::schema::service();
        for name in schema.block.attributes.keys().chain(crate::schema::health_attributes().keys()) {
            assert_eq!(md.matches(&format!("- `{name}` (")).count(), 1, "{name}: {md}");
        }
    }

    /// Every example file is shown verbatim on its page (the examples are what `terraform
    /// validate` checks in the end-to-end tests).
    #[test]
    fn every_example_is_on_its_page() {
        let examples = docs_dir().join("../examples");
        let pairs = [
            ("provider/provider.tf", "index.md"),
            ("provider/fleet.tf", "index.md"),
            ("provider/bastion.tf", "index.md"),
            ("resources/baton_service/import-remote.sh", "resources/service.md"),
            ("resources/baton_service/resource.tf", "resources/service.md"),
            ("resources/baton_service/import-by-string-id.tf", "resources/service.md"),
            ("resources/baton_service/import.sh", "resources/service.md"),
            ("data-sources/baton_service/data-source.tf", "data-sources/service.md"),
        ];
        for (example, page) in pairs {
            let example_text = std::fs::read_to_string(examples.join(example)).expect(example);
            let page_text = std::fs::read_to_string(docs_dir().join(page)).expect(page);
            assert!(page_text.contains(&example_text), "{page} does not show examples/{example} verbatim");
        }
    }

    #[test]
    fn splice_keeps_the_hand_written_parts() {
        let page = format!("intro\n\n{BEGIN}\nold\n{END}\n\nafter\n");
        assert_eq!(splice(&page, "new\n").expect("spliced"), format!("intro\n\n{BEGIN}\nnew\n{END}\n\nafter\n"));
        assert!(splice("no markers", "x").is_err());
        assert!(splice(&format!("{END}{BEGIN}{END}"), "x").is_err());
    }
}
