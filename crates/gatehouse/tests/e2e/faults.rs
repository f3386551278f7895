//! Crashes: `kill -9` of a server in the middle of key creations and
//! rotations. After a restart every acknowledged change is there, nothing
//! half-written is visible (each key's stream and its secret index agree),
//! and grace periods that fell due while it was down expire exactly once.

use std::collections::HashMap;
use std::time::Duration;

use gatehouse_api::v1 as pb;
use gatehouse_api::v1::key_service_client::KeyServiceClient;
use gatehouse_testkit::Gatehouse;
use tonic::transport::Channel;

use crate::authed;
use crate::support::{Env, bootstrap, postgres, process, sqlite};

async fn spawn(env: &Env) -> Gatehouse {
    process(env, "all", &["--scheduler-interval-ms", "100"], &[]).await
}

/// What the clients were told succeeded.
#[derive(Default)]
struct Acknowledged {
    /// key id → the newest secret the client was given.
    secrets: HashMap<String, String>,
    rotations: usize,
}

async fn create(
    keys: &mut KeyServiceClient<Channel>,
    account: &str,
    admin: &str,
    n: usize,
) -> Result<(String, String), tonic::Status> {
    let created = keys
        .create_api_key(authed(
            pb::CreateApiKeyRequest {
                account_id: account.into(),
                name: format!("crash {n}"),
                scopes: vec!["keys:read".into()],
                expires_at: None,
            },
            admin,
        ))
        .await?
        .into_inner();
    Ok((created.key.unwrap().key_id, created.secret))
}

