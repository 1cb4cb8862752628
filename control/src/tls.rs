//! TLS for outpostd's TCP listener, and for the requests the boxes of a site send each other.
//!
//! The listener speaks TLS whenever it is reachable from off the box (`[api] listen` on an
//! address that is not loopback): with the operator's certificate (`[api] tls_cert` and
//! `tls_key`, PEM), or else one made at the first start and kept in the state directory
//! (`tls/cert.pem`, `tls/key.pem`), whose SHA-256 fingerprint outpostd logs so that an
//! operator can check it out of band. A box of a site publishes its certificate's fingerprint
//! in its etcd record; the others pin it when they forward a request or copy an image to it,
//! so a self-signed certificate needs no certificate authority between the boxes and an
//! address taken over on the underlay cannot answer for a box.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};

/// File names of the certificate made at first start, under `<state_dir>/tls/`.
pub const GENERATED_DIR: &str = "tls";
const GENERATED_CERT: &str = "cert.pem";
const GENERATED_KEY: &str = "key.pem";
/// The names the generated certificate was made for, one per line: different names (a new
/// listen address, say) make a new certificate.
const GENERATED_NAMES: &str = "names";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the TLS {what} {path:?}: {reason}")]
    Read {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("cannot write the TLS {what} {path:?}: {source}")]
    Write {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot make a self-signed TLS certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("the TLS certificate and key do not make a usable server configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// The certificate the listener presents, ready to accept with.
#[derive(Clone)]
pub struct ServerTls {
    pub acceptor: tokio_rustls::TlsAcceptor,
    /// SHA-256 of the certificate (DER), the value peers pin.
    pub pin: CertPin,
    /// Where the certificate is, for operators and clients that need to trust it.
    pub cert_path: PathBuf,
}

/// The SHA-256 of a certificate's DER encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CertPin(pub [u8; 32]);

impl CertPin {
    pub fn of(cert_der: &[u8]) -> CertPin {
        CertPin(Sha256::digest(cert_der).into())
    }

    /// Lowercase hex, as stored in a box's etcd record.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    pub fn from_hex(text: &str) -> Option<CertPin> {
        if text.len() != 64 || !text.is_ascii() {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(CertPin(out))
    }
}

impl std::fmt::Display for CertPin {
    /// `AB:CD:...`, the form `openssl x509 -noout -fingerprint -sha256` prints.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}

/// Where the listener's certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertSource {
    /// The operator's PEM files.
    Files { cert: PathBuf, key: PathBuf },
    /// Made at the first start under `<state_dir>/tls/`, for these names (DNS names or IP
    /// addresses), and kept.
    Generated { dir: PathBuf, names: Vec<String> },
}

/// The provider every TLS configuration here uses, whatever else the process links. ring:
/// rustls marks it deprecated because it lacks post-quantum key exchange, which only its
/// aws-lc provider has; that one needs cmake and a C build of aws-lc, which the appliance's
/// builds do not carry. Classical X25519/ECDHE key exchange and TLS 1.3 remain.
#[allow(deprecated)]
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl ServerTls {
    pub fn load(source: &CertSource) -> Result<ServerTls, TlsError> {
        let (cert_path, key_path) = match source {
            CertSource::Files { cert, key } => (cert.clone(), key.clone()),
            CertSource::Generated { dir, names } => generate_once(dir, names)?,
        };
        let certs = CertificateDer::pem_file_iter(&cert_path)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| TlsError::Read {
                what: "certificate",
                path: cert_path.clone(),
                reason: e.to_string(),
            })?;
        let Some(leaf) = certs.first() else {
            return Err(TlsError::Read {
                what: "certificate",
                path: cert_path,
                reason: "no CERTIFICATE block in it".into(),
            });
        };
        let pin = CertPin::of(leaf.as_ref());
        let key = PrivateKeyDer::from_pem_file(&key_path).map_err(|e| TlsError::Read {
            what: "key",
            path: key_path.clone(),
            reason: e.to_string(),
        })?;
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(certs, key)?;
        Ok(ServerTls {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            pin,
            cert_path,
        })
    }
}

/// The certificate and key under `dir`, made now if they are not there yet. The key is
/// written owner-only before any of it is, and both land by rename, so a crash leaves either
/// a whole pair or none.
fn generate_once(dir: &Path, names: &[String]) -> Result<(PathBuf, PathBuf), TlsError> {
    let cert_path = dir.join(GENERATED_CERT);
    let key_path = dir.join(GENERATED_KEY);
    let names_path = dir.join(GENERATED_NAMES);
    let wanted = names.join("\n");
    let made_for = std::fs::read_to_string(&names_path).ok();
    if cert_path.exists() && key_path.exists() && made_for.as_deref() == Some(wanted.as_str()) {
        return Ok((cert_path, key_path));
    }
    let write_err = |what, path: &Path| {
        let path = path.to_owned();
        move |source| TlsError::Write { what, path, source }
    };
    std::fs::create_dir_all(dir).map_err(write_err("directory", dir))?;
    let made = rcgen::generate_simple_self_signed(names.to_vec())?;
    let write = |path: &Path, text: &str, mode: u32, what| -> Result<(), TlsError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let partial = path.with_extension("partial");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&partial)
            .map_err(write_err(what, &partial))?;
        f.write_all(text.as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(write_err(what, &partial))?;
        std::fs::rename(&partial, path).map_err(write_err(what, path))
    };
    write(&key_path, &made.signing_key.serialize_pem(), 0o600, "key")?;
    write(&cert_path, &made.cert.pem(), 0o644, "certificate")?;
    write(&names_path, &wanted, 0o644, "names")?;
    tracing::info!("made a self-signed TLS certificate for {names:?} in {dir:?}");
    Ok((cert_path, key_path))
}

