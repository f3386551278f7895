//! HTTP+JSON end to end, on the gRPC port, on SQLite and Postgres: one table
//! of failing calls made over both transports (same answer, same reason,
//! nothing written), the error body and challenges, 413/415/404/405/429, and
//! the happy paths the products' callers use (WorkClaw, Scope, SphereScout,
//! Claude Scope) with a real HTTP client.

use gatehouse_api::v1 as pb;
use gatehouse_api::v1::auth_service_client::AuthServiceClient;
use gatehouse_api::v1::key_service_client::KeyServiceClient;
use gatehouse_api::v1::verifier_service_client::VerifierServiceClient;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::authed;
use crate::issuer::serve;
use crate::support::{Env, OWNER, PASSWORD, bootstrap, event_log_text, postgres, reason, sqlite};

#[tokio::test]
async fn grpc_and_http_answer_alike_on_sqlite() {
    both_transports(sqlite()).await;
}

#[tokio::test]
async fn grpc_and_http_answer_alike_on_postgres() {
    both_transports(postgres().await).await;
}

/// One failing call, made over either transport.
#[derive(Debug, Clone)]
enum Call {
    Login(&'static str, &'static str),
    Refresh(&'static str),
    Sdk(String, String, String),
    CreateKey(Option<String>, Vec<&'static str>),
    GetKey(String, String),
    Revoke(String, String),
    Verify(Option<String>, Vec<&'static str>),
}

/// What an HTTP caller sees.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    challenge: Option<String>,
    retry_after: Option<String>,
    body: Value,
}

async fn send(request: reqwest::RequestBuilder) -> Answer {
    let response = request.send().await.expect("HTTP request");
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let (challenge, retry_after) = (header("www-authenticate"), header("retry-after"));
    let status = response.status();
    assert_eq!(
        header("content-type").as_deref(),
        (status != StatusCode::NO_CONTENT).then_some("application/json"),
        "{status}"
    );
    let body = if status == StatusCode::NO_CONTENT {
        Value::Null
    } else {
        response.json().await.expect("a JSON body")
    };
    Answer {
        status,
        challenge,
        retry_after,
        body,
    }
}

struct World {
    base: String,
    http: reqwest::Client,
    channel: Channel,
    account_id: String,
}

impl World {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn post(&self, path: &str, bearer: Option<&str>, body: Value) -> Answer {
        let mut request = self.http.post(self.url(path)).json(&body);
        if let Some(bearer) = bearer {
            request = request.bearer_auth(bearer);
        }
        send(request).await
    }

    async fn get(&self, path: &str, bearer: &str) -> Answer {
        send(self.http.get(self.url(path)).bearer_auth(bearer)).await
    }

    async fn grpc(&self, call: &Call) -> Status {
        let with = |message, bearer: &Option<String>| match bearer {
            Some(bearer) => authed(message, bearer),
            None => tonic::Request::new(message),
        };
        let mut auth = AuthServiceClient::new(self.channel.clone());
        let mut keys = KeyServiceClient::new(self.channel.clone());
        let account_id = self.account_id.clone();
        let result = match call.clone() {
            Call::Login(username, password) => auth
                .login(pb::LoginRequest {
                    username: username.into(),
                    password: password.into(),
                })
                .await
                .map(|_| ()),
            Call::Refresh(token) => auth
                .refresh(pb::RefreshRequest {
                    refresh_token: token.into(),
                })
                .await
                .map(|_| ()),
            Call::Sdk(account_id, key_id, key_secret) => auth
                .exchange_sdk_token(pb::ExchangeSdkTokenRequest {
                    account_id,
                    key_id,
                    key_secret,
                })
                .await
                .map(|_| ()),
            Call::CreateKey(bearer, scopes) => keys
                .create_api_key(with(
                    pb::CreateApiKeyRequest {
                        account_id,
                        name: "k".into(),
                        scopes: scopes.iter().map(|s| s.to_string()).collect(),
                        expires_at: None,
                    },
                    &bearer,
                ))
                .await
                .map(|_| ()),
            Call::GetKey(bearer, key_id) => keys
                .get_api_key(authed(pb::GetApiKeyRequest { account_id, key_id }, &bearer))
                .await
                .map(|_| ()),
            Call::Revoke(bearer, key_id) => keys
                .revoke_api_key(authed(
                    pb::RevokeApiKeyRequest {
                        account_id,
                        key_id,
                        reason: String::new(),
                    },
                    &bearer,
                ))
                .await
                .map(|_| ()),
            Call::Verify(credential, scopes) => VerifierServiceClient::new(self.channel.clone())
                .verify(pb::VerifyRequest {
                    credential: credential.unwrap_or_default(),
                    required_scopes: scopes.iter().map(|s| s.to_string()).collect(),
                    audience: String::new(),
                })
                .await
                .map(|_| ()),
        };
        result.expect_err("the call must fail")
    }

    async fn http(&self, call: &Call) -> Answer {
        let keys = format!("/api/v1/accounts/{}/keys", self.account_id);
        match call.clone() {
            Call::Login(username, password) => {
                let body = json!({ "username": username, "password": password });
                self.post("/api/auth/login", None, body).await
            }
            Call::Refresh(token) => {
                let body = json!({ "refresh_token": token });
                self.post("/api/token/refresh", None, body).await
            }
            Call::Sdk(account_id, key_id, key_secret) => {
                let body =
                    json!({ "account_id": account_id, "key_id": key_id, "key_secret": key_secret });
                self.post("/v1/auth/sdk-token", None, body).await
            }
            Call::CreateKey(bearer, scopes) => {
                let body = json!({ "name": "k", "scopes": scopes });
                self.post(&keys, bearer.as_deref(), body).await
            }
            Call::GetKey(bearer, key_id) => self.get(&format!("{keys}/{key_id}"), &bearer).await,
            Call::Revoke(bearer, key_id) => {
                self.post(&format!("{keys}/{key_id}/revoke"), Some(&bearer), json!({}))
                    .await
            }
            Call::Verify(credential, scopes) => {
                let body = json!({ "required_scopes": scopes });
                self.post("/api/v1/verify", credential.as_deref(), body)
                    .await
            }
        }
    }
}

/// The HTTP status and body `code` a gRPC code maps to.
fn http_of(code: Code) -> (StatusCode, &'static str) {
    match code {
        Code::InvalidArgument => (StatusCode::BAD_REQUEST, "invalid_request"),
        Code::Unauthenticated => (StatusCode::UNAUTHORIZED, "unauthorized"),
        Code::PermissionDenied => (StatusCode::FORBIDDEN, "forbidden"),
        Code::NotFound => (StatusCode::NOT_FOUND, "not_found"),
        Code::FailedPrecondition | Code::AlreadyExists | Code::Aborted => {
            (StatusCode::CONFLICT, "conflict")
        }
        Code::ResourceExhausted => (StatusCode::TOO_MANY_REQUESTS, "too_many_requests"),
        other => panic!("no HTTP mapping expected for {other:?}"),
    }
}

async fn both_transports(env: Env) {
    let boot = bootstrap(&env).await;
    let server = serve(&env).await;
    let account_id = boot["account_id"].as_str().unwrap().to_string();
    let admin = boot["secret"].as_str().unwrap().to_string();
    let world = World {
        base: format!("http://{}", server.addr),
        http: reqwest::Client::new(),
        channel: server.channel().await,
        account_id: account_id.clone(),
    };

    // Keys to act on, made over HTTP.
    let created = world
        .post(
            &format!("/api/v1/accounts/{account_id}/keys"),
            Some(&admin),
            json!({ "name": "narrow", "scopes": ["keys:write"] }),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    let narrow = created.body["secret"].as_str().unwrap().to_string();
    let narrow_id = created.body["key"]["key_id"].as_str().unwrap().to_string();
    assert_eq!(created.body["key"]["state"], "active");
    assert!(created.body["key"].get("secret").is_none());
    let revoked = world
        .post(
            &format!("/api/v1/accounts/{account_id}/keys/{narrow_id}/revoke"),
            Some(&admin),
            json!({ "reason": "test" }),
        )
        .await;
    assert_eq!(revoked.status, StatusCode::OK, "{:?}", revoked.body);
    let created = world
        .post(
            &format!("/api/v1/accounts/{account_id}/keys"),
            Some(&admin),
            json!({ "name": "reader", "scopes": ["keys:read", "keys:write"] }),
        )
        .await;
    let reader = created.body["secret"].as_str().unwrap().to_string();
    let reader_id = created.body["key"]["key_id"].as_str().unwrap().to_string();
    let unknown_key = "01a21100-0000-7000-8000-000000000000".to_string();

    let cases: Vec<(Call, Code, &str)> = vec![
        (
            Call::Login(OWNER, "wrong password!"),
            Code::Unauthenticated,
            "INVALID_CREDENTIALS",
        ),
        (
            Call::Login("nobody@example.com", "wrong password!"),
            Code::Unauthenticated,
            "INVALID_CREDENTIALS",
        ),
        (
            Call::Login("", "wrong password!"),
            Code::InvalidArgument,
            "INVALID_ARGUMENT",
        ),
        (
            Call::Login(OWNER, ""),
            Code::InvalidArgument,
            "INVALID_ARGUMENT",
        ),
        (
            Call::Refresh("wc_rt_garbage"),
            Code::Unauthenticated,
            "REFRESH_TOKEN_INVALID",
        ),
        (Call::Refresh(""), Code::InvalidArgument, "INVALID_ARGUMENT"),
        (
            Call::Sdk("not-a-uuid".into(), reader_id.clone(), reader.clone()),
            Code::InvalidArgument,
            "INVALID_ARGUMENT",
        ),
        (
            Call::Sdk(account_id.clone(), reader_id.clone(), String::new()),
            Code::InvalidArgument,
            "INVALID_ARGUMENT",
        ),
        (
            Call::Sdk(account_id.clone(), reader_id.clone(), "wc_live_typo".into()),
            Code::Unauthenticated,
            "INVALID_KEY_CREDENTIALS",
        ),
        (
            Call::Sdk(account_id.clone(), narrow_id.clone(), narrow.clone()),
            Code::Unauthenticated,
            "INVALID_KEY_CREDENTIALS",
        ),
        (
            Call::CreateKey(None, vec!["keys:read"]),
            Code::Unauthenticated,
            "CREDENTIAL_MISSING",
        ),
        (
            Call::CreateKey(Some("forged.token.here".into()), vec!["keys:read"]),
            Code::Unauthenticated,
            "CREDENTIAL_MALFORMED",
        ),
        (
            Call::CreateKey(Some(narrow.clone()), vec!["keys:read"]),
            Code::Unauthenticated,
            "KEY_REVOKED",
        ),
        // A mistyped key is judged as a key by admin calls and Verify alike.
        (
            Call::CreateKey(Some("wc_live_typo".into()), vec!["keys:read"]),
            Code::Unauthenticated,
            "BAD_CHECKSUM",
        ),
        (
            Call::Verify(Some("wc_live_typo".into()), vec![]),
            Code::Unauthenticated,
            "BAD_CHECKSUM",
        ),
        (
            Call::CreateKey(Some(admin.clone()), vec!["nope:read"]),
            Code::InvalidArgument,
            "SCOPE_UNKNOWN",
        ),
        (
            Call::CreateKey(Some(admin.clone()), vec!["Bad"]),
            Code::InvalidArgument,
            "INVALID_ARGUMENT",
        ),
        (
            Call::CreateKey(Some(reader.clone()), vec!["users:write"]),
            Code::PermissionDenied,
            "CANNOT_GRANT",
        ),
        (
            Call::GetKey(admin.clone(), unknown_key.clone()),
            Code::NotFound,
            "NOT_FOUND",
        ),
        (
            Call::GetKey(admin.clone(), "not-a-key".into()),
            Code::InvalidArgument,
            "INVALID_ARGUMENT",
        ),
        (
            Call::Revoke(admin.clone(), narrow_id.clone()),
            Code::FailedPrecondition,
            "FAILED_PRECONDITION",
        ),
        (
            Call::Revoke(reader.clone(), admin_key(&boot)),
            Code::PermissionDenied,
            "CANNOT_GRANT",
        ),
        (
            Call::Verify(None, vec![]),
            Code::Unauthenticated,
            "CREDENTIAL_MISSING",
        ),
        (
            Call::Verify(Some("garbage".into()), vec![]),
            Code::Unauthenticated,
            "CREDENTIAL_MALFORMED",
        ),
        (
            Call::Verify(Some(reader.clone()), vec!["users:write"]),
            Code::PermissionDenied,
            "INSUFFICIENT_SCOPE",
        ),
        // An unbounded list is refused before anything is echoed back.
        (
            Call::Verify(
                Some(reader.clone()),
                (0..10_000)
                    .map(|i| &*Box::leak(format!("s{i}:read").into_boxed_str()))
                    .collect(),
            ),
            Code::InvalidArgument,
            "TOO_MANY_SCOPES",
        ),
        (
            Call::Verify(Some(reader.clone()), vec!["keys:*"]),
            Code::InvalidArgument,
            "INVALID_SCOPE",
        ),
    ];
    let before = event_log_text(&env).await;
    let login_events = |log: &str| {
        log.lines()
            .filter(|l| !l.starts_with("LoginFailed.v1"))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    for (call, code, why) in &cases {
        let status = world.grpc(call).await;
        assert_eq!(
            (status.code(), reason(&status).as_str()),
            (*code, *why),
            "gRPC {call:?}: {status:?}"
        );
        let answer = world.http(call).await;
        let (http_status, http_code) = http_of(*code);
        assert_eq!(
            answer.status, http_status,
            "HTTP {call:?}: {:?}",
            answer.body
        );
        assert_eq!(answer.body["code"], http_code, "{call:?}");
        assert_eq!(answer.body["statusCode"], http_status.as_u16(), "{call:?}");
        assert_eq!(answer.body["reason"], *why, "{call:?}");
        assert_eq!(
            answer.body["message"],
            status.message(),
            "one message for both: {call:?}"
        );
        match http_status {
            StatusCode::UNAUTHORIZED if *why == "CREDENTIAL_MISSING" => assert_eq!(
                answer.challenge.as_deref(),
                Some(r#"Bearer realm="gatehouse""#)
            ),
            StatusCode::UNAUTHORIZED => assert_eq!(
                answer.challenge.as_deref(),
                Some(r#"Bearer realm="gatehouse", error="invalid_token""#)
            ),
            StatusCode::FORBIDDEN => assert!(
                answer
                    .challenge
                    .as_deref()
                    .is_some_and(|c| c.contains(r#"error="insufficient_scope", scope=""#)),
                "{:?}",
                answer.challenge
            ),
            _ => assert_eq!(answer.challenge, None, "{call:?}"),
        }
    }
    // Failed logins are recorded (as before); nothing else was written.
    assert_eq!(
        login_events(&event_log_text(&env).await),
        login_events(&before),
        "failing calls write nothing"
    );
    // Unknown user and wrong password are indistinguishable.
    let wrong = world.http(&cases[0].0).await;
    let unknown = world.http(&cases[1].0).await;
    assert_eq!((wrong.status, &wrong.body), (unknown.status, &unknown.body));

    // Malformed requests: 400 naming the field, 415, 413, 404, 405 — JSON all.
    let login = world.url("/api/auth/login");
    let missing = world
        .post("/api/auth/login", None, json!({ "username": OWNER }))
        .await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
    assert!(
        missing.body["message"]
            .as_str()
            .unwrap()
            .contains("password"),
        "{:?}",
        missing.body
    );
    let typed = world
        .post(
            "/api/auth/login",
            None,
            json!({ "username": 7, "password": "x" }),
        )
        .await;
    assert_eq!(typed.status, StatusCode::BAD_REQUEST);
    assert!(
        typed.body["message"].as_str().unwrap().contains("username"),
        "{:?}",
        typed.body
    );
    let garbled = send(
        world
            .http
            .post(&login)
            .header("content-type", "application/json")
            .body("{not json"),
    )
    .await;
    assert_eq!(
        (garbled.status, garbled.body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request"))
    );
    let form = send(world.http.post(&login).body("username=x")).await;
    assert_eq!(
        (form.status, form.body["code"].as_str()),
        (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Some("unsupported_media_type")
        )
    );
    let huge = send(
        world
            .http
            .post(&login)
            .header("content-type", "application/json")
            // Twice the limit: the server reads it before answering, so the
            // client, still writing, gets the 413 and not a broken pipe.
            .body(format!("{{\"username\": \"{}\"}}", "a".repeat(2 << 20))),
    )
    .await;
    assert_eq!(
        (huge.status, huge.body["code"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("payload_too_large"))
    );
    let nowhere = send(world.http.get(world.url("/api/nowhere"))).await;
    assert_eq!(
        (nowhere.status, nowhere.body["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let wrong_method = send(world.http.get(&login)).await;
    assert_eq!(wrong_method.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(wrong_method.body["statusCode"], 405);
    // A value of the wrong type is named by its field, never echoed back
    // (it may be a password).
    let echoed = world
        .post(
            "/api/auth/login",
            None,
            json!({ "username": OWNER, "password": 98765432123456789u64 }),
        )
        .await;
    assert_eq!(echoed.status, StatusCode::BAD_REQUEST);
    let message = echoed.body["message"].as_str().unwrap();
    assert!(
        message.contains("password") && !message.contains("98765432123456789"),
        "{message}"
    );
    assert_eq!(echoed.body["reason"], "INVALID_ARGUMENT");
    // Query strings and path segments speak the error format too, and a time
    // no backend can store is the caller's 400, not a database's 500.
    let keys_path = format!("/api/v1/accounts/{account_id}/keys");
    for (path, named) in [
        (format!("{keys_path}?page_size=abc"), "page_size"),
        (
            format!("{keys_path}?include_deleted=yes"),
            "include_deleted",
        ),
        (
            format!("/api/v1/accounts/{account_id}/activity?since=yesterday"),
            "since",
        ),
        (
            format!("/api/v1/accounts/{account_id}/activity?since=-9999-01-01T00:00:00Z"),
            "since",
        ),
    ] {
        let answer = world.get(&path, &admin).await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{path}: {:?}",
            answer.body
        );
        assert_eq!(answer.body["code"], "invalid_request", "{path}");
        assert!(
            answer.body["message"].as_str().unwrap().contains(named),
            "{path}: {:?}",
            answer.body
        );
    }
    // All-optional bodies may be left out: a bare POST is read as `{}`, so
    // its credential is judged first.
    let bare = send(world.http.post(world.url("/api/v1/verify"))).await;
    assert_eq!(
        (bare.status, bare.body["reason"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("CREDENTIAL_MISSING"))
    );
    let bare = send(
        world
            .http
            .post(world.url("/api/v1/verify"))
            .bearer_auth(&admin),
    )
    .await;
    assert_eq!(bare.status, StatusCode::OK, "{:?}", bare.body);
    // Another scheme is a credential presented, not a missing one: 401
    // invalid_token, over HTTP and gRPC alike.
    let basic = send(
        world
            .http
            .get(world.url(&keys_path))
            .header("authorization", "Basic Zm9vOmJhcg=="),
    )
    .await;
    assert_eq!(
        (basic.status, basic.body["reason"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("CREDENTIAL_MALFORMED"))
    );
    assert_eq!(
        basic.challenge.as_deref(),
        Some(r#"Bearer realm="gatehouse", error="invalid_token""#)
    );
    let mut request = tonic::Request::new(pb::ListApiKeysRequest {
        account_id: account_id.clone(),
        ..Default::default()
    });
    request
        .metadata_mut()
        .insert("authorization", "Basic Zm9vOmJhcg==".parse().unwrap());
    let status = KeyServiceClient::new(world.channel.clone())
        .list_api_keys(request)
        .await
        .unwrap_err();
    assert_eq!(
        (status.code(), reason(&status).as_str()),
        (Code::Unauthenticated, "CREDENTIAL_MALFORMED")
    );
    // A JSON array is not an object, though serde would fill a struct from it.
    let array = world
        .post("/api/v1/verify", Some(&admin), json!(["platform:admin"]))
        .await;
    assert_eq!(array.status, StatusCode::BAD_REQUEST, "{:?}", array.body);
    let null = world
        .post("/api/v1/verify", Some(&admin), Value::Null)
        .await;
    assert_eq!(
        null.status,
        StatusCode::OK,
        "null is an absent optional body"
    );

    // Throttled logins: 429 with Retry-After, and RESOURCE_EXHAUSTED over gRPC.
    let mut throttled = None;
    for _ in 0..6 {
        let answer = world
            .http(&Call::Login("victim@example.com", "wrong password!"))
            .await;
        if answer.status == StatusCode::TOO_MANY_REQUESTS {
            throttled = Some(answer);
            break;
        }
    }
    let throttled = throttled.expect("the throttle answers 429");
    assert_eq!(throttled.body["code"], "too_many_requests");
    assert_eq!(throttled.body["reason"], "LOGIN_THROTTLED");
    assert!(
        throttled
            .retry_after
            .as_deref()
            .and_then(|s| s.parse::<u64>().ok())
            .is_some_and(|s| s >= 1)
    );
    let status = world
        .grpc(&Call::Login("victim@example.com", "wrong password!"))
        .await;
    assert_eq!(status.code(), Code::ResourceExhausted);

    // The happy paths the products' callers take.
    let session = world
        .post(
            "/api/auth/login",
            None,
            json!({ "username": OWNER, "password": PASSWORD }),
        )
        .await;
    assert_eq!(session.status, StatusCode::OK, "{:?}", session.body);
    assert_eq!(session.body["token_type"], "Bearer");
    assert!(session.body["expires_in"].is_u64());
    assert_eq!(session.body["account"]["id"], account_id.as_str());
    assert_eq!(session.body["account"]["name"], "default");
    let refreshed = world
        .post(
            "/api/token/refresh",
            None,
            json!({ "refresh_token": session.body["refresh_token"] }),
        )
        .await;
    assert_eq!(refreshed.status, StatusCode::OK, "{:?}", refreshed.body);
    assert_ne!(
        refreshed.body["refresh_token"],
        session.body["refresh_token"]
    );
    let sdk = world
        .post(
            "/v1/auth/sdk-token",
            None,
            json!({ "account_id": account_id, "key_id": reader_id, "key_secret": reader }),
        )
        .await;
    assert_eq!(sdk.status, StatusCode::OK, "{:?}", sdk.body);
    assert_eq!(sdk.body["expires_in"], 3600, "a JSON number");
    assert_eq!(sdk.body["token_type"], "Bearer");
    let under_api = world
        .post(
            "/api/v1/auth/sdk-token",
            None,
            json!({ "account_id": account_id, "key_id": reader_id, "key_secret": reader }),
        )
        .await;
    assert_eq!(under_api.status, StatusCode::OK);
    let token = sdk.body["access_token"].as_str().unwrap();
    let verified = world
        .post(
            "/api/v1/verify",
            Some(token),
            json!({ "required_scopes": ["keys:read"] }),
        )
        .await;
    assert_eq!(verified.status, StatusCode::OK, "{:?}", verified.body);
    assert_eq!(verified.body["kind"], "sdk");
    assert_eq!(verified.body["key_id"], reader_id.as_str());
    let jwks = world
        .http
        .get(world.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap();
    assert!(jwks.headers().get("cache-control").is_some());
    let jwks: Value = jwks.json().await.unwrap();
    assert_eq!(jwks["keys"][0]["alg"], "EdDSA");
    let logout = world
        .post(
            "/api/auth/logout",
            None,
            json!({ "refresh_token": refreshed.body["refresh_token"] }),
        )
        .await;
    assert_eq!(logout.status, StatusCode::NO_CONTENT);
    let deleted = send(
        world
            .http
            .delete(world.url(&format!("/api/v1/accounts/{account_id}/keys/{reader_id}")))
            .bearer_auth(&admin),
    )
    .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    let activity = world
        .get(
            &format!("/api/v1/accounts/{account_id}/activity?key_id={reader_id}"),
            &admin,
        )
        .await;
    let kinds: Vec<&str> = activity.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .filter(|k| *k != "usage")
        .collect();
    assert_eq!(kinds, ["created", "revoked", "deleted"]);
    for probe in ["/healthz", "/readyz"] {
        let answer = send(world.http.get(world.url(probe))).await;
        assert_eq!(answer.status, StatusCode::OK, "{probe}");
    }
}

fn admin_key(boot: &Value) -> String {
    boot["key_id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn request_ids_cors_discovery_and_the_live_tail_on_sqlite() {
    browser_and_tail(sqlite()).await;
}

#[tokio::test]
async fn request_ids_cors_discovery_and_the_live_tail_on_postgres() {
    browser_and_tail(postgres().await).await;
}

async fn browser_and_tail(env: Env) {
    let boot = bootstrap(&env).await;
    let server = gatehouse_testkit::spawn_app_on(
        &[
            "serve",
            "--database-url",
            &env.url,
            "--cors-origin",
            "https://console.example.com",
        ],
        &[
            ("GATEHOUSE_MASTER_KEY", crate::support::MASTER_KEY),
            ("GATEHOUSE_POLL_INTERVAL_MS", "100"),
        ],
        env.clock.clone(),
    )
    .await;
    let account_id = boot["account_id"].as_str().unwrap().to_string();
    let admin = boot["secret"].as_str().unwrap().to_string();
    let base = format!("http://{}", server.addr);
    let http = reqwest::Client::new();
    let keys = format!("{base}/api/v1/accounts/{account_id}/keys");

    // X-Request-Id: echoed when given, minted when not, and recorded in the
    // events the request appends — over HTTP and over gRPC.
    let given = http
        .post(&keys)
        .bearer_auth(&admin)
        .header("x-request-id", "trace-me-42")
        .json(&json!({ "name": "auditor", "scopes": ["activity:read"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(given.headers()["x-request-id"], "trace-me-42");
    let auditor: Value = given.json().await.unwrap();
    let minted = http.get(format!("{base}/healthz")).send().await.unwrap();
    let minted_id = minted.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(uuid::Uuid::parse_str(&minted_id).is_ok(), "{minted_id}");
    // An id that is not token-like is replaced, not recorded as given.
    let hostile = http
        .get(format!("{base}/healthz"))
        .header("x-request-id", "admin logged in <ok>")
        .send()
        .await
        .unwrap();
    let replaced = hostile.headers()["x-request-id"].to_str().unwrap();
    assert!(uuid::Uuid::parse_str(replaced).is_ok(), "{replaced}");
    let mut grpc_keys = KeyServiceClient::new(server.channel().await);
    let response = grpc_keys
        .create_api_key(authed(
            pb::CreateApiKeyRequest {
                account_id: account_id.clone(),
                name: "over grpc".into(),
                scopes: vec!["keys:read".into()],
                expires_at: None,
            },
            &admin,
        ))
        .await
        .unwrap();
    let grpc_id = response
        .metadata()
        .get("x-request-id")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert!(uuid::Uuid::parse_str(&grpc_id).is_ok(), "{grpc_id}");
    let log = event_log_text(&env).await;
    assert!(
        log.contains("trace-me-42"),
        "the HTTP request id is in the event's metadata"
    );
    assert!(
        log.contains(&grpc_id),
        "the minted gRPC request id is in the event's metadata"
    );

    // CORS: the configured origin only.
    let preflight = |origin: &'static str| {
        http.request(reqwest::Method::OPTIONS, &keys)
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization, content-type",
            )
            .send()
    };
    let allowed = preflight("https://console.example.com").await.unwrap();
    assert_eq!(
        allowed
            .headers()
            .get("access-control-allow-origin")
            .map(|v| v.to_str().unwrap()),
        Some("https://console.example.com")
    );
    let other = preflight("https://evil.example.com").await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());

    // Discovery names the issuer every token carries and where its keys are.
    let discovery: Value = http
        .get(format!("{base}/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let session: Value = http
        .post(format!("{base}/api/auth/login"))
        .json(&json!({ "username": OWNER, "password": PASSWORD }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = session["access_token"].as_str().unwrap();
    let claims: Value = {
        use base64::Engine as _;
        let payload = token.split('.').nth(1).unwrap();
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .unwrap(),
        )
        .unwrap()
    };
    assert_eq!(discovery["issuer"], claims["iss"]);
    // The embedded default: `http://` + the address actually bound.
    assert_eq!(discovery["issuer"], base.as_str());
    // The OpenAPI description of exactly the routes served.
    let description: Value = http
        .get(format!("{base}/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(description["openapi"], "3.1.0");
    for path in ["/api/auth/login", "/api/v1/verify", "/v1/auth/sdk-token"] {
        assert!(description["paths"][path].is_object(), "{path}");
    }
    let jwks_uri = discovery["jwks_uri"].as_str().unwrap();
    let jwks: Value = http
        .get(jwks_uri)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        jwks["keys"].as_array().is_some_and(|k| !k.is_empty()),
        "{jwks}"
    );

    // The live tail: entries arrive as they happen; the stream ends once
    // the credential is revoked.
    let auditor_secret = auditor["secret"].as_str().unwrap().to_string();
    let auditor_id = auditor["key"]["key_id"].as_str().unwrap().to_string();
    let mut stream = http
        .get(format!(
            "{base}/api/v1/accounts/{account_id}/activity/stream"
        ))
        .bearer_auth(&auditor_secret)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    let mut seen = String::new();
    read_until(&mut stream, &mut seen, "event: activity").await;
    // The gRPC watch with the same key re-checks it just as the SSE tail does.
    let mut audit =
        gatehouse_api::v1::audit_service_client::AuditServiceClient::new(server.channel().await);
    let mut watch = audit
        .watch_key_activity(authed(
            pb::WatchKeyActivityRequest {
                account_id: account_id.clone(),
                ..Default::default()
            },
            &auditor_secret,
        ))
        .await
        .expect("watch")
        .into_inner();
    watch
        .message()
        .await
        .expect("history arrives")
        .expect("an entry");
    let revoked = http
        .post(format!("{keys}/{auditor_id}/revoke"))
        .bearer_auth(&admin)
        .json(&json!({ "reason": "audit over" }))
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), StatusCode::OK);
    read_until(&mut stream, &mut seen, "event: error").await;
    assert!(seen.contains("\"reason\":\"KEY_REVOKED\""), "{seen}");
    let rest = tokio::time::timeout(std::time::Duration::from_secs(5), stream.chunk())
        .await
        .expect("the stream ends");
    assert!(matches!(rest, Ok(None)), "{rest:?}");
    let ended = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            match watch.message().await {
                Ok(Some(_)) => continue,
                other => return other,
            }
        }
    })
    .await
    .expect("the gRPC watch ends once its key is revoked")
    .expect_err("it ends with an error");
    assert_eq!(
        (ended.code(), reason(&ended).as_str()),
        (Code::Unauthenticated, "KEY_REVOKED")
    );
    let unauthenticated = http
        .get(format!(
            "{base}/api/v1/accounts/{account_id}/activity/stream"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), StatusCode::UNAUTHORIZED);
}

/// Reads an event stream into `seen` until `needle` appears (at most 10 s).
async fn read_until(stream: &mut reqwest::Response, seen: &mut String, needle: &str) {
    let found = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while !seen.contains(needle) {
            match stream.chunk().await.unwrap() {
                Some(chunk) => seen.push_str(&String::from_utf8_lossy(&chunk)),
                None => return false,
            }
        }
        true
    })
    .await;
    assert!(matches!(found, Ok(true)), "{needle:?} not seen: {seen}");
}

/// Live tails share one reader and are capped: 8 per credential (the 9th is
/// 429 `TOO_MANY_WATCHES` with `Retry-After`), a closed tail gives its slot
/// back, every open tail sees a new entry, and a logout ends a user's tail
/// within the 5 s re-check (a tail once streamed on after its credential
/// ended).
async fn live_tails_are_shared_and_capped(env: Env) {
    let boot = bootstrap(&env).await;
    let server = serve(&env).await;
    let base = format!("http://{}", server.addr);
    let account_id = boot["account_id"].as_str().unwrap().to_string();
    let admin = boot["secret"].as_str().unwrap().to_string();
    let http = reqwest::Client::new();
    let tail_url = format!("{base}/api/v1/accounts/{account_id}/activity/stream");
    let open = |bearer: String| {
        let (http, url) = (http.clone(), tail_url.clone());
        async move { http.get(url).bearer_auth(bearer).send().await.unwrap() }
    };
    let mut tails = Vec::new();
    for _ in 0..8 {
        let tail = open(admin.clone()).await;
        assert_eq!(tail.status(), StatusCode::OK);
        tails.push(tail);
    }
    let refused = send(http.get(&tail_url).bearer_auth(&admin)).await;
    assert_eq!(
        refused.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{:?}",
        refused.body
    );
    assert_eq!(refused.body["reason"], "TOO_MANY_WATCHES");
    assert!(refused.retry_after.is_some());

    // Another credential has its own allowance: the owner's session.
    let session: Value = http
        .post(format!("{base}/api/auth/login"))
        .json(&json!({ "username": OWNER, "password": PASSWORD }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access = session["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("login failed: {session}"))
        .to_string();
    let mut user_tail = open(access.clone()).await;
    assert_eq!(user_tail.status(), StatusCode::OK);

    // One new entry reaches every open tail.
    let created: Value = http
        .post(format!("{base}/api/v1/accounts/{account_id}/keys"))
        .bearer_auth(&admin)
        .json(&json!({ "name": "watched", "scopes": ["keys:read"] }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key_id = created["key"]["key_id"].as_str().unwrap().to_string();
    for tail in tails.iter_mut() {
        let mut seen = String::new();
        read_until(tail, &mut seen, &key_id).await;
    }
    let mut seen = String::new();
    read_until(&mut user_tail, &mut seen, &key_id).await;

    // A closed tail gives its slot back.
    drop(tails.pop());
    let mut reopened = None;
    for _ in 0..50 {
        let tail = open(admin.clone()).await;
        if tail.status() == StatusCode::OK {
            reopened = Some(tail);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(reopened.is_some(), "the closed tail's slot never came back");

    // A logout adds no activity entry, yet ends the user's tail.
    let logout = http
        .post(format!("{base}/api/auth/logout"))
        .json(&json!({ "refresh_token": session["refresh_token"] }))
        .send()
        .await
        .unwrap();
    assert!(logout.status().is_success(), "{}", logout.status());
    let mut seen = String::new();
    read_until(&mut user_tail, &mut seen, "event: error").await;
    assert!(seen.contains("SESSION_REVOKED"), "{seen}");
}

#[tokio::test]
async fn live_tails_are_shared_and_capped_on_sqlite() {
    live_tails_are_shared_and_capped(sqlite()).await;
}

#[tokio::test]
async fn live_tails_are_shared_and_capped_on_postgres() {
    live_tails_are_shared_and_capped(postgres().await).await;
}
