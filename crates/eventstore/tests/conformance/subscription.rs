use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use gatehouse_eventstore::{ExpectedVersion, NewEvent, RecordedEvent, StoreError, StreamId};
use rand::Rng;
use serde_json::json;

use crate::Harness;

const WRITERS: u64 = 8;
const APPENDS_PER_WRITER: u64 = 500;

async fn next(sub: &mut gatehouse_eventstore::Subscription) -> RecordedEvent {
    tokio::time::timeout(Duration::from_secs(20), sub.next())
        .await
        .expect("subscriber starved: an event was skipped or never delivered")
        .expect("subscription ended")
}

pub async fn concurrent_writers_and_a_live_subscriber_see_every_event_once_in_order(h: Harness) {
    // The subscriber starts before the writers, so it reads live, racing them.
    let mut subscription = h.store.subscribe(1).await.unwrap();
    // Writers use their own connections, as other processes would.
    let writer_store = h.another_process(Duration::from_millis(200)).await;
    let writers = (0..WRITERS).map(|w| {
        let store = writer_store.clone();
        tokio::spawn(async move {
            let mut written = Vec::new();
            for i in 0..APPENDS_PER_WRITER {
                let stream_no = rand::rng().random_range(0..64);
                let id = StreamId::parse(format!("apikey-s{stream_no}")).unwrap();
                let event = NewEvent::new("Thing.v1", json!({ "writer": w, "i": i }));
                let result = store
                    .append(&id, ExpectedVersion::Any, vec![event])
                    .await
                    .unwrap();
                written.push(result.first_position);
                if i % 50 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            written
        })
    });
    let writers: Vec<_> = writers.collect();
    let total = (WRITERS * APPENDS_PER_WRITER) as usize;
    let mut seen = Vec::with_capacity(total);
    for _ in 0..total {
        seen.push(next(&mut subscription).await);
    }
    let mut written: BTreeSet<u64> = BTreeSet::new();
    for writer in futures::future::join_all(writers).await {
        written.extend(writer.unwrap());
    }

    let positions: Vec<u64> = seen.iter().map(|e| e.position).collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "events out of position order"
    );
    assert_eq!(
        positions.iter().copied().collect::<BTreeSet<_>>(),
        written,
        "seen ≠ written"
    );
    let pairs: HashSet<(String, u64)> = seen
        .iter()
        .map(|e| (e.stream_id.to_string(), e.stream_version))
        .collect();
    assert_eq!(
        pairs.len(),
        total,
        "a (stream, version) pair was delivered twice"
    );
    // Per stream, versions are gap-free.
    for stream_no in 0..64 {
        let id = format!("apikey-s{stream_no}");
        let versions: Vec<u64> = seen
            .iter()
            .filter(|e| e.stream_id.as_str() == id)
            .map(|e| e.stream_version)
            .collect();
        assert_eq!(
            versions,
            (1..=versions.len() as u64).collect::<Vec<_>>(),
            "{id}"
        );
    }
    // Nothing more arrives: exactly once.
    let extra = tokio::time::timeout(Duration::from_millis(600), subscription.next()).await;
    assert!(extra.is_err(), "an event was delivered twice: {extra:?}");
}

pub async fn subscriptions_start_where_asked_and_refuse_unknown_positions(h: Harness) {
    let id = StreamId::parse("apikey-sub").unwrap();
    for n in 0..5 {
        h.store
            .append(
                &id,
                ExpectedVersion::Any,
                vec![NewEvent::new("Thing.v1", json!({ "n": n }))],
            )
            .await
            .unwrap();
    }
    let mut from_three = h.store.subscribe(3).await.unwrap();
    assert_eq!(next(&mut from_three).await.position, 3);
    assert_eq!(next(&mut from_three).await.position, 4);
    assert_eq!(next(&mut from_three).await.position, 5);

    // From the head's successor: only what comes next.
    let mut live = h.store.subscribe(6).await.unwrap();
    h.store
        .append(
            &id,
            ExpectedVersion::Exact(5),
            vec![NewEvent::new("Thing.v1", json!({ "n": 5 }))],
        )
        .await
        .unwrap();
    assert_eq!(next(&mut live).await.stream_version, 6);
    assert_eq!(next(&mut from_three).await.position, 6);

    assert!(matches!(
        h.store.subscribe(8).await,
        Err(StoreError::UnknownPosition {
            requested: 8,
            head: 6
        })
    ));
}

pub async fn a_subscriber_in_another_process_is_woken_by_appends(h: Harness) {
    // The subscriber polls only once a minute: on Postgres it must be woken by
    // NOTIFY from the writer's process. SQLite is single-node, so the writer
    // and subscriber share a store (and its in-process signal).
    let poll = Duration::from_secs(60);
    let reader = if h.is_postgres() {
        h.another_process(poll).await
    } else {
        h.store.clone()
    };
    let mut subscription = reader.subscribe(1).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let id = StreamId::parse("apikey-wake").unwrap();
    h.store
        .append(
            &id,
            ExpectedVersion::NoStream,
            vec![NewEvent::new("Thing.v1", json!({}))],
        )
        .await
        .unwrap();
    let event = tokio::time::timeout(Duration::from_secs(5), subscription.next())
        .await
        .expect("not woken by the append within 5 s (poll interval is 60 s)")
        .unwrap();
    assert_eq!(event.stream_id, id);
}
