//! The Postgres backend: a pool, `LISTEN/NOTIFY` for other processes'
//! appends, and the advisory lock that serialises appends (the appends
//! themselves go through `crate::group`, which commits concurrent ones
//! together).

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tokio::sync::watch;

use super::{AbortOnDrop, Backend, EventStore, Inner, StoreOptions, outside_transaction};
use crate::StoreError;
use crate::group::Committer;

/// Notification channel an append signals on commit (Postgres `NOTIFY`).
pub(crate) const NOTIFY_CHANNEL: &str = "gatehouse_events";
/// Advisory lock key that serialises appends ("gatehous" in ASCII).
const APPEND_LOCK_KEY: i64 = 0x6761_7465_686f_7573;
impl EventStore {
    /// Connects to Postgres and starts listening for appends of other processes.
    pub async fn connect_postgres(url: &str, options: StoreOptions) -> Result<Self, StoreError> {
        let connect = PgConnectOptions::from_str(url)?.application_name("gatehouse");
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(Duration::from_secs(5))
            .before_acquire(|conn, _| Box::pin(async move { Ok(outside_transaction(conn)) }))
            .connect_with(connect)
            .await?;
        let (changes, _) = watch::channel(0);
        let listener = tokio::spawn(listen_for_appends(pool.clone(), changes.clone()));
        let committer = Committer::start(pool.clone(), changes.clone());
        Ok(Self {
            inner: Arc::new(Inner {
                backend: Backend::Postgres { pool, committer },
                changes,
                poll_interval: options.poll_interval,
                _listener: Some(AbortOnDrop(listener)),
                local_readers: Default::default(),
                write_probe: Default::default(),
                stream_reads: Default::default(),
            }),
        })
    }
}

/// Signals listeners (on commit) that the log grew to `last`.
pub(crate) async fn notify_appended(
    tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
    last: u64,
) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(NOTIFY_CHANNEL)
        .bind(last.to_string())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Takes the log's append lock for the transaction: appends commit one at a
/// time, so positions become visible in order and no reader skips one.
pub(crate) async fn lock_appends(
    tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(APPEND_LOCK_KEY)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Turns Postgres notifications (from any process) into change signals. A lost
/// connection is re-established by the listener; the signal is bumped then too,
/// so subscribers read whatever they may have missed.
pub(super) async fn listen_for_appends(pool: PgPool, changes: watch::Sender<u64>) {
    loop {
        let mut listener = match sqlx::postgres::PgListener::connect_with(&pool).await {
            Ok(listener) => listener,
            Err(error) => {
                tracing::warn!(%error, "cannot listen for event log notifications; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if let Err(error) = listener.listen(NOTIFY_CHANNEL).await {
            tracing::warn!(%error, "LISTEN failed; retrying");
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        changes.send_modify(|n| *n = n.wrapping_add(1));
        loop {
            match listener.try_recv().await {
                Ok(Some(_)) => changes.send_modify(|n| *n = n.wrapping_add(1)),
                Ok(None) => {
                    // Connection lost and re-established: notifications in
                    // between are gone, so wake readers to catch up.
                    changes.send_modify(|n| *n = n.wrapping_add(1));
                }
                Err(error) => {
                    tracing::warn!(%error, "event log notifications interrupted; reconnecting");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    break;
                }
            }
        }
    }
}
