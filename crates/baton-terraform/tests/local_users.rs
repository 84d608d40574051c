//! Another local user cannot drive `terraform-provider-baton`: the real binary, started as
//! Terraform starts it, is attacked by a gRPC client running as `nobody` (this test binary run
//! again with `setpriv`). With Terraform's client certificate (AutoMTLS) it serves TCP on
//! 127.0.0.1 behind mutual TLS; without one (`TF_DISABLE_PLUGIN_TLS=1`) it serves plaintext only
//! on a unix socket in a fresh 0700 directory, opens no TCP port, and removes the directory when
//! it exits. These tests need root (to run a client as another uid) and fail loudly without it.

use std::io::{self, BufRead as _, BufReader};
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use base64::Engine as _;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

const PROVIDER: &str = env!("CARGO_BIN_EXE_terraform-provider-baton");
const MAGIC_COOKIE: &str = "d602bf8f470bc67ca7faa0386276bbdd4330efaf76d1a219cb4d6991ca9872b2";
/// `nobody`.
const OTHER_UID: u32 = 65534;
const WAIT: Duration = Duration::from_secs(10);

/// The client mode of this test binary: the address to call (`network|address`), and for TLS
/// the server certificate (base64 DER) and a PEM file with the client's certificate and key.
const CLIENT_TARGET: &str = "BATON_TEST_RPC_TARGET";
const CLIENT_SERVER_CERT: &str = "BATON_TEST_RPC_SERVER_CERT";
const CLIENT_IDENTITY: &str = "BATON_TEST_RPC_IDENTITY";
/// The line the client prints: `RPC-RESULT ok` or `RPC-RESULT failed: <why>`.
const RESULT: &str = "RPC-RESULT ";

fn need_root() {
    assert!(
        rustix::process::geteuid().is_root(),
        "these tests need root: they run a gRPC client as another uid ({OTHER_UID}) with setpriv"
    );
}

/// A private scratch directory that `nobody` may traverse (so only the provider's own
/// directory can keep it out).
fn scratch() -> tempfile::TempDir {
    let dir = tempfile::Builder::new().prefix("baton-tf-users-").tempdir().expect("scratch dir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod 0755");
    dir
}

/// go-plugin's handshake line, split.
#[derive(Debug)]
struct Handshake {
    network: String,
    address: String,
    /// The server certificate (base64 DER), empty without TLS.
    cert: String,
}

/// The provider, started as Terraform starts it.
struct Provider {
    child: Child,
    hs: Handshake,
    stderr: PathBuf,
}

impl Provider {
    fn start(envs: &[(&str, &str)], scratch: &Path) -> Provider {
        Provider::try_start(envs, scratch).unwrap_or_else(|(e, log)| panic!("the provider did not start: {e:#}\n{log}"))
    }

    /// Starts the provider; on failure the error and what it wrote to stderr.
    fn try_start(envs: &[(&str, &str)], scratch: &Path) -> Result<Provider, (anyhow::Error, String)> {
        let stderr = scratch.join(format!("provider-{}.log", rand_suffix()));
        let log = std::fs::File::create(&stderr).expect("stderr file");
        let mut cmd = Command::new(PROVIDER);
        cmd.env("TF_PLUGIN_MAGIC_COOKIE", MAGIC_COOKIE)
            .env("PLUGIN_PROTOCOL_VERSIONS", "6")
            .env("TMPDIR", scratch)
            .env_remove("PLUGIN_CLIENT_CERT")
            .env_remove("PLUGIN_UNIX_SOCKET_DIR")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start the provider");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(WAIT).unwrap_or_default();
        let fields: Vec<&str> = line.trim_end_matches('\n').split('|').collect();
        if fields.len() < 5 || fields[0] != "1" || fields[1] != "6" || fields[4] != "grpc" {
            let _ = child.kill();
            let _ = child.wait();
            let log = std::fs::read_to_string(&stderr).unwrap_or_default();
            return Err((anyhow::anyhow!("no handshake line: {line:?}"), log));
        }
        let hs = Handshake {
            network: fields[2].to_owned(),
            address: fields[3].to_owned(),
            cert: fields.get(5).copied().unwrap_or("").to_owned(),
        };
        Ok(Provider { child, hs, stderr })
    }

