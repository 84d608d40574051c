//! The schemas of the resource `baton_service` (one attribute per field of the contract's spec,
//! `health` a single nested attribute, `environment` a map, `directives` a map of maps; `id`,
//! `unit` and `unit_text` computed), of the read-only data source `baton_service`, and the
//! provider's empty configuration block. Their descriptions are the docs' "Schema" sections
//! (see `docs.rs`).

use std::collections::HashMap;

use std::fmt::Display;
use std::ops::RangeInclusive;

use baton_core::spec::defaults as d;
use tf_provider::schema::{Attribute, AttributeConstraint, AttributeType, Block, Description, NestedBlock, Schema};

/// The version of the resource's schema (recorded in the state).
pub const SCHEMA_VERSION: i64 = 1;

fn attr(t: AttributeType, c: AttributeConstraint, doc: &str) -> Attribute {
    Attribute { attr_type: t, description: Description::markdown(doc), constraint: c, ..Attribute::default() }
}

/// A range of the spec's bounds as the descriptions write it: `1–3600`.
fn range<T: Display>(r: &RangeInclusive<T>) -> String {
    format!("{}–{}", r.start(), r.end())
}

fn string() -> AttributeType {
    AttributeType::String
}

/// The `health` nested attribute's attributes.
pub(crate) fn health_attributes() -> HashMap<String, Attribute> {
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
        ("timeout_sec", attr(Number, OptionalComputed, &format!("How long the new release may take to become ready ({}). Defaults to {}.", range(&d::HEALTH_TIMEOUT_SEC_RANGE), d::HEALTH_TIMEOUT_SEC))),
        ("interval_ms", attr(Number, OptionalComputed, &format!("Time between probes, in milliseconds ({}). Defaults to {}.", range(&d::HEALTH_INTERVAL_MS_RANGE), d::HEALTH_INTERVAL_MS))),
        (
            "observe_sec",
            attr(
                Number,
                OptionalComputed,
                &format!("Time both releases run while the new one must stay healthy before the old one is stopped ({}). Defaults to {}.", range(&d::HEALTH_OBSERVE_SEC_RANGE), d::HEALTH_OBSERVE_SEC),
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
                "The service, `^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`. Its releases are the units `<name>-<version>.service`. Changing it replaces the resource (it is another service).",
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
                "argv of the release; the first item is an absolute path. Every argument is quoted for systemd: none can add a directive or expand `$` or `%`.",
            ),
        ),
        (
            "port",
            attr(
                Number,
                Optional,
                &format!("The SO_REUSEPORT port ({}): enables the check that the new release holds a listening socket on it, and a default TCP probe.", range(&d::PORT_RANGE)),
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
            attr(string(), OptionalComputed, &format!("systemd `Type=`: `exec`, `simple` or `notify` (with `notify`, `READY=1` is part of readiness). Defaults to `{}`.", d::SERVICE_TYPE.as_str())),
        ),
        ("user", attr(string(), Optional, "systemd `User=`: a name or a numeric id. The old and the new release must run as the same user to share the port.")),
        ("group", attr(string(), Optional, "systemd `Group=`: a name or a numeric id.")),
        ("working_directory", attr(string(), Optional, "systemd `WorkingDirectory=`, an absolute path.")),
        (
            "environment",
            attr(
                Map(Box::new(string())),
                Optional,
                "Environment variables; keys `^[A-Za-z_][A-Za-z0-9_]*$`, values escaped. They are part of the unit file, which any local user can read, and of `unit_text`: put secrets in `secret_environment` instead.",
            ),
        ),
        (
            "secret_environment",
            Attribute {
                sensitive: true,
                ..attr(
                    Map(Box::new(string())),
                    Optional,
                    "Environment variables whose values are secret (same key rules as `environment`, no key in both). Sensitive: plans show `(sensitive value)`. The values are written only to a root-owned 0600 file, `<unit_dir>/baton-secrets/<name>-<version>.service.env`, that the unit names with `EnvironmentFile=`: never to the unit (so never to `unit_text`), `systemctl show`, diagnostics or logs. A changed value restarts the release in place. A file changed or removed by hand on the host shows in the next plan as a change of `secret_environment` (compared by SHA-256 on the host; the values never leave it). Use it, not `environment`, for secrets: `environment` values are part of the unit and of `unit_text`, even when marked `sensitive()`.",
                )
            },
        ),
        (
            "timeout_stop_sec",
            attr(Number, OptionalComputed, &format!("`TimeoutStopSec=` of every release ({}). Defaults to {}.", range(&d::TIMEOUT_STOP_SEC_RANGE), d::TIMEOUT_STOP_SEC)),
        ),
        (
            "restart",
            attr(
                string(),
                OptionalComputed,
                &format!("`Restart=`: `no`, `always`, `on-success`, `on-failure`, `on-abnormal`, `on-abort` or `on-watchdog`. Defaults to `{}`.", d::RESTART),
            ),
        ),
        (
            "directives",
            attr(
                Map(Box::new(Map(Box::new(string())))),
                Optional,
                "Extra unit directives: section (`Unit`, `Service` or `Install`) → key → value, e.g. `{ Service = { LimitNOFILE = \"65536\" } }`. Values are single lines, `%` is escaped (and `$` in `Exec*` keys); keys baton renders itself are refused. A key repeated in the unit (the JSON spec's list form) cannot be written in a map: use a custom `template` for that.",
            ),
        ),
        ("template", attr(string(), Optional, "Absolute path of a custom minijinja template replacing the built-in one (same escaped context; it must keep the `X-Baton-Service`/`X-Baton-Version` lines).")),
        (
            "state",
            attr(
                string(),
                OptionalComputed,
                &format!("`started` (exactly `version` active, every other release stopped) or `stopped` (every release stopped, files kept). Defaults to `{}`. There is no `absent`: destroying the resource removes the service.", d::STATE.as_str()),
            ),
        ),
        ("enabled", attr(Bool, OptionalComputed, &format!("Whether the release is enabled for boot (every other release is disabled). Defaults to {}.", d::ENABLED))),
        ("keep", attr(Number, OptionalComputed, &format!("Inactive releases kept on disk for rollback ({}); older ones are removed. Defaults to {}.", range(&d::KEEP_RANGE), d::KEEP))),
        (
            "migrate_requests",
            attr(
                Bool,
                OptionalComputed,
                &format!("Ensure `net.ipv4.tcp_migrate_req=1` before an old release is stopped, so connections queued on its listener move to the new one instead of being reset. Defaults to {}.", d::MIGRATE_REQUESTS),
            ),
        ),
        (
            "unit_dir",
            attr(
                string(),
                OptionalComputed,
                &format!("Where unit files live. Defaults to `{}`. Changing it replaces the resource.", d::UNIT_DIR),
            ),
        ),
        (
            "listen_mode",
            attr(
                string(),
                OptionalComputed,
                &format!("How releases get their listener: `reuseport` (each release binds `port` with SO_REUSEPORT) or `socket` (baton manages `<name>.socket`; systemd holds the listening socket across releases and passes it with `LISTEN_FDS`; needs `port`; no queued connection is lost on any kernel). Defaults to `{}`.", d::LISTEN_MODE.as_str()),
            ),
        ),
        (
            "host",
            attr(
                string(),
                Optional,
                "The host to manage over SSH: an address, a name (`~/.ssh/config` applies) or `user@host`; the provider's `ssh` block holds the connection settings, and `baton` runs there with the spec on stdin. Unset: the machine Terraform runs on. Changing it replaces the resource (it is another service).",
            ),
        ),
        ("bind_address", attr(string(), Optional, "With `listen_mode = \"socket\"`: the IP address the shared socket listens on (default: every address).")),
        (
            "unit_naming",
            attr(
                string(),
                OptionalComputed,
                &format!("How release units are named: `per-version` (`<name>-<version>.service`, one unit file per release) or `instance` (`<name>@<version>.service`: the template `<name>@.service` holds only a description, baton's mark and `[Install]`; each release's drop-in `<name>@<version>.service.d/baton.conf` pins everything of the release, so editing the template changes no running or kept release; `version` must be a valid instance name). Switching is a handover. Defaults to `{}`.", d::UNIT_NAMING.as_str()),
            ),
        ),
        (
            "unit",
            attr(
                string(),
                Computed,
                "The active unit, e.g. `web-v2.service` (`web@v2.service` with `unit_naming = \"instance\"`); null when the service is stopped.",
            ),
        ),
        (
            "unit_text",
            attr(
                string(),
                Computed,
                "The unit file of the release `version`, as on disk (with `unit_naming = \"instance\"`: its drop-in, followed by the template when the template is not the one baton writes). A unit or template edited by hand shows here as drift.",
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

/// The schema of the `baton_service` data source.
pub fn service_data() -> Schema {
    use AttributeConstraint::{Computed, Optional, OptionalComputed, Required};
    use AttributeType::{Bool, List, Number};
    let attributes: HashMap<String, Attribute> = [
        ("id", attr(string(), Computed, "The service's name.")),
        ("name", attr(string(), Required, "The service, `^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`.")),
        (
            "unit_dir",
            attr(string(), OptionalComputed, "Where its unit files live. Defaults to `/etc/systemd/system`."),
        ),
        (
            "host",
            attr(
                string(),
                Optional,
                "The host to read over SSH, as the resource's `host`: an address, a name (`~/.ssh/config` applies) or `user@host`, with the provider's `ssh` settings; `baton status --json` runs there (it reads only). Unset: the machine Terraform runs on.",
            ),
        ),
        (
            "version",
            attr(
                string(),
                Computed,
                "The active release: the running one that became active last (as baton counts it); null when none runs.",
            ),
        ),
        (
            "state",
            attr(string(), Computed, "`started` when a release runs, `stopped` when releases are on disk but none runs."),
        ),
        ("unit", attr(string(), Computed, "The active release's unit, e.g. `web-v2.service`; null when none runs.")),
        (
            "enabled",
            attr(Bool, Computed, "Whether the active release is enabled for boot; null when none runs."),
        ),
        ("main_pid", attr(Number, Computed, "The active release's main PID (systemd's `MainPID`); null when none runs.")),
        (
            "releases",
            attr(
                List(Box::new(string())),
                Computed,
                "The version of every release on disk (the active one, and the ones kept for rollback), in the order of their unit names.",
            ),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    Schema {
        version: 1,
        block: Block {
            version: 1,
            attributes,
            description: Description::markdown(
                "A baton service as it is now, read from its unit files and from systemd (what `baton status` shows): \
                 the active release, its unit, whether it is enabled for boot, its main PID, and every release on disk. \
                 A service with no release on disk is an error.",
            ),
            ..Block::default()
        },
    }
}

/// The provider's configuration: the `ssh` block (connection defaults for every `baton_service`
/// with a `host`) and where `baton` comes from on the hosts.
pub fn provider() -> Schema {
    use AttributeConstraint::Optional;
    use AttributeType::{Bool, Number};
    let ssh: HashMap<String, Attribute> = [
        ("user", attr(string(), Optional, "The login on every host. Unset: what `~/.ssh/config` says, else the local user. baton needs root on the host: log in as root.")),
        ("port", attr(Number, Optional, "The SSH port (1–65535). Unset: `~/.ssh/config`, else 22.")),
        (
            "private_key",
            Attribute { sensitive: true, ..attr(string(), Optional, "A private key as text (PEM or OpenSSH format), e.g. `file(\"~/.ssh/id_ed25519\")`. It is written to a 0600 file in a private directory for the run, and only that key is offered (`IdentitiesOnly`). Unset: the agent and the keys of `~/.ssh/config`.") },
        ),
        ("agent", attr(Bool, Optional, "Whether ssh may use the SSH agent (`SSH_AUTH_SOCK`). Defaults to true.")),
        (
            "known_hosts",
            attr(string(), Optional, "The host keys to trust, as `known_hosts` text (e.g. `file(\"known_hosts\")`, or lines from `ssh-keyscan` verified out of band). Unset: the user's `~/.ssh/known_hosts`. Host keys are always checked strictly: an unknown or changed key fails every resource of that host, naming it."),
        ),
        ("bastion", attr(string(), Optional, "A jump host, `[user@]host[:port]` (ssh's ProxyJump). The hop to it uses the same settings: `private_key`, `known_hosts` (which must hold the bastion's key too), `user` (unless given here), `agent` and `timeout_sec`; `~/.ssh/config` still applies to what they leave unset.")),
        ("timeout_sec", attr(Number, Optional, &format!("The connect timeout in seconds (1–3600). Defaults to {}.", crate::remote::ssh::DEFAULT_TIMEOUT_SEC))),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let attributes: HashMap<String, Attribute> = [
        (
            "baton_path",
            attr(string(), Optional, "A preinstalled `baton` on every host, e.g. `/usr/bin/baton`; it must be the provider's version. Unset: the provider installs its own `baton` under `install_dir` when it is missing or another version."),
        ),
        (
            "baton_binary",
            attr(string(), Optional, "The local `baton` binary the provider installs on hosts (e.g. `target/x86_64-unknown-linux-gnu/dist/baton` from `make dist`, which runs on every x86_64 Linux with glibc 2.17 or newer). Unset: the `baton` next to the provider's executable."),
        ),
        (
            "install_dir",
            attr(string(), Optional, &format!("Where the provider installs `baton` on hosts, as `<install_dir>/<version>/baton`: uploaded to a temporary file there, checked with `sha256sum`, then renamed into place. Defaults to `{}`.", crate::remote::ssh::DEFAULT_INSTALL_DIR)),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let ssh_block = Block {
        version: 1,
        attributes: ssh,
        description: Description::markdown(
            "How the provider reaches hosts: the system `ssh`, one multiplexed connection per host for the whole run (so `~/.ssh/config`, the agent and ProxyJump work as in a shell).",
        ),
        ..Block::default()
    };
    Schema {
        version: 1,
        block: Block {
            version: 1,
            attributes,
            blocks: [("ssh".to_owned(), NestedBlock::Single(ssh_block))].into(),
            description: Description::markdown(
                "baton: zero-downtime version handovers of SO_REUSEPORT services under systemd. A `baton_service` \
                 without `host` drives the systemd of the machine Terraform runs on; with `host`, the provider \
                 runs `baton` on that host over SSH (the `ssh` block), so one provider block serves a fleet.",
            ),
            ..Block::default()
        },
    }
}

/// The schema of `provider_meta "baton"`: none (Terraform then sends an empty value).
pub fn provider_meta() -> Schema {
    Schema { version: 1, block: Block { version: 1, description: Description::plain(""), ..Block::default() } }
}
