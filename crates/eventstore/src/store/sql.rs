//! The SQL of appends: the multi-row insert of events (a VALUES list on
//! SQLite, one fixed UNNEST statement on Postgres), and reading a unique
//! violation as a lost race.

use chrono::{DateTime, Utc};

use crate::types::ValidatedEvent;
use crate::{ExpectedVersion, StoreError, StreamId};

/// Rows per INSERT statement (on SQLite 6 parameters each, well under its
/// limit of 32,766).
const ROWS_PER_STATEMENT: usize = 400;
/// JSON bytes per INSERT statement, about.
const BYTES_PER_STATEMENT: usize = 8 * 1024 * 1024;

/// One row of [`insert_rows`]: an event at its stream and version.
pub(crate) type Row<'a> = (&'a StreamId, i64, &'a ValidatedEvent);

/// Inserts `rows` on SQLite, many per statement (see [`statements`]);
/// returns each row's stream, version and position.
pub(crate) async fn insert_rows(
    tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
    rows: &[Row<'_>],
) -> Result<Vec<(String, i64, i64)>, StoreError> {
    let mut written = Vec::with_capacity(rows.len());
    for chunk in statements(rows) {
        let values: Vec<String> = (0..chunk.len())
            .map(|i| {
                let p = i * 6;
                format!(
                    "(${}, ${}, ${}, ${}, ${}, ${})",
                    p + 1,
                    p + 2,
                    p + 3,
                    p + 4,
                    p + 5,
                    p + 6
                )
            })
            .collect();
        let sql = format!(
            "INSERT INTO events (stream_id, stream_version, event_type, payload, metadata, occurred_at) \
             VALUES {} RETURNING stream_id, stream_version, position",
            values.join(", ")
        );
        let mut query = sqlx::query_as(&sql);
        for (stream, version, event) in chunk {
            query = query
                .bind(stream.as_str())
                .bind(*version)
                .bind(event.event_type.as_str())
                .bind(event.payload.as_str())
                .bind(event.metadata.as_str())
                .bind(event.occurred_at);
        }
        written.extend(query.fetch_all(&mut **tx).await?);
    }
    Ok(written)
}

/// Splits `rows` into INSERT statements of at most [`ROWS_PER_STATEMENT`]
/// rows and about [`BYTES_PER_STATEMENT`] of JSON (one row may exceed it),
/// so many or large events do not become one huge message.
pub(crate) fn statements<'r, 'a>(rows: &'r [Row<'a>]) -> impl Iterator<Item = &'r [Row<'a>]> {
    let mut rest = rows;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut bytes = 0;
        let mut end = 0;
        while end < rest.len().min(ROWS_PER_STATEMENT) {
            let (_, _, event) = rest[end];
            bytes += event.payload.len() + event.metadata.len();
            if end > 0 && bytes > BYTES_PER_STATEMENT {
                break;
            }
            end += 1;
        }
        let (chunk, tail) = rest.split_at(end);
        rest = tail;
        Some(chunk)
    })
}

/// The one statement Postgres appends with, whatever the number of rows:
/// six arrays, one element per row, so it is parsed and planned once per
/// connection (a VALUES list per size was a new statement for each group
/// size). Rows are inserted in the order given (`ORDINALITY`), so positions
/// follow versions within a stream.
pub(crate) const INSERT_UNNEST: &str = "INSERT INTO events \
     (stream_id, stream_version, event_type, payload, metadata, occurred_at) \
     SELECT s, v, t, CAST(p AS JSONB), CAST(m AS JSONB), o \
     FROM UNNEST($1::TEXT[], $2::BIGINT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], $6::TIMESTAMPTZ[]) \
     WITH ORDINALITY AS r(s, v, t, p, m, o, n) ORDER BY n \
     RETURNING stream_id, stream_version, position";

/// Inserts `rows` on Postgres with [`INSERT_UNNEST`] (in statements of at
/// most [`ROWS_PER_STATEMENT`] rows and about [`BYTES_PER_STATEMENT`] of
/// JSON); returns each row's stream, version and position.
pub(crate) async fn insert_rows_unnest(
    tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
    rows: &[Row<'_>],
) -> Result<Vec<(String, i64, i64)>, StoreError> {
    let mut written = Vec::with_capacity(rows.len());
    for chunk in statements(rows) {
        let streams: Vec<&str> = chunk.iter().map(|(s, _, _)| s.as_str()).collect();
        let versions: Vec<i64> = chunk.iter().map(|(_, v, _)| *v).collect();
        let types: Vec<&str> = chunk
            .iter()
            .map(|(_, _, e)| e.event_type.as_str())
            .collect();
        let payloads: Vec<&str> = chunk.iter().map(|(_, _, e)| e.payload.as_str()).collect();
        let metadata: Vec<&str> = chunk.iter().map(|(_, _, e)| e.metadata.as_str()).collect();
        let occurred: Vec<DateTime<Utc>> = chunk.iter().map(|(_, _, e)| e.occurred_at).collect();
        let rows: Vec<(String, i64, i64)> = sqlx::query_as(INSERT_UNNEST)
            .bind(streams)
            .bind(versions)
            .bind(types)
            .bind(payloads)
            .bind(metadata)
            .bind(occurred)
            .fetch_all(&mut **tx)
            .await?;
        written.extend(rows);
    }
    Ok(written)
}

/// A unique violation on `(stream_id, stream_version)` means another writer
/// won the race: report it as the typed conflict, not a database error.
pub(crate) fn conflict_or(
    error: sqlx::Error,
    stream: &StreamId,
    expected: ExpectedVersion,
) -> StoreError {
    let unique_violation = error
        .as_database_error()
        .is_some_and(|db| db.is_unique_violation());
    if unique_violation {
        StoreError::WrongExpectedVersion {
            stream: stream.to_string(),
            expected,
            // The winner's version is not known here; it is at least one past ours.
            actual: match expected {
                ExpectedVersion::Exact(v) => v + 1,
                _ => 1,
            },
        }
    } else {
        StoreError::Database(error)
    }
}
