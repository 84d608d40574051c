//! AutoMTLS against real TLS clients (tokio-rustls) on 127.0.0.1: only the pinned client
//! certificate, with its key, gets in; P-521 client keys as Terraform's.

use std::str::FromStr as _;
use std::sync::Arc;
use std::time::Duration;

use p521::elliptic_curve::Generate as _;
use rustls::client::danger::{ServerCertVerified, ServerCertVerifier};
use rustls::client::ResolvesClientCert;
use rustls::pki_types::{ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, SignatureAlgorithm, SupportedProtocolVersion};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_stream::StreamExt as _;
use x509_cert::der::{pem::LineEnding, EncodePem as _};

use super::*;

const WAIT: Duration = Duration::from_secs(10);
const TLS13: &SupportedProtocolVersion = &rustls::version::TLS13;
const TLS12: &SupportedProtocolVersion = &rustls::version::TLS12;

/// A self-signed ECDSA P-521/SHA-512 certificate, as go-plugin makes Terraform's.
struct P521Cert {
    der: CertificateDer<'static>,
    pem: String,
    key: Arc<p521::ecdsa::SigningKey>,
}

fn p521_cert() -> P521Cert {
    use x509_cert::builder::{profile::cabf::Root, Builder as _, CertificateBuilder};
    let key = p521::ecdsa::SigningKey::generate();
    let spki = x509_cert::spki::SubjectPublicKeyInfoOwned::from_key(key.verifying_key()).expect("SPKI");
    let subject = x509_cert::name::Name::from_str("CN=localhost,O=HashiCorp,C=US").expect("name");
    let profile = Root::new(false, subject).expect("profile");
    let validity = x509_cert::time::Validity::from_now(Duration::from_secs(3600)).expect("validity");
    let serial = x509_cert::serial_number::SerialNumber::from(1u32);
    let cert = CertificateBuilder::new(profile, serial, validity, spki)
        .expect("builder")
        .build::<_, p521::ecdsa::DerSignature>(&key)
        .expect("certificate");
    let der = x509_cert::der::Encode::to_der(&cert).expect("DER");
    let pem = cert.to_pem(LineEnding::LF).expect("PEM");
    P521Cert { der: CertificateDer::from(der), pem, key: Arc::new(key) }
}

/// A client's P-521 key for rustls (whose ring provider cannot sign with P-521), signing with
/// the hash of `scheme`.
#[derive(Clone)]
struct P521Key(Arc<p521::ecdsa::SigningKey>, SignatureScheme);

impl std::fmt::Debug for P521Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "P521Key({:?})", self.1)
    }
}

impl rustls::sign::SigningKey for P521Key {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn rustls::sign::Signer>> {
        offered.contains(&self.1).then(|| Box::new(self.clone()) as Box<dyn rustls::sign::Signer>)
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        SignatureAlgorithm::ECDSA
    }
}

impl rustls::sign::Signer for P521Key {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        Ok(sign(&self.0, self.1, message))
    }

    fn scheme(&self) -> SignatureScheme {
        self.1
    }
}

/// A DER ECDSA signature of `message` by `key`, with the hash of `scheme`.
fn sign(key: &p521::ecdsa::SigningKey, scheme: SignatureScheme, message: &[u8]) -> Vec<u8> {
    use p521::ecdsa::signature::hazmat::PrehashSigner as _;
    use sha2::Digest as _;
    let prehash = match scheme {
        SignatureScheme::ECDSA_NISTP256_SHA256 => sha2::Sha256::digest(message).to_vec(),
        SignatureScheme::ECDSA_NISTP384_SHA384 => sha2::Sha384::digest(message).to_vec(),
        _ => sha2::Sha512::digest(message).to_vec(),
    };
    let signature: p521::ecdsa::DerSignature = key.sign_prehash(&prehash).expect("sign");
    signature.as_bytes().to_vec()
}

/// Presents `cert` and signs with `key` (which need not be the certificate's).
#[derive(Debug)]
struct Present(Arc<CertifiedKey>);

