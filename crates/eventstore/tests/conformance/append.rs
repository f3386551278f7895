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
