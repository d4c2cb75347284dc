//! TLS for the upstream client: which roots are trusted (the webpki roots plus the
//! certificates of `http.extra_ca_file`), and how a certificate that was not trusted is
//! explained to the client that got the 502.

use std::{fmt, path::Path, sync::Arc};

use rustls::{
    CertificateError, RootCertStore,
    pki_types::{CertificateDer, pem::PemObject},
};

use crate::config::HttpConfig;

/// Why a CA file (`http.extra_ca_file`, `SSL_CERT_FILE`) cannot be used. `Display` is the
/// problem alone, lower case, without the key or what to do: the config error around it adds
/// those.
#[derive(Debug)]
pub enum CaFileError {
    /// The file could not be read.
    Read(std::io::Error),
    /// The file holds no `-----BEGIN CERTIFICATE-----` block.
    NoCertificate,
    /// A PEM block is broken (no end line, bad base64).
    Pem(String),
    /// A certificate parsed as PEM but cannot serve as a trust anchor (not a certificate, or
    /// one webpki cannot read).
    Unusable {
        /// 1-based position among the file's certificates.
        index: usize,
        /// How many certificates the file holds.
        total: usize,
        /// rustls' reason.
        reason: String,
    },
}

impl fmt::Display for CaFileError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CaFileError::Read(error) => write!(formatter, "cannot read it: {error}"),
            CaFileError::NoCertificate => formatter
                .write_str("it holds no PEM certificate (a -----BEGIN CERTIFICATE----- block)"),
            CaFileError::Pem(reason) => write!(formatter, "it is not valid PEM: {reason}"),
            CaFileError::Unusable {
                index,
                total,
                reason,
            } => write!(
                formatter,
                "certificate {index} of {total} in it cannot be a CA: {reason}"
            ),
        }
    }
}

impl std::error::Error for CaFileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CaFileError::Read(error) => Some(error),
            _ => None,
        }
    }
}

/// Checks that `path` is a PEM file of CA certificates rustls can trust, and returns how many
/// it holds (what the config loader calls for `http.extra_ca_file` and `SSL_CERT_FILE`).
pub fn check_ca_file(path: &Path) -> Result<usize, CaFileError> {
    add_ca_file(&mut RootCertStore::empty(), path)
}

/// Adds every `CERTIFICATE` block of a PEM file to `roots`, each checked to be usable as a
/// trust anchor; other blocks (a private key, say) are skipped.
fn add_ca_file(roots: &mut RootCertStore, path: &Path) -> Result<usize, CaFileError> {
    let bytes = std::fs::read(path).map_err(CaFileError::Read)?;
    let certificates = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| CaFileError::Pem(error.to_string()))?;
    if certificates.is_empty() {
        return Err(CaFileError::NoCertificate);
    }
    let total = certificates.len();
    for (position, certificate) in certificates.into_iter().enumerate() {
        roots
            .add(certificate)
            .map_err(|error| CaFileError::Unusable {
                index: position + 1,
                total,
                reason: error.to_string(),
            })?;
    }
    Ok(total)
}

/// The trusted roots for `config`: the webpki roots, plus the certificates of
/// `extra_ca_file` when it is set.
pub(crate) fn root_store(config: &HttpConfig) -> Result<RootCertStore, CaFileError> {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = &config.extra_ca_file {
        add_ca_file(&mut roots, path)?;
    }
    Ok(roots)
}

