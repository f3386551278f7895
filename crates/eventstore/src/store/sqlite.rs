//! The SQLite backend (the embedded default): one writer connection taking
//! `BEGIN IMMEDIATE`, a pool of readers, WAL, and files private to their
//! owner.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use tokio::sync::watch;

use super::sql::{Row, conflict_or, insert_rows};
use super::{AppendResult, Backend, EventStore, Inner, StoreOptions, outside_transaction, to_u64};
use crate::types::ValidatedEvent;
use crate::{ExpectedVersion, StoreError, StreamId};

impl EventStore {
    /// Opens (creating if missing) an SQLite database file in WAL mode.
    /// The file (and a directory created for it) is private to its owner
    /// (0600, 0700): it holds every hash and sealed key.
    pub async fn open_sqlite(path: &Path, options: StoreOptions) -> Result<Self, StoreError> {
        private_file(path).map_err(StoreError::DataDir)?;
        let connect = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .before_acquire(|conn, _| Box::pin(async move { Ok(outside_transaction(conn)) }))
            .connect_with(connect.clone())
            .await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .before_acquire(|conn, _| Box::pin(async move { Ok(outside_transaction(conn)) }))
            .connect_with(connect)
            .await?;
        let (changes, _) = watch::channel(0);
        Ok(Self {
            inner: Arc::new(Inner {
                backend: Backend::Sqlite {
                    writer,
                    reader,
                    path: is_plain_file(path).then(|| path.to_path_buf()),
                },
                changes,
                poll_interval: options.poll_interval,
                _listener: None,
                local_readers: Default::default(),
                write_probe: Default::default(),
                stream_reads: Default::default(),
            }),
        })
    }
}

/// Appends `batches` in one `BEGIN IMMEDIATE` transaction on the writer:
/// each stream's version is read (or carried from an earlier batch of the
/// same call) and checked, then every row goes in through the shared
/// [`insert_rows`], as Postgres's group commit writes them.
pub(super) async fn append(
    writer: &SqlitePool,
    batches: &[(StreamId, ExpectedVersion, Vec<ValidatedEvent>)],
) -> Result<Vec<AppendResult>, StoreError> {
    let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;
    let mut versions: HashMap<&str, u64> = HashMap::new();
    let mut rows: Vec<Row<'_>> = Vec::new();
    let mut spans = Vec::with_capacity(batches.len());
    for (stream, expected, events) in batches {
        let actual = match versions.get(stream.as_str()) {
            Some(version) => *version,
            None => {
                let (version,): (i64,) = sqlx::query_as(
                    "SELECT COALESCE(MAX(stream_version), 0) FROM events WHERE stream_id = $1",
                )
                .bind(stream.as_str())
                .fetch_one(&mut *tx)
                .await?;
                to_u64(version)
            }
        };
        expected.check(stream, actual)?;
        for (i, event) in events.iter().enumerate() {
            rows.push((stream, (actual + 1 + i as u64) as i64, event));
        }
        let last = actual + events.len() as u64;
        versions.insert(stream.as_str(), last);
        spans.push((stream.as_str(), actual, last));
    }
    let conflict = |e: sqlx::Error| match batches.first() {
        Some((stream, expected, _)) => conflict_or(e, stream, *expected),
        None => StoreError::Database(e),
    };
    let written = insert_rows(&mut tx, &rows).await.map_err(|e| match e {
        StoreError::Database(e) => conflict(e),
        other => other,
    })?;
    let positions: HashMap<(&str, i64), u64> = written
        .iter()
        .filter_map(|(stream, version, position)| {
            let name = spans.iter().find(|(s, _, _)| *s == stream.as_str())?.0;
            Some(((name, *version), to_u64(*position)))
        })
        .collect();
    // Every row inserted comes back with its position, or nothing commits.
    let position = |name: &str, version: u64| {
        positions
            .get(&(name, version as i64))
            .copied()
            .ok_or_else(|| {
                StoreError::Database(sqlx::Error::Protocol(format!(
                    "no position came back for {name} version {version}"
                )))
            })
    };
    let mut results = Vec::with_capacity(spans.len());
    for (name, before, last) in &spans {
        let (first_position, last_position) = if last > before {
            (position(name, before + 1)?, position(name, *last)?)
        } else {
            (0, 0)
        };
        results.push(AppendResult {
            first_position,
            last_position,
            stream_version: *last,
        });
    }
    tx.commit().await.map_err(conflict)?;
    Ok(results)
}

