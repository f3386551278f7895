//! The issuer end to end: bootstrap, login, refresh rotation and reuse,
//! logout, SDK exchange, throttling, tenancy, JWKS and signing-key rotation —
//! through the real binary and real gRPC clients, on Postgres and SQLite.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use gatehouse_api::v1 as pb;
use gatehouse_api::v1::account_service_client::AccountServiceClient;
use gatehouse_api::v1::auth_service_client::AuthServiceClient;
use gatehouse_testkit::App;
use tonic::{Code, Request};
use tonic_types::StatusExt as _;

use crate::BIN;
use crate::support::{
    Env, MASTER_KEY, OWNER, PASSWORD, bootstrap, event_log_text, login, postgres, reason, refresh,
    run_cli, server, sqlite,
};

/// The issuer tests' server: three free login attempts, keys published at once.
pub async fn serve(env: &Env) -> App {
    server(
        env,
        "all",
        &[
            "--login-free-attempts",
            "3",
            "--signing-key-publish-lead-secs",
            "0",
        ],
        &[],
    )
    .await
}

/// Verifies a JWT against a JWKS with ed25519-dalek, not the library that signed it.
fn verify_with_jwks(token: &str, jwks: &pb::GetJwksResponse) -> serde_json::Value {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3);
    let header: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    assert_eq!(header["alg"], "EdDSA");
    assert_eq!(header["typ"], "at+jwt");
    let kid = header["kid"].as_str().unwrap();
    let jwk = jwks
        .keys
        .iter()
        .find(|k| k.kid == kid)
        .expect("kid is published in the JWKS");
    assert_eq!(
        (jwk.kty.as_str(), jwk.crv.as_str(), jwk.alg.as_str()),
        ("OKP", "Ed25519", "EdDSA")
    );
    let public: [u8; 32] = URL_SAFE_NO_PAD.decode(&jwk.x).unwrap().try_into().unwrap();
    let key = ed25519_dalek::VerifyingKey::from_bytes(&public).unwrap();
    let signature: [u8; 64] = URL_SAFE_NO_PAD
        .decode(parts[2])
        .unwrap()
        .try_into()
        .unwrap();
    key.verify_strict(
        format!("{}.{}", parts[0], parts[1]).as_bytes(),
        &ed25519_dalek::Signature::from_bytes(&signature),
    )
    .expect("signature verifies against the JWKS");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap()
}

