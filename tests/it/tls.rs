//! TLS against a real `mariadbd` started with certificates made here (rcgen): a CA, a server
//! certificate for 127.0.0.1/localhost signed by it, a client certificate, and an unrelated
//! second CA. The server has a `REQUIRE SSL` user and a `REQUIRE X509` user; the checks run
//! the `syncgate` binary with the TLS side upstream and a plain server downstream.

use crate::scenario::{describe, syncgate};
use crate::support::{require_mariadbd, second, TestDb};
use mysql_async::prelude::Queryable;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use std::path::{Path, PathBuf};
use std::process::Output;
use syncgate::local::{LocalServer, ServerOptions};
use tokio::sync::OnceCell;

const PASSWORD: &str = "tls-pw";
/// `REQUIRE SSL`: any TLS connection.
const SSL_USER: &str = "sg_ssl";
/// `REQUIRE X509`: TLS with a client certificate the server's CA signed.
const X509_USER: &str = "sg_x509";

/// PEM texts of the test PKI.
struct Pki {
    ca: String,
    /// A CA that signed nothing the server uses.
    other_ca: String,
    server_cert: String,
    server_key: String,
    client_cert: String,
    client_key: String,
}

fn ca(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), Issuer::new(params, key))
}

fn leaf(
    names: &[&str],
    cn: &str,
    usage: ExtendedKeyUsagePurpose,
    issuer: &Issuer<'static, KeyPair>,
) -> (String, String) {
    let mut params =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![usage];
    params.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// A PKI whose server certificate names `server_names`.
fn make_pki(server_names: &[&str]) -> Pki {
    let (ca_pem, issuer) = ca("syncgate test CA");
    let (other_ca, _) = ca("syncgate unrelated CA");
    let (server_cert, server_key) = leaf(
        server_names,
        server_names[0],
        ExtendedKeyUsagePurpose::ServerAuth,
        &issuer,
    );
    let (client_cert, client_key) = leaf(
        &[],
        "syncgate client",
        ExtendedKeyUsagePurpose::ClientAuth,
        &issuer,
    );
    Pki {
        ca: ca_pem,
        other_ca,
        server_cert,
        server_key,
        client_cert,
        client_key,
    }
}

/// A server with TLS on (`--ssl-ca/--ssl-cert/--ssl-key`) and the two TLS-only users.
async fn start_tls_server(pki: &Pki) -> LocalServer {
    require_mariadbd();
    // mariadbd reads the files once, at startup.
    let files = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = files.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    let server = LocalServer::start(ServerOptions {
        server_id: Some(3),
        extra_args: vec![
            format!("--ssl-ca={}", write("ca.pem", &pki.ca)),
            format!("--ssl-cert={}", write("server.pem", &pki.server_cert)),
            format!("--ssl-key={}", write("server-key.pem", &pki.server_key)),
        ],
        ..Default::default()
    })
    .await
    .unwrap_or_else(|e| panic!("cannot start a TLS test MariaDB server: {e}"));
    let mut conn = server.conn().await.expect("root connects");
    let have_ssl: Option<(String, String)> = conn
        .query_first("SHOW GLOBAL VARIABLES LIKE 'have_ssl'")
        .await
        .unwrap();
    assert_eq!(
        have_ssl.map(|(_, v)| v).as_deref(),
        Some("YES"),
        "the test server must have TLS on; see {}",
        server.error_log().display()
    );
    conn.query_drop(format!(
        "CREATE USER '{SSL_USER}'@'%' IDENTIFIED BY '{PASSWORD}' REQUIRE SSL; \
         GRANT ALL ON *.* TO '{SSL_USER}'@'%'; \
         CREATE USER '{X509_USER}'@'%' IDENTIFIED BY '{PASSWORD}' REQUIRE X509; \
         GRANT ALL ON *.* TO '{X509_USER}'@'%'"
    ))
    .await
    .unwrap();
    let _ = conn.disconnect().await;
    server
}

/// The TLS server of this test process, with its PKI.
async fn tls_server() -> &'static (Pki, LocalServer) {
    static SERVER: OnceCell<(Pki, LocalServer)> = OnceCell::const_new();
    SERVER
        .get_or_init(|| async {
            let pki = make_pki(&["127.0.0.1", "localhost"]);
            let server = start_tls_server(&pki).await;
            (pki, server)
        })
        .await
}

/// One table with the same rows in database `db` on the TLS server and on the plain one.
async fn same_table_both_sides(up: &'static LocalServer) -> (TestDb, TestDb) {
    let name = format!(
        "sg_tls_{}",
        std::thread::current()
            .name()
            .unwrap_or("t")
            .rsplit("::")
            .next()
            .unwrap_or("t")
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(40)
            .collect::<String>()
    );
    let up = TestDb::create(up, name.clone()).await;
    let down = TestDb::create(second().await, name).await;
    for db in [&up, &down] {
        db.exec(
            "CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(20)); \
             INSERT INTO t VALUES (1, 'a'), (2, 'b'), (3, 'c')",
        )
        .await;
    }
    (up, down)
}

