//! The plugin server: go-plugin's handshake and AutoMTLS, the tfplugin6 `Provider` service for
//! `baton_service`, and go-plugin's controller, stdio and broker services.
//!
//! No other local user may drive the provider (it runs as root and writes units), so it never
//! serves plaintext over TCP:
//! * AutoMTLS (see [`crate::tls`]): Terraform passes its client certificate in
//!   `PLUGIN_CLIENT_CERT`; the server listens on 127.0.0.1, its own TLS acceptor requires a
//!   client certificate and lets in only a client that presents exactly that one and proves it
//!   holds its ECDSA P-521 key, and the handshake line (`1|6|tcp|127.0.0.1:PORT|grpc|CERT`)
//!   announces the server's fresh self-signed certificate. tonic serves the connections the
//!   acceptor lets through.
//! * Without a client certificate (`TF_DISABLE_PLUGIN_TLS=1`, which terraform-plugin-testing
//!   sets): plaintext gRPC on a unix socket, as go-plugin's own servers do, in a fresh directory
//!   created 0700 in `PLUGIN_UNIX_SOCKET_DIR` or `$TMPDIR` (`1|6|unix|PATH|grpc|`). Only this
//!   user and root can reach it; the directory is removed when the server stops (Shutdown,
//!   SIGTERM, or an error). No TCP port is opened at all.
//!
//! Two details keep Terraform fast:
//! * every accepted connection gets `TCP_NODELAY`: a gRPC response leaves in more than one write
//!   (headers, data, trailers, window updates), and Nagle's algorithm would hold the later ones
//!   until the client's delayed ACK, up to 40 ms per call;
//! * `GRPCController.Shutdown` ends the open streams and the server at once, and the process
//!   exits without waiting for anything, so Terraform never has to wait to kill it.

// tonic's `Status` is the error of every gRPC method; the helpers return it as they are.
#![allow(clippy::result_large_err)]

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tf_provider::Diagnostics;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;
use tokio_stream::wrappers::UnixListenerStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use crate::data_source::{ServiceDataSource, ServiceInfo};
use crate::model::Service;
use crate::proto::plugin::{self, grpc_broker_server, grpc_controller_server, grpc_stdio_server};
use crate::proto::tfplugin6 as tf;
use crate::proto::{decode, diagnostics, encode, path, schema};
use crate::remote::ssh::ProviderConfig;
use crate::resource::ServiceResource;
use crate::tls::AutoMtls;

/// The resource type this provider serves.
pub const RESOURCE: &str = "baton_service";
/// The data source this provider serves (same name as the resource, as is the custom).
pub const DATA_SOURCE: &str = "baton_service";

/// go-plugin's core protocol version, the first field of the handshake line.
const CORE_PROTOCOL_VERSION: u32 = 1;
/// The plugin protocol: tfplugin6.
const PROTOCOL_VERSION: u32 = 6;
/// How long a graceful stop may take before the process exits anyway.
const STOP_GRACE: Duration = Duration::from_millis(500);

type Stdio = Pin<Box<dyn Stream<Item = Result<plugin::StdioData, Status>> + Send + 'static>>;
/// The running gRPC server, whichever its transport.
type Serving = Pin<Box<dyn Future<Output = Result<(), tonic::transport::Error>> + Send>>;
type Broker = Pin<Box<dyn Stream<Item = Result<plugin::ConnInfo, Status>> + Send + 'static>>;

/// The state every service shares.
#[derive(Debug, Clone)]
pub struct Plugin {
    resource: ServiceResource,
    data_source: ServiceDataSource,
    remotes: Arc<crate::remote::Remotes>,
    stop: Arc<watch::Sender<bool>>,
}

impl Plugin {
    fn new() -> Self {
        // One system-bus connection for the reads of the resource and of the data source.
        let baton = Arc::new(baton_core::Baton::system());
        let remotes = Arc::new(crate::remote::Remotes::default());
        Plugin {
            resource: ServiceResource::new(baton.clone()).with_remotes(remotes.clone()),
            data_source: ServiceDataSource::new(baton).with_remotes(remotes.clone()),
            remotes,
            stop: Arc::new(watch::channel(false).0),
        }
    }