    fn target(&self) -> String {
        format!("{}|{}", self.hs.network, self.hs.address)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// `GRPCController.Shutdown` (over `identity`'s TLS when the provider serves TLS), then
    /// waits for the process to exit.
    fn shutdown(mut self, identity: Option<&Path>) {
        let server_cert = (!self.hs.cert.is_empty()).then(|| self.hs.cert.clone());
        let target = self.target();
        run(call(&target, server_cert.as_deref(), identity, "/plugin.GRPCController/Shutdown"))
            .unwrap_or_else(|e| panic!("Shutdown: {e:#}\n{}", self.log()));
        let status = wait(&mut self.child).unwrap_or_else(|| panic!("the provider did not exit\n{}", self.log()));
        assert!(status.success(), "the provider exited with {status}\n{}", self.log());
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait(child: &mut Child) -> Option<std::process::ExitStatus> {
    let t0 = Instant::now();
    while t0.elapsed() < WAIT {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

fn rand_suffix() -> String {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    format!("{}-{}", std::process::id(), d.as_nanos())
}

/// A client certificate and key for AutoMTLS: what Terraform passes in `PLUGIN_CLIENT_CERT`,
/// and a PEM file (certificate and key) for the client mode.
fn client_identity(dir: &Path) -> (String, PathBuf) {
    let rcgen::CertifiedKey { cert, key_pair } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("rcgen");
    let path = dir.join(format!("client-{}.pem", rand_suffix()));
    std::fs::write(&path, format!("{}{}", cert.pem(), key_pair.serialize_pem())).expect("write the identity");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod 0600");
    (cert.pem(), path)
}

/// Runs this test binary's client mode against `target`, as `uid` (through setpriv) or as
/// this user: `Ok` if it made an RPC, else why not.
fn client_as(uid: Option<u32>, target: &str, server_cert: Option<&str>, identity: Option<&Path>) -> Result<(), String> {
    let exe = std::env::current_exe().expect("test binary");
    let mut cmd = match uid {
        Some(uid) => {
            let mut c = Command::new("setpriv");
            c.args([format!("--reuid={uid}"), format!("--regid={uid}"), "--clear-groups".to_owned(), "--".to_owned()])
                .arg(&exe);
            c
        }
        None => Command::new(&exe),
    };
    cmd.args(["--exact", "the_client_makes_an_rpc_in_each_mode_as_the_owner", "--nocapture", "--test-threads=1"])
        .env(CLIENT_TARGET, target)
        .env_remove(CLIENT_SERVER_CERT)
        .env_remove(CLIENT_IDENTITY);
    if let Some(cert) = server_cert {
        cmd.env(CLIENT_SERVER_CERT, cert);
    }
    if let Some(identity) = identity {
        cmd.env(CLIENT_IDENTITY, identity);
    }
    let out = cmd.output().unwrap_or_else(|e| panic!("run the client (setpriv is util-linux's): {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let result = stdout.lines().find_map(|l| l.split_once(RESULT).map(|(_, r)| r)).unwrap_or_else(|| {
        panic!(
            "the client as uid {uid:?} printed no result ({}):\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
    });
    match result.strip_prefix("failed: ") {
        None if result == "ok" => Ok(()),
        None => panic!("unexpected client result {result:?}"),
        Some(why) => Err(why.to_owned()),
    }
}

// ---- the client ---------------------------------------------------------------------------

trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> Io for T {}

/// Trusts exactly the server certificate of the handshake line, as go-plugin's client does.
#[derive(Debug)]
struct ServerPin(Vec<u8>, rustls::crypto::WebPkiSupportedAlgorithms);

impl ServerCertVerifier for ServerPin {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.0.as_slice() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.1)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.1)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.1.supported_schemes()
    }
}

fn tls_config(server_cert_b64: &str, identity: Option<&Path>) -> Result<rustls::ClientConfig> {
    let server_cert = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(server_cert_b64.trim_end_matches('='))
        .context("server certificate (base64)")?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let pin = ServerPin(server_cert, provider.signature_verification_algorithms);
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(pin));
    let mut config = match identity {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let pem = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
            let certs = CertificateDer::pem_slice_iter(&pem).collect::<Result<Vec<_>, _>>()?;
            let key = PrivateKeyDer::from_pem_slice(&pem)?;
            builder.with_client_auth_cert(certs, key)?
        }
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// Connects to `target` (`unix|path` or `tcp|host:port`), with TLS when `server_cert` is given.
async fn connect(target: &str, server_cert: Option<&str>, identity: Option<&Path>) -> io::Result<Pin<Box<dyn Io>>> {
    let (network, address) = target.split_once('|').ok_or_else(|| io::Error::other("target: network|address"))?;
    let raw: Pin<Box<dyn Io>> = match network {
        "unix" => Box::pin(tokio::net::UnixStream::connect(address).await?),
        "tcp" => Box::pin(tokio::net::TcpStream::connect(address).await?),
        other => return Err(io::Error::other(format!("network {other:?}"))),
    };
    match server_cert {
        None => Ok(raw),
        Some(cert) => {
            let config = tls_config(cert, identity).map_err(io::Error::other)?;
            let name = ServerName::try_from("localhost").map_err(io::Error::other)?;
            let tls = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, raw).await?;
            Ok(Box::pin(tls))
        }
    }
}

/// Bytes in, bytes out: the RPCs are called with hand-made messages.
#[derive(Debug, Clone, Default)]
struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }
    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut tonic::codec::EncodeBuf<'_>) -> Result<(), tonic::Status> {
        bytes::BufMut::put_slice(dst, &item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut tonic::codec::DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        let mut v = vec![0; bytes::Buf::remaining(src)];
        bytes::Buf::copy_to_slice(src, &mut v);
        Ok(Some(v))
    }
}