async fn full_flow(env: Env) {
    let boot = bootstrap(&env).await;
    for field in ["account_id", "user_id", "key_id", "secret"] {
        assert!(
            boot[field].as_str().is_some_and(|v| !v.is_empty()),
            "{field} missing: {boot}"
        );
    }
    let secret = boot["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("wc_live_"));
    let events_after_bootstrap = event_log_text(&env).await;
    // A second bootstrap fails clearly and writes nothing.
    let again = tokio::process::Command::new(BIN)
        .args([
            "bootstrap",
            "--username",
            "other@example.com",
            "--database-url",
            &env.url,
        ])
        .env("GATEHOUSE_BOOTSTRAP_PASSWORD", PASSWORD)
        .env("GATEHOUSE_MASTER_KEY", MASTER_KEY)
        .env_remove("DATABASE_URL")
        .output()
        .await
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already bootstrapped"));
    assert_eq!(event_log_text(&env).await, events_after_bootstrap);

    let server = serve(&env).await;
    let mut auth = AuthServiceClient::new(server.channel().await);

    // Login.
    let session = login(&mut auth, PASSWORD).await.expect("owner logs in");
    assert_eq!(session.token_type, "Bearer");
    assert_eq!(session.expires_in, 900);
    let account = session.account.clone().unwrap();
    assert_eq!(account.username, OWNER);
    assert_eq!(account.account_id, boot["account_id"].as_str().unwrap());
    assert!(account.scopes.contains(&"platform:admin".to_string()));
    assert!(session.refresh_token.starts_with("wc_rt_"));

    // The access token verifies against the JWKS alone, with another library.
    let jwks = auth
        .get_jwks(pb::GetJwksRequest {})
        .await
        .unwrap()
        .into_inner();
    let claims = verify_with_jwks(&session.access_token, &jwks);
    assert_eq!(claims["sub"], account.user_id.as_str());
    assert_eq!(claims["acc"], account.account_id.as_str());
    for claim in ["iss", "aud", "exp", "iat", "nbf", "jti", "scope", "sid"] {
        assert!(!claims[claim].is_null(), "claim {claim} missing: {claims}");
    }

    // Refresh rotates; the spent token revokes the family; then even the newest fails.
    let first = refresh(&mut auth, &session.refresh_token)
        .await
        .expect("refresh rotates");
    assert_ne!(first.refresh_token, session.refresh_token);
    let second = refresh(&mut auth, &first.refresh_token)
        .await
        .expect("the new token refreshes");
    let reuse = refresh(&mut auth, &session.refresh_token)
        .await
        .expect_err("a spent token is refused");
    assert_eq!(reuse.code(), Code::Unauthenticated);
    assert_eq!(reason(&reuse), "REFRESH_TOKEN_REUSED");
    let newest = refresh(&mut auth, &second.refresh_token)
        .await
        .expect_err("the family is revoked");
    assert_eq!(reason(&newest), "SESSION_REVOKED");
    // The revoked session's access token no longer authorises admin calls.
    let mut accounts = AccountServiceClient::new(server.channel().await);
    let mut request = Request::new(pb::CreateAccountRequest {
        name: "nope".into(),
        ..Default::default()
    });
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", second.access_token).parse().unwrap(),
    );
    let denied = accounts
        .create_account(request)
        .await
        .expect_err("revoked session");
    assert_eq!(denied.code(), Code::Unauthenticated);

    // Logout revokes the family.
    let other = login(&mut auth, PASSWORD).await.unwrap();
    auth.logout(pb::LogoutRequest {
        refresh_token: other.refresh_token.clone(),
    })
    .await
    .expect("logout");
    let after_logout = refresh(&mut auth, &other.refresh_token)
        .await
        .expect_err("logged out");
    assert_eq!(reason(&after_logout), "SESSION_REVOKED");
    for garbage in ["wc_rt_garbage", &"x".repeat(100_000)] {
        let status = refresh(&mut auth, garbage)
            .await
            .expect_err("garbage refresh token");
        assert_eq!(status.code(), Code::Unauthenticated);
    }
    // An absent token is a malformed request, not a failed credential.
    let status = refresh(&mut auth, "").await.expect_err("no refresh token");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("refresh_token"), "{status:?}");

    // SDK exchange.
    let admin = login(&mut auth, PASSWORD).await.unwrap();
    let exchanged = auth
        .exchange_sdk_token(pb::ExchangeSdkTokenRequest {
            account_id: boot["account_id"].as_str().unwrap().into(),
            key_id: boot["key_id"].as_str().unwrap().into(),
            key_secret: secret.clone(),
        })
        .await
        .expect("sdk exchange")
        .into_inner();
    assert_eq!(
        (exchanged.expires_in, exchanged.token_type.as_str()),
        (3600, "Bearer")
    );
    let sdk_claims = verify_with_jwks(&exchanged.access_token, &jwks);
    assert_eq!(sdk_claims["sub"], boot["key_id"]);
    assert!(sdk_claims["scope"].as_str().unwrap().contains("keys:write"));
    assert!(sdk_claims["sid"].is_null());

    // A second account, created by the platform admin with its own owner.
    let mut request = Request::new(pb::CreateAccountRequest {
        name: "Beta".into(),
        owner_username: "beta@example.com".into(),
        owner_password: "another long password".into(),
    });
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", admin.access_token).parse().unwrap(),
    );
    let beta = accounts
        .create_account(request)
        .await
        .expect("create account")
        .into_inner();
    let beta_id = beta.account.unwrap().account_id;

    let wrong_secret = {
        let mut s = secret.clone();
        s.replace_range(10..11, if &s[10..11] == "a" { "b" } else { "a" });
        s
    };
    let cases = [
        (
            "wrong secret",
            boot["account_id"].as_str().unwrap().to_string(),
            wrong_secret,
        ),
        ("another account", beta_id.clone(), secret.clone()),
        (
            "garbage secret",
            boot["account_id"].as_str().unwrap().to_string(),
            "y".into(),
        ),
    ];
    // A malformed account id is a malformed request (400 over HTTP), named.
    let status = auth
        .exchange_sdk_token(pb::ExchangeSdkTokenRequest {
            account_id: "x".into(),
            key_id: boot["key_id"].as_str().unwrap().into(),
            key_secret: secret.clone(),
        })
        .await
        .expect_err("malformed account id");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("account id"), "{status:?}");
    let mut messages = Vec::new();
    for (what, account_id, key_secret) in cases {
        let status = auth
            .exchange_sdk_token(pb::ExchangeSdkTokenRequest {
                account_id,
                key_id: boot["key_id"].as_str().unwrap().into(),
                key_secret,
            })
            .await
            .expect_err(what);
        assert_eq!(status.code(), Code::Unauthenticated, "{what}");
        messages.push(status.message().to_string());
    }
    // A revoked key: the event RevokeApiKey appends, written to the log here.
    let store = gatehouse_eventstore::EventStore::connect(&env.url, Default::default())
        .await
        .unwrap();
    let key_id = gatehouse_domain::ids::KeyId::parse(boot["key_id"].as_str().unwrap()).unwrap();
    let account =
        gatehouse_domain::ids::AccountId::parse(boot["account_id"].as_str().unwrap()).unwrap();
    let revoked =
        gatehouse_domain::apikey::ApiKeyEvent::Revoked(gatehouse_domain::apikey::ApiKeyRevoked {
            key_id,
            account_id: account,
            reason: "test".into(),
            revoked_at: chrono::Utc::now(),
        });
    store
        .append(
            &gatehouse_eventstore::StreamId::parse(key_id.stream()).unwrap(),
            gatehouse_eventstore::ExpectedVersion::Exact(1),
            vec![gatehouse_eventstore::NewEvent::new(
                revoked.event_type(),
                revoked.payload(),
            )],
        )
        .await
        .unwrap();
    // Written by another process, it reaches the issuer's index through the
    // log's tail (at most a poll interval away): from then on it is refused.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let status = loop {
        let exchanged = auth
            .exchange_sdk_token(pb::ExchangeSdkTokenRequest {
                account_id: boot["account_id"].as_str().unwrap().into(),
                key_id: boot["key_id"].as_str().unwrap().into(),
                key_secret: secret.clone(),
            })
            .await;
        match exchanged {
            Err(status) => break status,
            Ok(_) => assert!(
                std::time::Instant::now() < deadline,
                "the issuer never learnt of the revocation"
            ),
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(status.code(), Code::Unauthenticated);
    messages.push(status.message().to_string());
    assert_eq!(messages.len(), 4);
    assert!(messages.windows(2).all(|w| w[0] == w[1]), "{messages:?}");

    // Signing-key rotation: the JWKS gains the new key, old tokens still verify.
    let rotated = run_cli(
        &env,
        &[
            "signing-keys",
            "rotate",
            "--signing-key-publish-lead-secs",
            "0",
        ],
        &[],
    )
    .await;
    let new_kid = serde_json::from_slice::<serde_json::Value>(&rotated.stdout).unwrap()["kid"]
        .as_str()
        .unwrap()
        .to_string();
    let mut jwks_after = jwks.clone();
    for _ in 0..50 {
        jwks_after = auth
            .get_jwks(pb::GetJwksRequest {})
            .await
            .unwrap()
            .into_inner();
        if jwks_after.keys.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        jwks_after.keys.len(),
        2,
        "the rotated key reached the server's JWKS"
    );
    verify_with_jwks(&admin.access_token, &jwks_after);
    let fresh = login(&mut auth, PASSWORD).await.unwrap();
    let header: serde_json::Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(fresh.access_token.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        header["kid"],
        new_kid.as_str(),
        "new tokens are signed by the new key"
    );
    verify_with_jwks(&fresh.access_token, &jwks_after);

    // No password, refresh token or secret in the logs or the event log.
    let logs = server.logs();
    let events = event_log_text(&env).await;
    let secrets = [
        PASSWORD,
        secret.as_str(),
        session.refresh_token.as_str(),
        first.refresh_token.as_str(),
        other.refresh_token.as_str(),
        "another long password",
    ];
    for secret in secrets {
        assert!(!logs.contains(secret), "a secret reached the logs");
        assert!(!events.contains(secret), "a secret reached the event log");
    }
    assert!(events.contains("SessionRevoked.v1") && events.contains("refresh_token_reuse"));
    assert!(events.contains("LoginSucceeded.v1") && events.contains("SigningKeyCreated.v1"));
    server.stop().await.expect("stops as SIGTERM stops it");
}