impl ResolvesClientCert for Present {
    fn resolve(&self, _: &[&[u8]], _: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Trusts exactly the server certificate of the handshake line, as go-plugin's client does.
#[derive(Debug)]
struct ServerPin(CertificateDer<'static>, WebPkiSupportedAlgorithms);

impl ServerCertVerifier for ServerPin {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.0.as_ref() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer))
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

enum ClientAuth {
    None,
    /// A certificate and the P-521 key the client signs with (with SHA-512).
    P521(CertificateDer<'static>, Arc<p521::ecdsa::SigningKey>),
    /// The same, with the hash of another ECDSA scheme (TLS 1.2).
    P521With(CertificateDer<'static>, Arc<p521::ecdsa::SigningKey>, SignatureScheme),
    /// A certificate and key rustls's ring provider handles itself.
    Ring(CertificateDer<'static>, PrivateKeyDer<'static>),
}

fn client(server: &AutoMtls, version: &'static SupportedProtocolVersion, auth: ClientAuth) -> ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let pin = ServerPin(CertificateDer::from(server.cert_der.clone()), provider.signature_verification_algorithms);
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[version])
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(pin));
    let mut config = match auth {
        ClientAuth::None => builder.with_no_client_auth(),
        ClientAuth::P521(cert, key) => {
            let key = CertifiedKey::new(vec![cert], Arc::new(P521Key(key, SignatureScheme::ECDSA_NISTP521_SHA512)));
            builder.with_client_cert_resolver(Arc::new(Present(Arc::new(key))))
        }
        ClientAuth::P521With(cert, key, scheme) => {
            let key = CertifiedKey::new(vec![cert], Arc::new(P521Key(key, scheme)));
            builder.with_client_cert_resolver(Arc::new(Present(Arc::new(key))))
        }
        ClientAuth::Ring(cert, key) => builder.with_client_auth_cert(vec![cert], key).expect("client key"),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    config
}

/// Connects, says "ping" and expects "pong": an error if the server refused the client.
async fn ping(addr: std::net::SocketAddr, config: ClientConfig) -> io::Result<()> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").map_err(io::Error::other)?;
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await?;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    tls.write_all(b"ping").await?;
    tls.flush().await?;
    let mut answer = [0; 4];
    tls.read_exact(&mut answer).await?;
    if &answer != b"pong" {
        return Err(io::Error::other(format!("unexpected answer {answer:?}")));
    }
    Ok(())
}

/// Serves `server` on 127.0.0.1 and runs the client `config` against it: whether the client got
/// through, checked on both sides.
async fn accepted(server: &AutoMtls, config: ClientConfig) -> bool {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let mut incoming = server.incoming(listener, true);
    let client = tokio::spawn(ping(addr, config));
    let served = tokio::spawn(async move {
        let mut tls = incoming.next().await.expect("stream ended").expect("connection");
        let (tcp, session) = tls.get_ref();
        assert!(tcp.nodelay().expect("TCP_NODELAY"), "TCP_NODELAY off");
        assert_eq!(session.alpn_protocol(), Some(&b"h2"[..]));
        assert!(session.peer_certificates().is_some_and(|c| !c.is_empty()), "no client certificate");
        let mut question = [0; 4];
        tls.read_exact(&mut question).await.expect("read");
        assert_eq!(&question, b"ping");
        tls.write_all(b"pong").await.expect("write");
        tls.flush().await.expect("flush");
    });
    let client = tokio::time::timeout(WAIT, client).await.expect("client timed out").expect("client task");
    match client {
        Ok(()) => {
            tokio::time::timeout(WAIT, served).await.expect("server timed out").expect("server side");
            true
        }
        Err(_) => {
            // The refused connection never reached the gRPC side.
            tokio::time::sleep(Duration::from_millis(200)).await;
            assert!(!served.is_finished(), "the server yielded a refused connection");
            served.abort();
            false
        }
    }
}

#[tokio::test]
async fn the_pinned_p521_client_gets_in_with_tls13_and_tls12() {
    let terraform = p521_cert();
    let server = AutoMtls::new(&terraform.pem).expect("AutoMTLS");
    for version in [TLS13, TLS12] {
        let auth = ClientAuth::P521(terraform.der.clone(), terraform.key.clone());
        assert!(accepted(&server, client(&server, version, auth)).await, "{version:?} refused");
    }
}

#[tokio::test]
async fn a_p521_key_may_sign_with_any_ecdsa_hash_in_tls12_only() {
    // TLS 1.2's ECDSA schemes name the hash alone (OpenSSL signs with SHA-384); TLS 1.3's name
    // the curve too.
    let terraform = p521_cert();
    let server = AutoMtls::new(&terraform.pem).expect("AutoMTLS");
    for scheme in [SignatureScheme::ECDSA_NISTP384_SHA384, SignatureScheme::ECDSA_NISTP256_SHA256] {
        let auth = || ClientAuth::P521With(terraform.der.clone(), terraform.key.clone(), scheme);
        assert!(accepted(&server, client(&server, TLS12, auth())).await, "{scheme:?} refused in TLS 1.2");
        assert!(!accepted(&server, client(&server, TLS13, auth())).await, "{scheme:?} accepted in TLS 1.3");
    }
}

#[tokio::test]
async fn another_valid_certificate_is_refused() {
    let terraform = p521_cert();
    let other = p521_cert();
    let server = AutoMtls::new(&terraform.pem).expect("AutoMTLS");
    for version in [TLS13, TLS12] {
        let auth = ClientAuth::P521(other.der.clone(), other.key.clone());
        assert!(!accepted(&server, client(&server, version, auth)).await, "{version:?} accepted");
    }
    // Nor one that rustls's provider handles itself.
    let rcgen::CertifiedKey { cert, key_pair } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("rcgen");
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_pair.serialize_der()));
    let auth = ClientAuth::Ring(cert.der().clone(), key);
    assert!(!accepted(&server, client(&server, TLS13, auth)).await);
}

