//! The shipped binaries (`make dist`) are portable and small: each needs no glibc symbol newer
//! than 2.17, the Ansible module is at most 2.5 MB and is the file the collection ships, and
//! they run in an older Debian userland (glibc 2.31) where a host-built binary fails to load.
//!
//! Nothing is skipped: without `make dist`, objdump or debootstrap these tests fail.

use baton_integration::dist::{self, GLIBC_FLOOR, MODULE_MAX_BYTES, SHIPPED};
use baton_integration::{ansible, bin};

#[test]
fn shipped_binaries_need_glibc_2_17_at_most() {
    for name in SHIPPED {
        let path = dist::shipped(name);
        let versions = dist::glibc_versions(&path).unwrap_or_else(|e| panic!("{e:#}"));
        let newest =
            versions.last().unwrap_or_else(|| panic!("{} names no GLIBC_ version: is it dynamic?", path.display()));
        eprintln!("{name}: newest glibc symbol version GLIBC_{}", dist::show_version(newest));
        assert!(
            newest[..] <= GLIBC_FLOOR[..],
            "{} needs GLIBC_{}, newer than {}: build it with `make dist` (cargo-zigbuild)",
            path.display(),
            dist::show_version(newest),
            dist::show_version(&GLIBC_FLOOR)
        );
    }
    // The control: a binary built for the host needs a newer glibc, so the check can fail.
    let host_built = dist::glibc_versions(&bin("baton")).expect("objdump of the host build");
    assert!(host_built.last().is_some_and(|v| v[..] > GLIBC_FLOOR[..]), "host build: {host_built:?}");
}

#[test]
fn the_collection_ships_the_small_portable_module() {
    let module = dist::shipped("service");
    let size = std::fs::metadata(&module).expect("stat the module").len();
    eprintln!("module: {size} bytes (limit {MODULE_MAX_BYTES})");
    assert!(size <= MODULE_MAX_BYTES, "the module is {size} bytes, more than {MODULE_MAX_BYTES}");
    let shipped = ansible::collection_dir().join("plugins/modules/service");
    let in_collection =
        std::fs::read(&shipped).unwrap_or_else(|e| panic!("{}: {e}; run `make collection`", shipped.display()));
    assert!(
        in_collection == std::fs::read(&module).expect("read the module"),
        "{} is not the dist build of the module: run `make collection`",
        shipped.display()
    );
}

#[test]
fn shipped_binaries_run_on_an_older_glibc_userland() {
    let root = dist::old_userland().unwrap_or_else(|e| panic!("{e:#}"));
    let spec =
        r#"{"name": "app", "version": "v1", "exec_start": ["/opt/app/bin/app", "--port", "8080"], "port": 8080}"#;

    // The CLI runs and renders a unit.
    let (code, out, err) = dist::in_userland(&root, &dist::shipped("baton"), &["--version"], &[]).expect("run baton");
    assert_eq!(code, 0, "baton --version in Debian {}: {out}{err}", dist::OLD_USERLAND);
    let (code, out, err) = dist::in_userland(
        &root,
        &dist::shipped("baton"),
        &["render", "/opt/baton-test/spec.json"],
        &[("spec.json", spec)],
    )
    .expect("run baton render");
    assert_eq!(code, 0, "baton render: {out}{err}");
    assert!(out.contains("ExecStart=\"/opt/app/bin/app\" \"--port\" \"8080\"") || out.contains("ExecStart="), "{out}");
    assert!(out.contains("X-Baton-Version=v1"), "{out}");

    // The module answers Ansible's protocol with JSON (a refused option here: no systemd needed).
    let (_, out, err) = dist::in_userland(
        &root,
        &dist::shipped("service"),
        &["/opt/baton-test/args.json"],
        &[("args.json", r#"{"name": "app", "prot": 8080}"#)],
    )
    .expect("run the module");
    let json: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("the module printed no JSON ({e}): {out}{err}"));
    assert_eq!(json["failed"], true, "{json}");
    assert!(json["msg"].as_str().is_some_and(|m| m.contains("prot")), "{json}");

    // The provider starts and explains that Terraform must run it (no loader error).
    let (_, out, err) =
        dist::in_userland(&root, &dist::shipped("terraform-provider-baton"), &[], &[]).expect("run the provider");
    assert!(!err.contains("GLIBC_") && !out.contains("GLIBC_"), "{out}{err}");
    assert!(!format!("{out}{err}").trim().is_empty(), "the provider said nothing");

    // The control: the host build of the CLI does not even load there.
    let (code, out, err) = dist::in_userland(&root, &bin("baton"), &["--version"], &[]).expect("run the host build");
    assert_ne!(code, 0, "{out}{err}");
    assert!(err.contains("GLIBC_"), "the host build should fail to load on glibc 2.31: {err}");
}