/// A client configuration that accepts exactly the certificate `pin` names (the signatures
/// of the handshake are still checked against it), for requests to another box of the site.
pub fn pinned_client(pin: CertPin) -> Result<tokio_rustls::TlsConnector, rustls::Error> {
    let provider = provider();
    let verifier = Arc::new(PinnedCert {
        pin,
        provider: provider.clone(),
    });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// The name a pinned connection to `addr` presents (the certificate is pinned, so the name
/// is not what is checked).
pub fn server_name(addr: SocketAddr) -> ServerName<'static> {
    ServerName::IpAddress(addr.ip().into())
}

#[derive(Debug)]
struct PinnedCert {
    pin: CertPin,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedCert {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if CertPin::of(end_entity.as_ref()) == self.pin {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_certificate_is_made_once_and_kept_private() {
        let dir = tempfile::tempdir().unwrap();
        let tls_dir = dir.path().join(GENERATED_DIR);
        let source = CertSource::Generated {
            dir: tls_dir.clone(),
            names: vec!["192.0.2.7".into(), "box1.example".into()],
        };
        let first = ServerTls::load(&source).unwrap();
        let again = ServerTls::load(&source).unwrap();
        assert_eq!(first.pin, again.pin, "a restart must keep the certificate");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(tls_dir.join(GENERATED_KEY))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "the key is readable by others: {mode:o}");
        // The operator's files load the same way.
        let files = CertSource::Files {
            cert: tls_dir.join(GENERATED_CERT),
            key: tls_dir.join(GENERATED_KEY),
        };
        assert_eq!(ServerTls::load(&files).unwrap().pin, first.pin);
        // Other names (a new listen address): a new certificate.
        let moved = CertSource::Generated {
            dir: tls_dir,
            names: vec!["192.0.2.8".into()],
        };
        assert_ne!(ServerTls::load(&moved).unwrap().pin, first.pin);
    }

    #[test]
    fn missing_or_wrong_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("cert.pem");
        std::fs::write(&bad, "not a certificate").unwrap();
        let source = CertSource::Files {
            cert: bad.clone(),
            key: dir.path().join("absent.pem"),
        };
        let Err(err) = ServerTls::load(&source) else {
            panic!("a file without a certificate was accepted");
        };
        assert!(err.to_string().contains("cert.pem"), "{err}");
    }

    #[test]
    fn pins_read_back_and_print_like_openssl() {
        let pin = CertPin::of(b"certificate");
        assert_eq!(CertPin::from_hex(&pin.to_hex()), Some(pin));
        assert_eq!(CertPin::from_hex("zz"), None);
        assert_eq!(CertPin::from_hex(&"g".repeat(64)), None);
        let shown = pin.to_string();
        assert_eq!(shown.len(), 32 * 3 - 1);
        assert_eq!(shown.split(':').count(), 32);
    }

    /// A pinned client gets through to the certificate it pins, and not to another.
    #[test]
    fn a_pinned_client_talks_only_to_its_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let server = |sub: &str| {
            ServerTls::load(&CertSource::Generated {
                dir: dir.path().join(sub),
                names: vec!["127.0.0.1".into()],
            })
            .unwrap()
        };
        let (right, other) = (server("a"), server("b"));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let acceptor = right.acceptor.clone();
            tokio::spawn(async move {
                while let Ok((tcp, _)) = listener.accept().await {
                    if let Ok(mut tls) = acceptor.accept(tcp).await {
                        let _ = tls.write_all(b"hello").await;
                        let _ = tls.shutdown().await;
                    }
                }
            });
            let dial = |pin: CertPin| async move {
                let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
                let mut tls = pinned_client(pin)
                    .unwrap()
                    .connect(server_name(addr), tcp)
                    .await?;
                let mut got = Vec::new();
                tls.read_to_end(&mut got).await?;
                Ok::<_, std::io::Error>(got)
            };
            assert_eq!(dial(right.pin).await.unwrap(), b"hello");
            let refused = dial(other.pin).await;
            assert!(refused.is_err(), "a wrong pin got through: {refused:?}");
        });
    }
}