/// Calls the unary RPC `path` (an empty request) and returns the answer's bytes.
async fn call(target: &str, server_cert: Option<&str>, identity: Option<&Path>, path: &str) -> Result<Vec<u8>> {
    let (target, server_cert, identity) =
        (target.to_owned(), server_cert.map(str::to_owned), identity.map(Path::to_path_buf));
    let connector = tower::service_fn(move |_: tonic::transport::Uri| {
        let (target, server_cert, identity) = (target.clone(), server_cert.clone(), identity.clone());
        async move {
            let io = connect(&target, server_cert.as_deref(), identity.as_deref()).await?;
            Ok::<_, io::Error>(hyper_util::rt::TokioIo::new(io))
        }
    });
    let channel = tonic::transport::Endpoint::from_static("http://localhost")
        .connect_timeout(WAIT)
        .timeout(WAIT)
        .connect_with_connector(connector)
        .await
        .context("connect")?;
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.context("ready")?;
    let path: tonic::codegen::http::uri::PathAndQuery = path.parse()?;
    let answer = grpc.unary(tonic::Request::new(Vec::new()), path, RawCodec).await.context("RPC")?;
    Ok(answer.into_inner())
}

/// Makes the RPC `GetMetadata`: `Ok` only if the provider answered it.
async fn get_metadata(target: &str, server_cert: Option<&str>, identity: Option<&Path>) -> Result<()> {
    let answer = call(target, server_cert, identity, "/tfplugin6.Provider/GetMetadata").await?;
    if !String::from_utf8_lossy(&answer).contains("baton_service") {
        bail!("GetMetadata answered without baton_service: {answer:?}");
    }
    Ok(())
}

fn run<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime").block_on(f)
}

// ---- the tests -----------------------------------------------------------------------------

