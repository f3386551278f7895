//! A Postgres server for tests.
//!
//! Order of preference: `DATABASE_URL` (any reachable server; the tests create
//! their own databases on it), then a throwaway cluster from the local
//! PostgreSQL binaries (`initdb`, `pg_ctl` on `PATH`, under
//! `/usr/lib/postgresql/*/bin`, or in `GATEHOUSE_PG_BIN`). The throwaway cluster
//! lives in a temporary directory and is stopped and deleted by a reaper process
//! when the test binary exits, however it exits.

use std::io::Write as _;
use std::net::TcpListener;
use std::os::unix::fs::chown;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sqlx::Connection as _;
use sqlx::postgres::PgConnection;

const INSTALL_HINT: &str = "Postgres tests need a server. Either set DATABASE_URL to a server the tests may \
create databases on (e.g. DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres), or install the PostgreSQL \
server binaries so the tests can start a throwaway cluster: Debian/Ubuntu `apt-get install postgresql`, \
Fedora `dnf install postgresql-server`, macOS `brew install postgresql@16` (or point GATEHOUSE_PG_BIN at the \
directory holding initdb and pg_ctl).";

/// Databases the harness creates are named `gh_test_<unix seconds>_<random>`;
/// ones older than this are dropped when a later test run starts.
const STALE_AFTER_SECS: u64 = 3600;

static ADMIN_URL: OnceLock<Result<String, String>> = OnceLock::new();
/// Keeps the throwaway cluster of this process (and its reaper's pipe) alive.
static CLUSTER: Mutex<Option<PgCluster>> = Mutex::new(None);

/// The URL of a database on the test server that may create databases.
/// Panics with installation advice when no server can be had.
pub fn admin_url() -> String {
    let result = ADMIN_URL.get_or_init(|| {
        if let Ok(url) = std::env::var("DATABASE_URL")
            && !url.trim().is_empty()
        {
            return Ok(url);
        }
        match start_throwaway_cluster() {
            Ok(cluster) => {
                let url = cluster.url("postgres");
                if let Ok(mut slot) = CLUSTER.lock() {
                    *slot = Some(cluster);
                }
                Ok(url)
            }
            Err(reason) => Err(reason),
        }
    });
    match result {
        Ok(url) => url.clone(),
        Err(reason) => panic!("{reason}\n\n{INSTALL_HINT}"),
    }
}

/// Creates a new, empty database on the test server and returns its URL.
pub async fn fresh_database() -> String {
    let admin = admin_url();
    let mut conn = PgConnection::connect(&admin).await.unwrap_or_else(|e| {
        panic!(
            "cannot connect to the test Postgres at {}: {e}\n\n{INSTALL_HINT}",
            redact(&admin)
        )
    });
    drop_stale_databases(&mut conn).await;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let name = format!("gh_test_{now}_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(&format!("CREATE DATABASE \"{name}\""))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| {
            panic!("cannot create a test database (does the user have CREATEDB?): {e}")
        });
    conn.close().await.ok();
    with_database(&admin, &name)
}

/// Drops test databases left by runs more than an hour old, once per process.
async fn drop_stale_databases(conn: &mut PgConnection) {
    static DONE: OnceLock<()> = OnceLock::new();
    if DONE.set(()).is_err() {
        return;
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let names: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 'gh\\_test\\_%'")
            .fetch_all(&mut *conn)
            .await
            .unwrap_or_default();
    for name in names {
        let created = name.split('_').nth(2).and_then(|s| s.parse::<u64>().ok());
        if created.is_some_and(|t| now.saturating_sub(t) > STALE_AFTER_SECS) {
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                .execute(&mut *conn)
                .await;
        }
    }
}

/// Replaces the database name in a Postgres URL.
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_start..].find('/') {
        Some(i) => &base[..authority_start + i],
        None => base,
    };
    match query {
        Some(query) => format!("{base}/{database}?{query}"),
        None => format!("{base}/{database}"),
    }
}

fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}***{}", &url[..s + 3], &url[at..]),
        _ => url.to_string(),
    }
}

/// A Postgres cluster started for this test process.
pub struct PgCluster {
    port: u16,
    bin: PathBuf,
    owner: Option<(u32, u32)>,
    options: String,
    /// Closing this pipe (at process exit) makes the reaper stop the server and
    /// delete the directory.
    _reaper_stdin: std::process::ChildStdin,
    _dir: PathBuf,
}

impl PgCluster {
    /// Stops the server (fast shutdown), e.g. to test behaviour during an outage.
    pub fn stop(&self) -> Result<(), String> {
        run(
            as_owner(Command::new(self.bin.join("pg_ctl")), self.owner)
                .arg("-D")
                .arg(self._dir.join("data"))
                .args(["-m", "fast", "-w", "stop"]),
            "pg_ctl stop",
        )
    }

    /// Starts the server again on the same port after [`PgCluster::stop`].
    pub fn start(&self) -> Result<(), String> {
        run(
            as_owner(Command::new(self.bin.join("pg_ctl")), self.owner)
                .arg("-D")
                .arg(self._dir.join("data"))
                .arg("-o")
                .arg(&self.options)
                .arg("-l")
                .arg(self._dir.join("server.log"))
                .args(["-w", "-t", "30", "start"]),
            "pg_ctl start",
        )?;
        wait_until_accepting(self.port)
    }