#[tokio::test]
async fn issuer_flow_on_postgres() {
    full_flow(postgres().await).await;
}

#[tokio::test]
async fn issuer_flow_on_sqlite() {
    full_flow(sqlite()).await;
}

#[tokio::test]
async fn bad_logins_are_indistinguishable_and_throttled_then_lifted_on_postgres() {
    throttle_flow(postgres().await).await;
}

#[tokio::test]
async fn bad_logins_are_indistinguishable_and_throttled_then_lifted_on_sqlite() {
    throttle_flow(sqlite()).await;
}

async fn throttle_flow(env: Env) {
    bootstrap(&env).await;
    let server = serve(&env).await;
    let mut auth = AuthServiceClient::new(server.channel().await);
    let wrong = login(&mut auth, "wrong password!!")
        .await
        .expect_err("wrong password");
    let unknown = auth
        .login(pb::LoginRequest {
            username: "nobody@example.com".into(),
            password: PASSWORD.into(),
        })
        .await
        .expect_err("unknown user");
    assert_eq!(
        (wrong.code(), wrong.message()),
        (unknown.code(), unknown.message())
    );
    assert_eq!(wrong.code(), Code::Unauthenticated);

    // 3 free failures are configured; two more were spent above on the owner
    // (1) and nobody (1). Fail until throttled, in parallel: the counter is atomic.
    let attempts = (0..6).map(|_| {
        let mut auth = auth.clone();
        tokio::spawn(async move {
            login(&mut auth, "wrong password!!")
                .await
                .expect_err("wrong")
        })
    });
    let attempts: Vec<_> = attempts.collect();
    let mut throttled = 0;
    for attempt in attempts {
        let status = attempt.await.unwrap();
        if status.code() == Code::ResourceExhausted {
            throttled += 1;
            assert_eq!(reason(&status), "LOGIN_THROTTLED");
            let retry = status.get_details_retry_info().expect("retry hint");
            assert!(retry.retry_delay.is_some());
        }
    }
    assert!(
        throttled >= 3,
        "parallel guesses slipped past the throttle: {throttled} of 6 throttled"
    );
    // Even the right password waits out the delay...
    let locked = login(&mut auth, PASSWORD)
        .await
        .expect_err("still throttled");
    assert_eq!(locked.code(), Code::ResourceExhausted);
    // ...and the throttle lifts after it.
    let mut lifted = None;
    for _ in 0..100 {
        env.advance(Duration::from_millis(500));
        match login(&mut auth, PASSWORD).await {
            Ok(ok) => {
                lifted = Some(ok);
                break;
            }
            Err(status) => assert_eq!(status.code(), Code::ResourceExhausted),
        }
    }
    assert!(lifted.is_some(), "the throttle never lifted");
}

