//! `gatehouse-client`'s `GuardLayer` in front of a real axum service and a
//! real tonic service, asking a real Gatehouse: allow (the principal reaches
//! the handler), missing scope (403 body and challenge), forged, missing and
//! revoked credentials (401), and Gatehouse down (fail closed: 503).

use std::time::Duration;

use axum::Extension;
use axum::routing::get;
use gatehouse_client::{GuardLayer, Principal, RouteScopes, WhenUnavailable};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tonic::Code;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use crate::support::{Env, MASTER_KEY, bootstrap, postgres, reason, sqlite};

#[tokio::test]
async fn the_guard_layer_protects_axum_and_tonic_services_on_sqlite() {
    guard(sqlite()).await;
}

#[tokio::test]
async fn the_guard_layer_protects_axum_and_tonic_services_on_postgres() {
    guard(postgres().await).await;
}

fn routes() -> RouteScopes {
    RouteScopes::new()
        .route(None, "/keys", ["keys:read"])
        .route(Some(axum::http::Method::POST), "/users", ["users:write"])
        .route(None, "/grpc.health.v1.Health/", ["users:write"])
}

/// An axum service behind `layer` that answers with the principal it saw.
async fn axum_service(layer: GuardLayer) -> String {
    let app = axum::Router::new()
        .route(
            "/keys",
            get(|Extension(p): Extension<Principal>| async move {
                axum::Json(json!({ "subject": p.subject, "kind": p.kind }))
            }),
        )
        .route(
            "/users",
            axum::routing::post(|Extension(p): Extension<Principal>| async move {
                axum::Json(json!({ "subject": p.subject }))
            }),
        )
        .layer(layer);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

/// A tonic service (gRPC health) behind `layer`.
async fn tonic_service(layer: GuardLayer) -> Channel {
    let (_, health) = tonic_health::server::health_reporter();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .layer(layer)
            .add_service(health)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
    });
    Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .connect_lazy()
}

async fn call(request: reqwest::RequestBuilder) -> (StatusCode, Option<String>, Value) {
    let response = request.send().await.unwrap();
    let status = response.status();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string());
    (
        status,
        challenge,
        response.json().await.unwrap_or(Value::Null),
    )
}

async fn health(channel: &Channel, bearer: Option<&str>) -> Result<(), tonic::Status> {
    let mut request = tonic::Request::new(HealthCheckRequest {
        service: String::new(),
    });
    if let Some(bearer) = bearer {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {bearer}").parse().unwrap());
    }
    HealthClient::new(channel.clone())
        .check(request)
        .await
        .map(|_| ())
}

