//! The generated protocol code (see build.rs) and the conversions between it and the
//! `tf-provider` types the resource uses: dynamic values, diagnostics, attribute paths and
//! schemas.
//!
//! Schemas are converted here rather than by tf-provider: it sets both `type` and `nested_type`
//! on a nested attribute, which Terraform rejects ("Type and NestedType cannot both be set"), so
//! `health = { ... }` could not be a nested attribute through it.

use tf_provider::schema::{Attribute, AttributeConstraint, AttributeType, Block, Schema, StringKind};
use tf_provider::{AttributePath, AttributePathStep, Diagnostics};

use serde::de::DeserializeOwned;
use serde::Serialize;

/// go-plugin's services: broker, controller, stdio.
#[allow(missing_debug_implementations, unreachable_pub, dead_code, clippy::all, clippy::pedantic)]
pub mod plugin {
    tonic::include_proto!("plugin");
}

/// Terraform's plugin protocol 6.
#[allow(missing_debug_implementations, unreachable_pub, dead_code, clippy::all, clippy::pedantic)]
pub mod tfplugin6 {
    tonic::include_proto!("tfplugin6");
}

use tfplugin6 as tf;

/// MessagePack's nil: a null object.
const NIL: [u8; 1] = [0xc0];

/// Decodes an object (MessagePack, or JSON for a raw state); `None` for null.
pub fn decode<T: DeserializeOwned>(v: Option<&tf::DynamicValue>) -> Result<Option<T>, String> {
    let Some(v) = v else {
        return Ok(None);
    };
    if !v.msgpack.is_empty() {
        if v.msgpack == NIL {
            return Ok(None);
        }
        return rmp_serde::from_slice(&v.msgpack).map(Some).map_err(|e| format!("cannot decode the value: {e}"));
    }
    if v.json.is_empty() || v.json == b"null" {
        return Ok(None);
    }
    serde_json::from_slice(&v.json).map(Some).map_err(|e| format!("cannot decode the value: {e}"))
}

/// Encodes an object (null for `None`).
pub fn encode<T: Serialize>(s: Option<&T>) -> Result<tf::DynamicValue, String> {
    let msgpack = match s {
        None => NIL.to_vec(),
        Some(s) => rmp_serde::to_vec_named(s).map_err(|e| format!("cannot encode the value: {e}"))?,
    };
    Ok(tf::DynamicValue { msgpack, json: Vec::new() })
}

/// An attribute path into the protocol's.
pub fn path(p: AttributePath) -> tf::AttributePath {
    use tf::attribute_path::step::Selector;
    tf::AttributePath {
        steps: p
            .steps
            .into_iter()
            .map(|s| tf::attribute_path::Step {
                selector: Some(match s {
                    AttributePathStep::Attribute(a) => Selector::AttributeName(a.into_owned()),
                    AttributePathStep::Key(k) => Selector::ElementKeyString(k.into_owned()),
                    AttributePathStep::Index(i) => Selector::ElementKeyInt(i),
                }),
            })
            .collect(),
    }
}

/// Diagnostics into the protocol's, errors first.
pub fn diagnostics(d: Diagnostics) -> Vec<tf::Diagnostic> {
    use tf::diagnostic::Severity;
    let convert = |list: Vec<tf_provider::Diagnostic>, severity: Severity| {
        list.into_iter().map(move |d| tf::Diagnostic {
            severity: severity as i32,
            summary: d.summary.into_owned(),
            detail: d.detail.into_owned(),
            attribute: (!d.attribute.steps.is_empty()).then(|| path(d.attribute)),
        })
    };
    convert(d.errors, Severity::Error).chain(convert(d.warnings, Severity::Warning)).collect()
}

fn kind(k: &StringKind) -> i32 {
    match k {
        StringKind::Plain => tf::StringKind::Plain as i32,
        StringKind::Markdown => tf::StringKind::Markdown as i32,
    }
}