    /// A stream that yields nothing and ends when the server stops.
    fn until_stopped<T: Send + 'static>(&self) -> Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>> {
        let rx = self.stop.subscribe();
        Box::pin(tokio_stream::wrappers::WatchStream::new(rx).take_while(|stopped| !*stopped).filter_map(|_| None))
    }
}

fn check_type(type_name: &str) -> Result<(), Status> {
    if type_name == RESOURCE {
        Ok(())
    } else {
        Err(Status::invalid_argument(format!("the baton provider has no resource type {type_name:?}")))
    }
}

fn check_data_source(type_name: &str) -> Result<(), Status> {
    if type_name == DATA_SOURCE {
        Ok(())
    } else {
        Err(Status::invalid_argument(format!("the baton provider has no data source {type_name:?}")))
    }
}

fn value<T: DeserializeOwned>(v: Option<&tf::DynamicValue>, what: &str) -> Result<Option<T>, Status> {
    decode(v).map_err(|e| Status::invalid_argument(format!("{what}: {e}")))
}

fn out<T: Serialize>(s: Option<&T>) -> Result<tf::DynamicValue, Status> {
    encode(s).map_err(Status::internal)
}

fn capabilities() -> tf::ServerCapabilities {
    tf::ServerCapabilities { plan_destroy: false, get_provider_schema_optional: false, move_resource_state: false }
}

/// The provider block's settings; every invalid one reported at its path.
fn provider_errors(diags: &mut Diagnostics, config: &ProviderConfig) -> Option<crate::remote::Settings> {
    match config.settings() {
        Ok(s) => Some(s),
        Err(errors) => {
            for e in errors {
                crate::resource::error(diags, "Invalid provider \"baton\" configuration", e.msg, e.path);
            }
            None
        }
    }
}

fn error(summary: &str, detail: String) -> Vec<tf::Diagnostic> {
    let mut d = Diagnostics::default();
    crate::resource::error(&mut d, summary, detail, tf_provider::AttributePath::root());
    diagnostics(d)
}

#[tonic::async_trait]
impl tf::provider_server::Provider for Plugin {
    async fn get_metadata(
        &self,
        _: Request<tf::get_metadata::Request>,
    ) -> Result<Response<tf::get_metadata::Response>, Status> {
        Ok(Response::new(tf::get_metadata::Response {
            server_capabilities: Some(capabilities()),
            diagnostics: Vec::new(),
            data_sources: vec![tf::get_metadata::DataSourceMetadata { type_name: DATA_SOURCE.to_owned() }],
            resources: vec![tf::get_metadata::ResourceMetadata { type_name: RESOURCE.to_owned() }],
            functions: Vec::new(),
        }))
    }

    async fn get_provider_schema(
        &self,
        _: Request<tf::get_provider_schema::Request>,
    ) -> Result<Response<tf::get_provider_schema::Response>, Status> {
        Ok(Response::new(tf::get_provider_schema::Response {
            provider: Some(schema(&crate::schema::provider())),
            resource_schemas: [(RESOURCE.to_owned(), schema(&crate::schema::service()))].into(),
            data_source_schemas: [(DATA_SOURCE.to_owned(), schema(&crate::schema::service_data()))].into(),
            functions: Default::default(),
            diagnostics: Vec::new(),
            provider_meta: Some(schema(&crate::schema::provider_meta())),
            server_capabilities: Some(capabilities()),
        }))
    }

    async fn validate_provider_config(
        &self,
        request: Request<tf::validate_provider_config::Request>,
    ) -> Result<Response<tf::validate_provider_config::Response>, Status> {
        let r = request.into_inner();
        let mut diags = Diagnostics::default();
        if let Some(config) = value::<ProviderConfig>(r.config.as_ref(), "provider config")? {
            provider_errors(&mut diags, &config);
        }
        Ok(Response::new(tf::validate_provider_config::Response { diagnostics: diagnostics(diags) }))
    }

