//! Changing a password (`POST /api/auth/password`, `AuthService.ChangePassword`)
//! on SQLite and Postgres: the old password is checked and throttled like a
//! login, refusals write no password change, and success ends the user's other
//! sessions — their refresh tokens and their access tokens — but not the
//! caller's.

use std::time::{Duration, Instant};

use gatehouse_api::v1 as pb;
use gatehouse_api::v1::auth_service_client::AuthServiceClient;
use gatehouse_api::v1::verifier_service_client::VerifierServiceClient;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tonic::Code;

use crate::authed;
use crate::issuer::serve;
use crate::support::{Env, OWNER, PASSWORD, bootstrap, event_log_text, postgres, reason, sqlite};

const NEW_PASSWORD: &str = "a brand new passphrase";

#[tokio::test]
async fn a_password_change_ends_the_other_sessions_on_sqlite() {
    change_password(sqlite()).await;
}

#[tokio::test]
async fn a_password_change_ends_the_other_sessions_on_postgres() {
    change_password(postgres().await).await;
}

struct Reply {
    status: StatusCode,
    challenge: Option<String>,
    retry_after: Option<String>,
    body: Value,
}

async fn post(http: &reqwest::Client, url: &str, bearer: Option<&str>, body: Value) -> Reply {
    let mut request = http.post(url).json(&body);
    if let Some(bearer) = bearer {
        request = request.bearer_auth(bearer);
    }
    let response = request.send().await.unwrap();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    };
    let (challenge, retry_after) = (header("www-authenticate"), header("retry-after"));
    let status = response.status();
    let text = response.text().await.unwrap();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
    };
    Reply {
        status,
        challenge,
        retry_after,
        body,
    }
}