    /// URL of `database` on this cluster.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }
}

/// Starts a throwaway cluster from the local PostgreSQL binaries. As root (CI
/// containers), the server runs as the `postgres` (or `nobody`) user, because
/// Postgres refuses to run as root.
pub fn start_throwaway_cluster() -> Result<PgCluster, String> {
    let bin = find_pg_bin().ok_or_else(|| {
        "DATABASE_URL is not set and no PostgreSQL server binaries (initdb, pg_ctl) were found"
            .to_string()
    })?;
    let owner = unprivileged_owner()?;
    let dir = std::env::temp_dir().join(format!("gatehouse-pg-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    if let Some((uid, gid)) = owner {
        chown(&dir, Some(uid), Some(gid))
            .map_err(|e| format!("cannot chown {}: {e}", dir.display()))?;
    }
    let data = dir.join("data");
    let mut reaper = as_owner(Command::new("sh"), owner);
    reaper
        .arg("-c")
        // Waits for the test process to go away (stdin closes), then cleans up.
        .arg(r#"cat >/dev/null; "$1/pg_ctl" -D "$2/data" -m immediate stop >/dev/null 2>&1; rm -rf "$2""#)
        .arg("reaper")
        .arg(&bin)
        .arg(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut reaper = reaper
        .spawn()
        .map_err(|e| format!("cannot start the cleanup process: {e}"))?;
    let reaper_stdin = reaper.stdin.take().ok_or("cleanup process has no stdin")?;

    run(
        as_owner(Command::new(bin.join("initdb")), owner)
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ]),
        "initdb",
    )?;
    let mut last_error = String::new();
    for _ in 0..3 {
        let port = free_port()?;
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {port} -k {} -c fsync=off -c synchronous_commit=off \
             -c full_page_writes=off -c max_connections=300 -c shared_buffers=64MB",
            dir.display()
        );
        let started = run(
            as_owner(Command::new(bin.join("pg_ctl")), owner)
                .arg("-D")
                .arg(&data)
                .arg("-o")
                .arg(&options)
                .arg("-l")
                .arg(dir.join("server.log"))
                .args(["-w", "-t", "30", "start"]),
            "pg_ctl start",
        );
        match started {
            Ok(()) => {
                wait_until_accepting(port)?;
                return Ok(PgCluster {
                    port,
                    bin,
                    owner,
                    options,
                    _reaper_stdin: reaper_stdin,
                    _dir: dir,
                });
            }
            Err(e) => last_error = e,
        }
    }
    let mut stdin = reaper_stdin;
    let _ = stdin.flush();
    Err(last_error)
}

fn wait_until_accepting(port: u16) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!(
        "the throwaway Postgres did not accept connections on port {port}"
    ))
}

fn run(command: &mut Command, what: &str) -> Result<(), String> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {what}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

fn as_owner(mut command: Command, owner: Option<(u32, u32)>) -> Command {
    use std::os::unix::process::CommandExt as _;
    if let Some((uid, gid)) = owner {
        command.gid(gid).uid(uid);
    }
    command
}

/// `None` when not root; otherwise the uid/gid to run Postgres as.
fn unprivileged_owner() -> Result<Option<(u32, u32)>, String> {
    let id = |args: &[&str]| -> Option<u32> {
        let out = Command::new("id").args(args).output().ok()?;
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    };
    if id(&["-u"]) != Some(0) {
        return Ok(None);
    }
    for user in ["postgres", "nobody"] {
        if let (Some(uid), Some(gid)) = (id(&["-u", user]), id(&["-g", user])) {
            return Ok(Some((uid, gid)));
        }
    }
    Err(
        "running as root, and neither a `postgres` nor a `nobody` user exists to run Postgres as"
            .into(),
    )
}

fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free port: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

/// The directory holding `initdb` and `pg_ctl`, newest version first.
fn find_pg_bin() -> Option<PathBuf> {
    let has_tools = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Some(dir) = std::env::var_os("GATEHOUSE_PG_BIN").map(PathBuf::from) {
        return has_tools(&dir).then_some(dir);
    }
    if let Some(path) = std::env::var_os("PATH")
        && let Some(dir) = std::env::split_paths(&path).find(|d| has_tools(d))
    {
        return Some(dir);
    }
    let mut versioned: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            has_tools(&bin).then_some((version, bin))
        })
        .collect();
    versioned.sort();
    if let Some((_, bin)) = versioned.pop() {
        return Some(bin);
    }
    [
        "/usr/local/pgsql/bin",
        "/opt/homebrew/bin",
        "/usr/pgsql/bin",
    ]
    .into_iter()
    .map(PathBuf::from)
    .find(|d| has_tools(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names_are_replaced_in_urls() {
        assert_eq!(
            with_database("postgres://u:p@h:5432/test?sslmode=disable", "x"),
            "postgres://u:p@h:5432/x?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://h:5432", "x"),
            "postgres://h:5432/x"
        );
        assert_eq!(with_database("postgresql://h/", "x"), "postgresql://h/x");
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://***@h/db");
    }
}
