//! Instance units (`unit_naming: "instance"`): release `v2` of service `app` runs as
//! `app@v2.service`, loaded from the template `app@.service` and the release's drop-in
//! `app@v2.service.d/baton.conf`.
//!
//! The drop-in pins the release; the template holds nothing a release runs with, so an edit of
//! the template (by hand, or by baton for a later release) never changes a running or kept
//! release (systemd#19974: settings of a template reach every instance on the next
//! daemon-reload or restart). As checked against systemd 252 (`integration/tests/instance_units.rs`):
//! - **The drop-in** is the whole unit the spec renders (built-in or custom template), with a
//!   block of resets at the top of `[Service]`: `ExecStart=`, `Environment=`, `User=`, … assigned
//!   the empty string, which empties each list and sets the others back to systemd's default, so
//!   an `ExecStart=`, `Environment=` or `User=` added to the template by hand never reaches the
//!   release. Every setting the spec renders comes after them, and the drop-in, read after the
//!   template, wins. What no spec field renders (`Nice=` in a template edited by hand, say) is
//!   not pinned: systemd has no way to ignore a setting of the template. baton puts its own
//!   template back on every run, before it starts any release, with a daemon-reload when an
//!   instance is loaded; until then, a restart by hand would see such an edit. The drop-in
//!   carries the marks (`X-Baton-Service=`, `X-Baton-Version=`) like a
//!   per-version unit, so the release scan and the read-back treat both alike. Its `[Install]`
//!   section is the release's record only: `systemctl enable` reads `[Install]` from the
//!   template alone.
//! - **The template** holds `Description=`, the `X-Baton-Service=` mark (no version: it is no
//!   release) and `[Install]`, copied from the drop-in of the release written last, so that
//!   `systemctl enable app@v2.service` links `multi-user.target.wants/app@v2.service`. No
//!   `ExecStart=`: an instance without its drop-in (`systemctl start app@typo.service`) is
//!   refused by systemd ("has no ExecStart=") instead of running anything.
//! - Removing a release removes its drop-in and its empty `.d` directory; `absent` removes the
//!   template too.

use std::path::{Path, PathBuf};

use super::parse::{self, Line};
use super::{MARK_SERVICE, MARK_VERSION};

/// The file name of a release's drop-in in its `<unit>.d` directory.
pub(crate) const DROP_IN: &str = "baton.conf";

/// The settings of `[Service]` a drop-in resets (an empty assignment empties a list and sets
/// `User=`, `Group=` and `WorkingDirectory=` back to systemd's default), so that none of the
/// template's values reach the release: the lists, and the settings the spec renders only when
/// given (`User=` in a template would otherwise apply to a release that runs as root). The
/// settings the spec always renders (`Type=`, `Restart=`, `TimeoutStopSec=`, …) override the
/// template's by coming later.
const RESETS: &[&str] = &[
    "ExecStartPre",
    "ExecStart",
    "ExecStartPost",
    "ExecReload",
    "ExecStop",
    "ExecStopPost",
    "Environment",
    "EnvironmentFile",
    "User",
    "Group",
    "WorkingDirectory",
];

/// The comment that opens the reset block (also how a drop-in is recognised).
const RESET_COMMENT: &str =
    "# Pinned by baton: the lists below are emptied first, so nothing of the template reaches this release.";

/// Whether `unit` is an instance unit name (`<name>@<version>.service`).
pub(crate) fn is_instance(unit: &str) -> bool {
    unit.contains('@')
}

/// The drop-in of instance `unit` in `unit_dir`: `<unit_dir>/<unit>.d/baton.conf`.
pub(crate) fn drop_in_path(unit_dir: &Path, unit: &str) -> PathBuf {
    unit_dir.join(format!("{unit}.d")).join(DROP_IN)
}

/// The drop-in of a release from the unit text `unit` the spec renders: the reset block inserted
/// at the top of `[Service]` (a `[Service]` section is added when the unit has none).
pub(crate) fn drop_in(unit: &str) -> String {
    let mut block = String::from(RESET_COMMENT);
    block.push('\n');
    for key in RESETS {
        block.push_str(key);
        block.push_str("=\n");
    }
    let mut out = String::with_capacity(unit.len() + block.len());
    let mut inserted = false;
    for line in unit.split_inclusive('\n') {
        out.push_str(line);
        if !inserted && parse::line(line.trim_end_matches('\n')) == Line::Section("Service") {
            if !line.ends_with('\n') {
                out.push('\n');
            }
            out.push_str(&block);
            inserted = true;
        }
    }
    if !inserted {
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str("[Service]\n");
        out.push_str(&block);
    }
    out
}