    async fn validate_resource_config(
        &self,
        request: Request<tf::validate_resource_config::Request>,
    ) -> Result<Response<tf::validate_resource_config::Response>, Status> {
        let r = request.into_inner();
        check_type(&r.type_name)?;
        let mut diags = Diagnostics::default();
        if let Some(config) = value::<Service>(r.config.as_ref(), "config")? {
            self.resource.validate(&mut diags, &config);
        }
        Ok(Response::new(tf::validate_resource_config::Response { diagnostics: diagnostics(diags) }))
    }

    async fn validate_data_resource_config(
        &self,
        request: Request<tf::validate_data_resource_config::Request>,
    ) -> Result<Response<tf::validate_data_resource_config::Response>, Status> {
        let r = request.into_inner();
        check_data_source(&r.type_name)?;
        let mut diags = Diagnostics::default();
        if let Some(config) = value::<ServiceInfo>(r.config.as_ref(), "config")? {
            self.data_source.validate(&mut diags, &config);
        }
        Ok(Response::new(tf::validate_data_resource_config::Response { diagnostics: diagnostics(diags) }))
    }

    async fn upgrade_resource_state(
        &self,
        request: Request<tf::upgrade_resource_state::Request>,
    ) -> Result<Response<tf::upgrade_resource_state::Response>, Status> {
        let r = request.into_inner();
        check_type(&r.type_name)?;
        // Every schema version so far reads into the same attributes (missing ones are null).
        let json = r.raw_state.map(|s| s.json).unwrap_or_default();
        let state = value::<Service>(Some(&tf::DynamicValue { msgpack: Vec::new(), json }), "raw state")?;
        Ok(Response::new(tf::upgrade_resource_state::Response {
            upgraded_state: Some(out(state.as_ref())?),
            diagnostics: Vec::new(),
        }))
    }

    async fn configure_provider(
        &self,
        request: Request<tf::configure_provider::Request>,
    ) -> Result<Response<tf::configure_provider::Response>, Status> {
        let r = request.into_inner();
        let mut diags = Diagnostics::default();
        let config = value::<ProviderConfig>(r.config.as_ref(), "provider config")?.unwrap_or_default();
        if let Some(settings) = provider_errors(&mut diags, &config) {
            self.remotes.configure(settings);
        }
        Ok(Response::new(tf::configure_provider::Response { diagnostics: diagnostics(diags) }))
    }

    async fn read_resource(
        &self,
        request: Request<tf::read_resource::Request>,
    ) -> Result<Response<tf::read_resource::Response>, Status> {
        let r = request.into_inner();
        check_type(&r.type_name)?;
        let mut diags = Diagnostics::default();
        let new_state = match value::<Service>(r.current_state.as_ref(), "current state")? {
            Some(state) => self.resource.read(&mut diags, state).await,
            None => None,
        };
        Ok(Response::new(tf::read_resource::Response {
            new_state: Some(out(new_state.as_ref())?),
            diagnostics: diagnostics(diags),
            private: r.private,
        }))
    }

    async fn plan_resource_change(
        &self,
        request: Request<tf::plan_resource_change::Request>,
    ) -> Result<Response<tf::plan_resource_change::Response>, Status> {
        let r = request.into_inner();
        check_type(&r.type_name)?;
        let prior = value::<Service>(r.prior_state.as_ref(), "prior state")?;
        let proposed = value::<Service>(r.proposed_new_state.as_ref(), "proposed state")?;
        let config = value::<Service>(r.config.as_ref(), "config")?;
        let mut diags = Diagnostics::default();
        let (planned, replace) = match (proposed, config) {
            // A destroy: nothing to plan.
            (None, _) | (_, None) => (None, Vec::new()),
            (Some(proposed), Some(config)) => {
                match self.resource.plan(&mut diags, prior.as_ref(), &proposed, &config) {
                    Some((p, replace)) => (Some(p), replace),
                    None => (None, Vec::new()),
                }
            }
        };
        let failed = !diags.errors.is_empty();
        Ok(Response::new(tf::plan_resource_change::Response {
            planned_state: if failed { None } else { Some(out(planned.as_ref())?) },
            requires_replace: replace.into_iter().map(path).collect(),
            planned_private: r.prior_private,
            diagnostics: diagnostics(diags),
            legacy_type_system: false,
        }))
    }

