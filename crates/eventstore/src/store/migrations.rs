//! The schema migrations, embedded in the binary. `sqlx::migrate!` did the
//! same at compile time, but it needs sqlx's macros, which compile both
//! database drivers (and SQLite's C source) a second time for the build
//! host; this reads the same files with `include_str!` and names them as
//! sqlx does (`0001_event_log.sql` is version 1, "event log", checksum the
//! SHA-384 of its text), so databases migrated before see no change.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;

use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};

/// File names and texts of one backend's migrations, in order.
#[derive(Debug, Clone, Copy)]
pub(super) struct Embedded(&'static [(&'static str, &'static str)]);

pub(super) const POSTGRES: Embedded = Embedded(&[
    (
        "0001_event_log.sql",
        include_str!("../../../../migrations/postgres/0001_event_log.sql"),
    ),
    (
        "0002_stream_index.sql",
        include_str!("../../../../migrations/postgres/0002_stream_index.sql"),
    ),
    (
        "0003_login_throttle.sql",
        include_str!("../../../../migrations/postgres/0003_login_throttle.sql"),
    ),
    (
        "0004_api_keys.sql",
        include_str!("../../../../migrations/postgres/0004_api_keys.sql"),
    ),
    (
        "0005_key_activity.sql",
        include_str!("../../../../migrations/postgres/0005_key_activity.sql"),
    ),
    (
        "0006_scopes_and_deleted_keys.sql",
        include_str!("../../../../migrations/postgres/0006_scopes_and_deleted_keys.sql"),
    ),
    (
        "0007_login_throttle_refusals.sql",
        include_str!("../../../../migrations/postgres/0007_login_throttle_refusals.sql"),
    ),
    (
        "0008_snapshots.sql",
        include_str!("../../../../migrations/postgres/0008_snapshots.sql"),
    ),
]);

pub(super) const SQLITE: Embedded = Embedded(&[
    (
        "0001_event_log.sql",
        include_str!("../../../../migrations/sqlite/0001_event_log.sql"),
    ),
    (
        "0002_stream_index.sql",
        include_str!("../../../../migrations/sqlite/0002_stream_index.sql"),
    ),
    (
        "0003_login_throttle.sql",
        include_str!("../../../../migrations/sqlite/0003_login_throttle.sql"),
    ),
    (
        "0004_api_keys.sql",
        include_str!("../../../../migrations/sqlite/0004_api_keys.sql"),
    ),
    (
        "0005_key_activity.sql",
        include_str!("../../../../migrations/sqlite/0005_key_activity.sql"),
    ),
    (
        "0006_scopes_and_deleted_keys.sql",
        include_str!("../../../../migrations/sqlite/0006_scopes_and_deleted_keys.sql"),
    ),
    (
        "0007_login_throttle_refusals.sql",
        include_str!("../../../../migrations/sqlite/0007_login_throttle_refusals.sql"),
    ),
    (
        "0008_snapshots.sql",
        include_str!("../../../../migrations/sqlite/0008_snapshots.sql"),
    ),
]);

type Resolved = Result<Vec<Migration>, Box<dyn std::error::Error + Send + Sync>>;

impl Embedded {
    /// The migrator over these migrations.
    pub(super) async fn migrator(self) -> Result<Migrator, sqlx::migrate::MigrateError> {
        Migrator::new(self).await
    }

    fn migrations(self) -> Resolved {
        self.0
            .iter()
            .map(|(name, sql)| {
                let stem = name
                    .strip_suffix(".sql")
                    .ok_or("a migration is a .sql file")?;
                let (version, description) = stem
                    .split_once('_')
                    .ok_or("a migration is named VERSION_DESCRIPTION.sql")?;
                Ok(Migration::new(
                    version.parse()?,
                    Cow::Owned(description.replace('_', " ")),
                    MigrationType::Simple,
                    Cow::Borrowed(*sql),
                    sql.starts_with("-- no-transaction"),
                ))
            })
            .collect()
    }
}

impl<'s> MigrationSource<'s> for Embedded {
    fn resolve(self) -> Pin<Box<dyn Future<Output = Resolved> + Send + 's>> {
        Box::pin(async move { self.migrations() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A migration added to `migrations/` but not here would never run.
    #[test]
    fn every_migration_file_is_embedded_in_order() {
        for (backend, embedded) in [("postgres", POSTGRES), ("sqlite", SQLITE)] {
            let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../migrations/");
            let mut files: Vec<String> = std::fs::read_dir(format!("{dir}{backend}"))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            files.sort();
            let names: Vec<&str> = embedded.0.iter().map(|(n, _)| *n).collect();
            assert_eq!(names, files, "{backend}");
            let migrations = embedded.migrations().unwrap();
            let versions: Vec<i64> = migrations.iter().map(|m| m.version).collect();
            assert_eq!(versions, (1..=files.len() as i64).collect::<Vec<_>>());
            assert_eq!(migrations[0].description, "event log");
        }
    }
}
