//! TLS for data-source connections: `[data-sources.NAME.security]` turned into the driver's
//! [`SslOpts`] (mysql_async over rustls, ring provider).
//!
//! What each setting does:
//!
//! - `ca-path` / `ca-bytes`: the only trusted root. The server's certificate must chain to it
//!   and name the configured `host` (a DNS name or IP address in its subject alternative
//!   names): the identity check is always on.
//! - `cert-path`/`cert-bytes` with `key-path`/`key-bytes`: the client certificate, sent
//!   when the server asks for one (`REQUIRE X509`). Without a CA the server is verified
//!   against the built-in web PKI roots.
//! - A section with nothing set (every key `""`) is the same as no section: plain TCP.
//!
//! With TLS configured a connection is TLS or fails: a server without TLS support is an
//! error, never a silent fall back to plain text.
//!
//! The PEM material is read and parsed here, once, so a missing file or a file without a
//! certificate is one clear error before any connection is attempted. The driver gets the
//! bytes, not the paths.

use crate::config::Security;
use crate::error::{Error, Result};
use mysql_async::{ClientIdentity, SslOpts};
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// The driver's TLS options for `sec`, or `None` when nothing is set (plain TCP).
/// `source_name` names the data source in errors.
pub fn ssl_opts(source_name: &str, sec: &Security) -> Result<Option<SslOpts>> {
    let err = |message: String| Error::Tls {
        source_name: source_name.to_string(),
        message,
    };
    let ca = material(("ca-path", &sec.ca_path), ("ca-bytes", &sec.ca_bytes)).map_err(err)?;
    let cert = material(
        ("cert-path", &sec.cert_path),
        ("cert-bytes", &sec.cert_bytes),
    )
    .map_err(err)?;
    let key = material(("key-path", &sec.key_path), ("key-bytes", &sec.key_bytes)).map_err(err)?;

    let mut opts = SslOpts::default();
    let mut any = false;
    if let Some((label, bytes)) = ca {
        check_certificates(&label, &bytes).map_err(err)?;
        opts = opts
            .with_root_certs(vec![bytes.into()])
            .with_disable_built_in_roots(true);
        any = true;
    }
    match (cert, key) {
        (Some((cert_label, cert)), Some((key_label, key))) => {
            check_certificates(&cert_label, &cert).map_err(err)?;
            check_private_key(&key_label, &key).map_err(err)?;
            opts = opts.with_client_identity(Some(ClientIdentity::new(cert.into(), key.into())));
            any = true;
        }
        (None, None) => {}
        // Config validation refuses a certificate without its key and the reverse.
        (Some((label, _)), None) | (None, Some((label, _))) => {
            return Err(err(format!(
                "{label} needs its partner: a client certificate needs both a certificate \
                 and a key"
            )))
        }
    }
    Ok(any.then_some(opts))
}

/// The bytes of one item given as a path or inline, with how to name it in messages.
fn material(
    (path_key, path): (&str, &Option<String>),
    (bytes_key, bytes): (&str, &Option<String>),
) -> std::result::Result<Option<(String, Vec<u8>)>, String> {
    match (path, bytes) {
        (Some(_), Some(_)) => Err(format!("set either {path_key} or {bytes_key}, not both")),
        (Some(p), None) => {
            let label = format!("{path_key} '{p}'");
            std::fs::read(p)
                .map(|b| Some((label.clone(), b)))
                .map_err(|e| format!("cannot read {label}: {e}"))
        }
        (None, Some(b)) => Ok(Some((bytes_key.to_string(), b.clone().into_bytes()))),
        (None, None) => Ok(None),
    }
}

/// At least one PEM certificate, and no broken PEM section.
fn check_certificates(label: &str, bytes: &[u8]) -> std::result::Result<(), String> {
    let mut n = 0;
    for cert in CertificateDer::pem_slice_iter(bytes) {
        cert.map_err(|e| format!("{label} is not valid PEM: {}", pem_error(&e)))?;
        n += 1;
    }
    if n == 0 {
        return Err(format!(
            "{label} holds no PEM certificate (\"-----BEGIN CERTIFICATE-----\")"
        ));
    }
    Ok(())
}

/// One PEM private key (PKCS#8, PKCS#1 or SEC1).
fn check_private_key(label: &str, bytes: &[u8]) -> std::result::Result<(), String> {
    match PrivateKeyDer::from_pem_slice(bytes) {
        Ok(_) => Ok(()),
        Err(pem::Error::NoItemsFound) => Err(format!(
            "{label} holds no PEM private key (\"-----BEGIN PRIVATE KEY-----\")"
        )),
        Err(e) => Err(format!("{label} is not valid PEM: {}", pem_error(&e))),
    }
}

/// PEM errors without the byte dumps of their `Debug`-like display.
fn pem_error(e: &pem::Error) -> String {
    match e {
        pem::Error::MissingSectionEnd { .. } => "a section has no END line".into(),
        pem::Error::IllegalSectionStart { .. } => "a BEGIN line is malformed".into(),
        pem::Error::Base64Decode(m) => format!("bad base64 ({m})"),
        other => other.to_string(),
    }
}