/// Also this binary's client mode: with `BATON_TEST_RPC_TARGET` set it only makes the RPC and
/// prints the result (that is how it runs as `nobody`).
#[test]
fn the_client_makes_an_rpc_in_each_mode_as_the_owner() {
    if let Ok(target) = std::env::var(CLIENT_TARGET) {
        let server_cert = std::env::var(CLIENT_SERVER_CERT).ok();
        let identity = std::env::var_os(CLIENT_IDENTITY).map(PathBuf::from);
        match run(get_metadata(&target, server_cert.as_deref(), identity.as_deref())) {
            Ok(()) => println!("{RESULT}ok"),
            Err(e) => println!("{RESULT}failed: {e:#}"),
        }
        return;
    }
    // The owner (root, as Terraform) gets through in both modes, through the same client mode
    // that `nobody` runs: so the refusals below are the provider's doing, not the client's.
    need_root();
    let dir = scratch();
    let plain = Provider::start(&[], dir.path());
    assert_eq!(client_as(None, &plain.target(), None, None), Ok(()), "{}", plain.log());
    plain.shutdown(None);

    let (cert, identity) = client_identity(dir.path());
    let tls = Provider::start(&[("PLUGIN_CLIENT_CERT", &cert)], dir.path());
    assert_eq!(client_as(None, &tls.target(), Some(&tls.hs.cert), Some(&identity)), Ok(()), "{}", tls.log());
    tls.shutdown(Some(&identity));
}

/// The reproduction: without TLS (`TF_DISABLE_PLUGIN_TLS=1` leaves `PLUGIN_CLIENT_CERT`
/// empty) the provider served plaintext gRPC on 127.0.0.1, and `nobody` drove it.
#[test]
fn without_tls_another_uid_cannot_reach_the_provider() {
    need_root();
    let dir = scratch();
    for client_cert in [None, Some("")] {
        let envs: Vec<(&str, &str)> = client_cert.map(|c| ("PLUGIN_CLIENT_CERT", c)).into_iter().collect();
        let p = Provider::start(&envs, dir.path());
        let refused = client_as(Some(OTHER_UID), &p.target(), None, None)
            .expect_err(&format!("uid {OTHER_UID} made an RPC to the provider at {}", p.target()));
        assert_eq!(p.hs.network, "unix", "plaintext is served on a unix socket only: {:?}", p.hs);
        assert!(refused.contains("Permission denied"), "refused by the socket's private directory: {refused}");
        // Even knowing the path, nobody cannot reach the socket: its directory is 0700.
        let socket = Path::new(&p.hs.address);
        let private = socket.parent().expect("socket directory");
        let meta = std::fs::symlink_metadata(private).expect("socket directory");
        assert!(meta.is_dir(), "{}", private.display());
        assert_eq!(meta.mode() & 0o777, 0o700, "{}", private.display());
        assert_eq!(meta.uid(), rustix::process::geteuid().as_raw(), "owned by the provider's user");
        assert_eq!(private.parent(), Some(dir.path()), "in TMPDIR");
        p.shutdown(None);
    }
}

/// The sockets of `pid`: their inodes.
fn socket_inodes(pid: u32) -> Vec<String> {
    let mut inodes = Vec::new();
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd")).expect("/proc/PID/fd").flatten() {
        if let Ok(link) = std::fs::read_link(fd.path()) {
            let link = link.to_string_lossy().into_owned();
            if let Some(inode) = link.strip_prefix("socket:[").and_then(|s| s.strip_suffix(']')) {
                inodes.push(inode.to_owned());
            }
        }
    }
    inodes
}

/// The lines of `/proc/net/<table>` for the sockets `inodes` (the inode column).
fn sockets_in(table: &str, inode_column: usize, inodes: &[String]) -> Vec<String> {
    let text = std::fs::read_to_string(format!("/proc/net/{table}")).expect("/proc/net");
    text.lines()
        .skip(1)
        .filter(|l| l.split_whitespace().nth(inode_column).is_some_and(|i| inodes.iter().any(|x| x == i)))
        .map(str::to_owned)
        .collect()
}

