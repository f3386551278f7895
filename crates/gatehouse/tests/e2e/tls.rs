//! TLS on the listener: one port serves gRPC (ALPN `h2`) and HTTP/1.1 JSON
//! clients that offer only `http/1.1` — through real TLS handshakes against
//! a certificate made for the test.

use std::sync::Arc;

use gatehouse_api::v1 as pb;
use gatehouse_api::v1::auth_service_client::AuthServiceClient;
use gatehouse_testkit::Gatehouse;
use rustls_pki_types::ServerName;
use rustls_pki_types::pem::PemObject as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_rustls::rustls;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

use crate::BIN;

struct Tls {
    _dir: tempfile::TempDir,
    cert_pem: String,
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
}

fn certificate() -> Tls {
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, signing_key.serialize_pem()).unwrap();
    Tls {
        _dir: dir,
        cert_pem: cert.pem(),
        cert: cert_path,
        key: key_path,
    }
}

/// One HTTP/1.1 request over TLS offering only `http/1.1`; the raw answer.
async fn https_get(tls: &Tls, port: u16, path: &str) -> (Option<Vec<u8>>, String) {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(tls.cert_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut stream = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("TLS handshake offering only http/1.1");
    let alpn = stream.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    (alpn, String::from_utf8_lossy(&answer).into_owned())
}

#[tokio::test]
async fn one_tls_port_serves_grpc_and_http1_and_refuses_plaintext() {
    let tls = certificate();
    let cwd = tempfile::tempdir().unwrap();
    let server = Gatehouse::spawn_in(
        BIN,
        &[
            "serve",
            "--tls-cert-file",
            tls.cert.to_str().unwrap(),
            "--tls-key-file",
            tls.key.to_str().unwrap(),
        ],
        &[],
        cwd.path(),
    )
    .await;
    assert!(server.logs().contains("tls=true"), "{}", server.logs());
    let port = server.addr.port();

    // gRPC over TLS (h2), trusting the test's certificate.
    let channel = Endpoint::from_shared(format!("https://localhost:{port}"))
        .unwrap()
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(&tls.cert_pem))
                .domain_name("localhost"),
        )
        .unwrap()
        .connect()
        .await
        .expect("gRPC over TLS");
    let jwks = AuthServiceClient::new(channel)
        .get_jwks(pb::GetJwksRequest {})
        .await
        .expect("JWKS over gRPC+TLS")
        .into_inner();
    assert_eq!(jwks.keys.len(), 1);

    // HTTP/1.1 JSON over TLS from a client that offers only http/1.1.
    let (alpn, answer) = https_get(&tls, port, "/.well-known/jwks.json").await;
    assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"keys\""), "{answer}");

    // Plaintext on the TLS port is never served: no HTTP answer comes back
    // (the server answers the non-TLS bytes with a TLS alert and closes).
    let mut plain = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        plain.read_to_end(&mut answer),
    )
    .await
    .expect("the server closes the connection");
    assert!(
        !answer.starts_with(b"HTTP/"),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );
    assert_eq!(answer.first(), Some(&0x15), "a TLS alert record");
}

#[test]
fn a_bad_certificate_is_refused_by_check_config() {
    let tls = certificate();
    std::fs::write(&tls.key, "not a key").unwrap();
    let output = std::process::Command::new(BIN)
        .args(["check-config", "--tls-cert-file"])
        .arg(&tls.cert)
        .arg("--tls-key-file")
        .arg(&tls.key)
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--tls-key-file"));
    let missing = std::process::Command::new(BIN)
        .args(["check-config", "--tls-cert-file"])
        .arg(&tls.cert)
        .output()
        .unwrap();
    assert!(!missing.status.success(), "a certificate needs its key");
}
