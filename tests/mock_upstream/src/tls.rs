//! The TLS mode: the same endpoints over HTTPS, HTTP/1.1 or HTTP/2 by ALPN, with a
//! certificate given as files or made at start-up by a throwaway CA whose certificate is
//! written out for the client to trust. Plain HTTP still works on the same port (the first
//! byte of a connection tells a TLS ClientHello from a request line), so the control API and
//! the harness's plain client are unchanged.

use std::{
    fs,
    path::{Path, PathBuf},
    sync::Arc,
};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, pem::PemObject};
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, server::TlsStream};

/// The ALPN protocol names the mock can speak.
pub const ALPN_PROTOCOLS: &[&str] = &["h2", "http/1.1"];

/// Where the server's certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// Made at start-up: a CA, and a certificate for `127.0.0.1` and `localhost` signed by
    /// it; the CA's certificate is written (PEM) to this file before the listening line.
    Generate {
        /// Where the CA certificate goes.
        ca_out: PathBuf,
    },
    /// A PEM certificate chain (leaf first) and its PEM private key.
    Files {
        /// The chain.
        cert: PathBuf,
        /// The key (PKCS#8, PKCS#1 or SEC1).
        key: PathBuf,
    },
}

/// How the TLS mode runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsOptions {
    /// The certificate.
    pub identity: Identity,
    /// The ALPN protocols offered, in preference order (`h2`, `http/1.1`); a client offering
    /// none of them still gets HTTP/1.1.
    pub alpn: Vec<String>,
}

/// What a request's connection was: recorded with every request as `tls`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConnectionTls {
    /// The protocol ALPN settled on, if any (`h2`, `http/1.1`).
    pub(crate) alpn: Option<String>,
}

/// The server side of the TLS mode.
pub(crate) struct Tls {
    acceptor: TlsAcceptor,
}

impl Tls {
    /// Loads or makes the certificate (writing the CA file) and builds the acceptor.
    pub(crate) fn new(options: &TlsOptions) -> Result<Tls, String> {
        for protocol in &options.alpn {
            if !ALPN_PROTOCOLS.contains(&protocol.as_str()) {
                return Err(format!(
                    "--alpn {protocol:?} is not a protocol the mock speaks; use {}",
                    ALPN_PROTOCOLS.join(", ")
                ));
            }
        }
        let (chain, key) = match &options.identity {
            Identity::Generate { ca_out } => generate(ca_out)?,
            Identity::Files { cert, key } => read_identity(cert, key)?,
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|error| format!("TLS versions: {error}"))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|error| format!("the TLS certificate and key do not fit: {error}"))?;
        config.alpn_protocols = options
            .alpn
            .iter()
            .map(|protocol| protocol.as_bytes().to_vec())
            .collect();
        Ok(Tls {
            acceptor: TlsAcceptor::from(Arc::new(config)),
        })
    }

    /// Whether `stream` opens with a TLS handshake record (without consuming it).
    pub(crate) async fn is_handshake(stream: &TcpStream) -> bool {
        let mut first = [0u8; 1];
        // 0x16 is the TLS "handshake" record type; a request line starts with a letter.
        matches!(stream.peek(&mut first).await, Ok(1) if first[0] == 0x16)
    }

    /// Runs the handshake.
    pub(crate) async fn accept(
        &self,
        stream: TcpStream,
    ) -> std::io::Result<(TlsStream<TcpStream>, ConnectionTls)> {
        let stream = self.acceptor.accept(stream).await?;
        let alpn = stream
            .get_ref()
            .1
            .alpn_protocol()
            .map(|protocol| String::from_utf8_lossy(protocol).into_owned());
        Ok((stream, ConnectionTls { alpn }))
    }
}

/// A CA and a leaf for `127.0.0.1` and `localhost` signed by it; writes the CA's PEM to
/// `ca_out`.
fn generate(
    ca_out: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
    let (ca_cert, leaf_cert, leaf_key) = make_certificates()
        .map_err(|error| format!("cannot make the TLS certificates: {error}"))?;
    fs::write(ca_out, ca_cert.pem())
        .map_err(|error| format!("cannot write the CA to {}: {error}", ca_out.display()))?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    Ok((vec![leaf_cert.der().clone()], key))
}

/// The CA's certificate, and the leaf's certificate and key.
fn make_certificates() -> Result<(rcgen::Certificate, rcgen::Certificate, KeyPair), rcgen::Error> {
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "ccproxy mock upstream test CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let leaf_key = KeyPair::generate()?;
    // rcgen makes "127.0.0.1" an IP address SAN and "localhost" a DNS one.
    let mut leaf_params =
        CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])?;
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, "ccproxy mock upstream");
    leaf_params.use_authority_key_identifier_extension = true;
    leaf_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let leaf_cert = leaf_params.signed_by(&leaf_key, &issuer)?;
    Ok((ca_cert, leaf_cert, leaf_key))
}

fn read_identity(
    cert: &Path,
    key: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certificates| certificates.collect::<Result<Vec<_>, _>>())
        .map_err(|error| format!("--tls-cert {}: {error}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "--tls-cert {}: no PEM certificate in it",
            cert.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|error| format!("--tls-key {}: {error}", key.display()))?;
    Ok((chain, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_ca_signs_a_certificate_for_the_loopback_address() {
        use rustls::client::danger::ServerCertVerifier;
        let scratch = tempfile::tempdir().expect("the temp dir is writable");
        let dir = scratch.path();
        let ca_out = dir.join("ca.pem");
        let (chain, _key) = generate(&ca_out).expect("certificates are made");
        let ca = CertificateDer::from_pem_file(&ca_out).expect("the CA file is PEM");
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca).expect("the CA is a usable root");
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .expect("a verifier");
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("an IP name");
        verifier
            .verify_server_cert(
                &chain[0],
                &[],
                &name,
                &[],
                rustls::pki_types::UnixTime::now(),
            )
            .expect("the leaf is valid for 127.0.0.1 under the CA");
    }

    #[test]
    fn unknown_alpn_protocols_are_refused() {
        let scratch = tempfile::tempdir().expect("the temp dir is writable");
        let dir = scratch.path();
        let options = TlsOptions {
            identity: Identity::Generate {
                ca_out: dir.join("ca.pem"),
            },
            alpn: vec!["h3".to_owned()],
        };
        let error = Tls::new(&options).err().expect("h3 is refused");
        assert!(error.contains("\"h3\""), "{error}");
    }

    #[test]
    fn certificate_files_are_read() {
        let scratch = tempfile::tempdir().expect("the temp dir is writable");
        let dir = scratch.path();
        let (_ca, leaf, key) = make_certificates().expect("certificates are made");
        fs::write(dir.join("cert.pem"), leaf.pem()).expect("the scratch dir is writable");
        fs::write(dir.join("key.pem"), key.serialize_pem()).expect("the scratch dir is writable");
        let options = TlsOptions {
            identity: Identity::Files {
                cert: dir.join("cert.pem"),
                key: dir.join("key.pem"),
            },
            alpn: vec!["http/1.1".to_owned()],
        };
        assert!(Tls::new(&options).is_ok());
        let missing = TlsOptions {
            identity: Identity::Files {
                cert: dir.join("nope.pem"),
                key: dir.join("key.pem"),
            },
            alpn: Vec::new(),
        };
        let error = Tls::new(&missing).err().expect("the file is missing");
        assert!(error.starts_with("--tls-cert "), "{error}");
    }
}