/// Config: `up` is the TLS server as `user` with `security` (TOML lines of the
/// `[data-sources.up.security]` table, none = no table), `down` the plain server as root.
fn write_config(
    dir: &Path,
    up_port: u16,
    user: &str,
    security: Option<&str>,
    down_port: u16,
    db: &str,
) -> PathBuf {
    let security = security
        .map(|s| format!("\n[data-sources.up.security]\n{s}\n"))
        .unwrap_or_default();
    let text = format!(
        r#"check-thread-count = 2

[data-sources.up]
host = "127.0.0.1"
port = {up_port}
user = "{user}"
password = "{PASSWORD}"
{security}
[data-sources.down]
host = "127.0.0.1"
port = {down_port}
user = "root"
password = ""

[task]
output-dir = "{}"
source-instances = ["up"]
target-instance = "down"
target-check-tables = ["{db}.*"]
"#,
        dir.join("out").display()
    );
    let path = dir.join("config.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn write_pem(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

fn check(config: &Path) -> Output {
    syncgate(&["check", "-C", config.to_str().unwrap()])
}

/// Exit 2 and exactly one non-empty stderr line, starting `error: `; that line.
fn one_error_line(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(2), "{}", describe(out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "exactly one stderr line: {}", describe(out));
    assert!(lines[0].starts_with("error: "), "{}", describe(out));
    assert!(!stderr.contains("panicked"), "{}", describe(out));
    lines[0].to_string()
}

/// The check passed; the upstream side is encrypted with a named cipher and the downstream
/// is plain, in summary.json and summary.txt. Returns the upstream cipher.
fn assert_equal_up_encrypted(out: &Output, dir: &Path) -> String {
    assert_eq!(out.status.code(), Some(0), "{}", describe(out));
    let summary = crate::scenario::summary(&dir.join("out"));
    assert_eq!(summary["result"], "equal", "{summary:#}");
    let up = &summary["upstream"][0];
    assert_eq!(up["encrypted"], true, "{summary:#}");
    let cipher = up["tls_cipher"]
        .as_str()
        .unwrap_or_else(|| panic!("no upstream cipher: {summary:#}"))
        .to_string();
    assert!(!cipher.is_empty());
    assert_eq!(summary["downstream"]["encrypted"], false, "{summary:#}");
    assert!(summary["downstream"]["tls_cipher"].is_null(), "{summary:#}");

    let txt = std::fs::read_to_string(dir.join("out/summary.txt")).unwrap();
    let block = |role: &str| {
        txt.split("\n\n")
            .find(|b| b.starts_with(role))
            .unwrap_or_else(|| panic!("no {role} block in\n{txt}"))
            .to_string()
    };
    assert!(
        block("Upstream up").contains(&format!("  TLS:      encrypted, cipher {cipher}\n")),
        "{txt}"
    );
    assert!(
        block("Downstream down").contains("  TLS:      none, the connection is not encrypted"),
        "{txt}"
    );
    cipher
}

#[tokio::test]
async fn tls_with_the_right_ca_checks_and_reports_each_side() {
    let (pki, server) = tls_server().await;
    let (up, down) = same_table_both_sides(server).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = write_pem(dir.path(), "ca.pem", &pki.ca);
    let config = write_config(
        dir.path(),
        server.port(),
        SSL_USER,
        Some(&format!("ca-path = '{ca}'")),
        down.port(),
        up.name(),
    );
    let accepts_before = ssl_accepts(server).await;
    let out = check(&config);
    let cipher = assert_equal_up_encrypted(&out, dir.path());
    assert!(
        cipher.starts_with("TLS_") || cipher.contains('-'),
        "{cipher}"
    );
    // The server counted the TLS handshakes.
    assert!(ssl_accepts(server).await > accepts_before);
}

/// `Ssl_accepts`: TLS handshakes the server has accepted since it started.
async fn ssl_accepts(server: &LocalServer) -> u64 {
    let mut conn = server.conn().await.unwrap();
    let row: Option<(String, u64)> = conn
        .query_first("SHOW GLOBAL STATUS LIKE 'Ssl_accepts'")
        .await
        .unwrap();
    let _ = conn.disconnect().await;
    row.expect("Ssl_accepts").1
}

#[tokio::test]
async fn tls_require_ssl_user_without_security_is_refused() {
    let (_, server) = tls_server().await;
    let (up, down) = same_table_both_sides(server).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        server.port(),
        SSL_USER,
        None,
        down.port(),
        up.name(),
    );
    let line = one_error_line(&check(&config));
    assert!(
        line.starts_with(&format!(
            "error: cannot connect to data source 'up' (127.0.0.1:{}): Access denied for user \
             '{SSL_USER}'",
            server.port()
        )),
        "{line}"
    );
}

#[tokio::test]
async fn tls_wrong_ca_fails_with_one_clear_line() {
    let (pki, server) = tls_server().await;
    let (up, down) = same_table_both_sides(server).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = write_pem(dir.path(), "other-ca.pem", &pki.other_ca);
    let config = write_config(
        dir.path(),
        server.port(),
        SSL_USER,
        Some(&format!("ca-path = '{ca}'")),
        down.port(),
        up.name(),
    );
    let line = one_error_line(&check(&config));
    assert_eq!(
        line,
        format!(
            "error: cannot connect to data source 'up' (127.0.0.1:{}): TLS handshake failed: \
             invalid peer certificate: UnknownIssuer",
            server.port()
        )
    );
}

#[tokio::test]
async fn tls_client_certificate_for_a_require_x509_user() {
    let (pki, server) = tls_server().await;
    let (up, down) = same_table_both_sides(server).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = write_pem(dir.path(), "ca.pem", &pki.ca);

    // Without a client certificate the X509 user is refused, over TLS.
    let config = write_config(
        dir.path(),
        server.port(),
        X509_USER,
        Some(&format!("ca-path = '{ca}'")),
        down.port(),
        up.name(),
    );
    let line = one_error_line(&check(&config));
    assert!(
        line.contains(&format!("Access denied for user '{X509_USER}'")),
        "{line}"
    );

    // With it (inline PEM this time, the *-bytes keys) the check runs.
    let security = format!(
        "ca-path = '{ca}'\ncert-bytes = '''\n{}'''\nkey-bytes = '''\n{}'''",
        pki.client_cert, pki.client_key
    );
    let config = write_config(
        dir.path(),
        server.port(),
        X509_USER,
        Some(&security),
        down.port(),
        up.name(),
    );
    let out = check(&config);
    assert_equal_up_encrypted(&out, dir.path());
    // The key never reaches the report.
    let txt = std::fs::read_to_string(dir.path().join("out/summary.txt")).unwrap();
    let json = std::fs::read_to_string(dir.path().join("out/summary.json")).unwrap();
    for text in [&txt, &json] {
        assert!(!text.contains("PRIVATE KEY"), "{text}");
    }
}

/// The identity check: a certificate from the trusted CA that does not name the host
/// connected to is refused.
#[tokio::test]
async fn tls_server_identity_is_checked() {
    let pki = make_pki(&["db.example.test"]);
    let server = start_tls_server(&pki).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = write_pem(dir.path(), "ca.pem", &pki.ca);
    let config = write_config(
        dir.path(),
        server.port(),
        SSL_USER,
        Some(&format!("ca-path = '{ca}'")),
        second().await.port(),
        "sg_tls_identity",
    );
    let line = one_error_line(&check(&config));
    assert!(
        line.contains("TLS handshake failed: invalid peer certificate: certificate not valid for name \"127.0.0.1\""),
        "{line}"
    );
}

/// TLS configured against a server without TLS: refused, no fall back to plain text.
#[tokio::test]
async fn tls_server_without_tls_is_refused() {
    let pki = make_pki(&["127.0.0.1"]);
    let plain = second().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = write_pem(dir.path(), "ca.pem", &pki.ca);
    let config = write_config(
        dir.path(),
        plain.port(),
        "root",
        Some(&format!("ca-path = '{ca}'")),
        plain.port(),
        "sg_tls_plain",
    );
    // root has an empty password on the test servers.
    let text = std::fs::read_to_string(&config).unwrap().replacen(
        &format!("password = \"{PASSWORD}\""),
        "password = \"\"",
        1,
    );
    std::fs::write(&config, text).unwrap();
    let line = one_error_line(&check(&config));
    assert_eq!(
        line,
        format!(
            "error: cannot connect to data source 'up' (127.0.0.1:{}): TLS is configured but \
             the server does not support TLS",
            plain.port()
        )
    );
}

#[test]
fn tls_unreadable_ca_file_is_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.pem");
    let config = write_config(
        dir.path(),
        1,
        SSL_USER,
        Some(&format!("ca-path = '{}'", missing.display())),
        2,
        "db",
    );
    let line = one_error_line(&check(&config));
    assert_eq!(
        line,
        format!(
            "error: data source 'up': TLS settings: cannot read ca-path '{}': No such file or \
             directory (os error 2)",
            missing.display()
        )
    );
}