#[test]
fn without_tls_the_provider_opens_no_tcp_port_and_announces_its_unix_socket() {
    need_root();
    let dir = scratch();
    let p = Provider::start(&[], dir.path());
    assert_eq!(p.hs.network, "unix", "{:?}", p.hs);
    assert!(p.hs.cert.is_empty(), "no server certificate without TLS: {:?}", p.hs);
    let inodes = socket_inodes(p.child.id());
    let tcp: Vec<String> = ["tcp", "tcp6"].iter().flat_map(|t| sockets_in(t, 9, &inodes)).collect();
    assert!(tcp.is_empty(), "the provider holds TCP sockets:\n{}", tcp.join("\n"));
    let unix = sockets_in("unix", 6, &inodes);
    assert!(
        unix.iter().any(|l| l.ends_with(&format!(" {}", p.hs.address))),
        "the announced socket is the provider's: {unix:?} {:?}",
        p.hs
    );
    let socket = std::fs::symlink_metadata(&p.hs.address).expect("the socket");
    assert_eq!(socket.mode() & 0o777, 0o600, "the socket itself is the owner's only");
    let private = Path::new(&p.hs.address).parent().expect("directory").to_path_buf();
    p.shutdown(None);
    assert!(!private.exists(), "the socket's directory is removed on exit: {}", private.display());
    assert_eq!(std::fs::read_dir(dir.path()).expect("scratch").flatten().filter(|e| e.path().is_dir()).count(), 0);
}

#[test]
fn with_tls_another_uid_without_the_client_certificate_cannot_make_an_rpc() {
    need_root();
    let dir = scratch();
    let (cert, identity) = client_identity(dir.path());
    let p = Provider::start(&[("PLUGIN_CLIENT_CERT", &cert)], dir.path());
    assert_eq!(p.hs.network, "tcp", "{:?}", p.hs);
    assert!(p.hs.address.starts_with("127.0.0.1:"), "{:?}", p.hs);
    assert!(p.hs.cert.len() > 50, "the server certificate is announced: {:?}", p.hs);
    // Plaintext gRPC, TLS without a certificate, and TLS with another certificate.
    let refused = client_as(Some(OTHER_UID), &p.target(), None, None);
    assert!(refused.is_err(), "uid {OTHER_UID} made a plaintext RPC over TCP");
    let refused = client_as(Some(OTHER_UID), &p.target(), Some(&p.hs.cert), None);
    assert!(refused.is_err(), "uid {OTHER_UID} made an RPC over TLS without a client certificate");
    let (_, other) = client_identity(dir.path());
    std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let refused = client_as(Some(OTHER_UID), &p.target(), Some(&p.hs.cert), Some(&other));
    assert!(refused.is_err(), "uid {OTHER_UID} made an RPC over TLS with its own certificate");
    let log = p.log();
    assert!(log.matches("refused a TLS client").count() >= 2, "the refusals are logged:\n{log}");
    p.shutdown(Some(&identity));
}