/// Whether `path` names a file (not an in-memory database or a URI with
/// parameters).
pub(super) fn is_plain_file(path: &Path) -> bool {
    let name = path.to_string_lossy();
    !(name.starts_with(":memory:") || name.contains('?') || name.starts_with("file:"))
}

/// Takes an exclusive lock on `<path>.migrate.lock` (created 0600), waiting
/// for another process that holds it; released when the file is dropped.
pub(super) async fn lock_file(path: &Path) -> std::io::Result<std::fs::File> {
    let mut name = path.as_os_str().to_owned();
    name.push(".migrate.lock");
    let lock = std::path::PathBuf::from(name);
    tokio::task::spawn_blocking(move || {
        let mut options = std::fs::OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options.open(&lock)?;
        file.lock()?;
        Ok(file)
    })
    .await
    .map_err(std::io::Error::other)?
}

/// Creates `path` (and its missing directories) readable by its owner only:
/// directories 0700, the file 0600. An existing database file, or its WAL
/// and shared-memory files, that others may read is tightened to 0600 —
/// SQLite gives the files it creates the database file's mode. An existing
/// directory is kept as it is (it may be the working directory), except
/// that others' write access to it is taken away (or, where this user
/// cannot, a world-writable one is refused): they could swap its files.
pub(super) fn private_file(path: &Path) -> std::io::Result<()> {
    if !is_plain_file(path) {
        return Ok(());
    }
    if let Some(dir) = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty() && !d.exists())
    {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(dir)?;
    }
    #[cfg(unix)]
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir)?.permissions().mode();
        if mode & 0o022 != 0 {
            // Others could replace the database or the master key in it:
            // take their write access away, as the files' read access is.
            let tightened = std::fs::Permissions::from_mode(mode & !0o022 & 0o7777);
            match std::fs::set_permissions(dir, tightened) {
                Ok(()) => tracing::warn!(
                    path = %dir.display(),
                    mode = format!("{:o}", mode & 0o7777),
                    "others could write to the data directory; took their write access away"
                ),
                // Not ours to change, and only a group may write (a volume
                // shared through its group, as Kubernetes' fsGroup does).
                Err(_) if mode & 0o002 == 0 => tracing::warn!(
                    path = %dir.display(),
                    "the data directory's group may write to it: its members could replace the database or the master key"
                ),
                Err(_) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::PermissionDenied,
                        format!(
                            "{} is writable by other users (mode {:o}), who could replace the database or the master key in it, and cannot be made private by this user; use a directory of this user's (a subdirectory is created 0700)",
                            dir.display(),
                            mode & 0o7777
                        ),
                    ));
                }
            }
        }
    }
    if !path.exists() {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        match options.open(path) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        for suffix in ["", "-wal", "-shm"] {
            let mut file = path.as_os_str().to_owned();
            file.push(suffix);
            let file = std::path::PathBuf::from(file);
            // A symlink is the operator's arrangement: its target is left alone.
            let Ok(meta) = std::fs::symlink_metadata(&file) else {
                continue;
            };
            if !meta.file_type().is_file() {
                continue;
            }
            let mode = meta.permissions().mode();
            if mode & 0o077 != 0 {
                tracing::warn!(path = %file.display(), mode = format!("{:o}", mode & 0o777), "others could read the database file; tightening it to 0600");
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))?;
            }
        }
    }
    Ok(())
}
