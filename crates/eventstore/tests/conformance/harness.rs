//! A fresh store per test, on either backend.

use std::time::Duration;

use gatehouse_eventstore::{EventStore, StoreOptions};

pub struct Harness {
    pub url: String,
    pub store: EventStore,
    _dir: Option<tempfile::TempDir>,
}

fn options() -> StoreOptions {
    StoreOptions {
        max_connections: 10,
        poll_interval: Duration::from_millis(200),
    }
}

impl Harness {
    pub async fn postgres() -> Self {
        let url = gatehouse_testkit::fresh_database().await;
        let store = EventStore::connect(&url, options())
            .await
            .expect("connect to Postgres");
        store.migrate().await.expect("migrate Postgres");
        Self {
            url,
            store,
            _dir: None,
        }
    }

    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite:{}", dir.path().join("events.db").display());
        let store = EventStore::connect(&url, options())
            .await
            .expect("open SQLite");
        store.migrate().await.expect("migrate SQLite");
        Self {
            url,
            store,
            _dir: Some(dir),
        }
    }

    /// A second, independent store on the same database — what another
    /// process would have. `poll` sets its polling interval.
    pub async fn another_process(&self, poll: Duration) -> EventStore {
        EventStore::connect(
            &self.url,
            StoreOptions {
                poll_interval: poll,
                ..options()
            },
        )
        .await
        .expect("second connection")
    }

    pub fn is_postgres(&self) -> bool {
        self.store.backend_name() == "postgres"
    }
}
