//! TLS for the listener (rustls with aws-lc-rs). Gatehouse terminates TLS
//! itself, rather than through tonic's TLS, so one port keeps serving both
//! gRPC (ALPN `h2`) and HTTP/1.1 JSON clients (ALPN `http/1.1`): tonic offers
//! only `h2`, and a client that offers only `http/1.1` would fail the handshake.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

use crate::conn::Tracked;

/// Longest a client may take over its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Handshakes in progress at once; a connection beyond them is closed at
/// once, so clients that stall mid-handshake cannot stop the listener from
/// accepting.
const MAX_HANDSHAKES: usize = 4096;

/// Reads a PEM certificate chain and private key into a server config that
/// offers `h2` and `http/1.1`.
pub fn load(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, String> {
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("--tls-cert-file {}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "--tls-cert-file {}: no PEM certificate in it",
            cert.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("--tls-key-file {}: {e}", key.display()))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("--tls-cert-file / --tls-key-file: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Hands over the connections of `accepted` that complete a TLS handshake.
/// Each handshake runs on its own task, bounded in time and in number, so a
/// client that stalls mid-handshake holds up nobody else.
pub fn incoming(
    mut accepted: tokio_stream::wrappers::ReceiverStream<std::io::Result<Tracked<TcpStream>>>,
    config: Arc<ServerConfig>,
    stop: CancellationToken,
) -> tokio_stream::wrappers::ReceiverStream<std::io::Result<TlsStream<Tracked<TcpStream>>>> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let acceptor = TlsAcceptor::from(config);
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
    tokio::spawn(async move {
        loop {
            let next = tokio::select! {
                () = stop.cancelled() => return,
                next = tokio_stream::StreamExt::next(&mut accepted) => next,
            };
            let stream = match next {
                Some(Ok(stream)) => stream,
                Some(Err(_)) => continue,
                None => return,
            };
            let peer = stream.get_ref().peer_addr().ok();
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                tracing::warn!(
                    ?peer,
                    "too many TLS handshakes in progress; closing the connection"
                );
                metrics::counter!("gatehouse_tls_handshakes_shed_total").increment(1);
                drop(stream);
                continue;
            };
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                let _permit = permit;
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(tls)) => {
                        let _ = tx.send(Ok(tls)).await;
                    }
                    Ok(Err(error)) => tracing::debug!(?peer, %error, "TLS handshake failed"),
                    Err(_) => tracing::debug!(?peer, "TLS handshake timed out"),
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}