    async fn apply_resource_change(
        &self,
        request: Request<tf::apply_resource_change::Request>,
    ) -> Result<Response<tf::apply_resource_change::Response>, Status> {
        let r = request.into_inner();
        check_type(&r.type_name)?;
        let prior = value::<Service>(r.prior_state.as_ref(), "prior state")?;
        let planned = value::<Service>(r.planned_state.as_ref(), "planned state")?;
        let config = value::<Service>(r.config.as_ref(), "config")?;
        let mut diags = Diagnostics::default();
        let new_state = match (prior, planned, config) {
            (None, Some(planned), Some(config)) => self.resource.create(&mut diags, &planned, &config).await,
            (Some(prior), Some(planned), Some(config)) => {
                Some(self.resource.update(&mut diags, prior, &planned, &config).await)
            }
            (Some(prior), None, _) => {
                if self.resource.delete(&mut diags, &prior).await {
                    None
                } else {
                    Some(prior)
                }
            }
            _ => None,
        };
        Ok(Response::new(tf::apply_resource_change::Response {
            new_state: Some(out(new_state.as_ref())?),
            private: r.planned_private,
            diagnostics: diagnostics(diags),
            legacy_type_system: false,
        }))
    }

    async fn import_resource_state(
        &self,
        request: Request<tf::import_resource_state::Request>,
    ) -> Result<Response<tf::import_resource_state::Response>, Status> {
        let r = request.into_inner();
        check_type(&r.type_name)?;
        let mut diags = Diagnostics::default();
        let imported = match self.resource.import(&mut diags, r.id).await {
            Some(state) => vec![tf::import_resource_state::ImportedResource {
                type_name: RESOURCE.to_owned(),
                state: Some(out(Some(&state))?),
                private: Vec::new(),
            }],
            None => Vec::new(),
        };
        Ok(Response::new(tf::import_resource_state::Response {
            imported_resources: imported,
            diagnostics: diagnostics(diags),
        }))
    }

    async fn move_resource_state(
        &self,
        _: Request<tf::move_resource_state::Request>,
    ) -> Result<Response<tf::move_resource_state::Response>, Status> {
        Ok(Response::new(tf::move_resource_state::Response {
            target_state: None,
            diagnostics: error("Unsupported", "baton_service cannot be moved from another resource type".to_owned()),
            target_private: Vec::new(),
        }))
    }

    async fn read_data_source(
        &self,
        request: Request<tf::read_data_source::Request>,
    ) -> Result<Response<tf::read_data_source::Response>, Status> {
        let r = request.into_inner();
        check_data_source(&r.type_name)?;
        let mut diags = Diagnostics::default();
        let state = match value::<ServiceInfo>(r.config.as_ref(), "config")? {
            Some(config) => self.data_source.read(&mut diags, config).await,
            None => None,
        };
        let failed = !diags.errors.is_empty();
        Ok(Response::new(tf::read_data_source::Response {
            state: if failed { None } else { Some(out(state.as_ref())?) },
            diagnostics: diagnostics(diags),
        }))
    }

    async fn get_functions(
        &self,
        _: Request<tf::get_functions::Request>,
    ) -> Result<Response<tf::get_functions::Response>, Status> {
        Ok(Response::new(tf::get_functions::Response { functions: Default::default(), diagnostics: Vec::new() }))
    }

