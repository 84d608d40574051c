//! `make bench`, the Terraform part: figures of `terraform-provider-baton` against a sandboxed
//! real systemd, added to `bench-report.md` (replacing an earlier Terraform section):
//! - wall time of `terraform plan` and `terraform apply` (create, version bump, destroy) with 1
//!   and with 50 services (the demo app on distinct ports);
//! - the provider's own time per RPC: the round trip of tfplugin6 calls made directly over gRPC
//!   (TCP and mutual TLS, as Terraform calls them: the provider serves plaintext only on a unix
//!   socket), with `TCP_NODELAY` as shipped and with Nagle's algorithm back on, which shows what
//!   the option saves; the data source's read is among them.
//!
//! The RPC client runs inside the sandbox (where the provider reaches systemd): this binary
//! re-executes itself there with `--rpc-client`.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use baton_integration::{bin, terraform_command, Host};
use serde_json::{json, Value};

const REPORT: &str = "bench-report.md";
const HEADING: &str = "## Terraform: `terraform-provider-baton`";
const MAGIC_COOKIE: &str = "d602bf8f470bc67ca7faa0386276bbdd4330efaf76d1a219cb4d6991ca9872b2";
/// Calls per RPC kind.
const CALLS: usize = 400;
const BASE_PORT: u16 = 20000;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let result = if args.get(1).map(String::as_str) == Some("--rpc-client") { rpc_client() } else { run() };
    if let Err(e) = result {
        eprintln!("terraform bench failed: {e:#}");
        std::process::exit(1);
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn percentile(mut v: Vec<Duration>, p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

/// A Terraform working directory run inside the sandbox.
struct Tf<'a> {
    host: &'a Host,
    dir: PathBuf,
    rc: PathBuf,
}

impl<'a> Tf<'a> {
    fn new(host: &'a Host, root: &Path, label: &str) -> Result<Tf<'a>> {
        let dir = root.join(label);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("home"))?;
        let rc = dir.join("terraformrc");
        let provider = bin("terraform-provider-baton");
        let overrides = provider.parent().context("provider dir")?;
        std::fs::write(
            &rc,
            format!(
                "provider_installation {{\n  dev_overrides {{\n    \"baton/baton\" = \"{}\"\n  }}\n  direct {{}}\n}}\n",
                overrides.display()
            ),
        )?;
        Ok(Tf { host, dir, rc })
    }

    fn timed(&self, args: &[&str]) -> Result<(Duration, String)> {
        let t0 = Instant::now();
        let out = terraform_command(self.host, Path::new("terraform"), &self.dir, &self.rc)
            .args(args)
            .output()
            .context("run terraform (is it installed?)")?;
        let took = t0.elapsed();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            bail!("terraform {args:?} failed:\n{text}\n{}", String::from_utf8_lossy(&out.stderr));
        }
        Ok((took, text))
    }
}

/// `n` demo services on distinct ports, all at `version`.
fn config(n: usize, version: &str) -> String {
    let demo = bin("baton-demo");
    let mut s = String::from(
        "terraform {\n  required_providers {\n    baton = { source = \"baton/baton\" }\n  }\n}\n\nprovider \"baton\" {}\n",
    );
    for i in 0..n {
        let port = BASE_PORT + i as u16;
        let _ = write!(
            s,
            r#"
resource "baton_service" "s{i}" {{
  name             = "bench{i}"
  version          = "{version}"
  exec_start       = ["{}", "--port", "{port}", "--version", "{version}", "--linger-ms", "0"]
  port             = {port}
  health           = {{ tcp = true, timeout_sec = 20, interval_ms = 20 }}
  timeout_stop_sec = 5
  keep             = 1
}}
"#,
            demo.display()
        );
    }
    s
}

struct Row {
    services: usize,
    create: Duration,
    plan: Duration,
    bump: Duration,
    destroy: Duration,
}

