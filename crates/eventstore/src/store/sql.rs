//! SQL both backends share: the multi-row insert of events, and reading a
//! unique violation as a lost race.

use chrono::{DateTime, Utc};

use crate::types::ValidatedEvent;
use crate::{ExpectedVersion, StoreError, StreamId};

/// Rows per INSERT statement (6 parameters each, well under 65,535).
const ROWS_PER_STATEMENT: usize = 400;
/// JSON bytes per INSERT statement, about.
const BYTES_PER_STATEMENT: usize = 8 * 1024 * 1024;

/// One row of [`insert_rows`]: an event at its stream and version.
pub(crate) type Row<'a> = (&'a StreamId, i64, &'a ValidatedEvent);

/// Inserts `rows`, many per statement (see [`statements`]); returns each
/// row's stream, version and position. Shared SQL for both backends.
pub(crate) async fn insert_rows<DB>(
    tx: &mut sqlx::Transaction<'static, DB>,
    rows: &[Row<'_>],
) -> Result<Vec<(String, i64, i64)>, StoreError>
where
    DB: sqlx::Database,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> <DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    i64: sqlx::Type<DB> + for<'q> sqlx::Encode<'q, DB>,
    for<'q> &'q str: sqlx::Type<DB> + sqlx::Encode<'q, DB>,
    DateTime<Utc>: sqlx::Type<DB> + for<'q> sqlx::Encode<'q, DB>,
    (String, i64, i64): for<'r> sqlx::FromRow<'r, DB::Row>,
{
    let json = if DB::NAME == "PostgreSQL" {
        |n: usize| format!("CAST(${n} AS JSONB)")
    } else {
        |n: usize| format!("${n}")
    };
    let mut written = Vec::with_capacity(rows.len());
    for chunk in statements(rows) {
        let values: Vec<String> = (0..chunk.len())
            .map(|i| {
                let p = i * 6;
                format!(
                    "(${}, ${}, ${}, {}, {}, ${})",
                    p + 1,
                    p + 2,
                    p + 3,
                    json(p + 4),
                    json(p + 5),
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
fn statements<'r, 'a>(rows: &'r [Row<'a>]) -> impl Iterator<Item = &'r [Row<'a>]> {
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