async fn kill_9_mid_writes(env: Env) {
    let boot = bootstrap(&env).await;
    let account = boot["account_id"].as_str().unwrap().to_string();
    let admin = boot["secret"].as_str().unwrap().to_string();
    let server = spawn(&env).await;
    let channel = server.channel().await;

    // Keys whose grace (3 s) falls due while the server is down.
    let mut keys = KeyServiceClient::new(channel.clone());
    let mut acknowledged = Acknowledged::default();
    let mut graced = Vec::new();
    for n in 0..3 {
        let (key_id, _) = create(&mut keys, &account, &admin, n).await.unwrap();
        let rotated = keys
            .rotate_api_key(authed(
                pb::RotateApiKeyRequest {
                    account_id: account.clone(),
                    key_id: key_id.clone(),
                    grace_period: Some(prost_types::Duration {
                        seconds: 3,
                        nanos: 0,
                    }),
                },
                &admin,
            ))
            .await
            .unwrap()
            .into_inner();
        acknowledged.secrets.insert(key_id.clone(), rotated.secret);
        acknowledged.rotations += 1;
        graced.push(key_id);
    }

    // Writers in flight: creations and rotations, until the server dies.
    let writers: Vec<_> = (0..6)
        .map(|w| {
            let (channel, account, admin) = (channel.clone(), account.clone(), admin.clone());
            tokio::spawn(async move {
                let mut keys = KeyServiceClient::new(channel);
                let mut mine = Acknowledged::default();
                for n in 0.. {
                    let Ok((key_id, secret)) =
                        create(&mut keys, &account, &admin, w * 1000 + n).await
                    else {
                        break;
                    };
                    mine.secrets.insert(key_id.clone(), secret);
                    let rotated = keys
                        .rotate_api_key(authed(
                            pb::RotateApiKeyRequest {
                                account_id: account.clone(),
                                key_id: key_id.clone(),
                                // A long grace: a rotation committed just
                                // before the kill, whose answer never came,
                                // leaves the acknowledged secret valid.
                                grace_period: Some(prost_types::Duration {
                                    seconds: 3600,
                                    nanos: 0,
                                }),
                            },
                            &admin,
                        ))
                        .await;
                    match rotated {
                        Ok(r) => {
                            mine.secrets.insert(key_id, r.into_inner().secret);
                            mine.rotations += 1;
                        }
                        Err(_) => break,
                    }
                }
                mine
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let killed = std::process::Command::new("kill")
        .args(["-9", &server.pid().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    for writer in writers {
        let mine = writer.await.unwrap();
        acknowledged.rotations += mine.rotations;
        acknowledged.secrets.extend(mine.secrets);
    }
    drop(server);
    let store = gatehouse_eventstore::EventStore::connect(&env.url, Default::default())
        .await
        .unwrap();
    let expiries = async |key_id: &str| {
        let stream = gatehouse_eventstore::StreamId::parse(format!("apikey-{key_id}")).unwrap();
        store
            .read_stream(&stream)
            .await
            .unwrap()
            .iter()
            .filter(|e| e.event_type == "GracePeriodExpired.v1")
            .count()
    };
    for key_id in &graced {
        assert_eq!(expiries(key_id).await, 0, "the grace ended before the kill");
    }
    assert!(
        acknowledged.secrets.len() > 10,
        "too few writes before the crash to mean anything: {}",
        acknowledged.secrets.len()
    );
    // Down until the grace periods are over.
    tokio::time::sleep(Duration::from_millis(2000)).await;

    let server = spawn(&env).await;
    let mut keys = KeyServiceClient::new(server.channel().await);
    // Every acknowledged key exists, and its newest acknowledged secret works
    // (as a bearer credential, through the secret index).
    for (key_id, secret) in &acknowledged.secrets {
        keys.get_api_key(authed(
            pb::GetApiKeyRequest {
                account_id: account.clone(),
                key_id: key_id.clone(),
            },
            &admin,
        ))
        .await
        .unwrap_or_else(|s| panic!("acknowledged key {key_id} lost: {s:?}"));
        keys.list_api_keys(authed(
            pb::ListApiKeysRequest {
                account_id: account.clone(),
                page_size: 1,
                ..Default::default()
            },
            secret,
        ))
        .await
        .unwrap_or_else(|s| panic!("acknowledged secret of {key_id} refused: {s:?}"));
    }

    // Nothing half-written: every key stream starts with its creation, and
    // every secret it names has its index stream (they are one append).
    let mut all = Vec::new();
    let mut from = 1;
    loop {
        let batch = store.read_all(from, 1000).await.unwrap();
        let Some(last) = batch.last().map(|e| e.position) else {
            break;
        };
        from = last + 1;
        all.extend(batch);
    }
    let mut streams: HashMap<String, Vec<&gatehouse_eventstore::RecordedEvent>> = HashMap::new();
    for event in &all {
        streams
            .entry(event.stream_id.to_string())
            .or_default()
            .push(event);
    }
    let mut rotations = 0;
    for (stream, events) in &streams {
        if !stream.starts_with("apikey-") {
            continue;
        }
        assert_eq!(events[0].event_type, "ApiKeyCreated.v1", "{stream}");
        for event in events {
            let hash = match event.event_type.as_str() {
                "ApiKeyCreated.v1" | "ApiKeyRotated.v1" => event.payload["secret_hash"].as_str(),
                _ => None,
            };
            if event.event_type == "ApiKeyRotated.v1" {
                rotations += 1;
            }
            if let Some(hash) = hash {
                assert!(
                    streams.contains_key(&format!("apikeyhash-{hash}")),
                    "{stream}: a secret without its index"
                );
            }
        }
    }
    assert!(
        rotations >= acknowledged.rotations,
        "an acknowledged rotation was lost"
    );

    // The graces that fell due while the server was down expire, once each.
    for key_id in &graced {
        let mut first = 0;
        for _ in 0..50 {
            first = expiries(key_id).await;
            if first > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!((first, expiries(key_id).await), (1, 1), "{key_id}");
    }
}

#[tokio::test]
async fn kill_9_mid_writes_loses_no_acknowledged_change_on_postgres() {
    kill_9_mid_writes(postgres().await).await;
}

#[tokio::test]
async fn kill_9_mid_writes_loses_no_acknowledged_change_on_sqlite() {
    kill_9_mid_writes(sqlite()).await;
}