async fn guard(env: Env) {
    let boot = bootstrap(&env).await;
    let admin = boot["secret"].as_str().unwrap().to_string();
    let account_id = boot["account_id"].as_str().unwrap().to_string();
    let gatehouse = gatehouse_testkit::spawn_app_on(
        &["serve", "--database-url", &env.url],
        &[
            ("GATEHOUSE_MASTER_KEY", MASTER_KEY),
            // Short SDK tokens and no leeway, so one can expire in the test.
            ("GATEHOUSE_SDK_TOKEN_TTL_SECS", "4"),
            ("GATEHOUSE_CLOCK_LEEWAY_SECS", "0"),
        ],
        env.clock.clone(),
    )
    .await;
    let http = reqwest::Client::new();
    let keys_url = format!(
        "http://{}/api/v1/accounts/{account_id}/keys",
        gatehouse.addr
    );
    let narrow: Value = http
        .post(&keys_url)
        .bearer_auth(&admin)
        .json(&json!({ "name": "reader", "scopes": ["keys:read"] }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let reader = narrow["secret"].as_str().unwrap().to_string();
    let reader_id = narrow["key"]["key_id"].as_str().unwrap().to_string();

    let layer = GuardLayer::new(gatehouse.channel().await)
        .routes(routes())
        .unwrap()
        .deadline(Duration::from_secs(2));
    let service = axum_service(layer.clone()).await;
    let grpc = tonic_service(layer).await;

    // Allowed: the principal reaches the handler.
    let (status, _, body) = call(http.get(format!("{service}/keys")).bearer_auth(&reader)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["subject"], reader_id.as_str());
    assert_eq!(body["kind"], "api_key");
    health(&grpc, Some(&admin))
        .await
        .expect("the admin holds users:write");

    // Missing scope: 403, the JSON error body, insufficient_scope naming the scope.
    let (status, challenge, body) =
        call(http.post(format!("{service}/users")).bearer_auth(&reader)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["code"], "forbidden");
    assert_eq!(body["statusCode"], 403);
    assert_eq!(body["reason"], "INSUFFICIENT_SCOPE");
    assert_eq!(
        challenge.as_deref(),
        Some(r#"Bearer realm="gatehouse", error="insufficient_scope", scope="users:write""#)
    );
    let denied = health(&grpc, Some(&reader)).await.unwrap_err();
    assert_eq!(
        (denied.code(), reason(&denied).as_str()),
        (Code::PermissionDenied, "INSUFFICIENT_SCOPE")
    );

    // Missing and forged credentials: 401, with and without invalid_token.
    let (status, challenge, body) = call(http.get(format!("{service}/keys"))).await;
    assert_eq!(
        (status, body["reason"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("CREDENTIAL_MISSING"))
    );
    assert_eq!(challenge.as_deref(), Some(r#"Bearer realm="gatehouse""#));
    let forged = "eyJhbGciOiJub25lIiwidHlwIjoiYXQrand0In0.eyJzdWIiOiJ4In0.";
    let (status, challenge, body) =
        call(http.get(format!("{service}/keys")).bearer_auth(forged)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["code"], "unauthorized");
    assert_eq!(
        challenge.as_deref(),
        Some(r#"Bearer realm="gatehouse", error="invalid_token""#)
    );
    let denied = health(&grpc, None).await.unwrap_err();
    assert_eq!(
        (denied.code(), reason(&denied).as_str()),
        (Code::Unauthenticated, "CREDENTIAL_MISSING")
    );
    let denied = health(&grpc, Some("garbage")).await.unwrap_err();
    assert_eq!(
        (denied.code(), reason(&denied).as_str()),
        (Code::Unauthenticated, "CREDENTIAL_MALFORMED")
    );

    // A caller holding only an API key: a TokenSource exchanges it, and the
    // bearer layer (tonic) or `authorize` (reqwest) attaches the SDK token.
    // (No refresh buffer: every call below uses the one token while it lives.)
    let tokens = gatehouse_client::TokenSource::with_config(
        &format!("http://{}", gatehouse.addr),
        gatehouse_client::Credentials::new(
            account_id.clone(),
            boot["key_id"].as_str().unwrap(),
            admin.clone(),
        ),
        gatehouse_client::TokenSourceConfig {
            refresh_buffer: Duration::ZERO,
            ..Default::default()
        },
    )
    .unwrap();
    let authed_channel = tower::ServiceBuilder::new()
        .layer(gatehouse_client::BearerLayer::new(tokens.clone()))
        .service(grpc.clone());
    HealthClient::new(authed_channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("an SDK token from the bearer layer passes the guard");
    let (status, _, body) = call(
        tokens
            .authorize(http.get(format!("{service}/keys")))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body["kind"].as_str()),
        (StatusCode::OK, Some("sdk"))
    );
    let client = reqwest_middleware::ClientBuilder::new(http.clone())
        .with(gatehouse_client::BearerMiddleware::new(tokens.clone()))
        .build();
    let through = client.get(format!("{service}/keys")).send().await.unwrap();
    assert_eq!(
        through.status(),
        StatusCode::OK,
        "the middleware attaches the token"
    );
    assert_eq!(tokens.exchanges(), 1, "one exchange for every call");
    // The synchronous tonic interceptor uses the cached token; before any
    // token was fetched it refuses to send the call.
    HealthClient::with_interceptor(grpc.clone(), tokens.interceptor())
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("the interceptor attaches the cached SDK token");
    let unprimed = gatehouse_client::TokenSource::new(
        &format!("http://{}", gatehouse.addr),
        gatehouse_client::Credentials::new(account_id.clone(), "k", "s"),
    )
    .unwrap();
    let refused = HealthClient::with_interceptor(grpc.clone(), unprimed.interceptor())
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    assert!(
        refused.message().contains("no SDK token yet"),
        "refused by the interceptor itself: {refused:?}"
    );

    // An expired token: 401 TOKEN_EXPIRED.
    let sdk: Value = http
        .post(format!("http://{}/v1/auth/sdk-token", gatehouse.addr))
        .json(&json!({
            "account_id": account_id,
            "key_id": boot["key_id"],
            "key_secret": admin,
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let short = sdk["access_token"].as_str().unwrap().to_string();
    let (status, _, _) = call(http.get(format!("{service}/keys")).bearer_auth(&short)).await;
    assert_eq!(status, StatusCode::OK, "valid while fresh");
    // Past the token's four seconds, on the server's clock.
    gatehouse.advance(Duration::from_secs(5));
    let (status, challenge, body) =
        call(http.get(format!("{service}/keys")).bearer_auth(&short)).await;
    assert_eq!(
        (status, body["reason"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("TOKEN_EXPIRED"))
    );
    assert_eq!(
        challenge.as_deref(),
        Some(r#"Bearer realm="gatehouse", error="invalid_token""#)
    );

    // Revoked: refused within the propagation bound.
    let revoked = http
        .post(format!("{keys_url}/{reader_id}/revoke"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), StatusCode::OK);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _, body) =
            call(http.get(format!("{service}/keys")).bearer_auth(&reader)).await;
        if status == StatusCode::UNAUTHORIZED {
            assert_eq!(body["reason"], "KEY_REVOKED");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still allowed: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let denied = health(&grpc, Some(&reader)).await.unwrap_err();
    assert_eq!(
        (denied.code(), reason(&denied).as_str()),
        (Code::Unauthenticated, "KEY_REVOKED")
    );

    // A verifier that accepts connections and never answers: the deadline
    // ends the wait, and the guard fails closed.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let hung = axum_service(
        GuardLayer::new(
            Endpoint::from_shared(format!("http://{silent_addr}"))
                .unwrap()
                .connect_lazy(),
        )
        .routes(routes())
        .unwrap()
        .deadline(Duration::from_millis(300)),
    )
    .await;
    let started = tokio::time::Instant::now();
    let (status, _, body) = call(http.get(format!("{hung}/keys")).bearer_auth(&admin)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the deadline bounds the wait: {:?}",
        started.elapsed()
    );

    // Gatehouse down: fail closed by default (503), open when chosen.
    let nowhere = Endpoint::from_static("http://127.0.0.1:1").connect_lazy();
    let closed = axum_service(GuardLayer::new(nowhere.clone()).routes(routes()).unwrap()).await;
    let (status, _, body) = call(http.get(format!("{closed}/keys")).bearer_auth(&admin)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["reason"], "AUTH_UNAVAILABLE");
    let grpc_closed =
        tonic_service(GuardLayer::new(nowhere.clone()).routes(routes()).unwrap()).await;
    let denied = health(&grpc_closed, Some(&admin)).await.unwrap_err();
    assert_eq!(denied.code(), Code::Unavailable);
    let open = axum::Router::new()
        .route(
            "/keys",
            get(|principal: Option<Extension<Principal>>| async move {
                if principal.is_some() {
                    "verified"
                } else {
                    "unverified"
                }
            }),
        )
        .layer(
            GuardLayer::new(nowhere)
                .routes(routes())
                .unwrap()
                .when_unavailable(WhenUnavailable::FailOpen),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, open).await });
    let answer = http
        .get(format!("http://{addr}/keys"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(answer.text().await.unwrap(), "unverified");
}