    async fn call_function(
        &self,
        request: Request<tf::call_function::Request>,
    ) -> Result<Response<tf::call_function::Response>, Status> {
        let name = request.into_inner().name;
        Ok(Response::new(tf::call_function::Response {
            result: None,
            error: Some(tf::FunctionError {
                text: format!("the baton provider has no function {name:?}"),
                function_argument: None,
            }),
        }))
    }

    async fn stop_provider(
        &self,
        _: Request<tf::stop_provider::Request>,
    ) -> Result<Response<tf::stop_provider::Response>, Status> {
        // A handover in progress finishes (or rolls back) on its own: stopping it half-way would
        // leave two releases running. Nothing else runs long.
        Ok(Response::new(tf::stop_provider::Response { error: String::new() }))
    }
}

#[tonic::async_trait]
impl grpc_controller_server::GrpcController for Plugin {
    async fn shutdown(&self, _: Request<plugin::Empty>) -> Result<Response<plugin::Empty>, Status> {
        // Every host's SSH master connection ends with the provider.
        self.remotes.close().await;
        self.stop.send_replace(true);
        Ok(Response::new(plugin::Empty {}))
    }
}

#[tonic::async_trait]
impl grpc_stdio_server::GrpcStdio for Plugin {
    type StreamStdioStream = Stdio;

    async fn stream_stdio(&self, _: Request<()>) -> Result<Response<Stdio>, Status> {
        // The provider logs to stderr, which go-plugin reads directly; nothing goes over gRPC.
        Ok(Response::new(self.until_stopped()))
    }
}

#[tonic::async_trait]
impl grpc_broker_server::GrpcBroker for Plugin {
    type StartStreamStream = Broker;

    async fn start_stream(&self, _: Request<Streaming<plugin::ConnInfo>>) -> Result<Response<Broker>, Status> {
        // baton brokers no extra connections.
        Ok(Response::new(self.until_stopped()))
    }
}

/// Binds 127.0.0.1 on a port in `PLUGIN_MIN_PORT..=PLUGIN_MAX_PORT` (any port when unset).
async fn bind() -> Result<tokio::net::TcpListener> {
    let port = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u16>().ok());
    let (min, max) = match (port("PLUGIN_MIN_PORT"), port("PLUGIN_MAX_PORT")) {
        (None, None) => (0, 0),
        (min, max) => (min.unwrap_or(1025), max.unwrap_or(u16::MAX)),
    };
    for p in min..=max {
        if let Ok(l) = tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, p))).await {
            return Ok(l);
        }
    }
    bail!("no free port on 127.0.0.1 in {min}..={max}")
}

/// go-plugin's variable for the directory in which a plugin creates its unix socket.
const SOCKET_DIR_ENV: &str = "PLUGIN_UNIX_SOCKET_DIR";
/// The longest path a unix socket address holds (`sun_path` is 108 bytes with its NUL).
const MAX_SOCKET_PATH: usize = 107;

/// A plaintext unix socket that only this user (and root) can reach: `plugin.sock` in a fresh
/// directory created 0700. Dropping it removes the directory and the socket.
#[derive(Debug)]
pub struct PrivateSocket {
    pub listener: tokio::net::UnixListener,
    pub path: PathBuf,
    dir: tempfile::TempDir,
}

impl PrivateSocket {
    /// In `PLUGIN_UNIX_SOCKET_DIR` when set (as go-plugin's servers), else in `$TMPDIR` (or
    /// `/tmp`).
    pub fn from_env() -> Result<PrivateSocket> {
        match std::env::var_os(SOCKET_DIR_ENV).filter(|d| !d.is_empty()) {
            Some(dir) => PrivateSocket::new(Path::new(&dir))
                .with_context(|| format!("{SOCKET_DIR_ENV}={}", Path::new(&dir).display())),
            None => {
                // An empty TMPDIR means the default, as for go-plugin (Go's os.TempDir).
                let dir =
                    std::env::var_os("TMPDIR").filter(|d| !d.is_empty()).map_or_else(|| "/tmp".into(), PathBuf::from);
                PrivateSocket::new(&dir).with_context(|| format!("TMPDIR={}", dir.display()))
            }
        }
    }