#[tokio::test]
async fn users_are_created_only_within_the_callers_account_and_scopes() {
    let env = postgres().await;
    let boot = bootstrap(&env).await;
    let server = serve(&env).await;
    let mut auth = AuthServiceClient::new(server.channel().await);
    let owner = login(&mut auth, PASSWORD).await.unwrap();
    let mut accounts = AccountServiceClient::new(server.channel().await);
    let account_id = boot["account_id"].as_str().unwrap().to_string();
    let bearer = format!("Bearer {}", owner.access_token);
    let create = |account_id: String,
                  username: &str,
                  password: &str,
                  scopes: &[&str],
                  bearer: Option<&str>| {
        let mut request = Request::new(pb::CreateUserRequest {
            account_id,
            username: username.into(),
            password: password.into(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
        });
        if let Some(bearer) = bearer {
            request
                .metadata_mut()
                .insert("authorization", bearer.parse().unwrap());
        }
        request
    };

    let user = accounts
        .create_user(create(
            account_id.clone(),
            "dev@example.com",
            "a long enough password",
            &["keys:read"],
            Some(&bearer),
        ))
        .await
        .expect("create user")
        .into_inner()
        .user
        .unwrap();
    assert_eq!(user.scopes, ["keys:read"]);
    let dev = auth
        .login(pb::LoginRequest {
            username: "DEV@example.com".into(),
            password: "a long enough password".into(),
        })
        .await
        .expect("new user logs in at once (case-insensitive username)");
    let dev_bearer = format!("Bearer {}", dev.into_inner().access_token);

    let cases: Vec<(&str, Request<pb::CreateUserRequest>, Code)> = vec![
        (
            "no bearer",
            create(
                account_id.clone(),
                "x@example.com",
                "a long enough password",
                &[],
                None,
            ),
            Code::Unauthenticated,
        ),
        (
            "garbage bearer",
            create(
                account_id.clone(),
                "x@example.com",
                "a long enough password",
                &[],
                Some("Bearer abc"),
            ),
            Code::Unauthenticated,
        ),
        (
            "lacks users:write",
            create(
                account_id.clone(),
                "x@example.com",
                "a long enough password",
                &[],
                Some(&dev_bearer),
            ),
            Code::PermissionDenied,
        ),
        (
            "a scope nobody defined",
            create(
                account_id.clone(),
                "x@example.com",
                "a long enough password",
                &["orders:write"],
                Some(&bearer),
            ),
            Code::InvalidArgument,
        ),
        (
            "another account",
            create(
                uuid_like(),
                "x@example.com",
                "a long enough password",
                &[],
                Some(&bearer),
            ),
            Code::PermissionDenied,
        ),
        (
            "short password",
            create(
                account_id.clone(),
                "x@example.com",
                "short",
                &[],
                Some(&bearer),
            ),
            Code::InvalidArgument,
        ),
        (
            "huge password",
            create(
                account_id.clone(),
                "x@example.com",
                &"p".repeat(1 << 20),
                &[],
                Some(&bearer),
            ),
            Code::InvalidArgument,
        ),
        (
            "bad email",
            create(
                account_id.clone(),
                "not-an-email",
                "a long enough password",
                &[],
                Some(&bearer),
            ),
            Code::InvalidArgument,
        ),
        (
            "bad scope",
            create(
                account_id.clone(),
                "x@example.com",
                "a long enough password",
                &["Bad Scope"],
                Some(&bearer),
            ),
            Code::InvalidArgument,
        ),
        (
            "malformed account",
            create(
                "nope".into(),
                "x@example.com",
                "a long enough password",
                &[],
                Some(&bearer),
            ),
            Code::InvalidArgument,
        ),
        (
            "taken username",
            create(
                account_id.clone(),
                "dev@example.com",
                "a long enough password",
                &[],
                Some(&bearer),
            ),
            Code::AlreadyExists,
        ),
    ];
    let before = event_log_text(&env).await;
    for (what, request, code) in cases {
        let status = accounts.create_user(request).await.expect_err(what);
        assert_eq!(status.code(), code, "{what}: {status:?}");
    }
    assert_eq!(
        event_log_text(&env).await,
        before,
        "failed calls must write nothing"
    );
}

fn uuid_like() -> String {
    "0193a1b2-7c3d-7e4f-8a9b-0c1d2e3f4a5b".into()
}

#[tokio::test]
async fn successful_logins_from_one_address_never_lock_it() {
    let env = postgres().await;
    bootstrap(&env).await;
    let server = serve(&env).await;
    let mut auth = AuthServiceClient::new(server.channel().await);
    // More than the 20 attempts an address may fail before delays start.
    for n in 0..25 {
        login(&mut auth, PASSWORD)
            .await
            .unwrap_or_else(|s| panic!("login {n} from a busy address was refused: {s:?}"));
    }
}

/// Many logins of one user at once never fail inside: each either starts a
/// session or is throttled. A success clears the throttle row while other
/// attempts are taking it; reading the row in a second statement then found
/// nothing and answered INTERNAL (seen under the benchmark's login flood).
async fn concurrent_logins_of_one_user_never_fail_inside(env: Env) {
    bootstrap(&env).await;
    let server = gatehouse_testkit::spawn_app_on(
        &["serve", "--database-url", &env.url],
        &[
            ("GATEHOUSE_MASTER_KEY", MASTER_KEY),
            ("GATEHOUSE_POLL_INTERVAL_MS", "100"),
        ],
        env.clock.clone(),
    )
    .await;
    let channel = server.channel().await;
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let mut auth = AuthServiceClient::new(channel.clone());
            tokio::spawn(async move {
                let mut outcomes = Vec::new();
                for _ in 0..12 {
                    outcomes.push(
                        login(&mut auth, PASSWORD)
                            .await
                            .map(|_| ())
                            .map_err(|s| s.code()),
                    );
                }
                outcomes
            })
        })
        .collect();
    let mut succeeded = 0;
    for task in tasks {
        for outcome in task.await.unwrap() {
            match outcome {
                Ok(()) => succeeded += 1,
                // Attempts in flight count until they succeed: a burst of
                // one user's logins may be delayed, as a guesser's would.
                Err(tonic::Code::ResourceExhausted) => {}
                Err(code) => panic!("a login failed with {code:?}: {}", server.logs()),
            }
        }
    }
    assert!(succeeded > 0, "no login succeeded");
    assert!(
        !server.logs().contains("internal error"),
        "{}",
        server.logs()
    );
}

