use gatehouse_eventstore::{
    ExpectedVersion, NewEvent, Outcome, Projection, ProjectionRunner, RecordedEvent, StoreError,
    StoreTx, StreamId, on_backend,
};
use serde_json::json;

use crate::Harness;

/// Counts events per stream; fails on `Poison.v1`, to test rollback.
struct Counts;

impl Projection for Counts {
    fn name(&self) -> &'static str {
        "test_counts"
    }

    async fn apply(&self, tx: &mut StoreTx, event: &RecordedEvent) -> Result<(), StoreError> {
        const UPSERT: &str = "INSERT INTO test_counts (stream_id, n) VALUES ($1, 1) \
                              ON CONFLICT (stream_id) DO UPDATE SET n = test_counts.n + 1";
        on_backend!(tx, |conn| sqlx::query(UPSERT)
            .bind(event.stream_id.as_str())
            .execute(conn)
            .await
            .map(|_| ()))?;
        if event.event_type == "Poison.v1" {
            return Err(StoreError::Corrupt {
                position: event.position as i64,
                detail: "poison".into(),
            });
        }
        Ok(())
    }

    async fn reset(&self, tx: &mut StoreTx) -> Result<(), StoreError> {
        on_backend!(tx, |conn| sqlx::query("DELETE FROM test_counts")
            .execute(conn)
            .await
            .map(|_| ()))?;
        Ok(())
    }
}

async fn create_table(h: &Harness) {
    let mut tx = h.store.begin().await.unwrap();
    on_backend!(&mut tx, |conn| sqlx::query(
        "CREATE TABLE test_counts (stream_id TEXT PRIMARY KEY, n BIGINT NOT NULL)"
    )
    .execute(conn)
    .await
    .map(|_| ()))
    .unwrap();
    tx.commit().await.unwrap();
}

async fn counts(h: &Harness) -> Vec<(String, i64)> {
    let mut tx = h.store.begin().await.unwrap();
    let rows: Vec<(String, i64)> = on_backend!(&mut tx, |conn| sqlx::query_as(
        "SELECT stream_id, n FROM test_counts ORDER BY stream_id"
    )
    .fetch_all(conn)
    .await)
    .unwrap();
    tx.commit().await.unwrap();
    rows
}

async fn append(h: &Harness, stream: &str, event_type: &str) {
    let id = StreamId::parse(stream).unwrap();
    h.store
        .append(
            &id,
            ExpectedVersion::Any,
            vec![NewEvent::new(event_type, json!({}))],
        )
        .await
        .unwrap();
}

pub async fn checkpoint_and_read_model_commit_together(h: Harness) {
    create_table(&h).await;
    for stream in ["a-1", "a-1", "b-2", "a-1"] {
        append(&h, stream, "Thing.v1").await;
    }
    let runner = ProjectionRunner::new(h.store.clone(), Counts);
    assert_eq!(runner.checkpoint().await.unwrap(), 0);
    assert_eq!(
        runner.try_execute().await.unwrap(),
        Outcome::Applied {
            events: 4,
            checkpoint: 4
        }
    );
    assert_eq!(runner.try_execute().await.unwrap(), Outcome::Idle);
    assert_eq!(
        counts(&h).await,
        [("a-1".to_string(), 3), ("b-2".to_string(), 1)]
    );

    // A second runner (another replica) continues from the shared checkpoint:
    // nothing is applied twice.
    append(&h, "b-2", "Thing.v1").await;
    let replica = ProjectionRunner::new(h.store.clone(), Counts);
    assert_eq!(replica.run_until_caught_up().await.unwrap(), 5);
    assert_eq!(runner.run_until_caught_up().await.unwrap(), 5);
    assert_eq!(
        counts(&h).await,
        [("a-1".to_string(), 3), ("b-2".to_string(), 2)]
    );
}

pub async fn a_failed_batch_leaves_read_model_and_checkpoint_untouched(h: Harness) {
    create_table(&h).await;
    append(&h, "a-1", "Thing.v1").await;
    append(&h, "a-1", "Poison.v1").await;
    let runner = ProjectionRunner::new(h.store.clone(), Counts);
    assert!(runner.try_execute().await.is_err());
    assert_eq!(
        runner.checkpoint().await.unwrap(),
        0,
        "checkpoint moved past a failed batch"
    );
    assert!(
        counts(&h).await.is_empty(),
        "read model kept writes of a failed batch"
    );
}

pub async fn rebuild_reproduces_the_incremental_read_model(h: Harness) {
    create_table(&h).await;
    for i in 0..1200 {
        append(&h, &format!("s-{}", i % 7), "Thing.v1").await;
    }
    let runner = ProjectionRunner::new(h.store.clone(), Counts);
    runner.run_until_caught_up().await.unwrap();
    let incremental = counts(&h).await;
    assert_eq!(incremental.iter().map(|(_, n)| n).sum::<i64>(), 1200);
    assert_eq!(runner.rebuild().await.unwrap(), 1200);
    assert_eq!(counts(&h).await, incremental);
    assert_eq!(runner.checkpoint().await.unwrap(), 1200);
}
