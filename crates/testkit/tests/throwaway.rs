//! The fallback the harness uses when `DATABASE_URL` is unset: a throwaway
//! cluster from the local PostgreSQL binaries. Started explicitly here, so CI
//! (which sets `DATABASE_URL`) exercises this path too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests: a failure is a panic

use sqlx::Connection as _;

#[tokio::test]
async fn a_throwaway_cluster_starts_and_accepts_connections() {
    let cluster = gatehouse_testkit::start_throwaway_cluster().unwrap_or_else(|reason| {
        panic!("{reason}: install the PostgreSQL server binaries (Debian/Ubuntu: apt-get install postgresql)")
    });
    let mut conn = sqlx::PgConnection::connect(&cluster.url("postgres"))
        .await
        .unwrap();
    let version: String = sqlx::query_scalar("SHOW server_version")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert!(!version.is_empty());
    sqlx::query("CREATE DATABASE scratch")
        .execute(&mut conn)
        .await
        .unwrap();
    let mut scratch = sqlx::PgConnection::connect(&cluster.url("scratch"))
        .await
        .unwrap();
    let one: i32 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&mut scratch)
        .await
        .unwrap();
    assert_eq!(one, 1);
}