fn terraform_runs(h: &Host, root: &Path, n: usize) -> Result<Row> {
    let tf = Tf::new(h, root, &format!("n{n}"))?;
    std::fs::write(tf.dir.join("main.tf"), config(n, "v1"))?;
    let apply = ["apply", "-auto-approve", "-input=false", "-no-color"];
    let (create, out) = tf.timed(&apply)?;
    ensure!(out.contains(&format!("Resources: {n} added, 0 changed")), "{out}");
    let mut plans = Vec::new();
    for _ in 0..3 {
        let (took, out) = tf.timed(&["plan", "-input=false", "-no-color"])?;
        ensure!(out.contains("No changes."), "{out}");
        plans.push(took);
    }
    std::fs::write(tf.dir.join("main.tf"), config(n, "v2"))?;
    let (bump, out) = tf.timed(&apply)?;
    ensure!(out.contains(&format!("Resources: 0 added, {n} changed")), "{out}");
    let (destroy, out) = tf.timed(&["destroy", "-auto-approve", "-input=false", "-no-color"])?;
    ensure!(out.contains(&format!("Resources: {n} destroyed")), "{out}");
    Ok(Row { services: n, create, plan: median(plans), bump, destroy })
}

fn run() -> Result<()> {
    let h = Host::boot("tf-bench");
    let root = baton_integration::bin_dir().join("tf-bench");
    let terraform = Command::new("terraform").arg("version").output().context("terraform is not installed")?;
    let tf_version = String::from_utf8_lossy(&terraform.stdout).lines().next().unwrap_or("").to_owned();

    let mut rows = Vec::new();
    for n in [1, 50] {
        eprintln!("terraform with {n} service(s)");
        rows.push(terraform_runs(&h, &root, n)?);
    }

    // Per-RPC figures, measured inside the sandbox; a service to read first.
    let tf = Tf::new(&h, &root, "rpc")?;
    std::fs::write(tf.dir.join("main.tf"), config(1, "v1"))?;
    tf.timed(&["apply", "-auto-approve", "-input=false", "-no-color"])?;
    let me = std::env::current_exe()?;
    let mut rpc = Vec::new();
    for nodelay in ["1", "0"] {
        let out =
            h.sb.command(&me)
                .arg("--rpc-client")
                .env("BATON_PROVIDER_TCP_NODELAY", nodelay)
                .env("BATON_BENCH_PROVIDER", bin("terraform-provider-baton"))
                .env("BATON_BENCH_DEMO", bin("baton-demo"))
                .output()
                .context("run the RPC client inside the sandbox")?;
        ensure!(out.status.success(), "RPC client failed: {}", String::from_utf8_lossy(&out.stderr));
        let v: Value = serde_json::from_slice(&out.stdout).context("RPC client output")?;
        rpc.push((nodelay == "1", v));
    }
    tf.timed(&["destroy", "-auto-approve", "-input=false", "-no-color"])?;

    let mut section = String::new();
    writeln!(section, "{HEADING}\n")?;
    writeln!(
        section,
        "{tf_version}, offline (`dev_overrides`), inside the sandbox; each service is the demo app on its own \
         port with a TCP probe every 20 ms; default parallelism (10). Plan: median of 3 runs.\n"
    )?;
    writeln!(
        section,
        "| services | `apply` (create) | `plan` (no changes) | `apply` (version bump: handovers) | `destroy` |"
    )?;
    writeln!(section, "|---|---|---|---|---|")?;
    for r in &rows {
        writeln!(
            section,
            "| {} | {:.2} s | {:.2} s | {:.2} s | {:.2} s |",
            r.services,
            r.create.as_secs_f64(),
            r.plan.as_secs_f64(),
            r.bump.as_secs_f64(),
            r.destroy.as_secs_f64()
        )?;
    }
    writeln!(
        section,
        "\n### Provider time per RPC ({CALLS} calls of each, one connection, gRPC over mutual TLS)\n\n\
         Round trip of each tfplugin6 call as a client sees it: transport, decoding, the provider's work, \
         encoding. `ReadResource` and `ReadDataSource` include baton's read of the unit directory and systemd \
         (D-Bus).\n"
    )?;
    writeln!(section, "| RPC | median (`TCP_NODELAY`, as shipped) | p99 | median with Nagle on | p99 |")?;
    writeln!(section, "|---|---|---|---|---|")?;
    let (on, off) = (&rpc[0].1, &rpc[1].1);
    for k in ["GetProviderSchema", "ValidateResourceConfig", "PlanResourceChange", "ReadResource", "ReadDataSource"] {
        writeln!(
            section,
            "| `{k}` | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms |",
            on[k]["median_ms"].as_f64().unwrap_or(f64::NAN),
            on[k]["p99_ms"].as_f64().unwrap_or(f64::NAN),
            off[k]["median_ms"].as_f64().unwrap_or(f64::NAN),
            off[k]["p99_ms"].as_f64().unwrap_or(f64::NAN)
        )?;
    }
    writeln!(section)?;
    write_section(Path::new(REPORT), &section)?;
    print!("{section}");
    eprintln!("added to {REPORT}");
    Ok(())
}

