//! API key lifecycle end to end: create, list, get, rotate with a grace period
//! (two issuers sharing Postgres), concurrent rotations, revoke, expiry,
//! tenancy and hostile input — with the real binary and real gRPC clients.

use std::time::Duration;

use gatehouse_api::v1 as pb;
use gatehouse_api::v1::account_service_client::AccountServiceClient;
use gatehouse_api::v1::key_service_client::KeyServiceClient;
use gatehouse_testkit::App;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

use crate::authed;
use crate::support::{Env, ONE_ISS, bootstrap, event_log_text, postgres, reason, server, sqlite};

async fn issuer(env: &Env, role: &str) -> App {
    server(env, role, &["--scheduler-interval-ms", "100"], &[ONE_ISS]).await
}

struct Admin {
    keys: KeyServiceClient<Channel>,
    account_id: String,
    secret: String,
}

impl Admin {
    async fn create(
        &mut self,
        name: &str,
        scopes: &[&str],
        expires_in: Option<Duration>,
    ) -> Result<pb::CreateApiKeyResponse, Status> {
        let expires_at = expires_in.map(|d| {
            let at = chrono::Utc::now() + chrono::Duration::from_std(d).unwrap();
            proto_timestamp(at)
        });
        self.keys
            .create_api_key(authed(
                pb::CreateApiKeyRequest {
                    account_id: self.account_id.clone(),
                    name: name.into(),
                    scopes: scopes.iter().map(|s| s.to_string()).collect(),
                    expires_at,
                },
                &self.secret.clone(),
            ))
            .await
            .map(|r| r.into_inner())
    }

    async fn rotate(
        &mut self,
        key_id: &str,
        grace: Option<Duration>,
    ) -> Result<pb::RotateApiKeyResponse, Status> {
        let grace_period = grace.map(proto_duration);
        self.keys
            .rotate_api_key(authed(
                pb::RotateApiKeyRequest {
                    account_id: self.account_id.clone(),
                    key_id: key_id.into(),
                    grace_period,
                },
                &self.secret.clone(),
            ))
            .await
            .map(|r| r.into_inner())
    }
}

fn proto_timestamp(at: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: at.timestamp_subsec_nanos() as i32,
    }
}

fn proto_duration(d: Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    }
}

/// Lists the account's keys with `secret` as the bearer: a cheap way to ask
/// "does this secret authenticate right now?".
async fn use_key(
    keys: &mut KeyServiceClient<Channel>,
    account_id: &str,
    secret: &str,
) -> Result<(), Status> {
    keys.list_api_keys(authed(
        pb::ListApiKeysRequest {
            account_id: account_id.into(),
            page_size: 1,
            ..Default::default()
        },
        secret,
    ))
    .await
    .map(|_| ())
}

async fn count(env: &Env, event_type: &str, key_id: &str) -> usize {
    let store = gatehouse_eventstore::EventStore::connect(&env.url, Default::default())
        .await
        .unwrap();
    let stream = gatehouse_eventstore::StreamId::parse(format!("apikey-{key_id}")).unwrap();
    store
        .read_stream(&stream)
        .await
        .unwrap()
        .iter()
        .filter(|e| e.event_type == event_type)
        .count()
}

async fn setup() -> (Env, App, Admin) {
    let env = postgres().await;
    let (server, admin) = setup_on(&env).await;
    (env, server, admin)
}

/// A bootstrapped issuer over `env` and its owner's admin key.
async fn setup_on(env: &Env) -> (App, Admin) {
    let boot = bootstrap(env).await;
    let server = issuer(env, "issuer").await;
    let admin = Admin {
        keys: KeyServiceClient::new(server.channel().await),
        account_id: boot["account_id"].as_str().unwrap().into(),
        secret: boot["secret"].as_str().unwrap().into(),
    };
    (server, admin)
}