    /// A fresh directory in `parent`, created 0700 and checked to be this user's own, with the
    /// socket in it (0600).
    pub fn new(parent: &Path) -> Result<PrivateSocket> {
        // The handshake line is `|`-separated and ends at the newline.
        if parent.to_str().is_none_or(|p| p.contains(['|', '\n', '\r'])) {
            bail!(
                "the socket directory {} cannot be announced in go-plugin's handshake line \
                 (it must be UTF-8 without '|' or line breaks)",
                parent.display()
            );
        }
        let parent = std::path::absolute(parent).with_context(|| format!("{}", parent.display()))?;
        let euid = rustix::process::geteuid().as_raw();
        // Nobody else may move entries of the parent: another user could otherwise swap the
        // fresh directory for one of their own before the socket is bound in it.
        let meta = std::fs::metadata(&parent)
            .with_context(|| format!("cannot use {} for the plugin socket", parent.display()))?;
        if !meta.is_dir() {
            bail!("{} is not a directory", parent.display());
        }
        if meta.uid() != 0 && meta.uid() != euid {
            bail!(
                "{} is owned by uid {}, not by root or uid {euid}: its owner could replace the socket's directory",
                parent.display(),
                meta.uid()
            );
        }
        if meta.mode() & 0o022 != 0 && meta.mode() & 0o1000 == 0 {
            bail!(
                "{} is writable by group or others without the sticky bit (mode {:o}): they could replace the \
                 socket's directory; use a directory like /tmp (1777) or one only its owner writes",
                parent.display(),
                meta.mode() & 0o7777
            );
        }
        let parent = parent.as_path();
        let dir = tempfile::Builder::new()
            .prefix("terraform-provider-baton-")
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir_in(parent)
            .with_context(|| {
                format!("cannot create a private directory for the plugin socket in {}", parent.display())
            })?;
        let meta = std::fs::symlink_metadata(dir.path()).with_context(|| format!("{}", dir.path().display()))?;
        if !meta.is_dir() || meta.uid() != euid || meta.mode() & 0o077 != 0 {
            bail!(
                "{} is not a private directory of uid {euid} (owner {}, mode {:o})",
                dir.path().display(),
                meta.uid(),
                meta.mode() & 0o7777
            );
        }
        let path = dir.path().join("plugin.sock");
        if path.as_os_str().len() > MAX_SOCKET_PATH {
            bail!(
                "the plugin socket path {} is longer than a unix socket address holds ({MAX_SOCKET_PATH} bytes): \
                 set {SOCKET_DIR_ENV} or TMPDIR to a shorter directory than {}",
                path.display(),
                parent.display()
            );
        }
        let listener =
            tokio::net::UnixListener::bind(&path).with_context(|| format!("cannot listen on {}", path.display()))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("chmod 0600 {}", path.display()))?;
        Ok(PrivateSocket { listener, path, dir })
    }
}

/// Where the server listens: never plaintext over TCP.
#[derive(Debug)]
enum Transport {
    /// Terraform's AutoMTLS: TCP on 127.0.0.1, only Terraform's client certificate gets in.
    Mtls(AutoMtls, tokio::net::TcpListener),
    /// No client certificate (`TF_DISABLE_PLUGIN_TLS`): a unix socket only this user reaches.
    Unix(PrivateSocket),
}

impl Transport {
    async fn from_env() -> Result<Transport> {
        Ok(match AutoMtls::from_env()? {
            Some(tls) => Transport::Mtls(tls, bind().await?),
            None => Transport::Unix(PrivateSocket::from_env()?),
        })
    }

    /// go-plugin's handshake line: core version|app version|network|address|protocol|cert.
    fn handshake(&self) -> Result<String> {
        let (network, address, cert) = match self {
            Transport::Mtls(tls, listener) => (
                "tcp",
                listener.local_addr()?.to_string(),
                base64::engine::general_purpose::STANDARD_NO_PAD.encode(&tls.cert_der),
            ),
            Transport::Unix(socket) => ("unix", socket.path.display().to_string(), String::new()),
        };
        Ok(format!("{CORE_PROTOCOL_VERSION}|{PROTOCOL_VERSION}|{network}|{address}|grpc|{cert}"))
    }
}

