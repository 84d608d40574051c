//! `terraform-provider-baton`: the Terraform provider of baton, served over tfplugin6 (gRPC)
//! with go-plugin's handshake and AutoMTLS; the protocol comes from the `tf-provider` crate.
//!
//! Terraform starts this binary with `TF_PLUGIN_MAGIC_COOKIE` set and reads the handshake line
//! from its stdout: `1|6|tcp|127.0.0.1:PORT|grpc|CERT` with AutoMTLS, `1|6|unix|PATH|grpc|` (a
//! socket in a fresh 0700 directory) when Terraform's plugin TLS is off. Run by hand it says so
//! and exits.

mod check;
mod data_source;
#[cfg(test)]
mod docs;
mod guard;
mod model;
mod proto;
mod remote;
mod resource;
mod schema;
mod server;
mod tls;

use std::process::ExitCode;

/// go-plugin's handshake: Terraform sets this variable to this value for its plugins.
const MAGIC_COOKIE_KEY: &str = "TF_PLUGIN_MAGIC_COOKIE";
const MAGIC_COOKIE_VALUE: &str = "d602bf8f470bc67ca7faa0386276bbdd4330efaf76d1a219cb4d6991ca9872b2";

fn main() -> ExitCode {
    if std::env::var(MAGIC_COOKIE_KEY).as_deref() != Ok(MAGIC_COOKIE_VALUE) {
        eprintln!(
            "This binary is a plugin. These are not meant to be executed directly.\n\
             Please execute the program that consumes these plugins, which will\n\
             load any plugins automatically (terraform, with the provider baton/baton)."
        );
        return ExitCode::FAILURE;
    }
    // go-plugin's version negotiation: Terraform lists the protocol versions it speaks.
    if let Ok(versions) = std::env::var("PLUGIN_PROTOCOL_VERSIONS") {
        if !versions.split(',').any(|v| v.trim() == "6") {
            eprintln!("terraform-provider-baton speaks plugin protocol 6 only; Terraform offered {versions}");
            return ExitCode::FAILURE;
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("terraform-provider-baton: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let served = runtime.block_on(server::serve());
    // Terraform waits for the process to exit after GRPCController.Shutdown: never wait for
    // blocking work still queued.
    runtime.shutdown_background();
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("terraform-provider-baton: {e:#}");
            ExitCode::FAILURE
        }
    }
}