#[tokio::test]
async fn create_list_get_show_the_secret_once_and_store_only_its_hash() {
    let (env, _server, mut admin) = setup().await;
    let format = gatehouse_domain::secret::KeyFormat::new("wc", "live").unwrap();
    let created = admin
        .create("ci deploys", &["keys:read"], None)
        .await
        .expect("create");
    assert!(
        format.is_api_key_secret(&created.secret),
        "the secret passes its checksum"
    );
    let key = created.key.unwrap();
    assert_eq!(key.name, "ci deploys");
    assert_eq!(key.scopes, ["keys:read"]);
    assert_eq!(key.hint, created.secret[created.secret.len() - 4..]);
    assert_eq!(key.state, pb::KeyState::Active as i32);

    // Stored as a hash, never as the secret.
    let events = event_log_text(&env).await;
    assert!(!events.contains(&created.secret));
    assert!(events.contains(gatehouse_domain::secret::SecretHash::of(&created.secret).as_str()));

    // A key created a moment ago is listed and fetched at once; neither shows the secret.
    let got = admin
        .keys
        .get_api_key(authed(
            pb::GetApiKeyRequest {
                account_id: admin.account_id.clone(),
                key_id: key.key_id.clone(),
            },
            &admin.secret.clone(),
        ))
        .await
        .unwrap()
        .into_inner()
        .key
        .unwrap();
    assert_eq!(got, key);
    for n in 0..4 {
        admin
            .create(&format!("k{n}"), &["keys:read"], None)
            .await
            .unwrap();
    }
    // Pages of 2, newest first, complete and without repeats.
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = admin
            .keys
            .list_api_keys(authed(
                pb::ListApiKeysRequest {
                    account_id: admin.account_id.clone(),
                    page_size: 2,
                    page_token: token.clone(),
                    include_deleted: false,
                },
                &admin.secret.clone(),
            ))
            .await
            .unwrap()
            .into_inner();
        assert!(page.keys.len() <= 2);
        assert!(!format!("{page:?}").contains(&created.secret));
        seen.extend(page.keys.into_iter().map(|k| k.name));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(
        seen,
        ["k3", "k2", "k1", "k0", "ci deploys", "bootstrap admin"]
    );

    // The new key works as a bearer for what its scopes allow, and no more.
    use_key(&mut admin.keys, &admin.account_id.clone(), &created.secret)
        .await
        .expect("keys:read");
    let escalate = admin
        .keys
        .create_api_key(authed(
            pb::CreateApiKeyRequest {
                account_id: admin.account_id.clone(),
                name: "x".into(),
                scopes: vec!["keys:read".into()],
                expires_at: None,
            },
            &created.secret,
        ))
        .await
        .expect_err("keys:read cannot create");
    assert_eq!(escalate.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn rotation_grace_period_ends_exactly_once_with_two_issuers() {
    let (env, _first, mut admin) = setup().await;
    let _second = issuer(&env, "issuer").await;
    let created = admin
        .create("rotating", &["keys:read"], None)
        .await
        .unwrap();
    let key_id = created.key.unwrap().key_id;
    let rotated = admin
        .rotate(&key_id, Some(Duration::from_secs(3600)))
        .await
        .expect("rotate");
    assert_ne!(rotated.secret, created.secret);
    let valid_until = rotated.previous_secret_valid_until.unwrap();
    assert_eq!(
        rotated.key.as_ref().unwrap().state,
        pb::KeyState::Rotating as i32
    );
    assert_eq!(
        rotated.key.as_ref().unwrap().scopes,
        ["keys:read"],
        "rotation keeps the scopes"
    );

    // Both secrets work during the grace period.
    let account = admin.account_id.clone();
    use_key(&mut admin.keys, &account, &created.secret)
        .await
        .expect("old secret in grace");
    use_key(&mut admin.keys, &account, &rotated.secret)
        .await
        .expect("new secret");

    // From valid_until on, the old one is refused.
    let until =
        chrono::DateTime::from_timestamp(valid_until.seconds, valid_until.nanos as u32).unwrap();
    // A second before it, on the deployment's clock, it still works...
    env.clock.set(until - chrono::Duration::seconds(1));
    use_key(&mut admin.keys, &account, &created.secret)
        .await
        .expect("old secret until the last moment of its grace");
    // ...and at it, it is refused.
    env.clock.set(until);
    let refused = use_key(&mut admin.keys, &account, &created.secret)
        .await
        .expect_err("grace is over");
    assert_eq!(refused.code(), Code::Unauthenticated);
    assert_eq!(reason(&refused), "KEY_ROTATED");
    use_key(&mut admin.keys, &account, &rotated.secret)
        .await
        .expect("new secret still works");

    // Both issuers' schedulers race to record it; exactly one event exists.
    let mut recorded = 0;
    for _ in 0..50 {
        recorded = count(&env, "GracePeriodExpired.v1", &key_id).await;
        if recorded > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        count(&env, "GracePeriodExpired.v1", &key_id).await,
        1,
        "first seen: {recorded}"
    );
}

/// 40 rotations and 10 revocations of one key at once, with the scheduler
/// recording grace expiries underneath: every call gets a clear answer and the
/// log holds a valid history — exactly the winners, rotations numbered without
/// gaps, each grace recorded once and before what followed it, one revocation
/// and nothing after it. (Which calls lose depends on timing; how a loss is
/// decided is tested deterministically in the issuer's `keys` tests.)
async fn rotations_and_revocations_at_once_leave_a_valid_history(env: Env) {
    let (server, mut admin) = setup_on(&env).await;
    let key_id = admin
        .create("contended", &["keys:read"], None)
        .await
        .unwrap()
        .key
        .unwrap()
        .key_id;
    let mut calls = Vec::new();
    for n in 0..50 {
        let mut caller = Admin {
            keys: KeyServiceClient::new(server.channel().await),
            account_id: admin.account_id.clone(),
            secret: admin.secret.clone(),
        };
        let key_id = key_id.clone();
        calls.push(tokio::spawn(async move {
            if n % 5 == 4 {
                caller
                    .keys
                    .revoke_api_key(authed(
                        pb::RevokeApiKeyRequest {
                            account_id: caller.account_id.clone(),
                            key_id,
                            reason: format!("revocation {n}"),
                        },
                        &caller.secret.clone(),
                    ))
                    .await
                    .map(|_| "revoked")
            } else {
                caller
                    .rotate(&key_id, Some(Duration::ZERO))
                    .await
                    .map(|_| "rotated")
            }
        }));
    }
    let (mut rotated, mut revoked) = (0, 0);
    for call in calls {
        match call.await.unwrap() {
            Ok("rotated") => rotated += 1,
            Ok(_) => revoked += 1,
            Err(status) => assert!(
                matches!(status.code(), Code::Aborted | Code::FailedPrecondition),
                "{status:?}"
            ),
        }
    }
    // At most one revocation wins; each decides again up to 5 times, so
    // under 40 rotations all of them may still lose (ABORTED) — then one
    // more, after the storm, must land.
    assert!(revoked <= 1, "{revoked} revocations won");
    if revoked == 0 {
        admin
            .keys
            .revoke_api_key(authed(
                pb::RevokeApiKeyRequest {
                    account_id: admin.account_id.clone(),
                    key_id: key_id.clone(),
                    reason: "after the storm".into(),
                },
                &admin.secret.clone(),
            ))
            .await
            .expect("a revocation after the storm");
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    let store = gatehouse_eventstore::EventStore::connect(&env.url, Default::default())
        .await
        .unwrap();
    let stream = gatehouse_eventstore::StreamId::parse(format!("apikey-{key_id}")).unwrap();
    let history: Vec<(String, serde_json::Value)> = store
        .read_stream(&stream)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.event_type, e.payload))
        .collect();
    let types: Vec<&str> = history.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        types.iter().filter(|t| **t == "ApiKeyRotated.v1").count(),
        rotated
    );
    assert_eq!(
        types.iter().filter(|t| **t == "ApiKeyRevoked.v1").count(),
        1
    );
    assert_eq!(
        types.last(),
        Some(&"ApiKeyRevoked.v1"),
        "nothing after the revocation: {types:?}"
    );
    let mut next_rotation = 1;
    let mut open_grace: Option<u64> = None;
    for (event_type, payload) in &history[1..] {
        match event_type.as_str() {
            "ApiKeyRotated.v1" => {
                assert_eq!(
                    open_grace, None,
                    "a grace is recorded before the next rotation: {types:?}"
                );
                assert_eq!(payload["rotation"], next_rotation, "{types:?}");
                open_grace = Some(next_rotation);
                next_rotation += 1;
            }
            "GracePeriodExpired.v1" => {
                assert_eq!(
                    Some(payload["rotation"].as_u64().unwrap()),
                    open_grace,
                    "{types:?}"
                );
                open_grace = None;
            }
            "ApiKeyRevoked.v1" => assert_eq!(open_grace, None, "{types:?}"),
            other => panic!("unexpected {other} in {types:?}"),
        }
    }
    // The revoked key refuses further changes and writes nothing.
    let refused = admin.rotate(&key_id, None).await.expect_err("revoked");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_eq!(count(&env, "ApiKeyRotated.v1", &key_id).await, rotated);
}