#[tokio::test]
async fn concurrent_logins_of_one_user_never_fail_inside_on_postgres() {
    concurrent_logins_of_one_user_never_fail_inside(postgres().await).await;
}

#[tokio::test]
async fn concurrent_logins_of_one_user_never_fail_inside_on_sqlite() {
    concurrent_logins_of_one_user_never_fail_inside(sqlite()).await;
}

/// A session ends at its absolute lifetime however often it refreshes: each
/// rotation's refresh token reaches no further than the end, and a refresh
/// after it is refused with `SESSION_EXPIRED` (a refresh loop once kept a
/// stolen session alive for ever).
async fn sessions_end_at_their_maximum_lifetime(env: Env) {
    bootstrap(&env).await;
    let server = gatehouse_testkit::spawn_app_on(
        &[
            "serve",
            "--database-url",
            &env.url,
            "--session-max-lifetime-secs",
            "3",
        ],
        &[("GATEHOUSE_MASTER_KEY", MASTER_KEY)],
        env.clock.clone(),
    )
    .await;
    let mut auth = AuthServiceClient::new(server.channel().await);
    let logged_in = login(&mut auth, PASSWORD).await.unwrap();
    assert!(
        (1..=3).contains(&logged_in.refresh_expires_in),
        "the first refresh token reaches no further than the session: {}",
        logged_in.refresh_expires_in
    );
    let mut token = logged_in.refresh_token;
    // Refreshed well inside the idle timeout, again and again...
    for _ in 0..2 {
        env.advance(Duration::from_millis(700));
        let refreshed = refresh(&mut auth, &token)
            .await
            .expect("inside the lifetime");
        assert!(
            refreshed.refresh_expires_in <= 3,
            "{}",
            refreshed.refresh_expires_in
        );
        token = refreshed.refresh_token;
    }
    // ...yet over at 3 s.
    env.advance(Duration::from_millis(1800));
    let over = refresh(&mut auth, &token)
        .await
        .expect_err("past the lifetime");
    assert_eq!(
        (over.code(), reason(&over).as_str()),
        (Code::Unauthenticated, "SESSION_EXPIRED")
    );
    // A fresh login starts a new session.
    login(&mut auth, PASSWORD).await.expect("log in again");
}

#[tokio::test]
async fn sessions_end_at_their_maximum_lifetime_on_postgres() {
    sessions_end_at_their_maximum_lifetime(postgres().await).await;
}

#[tokio::test]
async fn sessions_end_at_their_maximum_lifetime_on_sqlite() {
    sessions_end_at_their_maximum_lifetime(sqlite()).await;
}

