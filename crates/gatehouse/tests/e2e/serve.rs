use std::collections::BTreeSet;
use std::time::Duration;

use gatehouse_api::v1::{
    GetJwksRequest, ListKeyActivityRequest, LoginRequest, VerifyRequest,
    audit_service_client::AuditServiceClient, auth_service_client::AuthServiceClient,
    verifier_service_client::VerifierServiceClient,
};
use gatehouse_testkit::Gatehouse;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

use crate::BIN;

async fn health(server: &Gatehouse, service: &str) -> ServingStatus {
    let mut client = HealthClient::new(server.channel().await);
    let response = client
        .check(HealthCheckRequest {
            service: service.to_string(),
        })
        .await
        .unwrap_or_else(|s| panic!("health check of {service:?} failed: {s:?}"));
    response.into_inner().status()
}

async fn reflected_services(server: &Gatehouse) -> BTreeSet<String> {
    let mut client = ServerReflectionClient::new(server.channel().await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("reflection call")
        .into_inner();
    let response = responses
        .message()
        .await
        .expect("reflection response")
        .expect("one response");
    match response.message_response {
        Some(MessageResponse::ListServicesResponse(list)) => {
            list.service.into_iter().map(|s| s.name).collect()
        }
        other => panic!("unexpected reflection response: {other:?}"),
    }
}

#[tokio::test]
async fn serve_with_no_configuration_is_healthy_and_lists_every_service() {
    // No flags but the port, no environment: the embedded default, with its
    // data directory under the working directory.
    let cwd = tempfile::tempdir().unwrap();
    let server = Gatehouse::spawn_in(BIN, &["serve"], &[], cwd.path()).await;
    eprintln!(
        "gatehouse serve reported listening {:?} after spawn",
        server.startup
    );

    assert_eq!(health(&server, "").await, ServingStatus::Serving);
    for service in gatehouse_api::SERVICE_NAMES {
        assert_eq!(
            health(&server, service).await,
            ServingStatus::Serving,
            "{service}"
        );
    }
    let services = reflected_services(&server).await;
    for service in gatehouse_api::SERVICE_NAMES {
        assert!(
            services.contains(service),
            "{service} missing from reflection: {services:?}"
        );
    }
    assert!(services.contains("grpc.health.v1.Health"), "{services:?}");
    assert!(
        cwd.path().join("gatehouse-data/gatehouse.db").is_file(),
        "embedded database not created"
    );

    // The embedded default keeps its master key beside the database; the
    // directory and every file in it are private to their owner.
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = |name: &str| {
            std::fs::metadata(cwd.path().join(name))
                .unwrap_or_else(|e| panic!("{name}: {e}"))
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode("gatehouse-data"), 0o700);
        for file in [
            "gatehouse-data/master.key",
            "gatehouse-data/gatehouse.db",
            "gatehouse-data/gatehouse.db-wal",
            "gatehouse-data/gatehouse.db-shm",
        ] {
            assert_eq!(mode(file), 0o600, "{file}");
        }
    }
    // Login answers (here: an unknown user), JWKS publishes the first key.
    let mut auth = AuthServiceClient::new(server.channel().await);
    let status = auth
        .login(LoginRequest {
            username: "a@example.com".into(),
            password: "x".into(),
        })
        .await
        .expect_err("nobody is bootstrapped");
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    let jwks = auth.get_jwks(GetJwksRequest {}).await.unwrap().into_inner();
    assert_eq!(jwks.keys.len(), 1);
    // Admin RPCs want a bearer credential.
    let mut audit = AuditServiceClient::new(server.channel().await);
    let status = audit
        .list_key_activity(ListKeyActivityRequest::default())
        .await
        .expect_err("no bearer");
    assert_eq!(status.code(), tonic::Code::Unauthenticated);

    let logs_before_stop = server.logs();
    assert!(
        logs_before_stop.contains("backend=\"sqlite\""),
        "{logs_before_stop}"
    );
    let status = server.terminate().await;
    assert!(
        status.success(),
        "SIGTERM should stop gatehouse cleanly, got {status}"
    );
}

#[tokio::test]
async fn serve_on_postgres_migrates_and_serves_by_role() {
    let url = gatehouse_testkit::fresh_database().await;
    let verifier = Gatehouse::spawn(
        BIN,
        &["serve", "verifier", "--database-url", &url],
        &[("GATEHOUSE_ISSUER_URL", "http://gatehouse.test")],
    )
    .await;
    assert_eq!(
        health(&verifier, "gatehouse.v1.VerifierService").await,
        ServingStatus::Serving
    );
    // A verifier does not serve the issuer's services.
    let mut health_client = HealthClient::new(verifier.channel().await);
    let missing = health_client
        .check(HealthCheckRequest {
            service: "gatehouse.v1.AuthService".into(),
        })
        .await
        .expect_err("verifier must not report the issuer's services");
    assert_eq!(missing.code(), tonic::Code::NotFound);
    let mut client = VerifierServiceClient::new(verifier.channel().await);
    let status = client
        .verify(VerifyRequest {
            credential: "wc_live_x".into(),
            ..Default::default()
        })
        .await
        .expect_err("a mistyped key is refused");
    assert_eq!(status.code(), tonic::Code::Unauthenticated);

    // The schema is in place.
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    for table in ["events", "projection_checkpoints", "stream_index"] {
        assert!(
            tables.iter().any(|t| t == table),
            "{table} missing: {tables:?}"
        );
    }
    assert!(verifier.logs().contains("backend=\"postgres\""));
    assert!(verifier.terminate().await.success());
}

