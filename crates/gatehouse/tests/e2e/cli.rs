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

#[tokio::test]
async fn errors_are_one_clear_line_whatever_the_environment() {
    // A database that cannot be reached, with RUST_BACKTRACE set as many
    // people have it: one line, its causes once each, no backtrace.
    let failed = tokio::process::Command::new(BIN)
        .args([
            "migrate",
            "--database-url",
            "postgres://nobody@127.0.0.1:1/x",
        ])
        .env_remove("DATABASE_URL")
        .env("RUST_BACKTRACE", "1")
        .output()
        .await
        .unwrap();
    assert_eq!(failed.status.code(), Some(1));
    let stderr = text(&failed.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("error: cannot open the event store: "),
        "{stderr}"
    );
    assert!(
        !stderr.contains("backtrace") && !stderr.contains("Caused by"),
        "{stderr}"
    );
    assert_eq!(
        stderr.matches("pool timed out").count(),
        1,
        "each cause once: {stderr}"
    );

    // An address without its scheme says so, not "transport error".
    let bare = tokio::process::Command::new(BIN)
        .args([
            "keys",
            "list",
            "--account",
            "0193",
            "--addr",
            "127.0.0.1:50051",
        ])
        .env("GATEHOUSE_TOKEN", "wc_live_x")
        .env("RUST_BACKTRACE", "1")
        .output()
        .await
        .unwrap();
    let stderr = text(&bare.stderr);
    assert_eq!(bare.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("give a URL with its scheme, such as http://127.0.0.1:50051"),
        "{stderr}"
    );
    // A server that is not there: the cause, not only "transport error".
    let gone = tokio::process::Command::new(BIN)
        .args([
            "keys",
            "list",
            "--account",
            "0193",
            "--addr",
            "http://127.0.0.1:1",
        ])
        .env("GATEHOUSE_TOKEN", "wc_live_x")
        .output()
        .await
        .unwrap();
    let stderr = text(&gone.stderr);
    assert_eq!(gone.status.code(), Some(7), "{stderr}");
    assert!(
        stderr.contains("cannot reach http://127.0.0.1:1: transport error: "),
        "{stderr}"
    );
    assert!(stderr.to_lowercase().contains("refused"), "{stderr}");
}

async fn gatehouse_eventstore_for_test(url: &str) -> gatehouse_eventstore::EventStore {
    gatehouse_eventstore::EventStore::connect(url, Default::default())
        .await
        .unwrap()
}

/// Runs an admin command of the real binary against `addr` with `token`.
pub(crate) async fn admin(
    addr: &str,
    token: Option<&str>,
    args: &[&str],
    envs: &[(&str, &str)],
) -> Output {
    let mut command = tokio::process::Command::new(BIN);
    command
        .args(args)
        .env("GATEHOUSE_ADDR", format!("http://{addr}"))
        .env_remove("GATEHOUSE_TOKEN")
        .env_remove("DATABASE_URL")
        .stdin(std::process::Stdio::null());
    if let Some(token) = token {
        command.env("GATEHOUSE_TOKEN", token);
    }
    for (key, value) in envs {
        command.env(key, value);
    }
    command.output().await.expect("run gatehouse")
}