#[test]
fn plugin_unix_socket_dir_gets_a_fresh_private_subdirectory() {
    need_root();
    let dir = scratch();
    let sockets = dir.path().join("sockets");
    std::fs::create_dir(&sockets).expect("mkdir");
    std::fs::set_permissions(&sockets, std::fs::Permissions::from_mode(0o1777)).expect("chmod 1777");
    let socket_dir = sockets.to_str().expect("UTF-8");
    let a = Provider::start(&[("PLUGIN_UNIX_SOCKET_DIR", socket_dir)], dir.path());
    let b = Provider::start(&[("PLUGIN_UNIX_SOCKET_DIR", socket_dir)], dir.path());
    for p in [&a, &b] {
        let private = Path::new(&p.hs.address).parent().expect("directory");
        assert_eq!(private.parent(), Some(sockets.as_path()), "{:?}", p.hs);
        assert_eq!(std::fs::symlink_metadata(private).expect("dir").mode() & 0o7777, 0o700, "{:?}", p.hs);
    }
    assert_ne!(Path::new(&a.hs.address).parent(), Path::new(&b.hs.address).parent(), "a fresh directory each");
    assert_eq!(
        client_as(Some(OTHER_UID), &a.target(), None, None).map_err(|e| e.contains("Permission denied")),
        Err(true)
    );
    a.shutdown(None);
    b.shutdown(None);
    assert_eq!(std::fs::read_dir(&sockets).expect("sockets").count(), 0, "both directories removed");
    // Empty variables mean the default, /tmp.
    let c = Provider::start(&[("PLUGIN_UNIX_SOCKET_DIR", ""), ("TMPDIR", "")], dir.path());
    assert_eq!(Path::new(&c.hs.address).parent().and_then(Path::parent), Some(Path::new("/tmp")), "{:?}", c.hs);
    c.shutdown(None);
}

#[test]
fn sigterm_and_sigint_leave_no_socket_directory() {
    need_root();
    let dir = scratch();
    let mut p = Provider::start(&[], dir.path());
    let private = Path::new(&p.hs.address).parent().expect("directory").to_path_buf();
    // SIGINT is ignored, as go-plugin's servers do: Terraform, which got it too, ends the plugin.
    let pid = rustix::process::Pid::from_raw(p.child.id() as i32).expect("pid");
    rustix::process::kill_process(pid, rustix::process::Signal::INT).expect("SIGINT");
    std::thread::sleep(Duration::from_millis(300));
    assert!(p.child.try_wait().expect("wait").is_none(), "SIGINT ended the provider\n{}", p.log());
    assert_eq!(run(get_metadata(&p.target(), None, None)).map_err(|e| format!("{e:#}")), Ok(()));
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("SIGTERM");
    let status = wait(&mut p.child).expect("the provider exits on SIGTERM");
    assert!(status.success(), "{status}\n{}", p.log());
    assert!(!private.exists(), "SIGTERM removes the socket's directory: {}", private.display());
}

#[test]
fn an_unusable_socket_directory_is_a_clear_error() {
    need_root();
    let dir = scratch();
    let missing = dir.path().join("missing");
    let long = dir.path().join("x".repeat(100));
    std::fs::create_dir(&long).expect("mkdir");
    let pipe = dir.path().join("a|b");
    std::fs::create_dir(&pipe).expect("mkdir");
    // Another user's directory, and a directory others may write without the sticky bit: they
    // could swap the fresh directory for their own before the socket is bound in it.
    let foreign = dir.path().join("foreign");
    let open = dir.path().join("open");
    std::fs::create_dir(&foreign).expect("mkdir");
    std::os::unix::fs::chown(&foreign, Some(OTHER_UID), Some(OTHER_UID)).expect("chown");
    std::fs::create_dir(&open).expect("mkdir");
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).expect("chmod 0777");
    for (socket_dir, says) in [
        (&missing, "PLUGIN_UNIX_SOCKET_DIR"),
        (&long, "longer than a unix socket address"),
        (&pipe, "handshake"),
        (&foreign, "owned by uid 65534, not by root"),
        (&open, "without the sticky bit"),
    ] {
        let envs = [("PLUGIN_UNIX_SOCKET_DIR", socket_dir.to_str().expect("UTF-8"))];
        let (e, log) =
            Provider::try_start(&envs, dir.path()).err().unwrap_or_else(|| panic!("served in {socket_dir:?}"));
        assert!(log.contains(says), "{socket_dir:?}: {e:#}: the error says {says:?}:\n{log}");
        assert!(log.contains(&socket_dir.display().to_string()), "the error names the directory:\n{log}");
    }
    let left: Vec<PathBuf> = [&long, &pipe, &foreign, &open]
        .iter()
        .flat_map(|d| std::fs::read_dir(d).expect("dir"))
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "nothing left behind: {left:?}");
}