#[tokio::test]
async fn rotations_and_revocations_at_once_leave_a_valid_history_on_postgres() {
    rotations_and_revocations_at_once_leave_a_valid_history(postgres().await).await;
}

#[tokio::test]
async fn rotations_and_revocations_at_once_leave_a_valid_history_on_sqlite() {
    rotations_and_revocations_at_once_leave_a_valid_history(sqlite()).await;
}

#[tokio::test]
async fn revoke_is_immediate_and_once_and_expired_keys_are_refused_and_recorded() {
    let (env, _server, mut admin) = setup().await;
    let account = admin.account_id.clone();
    let created = admin
        .create("to revoke", &["keys:read"], None)
        .await
        .unwrap();
    let key_id = created.key.unwrap().key_id;
    let revoke = |key_id: String, bearer: String, account: String| pb::RevokeApiKeyRequest {
        account_id: account,
        key_id,
        reason: format!("leaked by {}", bearer.len()),
    };
    let revoked = admin
        .keys
        .revoke_api_key(authed(
            revoke(key_id.clone(), admin.secret.clone(), account.clone()),
            &admin.secret.clone(),
        ))
        .await
        .expect("revoke")
        .into_inner()
        .key
        .unwrap();
    assert_eq!(revoked.state, pb::KeyState::Revoked as i32);
    let refused = use_key(&mut admin.keys, &account, &created.secret)
        .await
        .expect_err("revoked");
    assert_eq!(reason(&refused), "KEY_REVOKED");
    let before = event_log_text(&env).await;
    let again = admin
        .keys
        .revoke_api_key(authed(
            revoke(key_id.clone(), admin.secret.clone(), account.clone()),
            &admin.secret.clone(),
        ))
        .await
        .expect_err("already revoked");
    assert_eq!(again.code(), Code::FailedPrecondition);
    assert_eq!(
        event_log_text(&env).await,
        before,
        "a refused revocation writes nothing"
    );

    let short = admin
        .create("short-lived", &["keys:read"], Some(Duration::from_secs(2)))
        .await
        .unwrap();
    let short_id = short.key.unwrap().key_id;
    use_key(&mut admin.keys, &account, &short.secret)
        .await
        .expect("before expiry");
    env.advance(Duration::from_secs(2));
    let expired = use_key(&mut admin.keys, &account, &short.secret)
        .await
        .expect_err("expired");
    assert_eq!(reason(&expired), "KEY_EXPIRED");
    let mut recorded = 0;
    for _ in 0..50 {
        recorded = count(&env, "ApiKeyExpired.v1", &short_id).await;
        if recorded > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(recorded, 1);
    let rotate_expired = admin
        .rotate(&short_id, None)
        .await
        .expect_err("cannot rotate an expired key");
    assert_eq!(rotate_expired.code(), Code::FailedPrecondition);
}

#[tokio::test]
async fn tenancy_scopes_and_hostile_input_get_their_status_and_write_nothing() {
    let (env, server, mut admin) = setup().await;
    let account = admin.account_id.clone();
    let key_id = admin
        .create("target", &["keys:read"], None)
        .await
        .unwrap()
        .key
        .unwrap()
        .key_id;

    // Account B with its own owner, who gets a token by logging in.
    let mut accounts = AccountServiceClient::new(server.channel().await);
    let beta = accounts
        .create_account(authed(
            pb::CreateAccountRequest {
                name: "Beta".into(),
                owner_username: "beta@example.com".into(),
                owner_password: "beta owner password".into(),
            },
            &admin.secret.clone(),
        ))
        .await
        .expect("platform admin creates an account")
        .into_inner();
    let beta_id = beta.account.unwrap().account_id;
    let mut auth =
        gatehouse_api::v1::auth_service_client::AuthServiceClient::new(server.channel().await);
    let beta_token = auth
        .login(pb::LoginRequest {
            username: "beta@example.com".into(),
            password: "beta owner password".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .access_token;

    let before = event_log_text(&env).await;
    let keys = &mut admin.keys;
    let a = account.clone();
    let get = |account_id: &str, key_id: &str| pb::GetApiKeyRequest {
        account_id: account_id.into(),
        key_id: key_id.into(),
    };
    // B's owner addressing A: denied; addressing B with A's key: not found.
    let status = keys
        .get_api_key(authed(get(&a, &key_id), &beta_token))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let status = keys
        .get_api_key(authed(get(&beta_id, &key_id), &beta_token))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let status = keys
        .revoke_api_key(authed(
            pb::RevokeApiKeyRequest {
                account_id: a.clone(),
                key_id: key_id.clone(),
                reason: String::new(),
            },
            &beta_token,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let status = keys
        .rotate_api_key(authed(
            pb::RotateApiKeyRequest {
                account_id: beta_id.clone(),
                key_id: key_id.clone(),
                grace_period: None,
            },
            &beta_token,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    // No bearer, a garbage bearer, a random key-shaped secret.
    let status = keys
        .get_api_key(Request::new(get(&a, &key_id)))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    let status = keys
        .get_api_key(authed(get(&a, &key_id), "wc_live_nonsense"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    let forged = gatehouse_domain::secret::KeyFormat::new("wc", "live")
        .unwrap()
        .api_key_secret(&[9; 24]);
    let status = keys
        .get_api_key(authed(get(&a, &key_id), &forged))
        .await
        .unwrap_err();
    assert_eq!(
        (status.code(), reason(&status).as_str()),
        (Code::Unauthenticated, "KEY_UNKNOWN")
    );
    // Malformed ids.
    let status = keys
        .get_api_key(authed(get(&a, "not-a-uuid"), &admin.secret))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let status = keys
        .get_api_key(authed(get("x", &key_id), &admin.secret))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let status = keys
        .get_api_key(authed(
            get(&a, "0193a1b2-7c3d-7e4f-8a9b-0c1d2e3f4a5b"),
            &admin.secret,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);

    // Hostile creations.
    let create = |name: String, scopes: Vec<String>, expires_at: Option<prost_types::Timestamp>| {
        pb::CreateApiKeyRequest {
            account_id: a.clone(),
            name,
            scopes,
            expires_at,
        }
    };
    let past = proto_timestamp(chrono::Utc::now() - chrono::Duration::hours(1));
    let cases = [
        (
            "empty name",
            create(String::new(), vec!["keys:read".into()], None),
            Code::InvalidArgument,
        ),
        (
            "huge name",
            create("n".repeat(100_000), vec!["keys:read".into()], None),
            Code::InvalidArgument,
        ),
        (
            "control chars",
            create("a\u{0}b".into(), vec!["keys:read".into()], None),
            Code::InvalidArgument,
        ),
        (
            "no scopes",
            create("n".into(), vec![], None),
            Code::InvalidArgument,
        ),
        (
            "bad scope",
            create("n".into(), vec!["KEYS READ".into()], None),
            Code::InvalidArgument,
        ),
        (
            "too many scopes",
            create(
                "n".into(),
                (0..100).map(|i| format!("r{i}:read")).collect(),
                None,
            ),
            Code::InvalidArgument,
        ),
        (
            "a scope nobody defined",
            create("n".into(), vec!["billing:write".into()], None),
            Code::InvalidArgument,
        ),
        (
            "expiry in the past",
            create("n".into(), vec!["keys:read".into()], Some(past)),
            Code::InvalidArgument,
        ),
    ];
    for (what, request, code) in cases {
        let status = keys
            .create_api_key(authed(request, &admin.secret))
            .await
            .expect_err(what);
        assert_eq!(status.code(), code, "{what}: {status:?}");
    }
    // Hostile rotations and listings.
    for (what, grace, code) in [
        (
            "negative grace",
            prost_types::Duration {
                seconds: -1,
                nanos: 0,
            },
            Code::InvalidArgument,
        ),
        (
            "grace over 30 days",
            prost_types::Duration {
                seconds: 31 * 86_400,
                nanos: 0,
            },
            Code::InvalidArgument,
        ),
        (
            "grace at the edge of chrono's range (once a panic)",
            prost_types::Duration {
                seconds: 9_223_372_036_854_775,
                nanos: 999_999_999,
            },
            Code::InvalidArgument,
        ),
        (
            "nanos of a whole second or more",
            prost_types::Duration {
                seconds: 1,
                nanos: 1_000_000_000,
            },
            Code::InvalidArgument,
        ),
    ] {
        let status = keys
            .rotate_api_key(authed(
                pb::RotateApiKeyRequest {
                    account_id: a.clone(),
                    key_id: key_id.clone(),
                    grace_period: Some(grace),
                },
                &admin.secret,
            ))
            .await
            .expect_err(what);
        assert_eq!(status.code(), code, "{what}");
    }
    for (what, page_size, page_token) in [
        ("huge page", 100_000, ""),
        ("negative page", -1, ""),
        ("bad token", 10, "';--"),
    ] {
        let status = keys
            .list_api_keys(authed(
                pb::ListApiKeysRequest {
                    account_id: a.clone(),
                    page_size,
                    page_token: page_token.into(),
                    ..Default::default()
                },
                &admin.secret,
            ))
            .await
            .expect_err(what);
        assert_eq!(status.code(), Code::InvalidArgument, "{what}");
    }
    assert_eq!(
        event_log_text(&env).await,
        before,
        "refused calls must write nothing"
    );
}

#[tokio::test]
async fn a_weaker_credential_cannot_rotate_a_stronger_key_and_sdk_tokens_die_with_their_key() {
    let (env, server, mut admin) = setup().await;
    let account = admin.account_id.clone();
    // A key that may manage keys but holds nothing else.
    let manager = admin
        .create("key manager", &["keys:read", "keys:write"], None)
        .await
        .unwrap();
    let manager_id = manager.key.unwrap().key_id;
    let bootstrap_key = {
        let page = admin
            .keys
            .list_api_keys(authed(
                pb::ListApiKeysRequest {
                    account_id: account.clone(),
                    page_size: 10,
                    ..Default::default()
                },
                &admin.secret.clone(),
            ))
            .await
            .unwrap()
            .into_inner();
        page.keys
            .into_iter()
            .find(|k| k.name == "bootstrap admin")
            .unwrap()
            .key_id
    };
    let before = event_log_text(&env).await;
    let escalation = admin
        .keys
        .rotate_api_key(authed(
            pb::RotateApiKeyRequest {
                account_id: account.clone(),
                key_id: bootstrap_key,
                grace_period: None,
            },
            &manager.secret,
        ))
        .await
        .expect_err("rotating the admin key would hand out platform:admin");
    assert_eq!(escalation.code(), Code::PermissionDenied);
    assert_eq!(event_log_text(&env).await, before);

    // An SDK token of the manager key works until the key is revoked.
    let mut auth =
        gatehouse_api::v1::auth_service_client::AuthServiceClient::new(server.channel().await);
    let sdk = auth
        .exchange_sdk_token(pb::ExchangeSdkTokenRequest {
            account_id: account.clone(),
            key_id: manager_id.clone(),
            key_secret: manager.secret.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .access_token;
    use_key(&mut admin.keys, &account, &sdk)
        .await
        .expect("sdk token of a live key");
    admin
        .keys
        .revoke_api_key(authed(
            pb::RevokeApiKeyRequest {
                account_id: account.clone(),
                key_id: manager_id,
                reason: "leaked".into(),
            },
            &admin.secret.clone(),
        ))
        .await
        .unwrap();
    let refused = use_key(&mut admin.keys, &account, &sdk)
        .await
        .expect_err("its key is revoked");
    assert_eq!(
        (refused.code(), reason(&refused).as_str()),
        (Code::Unauthenticated, "KEY_REVOKED")
    );
}
