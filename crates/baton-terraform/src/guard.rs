//! No RPC brings the provider down: [`Guarded`] serves the tfplugin6 `Provider` service of an
//! inner implementation and turns a panic in any of its methods (a bug in baton) into an error
//! diagnostic of that RPC ("Internal error in the baton provider: …"), so Terraform shows a
//! readable failure instead of "the plugin crashed" and the provider keeps serving.
//!
//! The panic's own message, with its location and thread, still goes to stderr (Rust's default
//! hook), which Terraform writes to its log.

// tonic's `Status` is the error of every gRPC method.
#![allow(clippy::result_large_err)]

use std::any::Any;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};

use tf_provider::{AttributePath, Diagnostics};
use tonic::{Request, Response, Status};

use crate::proto::diagnostics;
use crate::proto::tfplugin6 as tf;
use tf::provider_server::Provider;

/// A `Provider` whose methods never panic: see the module's documentation.
#[derive(Debug, Clone)]
pub struct Guarded<P>(pub P);

/// A future that catches a panic while it is polled.
struct CatchUnwind<F>(Pin<Box<F>>);

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, Box<dyn Any + Send>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.0.as_mut();
        match catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(out)) => Poll::Ready(Ok(out)),
            Err(payload) => Poll::Ready(Err(payload)),
        }
    }
}

/// The diagnostics of an RPC that panicked.
pub fn internal_error(rpc: &str, text: &str) -> Vec<tf::Diagnostic> {
    let mut d = Diagnostics::default();
    crate::resource::error(
        &mut d,
        "Internal error in the baton provider",
        format!("{rpc} panicked: {text}. This is a bug in baton; the provider log (TF_LOG=debug) has its location."),
        AttributePath::root(),
    );
    diagnostics(d)
}

/// Runs one RPC; a panic becomes the response `T::default()` with `on_panic` applied to it.
pub async fn guard<T: Default>(
    rpc: &str,
    call: impl Future<Output = Result<Response<T>, Status>>,
    on_panic: impl FnOnce(&mut T, Vec<tf::Diagnostic>),
) -> Result<Response<T>, Status> {
    match CatchUnwind(Box::pin(call)).await {
        Ok(result) => result,
        Err(payload) => {
            let mut response = T::default();
            on_panic(&mut response, internal_error(rpc, &baton_core::panic_text(payload.as_ref())));
            Ok(Response::new(response))
        }
    }
}

/// One guarded method per RPC: `name(request type module) => how the diagnostics are set`.
macro_rules! guarded {
    ($($method:ident($module:ident) => |$resp:ident, $diags:ident| $set:expr;)*) => {
        #[tonic::async_trait]
        impl<P: Provider> Provider for Guarded<P> {
            $(
                async fn $method(
                    &self,
                    request: Request<tf::$module::Request>,
                ) -> Result<Response<tf::$module::Response>, Status> {
                    guard(stringify!($module), self.0.$method(request), |$resp, $diags| $set).await
                }
            )*
        }
    };
}

guarded! {
    get_metadata(get_metadata) => |r, d| r.diagnostics = d;
    get_provider_schema(get_provider_schema) => |r, d| r.diagnostics = d;
    validate_provider_config(validate_provider_config) => |r, d| r.diagnostics = d;
    validate_resource_config(validate_resource_config) => |r, d| r.diagnostics = d;
    validate_data_resource_config(validate_data_resource_config) => |r, d| r.diagnostics = d;
    upgrade_resource_state(upgrade_resource_state) => |r, d| r.diagnostics = d;
    configure_provider(configure_provider) => |r, d| r.diagnostics = d;
    read_resource(read_resource) => |r, d| r.diagnostics = d;
    plan_resource_change(plan_resource_change) => |r, d| r.diagnostics = d;
    apply_resource_change(apply_resource_change) => |r, d| r.diagnostics = d;
    import_resource_state(import_resource_state) => |r, d| r.diagnostics = d;
    move_resource_state(move_resource_state) => |r, d| r.diagnostics = d;
    read_data_source(read_data_source) => |r, d| r.diagnostics = d;
    get_functions(get_functions) => |r, d| r.diagnostics = d;
    call_function(call_function) => |r, d| {
        r.error = Some(tf::FunctionError { text: summary_of(&d), function_argument: None })
    };
    stop_provider(stop_provider) => |r, d| r.error = summary_of(&d);
}

/// The diagnostics as one line, for the RPCs that answer with a plain error text.
fn summary_of(diags: &[tf::Diagnostic]) -> String {
    diags.iter().map(|d| format!("{}: {}", d.summary, d.detail)).collect::<Vec<_>>().join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    // Issue 11, item 11: a panic in an RPC is an error diagnostic of that RPC.
    #[tokio::test]
    async fn a_panic_in_an_rpc_becomes_an_error_diagnostic() {
        let call = async {
            if std::hint::black_box(true) {
                panic!("overflow when adding durations");
            }
            Ok(Response::new(tf::plan_resource_change::Response::default()))
        };
        let response =
            guard("plan_resource_change", call, |r: &mut tf::plan_resource_change::Response, d| r.diagnostics = d)
                .await
                .expect("a response, not a gRPC error")
                .into_inner();
        assert!(response.planned_state.is_none());
        let [d] = response.diagnostics.as_slice() else { panic!("one diagnostic: {:?}", response.diagnostics) };
        assert_eq!(d.severity, tf::diagnostic::Severity::Error as i32);
        assert_eq!(d.summary, "Internal error in the baton provider");
        assert!(d.detail.starts_with("plan_resource_change panicked: overflow when adding durations."), "{}", d.detail);
    }

    #[tokio::test]
    async fn an_rpc_that_does_not_panic_answers_as_it_is() {
        let call = async { Ok(Response::new(tf::stop_provider::Response { error: "as it is".to_owned() })) };
        let response = guard("stop_provider", call, |r: &mut tf::stop_provider::Response, d| r.error = summary_of(&d))
            .await
            .expect("response")
            .into_inner();
        assert_eq!(response.error, "as it is");
    }
}
