//! `gatehouse-client`'s `TokenSource` against a real server with 3-second SDK
//! tokens, through a proxy the test can take down: one exchange per lifetime
//! however many callers, refresh ahead of expiry, a still-valid token served
//! through an outage, and a revoked key surfacing as `Unauthorized`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use gatehouse_client::{Credentials, Error, TokenSource, TokenSourceConfig};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use crate::support::{Env, MASTER_KEY, OWNER, PASSWORD, bootstrap, postgres, sqlite};

const LIFETIME: Duration = Duration::from_secs(3);
const BUFFER: Duration = Duration::from_secs(1);

#[tokio::test]
async fn the_token_source_refreshes_once_per_lifetime_and_rides_out_outages_on_sqlite() {
    token_source(sqlite()).await;
}

#[tokio::test]
async fn the_token_source_refreshes_once_per_lifetime_and_rides_out_outages_on_postgres() {
    token_source(postgres().await).await;
}

/// A TCP proxy that can refuse connections and cut the open ones.
struct Proxy {
    addr: std::net::SocketAddr,
    down: Arc<AtomicBool>,
    open: Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Proxy {
    async fn start(upstream: std::net::SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let down = Arc::new(AtomicBool::new(false));
        let open = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (d, o) = (down.clone(), open.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if d.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                o.lock().unwrap().push(task.abort_handle());
            }
        });
        Self { addr, down, open }
    }

    fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
        if down {
            for task in self.open.lock().unwrap().drain(..) {
                task.abort();
            }
        }
    }
}

fn expiry_of(token: &str) -> i64 {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    claims["exp"].as_i64().unwrap()
}

async fn token_source(env: Env) {
    let boot = bootstrap(&env).await;
    let server = gatehouse_testkit::Gatehouse::spawn(
        crate::BIN,
        &["serve", "--database-url", &env.url],
        &[
            ("GATEHOUSE_MASTER_KEY", MASTER_KEY),
            ("GATEHOUSE_SDK_TOKEN_TTL_SECS", "3"),
            // No leeway: a token handed out after its expiry would be refused.
            ("GATEHOUSE_CLOCK_LEEWAY_SECS", "0"),
        ],
    )
    .await;
    let proxy = Proxy::start(server.addr).await;
    let credentials = Credentials::new(
        boot["account_id"].as_str().unwrap(),
        boot["key_id"].as_str().unwrap(),
        boot["secret"].as_str().unwrap(),
    );
    let config = TokenSourceConfig {
        refresh_buffer: BUFFER,
        min_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_millis(300),
        request_timeout: Duration::from_secs(2),
    };
    let base = format!("http://{}", proxy.addr);
    let http = reqwest::Client::new();

    // 100 callers over about three lifetimes: one exchange per lifetime
    // (every LIFETIME - BUFFER), not one per caller, and every token handed
    // out verifies.
    let tokens = TokenSource::with_config(&base, credentials.clone(), config.clone()).unwrap();
    let started = Instant::now();
    let callers: Vec<_> = (0..100)
        .map(|_| {
            let tokens = tokens.clone();
            tokio::spawn(async move {
                let mut last = String::new();
                while started.elapsed() < LIFETIME * 3 - Duration::from_millis(1500) {
                    last = tokens.token().await.expect("a token");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                last
            })
        })
        .collect();
    for caller in callers {
        let token = caller.await.unwrap();
        let verified = http
            .post(format!("http://{}/api/v1/verify", server.addr))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(
            verified.status(),
            StatusCode::OK,
            "a handed-out token verifies"
        );
    }
    let exchanges = tokens.exchanges();
    assert!(
        (3..=5).contains(&exchanges),
        "100 callers over 3 lifetimes made {exchanges} exchanges"
    );

    // A refresh happens BUFFER before expiry: the next token arrives while
    // the first is still valid.
    let tokens = TokenSource::with_config(&base, credentials.clone(), config.clone()).unwrap();
    let issued = Instant::now();
    let first = tokens.token().await.unwrap();
    // Not before the buffer: no early refresh.
    tokio::time::sleep((LIFETIME - BUFFER).saturating_sub(Duration::from_millis(300))).await;
    assert_eq!(tokens.token().await.unwrap(), first);
    assert_eq!(tokens.exchanges(), 1, "no refresh before the buffer");
    tokio::time::sleep(
        (LIFETIME - BUFFER + Duration::from_millis(50)).saturating_sub(issued.elapsed()),
    )
    .await;
    assert_eq!(
        tokens.token().await.unwrap(),
        first,
        "served while refreshing"
    );
    let mut second = first.clone();
    while second == first && issued.elapsed() < LIFETIME {
        tokio::time::sleep(Duration::from_millis(20)).await;
        second = tokens.token().await.unwrap();
    }
    assert_ne!(second, first, "refreshed before the first token expired");
    assert!(expiry_of(&second) > expiry_of(&first));
    assert_eq!(tokens.exchanges(), 2);

    // An outage during the refresh window: the still-valid token is served;
    // once it expires the outage is an error; after the outage, a new token.
    let tokens = TokenSource::with_config(&base, credentials.clone(), config.clone()).unwrap();
    let issued = Instant::now();
    let before = tokens.token().await.unwrap();
    proxy.set_down(true);
    tokio::time::sleep(
        (LIFETIME - BUFFER + Duration::from_millis(100)).saturating_sub(issued.elapsed()),
    )
    .await;
    while issued.elapsed() < LIFETIME - Duration::from_millis(500) {
        assert_eq!(
            tokens.token().await.unwrap(),
            before,
            "kept through the outage"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(tokens.exchanges() >= 2, "the refresh was attempted");
    tokio::time::sleep(LIFETIME.saturating_sub(issued.elapsed()) + Duration::from_millis(100))
        .await;
    let during = tokens.token().await;
    assert!(
        matches!(during, Err(Error::Unavailable(_))),
        "an expired token is not served: {during:?}"
    );
    proxy.set_down(false);
    let deadline = Instant::now() + Duration::from_secs(5);
    let after = loop {
        match tokens.token().await {
            Ok(token) => break token,
            Err(error) => {
                assert!(error.is_transient(), "{error}");
                assert!(Instant::now() < deadline, "no recovery after the outage");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    assert_ne!(after, before);

    // A revoked key: the next refresh is refused, and callers see why.
    let admin = http
        .post(format!("{base}/api/auth/login"))
        .json(&json!({ "username": OWNER, "password": PASSWORD }))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let revoked = http
        .post(format!(
            "{base}/api/v1/accounts/{}/keys/{}/revoke",
            boot["account_id"].as_str().unwrap(),
            boot["key_id"].as_str().unwrap()
        ))
        .bearer_auth(&admin)
        .json(&json!({ "reason": "leaked" }))
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), StatusCode::OK);
    let deadline = Instant::now() + LIFETIME * 2;
    let refused = loop {
        match tokens.token().await {
            Ok(_) => {
                assert!(
                    Instant::now() < deadline,
                    "a revoked key still yields tokens"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(error) => break error,
        }
    };
    assert!(
        matches!(&refused, Error::Unauthorized { reason, .. } if reason == "INVALID_KEY_CREDENTIALS"),
        "{refused:?}"
    );
    assert!(!refused.is_transient());
}