fn attributes<'a>(attrs: impl IntoIterator<Item = (&'a String, &'a Attribute)>) -> Vec<tf::schema::Attribute> {
    use tf::schema::object::NestingMode;
    let mut out: Vec<tf::schema::Attribute> = attrs
        .into_iter()
        .map(|(name, a)| {
            let nested = match &a.attr_type {
                AttributeType::AttributeSingle(inner) => Some((NestingMode::Single, inner)),
                AttributeType::AttributeList(inner) => Some((NestingMode::List, inner)),
                AttributeType::AttributeSet(inner) => Some((NestingMode::Set, inner)),
                AttributeType::AttributeMap(inner) => Some((NestingMode::Map, inner)),
                _ => None,
            };
            #[allow(deprecated)]
            let nested_type = nested.map(|(mode, inner)| tf::schema::Object {
                attributes: attributes(inner),
                nesting: mode as i32,
                min_items: 0,
                max_items: 0,
            });
            tf::schema::Attribute {
                name: name.clone(),
                // A nested attribute has its type in `nested_type` only.
                r#type: if nested_type.is_some() { Vec::new() } else { a.attr_type.to_string().into_bytes() },
                nested_type,
                description: a.description.content.clone(),
                required: a.constraint == AttributeConstraint::Required,
                optional: matches!(a.constraint, AttributeConstraint::Optional | AttributeConstraint::OptionalComputed),
                computed: matches!(a.constraint, AttributeConstraint::Computed | AttributeConstraint::OptionalComputed),
                sensitive: a.sensitive,
                description_kind: kind(&a.description.kind),
                deprecated: a.deprecated,
            }
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

fn block(b: &Block) -> tf::schema::Block {
    tf::schema::Block {
        version: b.version,
        attributes: attributes(&b.attributes),
        block_types: nested_blocks(b),
        description: b.description.content.clone(),
        description_kind: kind(&b.description.kind),
        deprecated: b.deprecated,
    }
}

/// The nested blocks of `b` (the provider's `ssh`): each a single, optional block.
fn nested_blocks(b: &Block) -> Vec<tf::schema::NestedBlock> {
    use tf::schema::nested_block::NestingMode;
    use tf_provider::schema::NestedBlock;
    let mut out: Vec<tf::schema::NestedBlock> = b
        .blocks
        .iter()
        .map(|(name, nested)| {
            let (mode, inner) = match nested {
                NestedBlock::Single(inner) | NestedBlock::Group(inner) => (NestingMode::Single, inner),
                NestedBlock::List(inner) | NestedBlock::Optional(inner) => (NestingMode::List, inner),
                NestedBlock::Set(inner) => (NestingMode::Set, inner),
                NestedBlock::Map(inner) => (NestingMode::Map, inner),
            };
            tf::schema::NestedBlock {
                type_name: name.clone(),
                block: Some(block(inner)),
                nesting: mode as i32,
                min_items: 0,
                max_items: 0,
            }
        })
        .collect();
    out.sort_by(|a, b| a.type_name.cmp(&b.type_name));
    out
}

/// A schema into the protocol's (attributes, and nested blocks only in the provider's block).
pub fn schema(s: &Schema) -> tf::Schema {
    tf::Schema { version: s.version, block: Some(block(&s.block)) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Service;
    use tf_provider::value::Value;

    #[test]
    fn values_round_trip_through_messagepack() {
        let s = Service {
            name: Value::Value("web".to_owned()),
            version: Value::Unknown,
            exec_start: Value::Value(vec![Value::Value("/bin/x".to_owned()), Value::Unknown]),
            port: Value::Value(8080),
            environment: Value::Value([("A".to_owned(), Value::Value("b".to_owned()))].into()),
            ..Service::default()
        };
        let v = encode(Some(&s)).expect("encodes");
        assert_eq!(decode(Some(&v)).expect("decodes"), Some(s));
        assert_eq!(decode::<Service>(Some(&encode::<Service>(None).expect("null"))).expect("decodes"), None);
        let json = tf::DynamicValue { msgpack: Vec::new(), json: br#"{"name":"web","port":1}"#.to_vec() };
        let from_json: Service = decode(Some(&json)).expect("decodes").expect("object");
        assert_eq!(from_json.port, Value::Value(1));
        assert_eq!(from_json.unit, Value::Null, "attributes missing from an old state are null");
    }

    #[test]
    fn nested_attribute_has_no_type() {
        let s = schema(&crate::schema::service());
        let attrs = s.block.expect("block").attributes;
        let health = attrs.iter().find(|a| a.name == "health").expect("health");
        assert!(health.r#type.is_empty(), "a nested attribute carries its type in nested_type only");
        let nested = health.nested_type.as_ref().expect("nested");
        assert_eq!(nested.nesting, tf::schema::object::NestingMode::Single as i32);
        assert!(nested.attributes.iter().any(|a| a.name == "timeout_sec" && a.r#type == b"\"number\""));
        let env = attrs.iter().find(|a| a.name == "environment").expect("environment");
        assert_eq!(env.r#type, br#"["map","string"]"#);
        let directives = attrs.iter().find(|a| a.name == "directives").expect("directives");
        assert_eq!(directives.r#type, br#"["map",["map","string"]]"#);
    }
}
