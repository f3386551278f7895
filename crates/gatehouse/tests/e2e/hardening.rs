//! The second red-team round, each defect as a user or an attacker met it:
//! cancelled requests at random points, a retired scope used to take over a
//! key, a forged Envoy caller address, silent and half-sent connections,
//! processes racing on a fresh data directory, a revocation within one
//! process, a shared data directory, a database that refuses connections.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use gatehouse_api::v1 as pb;
use gatehouse_api::v1::auth_service_client::AuthServiceClient;
use gatehouse_api::v1::key_service_client::KeyServiceClient;
use gatehouse_testkit::Gatehouse;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt as _;
use tonic::Code;

use crate::issuer::serve;
use crate::support::{
    Env, MASTER_KEY, OWNER, PASSWORD, WORKCLAW, bootstrap, bootstrap_with, event_log_text,
    postgres, sqlite,
};
use crate::{BIN, authed};

/// A small deterministic generator, so a failing run can be replayed.
struct Dice(u64);

impl Dice {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// `POST url` with `body` (and the bearer), returning status and JSON.
async fn post(url: &str, bearer: Option<&str>, body: Value) -> (u16, Value) {
    let mut request = http().post(url).json(&body);
    if let Some(bearer) = bearer {
        request = request.bearer_auth(bearer);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Every stream of the log holds versions 1, 2, … with no gap or repeat.
async fn assert_log_whole(env: &Env) {
    let store = gatehouse_eventstore::EventStore::connect(&env.url, Default::default())
        .await
        .unwrap();
    let mut versions: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut last = 0;
    store
        .read_to_head(1, |events| {
            for event in events {
                assert!(event.position > last, "positions in order");
                last = event.position;
                versions
                    .entry(event.stream_id.to_string())
                    .or_default()
                    .push(event.stream_version);
            }
        })
        .await
        .unwrap();
    for (stream, versions) in versions {
        let expected: Vec<u64> = (1..=versions.len() as u64).collect();
        assert_eq!(versions, expected, "stream {stream}");
    }
}

// ---------------------------------------------------------------------------
// 1. Cancelled requests at random points leave every write working.

#[tokio::test]
async fn cancelled_requests_leave_every_write_working_on_sqlite() {
    cancelled_requests(sqlite()).await;
}

#[tokio::test]
async fn cancelled_requests_leave_every_write_working_on_postgres() {
    cancelled_requests(postgres().await).await;
}

async fn cancelled_requests(env: Env) {
    let boot = bootstrap(&env).await;
    let admin = boot["secret"].as_str().unwrap().to_string();
    let account = boot["account_id"].as_str().unwrap().to_string();
    let server = serve(&env).await;
    let base = format!("http://{}", server.addr);
    let keys_url = format!("{base}/api/v1/accounts/{account}/keys");
    let login_body = json!({"username": OWNER, "password": PASSWORD}).to_string();
    let mut dice = Dice(0x9e37_79b9_7f4a_7c15);

    // Keys to rotate and revoke under cancellation.
    let mut targets = Vec::new();
    for n in 0..12 {
        let (status, created) = post(
            &keys_url,
            Some(&admin),
            json!({"name": format!("target-{n}"), "scopes": ["keys:read"]}),
        )
        .await;
        assert_eq!(status, 201, "{created}");
        targets.push(created["key"]["key_id"].as_str().unwrap().to_string());
    }

    let client = http();
    let mut calls = Vec::new();
    for n in 0..240u64 {
        let deadline = format!("{}m", dice.below(6));
        let (kind, pause) = (n % 6, Duration::from_micros(dice.below(4_000)));
        let (client, base, keys_url, admin, login_body, targets, deadline) = (
            client.clone(),
            base.clone(),
            keys_url.clone(),
            admin.clone(),
            login_body.clone(),
            targets.clone(),
            deadline.clone(),
        );
        let addr = server.addr;
        let channel = server.channel().await;
        let target = targets[(n as usize) % targets.len()].clone();
        calls.push(tokio::spawn(async move {
            match kind {
                // A login with a deadline of a few milliseconds (the limits
                // layer honours `grpc-timeout` on plain HTTP too).
                0 => {
                    let _ = client
                        .post(format!("{base}/api/auth/login"))
                        .header("content-type", "application/json")
                        .header("grpc-timeout", deadline)
                        .body(login_body)
                        .send()
                        .await;
                }
                // A key created, rotated or revoked under the same deadline.
                1 => {
                    let _ = client
                        .post(&keys_url)
                        .bearer_auth(&admin)
                        .header("grpc-timeout", deadline)
                        .json(&json!({"name": format!("cancelled-{n}"), "scopes": ["keys:read"]}))
                        .send()
                        .await;
                }
                2 => {
                    let action = if n % 4 == 0 { "revoke" } else { "rotate" };
                    let _ = client
                        .post(format!("{keys_url}/{target}/{action}"))
                        .bearer_auth(&admin)
                        .header("grpc-timeout", deadline)
                        .json(&json!({"grace_period_seconds": 0}))
                        .send()
                        .await;
                }
                // HTTP/1.1: the request sent, then the connection reset.
                3 => {
                    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
                    let request = format!(
                        "POST /api/auth/login HTTP/1.1\r\nhost: gatehouse\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{login_body}",
                        login_body.len()
                    );
                    let _ = tcp.write_all(request.as_bytes()).await;
                    tokio::time::sleep(pause).await;
                    let _ = socket2::SockRef::from(&tcp).set_linger(Some(Duration::ZERO));
                    drop(tcp);
                }
                // HTTP/2: a gRPC call dropped mid-way (RST_STREAM).
                4 => {
                    let mut auth = AuthServiceClient::new(channel);
                    let _ = tokio::time::timeout(
                        pause,
                        auth.login(pb::LoginRequest {
                            username: OWNER.into(),
                            password: PASSWORD.into(),
                        }),
                    )
                    .await;
                }
                // gRPC with an ordinary client deadline of 1-6 ms.
                _ => {
                    let mut keys = KeyServiceClient::new(channel);
                    let mut request = authed(
                        pb::RotateApiKeyRequest {
                            account_id: String::new(),
                            key_id: target,
                            grace_period: Some(prost_types::Duration {
                                seconds: 0,
                                nanos: 0,
                            }),
                        },
                        &admin,
                    );
                    request.set_timeout(Duration::from_millis(1 + pause.as_millis() as u64 % 6));
                    let _ = keys.rotate_api_key(request).await;
                }
            }
        }));
    }
    for call in calls {
        call.await.unwrap();
    }

    // No correct password was counted as a failure: once the cancelled
    // calls have settled (their reservations and refunds run on tasks of
    // their own, which can outlive the calls that started them), every
    // throttle counter is back at zero and the owner logs in. A login that
    // meets an attempt still in flight may be delayed (429) and is tried
    // again; a failure that is never refunded fails the wait.
    let store = gatehouse_eventstore::EventStore::connect(&env.url, Default::default())
        .await
        .unwrap();
    let settled = Instant::now() + Duration::from_secs(30);
    let mut last: String;
    let session = loop {
        let mut tx = store.begin_read().await.unwrap();
        let failures: Option<i64> = gatehouse_eventstore::on_backend!(&mut tx, |conn| {
            sqlx::query_scalar("SELECT MAX(failures) FROM login_throttle")
                .fetch_one(conn)
                .await
        })
        .unwrap();
        // A counter back at zero lifts its delay in the same statement: a
        // delay left standing on one is a bug, not an attempt in flight.
        let stuck: Vec<(String, Option<chrono::DateTime<chrono::Utc>>)> =
            gatehouse_eventstore::on_backend!(&mut tx, |conn| {
                sqlx::query_as("SELECT key, locked_until FROM login_throttle WHERE failures = 0")
                    .fetch_all(conn)
                    .await
            })
            .unwrap();
        tx.commit().await.unwrap();
        let now = chrono::Utc::now();
        let stuck: Vec<_> = stuck
            .into_iter()
            .filter(|(_, until)| until.is_some_and(|u| u > now))
            .collect();
        assert!(
            stuck.is_empty(),
            "delays left on counters at zero: {stuck:?}"
        );
        if failures.unwrap_or(0) == 0 {
            let (status, session) = post(
                &format!("{base}/api/auth/login"),
                None,
                json!({"username": OWNER, "password": PASSWORD}),
            )
            .await;
            match status {
                200 => break session,
                429 => last = format!("429 {session}"),
                _ => panic!("login after the cancellations: {status} {session}"),
            }
        } else {
            last = format!("{failures:?} counted failures");
        }
        assert!(
            Instant::now() < settled,
            "the owner could not log in after the cancellations settled: {last}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(session["access_token"].is_string(), "{session}");
    let (status, created) = post(
        &keys_url,
        Some(&admin),
        json!({"name": "after", "scopes": ["keys:read"]}),
    )
    .await;
    assert_eq!(status, 201, "create: {created}");
    let key_id = created["key"]["key_id"].as_str().unwrap();
    let (status, rotated) = post(
        &format!("{keys_url}/{key_id}/rotate"),
        Some(&admin),
        json!({"grace_period_seconds": 0}),
    )
    .await;
    assert_eq!(status, 200, "rotate: {rotated}");
    let secret = rotated["secret"].as_str().unwrap();
    let (status, revoked) = post(
        &format!("{keys_url}/{key_id}/revoke"),
        Some(&admin),
        json!({"reason": "after the storm"}),
    )
    .await;
    assert_eq!(status, 200, "revoke: {revoked}");
    let (status, denied) = post(
        &format!("{base}/api/v1/verify"),
        Some(secret),
        json!({"required_scopes": []}),
    )
    .await;
    assert_eq!(
        (status, denied["reason"].as_str()),
        (401, Some("KEY_REVOKED"))
    );
    let ready = http().get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    assert_log_whole(&env).await;
    let logs = server.logs();
    assert!(
        !logs.contains("non-zero transaction depth")
            && !logs.contains("already a transaction in progress"),
        "transaction boundaries out of step:\n{logs}"
    );
}

// ---------------------------------------------------------------------------
// 3. A retired scope does not let a narrower user take over a key.

#[tokio::test]
async fn a_retired_scope_does_not_hand_over_a_key_on_sqlite() {
    retired_scope_takeover(sqlite()).await;
}

#[tokio::test]
async fn a_retired_scope_does_not_hand_over_a_key_on_postgres() {
    retired_scope_takeover(postgres().await).await;
}

async fn retired_scope_takeover(env: Env) {
    let boot = bootstrap_with(&env, WORKCLAW).await;
    let admin = boot["secret"].as_str().unwrap().to_string();
    let account = boot["account_id"].as_str().unwrap().to_string();
    let server = serve(&env).await;
    let base = format!("http://{}", server.addr);
    let keys_url = format!("{base}/api/v1/accounts/{account}/keys");
    let (status, user) = post(
        &format!("{base}/api/v1/accounts/{account}/users"),
        Some(&admin),
        json!({"username": "ops@example.com", "password": "ops password, long enough",
               "scopes": ["keys:read", "keys:write", "claws:read"]}),
    )
    .await;
    assert_eq!(status, 201, "{user}");
    let (status, bot) = post(
        &keys_url,
        Some(&admin),
        json!({"name": "deploy-bot", "scopes": ["deployments:write", "claws:read"]}),
    )
    .await;
    assert_eq!(status, 201, "{bot}");
    let bot_id = bot["key"]["key_id"].as_str().unwrap().to_string();
    let (status, session) = post(
        &format!("{base}/api/auth/login"),
        None,
        json!({"username": "ops@example.com", "password": "ops password, long enough"}),
    )
    .await;
    assert_eq!(status, 200, "{session}");
    let ops = session["access_token"].as_str().unwrap().to_string();

    let attempt = |action: &'static str| {
        let (url, ops) = (format!("{keys_url}/{bot_id}/{action}"), ops.clone());
        let body = if action == "rotate" {
            json!({"grace_period_seconds": 0})
        } else {
            json!({"reason": "taking it over"})
        };
        async move { post(&url, Some(&ops), body).await }
    };
    let (status, refused) = attempt("rotate").await;
    assert_eq!(
        (status, refused["reason"].as_str()),
        (403, Some("CANNOT_GRANT")),
        "{refused}"
    );

    // The scope is retired (say, by an import --prune), to come back later.
    let (status, retired) = post(
        &format!("{base}/api/v1/scopes/deployments:write/retire"),
        Some(&admin),
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{retired}");
    let before = event_log_text(&env).await;
    for action in ["rotate", "revoke"] {
        let (status, refused) = attempt(action).await;
        assert_eq!(
            (status, refused["reason"].as_str()),
            (403, Some("CANNOT_GRANT")),
            "{action}: {refused}"
        );
        assert!(
            refused["message"]
                .as_str()
                .unwrap()
                .contains("deployments:write"),
            "{refused}"
        );
    }
    let deleted = http()
        .delete(format!("{keys_url}/{bot_id}"))
        .bearer_auth(&ops)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 403);
    assert_eq!(event_log_text(&env).await, before, "refusals write nothing");
    // A grace outside 0 to 30 days is refused by the one rule, over HTTP as
    // over gRPC, and writes nothing.
    for seconds in [-1, 31 * 86_400] {
        let (status, refused) = post(
            &format!("{keys_url}/{bot_id}/rotate"),
            Some(&admin),
            json!({"grace_period_seconds": seconds}),
        )
        .await;
        assert_eq!(status, 400, "{seconds}: {refused}");
        assert!(
            refused["message"]
                .as_str()
                .unwrap()
                .contains("grace_period"),
            "{refused}"
        );
    }
    assert_eq!(event_log_text(&env).await, before, "refusals write nothing");
    // The owner's admin key, holding `*`, still may.
    let (status, rotated) = post(
        &format!("{keys_url}/{bot_id}/rotate"),
        Some(&admin),
        json!({"grace_period_seconds": 0}),
    )
    .await;
    assert_eq!(status, 200, "{rotated}");
}

// ---------------------------------------------------------------------------
// 4. A forged Envoy caller address cannot blind or forge the usage audit.

#[tokio::test]
async fn a_forged_envoy_caller_cannot_blind_the_usage_audit_on_sqlite() {
    forged_caller(sqlite()).await;
}

#[tokio::test]
async fn a_forged_envoy_caller_cannot_blind_the_usage_audit_on_postgres() {
    forged_caller(postgres().await).await;
}

fn check_from(secret: &str, address: &str) -> envoy_types::ext_authz::v3::pb::CheckRequest {
    use envoy_types::pb::envoy::config::core::v3::{Address, SocketAddress, address};
    use envoy_types::pb::envoy::service::auth::v3::attribute_context::{
        HttpRequest, Peer, Request as AttrRequest,
    };
    use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest};
    CheckRequest {
        attributes: Some(AttributeContext {
            source: Some(Peer {
                address: Some(Address {
                    address: Some(address::Address::SocketAddress(SocketAddress {
                        address: address.to_string(),
                        ..Default::default()
                    })),
                }),
                ..Default::default()
            }),
            request: Some(AttrRequest {
                http: Some(HttpRequest {
                    method: "GET".into(),
                    path: "/claws".into(),
                    headers: [("authorization".to_string(), format!("Bearer {secret}"))]
                        .into_iter()
                        .collect(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

/// The usage entries of `key` in the activity log.
async fn usage_of(base: &str, account: &str, admin: &str, key: &str) -> Vec<Value> {
    let response = http()
        .get(format!(
            "{base}/api/v1/accounts/{account}/activity?key_id={key}"
        ))
        .bearer_auth(admin)
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    body["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "usage")
        .cloned()
        .collect()
}

async fn forged_caller(env: Env) {
    use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
    let boot = bootstrap(&env).await;
    let admin = boot["secret"].as_str().unwrap().to_string();
    let account = boot["account_id"].as_str().unwrap().to_string();
    let server = gatehouse_testkit::spawn_app_on(
        &[
            "serve",
            "--database-url",
            &env.url,
            "--usage-interval-ms",
            "200",
        ],
        &[
            ("GATEHOUSE_MASTER_KEY", MASTER_KEY),
            ("GATEHOUSE_POLL_INTERVAL_MS", "100"),
        ],
        env.clock.clone(),
    )
    .await;
    let base = format!("http://{}", server.addr);
    let keys_url = format!("{base}/api/v1/accounts/{account}/keys");
    let mut created = Vec::new();
    for name in ["live", "revoked"] {
        let (status, key) = post(
            &keys_url,
            Some(&admin),
            json!({"name": name, "scopes": ["keys:read"]}),
        )
        .await;
        assert_eq!(status, 201, "{key}");
        created.push((
            key["key"]["key_id"].as_str().unwrap().to_string(),
            key["secret"].as_str().unwrap().to_string(),
        ));
    }
    let (live_id, live) = created[0].clone();
    let (revoked_id, revoked) = created[1].clone();
    let (status, _) = post(
        &format!("{keys_url}/{revoked_id}/revoke"),
        Some(&admin),
        json!({}),
    )
    .await;
    assert_eq!(status, 200);

    let mut envoy = AuthorizationClient::new(server.channel().await)
        .max_decoding_message_size(8 << 20)
        .max_encoding_message_size(8 << 20);
    // The revoked key's secret and a 2 MiB "address", then hostile ones.
    let huge = "9".repeat(2 << 20);
    for address in [
        huge.as_str(),
        "evil.example\u{0}",
        "<script>",
        "10.0.0.1; drop",
    ] {
        let denied = envoy
            .check(check_from(&revoked, address))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(denied.status.unwrap().code, Code::Unauthenticated as i32);
    }
    let allowed = envoy
        .check(check_from(&live, "10.1.2.3"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(allowed.status.unwrap().code, Code::Ok as i32);

    // Both keys' summaries arrive; the forged callers are recorded as
    // unknown. The four denials may straddle a flush (the interval is short
    // here): they are counted across the key's summaries.
    let deadline = Instant::now() + Duration::from_secs(20);
    let denials = |usage: &[Value]| {
        usage
            .iter()
            .map(|u| u["details"]["usage"]["denials"].as_u64().unwrap_or(0))
            .sum::<u64>()
    };
    let (live_usage, revoked_usage) = loop {
        let live_usage = usage_of(&base, &account, &admin, &live_id).await;
        let revoked_usage = usage_of(&base, &account, &admin, &revoked_id).await;
        if !live_usage.is_empty() && denials(&revoked_usage) >= 4 {
            break (live_usage, revoked_usage);
        }
        assert!(
            Instant::now() < deadline,
            "no usage summaries:\n{}",
            server.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        live_usage[0]["details"]["usage"]["last_caller"], "10.1.2.3",
        "{live_usage:?}"
    );
    assert_eq!(denials(&revoked_usage), 4, "{revoked_usage:?}");
    for summary in revoked_usage.iter().map(|u| &u["details"]["usage"]) {
        assert_eq!(summary["first_caller"], "unknown", "{summary}");
        assert_eq!(summary["last_caller"], "unknown", "{summary}");
        assert_eq!(summary["uses"], 0, "{summary}");
    }
    assert!(
        !event_log_text(&env).await.contains("99999999"),
        "the raw address is not stored"
    );

    // Later flushes keep working for every key.
    let again = envoy
        .check(check_from(&live, "[2001:db8::7]:443"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.status.unwrap().code, Code::Ok as i32);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let usage = usage_of(&base, &account, &admin, &live_id).await;
        if usage
            .iter()
            .any(|u| u["details"]["usage"]["last_caller"] == "2001:db8::7")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the second summary never came: {usage:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let ready = http().get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
}

// ---------------------------------------------------------------------------
// 5. Silent sockets and half-sent bodies do not take the server down.

/// `/healthz` over a fresh connection, a login and a `Verify`, each answered.
async fn still_answers(server_addr: std::net::SocketAddr, admin: &str) {
    let base = format!("http://{server_addr}");
    let fresh = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let health = fresh.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let login = fresh
        .post(format!("{base}/api/auth/login"))
        .json(&json!({"username": OWNER, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        login.status(),
        200,
        "{}",
        login.text().await.unwrap_or_default()
    );
    let channel = gatehouse_testkit::channel(server_addr).await;
    let mut verifier =
        gatehouse_api::v1::verifier_service_client::VerifierServiceClient::new(channel);
    let verified = verifier
        .verify(pb::VerifyRequest {
            credential: admin.to_string(),
            required_scopes: vec!["keys:read".into()],
            audience: String::new(),
        })
        .await;
    assert!(verified.is_ok(), "{verified:?}");
}

#[tokio::test]
async fn silent_sockets_do_not_take_the_server_down() {
    let env = sqlite();
    let boot = bootstrap(&env).await;
    let admin = boot["secret"].as_str().unwrap().to_string();
    // 256 descriptors, as the red team ran it; 300 silent sockets.
    let server = Gatehouse::spawn(
        "prlimit",
        &["--nofile=256:256", BIN, "serve", "--database-url", &env.url],
        &[("GATEHOUSE_MASTER_KEY", MASTER_KEY)],
    )
    .await;
    let mut silent = Vec::new();
    for _ in 0..300 {
        match tokio::time::timeout(
            Duration::from_secs(2),
            tokio::net::TcpStream::connect(server.addr),
        )
        .await
        {
            Ok(Ok(stream)) => silent.push(stream),
            other => panic!("connect: {other:?}"),
        }
    }
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        still_answers(server.addr, &admin).await;
    }
    drop(silent);
    still_answers(server.addr, &admin).await;
}

#[tokio::test]
async fn half_sent_bodies_do_not_hold_every_request_slot() {
    let env = sqlite();
    let boot = bootstrap(&env).await;
    let admin = boot["secret"].as_str().unwrap().to_string();
    let server = serve(&env).await;
    // Five HTTP/2 connections, 250 streams each, each declaring a body of
    // 100 bytes and sending one: more streams than request slots (1,024).
    let mut held = Vec::new();
    for _ in 0..5 {
        let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let (client, connection) = h2::client::handshake(tcp).await.unwrap();
        tokio::spawn(connection);
        for _ in 0..250 {
            let mut ready = client.clone().ready().await.unwrap();
            let request = http::Request::post(format!("http://{}/api/auth/login", server.addr))
                .header("content-type", "application/json")
                .header("content-length", "100")
                .body(())
                .unwrap();
            let (response, mut body) = ready.send_request(request, false).unwrap();
            body.send_data(bytes::Bytes::from_static(b"{"), false)
                .unwrap();
            held.push((response, body));
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..3 {
        still_answers(server.addr, &admin).await;
    }
    drop(held);
}

// ---------------------------------------------------------------------------
// 6. The README's first steps, run at once, do not race.

#[tokio::test]
async fn processes_started_at_once_on_a_fresh_data_directory_all_work() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path().to_path_buf();
    let run = |args: Vec<&'static str>| {
        let cwd = cwd.clone();
        tokio::spawn(async move {
            let mut command = tokio::process::Command::new(BIN);
            command
                .args(&args)
                .current_dir(&cwd)
                .env_remove("DATABASE_URL")
                .env("GATEHOUSE_BOOTSTRAP_PASSWORD", PASSWORD)
                .env_remove("GATEHOUSE_MASTER_KEY");
            let output = command.output().await.unwrap();
            (args, output)
        })
    };
    let mut oneshots = Vec::new();
    for _ in 0..3 {
        oneshots.push(run(vec!["bootstrap", "--username", OWNER]));
    }
    for _ in 0..2 {
        oneshots.push(run(vec!["migrate"]));
    }
    let serves = futures::future::join_all(
        (0..3).map(|_| Gatehouse::spawn_in(BIN, &["serve"], &[], dir.path())),
    );
    let (serves, outputs) = tokio::join!(serves, futures::future::join_all(oneshots));
    let mut bootstrapped = 0;
    for outcome in outputs {
        let (args, output) = outcome.unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        if output.status.success() {
            bootstrapped += usize::from(args[0] == "bootstrap");
            continue;
        }
        assert_eq!(args[0], "bootstrap", "{args:?} failed: {stderr}");
        let lines: Vec<&str> = stderr.lines().filter(|l| l.contains("error")).collect();
        assert_eq!(lines.len(), 1, "one clear line: {stderr}");
        assert!(stderr.contains("already bootstrapped"), "{stderr}");
        assert!(
            !stderr.contains("panicked") && !stderr.contains("stack backtrace"),
            "{stderr}"
        );
    }
    assert_eq!(bootstrapped, 1, "exactly one bootstrap wins");
    // Every server serves the one account, with the one master key.
    for server in &serves {
        let (status, session) = post(
            &format!("http://{}/api/auth/login", server.addr),
            None,
            json!({"username": OWNER, "password": PASSWORD}),
        )
        .await;
        assert_eq!(status, 200, "{session}\n{}", server.logs());
    }
    let env = Env {
        url: format!(
            "sqlite:{}",
            dir.path().join("gatehouse-data/gatehouse.db").display()
        ),
        _dir: None,
        clock: gatehouse_domain::clock::ShiftedClock::new(),
    };
    assert_log_whole(&env).await;
}

// ---------------------------------------------------------------------------
// 7. Activity cursors say nothing of other accounts' activity.

#[tokio::test]
async fn activity_cursors_reveal_no_other_accounts_activity_on_sqlite() {
    activity_cursors(sqlite()).await;
}

#[tokio::test]
async fn activity_cursors_reveal_no_other_accounts_activity_on_postgres() {
    activity_cursors(postgres().await).await;
}

/// Account `account`'s activity, one entry a page, following the tokens.
async fn activity_pages(base: &str, account: &str, bearer: &str) -> Vec<Value> {
    let mut entries = Vec::new();
    let mut token = String::new();
    loop {
        let response = http()
            .get(format!(
                "{base}/api/v1/accounts/{account}/activity?page_size=1&page_token={token}"
            ))
            .bearer_auth(bearer)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let page: Value = response.json().await.unwrap();
        entries.extend(page["events"].as_array().unwrap().iter().cloned());
        token = page["next_page_token"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if token.is_empty() {
            return entries;
        }
    }
}

async fn activity_cursors(env: Env) {
    let boot = bootstrap(&env).await;
    let admin = boot["secret"].as_str().unwrap().to_string();
    let account = boot["account_id"].as_str().unwrap().to_string();
    let server = serve(&env).await;
    let base = format!("http://{}", server.addr);
    let (status, other) = post(
        &format!("{base}/api/v1/accounts"),
        Some(&admin),
        json!({"name": "other", "owner_username": "other@example.com",
               "owner_password": "another long owner password"}),
    )
    .await;
    assert_eq!(status, 201, "{other}");
    let other_id = other["account"]["id"].as_str().unwrap().to_string();
    let (_, session) = post(
        &format!("{base}/api/auth/login"),
        None,
        json!({"username": "other@example.com", "password": "another long owner password"}),
    )
    .await;
    let other_token = session["access_token"].as_str().unwrap().to_string();
    let keys_url = format!("{base}/api/v1/accounts/{account}/keys");
    let (status, _) = post(
        &keys_url,
        Some(&admin),
        json!({"name": "first", "scopes": ["keys:read"]}),
    )
    .await;
    assert_eq!(status, 201);
    let first = activity_pages(&base, &account, &admin).await;
    // The other account is busy in between.
    for n in 0..8 {
        let (status, _) = post(
            &format!("{base}/api/v1/accounts/{other_id}/keys"),
            Some(&other_token),
            json!({"name": format!("busy-{n}"), "scopes": ["keys:read"]}),
        )
        .await;
        assert_eq!(status, 201);
    }
    let (status, _) = post(
        &keys_url,
        Some(&admin),
        json!({"name": "second", "scopes": ["keys:read"]}),
    )
    .await;
    assert_eq!(status, 201);
    let entries = activity_pages(&base, &account, &admin).await;
    assert_eq!(
        entries.len(),
        first.len() + 1,
        "paging reads exactly this account's entries"
    );
    assert_eq!(
        &entries[..first.len()],
        &first[..],
        "an entry keeps its cursor"
    );
    for entry in &entries {
        assert!(
            entry.get("position").is_none(),
            "no global position: {entry}"
        );
        let cursor = entry["cursor"].as_str().unwrap();
        assert!(
            cursor.len() >= 32 && cursor.parse::<u64>().is_err(),
            "opaque: {cursor}"
        );
    }
    let (before, last) = (&entries[entries.len() - 2], &entries[entries.len() - 1]);

    // Another account's cursor is no page token of this one, nor the reverse.
    let response = http()
        .get(format!(
            "{base}/api/v1/accounts/{other_id}/activity?page_token={}",
            before["cursor"].as_str().unwrap()
        ))
        .bearer_auth(&other_token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);

    // The live tail resumes after a cursor: the next entry is the last one.
    let mut tail = http()
        .get(format!("{base}/api/v1/accounts/{account}/activity/stream"))
        .bearer_auth(&admin)
        .header("last-event-id", before["cursor"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(tail.status(), 200);
    let mut text = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !text.contains("\n\n") {
        let chunk = tokio::time::timeout_at(deadline.into(), tail.chunk())
            .await
            .expect("an entry within 10 s")
            .unwrap()
            .expect("the stream stays open");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    let id = text
        .lines()
        .find_map(|l| l.strip_prefix("id:"))
        .map(str::trim)
        .unwrap_or_default()
        .to_string();
    assert_eq!(id, last["cursor"].as_str().unwrap(), "{text}");
    let response = http()
        .get(format!("{base}/api/v1/accounts/{account}/activity/stream"))
        .bearer_auth(&admin)
        .header("last-event-id", "12")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400, "a bare position is no cursor");
}

// ---------------------------------------------------------------------------
// 8. In one process, a revocation that has returned is seen at once.

#[tokio::test]
async fn a_revocation_is_seen_at_once_in_one_process_on_sqlite() {
    revoked_at_once(sqlite()).await;
}

#[tokio::test]
async fn a_revocation_is_seen_at_once_in_one_process_on_postgres() {
    revoked_at_once(postgres().await).await;
}

async fn revoked_at_once(env: Env) {
    let boot = bootstrap(&env).await;
    let admin = boot["secret"].as_str().unwrap().to_string();
    let account = boot["account_id"].as_str().unwrap().to_string();
    let server = serve(&env).await;
    let base = format!("http://{}", server.addr);
    let keys_url = format!("{base}/api/v1/accounts/{account}/keys");
    for n in 0..30 {
        let (status, key) = post(
            &keys_url,
            Some(&admin),
            json!({"name": format!("k{n}"), "scopes": ["keys:read"]}),
        )
        .await;
        assert_eq!(status, 201);
        let (id, secret) = (
            key["key"]["key_id"].as_str().unwrap(),
            key["secret"].as_str().unwrap(),
        );
        let (status, _) = post(
            &format!("{base}/api/v1/verify"),
            Some(secret),
            json!({"required_scopes": []}),
        )
        .await;
        assert_eq!(status, 200, "a new key verifies at once");
        let (status, _) = post(&format!("{keys_url}/{id}/revoke"), Some(&admin), json!({})).await;
        assert_eq!(status, 200);
        let (status, denied) = post(
            &format!("{base}/api/v1/verify"),
            Some(secret),
            json!({"required_scopes": []}),
        )
        .await;
        assert_eq!(
            (status, denied["reason"].as_str()),
            (401, Some("KEY_REVOKED")),
            "key {n}"
        );
    }
}

// ---------------------------------------------------------------------------
// 9. A data directory others may write to is made private before use.

#[tokio::test]
async fn a_data_directory_others_may_write_is_made_private() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let shared = dir.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
    let output = tokio::process::Command::new(BIN)
        .args(["migrate", "--data-dir"])
        .arg(&shared)
        .env_remove("DATABASE_URL")
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("others could write to the data directory"),
        "{stderr}"
    );
    let mode = std::fs::metadata(&shared).unwrap().permissions().mode();
    assert_eq!(mode & 0o022, 0, "nobody else may write to it now: {mode:o}");
    let db = std::fs::metadata(shared.join("gatehouse.db")).unwrap();
    assert_eq!(db.permissions().mode() & 0o077, 0);
}

// ---------------------------------------------------------------------------
// 10. A database that refuses connections is an outage: 503, not 500.

#[tokio::test]
async fn a_database_refusing_connections_is_unavailable_not_internal() {
    let env = postgres().await;
    let boot = bootstrap(&env).await;
    let account = boot["account_id"].as_str().unwrap().to_string();
    let key_id = boot["key_id"].as_str().unwrap().to_string();
    let secret = boot["secret"].as_str().unwrap().to_string();
    let server = serve(&env).await;
    let base = format!("http://{}", server.addr);
    let exchange = json!({"account_id": account, "key_id": key_id, "key_secret": secret});
    let (status, _) = post(&format!("{base}/v1/auth/sdk-token"), None, exchange.clone()).await;
    assert_eq!(status, 200);

    let database = env.url.rsplit('/').next().unwrap().to_string();
    let admin_url = format!("{}/postgres", env.url.rsplit_once('/').unwrap().0);
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&admin_url)
        .await
        .unwrap();
    sqlx::query(&format!(
        "ALTER DATABASE \"{database}\" ALLOW_CONNECTIONS false"
    ))
    .execute(&mut admin)
    .await
    .unwrap();
    sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()")
        .bind(&database)
        .execute(&mut admin)
        .await
        .unwrap();
    // The SDK exchange answers from memory, database or not.
    let (status, body) = post(&format!("{base}/v1/auth/sdk-token"), None, exchange).await;
    assert_eq!(status, 200, "{body}");
    let login = json!({"username": OWNER, "password": PASSWORD});
    let response = http()
        .post(format!("{base}/api/auth/login"))
        .json(&login)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let retry_after = response.headers().get("retry-after").is_some();
    let body: Value = response.json().await.unwrap();
    sqlx::query(&format!(
        "ALTER DATABASE \"{database}\" ALLOW_CONNECTIONS true"
    ))
    .execute(&mut admin)
    .await
    .unwrap();
    assert_eq!(
        (status, body["code"].as_str()),
        (503, Some("unavailable")),
        "{body}"
    );
    assert!(retry_after, "503 carries Retry-After");
}
