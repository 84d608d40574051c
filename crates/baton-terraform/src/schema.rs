//! The schema of `baton_service` (and the provider's empty configuration block): one attribute
//! per field of the contract's spec, `health` a single nested attribute, `environment` a map,
//! `directives` a map of maps; `id`, `unit` and `unit_text` computed.

use std::collections::HashMap;

use tf_provider::schema::{Attribute, AttributeConstraint, AttributeType, Block, Description, Schema};

/// The version of the resource's schema (recorded in the state).
pub const SCHEMA_VERSION: i64 = 1;

fn attr(t: AttributeType, c: AttributeConstraint, doc: &str) -> Attribute {
    Attribute { attr_type: t, description: Description::markdown(doc), constraint: c, ..Attribute::default() }
}

fn string() -> AttributeType {
    AttributeType::String
}

/// The `health` nested attribute's attributes.
fn health_attributes() -> HashMap<String, Attribute> {
    use AttributeConstraint::{Optional, OptionalComputed};
    use AttributeType::{Bool, Number};
    [
        ("http", attr(string(), Optional, "HTTP path probed with `GET` (2xx or 3xx is healthy), e.g. `/health`.")),
        (
            "tcp",
            attr(
                Bool,
                OptionalComputed,
                "Probe with a TCP connect to `port`. Defaults to true when `port` is set and `http` is not.",
            ),
        ),
        ("timeout_sec", attr(Number, OptionalComputed, "How long the new release may take to become ready (1–3600). Defaults to 30.")),
        ("interval_ms", attr(Number, OptionalComputed, "Time between probes, in milliseconds (10–60000). Defaults to 200.")),
        (
            "observe_sec",
            attr(
                Number,
                OptionalComputed,
                "Time both releases run while the new one must stay healthy before the old one is stopped (0–3600). Defaults to 0.",
            ),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// The schema of `baton_service`.
pub fn service() -> Schema {
    use AttributeConstraint::{Computed, Optional, OptionalComputed, Required};
    use AttributeType::{Bool, List, Map, Number};
    let attributes: HashMap<String, Attribute> = [
        ("id", attr(string(), Computed, "The service's name.")),
        (
            "name",
            attr(
                string(),
                Required,
                "The service, `^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`. Its releases are the units `<name>-<version>.service`. Changing it replaces the resource.",
            ),
        ),
        (
            "version",
            attr(
                string(),
                Required,
                "The release to be active, same charset as `name`. Changing it is an in-place update carried out as a zero-downtime handover.",
            ),
        ),
        (
            "exec_start",
            attr(
                List(Box::new(string())),
                Required,
                "argv of the release; the first item is an absolute path. Quoted for systemd: no argument can add a directive or expand `$` or `%`.",
            ),
        ),
        (
            "port",
            attr(
                Number,
                Optional,
                "The SO_REUSEPORT port (1–65535): enables the listener check and a default TCP probe.",
            ),
        ),
        (
            "health",
            attr(
                AttributeType::AttributeSingle(health_attributes()),
                Optional,
                "Readiness and health probing, e.g. `{ tcp = true, timeout_sec = 20 }`.",
            ),
        ),
        (
            "service_type",
            attr(string(), OptionalComputed, "systemd `Type=`: `exec`, `simple` or `notify`. Defaults to `exec`."),
        ),
        ("user", attr(string(), Optional, "systemd `User=`: a name or a numeric id.")),
        ("group", attr(string(), Optional, "systemd `Group=`: a name or a numeric id.")),
        ("working_directory", attr(string(), Optional, "systemd `WorkingDirectory=`, an absolute path.")),
        (
            "environment",
            attr(
                Map(Box::new(string())),
                Optional,
                "Environment variables; keys `^[A-Za-z_][A-Za-z0-9_]*$`, values escaped.",
            ),
        ),
        (
            "timeout_stop_sec",
            attr(Number, OptionalComputed, "`TimeoutStopSec=` of every release (1–86400). Defaults to 30."),
        ),
        (
            "restart",
            attr(
                string(),
                OptionalComputed,
                "`Restart=`: `no`, `always`, `on-success`, `on-failure`, `on-abnormal`, `on-abort` or `on-watchdog`. Defaults to `always`.",
            ),
        ),
        (
            "directives",
            attr(
                Map(Box::new(Map(Box::new(string())))),
                Optional,
                "Extra unit directives: section (`Unit`, `Service` or `Install`) → key → value, e.g. `{ Service = { LimitNOFILE = \"65536\" } }`.",
            ),
        ),
        ("template", attr(string(), Optional, "Absolute path of a custom minijinja template replacing the built-in one.")),
        (
            "state",
            attr(
                string(),
                OptionalComputed,
                "`started` (exactly `version` active) or `stopped` (every release stopped, files kept). Defaults to `started`. Destroying the resource removes the service.",
            ),
        ),
        ("enabled", attr(Bool, OptionalComputed, "Whether the release is enabled for boot. Defaults to true.")),
        ("keep", attr(Number, OptionalComputed, "Inactive releases kept on disk for rollback (0–100). Defaults to 2.")),
        (
            "migrate_requests",
            attr(
                Bool,
                OptionalComputed,
                "Ensure `net.ipv4.tcp_migrate_req=1` before an old release is stopped. Defaults to true.",
            ),
        ),
        (
            "unit_dir",
            attr(
                string(),
                OptionalComputed,
                "Where unit files live. Defaults to `/etc/systemd/system`. Changing it replaces the resource.",
            ),
        ),
        (
            "unit",
            attr(string(), Computed, "The active unit, e.g. `web-v2.service`; null when the service is stopped."),
        ),
        (
            "unit_text",
            attr(
                string(),
                Computed,
                "The unit file of the release `version` as on disk; a unit edited by hand shows here as drift.",
            ),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    Schema {
        version: SCHEMA_VERSION,
        block: Block {
            version: SCHEMA_VERSION,
            attributes,
            description: Description::markdown(
                "A service whose releases run as systemd units `<name>-<version>.service`. A change of `version` \
                 (or of anything in the unit) is applied in place as a zero-downtime handover: the new release \
                 starts beside the old one on the same SO_REUSEPORT port, must become ready, then systemd stops \
                 the old one.",
            ),
            ..Block::default()
        },
    }
}

/// The provider's configuration: none.
pub fn provider() -> Schema {
    Schema {
        version: 1,
        block: Block {
            version: 1,
            description: Description::markdown(
                "baton: zero-downtime version handovers of SO_REUSEPORT services under the local systemd. \
                 The provider has no settings: it drives the systemd of the machine Terraform runs on.",
            ),
            ..Block::default()
        },
    }
}

/// The schema of `provider_meta "baton"`: none (Terraform then sends an empty value).
pub fn provider_meta() -> Schema {
    Schema { version: 1, block: Block { version: 1, description: Description::plain(""), ..Block::default() } }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every attribute of the schema is documented in `docs/resources/service.md`.
    #[test]
    fn every_attribute_is_documented() {
        let doc_path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../plugins/terraform/docs/resources/service.md");
        let doc = std::fs::read_to_string(doc_path).expect("docs/resources/service.md");
        let schema = service();
        let mut names: Vec<String> = schema.block.attributes.keys().cloned().collect();
        names.extend(health_attributes().keys().map(|k| format!("health.{k}")));
        for name in names {
            let short = name.rsplit('.').next().unwrap_or(&name);
            assert!(doc.contains(&format!("`{short}`")), "{name} is not documented in {doc_path}");
        }
    }
}
