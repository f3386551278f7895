//! The key activity log end to end: lifecycle and usage in order, bounded
//! usage writes, rebuild equals incremental, tenancy, and the live watch.

use std::time::Duration;

use gatehouse_api::v1 as pb;
use gatehouse_api::v1::account_service_client::AccountServiceClient;
use gatehouse_api::v1::audit_service_client::AuditServiceClient;
use gatehouse_api::v1::auth_service_client::AuthServiceClient;
use gatehouse_api::v1::key_service_client::KeyServiceClient;
use gatehouse_api::v1::verifier_service_client::VerifierServiceClient;
use gatehouse_testkit::App;
use tonic::Code;
use tonic::transport::Channel;

use crate::support::{Env, ONE_ISS, bootstrap, postgres, server};
use crate::{BIN, authed};

async fn spawn(env: &Env, role: &str) -> App {
    let quick = [
        "--scheduler-interval-ms",
        "100",
        "--usage-interval-ms",
        "500",
    ];
    server(env, role, &quick, &[ONE_ISS]).await
}

pub(crate) async fn activity(
    audit: &mut AuditServiceClient<Channel>,
    bearer: &str,
    account_id: &str,
    key_id: &str,
) -> Vec<pb::KeyActivity> {
    let mut all = Vec::new();
    let mut token = String::new();
    loop {
        let page = audit
            .list_key_activity(authed(
                pb::ListKeyActivityRequest {
                    account_id: account_id.into(),
                    key_id: key_id.into(),
                    page_size: 3,
                    page_token: token.clone(),
                    ..Default::default()
                },
                bearer,
            ))
            .await
            .expect("list activity")
            .into_inner();
        all.extend(page.activity);
        if page.next_page_token.is_empty() {
            return all;
        }
        token = page.next_page_token;
    }
}

fn uses(entries: &[pb::KeyActivity]) -> i64 {
    entries
        .iter()
        .filter_map(|e| e.usage.as_ref())
        .map(|u| u.uses)
        .sum()
}