/// Puts `section` in the report in place of an earlier one (or at the end).
fn write_section(path: &Path, section: &str) -> Result<()> {
    let old = std::fs::read_to_string(path).unwrap_or_default();
    let new = match old.find(HEADING) {
        Some(start) => {
            let rest = &old[start + HEADING.len()..];
            let end = rest.find("\n## ").map(|i| start + HEADING.len() + i + 1).unwrap_or(old.len());
            format!("{}{section}{}", &old[..start], &old[end..])
        }
        None if old.is_empty() => section.to_owned(),
        None => format!("{}\n{section}", old.trim_end()),
    };
    std::fs::write(path, new).with_context(|| format!("write {}", path.display()))
}

// ---- the RPC client (runs inside the sandbox) ----

/// Protocol buffers by hand: a length-delimited field.
fn field(tag: u32, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    varint(&mut out, u64::from(tag << 3 | 2));
    varint(&mut out, bytes.len() as u64);
    out.extend_from_slice(bytes);
    out
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

/// A `DynamicValue` holding `v` as MessagePack.
fn dynamic(v: &Value) -> Result<Vec<u8>> {
    Ok(field(1, &rmp_serde::to_vec_named(v)?))
}

/// The object Terraform sends for the bench's service `bench0` (every attribute, nulls included).
fn object(demo: &str, computed: bool) -> Value {
    let port = BASE_PORT;
    let mut v = json!({
        "id": null, "name": "bench0", "version": "v1",
        "exec_start": [demo, "--port", port.to_string(), "--version", "v1", "--linger-ms", "0"],
        "port": port,
        "health": {"http": null, "tcp": true, "timeout_sec": 20, "interval_ms": 20, "observe_sec": null},
        "service_type": null, "user": null, "group": null, "working_directory": null, "environment": null,
        "timeout_stop_sec": 5, "restart": null, "directives": null, "template": null, "state": null,
        "enabled": null, "keep": 1, "migrate_requests": null, "unit_dir": null, "unit": null, "unit_text": null,
    });
    if computed {
        for (k, d) in [
            ("id", json!("bench0")),
            ("service_type", json!("exec")),
            ("restart", json!("always")),
            ("state", json!("started")),
            ("enabled", json!(true)),
            ("migrate_requests", json!(true)),
            ("unit_dir", json!("/etc/systemd/system")),
            ("unit", json!("bench0-v1.service")),
        ] {
            v[k] = d;
        }
        v["health"]["observe_sec"] = json!(0);
    }
    v
}

#[derive(Debug, Clone, Copy, Default)]
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

/// Trusts exactly the server certificate of the handshake line, as go-plugin's client does.
#[derive(Debug)]
struct ServerPin(Vec<u8>, rustls::crypto::WebPkiSupportedAlgorithms);

impl rustls::client::danger::ServerCertVerifier for ServerPin {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.0.as_slice() {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.1)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.1)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.1.supported_schemes()
    }
}