/// Whether `text` is a release drop-in (it has the reset block).
pub(crate) fn is_drop_in(text: &str) -> bool {
    text.lines().any(|l| l == RESET_COMMENT)
}

/// The unit text a drop-in was made from (its reset block taken out): the inverse of
/// [`drop_in`], for the read-back.
pub(crate) fn without_resets(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut lines = text.split_inclusive('\n').peekable();
    while let Some(line) = lines.next() {
        if line.trim_end_matches('\n') == RESET_COMMENT {
            for key in RESETS {
                if lines.peek().is_some_and(|l| l.trim_end_matches('\n') == format!("{key}=")) {
                    lines.next();
                }
            }
            continue;
        }
        out.push_str(line);
    }
    out
}

/// The template `<service>@.service` for the release whose drop-in is `drop_in`: a description,
/// the service mark and the drop-in's `[Install]` section (see the module doc).
pub(crate) fn template(service: &str, drop_in: &str) -> String {
    let mut text = format!(
        "# Managed by baton: the template of the instance units of service {service} (unit_naming \"instance\").\n\
         # It holds no setting of a release: each {service}@<version>.service takes all of its settings from\n\
         # its drop-in {service}@<version>.service.d/{DROP_IN}, so editing this file changes no release.\n\
         # An instance without a drop-in has no ExecStart= and does not start.\n\
         [Unit]\n\
         Description={service} (baton instance template)\n\
         {MARK_SERVICE}={service}\n"
    );
    let install: Vec<_> = parse::directives(drop_in).filter(|d| d.section == "Install").collect();
    if !install.is_empty() {
        text.push_str("\n[Install]\n");
        for d in install {
            text.push_str(&format!("{}={}\n", d.key, d.value));
        }
    }
    text
}

/// What a read shows as the text of instance release `drop_in` of `service` (Terraform's
/// `unit_text`, `baton observe`): the drop-in, and when the template at `template_path` is not
/// the one baton writes for it (`on_disk`, None when missing), a comment naming the template and
/// then the template as it is, so that a hand edit of the template shows as drift, and the next
/// apply, which writes baton's template back, clears it.
pub(crate) fn observed_text(service: &str, drop_in: &str, template_path: &Path, on_disk: Option<&str>) -> String {
    if on_disk == Some(template(service, drop_in).as_str()) {
        return drop_in.to_owned();
    }
    let mut text = drop_in.to_owned();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    match on_disk {
        Some(found) => {
            text.push_str(&format!(
                "# {} differs from the template baton writes (an apply writes it back); it holds:\n",
                template_path.display()
            ));
            text.push_str(found);
            if !found.ends_with('\n') {
                text.push('\n');
            }
        }
        None => text.push_str(&format!(
            "# {} is missing (an apply writes it back): systemd cannot load this instance\n",
            template_path.display()
        )),
    }
    text
}