/// The throttle counts per (username, client address) first, with looser
/// per-username and per-address ceilings; behind a trusted proxy the client
/// is the address the proxy recorded; and a flood of throttled attempts
/// writes one audit event per delay, not one per attempt (a flood once
/// locked the owner out and grew the log by one event per guess).
async fn throttling_delays_the_guesser_not_the_owner(env: Env) {
    bootstrap(&env).await;
    let server = gatehouse_testkit::spawn_app_on(
        &[
            "serve",
            "--database-url",
            &env.url,
            "--login-free-attempts",
            "3",
            "--login-free-attempts-per-address",
            "10",
            "--login-base-delay-ms",
            "60000",
            "--trusted-proxy",
            "127.0.0.1",
        ],
        &[("GATEHOUSE_MASTER_KEY", MASTER_KEY)],
        env.clock.clone(),
    )
    .await;
    let auth = AuthServiceClient::new(server.channel().await);
    let attempt = |from: &'static str, username: String, password: &'static str| {
        let mut auth = auth.clone();
        async move {
            let mut request = Request::new(pb::LoginRequest {
                username,
                password: password.into(),
            });
            request.metadata_mut().insert(
                "x-forwarded-for",
                format!("{from}, 127.0.0.1").parse().unwrap(),
            );
            auth.login(request).await.map(|_| ())
        }
    };
    const ATTACKER: &str = "203.0.113.7";
    const OWNER_HOME: &str = "198.51.100.1";
    // The attacker's 3 free guesses, and a fourth that starts a delay.
    for _ in 0..4 {
        let status = attempt(ATTACKER, OWNER.into(), "wrong password!!")
            .await
            .expect_err("wrong");
        assert_eq!(status.code(), Code::Unauthenticated);
    }
    // 200 more during the delay: all refused, before any password check.
    for _ in 0..200 {
        let status = attempt(ATTACKER, OWNER.into(), "wrong password!!")
            .await
            .expect_err("throttled");
        assert_eq!(
            (status.code(), reason(&status).as_str()),
            (Code::ResourceExhausted, "LOGIN_THROTTLED")
        );
    }
    // Even the right password waits, from the attacker's address...
    let status = attempt(ATTACKER, OWNER.into(), PASSWORD)
        .await
        .expect_err("the pair is delayed");
    assert_eq!(status.code(), Code::ResourceExhausted);
    // ...but the owner, at home, logs in at once: no lockout by a stranger.
    attempt(OWNER_HOME, OWNER.into(), PASSWORD)
        .await
        .expect("the owner is not locked out");

    // The log holds 4 refused passwords and one throttling, not 205 events;
    // each records the client address the proxy saw.
    let store = gatehouse_eventstore::EventStore::connect(&env.url, Default::default())
        .await
        .unwrap();
    let stream =
        gatehouse_eventstore::StreamId::parse(gatehouse_domain::user::login_stream(OWNER)).unwrap();
    let failures: Vec<_> = store
        .read_stream(&stream)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.event_type == "LoginFailed.v1")
        .collect();
    let reasons: Vec<&str> = failures
        .iter()
        .map(|e| e.payload["reason"].as_str().unwrap())
        .collect();
    assert_eq!(
        reasons,
        [
            "bad_credentials",
            "bad_credentials",
            "bad_credentials",
            "bad_credentials",
            "throttled"
        ]
    );
    assert!(
        failures
            .iter()
            .all(|e| e.metadata.client_address.as_deref() == Some(ATTACKER)),
        "{:?}",
        failures.iter().map(|e| &e.metadata).collect::<Vec<_>>()
    );

    // One address spraying many usernames meets the per-address ceiling (10)
    // while every username is still within its own free attempts.
    const SPRAYER: &str = "192.0.2.66";
    let mut throttled_at = None;
    for n in 0..12 {
        let status = attempt(SPRAYER, format!("user{n}@example.com"), "guess guess guess")
            .await
            .expect_err("unknown user");
        if status.code() == Code::ResourceExhausted {
            throttled_at = Some(n);
            break;
        }
        assert_eq!(status.code(), Code::Unauthenticated);
    }
    assert_eq!(throttled_at, Some(11), "the 11th failure starts the delay");
    // Its neighbour at another address is unaffected.
    attempt(OWNER_HOME, OWNER.into(), PASSWORD)
        .await
        .expect("another address");
}

#[tokio::test]
async fn throttling_delays_the_guesser_not_the_owner_on_postgres() {
    throttling_delays_the_guesser_not_the_owner(postgres().await).await;
}

#[tokio::test]
async fn throttling_delays_the_guesser_not_the_owner_on_sqlite() {
    throttling_delays_the_guesser_not_the_owner(sqlite()).await;
}