#[tokio::test]
async fn a_client_without_a_certificate_is_refused() {
    let terraform = p521_cert();
    let server = AutoMtls::new(&terraform.pem).expect("AutoMTLS");
    for version in [TLS13, TLS12] {
        assert!(!accepted(&server, client(&server, version, ClientAuth::None)).await, "{version:?} accepted");
    }
}

#[tokio::test]
async fn the_pinned_certificate_without_its_key_is_refused() {
    let terraform = p521_cert();
    let thief = p521_cert();
    let server = AutoMtls::new(&terraform.pem).expect("AutoMTLS");
    for version in [TLS13, TLS12] {
        let auth = ClientAuth::P521(terraform.der.clone(), thief.key.clone());
        assert!(!accepted(&server, client(&server, version, auth)).await, "{version:?} accepted");
    }
}

#[tokio::test]
async fn other_schemes_go_to_the_crypto_provider() {
    // A P-256 client certificate: its signature is the ring provider's to check.
    let rcgen::CertifiedKey { cert, key_pair } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("rcgen");
    let server = AutoMtls::new(&cert.pem()).expect("AutoMTLS");
    for version in [TLS13, TLS12] {
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_pair.serialize_der()));
        let auth = ClientAuth::Ring(cert.der().clone(), key);
        assert!(accepted(&server, client(&server, version, auth)).await, "{version:?} refused");
    }
}

#[test]
fn the_verifier_offers_p521_first_and_the_providers_schemes() {
    let algorithms = rustls::crypto::ring::default_provider().signature_verification_algorithms;
    let verifier = PinnedClientCert::new(vec![p521_cert().der], algorithms);
    let schemes = verifier.supported_verify_schemes();
    assert_eq!(schemes.first(), Some(&SignatureScheme::ECDSA_NISTP521_SHA512));
    assert!(algorithms.supported_schemes().iter().all(|s| schemes.contains(s)));
    assert_eq!(schemes.len(), algorithms.supported_schemes().len() + 1);
    assert!(verifier.offer_client_auth() && verifier.client_auth_mandatory());
    assert!(verifier.root_hint_subjects().is_empty());
}

#[test]
fn p521_signatures_are_checked() {
    let c = p521_cert();
    let key = p521_key(&c.der).expect("certificate").expect("a P-521 key");
    for scheme in P521_TLS12_SCHEMES {
        let signature = sign(&c.key, scheme, b"handshake");
        assert!(verify_p521(&key, scheme, b"handshake", &signature).is_ok(), "{scheme:?}");
        assert!(verify_p521(&key, scheme, b"handshakE", &signature).is_err(), "{scheme:?}");
        // Another key's signature, and a signature that is not DER.
        assert!(verify_p521(&key, scheme, b"handshake", &sign(&p521_cert().key, scheme, b"handshake")).is_err());
        assert!(verify_p521(&key, scheme, b"handshake", &signature[1..]).is_err());
    }
    // The hash is the scheme's.
    let signature = sign(&c.key, SignatureScheme::ECDSA_NISTP384_SHA384, b"handshake");
    assert!(verify_p521(&key, SignatureScheme::ECDSA_NISTP521_SHA512, b"handshake", &signature).is_err());
    assert!(verify_p521(&key, SignatureScheme::ED25519, b"handshake", &signature).is_err());
    // A certificate whose key is not P-521 goes to the provider.
    let p256 = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("rcgen");
    assert!(p521_key(p256.cert.der()).expect("certificate").is_none());
    assert!(p521_key(&CertificateDer::from(vec![0x30, 0x00])).is_err());
}

#[test]
fn the_client_pem_must_hold_a_certificate() {
    assert!(AutoMtls::new("").is_err());
    assert!(AutoMtls::new("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n").is_err());
    let rcgen::CertifiedKey { key_pair, .. } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("rcgen");
    assert!(AutoMtls::new(&key_pair.serialize_pem()).is_err());
}
