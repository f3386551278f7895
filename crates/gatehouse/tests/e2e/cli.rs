use std::process::Output;

use crate::BIN;

async fn gatehouse(args: &[&str], database_url: &str) -> Output {
    tokio::process::Command::new(BIN)
        .args(args)
        .args(["--database-url", database_url])
        .env_remove("DATABASE_URL")
        .output()
        .await
        .expect("run gatehouse")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn migrate_then_rebuild_a_projection_on_postgres() {
    let url = gatehouse_testkit::fresh_database().await;
    let migrated = gatehouse(&["migrate"], &url).await;
    assert!(migrated.status.success(), "{}", text(&migrated.stderr));
    // Migrating again is a no-op, not an error.
    assert!(gatehouse(&["migrate"], &url).await.status.success());

    // Three events on two streams, written through the store as a server would.
    let store = gatehouse_eventstore_for_test(&url).await;
    for stream in ["apikey-1", "apikey-1", "user-2"] {
        let id = gatehouse_eventstore::StreamId::parse(stream).unwrap();
        store
            .append(
                &id,
                gatehouse_eventstore::ExpectedVersion::Any,
                vec![gatehouse_eventstore::NewEvent::new(
                    "Thing.v1",
                    serde_json::json!({}),
                )],
            )
            .await
            .unwrap();
    }
    let rebuilt = gatehouse(&["projections", "rebuild", "stream_index"], &url).await;
    assert!(rebuilt.status.success(), "{}", text(&rebuilt.stderr));
    assert_eq!(
        text(&rebuilt.stdout).trim(),
        "rebuilt stream_index up to position 3"
    );
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let rows: Vec<(String, String, i64)> =
        sqlx::query_as("SELECT stream_id, kind, version FROM stream_index ORDER BY stream_id")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        rows,
        [
            ("apikey-1".into(), "apikey".into(), 2),
            ("user-2".into(), "user".into(), 1)
        ]
    );
}

#[tokio::test]
async fn unknown_projection_and_bad_database_url_fail_with_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = format!("sqlite:{}", dir.path().join("g.db").display());
    let unknown = gatehouse(&["projections", "rebuild", "nope"], &sqlite).await;
    assert!(!unknown.status.success());
    assert!(
        text(&unknown.stderr)
            .contains("unknown projection \"nope\"; known: stream_index, api_keys, key_activity"),
        "{}",
        text(&unknown.stderr)
    );

    let bad = gatehouse(&["migrate"], "mysql://root@127.0.0.1/test").await;
    assert!(!bad.status.success());
    assert!(
        text(&bad.stderr).contains("unsupported database URL"),
        "{}",
        text(&bad.stderr)
    );
}

async fn gatehouse_eventstore_for_test(url: &str) -> gatehouse_eventstore::EventStore {
    gatehouse_eventstore::EventStore::connect(url, Default::default())
        .await
        .unwrap()
}