/// Serves until Terraform calls `GRPCController.Shutdown` (or closes the connection), or the
/// process gets SIGTERM. SIGINT is ignored, as go-plugin's servers do: Terraform got it too, and
/// ends the plugin itself (a handover under way finishes).
pub async fn serve() -> Result<()> {
    // `BATON_PROVIDER_TCP_NODELAY=0` turns Nagle's algorithm back on, for the benchmark's
    // comparison only.
    let nodelay = std::env::var("BATON_PROVIDER_TCP_NODELAY").map_or(true, |v| v != "0");
    let mut sigterm = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut sigint = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    tokio::spawn(async move { while sigint.recv().await.is_some() {} });

    // The socket's directory lives as long as `_socket_dir` below: it is removed on return,
    // whatever the outcome.
    let transport = Transport::from_env().await?;
    let line = transport.handshake()?;
    let plugin = Plugin::new();
    let router = tonic::transport::Server::builder()
        .add_service(tf::provider_server::ProviderServer::new(crate::guard::Guarded(plugin.clone())))
        .add_service(grpc_controller_server::GrpcControllerServer::new(plugin.clone()))
        .add_service(grpc_stdio_server::GrpcStdioServer::new(plugin.clone()))
        .add_service(grpc_broker_server::GrpcBrokerServer::new(plugin.clone()));

    let mut stopped = plugin.stop.subscribe();
    let mut stopped_too = plugin.stop.subscribe();
    let shutdown = async move {
        let _ = stopped.wait_for(|s| *s).await;
    };
    // TCP only behind our own TLS acceptor, which lets Terraform's client certificate in and
    // nothing else; plaintext only on the private unix socket.
    let (server, _socket_dir): (Serving, Option<tempfile::TempDir>) = match transport {
        Transport::Mtls(tls, listener) => {
            (Box::pin(router.serve_with_incoming_shutdown(tls.incoming(listener, nodelay), shutdown)), None)
        }
        Transport::Unix(socket) => {
            let incoming = UnixListenerStream::new(socket.listener);
            (Box::pin(router.serve_with_incoming_shutdown(incoming, shutdown)), Some(socket.dir))
        }
    };

    println!("{line}");

    tokio::select! {
        served = server => served.context("gRPC server")?,
        // Shut down: give the open connection a moment to close cleanly, never more.
        _ = async move {
            let _ = stopped_too.wait_for(|s| *s).await;
            tokio::time::sleep(STOP_GRACE).await;
        } => {}
        _ = sigterm.recv() => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The registry manifest shipped beside the docs announces the protocol this server speaks.
    #[test]
    fn registry_manifest_names_the_protocol_served() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../plugins/terraform/terraform-registry-manifest.json");
        let text = std::fs::read_to_string(path).expect("terraform-registry-manifest.json");
        let manifest: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
        assert_eq!(manifest["version"], 1, "{manifest}");
        let versions = manifest["metadata"]["protocol_versions"].as_array().expect("protocol_versions");
        assert_eq!(versions, &[serde_json::json!(format!("{PROTOCOL_VERSION}.0"))], "{manifest}");
    }

    /// A scratch parent directory for sockets (short enough for a socket address).
    fn parent() -> tempfile::TempDir {
        tempfile::Builder::new().prefix("baton-sock-").tempdir().expect("scratch")
    }

    #[tokio::test]
    async fn the_plaintext_socket_is_in_a_fresh_0700_directory_removed_on_drop() {
        let parent = parent();
        let a = PrivateSocket::new(parent.path()).expect("socket");
        let b = PrivateSocket::new(parent.path()).expect("another socket");
        assert_ne!(a.dir.path(), b.dir.path(), "a fresh directory each time");
        for s in [&a, &b] {
            assert_eq!(s.path.parent(), Some(s.dir.path()));
            assert_eq!(s.dir.path().parent(), Some(parent.path()));
            let dir = std::fs::symlink_metadata(s.dir.path()).expect("dir");
            assert_eq!(dir.mode() & 0o7777, 0o700);
            assert_eq!(dir.uid(), rustix::process::geteuid().as_raw());
            let sock = std::fs::symlink_metadata(&s.path).expect("socket");
            assert!(std::os::unix::fs::FileTypeExt::is_socket(&sock.file_type()));
            assert_eq!(sock.mode() & 0o777, 0o600);
        }
        // It serves: a connection is accepted.
        let client = tokio::net::UnixStream::connect(&a.path).await.expect("connect");
        let (server, _) = a.listener.accept().await.expect("accept");
        drop((client, server));
        let dirs = [a.dir.path().to_path_buf(), b.dir.path().to_path_buf()];
        drop((a, b));
        assert!(dirs.iter().all(|d| !d.exists()), "removed on drop: {dirs:?}");
    }

    #[tokio::test]
    async fn a_socket_directory_that_cannot_serve_is_refused_by_name() {
        let parent = parent();
        let missing = parent.path().join("missing");
        let long = parent.path().join("d".repeat(MAX_SOCKET_PATH));
        let pipe = parent.path().join("a|b");
        let open = parent.path().join("open");
        let sticky = parent.path().join("sticky");
        for d in [&long, &pipe, &open, &sticky] {
            std::fs::create_dir(d).expect("mkdir");
        }
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        std::fs::set_permissions(&sticky, std::fs::Permissions::from_mode(0o1777)).expect("chmod");
        let group = parent.path().join("group");
        std::fs::create_dir(&group).expect("mkdir");
        std::fs::set_permissions(&group, std::fs::Permissions::from_mode(0o770)).expect("chmod");
        // A sticky world-writable directory, like /tmp, is fine.
        drop(PrivateSocket::new(&sticky).expect("a socket in a sticky directory"));
        for (dir, says) in [
            (&open, "writable by group or others without the sticky bit (mode 777)"),
            (&group, "writable by group or others without the sticky bit (mode 770)"),
            (&missing, "cannot use"),
            (&long, "longer than a unix socket address holds"),
            (&pipe, "cannot be announced in go-plugin's handshake line"),
        ] {
            let e = format!("{:#}", PrivateSocket::new(dir).expect_err("refused"));
            assert!(e.contains(says) && e.contains(&dir.display().to_string()), "{e}");
        }
        assert_eq!(std::fs::read_dir(&long).expect("dir").count(), 0, "nothing left behind");
    }

    #[tokio::test]
    async fn the_handshake_announces_the_unix_socket_or_tls_over_tcp() {
        let parent = parent();
        let socket = PrivateSocket::new(parent.path()).expect("socket");
        let line = Transport::Unix(socket).handshake().expect("line");
        let fields: Vec<&str> = line.split('|').collect();
        assert_eq!(fields[..3], ["1", "6", "unix"], "{line}");
        assert!(fields[3].starts_with(&parent.path().display().to_string()) && fields[3].ends_with("/plugin.sock"));
        assert_eq!(fields[4..], ["grpc", ""], "{line}");

        let client = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("rcgen");
        let tls = AutoMtls::new(&client.cert.pem()).expect("AutoMTLS");
        let cert = base64::engine::general_purpose::STANDARD_NO_PAD.encode(&tls.cert_der);
        let listener = bind().await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let line = Transport::Mtls(tls, listener).handshake().expect("line");
        assert_eq!(line, format!("1|6|tcp|{addr}|grpc|{cert}"));
        assert!(addr.ip().is_loopback());
    }

    #[test]
    fn the_data_source_and_the_resource_share_a_name() {
        assert!(check_type(RESOURCE).is_ok() && check_data_source(DATA_SOURCE).is_ok());
        assert!(check_data_source("baton_nothing").is_err());
    }
}