/// A driver error of a connection attempt with TLS configured, as one readable line:
/// TLS failures (certificate, identity, handshake) are named as such.
pub fn describe_tls_failure(e: &mysql_async::Error) -> Option<String> {
    use mysql_async::{DriverError, IoError};
    match e {
        mysql_async::Error::Driver(DriverError::NoClientSslFlagFromServer) => {
            Some("TLS is configured but the server does not support TLS".into())
        }
        mysql_async::Error::Io(IoError::Tls(t)) => Some(format!("TLS setup failed: {t}")),
        mysql_async::Error::Io(IoError::Io(io)) => {
            // tokio-rustls reports handshake failures as I/O errors of kind InvalidData
            // carrying the rustls error ("invalid peer certificate: UnknownIssuer", …).
            (io.kind() == std::io::ErrorKind::InvalidData && io.get_ref().is_some())
                .then(|| format!("TLS handshake failed: {io}"))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sec() -> Security {
        Security::default()
    }

    // A throwaway self-signed certificate and its key (not used for anything real).
    const CERT: &str = "-----BEGIN CERTIFICATE-----
MIIBlDCCATmgAwIBAgIUYB9LFUfast9GdpYQRTH8LqWphD4wCgYIKoZIzj0EAwIw
HjEcMBoGA1UEAwwTbXlzcWxfYXN5bmMtdGVzdC1lYzAgFw0yNjA1MjMwNjQ5MzNa
GA8yMTI2MDQyOTA2NDkzM1owHjEcMBoGA1UEAwwTbXlzcWxfYXN5bmMtdGVzdC1l
YzBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABMoSiTtNPi80Sx+dJ65l/CgCSukb
aqrFp1vq3wrzgbOJ51Etcq7szOVgfVCtZlcbC1QD7TS119J9ELzQVOlJFu+jUzBR
MB0GA1UdDgQWBBSEYBKB4Y2cpNeLJCL4a444cXfQxzAfBgNVHSMEGDAWgBSEYBKB
4Y2cpNeLJCL4a444cXfQxzAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0kA
MEYCIQCEKz/dG8PRLqE5asy+Xcja5H8EOzOdQId9rl9+UmfD2wIhAMIwy9puBewL
0fndnN33G44NOnqH6QPMstJSEDX+XmyZ
-----END CERTIFICATE-----
";
    const KEY: &str = "-----BEGIN EC PRIVATE KEY-----
MHcCAQEEIIfgf9+zR4IQO67je8L7RpFN7ILlUCHg8HHf2VDbIT4XoAoGCCqGSM49
AwEHoUQDQgAEyhKJO00+LzRLH50nrmX8KAJK6RtqqsWnW+rfCvOBs4nnUS1yruzM
5WB9UK1mVxsLVAPtNLXX0n0QvNBU6UkW7w==
-----END EC PRIVATE KEY-----
";

    #[test]
    fn nothing_set_is_plain_tcp() {
        assert!(ssl_opts("up", &sec()).unwrap().is_none());
    }

    #[test]
    fn tls_ca_only_trusts_that_ca_and_checks_identity() {
        let s = Security {
            ca_bytes: Some(CERT.into()),
            ..sec()
        };
        let o = ssl_opts("up", &s).unwrap().expect("tls");
        let want = SslOpts::default()
            .with_root_certs(vec![CERT.as_bytes().to_vec().into()])
            .with_disable_built_in_roots(true);
        assert_eq!(o, want);
        assert!(!o.skip_domain_validation());
        assert!(!o.accept_invalid_certs());
        assert!(o.client_identity().is_none());
    }

    #[test]
    fn tls_client_identity_from_files() {
        let dir = tempfile::tempdir().unwrap();
        let (c, k) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        std::fs::write(&c, CERT).unwrap();
        std::fs::write(&k, KEY).unwrap();
        let s = Security {
            cert_path: Some(c.display().to_string()),
            key_path: Some(k.display().to_string()),
            ..sec()
        };
        let o = ssl_opts("up", &s).unwrap().expect("tls");
        let want = SslOpts::default().with_client_identity(Some(ClientIdentity::new(
            CERT.as_bytes().to_vec().into(),
            KEY.as_bytes().to_vec().into(),
        )));
        assert_eq!(o, want);
        // No CA: the built-in roots verify the server, identity check on.
        assert!(!o.disable_built_in_roots());
        assert!(!o.skip_domain_validation());
    }

    #[test]
    fn tls_material_errors_are_one_clear_line() {
        let cases = [
            (
                Security {
                    ca_path: Some("/nonexistent/ca.pem".into()),
                    ..sec()
                },
                "data source 'up': TLS settings: cannot read ca-path '/nonexistent/ca.pem': ",
            ),
            (
                Security {
                    ca_bytes: Some("hello".into()),
                    ..sec()
                },
                "data source 'up': TLS settings: ca-bytes holds no PEM certificate",
            ),
            (
                Security {
                    cert_bytes: Some(CERT.into()),
                    key_bytes: Some(CERT.into()),
                    ..sec()
                },
                "data source 'up': TLS settings: key-bytes holds no PEM private key",
            ),
            (
                Security {
                    ca_bytes: Some(CERT.replace("MIIB", "M!IB")),
                    ..sec()
                },
                "data source 'up': TLS settings: ca-bytes is not valid PEM: bad base64",
            ),
        ];
        for (s, want) in cases {
            let e = ssl_opts("up", &s).unwrap_err().to_string();
            assert!(e.starts_with(want), "{e}");
            assert!(!e.contains('\n'), "{e}");
            assert!(!e.contains("PRIVATE KEY-----\nM"), "no key material: {e}");
        }
    }
}
