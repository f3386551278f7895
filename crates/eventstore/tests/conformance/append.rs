use std::sync::Arc;

use gatehouse_eventstore::{
    ExpectedVersion, MAX_PAYLOAD_BYTES, Metadata, NewEvent, RecordedEvent, StoreError, StreamId,
    on_backend,
};
use serde_json::json;
use tokio::sync::Barrier;

use crate::Harness;

fn stream(id: &str) -> StreamId {
    StreamId::parse(id).unwrap()
}

fn event(n: u64) -> NewEvent {
    NewEvent::new("Thing.v1", json!({ "n": n }))
}

async fn everything(h: &Harness) -> Vec<RecordedEvent> {
    h.store.read_all(1, 10_000).await.unwrap()
}

pub async fn appends_and_reads_back_streams_and_the_global_log(h: Harness) {
    let a = stream("apikey-a");
    let b = stream("apikey-b");
    let metadata = Metadata {
        actor: Some("user-1".into()),
        request_id: Some("req-9".into()),
        client_address: Some("203.0.113.7".into()),
        causation_id: None,
    };
    let first = h
        .store
        .append(
            &a,
            ExpectedVersion::NoStream,
            vec![event(1).with_metadata(metadata.clone()), event(2)],
        )
        .await
        .unwrap();
    assert_eq!(
        (
            first.first_position,
            first.last_position,
            first.stream_version
        ),
        (1, 2, 2)
    );
    let second = h
        .store
        .append(&b, ExpectedVersion::NoStream, vec![event(3)])
        .await
        .unwrap();
    assert_eq!((second.first_position, second.stream_version), (3, 1));
    let third = h
        .store
        .append(&a, ExpectedVersion::Exact(2), vec![event(4)])
        .await
        .unwrap();
    assert_eq!((third.first_position, third.stream_version), (4, 3));

    let stream_a = h.store.read_stream(&a).await.unwrap();
    assert_eq!(
        stream_a
            .iter()
            .map(|e| e.stream_version)
            .collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert_eq!(
        stream_a
            .iter()
            .map(|e| e.payload["n"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [1, 2, 4]
    );
    assert_eq!(stream_a[0].metadata, metadata);
    assert_eq!(stream_a[0].event_type, "Thing.v1");
    assert_eq!(h.store.stream_version(&a).await.unwrap(), 3);
    assert_eq!(
        h.store
            .stream_version(&stream("apikey-none"))
            .await
            .unwrap(),
        0
    );

    let all = everything(&h).await;
    assert_eq!(
        all.iter().map(|e| e.position).collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
    assert_eq!(all[2].stream_id, b);
    assert_eq!(h.store.head().await.unwrap(), 4);
    // Paging by position.
    let page = h.store.read_all(2, 2).await.unwrap();
    assert_eq!(page.iter().map(|e| e.position).collect::<Vec<_>>(), [2, 3]);
    assert!(
        h.store.read_all(5, 10).await.unwrap().is_empty(),
        "just past the head is empty, not an error"
    );
}

pub async fn racing_writers_on_one_stream_exactly_one_wins(h: Harness) {
    for round in 0..20u64 {
        let id = stream(&format!("apikey-race{round}"));
        h.store
            .append(&id, ExpectedVersion::NoStream, vec![event(0)])
            .await
            .unwrap();
        let barrier = Arc::new(Barrier::new(2));
        let racers = (0..2).map(|n| {
            let (store, id, barrier) = (h.store.clone(), id.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                store
                    .append(&id, ExpectedVersion::Exact(1), vec![event(n)])
                    .await
            })
        });
        let racers: Vec<_> = racers.collect();
        let results: Vec<_> = futures::future::join_all(racers)
            .await
            .into_iter()
            .map(|r| r.unwrap())
            .collect();
        let wins = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(wins, 1, "round {round}: {results:?}");
        let loser = results.into_iter().find_map(Result::err).unwrap();
        assert!(
            matches!(
                loser,
                StoreError::WrongExpectedVersion {
                    expected: ExpectedVersion::Exact(1),
                    actual: 2,
                    ..
                }
            ),
            "round {round}: {loser:?}"
        );
        assert!(loser.is_conflict());
        assert_eq!(h.store.read_stream(&id).await.unwrap().len(), 2);
    }
}

/// Many appends at once (on Postgres they commit in groups): each caller
/// gets the outcome of its own append, with the positions and versions of
/// its own events, and a lost race fails only the loser.
pub async fn many_concurrent_appends_each_get_their_own_outcome(h: Harness) {
    let barrier = Arc::new(Barrier::new(64));
    let tasks: Vec<_> = (0..64u64)
        .map(|n| {
            let (store, barrier) = (h.store.clone(), barrier.clone());
            tokio::spawn(async move {
                let own = stream(&format!("apikey-own{n}"));
                barrier.wait().await;
                match n {
                    // Alone on their streams.
                    0..32 => store
                        .append(&own, ExpectedVersion::NoStream, vec![event(n); 3])
                        .await
                        .map(|r| vec![r]),
                    // Racing to create one stream.
                    32..48 => store
                        .append(
                            &stream("apikey-contended"),
                            ExpectedVersion::NoStream,
                            vec![event(n)],
                        )
                        .await
                        .map(|r| vec![r]),
                    // Their own stream and a shared one, all or nothing.
                    _ => {
                        store
                            .append_all(vec![
                                (own, ExpectedVersion::NoStream, vec![event(n)]),
                                (
                                    stream("apikey-shared"),
                                    ExpectedVersion::Any,
                                    vec![event(n)],
                                ),
                            ])
                            .await
                    }
                }
            })
        })
        .collect();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.unwrap());
    }

    for (n, result) in results.iter().enumerate().take(32) {
        let result = &result.as_ref().unwrap()[0];
        let written = h
            .store
            .read_stream(&stream(&format!("apikey-own{n}")))
            .await
            .unwrap();
        assert_eq!(result.stream_version, 3);
        assert_eq!(
            (result.first_position, result.last_position),
            (written[0].position, written[2].position),
            "append {n} was told the positions of other events"
        );
        assert!(written.iter().all(|e| e.payload == json!({ "n": n })));
    }

    let racers = &results[32..48];
    assert_eq!(racers.iter().filter(|r| r.is_ok()).count(), 1, "{racers:?}");
    for lost in racers.iter().filter_map(|r| r.as_ref().err()) {
        assert!(
            matches!(lost, StoreError::WrongExpectedVersion { actual: 1, .. }),
            "{lost:?}"
        );
    }
    let winner = racers.iter().find_map(|r| r.as_ref().ok()).unwrap();
    let contended = h
        .store
        .read_stream(&stream("apikey-contended"))
        .await
        .unwrap();
    assert_eq!(contended.len(), 1);
    assert_eq!(winner[0].first_position, contended[0].position);

    let shared = h.store.read_stream(&stream("apikey-shared")).await.unwrap();
    let versions: Vec<u64> = shared.iter().map(|e| e.stream_version).collect();
    assert_eq!(versions, (1..=16).collect::<Vec<_>>());
    let mut told: Vec<u64> = Vec::new();
    for (n, result) in results.iter().enumerate().skip(48) {
        let result = result.as_ref().unwrap();
        let at = shared
            .iter()
            .find(|e| e.position == result[1].first_position)
            .expect("the told position holds an event of the shared stream");
        assert_eq!(at.payload, json!({ "n": n }));
        assert_eq!(at.stream_version, result[1].stream_version);
        told.push(result[1].stream_version);
    }
    told.sort_unstable();
    assert_eq!(told, versions);

    let all = everything(&h).await;
    assert_eq!(all.len(), 32 * 3 + 1 + 16 * 2);
    assert!(all.windows(2).all(|w| w[0].position < w[1].position));

    // On Postgres the 49 written appends shared transactions (group commit):
    // otherwise the cases above never met in one group.
    if h.store.backend_name() == "postgres" {
        let mut tx = h.store.begin().await.unwrap();
        let transactions: i64 = on_backend!(&mut tx, |conn| sqlx::query_scalar(
            "SELECT COUNT(DISTINCT xmin::TEXT) FROM events"
        )
        .fetch_one(conn)
        .await
        .unwrap());
        assert!(
            transactions < 49,
            "{transactions} transactions for 49 appends"
        );
    }
}

/// Postgres refuses one append of a burst for its data (JSONB cannot hold
/// a NUL character; SQLite stores it): that append alone fails, with the
/// database's error, and every other append is written exactly once.
pub async fn data_the_database_refuses_fails_only_its_own_append(h: Harness) {
    let refuses_nul = h.store.backend_name() == "postgres";
    let barrier = Arc::new(Barrier::new(24));
    let tasks: Vec<_> = (0..24u64)
        .map(|n| {
            let (store, barrier) = (h.store.clone(), barrier.clone());
            tokio::spawn(async move {
                let payload = if n == 11 {
                    NewEvent::new("Thing.v1", json!({ "s": "a\u{0}b" }))
                } else {
                    event(n)
                };
                barrier.wait().await;
                store
                    .append(
                        &stream(&format!("apikey-burst{n}")),
                        ExpectedVersion::NoStream,
                        vec![payload],
                    )
                    .await
            })
        })
        .collect();
    for (n, task) in tasks.into_iter().enumerate() {
        let result = task.await.unwrap();
        let written = h
            .store
            .read_stream(&stream(&format!("apikey-burst{n}")))
            .await
            .unwrap();
        if n == 11 && !refuses_nul {
            result.unwrap();
            assert_eq!(written[0].payload, json!({ "s": "a\u{0}b" }));
        } else if n == 11 {
            let error = result.expect_err("a NUL in JSONB is refused");
            assert!(
                matches!(error, StoreError::Database(_)) && !error.is_conflict(),
                "{error:?}"
            );
            assert!(written.is_empty());
        } else {
            let result = result.unwrap_or_else(|e| panic!("append {n}: {e:?}"));
            assert_eq!(written.len(), 1, "append {n} written once");
            assert_eq!(written[0].position, result.first_position);
            assert_eq!(written[0].payload, json!({ "n": n }));
        }
    }
    assert_eq!(
        everything(&h).await.len(),
        if refuses_nul { 23 } else { 24 }
    );
}

pub async fn bad_appends_return_typed_errors_and_write_nothing(h: Harness) {
    let id = stream("apikey-bad");
    h.store
        .append(&id, ExpectedVersion::NoStream, vec![event(1)])
        .await
        .unwrap();
    let before = everything(&h).await;

    assert!(matches!(
        StreamId::parse(""),
        Err(StoreError::InvalidStreamId { len: 0 })
    ));
    assert!(matches!(
        h.store.append(&id, ExpectedVersion::Exact(1), vec![]).await,
        Err(StoreError::EmptyAppend)
    ));
    let huge = NewEvent::new(
        "Thing.v1",
        json!({ "blob": "x".repeat(MAX_PAYLOAD_BYTES + 1) }),
    );
    assert!(matches!(
        h.store
            .append(&id, ExpectedVersion::Exact(1), vec![event(2), huge])
            .await,
        Err(StoreError::PayloadTooLarge { .. })
    ));
    assert!(matches!(
        h.store
            .append(&id, ExpectedVersion::NoStream, vec![event(2)])
            .await,
        Err(StoreError::WrongExpectedVersion { actual: 1, .. })
    ));
    assert!(matches!(
        h.store
            .append(&id, ExpectedVersion::Exact(7), vec![event(2)])
            .await,
        Err(StoreError::WrongExpectedVersion { actual: 1, .. })
    ));
    assert!(matches!(
        h.store
            .append(
                &id,
                ExpectedVersion::Exact(1),
                vec![NewEvent::new("Bad Type; DROP", json!({}))]
            )
            .await,
        Err(StoreError::InvalidEventType)
    ));
    assert!(matches!(
        h.store.read_all(3, 10).await,
        Err(StoreError::UnknownPosition {
            requested: 3,
            head: 1
        })
    ));
    assert!(matches!(
        h.store.read_all(u64::MAX, 10).await,
        Err(StoreError::UnknownPosition { .. })
    ));
    assert!(matches!(
        h.store.read_all(1, 0).await,
        Err(StoreError::InvalidLimit { .. })
    ));

    assert_eq!(
        everything(&h).await,
        before,
        "a failed append must write nothing"
    );
    assert_eq!(h.store.stream_version(&id).await.unwrap(), 1);
}

pub async fn events_cannot_be_updated_or_deleted(h: Harness) {
    let id = stream("apikey-immutable");
    h.store
        .append(&id, ExpectedVersion::NoStream, vec![event(1)])
        .await
        .unwrap();
    for sql in [
        "UPDATE events SET event_type = 'Forged.v1'",
        "DELETE FROM events",
    ] {
        let mut tx = h.store.begin().await.unwrap();
        let result = on_backend!(&mut tx, |conn| sqlx::query(sql)
            .execute(conn)
            .await
            .map(|_| ()));
        let error = result.expect_err(sql).to_string();
        assert!(error.contains("append-only"), "{sql}: {error}");
    }
    assert_eq!(
        h.store.read_stream(&id).await.unwrap()[0].event_type,
        "Thing.v1"
    );
}

pub async fn append_all_is_all_or_nothing_across_streams(h: Harness) {
    let user = stream("user-1");
    let claim = stream("username-abc");
    h.store
        .append(&claim, ExpectedVersion::NoStream, vec![event(0)])
        .await
        .unwrap();
    let before = everything(&h).await;
    // The claim exists already: the user must not be written either.
    let result = h
        .store
        .append_all(vec![
            (user.clone(), ExpectedVersion::NoStream, vec![event(1)]),
            (claim.clone(), ExpectedVersion::NoStream, vec![event(2)]),
        ])
        .await;
    assert!(
        matches!(result, Err(StoreError::WrongExpectedVersion { .. })),
        "{result:?}"
    );
    assert_eq!(everything(&h).await, before);

    let other = stream("username-def");
    let results = h
        .store
        .append_all(vec![
            (user.clone(), ExpectedVersion::NoStream, vec![event(1)]),
            (other, ExpectedVersion::NoStream, vec![event(2)]),
        ])
        .await
        .unwrap();
    assert_eq!(
        results.iter().map(|r| r.stream_version).collect::<Vec<_>>(),
        [1, 1]
    );
    assert_eq!(h.store.read_stream(&user).await.unwrap().len(), 1);
}