#[tokio::test]
async fn a_keys_life_is_in_the_activity_log_in_order_with_actors_and_usage() {
    let env = postgres().await;
    let boot = bootstrap(&env).await;
    let (account, admin, admin_key) = (
        boot["account_id"].as_str().unwrap().to_string(),
        boot["secret"].as_str().unwrap().to_string(),
        boot["key_id"].as_str().unwrap().to_string(),
    );
    let issuer = spawn(&env, "issuer").await;
    let verifier = spawn(&env, "verifier").await;
    let mut keys = KeyServiceClient::new(issuer.channel().await);
    let mut audit = AuditServiceClient::new(issuer.channel().await);
    let mut verify = VerifierServiceClient::new(verifier.channel().await);

    // Watch the account from the start: history, then the live tail.
    let mut watch = audit
        .watch_key_activity(authed(
            pb::WatchKeyActivityRequest {
                account_id: account.clone(),
                ..Default::default()
            },
            &admin,
        ))
        .await
        .expect("watch")
        .into_inner();

    let created = keys
        .create_api_key(authed(
            pb::CreateApiKeyRequest {
                account_id: account.clone(),
                name: "audited".into(),
                scopes: vec!["keys:read".into()],
                expires_at: None,
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    let key_id = created.key.unwrap().key_id;
    for _ in 0..7 {
        verify
            .verify(pb::VerifyRequest {
                credential: created.secret.clone(),
                ..Default::default()
            })
            .await
            .expect("use");
    }
    verify
        .verify(pb::VerifyRequest {
            credential: created.secret.clone(),
            required_scopes: vec!["keys:write".into()],
            ..Default::default()
        })
        .await
        .expect_err("a denied use is counted as a denial");
    keys.rotate_api_key(authed(
        pb::RotateApiKeyRequest {
            account_id: account.clone(),
            key_id: key_id.clone(),
            grace_period: Some(prost_types::Duration {
                seconds: 1,
                nanos: 0,
            }),
        },
        &admin,
    ))
    .await
    .expect("rotate");
    // The grace runs out on the deployment's clock; the scheduler records
    // its expiry, then the key is revoked.
    env.advance(Duration::from_secs(2));
    let mut entries = Vec::new();
    for _ in 0..60 {
        entries = activity(&mut audit, &admin, &account, &key_id).await;
        if entries
            .iter()
            .any(|e| e.kind == pb::ActivityKind::GraceExpired as i32)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    keys.revoke_api_key(authed(
        pb::RevokeApiKeyRequest {
            account_id: account.clone(),
            key_id: key_id.clone(),
            reason: "rotated out".into(),
        },
        &admin,
    ))
    .await
    .expect("revoke");
    for _ in 0..60 {
        entries = activity(&mut audit, &admin, &account, &key_id).await;
        if uses(&entries) == 7
            && entries
                .iter()
                .any(|e| e.kind == pb::ActivityKind::Revoked as i32)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let lifecycle: Vec<(i32, String)> = entries
        .iter()
        .filter(|e| e.kind != pb::ActivityKind::Usage as i32)
        .map(|e| (e.kind, e.actor.clone()))
        .collect();
    assert_eq!(
        lifecycle,
        [
            (pb::ActivityKind::Created as i32, admin_key.clone()),
            (pb::ActivityKind::Rotated as i32, admin_key.clone()),
            (pb::ActivityKind::GraceExpired as i32, "system".to_string()),
            (pb::ActivityKind::Revoked as i32, admin_key.clone()),
        ]
    );
    assert!(
        entries.windows(2).all(|w| {
            let at = |e: &pb::KeyActivity| e.occurred_at.map(|t| (t.seconds, t.nanos));
            at(&w[0]) <= at(&w[1]) && w[0].cursor != w[1].cursor
        }),
        "in log order, each with its own cursor"
    );
    assert!(
        entries
            .iter()
            .all(|e| e.key_id == key_id && e.account_id == account)
    );
    assert_eq!(
        entries
            .iter()
            .find(|e| e.kind == pb::ActivityKind::Revoked as i32)
            .unwrap()
            .reason,
        "rotated out"
    );
    assert!(
        entries[0].client_address.starts_with("127.0.0.1"),
        "client address recorded: {:?}",
        entries[0]
    );
    assert_eq!(uses(&entries), 7, "usage summaries count every use");
    let denials: i64 = entries
        .iter()
        .filter_map(|e| e.usage.as_ref())
        .map(|u| u.denials)
        .sum();
    assert_eq!(denials, 1);
    let usage = entries.iter().find_map(|e| e.usage.as_ref()).unwrap();
    assert!(usage.distinct_callers >= 1 && usage.first_caller.starts_with("127.0.0.1"));
    // last_used_at reaches the key's listing.
    let listed = keys
        .get_api_key(authed(
            pb::GetApiKeyRequest {
                account_id: account.clone(),
                key_id: key_id.clone(),
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner()
        .key
        .unwrap();
    assert_eq!(listed.state, pb::KeyState::Revoked as i32);
    assert!(
        listed.last_used_at.is_some(),
        "last_used_at comes from the usage summaries"
    );

    // The watch delivered the same entries, live.
    let mut watched = Vec::new();
    while watched.len() < entries.len() + 1 {
        let next = tokio::time::timeout(Duration::from_secs(5), watch.message())
            .await
            .expect("the watch keeps up")
            .unwrap()
            .unwrap();
        watched.push(next);
    }
    let watched_for_key: Vec<_> = watched.into_iter().filter(|e| e.key_id == key_id).collect();
    assert_eq!(watched_for_key, entries);

    // A rebuilt projection equals the incremental one.
    let store = gatehouse_eventstore::EventStore::connect(&env.url, Default::default())
        .await
        .unwrap();
    let incremental = gatehouse_projections::key_activity::all(&store)
        .await
        .unwrap();
    assert!(incremental.len() >= 6);
    let rebuilt = tokio::process::Command::new(BIN)
        .args([
            "projections",
            "rebuild",
            "key_activity",
            "--database-url",
            &env.url,
        ])
        .env_remove("DATABASE_URL")
        .output()
        .await
        .unwrap();
    assert!(
        rebuilt.status.success(),
        "{}",
        String::from_utf8_lossy(&rebuilt.stderr)
    );
    assert_eq!(
        gatehouse_projections::key_activity::all(&store)
            .await
            .unwrap(),
        incremental
    );
}

#[tokio::test]
async fn auditors_see_only_their_own_account_and_bad_queries_are_refused() {
    let env = postgres().await;
    let boot = bootstrap(&env).await;
    let (account, admin) = (
        boot["account_id"].as_str().unwrap().to_string(),
        boot["secret"].as_str().unwrap().to_string(),
    );
    let issuer = spawn(&env, "issuer").await;
    let mut accounts = AccountServiceClient::new(issuer.channel().await);
    let beta = accounts
        .create_account(authed(
            pb::CreateAccountRequest {
                name: "Beta".into(),
                owner_username: "auditor@beta.example".into(),
                owner_password: "beta auditor password".into(),
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    let beta_id = beta.account.unwrap().account_id;
    let beta_token = AuthServiceClient::new(issuer.channel().await)
        .login(pb::LoginRequest {
            username: "auditor@beta.example".into(),
            password: "beta auditor password".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .access_token;
    let mut audit = AuditServiceClient::new(issuer.channel().await);
    // Account A has activity (the bootstrap key); B's auditor cannot read it.
    assert!(!activity(&mut audit, &admin, &account, "").await.is_empty());
    let denied = audit
        .list_key_activity(authed(
            pb::ListKeyActivityRequest {
                account_id: account.clone(),
                ..Default::default()
            },
            &beta_token,
        ))
        .await
        .expect_err("another account");
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert!(
        activity(&mut audit, &beta_token, &beta_id, "")
            .await
            .is_empty(),
        "B sees only B's (empty) log"
    );
    for (what, request, code) in [
        (
            "bad page token",
            pb::ListKeyActivityRequest {
                account_id: account.clone(),
                page_token: "x".into(),
                ..Default::default()
            },
            Code::InvalidArgument,
        ),
        (
            "huge page",
            pb::ListKeyActivityRequest {
                account_id: account.clone(),
                page_size: 1_000_000,
                ..Default::default()
            },
            Code::InvalidArgument,
        ),
        (
            "bad kind",
            pb::ListKeyActivityRequest {
                account_id: account.clone(),
                kinds: vec![99],
                ..Default::default()
            },
            Code::InvalidArgument,
        ),
        (
            "bad key id",
            pb::ListKeyActivityRequest {
                account_id: account.clone(),
                key_id: "nope".into(),
                ..Default::default()
            },
            Code::InvalidArgument,
        ),
    ] {
        let status = audit
            .list_key_activity(authed(request, &admin))
            .await
            .expect_err(what);
        assert_eq!(status.code(), code, "{what}");
    }
    let no_bearer = audit
        .list_key_activity(pb::ListKeyActivityRequest {
            account_id: account.clone(),
            ..Default::default()
        })
        .await
        .expect_err("no bearer");
    assert_eq!(no_bearer.code(), Code::Unauthenticated);
    // Filter by kind.
    let created_only = audit
        .list_key_activity(authed(
            pb::ListKeyActivityRequest {
                account_id: account.clone(),
                kinds: vec![pb::ActivityKind::Revoked as i32],
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(created_only.activity.is_empty());
}

/// Usage is summarised, not logged per call: however many calls a flush
/// interval sees, and however fast the machine makes them, a key gets one
/// usage event per flush, and the events add up to the calls. The interval
/// here is an hour, so each verifier's one flush is the one at shutdown,
/// and the counts are exact: two verifiers one after the other, two events.
#[tokio::test]
async fn twenty_thousand_verifies_write_one_usage_event_per_flush() {
    let env = postgres().await;
    let boot = bootstrap(&env).await;
    let (account, admin, admin_key) = (
        boot["account_id"].as_str().unwrap().to_string(),
        boot["secret"].as_str().unwrap().to_string(),
        boot["key_id"].as_str().unwrap().to_string(),
    );
    let issuer = spawn(&env, "issuer").await;
    let mut audit = AuditServiceClient::new(issuer.channel().await);
    const CALLS: usize = 10_000;
    const WORKERS: usize = 32;
    let per_verifier = (CALLS / WORKERS * WORKERS) as i64;
    for flushes in 1..=2 {
        let verifier = server(
            &env,
            "verifier",
            &["--usage-interval-ms", "3600000"],
            &[ONE_ISS],
        )
        .await;
        // Four connections: one HTTP/2 connection's single task caps the rate.
        let mut channels = Vec::new();
        for _ in 0..4 {
            channels.push(verifier.channel().await);
        }
        let workers: Vec<_> = (0..WORKERS)
            .map(|w| {
                let mut client = VerifierServiceClient::new(channels[w % channels.len()].clone());
                let secret = admin.clone();
                tokio::spawn(async move {
                    for _ in 0..CALLS / WORKERS {
                        client
                            .verify(pb::VerifyRequest {
                                credential: secret.clone(),
                                ..Default::default()
                            })
                            .await
                            .expect("verify");
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.await.unwrap();
        }
        let before = activity(&mut audit, &admin, &account, &admin_key).await;
        assert_eq!(
            uses(&before),
            per_verifier * (flushes - 1),
            "nothing flushed before the interval"
        );
        // Stopping flushes what was counted, before the store closes.
        verifier.stop().await.expect("the verifier stops");
        let mut entries = Vec::new();
        for _ in 0..50 {
            entries = activity(&mut audit, &admin, &account, &admin_key).await;
            if uses(&entries) == per_verifier * flushes {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(uses(&entries), per_verifier * flushes);
        let summaries = entries.iter().filter(|e| e.usage.is_some()).count() as i64;
        assert_eq!(summaries, flushes, "one usage event per flush");
    }
}