/// The rustls client configuration (without ALPN, which the connector sets from
/// `http.http2`).
pub(crate) fn client_config(roots: RootCertStore) -> rustls::ClientConfig {
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// When `error` (or one of its sources) is a rejected server certificate, a sentence saying
/// so and what to do; `None` for every other failure.
///
/// Internal: rustls' error reaches us inside an `io::Error` from tokio-rustls, whose
/// `source()` skips the error it wraps, so each level is also unwrapped with `get_ref`.
pub(crate) fn explain_certificate_failure(
    error: &(dyn std::error::Error + 'static),
) -> Option<String> {
    let rejected = certificate_error(error)?;
    let advice = match rejected {
        CertificateError::UnknownIssuer
        | CertificateError::BadSignature
        | CertificateError::UnhandledCriticalExtension => {
            "if a private CA or a TLS-inspecting proxy signs it, trust that CA's PEM file with \
             http.extra_ca_file (env HTTP__EXTRA_CA_FILE, or SSL_CERT_FILE)"
        }
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            "check the host name in the upstream's base URL"
        }
        CertificateError::Expired
        | CertificateError::ExpiredContext { .. }
        | CertificateError::NotValidYet
        | CertificateError::NotValidYetContext { .. } => {
            "check this machine's clock, or have the upstream's certificate renewed"
        }
        _ => "check the upstream's certificate, or the CA trusted with http.extra_ca_file",
    };
    Some(format!(
        "its TLS certificate was not trusted ({}); {advice}",
        rustls::Error::InvalidCertificate(rejected.clone())
    ))
}

fn certificate_error<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a CertificateError> {
    let mut current = Some(error);
    while let Some(level) = current {
        if let Some(rustls::Error::InvalidCertificate(rejected)) =
            level.downcast_ref::<rustls::Error>()
        {
            return Some(rejected);
        }
        if let Some(wrapped) = level
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
            && let Some(rejected) = certificate_error(wrapped)
        {
            return Some(rejected);
        }
        current = level.source();
    }
    None
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A self-signed P-256 CA valid until 2126 (`openssl req -x509 -newkey ec …`); its key was
    /// thrown away, it is only ever a trust anchor here.
    pub(crate) const TEST_CA: &str = "-----BEGIN CERTIFICATE-----
MIIBlTCCATugAwIBAgIUJ5A1117HUflGQuZi43TW+SbFXzkwCgYIKoZIzj0EAwIw
HzEdMBsGA1UEAwwUY2Nwcm94eSB1bml0LXRlc3QgQ0EwIBcNMjYxMjAyMDM0NzAw
WhgPMjEyNjExMDgwMzQ3MDBaMB8xHTAbBgNVBAMMFGNjcHJveHkgdW5pdC10ZXN0
IENBMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEM7y/qye9uTu/zefINgqXPZJ8
C3BPxXH6D34BifQdGQhN7wPnU+9mMnt+R7kepRXpgAYy0zn4zum2ubML9Z9YP6NT
MFEwHQYDVR0OBBYEFINbwtwgsCIXZopU+5aDAVrmm/TXMB8GA1UdIwQYMBaAFINb
wtwgsCIXZopU+5aDAVrmm/TXMA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwID
SAAwRQIhAJ7ND5dJNEyYFBR7ClaGDMoXbfVlx1zBgP+MdaZoeQ+WAiBUedPpKl5Q
U8iaDEFlr2e0m0Qaez4Q3vzZgUt1aCZiSw==
-----END CERTIFICATE-----
";

    /// A CA file holding `contents`, removed on drop.
    fn ca_file(contents: &[u8]) -> tempfile::NamedTempFile {
        let mut file = tempfile::Builder::new()
            .suffix(".pem")
            .tempfile()
            .expect("the temp dir is writable");
        std::io::Write::write_all(&mut file, contents).expect("the temp dir is writable");
        file
    }

    fn problem(contents: &[u8]) -> String {
        let file = ca_file(contents);
        match check_ca_file(file.path()) {
            Ok(count) => panic!("read {count} certificates"),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn a_pem_ca_is_read_and_other_blocks_are_skipped() {
        let contents = format!(
            "# the corporate CA\n-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n{TEST_CA}{TEST_CA}"
        );
        let file = ca_file(contents.as_bytes());
        assert_eq!(
            check_ca_file(file.path()).expect("the test CA is usable"),
            2
        );
    }

    #[test]
    fn extra_cas_are_trusted_in_addition_to_the_webpki_roots() {
        let webpki = webpki_roots::TLS_SERVER_ROOTS.len();
        let config = HttpConfig::default();
        assert_eq!(root_store(&config).expect("no file to read").len(), webpki);
        let file = ca_file(TEST_CA.as_bytes());
        let config = HttpConfig {
            extra_ca_file: Some(file.path().to_owned()),
            ..HttpConfig::default()
        };
        assert_eq!(root_store(&config).expect("usable").len(), webpki + 1);
    }

    #[test]
    fn a_missing_file_says_it_cannot_be_read() {
        let error = check_ca_file(Path::new("/nonexistent/ccproxy/ca.pem"))
            .expect_err("the file does not exist");
        assert!(matches!(error, CaFileError::Read(_)), "{error}");
        assert!(error.to_string().starts_with("cannot read it: "), "{error}");
    }

    #[test]
    fn a_file_without_certificates_says_so() {
        assert_eq!(
            problem(b"just some text\n"),
            "it holds no PEM certificate (a -----BEGIN CERTIFICATE----- block)"
        );
        assert_eq!(
            problem(b""),
            "it holds no PEM certificate (a -----BEGIN CERTIFICATE----- block)"
        );
    }

    #[test]
    fn a_broken_pem_block_says_so() {
        let truncated = &TEST_CA[..TEST_CA.len() - 30];
        let message = problem(truncated.as_bytes());
        assert!(message.starts_with("it is not valid PEM: "), "{message}");
        let bad_base64 = "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
        let message = problem(bad_base64.as_bytes());
        assert!(message.starts_with("it is not valid PEM: "), "{message}");
    }

    #[test]
    fn a_block_that_is_not_a_certificate_is_named_by_position() {
        let contents =
            format!("{TEST_CA}-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
        let message = problem(contents.as_bytes());
        assert!(
            message.starts_with("certificate 2 of 2 in it cannot be a CA: "),
            "{message}"
        );
    }

    fn wrapped(rejected: CertificateError) -> std::io::Error {
        // As tokio-rustls reports a failed handshake.
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rejected),
        )
    }

    #[derive(Debug)]
    struct Outer(std::io::Error);

    impl fmt::Display for Outer {
        fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
            formatter.write_str("client error (Connect)")
        }
    }

    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn an_unknown_issuer_is_explained_with_what_to_do() {
        let error = Outer(wrapped(CertificateError::UnknownIssuer));
        let explained = explain_certificate_failure(&error).expect("a certificate failure");
        assert_eq!(
            explained,
            "its TLS certificate was not trusted (invalid peer certificate: UnknownIssuer); \
             if a private CA or a TLS-inspecting proxy signs it, trust that CA's PEM file with \
             http.extra_ca_file (env HTTP__EXTRA_CA_FILE, or SSL_CERT_FILE)"
        );
    }

    #[test]
    fn other_certificate_problems_get_their_own_advice() {
        let error = Outer(wrapped(CertificateError::NotValidForName));
        let explained = explain_certificate_failure(&error).expect("a certificate failure");
        assert!(explained.ends_with("check the host name in the upstream's base URL"));
        let error = Outer(wrapped(CertificateError::Expired));
        let explained = explain_certificate_failure(&error).expect("a certificate failure");
        assert!(explained.contains("clock"), "{explained}");
    }

    #[test]
    fn failures_that_are_not_about_certificates_are_left_alone() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(explain_certificate_failure(&Outer(refused)), None);
        let alert = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::NoApplicationProtocol,
        );
        assert_eq!(explain_certificate_failure(&alert), None);
    }
}