/// 100 simultaneous refreshes of one token: exactly one wins, the others
/// present a token that is now spent, so the family is revoked — the
/// winner's new refresh token and access token die with it (RFC 9700).
/// And 8 accounts working at once see only their own keys.
async fn concurrent_refreshes_and_accounts(env: Env) {
    let boot = bootstrap(&env).await;
    let server = serve(&env).await;
    let mut auth = AuthServiceClient::new(server.channel().await);
    let session = login(&mut auth, PASSWORD).await.unwrap();
    let calls: Vec<_> = (0..100)
        .map(|_| {
            let mut auth = auth.clone();
            let token = session.refresh_token.clone();
            tokio::spawn(async move { refresh(&mut auth, &token).await })
        })
        .collect();
    let mut won = Vec::new();
    for call in calls {
        match call.await.unwrap() {
            Ok(pair) => won.push(pair),
            Err(status) => {
                assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
                assert!(
                    matches!(
                        reason(&status).as_str(),
                        "REFRESH_TOKEN_REUSED" | "SESSION_REVOKED"
                    ),
                    "{status:?}"
                );
            }
        }
    }
    assert_eq!(won.len(), 1, "exactly one refresh wins");
    let winner = won.pop().unwrap();
    let status = refresh(&mut auth, &winner.refresh_token)
        .await
        .expect_err("the family is revoked");
    assert_eq!(reason(&status), "SESSION_REVOKED");
    let mut verify = gatehouse_api::v1::verifier_service_client::VerifierServiceClient::new(
        server.channel().await,
    );
    let mut refused = None;
    for _ in 0..50 {
        match verify
            .verify(pb::VerifyRequest {
                credential: winner.access_token.clone(),
                ..Default::default()
            })
            .await
        {
            Err(status) => {
                refused = Some(status);
                break;
            }
            Ok(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    assert_eq!(
        refused.map(|s| reason(&s)).as_deref(),
        Some("SESSION_REVOKED"),
        "the winner's access token dies with the family"
    );

    // Eight accounts at once, each creating and listing its keys.
    let admin = boot["secret"].as_str().unwrap().to_string();
    let channel = server.channel().await;
    let tenants: Vec<_> = (0..8)
        .map(|n| {
            let (channel, admin) = (channel.clone(), admin.clone());
            tokio::spawn(async move {
                let owner = format!("tenant{n}@example.com");
                let password = format!("tenant {n} passphrase, long and odd");
                let account = AccountServiceClient::new(channel.clone())
                    .create_account(crate::authed(
                        pb::CreateAccountRequest {
                            name: format!("tenant {n}"),
                            owner_username: owner.clone(),
                            owner_password: password.clone(),
                        },
                        &admin,
                    ))
                    .await
                    .unwrap()
                    .into_inner()
                    .account
                    .unwrap()
                    .account_id;
                let token = AuthServiceClient::new(channel.clone())
                    .login(pb::LoginRequest {
                        username: owner,
                        password,
                    })
                    .await
                    .unwrap()
                    .into_inner()
                    .access_token;
                let mut keys =
                    gatehouse_api::v1::key_service_client::KeyServiceClient::new(channel);
                let mut mine = Vec::new();
                for k in 0..5 {
                    let created = keys
                        .create_api_key(crate::authed(
                            pb::CreateApiKeyRequest {
                                account_id: account.clone(),
                                name: format!("t{n}k{k}"),
                                scopes: vec!["keys:read".into()],
                                expires_at: None,
                            },
                            &token,
                        ))
                        .await
                        .unwrap()
                        .into_inner();
                    mine.push(created.key.unwrap().key_id);
                }
                let listed: Vec<String> = keys
                    .list_api_keys(crate::authed(
                        pb::ListApiKeysRequest {
                            account_id: account.clone(),
                            page_size: 100,
                            ..Default::default()
                        },
                        &token,
                    ))
                    .await
                    .unwrap()
                    .into_inner()
                    .keys
                    .into_iter()
                    .map(|k| k.key_id)
                    .collect();
                mine.sort();
                let mut listed_sorted = listed.clone();
                listed_sorted.sort();
                assert_eq!(listed_sorted, mine, "tenant {n} sees exactly its own keys");
                mine
            })
        })
        .collect();
    let mut all = std::collections::HashSet::new();
    for tenant in tenants {
        for key in tenant.await.unwrap() {
            assert!(all.insert(key), "a key in two accounts");
        }
    }
    assert_eq!(all.len(), 40);
}

#[tokio::test]
async fn concurrent_refreshes_and_accounts_on_postgres() {
    concurrent_refreshes_and_accounts(postgres().await).await;
}

#[tokio::test]
async fn concurrent_refreshes_and_accounts_on_sqlite() {
    concurrent_refreshes_and_accounts(sqlite()).await;
}

/// Logins cut off by the request deadline while argon2 is queued are
/// refunded, not counted as failures: a flood that lengthens the hash queue
/// cannot get the owner delayed by the owner's own correct logins.
#[tokio::test]
async fn logins_cut_off_by_the_deadline_do_not_count_against_the_owner() {
    let env = sqlite();
    bootstrap(&env).await;
    let server = gatehouse_testkit::spawn_app_on(
        &[
            "serve",
            "--database-url",
            &env.url,
            "--login-free-attempts",
            "3",
            "--login-base-delay-ms",
            "60000",
            "--max-parallel-hashes",
            "1",
            "--request-timeout-ms",
            "150",
        ],
        &[("GATEHOUSE_MASTER_KEY", MASTER_KEY)],
        env.clock.clone(),
    )
    .await;
    let auth = AuthServiceClient::new(server.channel().await);
    // A flood of logins at other usernames fills the one-hash queue...
    let flood: Vec<_> = (0..40)
        .map(|n| {
            let mut auth = auth.clone();
            tokio::spawn(async move {
                let _ = auth
                    .login(pb::LoginRequest {
                        username: format!("stranger{n}@example.com"),
                        password: "not this one at all".into(),
                    })
                    .await;
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(20)).await;
    // ...so the owner's four correct logins are all cut off. Counted as
    // failures, they would start a 60 s delay on the owner's pair.
    let owner: Vec<_> = (0..4)
        .map(|_| {
            let mut auth = auth.clone();
            tokio::spawn(async move { login(&mut auth, PASSWORD).await.map(|_| ()) })
        })
        .collect();
    let mut cut_off = 0;
    for login in owner {
        match login.await.unwrap() {
            Err(status) if status.code() == Code::DeadlineExceeded => cut_off += 1,
            other => panic!("the owner's login was not cut off: {other:?}"),
        }
    }
    assert_eq!(cut_off, 4);
    for call in flood {
        call.await.unwrap();
    }
    // Once the queue has drained and the refunds landed, the owner logs in.
    let mut auth = auth.clone();
    let mut answer = None;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        match login(&mut auth, PASSWORD).await {
            Err(status) if status.code() == Code::DeadlineExceeded => continue,
            other => {
                answer = Some(other.map(|_| ()));
                break;
            }
        }
    }
    match answer {
        Some(Ok(())) => {}
        other => panic!("the owner was delayed by cut-off logins: {other:?}"),
    }
}

/// One rule reads a token's subject for the verifier and the issuer: a user
/// token living longer than revoked sessions are remembered is refused by
/// both (the issuer used to accept it for admin calls). Such a token exists
/// when the retention is lowered below the lifetime tokens were minted with
/// (a configuration that mints them so is refused at start-up).
async fn long_lived_user_tokens_are_refused_everywhere(env: Env) {
    bootstrap(&env).await;
    let serve_with = |ttl: &'static str, retention: &'static str| {
        let url = env.url.clone();
        async move {
            gatehouse_testkit::spawn_app(
                &[
                    "serve",
                    "--database-url",
                    &url,
                    "--access-token-ttl-secs",
                    ttl,
                    "--revoked-session-retention-secs",
                    retention,
                    // The same `iss` across the restart (it is the port otherwise).
                    "--issuer-url",
                    "http://gatehouse.test",
                ],
                &[("GATEHOUSE_MASTER_KEY", MASTER_KEY)],
            )
            .await
        }
    };
    // A configuration that would mint only such tokens is refused.
    let refused = tokio::process::Command::new(BIN)
        .args([
            "check-config",
            "--database-url",
            &env.url,
            "--access-token-ttl-secs",
            "7200",
            "--revoked-session-retention-secs",
            "3600",
        ])
        .env("GATEHOUSE_MASTER_KEY", MASTER_KEY)
        .env_remove("DATABASE_URL")
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("must be below --revoked-session-retention-secs"),
        "{stderr}"
    );
    let minting = serve_with("7200", "86400").await;
    let mut auth = AuthServiceClient::new(minting.channel().await);
    let session = login(&mut auth, PASSWORD).await.unwrap();
    let token = session.access_token;
    drop(auth);
    minting.stop().await.expect("stops");
    let server = serve_with("900", "3600").await;
    let mut verifier = gatehouse_api::v1::verifier_service_client::VerifierServiceClient::new(
        server.channel().await,
    );
    let denied = verifier
        .verify(pb::VerifyRequest {
            credential: token.clone(),
            required_scopes: vec![],
            audience: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        (denied.code(), reason(&denied).as_str()),
        (Code::Unauthenticated, "TOKEN_LIFETIME_TOO_LONG")
    );
    let account = session.account.unwrap().account_id;
    let mut keys =
        gatehouse_api::v1::key_service_client::KeyServiceClient::new(server.channel().await);
    let denied = keys
        .list_api_keys(crate::authed(
            pb::ListApiKeysRequest {
                account_id: account,
                ..Default::default()
            },
            &token,
        ))
        .await
        .unwrap_err();
    assert_eq!(
        (denied.code(), reason(&denied).as_str()),
        (Code::Unauthenticated, "TOKEN_LIFETIME_TOO_LONG")
    );
}

#[tokio::test]
async fn long_lived_user_tokens_are_refused_everywhere_on_sqlite() {
    long_lived_user_tokens_are_refused_everywhere(sqlite()).await;
}

#[tokio::test]
async fn long_lived_user_tokens_are_refused_everywhere_on_postgres() {
    long_lived_user_tokens_are_refused_everywhere(postgres().await).await;
}