/// Starts the provider as Terraform does, with AutoMTLS (a client certificate of our own), and
/// times each RPC kind over TCP and TLS, as Terraform calls them.
fn rpc_client() -> Result<()> {
    use base64::Engine as _;
    let provider = std::env::var("BATON_BENCH_PROVIDER").context("BATON_BENCH_PROVIDER")?;
    let demo = std::env::var("BATON_BENCH_DEMO").context("BATON_BENCH_DEMO")?;
    let client = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])?;
    let mut child = Command::new(&provider)
        .env("TF_PLUGIN_MAGIC_COOKIE", MAGIC_COOKIE)
        .env("PLUGIN_PROTOCOL_VERSIONS", "6")
        .env("PLUGIN_CLIENT_CERT", client.cert.pem())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("start the provider")?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().context("stdout")?).read_line(&mut line)?;
    let fields: Vec<&str> = line.trim().split('|').collect();
    ensure!(fields.len() == 6 && fields[2] == "tcp", "handshake line {line:?}");
    let addr = fields[3].to_owned();
    let server_cert = base64::engine::general_purpose::STANDARD_NO_PAD.decode(fields[5])?;
    let crypto = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let pin = ServerPin(server_cert, crypto.signature_verification_algorithms);
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(client.key_pair.serialize_der().into());
    let mut tls = rustls::ClientConfig::builder_with_provider(crypto)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(std::sync::Arc::new(pin))
        .with_client_auth_cert(vec![client.cert.der().clone()], key)?;
    tls.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(tls));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let result = rt.block_on(async {
        let connect = tower::service_fn(move |_: tonic::transport::Uri| {
            let (addr, connector) = (addr.clone(), connector.clone());
            async move {
                let tcp = tokio::net::TcpStream::connect(&addr).await?;
                tcp.set_nodelay(true)?;
                let name = rustls::pki_types::ServerName::try_from("localhost").map_err(std::io::Error::other)?;
                let stream = connector.connect(name, tcp).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
            }
        });
        let channel =
            tonic::transport::Endpoint::from_static("http://localhost").connect_with_connector(connect).await?;
        let mut grpc = tonic::client::Grpc::new(channel);
        let name = field(1, b"baton_service");
        let config = object(&demo, false);
        let state = object(&demo, true);
        // The data source `baton_service` of the same service.
        let data_config = json!({
            "id": null, "name": "bench0", "unit_dir": null, "version": null, "state": null, "unit": null,
            "enabled": null, "main_pid": null, "releases": null,
        });
        let null = field(1, &[0xc0]);
        let meta = field(1, &[0x80]);
        let calls: Vec<(&str, Vec<u8>)> = vec![
            ("GetProviderSchema", Vec::new()),
            ("ValidateResourceConfig", [name.clone(), field(2, &dynamic(&config)?)].concat()),
            (
                "PlanResourceChange",
                [
                    name.clone(),
                    field(2, &null),
                    field(3, &dynamic(&config)?),
                    field(4, &dynamic(&config)?),
                    field(6, &meta),
                ]
                .concat(),
            ),
            ("ReadResource", [name.clone(), field(2, &dynamic(&state)?), field(4, &meta)].concat()),
            ("ReadDataSource", [name.clone(), field(2, &dynamic(&data_config)?), field(3, &meta)].concat()),
        ];
        let mut out = serde_json::Map::new();
        for (rpc, body) in calls {
            let path: tonic::codegen::http::uri::PathAndQuery = format!("/tfplugin6.Provider/{rpc}").parse()?;
            let mut times = Vec::with_capacity(CALLS);
            for i in 0..CALLS + 20 {
                grpc.ready().await?;
                let t0 = Instant::now();
                let resp = grpc.unary(tonic::Request::new(body.clone()), path.clone(), RawCodec).await?;
                let took = t0.elapsed();
                let answer = resp.get_ref();
                match rpc {
                    // No diagnostics: an empty message.
                    "ValidateResourceConfig" => ensure!(answer.is_empty(), "{rpc}: diagnostics {answer:?}"),
                    // The planned or new state first (field 1), and no diagnostics.
                    "PlanResourceChange" | "ReadResource" | "ReadDataSource" => {
                        ensure!(answer.first() == Some(&0x0a), "{rpc}: no state in {answer:?}");
                        ensure!(!String::from_utf8_lossy(answer).contains("rror"), "{rpc}: {answer:?}");
                    }
                    _ => ensure!(!answer.is_empty(), "{rpc}: empty answer"),
                }
                if i >= 20 {
                    times.push(took);
                }
            }
            out.insert(
                rpc.to_owned(),
                json!({"median_ms": ms(median(times.clone())), "p99_ms": ms(percentile(times, 0.99))}),
            );
        }
        Ok::<_, anyhow::Error>(Value::Object(out))
    });
    let _ = child.kill();
    let _ = child.wait();
    println!("{}", result?);
    Ok(())
}
