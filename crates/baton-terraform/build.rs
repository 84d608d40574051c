//! Generates the gRPC server code of Terraform's plugin protocol 6 (`tfplugin6`) and of
//! go-plugin (`plugin`) from the `.proto` files that the `tf-provider` crate ships: baton keeps
//! no copy of them. `protoc` and the well-known types (`google/protobuf/empty.proto`) come from
//! the `protoc-bin-vendored` crate, so the build needs no system protoc and no protobuf headers.
//!
//! The files are found in tf-provider's package directory: `BATON_TF_PROTO_DIR` if set, else
//! the Cargo registry's copy of the version this crate depends on, else `cargo metadata`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The version of tf-provider in Cargo.toml.
const TF_PROVIDER: &str = "tf-provider-0.2.2";
const PROTOS: [&str; 2] = ["plugin.proto", "tfplugin6.5.proto"];

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=BATON_TF_PROTO_DIR");
    let dir = proto_dir().unwrap_or_else(|| {
        panic!(
            "cannot find the .proto files of {TF_PROVIDER} (looked in BATON_TF_PROTO_DIR, the Cargo registry and \
             `cargo metadata`); set BATON_TF_PROTO_DIR to its proto/ directory"
        )
    });
    let files: Vec<PathBuf> = PROTOS.iter().map(|f| dir.join(f)).collect();
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
    }
    let protoc = protoc_bin_vendored::protoc_bin_path()
        .unwrap_or_else(|e| panic!("protoc-bin-vendored has no protoc for this host: {e}"));
    let well_known = protoc_bin_vendored::include_path()
        .unwrap_or_else(|e| panic!("protoc-bin-vendored has no include directory: {e}"));
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc);
    if let Err(e) = tonic_build::configure()
        .protoc_arg("--experimental_allow_proto3_optional")
        .build_client(false)
        .compile_protos_with_config(config, &files, &[dir.clone(), well_known])
    {
        panic!("generating the tfplugin6 code from {} failed: {e}", dir.display());
    }
}

fn has_protos(dir: &Path) -> bool {
    PROTOS.iter().all(|f| dir.join(f).is_file())
}

fn proto_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("BATON_TF_PROTO_DIR").map(PathBuf::from) {
        return has_protos(&dir).then_some(dir);
    }
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    if let Some(home) = cargo_home {
        if let Ok(registries) = std::fs::read_dir(home.join("registry/src")) {
            for registry in registries.flatten() {
                let dir = registry.path().join(TF_PROVIDER).join("proto");
                if has_protos(&dir) {
                    return Some(dir);
                }
            }
        }
    }
    from_cargo_metadata()
}

/// tf-provider's manifest directory as `cargo metadata` reports it (vendored sources too).
fn from_cargo_metadata() -> Option<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--offline"])
        .current_dir(std::env::var_os("CARGO_MANIFEST_DIR")?)
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let marker = format!("/{TF_PROVIDER}/Cargo.toml");
    let end = text.find(&marker)?;
    let start = text[..end].rfind('"')? + 1;
    let dir = PathBuf::from(&text[start..end]).join(TF_PROVIDER).join("proto");
    has_protos(&dir).then_some(dir)
}
