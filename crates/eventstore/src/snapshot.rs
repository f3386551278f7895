//! Snapshots: the serialized state of an in-memory read model as of a log
//! position, so a process starts from it and folds only the events after.
//! The store keeps the latest per name and never replaces it with an older
//! one (several verifiers write the same snapshot).

use crate::{EventStore, Position, StoreError, StoreTx, on_backend};

/// Bytes per stored chunk.
const CHUNK: usize = 4 << 20;

/// A snapshot as loaded.
#[derive(Debug)]
pub struct Snapshot {
    /// The last log position the state includes.
    pub position: Position,
    pub data: Vec<u8>,
    /// When it was written (Unix ms).
    pub taken_at: i64,
}

impl EventStore {
    /// Stores `data` as the snapshot `name` at `position`, unless one at the
    /// same or a later position is stored already. Returns whether it was
    /// stored. One transaction: a reader sees the old snapshot or the new.
    pub async fn save_snapshot(
        &self,
        name: &str,
        position: Position,
        data: &[u8],
    ) -> Result<bool, StoreError> {
        let too_large = || StoreError::SnapshotTooLarge { name: name.into() };
        let position = i64::try_from(position).map_err(|_| too_large())?;
        let size = i64::try_from(data.len()).map_err(|_| too_large())?;
        let chunks: Vec<&[u8]> = data.chunks(CHUNK).collect();
        let count = i32::try_from(chunks.len()).map_err(|_| too_large())?;
        let now = chrono::Utc::now().timestamp_millis();
        let mut tx = self.begin().await?;
        // The upsert takes the row's lock: concurrent writers queue here, and
        // the later position wins whatever the order.
        let stored = on_backend!(&mut tx, |conn| {
            sqlx::query(
                "INSERT INTO snapshots (name, position, size, chunks, taken_at) \
                 VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (name) DO UPDATE SET position = excluded.position, \
                 size = excluded.size, chunks = excluded.chunks, taken_at = excluded.taken_at \
                 WHERE snapshots.position < excluded.position",
            )
            .bind(name)
            .bind(position)
            .bind(size)
            .bind(count)
            .bind(now)
            .execute(conn)
            .await?
            .rows_affected()
        });
        if stored == 0 {
            return Ok(false);
        }
        on_backend!(&mut tx, |conn| {
            sqlx::query("DELETE FROM snapshot_chunks WHERE name = $1")
                .bind(name)
                .execute(conn)
                .await?;
        });
        for (seq, chunk) in chunks.into_iter().enumerate() {
            on_backend!(&mut tx, |conn| {
                sqlx::query("INSERT INTO snapshot_chunks (name, seq, data) VALUES ($1, $2, $3)")
                    .bind(name)
                    .bind(seq as i32)
                    .bind(chunk)
                    .execute(conn)
                    .await?;
            });
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Deletes the snapshot `name`; whether there was one.
    pub async fn delete_snapshot(&self, name: &str) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        on_backend!(&mut tx, |conn| {
            sqlx::query("DELETE FROM snapshot_chunks WHERE name = $1")
                .bind(name)
                .execute(conn)
                .await?;
        });
        let deleted = on_backend!(&mut tx, |conn| {
            sqlx::query("DELETE FROM snapshots WHERE name = $1")
                .bind(name)
                .execute(conn)
                .await?
                .rows_affected()
        });
        tx.commit().await?;
        Ok(deleted > 0)
    }

    /// The latest snapshot `name`, if any; read in one consistent view.
    pub async fn load_snapshot(&self, name: &str) -> Result<Option<Snapshot>, StoreError> {
        let mut tx = self.begin_read().await?;
        if let StoreTx::Postgres(_) = &tx {
            on_backend!(&mut tx, |conn| {
                sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                    .execute(conn)
                    .await?;
            });
        }
        let header: Option<(i64, i64, i32, i64)> = on_backend!(&mut tx, |conn| {
            sqlx::query_as("SELECT position, size, chunks, taken_at FROM snapshots WHERE name = $1")
                .bind(name)
                .fetch_optional(conn)
                .await?
        });
        let Some((position, size, chunks, taken_at)) = header else {
            return Ok(None);
        };
        // The header is data: a damaged one must not size an allocation.
        let fits = chunks >= 0 && size >= 0 && size <= i64::from(chunks) * CHUNK as i64;
        if !fits {
            return Err(StoreError::CorruptSnapshot {
                name: name.into(),
                detail: format!("{size} bytes in {chunks} chunks"),
            });
        }
        let mut data = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        // Chunk by chunk, so the rows never sit in memory beside the whole.
        for seq in 0..chunks {
            let chunk: Option<Vec<u8>> = on_backend!(&mut tx, |conn| {
                sqlx::query_scalar("SELECT data FROM snapshot_chunks WHERE name = $1 AND seq = $2")
                    .bind(name)
                    .bind(seq)
                    .fetch_optional(conn)
                    .await?
            });
            let Some(chunk) = chunk else {
                return Err(StoreError::CorruptSnapshot {
                    name: name.into(),
                    detail: format!("chunk {seq} of {chunks} is missing"),
                });
            };
            data.extend_from_slice(&chunk);
        }
        if i64::try_from(data.len()).ok() != Some(size) {
            return Err(StoreError::CorruptSnapshot {
                name: name.into(),
                detail: format!("{} bytes, the header says {size}", data.len()),
            });
        }
        tx.commit().await?;
        Ok(Some(Snapshot {
            position: u64::try_from(position).unwrap_or(0),
            data,
            taken_at,
        }))
    }
}