async fn change_password(env: Env) {
    let boot = bootstrap(&env).await;
    let api_key = boot["secret"].as_str().unwrap().to_string();
    let server = serve(&env).await;
    let base = format!("http://{}", server.addr);
    let http = reqwest::Client::new();
    let login = |password: &'static str| {
        let http = http.clone();
        let url = format!("{base}/api/auth/login");
        async move {
            post(
                &http,
                &url,
                None,
                json!({ "username": OWNER, "password": password }),
            )
            .await
        }
    };
    let password_url = format!("{base}/api/auth/password");
    // Two sessions: this browser (A) and another device (B).
    let a = login(PASSWORD).await.body;
    // B signed in with the address typed differently: still the same user.
    let b = post(
        &http,
        &format!("{base}/api/auth/login"),
        None,
        json!({ "username": format!("  {}  ", OWNER.to_uppercase()), "password": PASSWORD }),
    )
    .await
    .body;
    assert!(b["access_token"].is_string(), "{b}");
    let a_token = a["access_token"].as_str().unwrap().to_string();
    let b_token = b["access_token"].as_str().unwrap().to_string();
    let mut auth = AuthServiceClient::new(server.channel().await);
    let mut verifier = VerifierServiceClient::new(server.channel().await);

    // Refusals, each with its body and challenge, and none changes anything
    // but the record of a failed password check.
    let before = event_log_text(&env).await;
    let body = json!({ "old_password": PASSWORD, "new_password": NEW_PASSWORD });
    let none = post(&http, &password_url, None, body.clone()).await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    assert_eq!(none.body["reason"], "CREDENTIAL_MISSING");
    assert_eq!(
        none.challenge.as_deref(),
        Some(r#"Bearer realm="gatehouse""#)
    );
    let key = post(&http, &password_url, Some(&api_key), body.clone()).await;
    assert_eq!(key.status, StatusCode::FORBIDDEN, "{}", key.body);
    assert_eq!(key.body["code"], "forbidden");
    assert_eq!(key.body["reason"], "USER_TOKEN_REQUIRED");
    assert_eq!(key.body["statusCode"], 403);
    assert_eq!(
        key.challenge, None,
        "not a scope problem: no insufficient_scope"
    );
    for (body, field) in [
        (json!({ "new_password": NEW_PASSWORD }), "old_password"),
        (json!({ "old_password": PASSWORD }), "new_password"),
        (
            json!({ "old_password": PASSWORD, "new_password": "" }),
            "new_password",
        ),
        (
            json!({ "old_password": PASSWORD, "new_password": "short" }),
            "new_password",
        ),
        (
            json!({ "old_password": PASSWORD, "new_password": 42 }),
            "new_password",
        ),
    ] {
        let reply = post(&http, &password_url, Some(&a_token), body.clone()).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{body}: {}",
            reply.body
        );
        assert_eq!(reply.body["code"], "invalid_request");
        assert!(
            reply.body["message"].as_str().unwrap().contains(field),
            "{body} names {field}: {}",
            reply.body
        );
    }
    assert_eq!(
        event_log_text(&env).await,
        before,
        "malformed requests write nothing"
    );
    let wrong = json!({ "old_password": "not my password at all", "new_password": NEW_PASSWORD });
    let reply = post(&http, &password_url, Some(&a_token), wrong).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(reply.body["reason"], "WRONG_PASSWORD");
    assert_eq!(reply.challenge, None);
    // gRPC answers the same call alike.
    let status = auth
        .change_password(authed(
            pb::ChangePasswordRequest {
                old_password: "not my password at all".into(),
                new_password: NEW_PASSWORD.into(),
            },
            &a_token,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(reason(&status), "WRONG_PASSWORD");
    let status = auth
        .change_password(authed(
            pb::ChangePasswordRequest {
                old_password: PASSWORD.into(),
                new_password: NEW_PASSWORD.into(),
            },
            &api_key,
        ))
        .await
        .unwrap_err();
    assert_eq!(
        (status.code(), reason(&status).as_str()),
        (Code::PermissionDenied, "USER_TOKEN_REQUIRED")
    );
    let after = event_log_text(&env).await;
    let new_events: Vec<&str> = after.lines().skip(before.lines().count()).collect();
    assert_eq!(new_events.len(), 2, "{new_events:#?}");
    assert!(
        new_events.iter().all(|e| e.starts_with("LoginFailed.v1")),
        "a wrong old password is recorded as a failed check, nothing else: {new_events:#?}"
    );
    // The old password still works: nothing changed.
    assert_eq!(login(PASSWORD).await.status, StatusCode::OK);

    // The change, from session A.
    let body = json!({ "old_password": PASSWORD, "new_password": NEW_PASSWORD });
    let done = post(&http, &password_url, Some(&a_token), body).await;
    assert_eq!(done.status, StatusCode::NO_CONTENT, "{}", done.body);
    assert_eq!(done.body, Value::Null, "204 has no body");

    // Session B is over: its refresh token and its access token.
    let status = auth
        .refresh(pb::RefreshRequest {
            refresh_token: b["refresh_token"].as_str().unwrap().into(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        (status.code(), reason(&status).as_str()),
        (Code::Unauthenticated, "SESSION_REVOKED")
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = verifier
            .verify(pb::VerifyRequest {
                credential: b_token.clone(),
                required_scopes: vec![],
                audience: String::new(),
            })
            .await;
        match answer {
            Err(status) if status.code() == Code::Unauthenticated => {
                assert_eq!(reason(&status), "SESSION_REVOKED");
                break;
            }
            other => assert!(
                Instant::now() < deadline,
                "B's access token still verifies: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let keys_url = format!(
        "{base}/api/v1/accounts/{}/keys",
        boot["account_id"].as_str().unwrap()
    );
    let b_admin = http
        .get(&keys_url)
        .bearer_auth(&b_token)
        .send()
        .await
        .unwrap();
    assert_eq!(b_admin.status(), StatusCode::UNAUTHORIZED);
    // Session A goes on: its token works and its refresh token rotates.
    let a_admin = http
        .get(&keys_url)
        .bearer_auth(&a_token)
        .send()
        .await
        .unwrap();
    assert_eq!(a_admin.status(), StatusCode::OK);
    auth.refresh(pb::RefreshRequest {
        refresh_token: a["refresh_token"].as_str().unwrap().into(),
    })
    .await
    .expect("the caller's own session stays");

    // The old password no longer logs in; the new one does.
    let old = login(PASSWORD).await;
    assert_eq!(old.status, StatusCode::UNAUTHORIZED);
    assert_eq!(old.body["reason"], "INVALID_CREDENTIALS");
    assert_eq!(login(NEW_PASSWORD).await.status, StatusCode::OK);

    let log = event_log_text(&env).await;
    assert!(log.contains("UserPasswordChanged.v1"));
    assert!(log.contains("password_changed"), "B's revocation says why");
    assert!(
        !log.contains(NEW_PASSWORD) && !log.contains(PASSWORD),
        "no password in the log"
    );

    // Guessing the old password is throttled like a login: 429, Retry-After.
    let guess =
        json!({ "old_password": "guess guess guess", "new_password": "whatever it is now" });
    let mut throttled = None;
    for _ in 0..6 {
        let reply = post(&http, &password_url, Some(&a_token), guess.clone()).await;
        if reply.status == StatusCode::TOO_MANY_REQUESTS {
            throttled = Some(reply);
            break;
        }
        assert_eq!(reply.body["reason"], "WRONG_PASSWORD");
    }
    let throttled = throttled.expect("guesses are throttled");
    assert_eq!(throttled.body["code"], "too_many_requests");
    assert!(
        throttled
            .retry_after
            .as_deref()
            .and_then(|s| s.parse::<u64>().ok())
            .is_some_and(|s| s >= 1)
    );
}

#[tokio::test]
async fn logins_racing_a_password_change_keep_no_session_on_sqlite() {
    race(sqlite()).await;
}

#[tokio::test]
async fn logins_racing_a_password_change_keep_no_session_on_postgres() {
    race(postgres().await).await;
}

/// Logins with the old password run while the password changes: each either
/// commits before the change (and is ended by it) or fails — none keeps a
/// session that outlives the old password.
async fn race(env: Env) {
    bootstrap(&env).await;
    let server = gatehouse_testkit::spawn_app_on(
        &[
            "serve",
            "--database-url",
            &env.url,
            "--login-free-attempts",
            "1000",
        ],
        &[("GATEHOUSE_MASTER_KEY", crate::support::MASTER_KEY)],
        env.clock.clone(),
    )
    .await;
    let base = format!("http://{}", server.addr);
    let http = reqwest::Client::new();
    let credentials = json!({ "username": OWNER, "password": PASSWORD });
    let a = post(
        &http,
        &format!("{base}/api/auth/login"),
        None,
        credentials.clone(),
    )
    .await
    .body;
    let a_token = a["access_token"].as_str().unwrap().to_string();
    let logins: Vec<_> = (0..8)
        .map(|_| {
            let (http, url, body) = (
                http.clone(),
                format!("{base}/api/auth/login"),
                credentials.clone(),
            );
            tokio::spawn(async move { post(&http, &url, None, body).await })
        })
        .collect();
    let change = post(
        &http,
        &format!("{base}/api/auth/password"),
        Some(&a_token),
        json!({ "old_password": PASSWORD, "new_password": NEW_PASSWORD }),
    )
    .await;
    assert_eq!(change.status, StatusCode::NO_CONTENT, "{}", change.body);
    let mut auth = AuthServiceClient::new(server.channel().await);
    for login in logins {
        let reply = login.await.unwrap();
        if reply.status != StatusCode::OK {
            assert_eq!(
                reply.body["reason"], "INVALID_CREDENTIALS",
                "{}",
                reply.body
            );
            continue;
        }
        let refreshed = auth
            .refresh(pb::RefreshRequest {
                refresh_token: reply.body["refresh_token"].as_str().unwrap().into(),
            })
            .await;
        assert!(
            refreshed.is_err(),
            "a session begun with the old password outlived the change"
        );
    }
}
