//! go-plugin's AutoMTLS: the plugin's own TLS server, which accepts only Terraform.
//!
//! Terraform passes its client certificate (self-signed, ECDSA P-521) in `PLUGIN_CLIENT_CERT`
//! and reads the plugin's server certificate from the handshake line. A client gets through
//! only if it presents exactly that certificate and proves it holds its key: the handshake
//! signature (`CertificateVerify`) is checked against the certificate's public key, in TLS 1.3
//! and 1.2 alike. rustls's ring provider has no P-521, so ECDSA P-521/SHA-512 is verified with
//! RustCrypto's `p521` (and, in TLS 1.2, whose ECDSA schemes name the hash only, a P-521 key's
//! SHA-256 and SHA-384 signatures too); every other scheme goes to the provider's own
//! verification.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use p521::pkcs8::DecodePublicKey as _;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;

/// How long a client may take over its TLS handshake before it is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The TLS side of AutoMTLS: the server configuration and the certificate to announce.
#[derive(Debug, Clone)]
pub struct AutoMtls {
    config: Arc<rustls::ServerConfig>,
    /// The server certificate (DER), for the handshake line.
    pub cert_der: Vec<u8>,
}

impl AutoMtls {
    /// AutoMTLS for the client certificate in `PLUGIN_CLIENT_CERT`; `None` when it is unset or
    /// empty (`TF_DISABLE_PLUGIN_TLS`): the server then serves plaintext on a private unix
    /// socket only, never on TCP (see [`crate::server`]).
    pub fn from_env() -> Result<Option<AutoMtls>> {
        let client = std::env::var("PLUGIN_CLIENT_CERT").unwrap_or_default();
        if client.trim().is_empty() {
            return Ok(None);
        }
        AutoMtls::new(&client).context("PLUGIN_CLIENT_CERT").map(Some)
    }

    /// A fresh self-signed server certificate, and the certificate(s) of `client_pem` as the only
    /// accepted clients.
    pub fn new(client_pem: &str) -> Result<AutoMtls> {
        let pinned = CertificateDer::pem_slice_iter(client_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .context("read the client certificate (PEM)")?;
        if pinned.is_empty() {
            bail!("no certificate in the client certificate PEM");
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = PinnedClientCert::new(pinned, provider.signature_verification_algorithms);

        let (cert_der, key_der) = server_certificate()?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .context("TLS versions")?
            .with_client_cert_verifier(Arc::new(verifier))
            .with_single_cert(vec![CertificateDer::from(cert_der.clone())], key_der)
            .context("TLS server certificate")?;
        // gRPC is HTTP/2, and grpc-go insists on ALPN.
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(AutoMtls { config: Arc::new(config), cert_der })
    }

    /// The accepted connections of `listener`, TLS handshakes done, as tonic's
    /// `serve_with_incoming` takes them.
    ///
    /// Every handshake runs in its own task, so a slow or hostile client holds up no one; a
    /// client that fails its handshake (no certificate, another certificate, a bad signature) is
    /// logged and dropped, and never reaches the gRPC server. The accept loop ends with the
    /// stream.
    pub fn incoming(&self, listener: TcpListener, nodelay: bool) -> ReceiverStream<io::Result<TlsStream<TcpStream>>> {
        let acceptor = TlsAcceptor::from(self.config.clone());
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            loop {
                let tcp = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((tcp, _)) => tcp,
                        Err(e) => {
                            // Out of file descriptors and the like: wait, and try again.
                            eprintln!("terraform-provider-baton: accept: {e}");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    },
                    () = tx.closed() => return,
                };
                if let Err(e) = tcp.set_nodelay(nodelay) {
                    eprintln!("terraform-provider-baton: TCP_NODELAY: {e}");
                }
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send(Ok(tls)).await;
                        }
                        Ok(Err(e)) => eprintln!("terraform-provider-baton: refused a TLS client: {e}"),
                        Err(_) => eprintln!("terraform-provider-baton: refused a TLS client: handshake timed out"),
                    }
                });
            }
        });
        ReceiverStream::new(rx)
    }
}

/// A fresh self-signed ECDSA P-256 certificate for `localhost` (the name go-plugin's client
/// checks), with its private key.
fn server_certificate() -> Result<(Vec<u8>, PrivateKeyDer<'static>)> {
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()])?;
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::OrganizationName, "baton");
    dn.push(rcgen::DnType::CommonName, "localhost");
    params.distinguished_name = dn;
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::DigitalSignature,
        rcgen::KeyUsagePurpose::KeyEncipherment,
        rcgen::KeyUsagePurpose::KeyAgreement,
        rcgen::KeyUsagePurpose::KeyCertSign,
    ];
    params.extended_key_usages =
        vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth, rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let cert = params.self_signed(&key).context("generate the server certificate")?;
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    Ok((cert.der().to_vec(), key_der))
}