/// The service a template file is marked as baton's for: `X-Baton-Service=` in `[Unit]` and no
/// `X-Baton-Version=` (a template is no release).
pub(crate) fn template_owner(text: &str) -> Option<&str> {
    if parse::values(text, "Unit", MARK_VERSION).next().is_some() {
        return None;
    }
    parse::values(text, "Unit", MARK_SERVICE).last()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::parse as parse_spec;
    use crate::unit::render::render;

    fn spec(extra: &str) -> crate::spec::ServiceSpec {
        let json = format!(
            r#"{{"name":"app","version":"v2","exec_start":["/opt/app/bin/app","--port","8080"],"port":8080,
                "unit_naming":"instance","environment":{{"GREETING":"hello"}},"user":"app"{extra}}}"#
        );
        parse_spec(json.as_bytes()).expect("valid")
    }

    #[test]
    fn the_drop_in_snapshot() {
        let text = render(&spec(
            r#","secret_environment":{"TOKEN":"s3cret"},"directives":{"Install":{"Alias":"web@v2.service"}}"#,
        ))
        .expect("renders");
        insta::assert_snapshot!(text);
        assert!(is_drop_in(&text));
        assert!(!text.contains("s3cret"));
        assert_eq!(parse::read_marks(&text), Some(("app".to_owned(), "v2".to_owned())));
        // The resets come before the release's own values, in [Service].
        let execs: Vec<_> = parse::values(&text, "Service", "ExecStart").collect();
        assert_eq!(execs, ["", r#""/opt/app/bin/app" "--port" "8080""#]);
        assert!(text.contains("EnvironmentFile=/etc/systemd/system/baton-secrets/app@v2.service.env\n"), "{text}");
        // Read back as systemd reads it: the reset, then the release's own value.
        assert_eq!(parse::read_service_key(&text, "User").as_deref(), Some("app"));
        let root = render(&crate::spec::ServiceSpec { user: None, ..spec("") }).expect("renders");
        assert_eq!(parse::read_service_key(&root, "User"), None, "reset to the default: root");
    }

    #[test]
    fn the_template_snapshot() {
        let text = template(
            "app",
            &render(&spec(r#","directives":{"Install":{"Alias":"web@v2.service"}}"#)).expect("renders"),
        );
        insta::assert_snapshot!(text);
        assert_eq!(template_owner(&text), Some("app"));
        assert_eq!(parse::read_marks(&text), None, "a template is no release");
        assert_eq!(parse::values(&text, "Service", "ExecStart").count(), 0);
        assert_eq!(parse::values(&text, "Install", "WantedBy").collect::<Vec<_>>(), ["multi-user.target"]);
    }

    #[test]
    fn resets_come_out_again_and_every_release_setting_is_in_the_drop_in() {
        let s = spec("");
        let drop = render(&s).expect("renders");
        let per_version = crate::spec::ServiceSpec { unit_naming: crate::spec::UnitNaming::PerVersion, ..s.clone() };
        let full = render(&per_version).expect("renders").replace("app-v2.service", "app@v2.service");
        assert_eq!(without_resets(&drop), full);
        assert!(!is_drop_in(&full));
        // Nothing the release runs with is left to the template.
        let tmpl = template("app", &drop);
        for d in parse::directives(&tmpl) {
            assert!(matches!((d.section, d.key), ("Unit", "Description" | MARK_SERVICE) | ("Install", _)), "{d:?}");
        }
    }

    #[test]
    fn a_read_shows_a_template_that_is_not_batons_after_the_drop_in() {
        let drop = render(&spec("")).expect("renders");
        let path = Path::new("/u/app@.service");
        let ours = template("app", &drop);
        assert_eq!(observed_text("app", &drop, path, Some(&ours)), drop, "baton's template: the drop-in alone");
        let edited = format!("{ours}[Service]\nNice=7\n");
        let seen = observed_text("app", &drop, path, Some(&edited));
        assert_eq!(
            seen,
            format!("{drop}# /u/app@.service differs from the template baton writes (an apply writes it back); it holds:\n{edited}")
        );
        let missing = observed_text("app", &drop, path, None);
        assert!(
            missing.starts_with(&drop)
                && missing.ends_with(
                    "/u/app@.service is missing (an apply writes it back): systemd cannot load this instance\n"
                ),
            "{missing}"
        );
    }

    #[test]
    fn a_unit_without_service_section_gets_one() {
        let d = drop_in("[Unit]\nX-Baton-Service=a\nX-Baton-Version=b");
        assert!(d.starts_with("[Unit]\nX-Baton-Service=a\nX-Baton-Version=b\n[Service]\n"), "{d}");
        assert_eq!(without_resets(&d), "[Unit]\nX-Baton-Service=a\nX-Baton-Version=b\n[Service]\n");
    }

    #[test]
    fn paths_and_names() {
        assert_eq!(drop_in_path(Path::new("/u"), "app@v2.service"), Path::new("/u/app@v2.service.d/baton.conf"));
        assert!(is_instance("app@v2.service") && !is_instance("app-v2.service"));
        assert_eq!(template_owner("[Unit]\nX-Baton-Service=app\nX-Baton-Version=v1\n"), None);
        assert_eq!(template_owner("[Service]\nX-Baton-Service=app\n"), None);
    }
}
