//! Bulk loads and snapshots.

use gatehouse_eventstore::{ExpectedVersion, NewEvent, StoreError, StreamId};
use serde_json::json;

use crate::Harness;

fn stream(id: &str) -> StreamId {
    StreamId::parse(id).unwrap()
}

fn event(n: u64) -> NewEvent {
    NewEvent::new("Thing.v1", json!({ "n": n }))
}

pub async fn bulk_loads_write_new_streams_in_order_and_refuse_existing_ones(h: Harness) {
    // More rows than one statement carries.
    let streams: Vec<_> = (0..300)
        .map(|s| {
            (
                stream(&format!("bulk-{s}")),
                (0..3).map(|n| event(s * 3 + n)).collect(),
            )
        })
        .collect();
    assert_eq!(h.store.load_new_streams(streams).await.unwrap(), 900);
    let all = h.store.read_all(1, 10_000).await.unwrap();
    assert_eq!(all.len(), 900);
    for (i, e) in all.iter().enumerate() {
        assert_eq!(e.position, i as u64 + 1);
        assert_eq!(e.payload["n"], i as u64);
        assert_eq!(e.stream_version, i as u64 % 3 + 1);
    }
    // A normal append continues a loaded stream at the next version.
    let appended = h
        .store
        .append(
            &stream("bulk-7"),
            ExpectedVersion::Exact(3),
            vec![event(1000)],
        )
        .await
        .unwrap();
    assert_eq!(appended.stream_version, 4);
    // One stream that exists refuses the whole load, and nothing is written.
    let refused = h
        .store
        .load_new_streams(vec![
            (stream("bulk-new"), vec![event(1)]),
            (stream("bulk-7"), vec![event(2)]),
        ])
        .await;
    assert!(refused.is_err(), "{refused:?}");
    assert_eq!(h.store.head().await.unwrap(), 901);
    assert_eq!(
        h.store.stream_version(&stream("bulk-new")).await.unwrap(),
        0
    );
    assert!(matches!(
        h.store
            .load_new_streams(vec![(stream("bulk-x"), vec![])])
            .await,
        Err(StoreError::EmptyAppend)
    ));
}

pub async fn snapshots_keep_the_latest_position_and_round_trip_large_data(h: Harness) {
    assert!(h.store.load_snapshot("index").await.unwrap().is_none());
    // Larger than one stored chunk, and not a multiple of it.
    let big: Vec<u8> = (0..(9 << 20) + 123).map(|i| (i * 7 % 251) as u8).collect();
    assert!(h.store.save_snapshot("index", 10, &big).await.unwrap());
    let loaded = h.store.load_snapshot("index").await.unwrap().unwrap();
    assert_eq!(loaded.position, 10);
    assert!(loaded.data == big, "the bytes come back as written");
    // An older or equal position never replaces a newer snapshot.
    assert!(!h.store.save_snapshot("index", 9, b"older").await.unwrap());
    assert!(!h.store.save_snapshot("index", 10, b"same").await.unwrap());
    assert_eq!(
        h.store
            .load_snapshot("index")
            .await
            .unwrap()
            .unwrap()
            .data
            .len(),
        big.len()
    );
    // A later one does, whole: no chunk of the old one is left.
    assert!(h.store.save_snapshot("index", 11, b"newer").await.unwrap());
    let loaded = h.store.load_snapshot("index").await.unwrap().unwrap();
    assert_eq!(
        (loaded.position, loaded.data.as_slice()),
        (11, &b"newer"[..])
    );
    // Names are separate; deleting one leaves the other.
    assert!(h.store.save_snapshot("other", 1, b"x").await.unwrap());
    assert!(h.store.delete_snapshot("index").await.unwrap());
    assert!(!h.store.delete_snapshot("index").await.unwrap());
    assert!(h.store.load_snapshot("index").await.unwrap().is_none());
    assert_eq!(
        h.store.load_snapshot("other").await.unwrap().unwrap().data,
        b"x"
    );
}