/// A client certificate verifier that requires a client certificate and accepts only the pinned
/// ones, byte for byte (go-plugin's client certificate is self-signed: its own only root).
#[derive(Debug)]
pub struct PinnedClientCert {
    pinned: Vec<CertificateDer<'static>>,
    /// The crypto provider's signature verification, for every scheme but P-521's.
    algorithms: WebPkiSupportedAlgorithms,
}

impl PinnedClientCert {
    pub fn new(pinned: Vec<CertificateDer<'static>>, algorithms: WebPkiSupportedAlgorithms) -> Self {
        PinnedClientCert { pinned, algorithms }
    }
}

impl ClientCertVerifier for PinnedClientCert {
    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // No hint: go-plugin's client sends its one certificate whatever the hints.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        if self.pinned.iter().any(|p| p.as_ref() == end_entity.as_ref()) {
            Ok(ClientCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // In TLS 1.2 an ECDSA scheme names the hash, not the curve: a P-521 key may sign with any
        // of them (OpenSSL's client picks SHA-384, for one), and the provider has no P-521.
        if P521_TLS12_SCHEMES.contains(&dss.scheme) {
            if let Some(key) = p521_key(cert)? {
                return verify_p521(&key, dss.scheme, message, dss.signature());
            }
        }
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // In TLS 1.3 the scheme names the curve too: P-521 keys sign with this one only.
        if dss.scheme == SignatureScheme::ECDSA_NISTP521_SHA512 {
            if let Some(key) = p521_key(cert)? {
                return verify_p521(&key, dss.scheme, message, dss.signature());
            }
        }
        // Everything else, including a P-521 scheme with another key (which fails there).
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        // P-521 first: a TLS 1.2 client (Go's) picks by the server's preference.
        let p521 = SignatureScheme::ECDSA_NISTP521_SHA512;
        let others = self.algorithms.supported_schemes().into_iter().filter(|s| *s != p521);
        std::iter::once(p521).chain(others).collect()
    }
}

/// The TLS 1.2 schemes a P-521 key can sign with (ECDSA with a SHA-2 hash).
const P521_TLS12_SCHEMES: [SignatureScheme; 3] = [
    SignatureScheme::ECDSA_NISTP256_SHA256,
    SignatureScheme::ECDSA_NISTP384_SHA384,
    SignatureScheme::ECDSA_NISTP521_SHA512,
];

/// The P-521 public key of `cert`; `None` when its key is of another kind.
fn p521_key(cert: &CertificateDer<'_>) -> Result<Option<p521::ecdsa::VerifyingKey>, rustls::Error> {
    let cert = webpki::EndEntityCert::try_from(cert)
        .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
    // Checks the key's algorithm (id-ecPublicKey) and curve (secp521r1) too.
    Ok(p521::ecdsa::VerifyingKey::from_public_key_der(cert.subject_public_key_info().as_ref()).ok())
}

/// Verifies an ECDSA signature (DER, as TLS carries it) of `message` by the P-521 `key`, with the
/// hash of `scheme`.
fn verify_p521(
    key: &p521::ecdsa::VerifyingKey,
    scheme: SignatureScheme,
    message: &[u8],
    signature: &[u8],
) -> Result<HandshakeSignatureValid, rustls::Error> {
    use p521::ecdsa::signature::hazmat::PrehashVerifier as _;
    use sha2::Digest as _;
    let prehash = match scheme {
        SignatureScheme::ECDSA_NISTP256_SHA256 => sha2::Sha256::digest(message).to_vec(),
        SignatureScheme::ECDSA_NISTP384_SHA384 => sha2::Sha384::digest(message).to_vec(),
        SignatureScheme::ECDSA_NISTP521_SHA512 => sha2::Sha512::digest(message).to_vec(),
        _ => return Err(rustls::PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme.into()),
    };
    let bad_signature = || rustls::Error::InvalidCertificate(CertificateError::BadSignature);
    let signature = p521::ecdsa::DerSignature::from_bytes(signature).map_err(|_| bad_signature())?;
    key.verify_prehash(&prehash, &signature).map_err(|_| bad_signature())?;
    Ok(HandshakeSignatureValid::assertion())
}

#[cfg(test)]
mod tests;