#[tokio::test]
async fn a_second_server_on_a_taken_port_fails_with_a_clear_error() {
    let cwd = tempfile::tempdir().unwrap();
    let first = Gatehouse::spawn_in(BIN, &["serve"], &[], cwd.path()).await;
    let taken = first.addr.to_string();
    let output = tokio::time::timeout(
        Duration::from_secs(20),
        tokio::process::Command::new(BIN)
            .args(["serve", "--listen", &taken, "--data-dir"])
            .arg(cwd.path().join("other"))
            .env_remove("DATABASE_URL")
            .output(),
    )
    .await
    .expect("gatehouse should exit promptly")
    .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("cannot listen on {taken}")),
        "{stderr}"
    );
}

#[tokio::test]
async fn one_role_without_an_issuer_url_refuses_to_start_and_says_why() {
    for (role, env) in [
        ("verifier", None),
        ("issuer", None),
        ("verifier", Some(("GATEHOUSE_ISSUER", "gatehouse"))),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut command = tokio::process::Command::new(BIN);
        command
            .args(["serve", role, "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .env_remove("DATABASE_URL")
            .env_remove("GATEHOUSE_ISSUER_URL")
            .env_remove("GATEHOUSE_ISSUER");
        if let Some((key, value)) = env {
            command
                .env(key, value)
                .env("GATEHOUSE_ISSUER_URL", "http://x.test");
        }
        let output = tokio::time::timeout(std::time::Duration::from_secs(30), command.output())
            .await
            .expect("it exits at once")
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{role}: {stderr}");
        assert!(
            stderr.contains("GATEHOUSE_ISSUER_URL"),
            "{role} says what to set: {stderr}"
        );
    }
}

/// Reflection is a setting: off, the reflection services are not served
/// (grpcurl then needs the proto files) while everything else is.
#[tokio::test]
async fn reflection_can_be_turned_off() {
    let cwd = tempfile::tempdir().unwrap();
    let server = Gatehouse::spawn_in(
        BIN,
        &["serve", "--grpc-reflection", "false"],
        &[],
        cwd.path(),
    )
    .await;
    assert_eq!(health(&server, "").await, ServingStatus::Serving);
    let mut client = ServerReflectionClient::new(server.channel().await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let status = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect_err("no reflection");
    assert_eq!(status.code(), tonic::Code::Unimplemented, "{status:?}");
}

/// A database file others could read (made by an older version, or copied
/// in) is tightened to 0600 when opened.
#[tokio::test]
async fn an_existing_world_readable_database_is_tightened() {
    use std::os::unix::fs::PermissionsExt as _;
    let cwd = tempfile::tempdir().unwrap();
    let data = cwd.path().join("gatehouse-data");
    std::fs::create_dir(&data).unwrap();
    let db = data.join("gatehouse.db");
    std::fs::write(&db, b"").unwrap();
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    let server = Gatehouse::spawn_in(BIN, &["serve"], &[], cwd.path()).await;
    assert_eq!(health(&server, "").await, ServingStatus::Serving);
    let mode = std::fs::metadata(&db).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert!(server.logs().contains("tightening it to 0600"));
}

/// Postgres over TLS: `sslmode=require` in the URL makes every connection
/// encrypted (or fails, saying so, on a server without TLS) — the binary is
/// built with sqlx's rustls support.
#[tokio::test]
async fn postgres_connections_honour_sslmode_require() {
    use sqlx::Connection as _;
    let url = gatehouse_testkit::fresh_database().await;
    let mut plain = sqlx::PgConnection::connect(&url).await.unwrap();
    let server_ssl: String = sqlx::query_scalar("SHOW ssl")
        .fetch_one(&mut plain)
        .await
        .unwrap();
    let separator = if url.contains('?') { '&' } else { '?' };
    let require = format!("{url}{separator}sslmode=require");
    let output = tokio::process::Command::new(BIN)
        .args(["migrate", "--database-url", &require])
        .env_remove("DATABASE_URL")
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).to_lowercase();
    if server_ssl == "on" {
        assert!(output.status.success(), "{stderr}");
        // The server's own connections (not this test's) are encrypted.
        let server = Gatehouse::spawn(
            BIN,
            &["serve", "--database-url", &require],
            &[("GATEHOUSE_MASTER_KEY", crate::support::MASTER_KEY)],
        )
        .await;
        let database: String = sqlx::query_scalar("SELECT current_database()")
            .fetch_one(&mut plain)
            .await
            .unwrap();
        let (total, encrypted): (i64, i64) = sqlx::query_as(
            "SELECT count(*), count(*) FILTER (WHERE s.ssl) FROM pg_stat_activity a \
             JOIN pg_stat_ssl s USING (pid) WHERE a.datname = $1 AND a.pid <> pg_backend_pid()",
        )
        .bind(&database)
        .fetch_one(&mut plain)
        .await
        .unwrap();
        assert!(total > 0, "the server holds connections");
        assert_eq!(
            encrypted, total,
            "every connection of the server is encrypted"
        );
        drop(server);
    } else {
        // A server without TLS: refused, never silently in the clear.
        assert!(!output.status.success());
        assert!(stderr.contains("tls") || stderr.contains("ssl"), "{stderr}");
        assert!(!stderr.contains("without tls support"), "{stderr}");
    }
}

/// The port's limits answer in each caller's own protocol: a request beyond
/// `--max-concurrent-requests` is shed at once (gRPC `UNAVAILABLE`,
/// HTTP 503 `OVERLOADED` with `Retry-After`), one past
/// `--request-timeout-ms` gets `DEADLINE_EXCEEDED` / 504, and neither
/// stops the server from answering the next.
#[tokio::test]
async fn overload_and_slow_requests_are_refused_in_the_callers_protocol() {
    let cwd = tempfile::tempdir().unwrap();
    // One argon2 at a time makes logins slow enough to pile up.
    let server = Gatehouse::spawn_in(
        BIN,
        &[
            "serve",
            "--max-concurrent-requests",
            "2",
            "--max-parallel-hashes",
            "1",
        ],
        &[],
        cwd.path(),
    )
    .await;
    let auth = AuthServiceClient::new(server.channel().await);
    let logins: Vec<_> = (0..12)
        .map(|n| {
            let mut auth = auth.clone();
            tokio::spawn(async move {
                // A username each, so the login throttle stays out of it.
                auth.login(LoginRequest {
                    username: format!("user{n}@example.com"),
                    password: "not a real password".into(),
                })
                .await
                .expect_err("nobody is bootstrapped")
            })
        })
        .collect();
    // Verify, answered from memory, is never shed by slow calls.
    let mut verifier = gatehouse_api::v1::verifier_service_client::VerifierServiceClient::new(
        server.channel().await,
    );
    for _ in 0..20 {
        let status = verifier
            .verify(VerifyRequest {
                credential: "garbage".into(),
                ..Default::default()
            })
            .await
            .expect_err("garbage");
        assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    }
    let mut shed = 0;
    for login in logins {
        let status = login.await.unwrap();
        match status.code() {
            tonic::Code::Unauthenticated => {}
            tonic::Code::Unavailable => {
                shed += 1;
                assert!(
                    status.message().contains("concurrent requests"),
                    "{status:?}"
                );
            }
            other => panic!("unexpected {other:?}: {status:?}"),
        }
    }
    assert!(
        shed > 0,
        "12 slow logins at once against a limit of 2 shed none"
    );
    // Over HTTP the same refusal is the JSON error body.
    let http = reqwest::Client::new();
    let base = format!("http://{}", server.addr);
    let slow: Vec<_> = (0..12)
        .map(|n| {
            let (http, url) = (http.clone(), format!("{base}/api/auth/login"));
            tokio::spawn(async move {
                http.post(url)
                    .json(&serde_json::json!({"username": format!("web{n}@example.com"), "password": "not a real password"}))
                    .send()
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut http_shed = 0;
    for response in slow {
        let response = response.await.unwrap();
        if response.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE {
            http_shed += 1;
            assert!(response.headers().contains_key("retry-after"));
            let body: serde_json::Value = response.json().await.unwrap();
            assert_eq!(body["reason"], "OVERLOADED", "{body}");
        } else {
            assert_eq!(response.status(), reqwest::StatusCode::UNAUTHORIZED);
        }
    }
    assert!(http_shed > 0);
    // The server still answers.
    assert_eq!(health(&server, "").await, ServingStatus::Serving);

    // A deadline shorter than a queue of argon2 hashes.
    let cwd = tempfile::tempdir().unwrap();
    let server = Gatehouse::spawn_in(
        BIN,
        &[
            "serve",
            "--request-timeout-ms",
            "100",
            "--max-parallel-hashes",
            "1",
        ],
        &[],
        cwd.path(),
    )
    .await;
    let auth = AuthServiceClient::new(server.channel().await);
    let logins: Vec<_> = (0..16)
        .map(|n| {
            let mut auth = auth.clone();
            tokio::spawn(async move {
                // A username each, so the login throttle stays out of it.
                auth.login(LoginRequest {
                    username: format!("user{n}@example.com"),
                    password: "not a real password".into(),
                })
                .await
                .expect_err("nobody is bootstrapped")
                .code()
            })
        })
        .collect();
    let mut late = 0;
    for login in logins {
        match login.await.unwrap() {
            tonic::Code::DeadlineExceeded => late += 1,
            tonic::Code::Unauthenticated => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(late > 0, "16 queued logins all beat a 100 ms deadline");
    let response = http
        .get(format!("http://{}/healthz", server.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::OK);
}