#[tokio::test]
async fn admin_commands_print_tables_and_json_and_exit_with_meaningful_codes() {
    let env = crate::support::postgres().await;
    let boot = crate::support::bootstrap(&env).await;
    let account = boot["account_id"].as_str().unwrap();
    let admin_secret = boot["secret"].as_str().unwrap();
    let server = gatehouse_testkit::Gatehouse::spawn(
        BIN,
        &[
            "serve",
            "--database-url",
            &env.url,
            "--usage-interval-ms",
            "300",
        ],
        &[
            ("GATEHOUSE_MASTER_KEY", crate::support::MASTER_KEY),
            ("GATEHOUSE_POLL_INTERVAL_MS", "100"),
        ],
    )
    .await;
    let addr = server.addr.to_string();
    let acct = ["--account", account];

    // create --json: the secret once on stdout, a warning on stderr.
    let created = admin(
        &addr,
        Some(admin_secret),
        &[
            &[
                "keys",
                "create",
                "--name",
                "ci",
                "--scope",
                "keys:read",
                "--json",
            ][..],
            &acct[..],
        ]
        .concat(),
        &[],
    )
    .await;
    assert!(created.status.success(), "{}", text(&created.stderr));
    // One warning, one whole line.
    let warning = text(&created.stderr);
    assert_eq!(warning.lines().count(), 1, "{warning:?}");
    assert!(
        warning.starts_with("warning: ") && warning.ends_with("store it now\n"),
        "{warning:?}"
    );
    assert!(warning.contains("shown once"));
    let key: serde_json::Value = serde_json::from_slice(&created.stdout).expect("JSON");
    let secret = key["secret"].as_str().unwrap().to_string();
    let key_id = key["key_id"].as_str().unwrap().to_string();
    assert_eq!(key["state"], "active");
    assert_eq!(key["scopes"], serde_json::json!(["keys:read"]));

    // list as a table: aligned columns with a header, never the secret.
    let listed = admin(
        &addr,
        Some(admin_secret),
        &[&["keys", "list"][..], &acct[..]].concat(),
        &[],
    )
    .await;
    assert!(listed.status.success(), "{}", text(&listed.stderr));
    let table = text(&listed.stdout);
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("KEY ID") && lines[0].contains("NAME") && lines[0].contains("HINT"),
        "{table}"
    );
    assert_eq!(
        lines.len(),
        3,
        "header, the new key, the bootstrap key:\n{table}"
    );
    assert!(
        lines[1].starts_with(&key_id)
            && lines[1].contains("ci")
            && lines[1].contains(&secret[secret.len() - 4..])
    );
    let name_column = lines[0].find("NAME").unwrap();
    assert_eq!(
        &lines[1][name_column..name_column + 2],
        "ci",
        "columns are aligned:\n{table}"
    );
    assert!(!table.contains(&secret));
    // list --json.
    let listed = admin(
        &addr,
        Some(admin_secret),
        &[&["keys", "list", "--json"][..], &acct[..]].concat(),
        &[],
    )
    .await;
    let keys: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(keys.as_array().unwrap().len(), 2);
    assert!(!text(&listed.stdout).contains(&secret));

    // The key itself reads through the token file.
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{secret}\n")).unwrap();
    let got = admin(
        &addr,
        None,
        &[
            &[
                "keys",
                "get",
                &key_id,
                "--json",
                "--token-file",
                token_file.to_str().unwrap(),
            ][..],
            &acct[..],
        ]
        .concat(),
        &[],
    )
    .await;
    assert!(got.status.success(), "{}", text(&got.stderr));

    // rotate, revoke, revoke again (exit 6, one line), no credential (exit 2),
    // a wrong credential (exit 3), a key-less scope (exit 4), unknown key (exit 5).
    let rotated = admin(
        &addr,
        Some(admin_secret),
        &[
            &["keys", "rotate", &key_id, "--grace", "0", "--json"][..],
            &acct[..],
        ]
        .concat(),
        &[],
    )
    .await;
    assert!(rotated.status.success(), "{}", text(&rotated.stderr));
    let rotated: serde_json::Value = serde_json::from_slice(&rotated.stdout).unwrap();
    assert_ne!(rotated["secret"], key["secret"]);
    let revoke = [
        &["keys", "revoke", &key_id, "--reason", "done"][..],
        &acct[..],
    ]
    .concat();
    assert!(
        admin(&addr, Some(admin_secret), &revoke, &[])
            .await
            .status
            .success()
    );
    let again = admin(&addr, Some(admin_secret), &revoke, &[]).await;
    assert_eq!(again.status.code(), Some(6));
    assert_eq!(
        text(&again.stderr).trim().lines().count(),
        1,
        "{}",
        text(&again.stderr)
    );
    assert!(text(&again.stderr).starts_with("error: the key is already revoked"));
    assert_eq!(
        admin(
            &addr,
            None,
            &[&["keys", "list"][..], &acct[..]].concat(),
            &[]
        )
        .await
        .status
        .code(),
        Some(2)
    );
    let forged = gatehouse_domain::secret::KeyFormat::new("wc", "live")
        .unwrap()
        .api_key_secret(&[5; 24]);
    assert_eq!(
        admin(
            &addr,
            Some(&forged),
            &[&["keys", "list"][..], &acct[..]].concat(),
            &[]
        )
        .await
        .status
        .code(),
        Some(3)
    );
    let reader = admin(
        &addr,
        Some(admin_secret),
        &[
            &[
                "keys",
                "create",
                "--name",
                "reader",
                "--scope",
                "keys:read",
                "--json",
            ][..],
            &acct[..],
        ]
        .concat(),
        &[],
    )
    .await;
    let reader: serde_json::Value = serde_json::from_slice(&reader.stdout).unwrap();
    let reader_secret = reader["secret"].as_str().unwrap();
    assert_eq!(
        admin(
            &addr,
            Some(reader_secret),
            &[&["keys", "revoke", &key_id][..], &acct[..]].concat(),
            &[]
        )
        .await
        .status
        .code(),
        Some(4)
    );
    assert_eq!(
        admin(
            &addr,
            Some(admin_secret),
            &[
                &["keys", "get", "0193a1b2-7c3d-7e4f-8a9b-0c1d2e3f4a5b"][..],
                &acct[..]
            ]
            .concat(),
            &[]
        )
        .await
        .status
        .code(),
        Some(5)
    );
    let unreachable = admin(
        "127.0.0.1:9",
        Some(admin_secret),
        &[&["keys", "list"][..], &acct[..]].concat(),
        &[],
    )
    .await;
    assert_eq!(unreachable.status.code(), Some(7));

    // activity: the key's life in order, as a table and as JSON. The grace
    // expiry of a grace-0 rotation is the scheduler's (within a second).
    let mut kinds: Vec<String> = Vec::new();
    for _ in 0..40 {
        let activity = admin(
            &addr,
            Some(admin_secret),
            &[&["activity", "--key", &key_id, "--json"][..], &acct[..]].concat(),
            &[],
        )
        .await;
        assert!(activity.status.success(), "{}", text(&activity.stderr));
        let entries: serde_json::Value = serde_json::from_slice(&activity.stdout).unwrap();
        kinds = entries
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["kind"].as_str().unwrap().to_string())
            .filter(|k| k != "usage")
            .collect();
        if kinds.len() == 4 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(&kinds[..2], ["created", "rotated"], "{kinds:?}");
    let mut sorted = kinds.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        ["created", "grace_expired", "revoked", "rotated"],
        "{kinds:?}"
    );
    let table = admin(
        &addr,
        Some(admin_secret),
        &[&["activity", "--key", &key_id][..], &acct[..]].concat(),
        &[],
    )
    .await;
    let table = text(&table.stdout);
    assert!(table.lines().next().unwrap().starts_with("TIME"), "{table}");
    assert!(
        table.contains("revoked") && table.contains("done"),
        "{table}"
    );

    // accounts and users, passwords from the environment, never flags.
    let account_b = admin(
        &addr,
        Some(admin_secret),
        &[
            "accounts",
            "create",
            "--name",
            "Beta",
            "--owner",
            "owner@beta.example",
            "--json",
        ],
        &[("GATEHOUSE_OWNER_PASSWORD", "beta owner password")],
    )
    .await;
    assert!(account_b.status.success(), "{}", text(&account_b.stderr));
    let account_b: serde_json::Value = serde_json::from_slice(&account_b.stdout).unwrap();
    assert_eq!(account_b["owner"]["username"], "owner@beta.example");
    let user = admin(
        &addr,
        Some(admin_secret),
        &[
            &[
                "users",
                "create",
                "--username",
                "dev@example.com",
                "--scope",
                "keys:read",
            ][..],
            &acct[..],
        ]
        .concat(),
        &[("GATEHOUSE_USER_PASSWORD", "a long dev password")],
    )
    .await;
    assert!(user.status.success(), "{}", text(&user.stderr));
    assert!(text(&user.stdout).contains("dev@example.com"));
}
