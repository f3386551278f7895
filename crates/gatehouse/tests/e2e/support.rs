//! What every end-to-end test shares: the deployment's settings, a fresh
//! database on either backend, bootstrap, and the one way to start a server —
//! in this process ([`server`], on a clock the test moves) or, where the
//! binary itself is the point, as a process ([`process`]).

use std::sync::Arc;

use gatehouse_api::v1 as pb;
use gatehouse_api::v1::auth_service_client::AuthServiceClient;
use gatehouse_domain::clock::ShiftedClock;
use gatehouse_testkit::{App, Gatehouse, spawn_app_on};
use tonic::Status;
use tonic::transport::Channel;
use tonic_types::StatusExt as _;

/// Path of the binary under test, built by cargo for these tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_gatehouse");

pub const MASTER_KEY: &str = "q9gI8yYHkC1bJ8m0m3xqk2Yw8p3X7Zl9cH0vV4r2sT8=";
pub const OWNER: &str = "owner@example.com";
pub const PASSWORD: &str = "correct horse battery staple";
/// The example catalogue the README's first steps import.
pub const WORKCLAW: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../examples/workclaw-scopes.toml"
);

/// One deployment: its database, and the clock its in-process servers
/// share (moved by the test, as time would pass for real servers).
pub struct Env {
    pub url: String,
    pub _dir: Option<tempfile::TempDir>,
    pub clock: Arc<ShiftedClock>,
}

impl Env {
    /// Moves the deployment's clock on by `by`.
    pub fn advance(&self, by: std::time::Duration) {
        self.clock
            .advance(chrono::Duration::from_std(by).unwrap_or(chrono::Duration::MAX));
    }
}

pub async fn postgres() -> Env {
    Env {
        url: gatehouse_testkit::fresh_database().await,
        _dir: None,
        clock: ShiftedClock::new(),
    }
}

pub fn sqlite() -> Env {
    let dir = tempfile::tempdir().unwrap();
    Env {
        url: format!("sqlite:{}", dir.path().join("g.db").display()),
        _dir: Some(dir),
        clock: ShiftedClock::new(),
    }
}

pub fn reason(status: &Status) -> String {
    status
        .get_details_error_info()
        .map(|i| i.reason)
        .unwrap_or_default()
}

pub async fn bootstrap(env: &Env) -> serde_json::Value {
    bootstrap_args(env, &[]).await
}

/// `gatehouse bootstrap --scopes FILE`, as the README's first steps run it.
pub async fn bootstrap_with(env: &Env, scopes: &str) -> serde_json::Value {
    bootstrap_args(env, &["--scopes", scopes]).await
}

async fn bootstrap_args(env: &Env, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["bootstrap", "--username", OWNER];
    args.extend_from_slice(extra);
    let output = run_cli(env, &args, &[("GATEHOUSE_BOOTSTRAP_PASSWORD", PASSWORD)]).await;
    assert!(String::from_utf8_lossy(&output.stderr).contains("shown once"));
    serde_json::from_slice(&output.stdout).expect("bootstrap prints JSON")
}

/// Runs `gatehouse ARGS… --database-url URL` on the deployment (its master
/// key, then `envs`), and asserts it succeeded.
pub async fn run_cli(env: &Env, args: &[&str], envs: &[(&str, &str)]) -> std::process::Output {
    let output = tokio::process::Command::new(BIN)
        .args(args)
        .args(["--database-url", &env.url])
        .env("GATEHOUSE_MASTER_KEY", MASTER_KEY)
        .envs(envs.iter().copied())
        .env_remove("DATABASE_URL")
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The settings every server of a test's deployment shares: one master key
/// and a quick poll of the log.
pub const DEPLOYMENT: &[(&str, &str)] = &[
    ("GATEHOUSE_MASTER_KEY", MASTER_KEY),
    ("GATEHOUSE_POLL_INTERVAL_MS", "100"),
];

/// Servers on different ports that are one deployment: one `iss`.
pub const ONE_ISS: (&str, &str) = ("GATEHOUSE_ISSUER_URL", "http://gatehouse.test");

/// `serve ROLE --database-url URL EXTRA…`.
fn command<'a>(env: &'a Env, role: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["serve", role, "--database-url", &env.url];
    args.extend_from_slice(extra);
    args
}

/// [`DEPLOYMENT`], then `envs` (which win).
fn settings<'a>(envs: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut all: Vec<(&str, &str)> = DEPLOYMENT
        .iter()
        .filter(|(k, _)| !envs.iter().any(|(e, _)| e == k))
        .copied()
        .collect();
    all.extend_from_slice(envs);
    all
}

/// A server of the deployment in this process, on the deployment's clock.
pub async fn server(env: &Env, role: &str, extra: &[&str], envs: &[(&str, &str)]) -> App {
    spawn_app_on(
        &command(env, role, extra),
        &settings(envs),
        env.clock.clone(),
    )
    .await
}

/// The same server as the real binary, for tests about the process itself.
pub async fn process(env: &Env, role: &str, extra: &[&str], envs: &[(&str, &str)]) -> Gatehouse {
    Gatehouse::spawn(BIN, &command(env, role, extra), &settings(envs)).await
}

pub async fn event_log_text(env: &Env) -> String {
    let store = gatehouse_eventstore::EventStore::connect(&env.url, Default::default())
        .await
        .unwrap();
    let events = store.read_all(1, 10_000).await.unwrap();
    events
        .iter()
        .map(|e| format!("{} {} {:?}", e.event_type, e.payload, e.metadata))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `message` with `authorization: Bearer <bearer>` metadata.
pub fn authed<T>(message: T, bearer: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {bearer}").parse().unwrap());
    request
}

/// An account's key administration over gRPC, with its admin key: the calls
/// the tests make to set a key up, each expected to succeed.
pub struct KeyAdmin {
    pub keys: gatehouse_api::v1::key_service_client::KeyServiceClient<Channel>,
    pub account_id: String,
    /// The admin key's secret.
    pub secret: String,
}

impl KeyAdmin {
    /// From `gatehouse bootstrap`'s answer, against the server on `channel`.
    pub fn new(channel: Channel, boot: &serde_json::Value) -> Self {
        Self {
            keys: gatehouse_api::v1::key_service_client::KeyServiceClient::new(channel),
            account_id: boot["account_id"].as_str().unwrap().into(),
            secret: boot["secret"].as_str().unwrap().into(),
        }
    }

    /// Creates a key named `name`; its id and secret.
    pub async fn create(
        &mut self,
        name: &str,
        scopes: &[&str],
        expires_at: Option<chrono::DateTime<chrono::Utc>>,
    ) -> (String, String) {
        let created = self
            .keys
            .create_api_key(authed(
                pb::CreateApiKeyRequest {
                    account_id: self.account_id.clone(),
                    name: name.into(),
                    scopes: scopes.iter().map(|s| s.to_string()).collect(),
                    expires_at: expires_at.map(|at| prost_types::Timestamp {
                        seconds: at.timestamp(),
                        nanos: at.timestamp_subsec_nanos() as i32,
                    }),
                },
                &self.secret,
            ))
            .await
            .unwrap()
            .into_inner();
        (created.key.unwrap().key_id, created.secret)
    }

    /// Rotates `key_id` with a grace of `grace`; the new secret.
    pub async fn rotate(&mut self, key_id: &str, grace: std::time::Duration) -> String {
        self.keys
            .rotate_api_key(authed(
                pb::RotateApiKeyRequest {
                    account_id: self.account_id.clone(),
                    key_id: key_id.into(),
                    grace_period: Some(prost_types::Duration {
                        seconds: grace.as_secs() as i64,
                        nanos: 0,
                    }),
                },
                &self.secret,
            ))
            .await
            .unwrap()
            .into_inner()
            .secret
    }

    pub async fn revoke(&mut self, key_id: &str, reason: &str) {
        self.keys
            .revoke_api_key(authed(
                pb::RevokeApiKeyRequest {
                    account_id: self.account_id.clone(),
                    key_id: key_id.into(),
                    reason: reason.into(),
                },
                &self.secret,
            ))
            .await
            .unwrap();
    }

    pub async fn delete(&mut self, key_id: &str, reason: &str) {
        self.keys
            .delete_api_key(authed(
                pb::DeleteApiKeyRequest {
                    account_id: self.account_id.clone(),
                    key_id: key_id.into(),
                    reason: reason.into(),
                },
                &self.secret,
            ))
            .await
            .unwrap();
    }
}

/// `ExchangeSdkToken` on `auth` for `account_id`'s key: the answer, or the
/// refusal.
pub async fn exchange_sdk_token(
    auth: &mut AuthServiceClient<Channel>,
    account_id: &str,
    key_id: &str,
    secret: &str,
) -> Result<pb::ExchangeSdkTokenResponse, Status> {
    auth.exchange_sdk_token(pb::ExchangeSdkTokenRequest {
        account_id: account_id.into(),
        key_id: key_id.into(),
        key_secret: secret.into(),
    })
    .await
    .map(tonic::Response::into_inner)
}

/// The owner's password login on `auth`.
pub async fn login(
    auth: &mut AuthServiceClient<Channel>,
    password: &str,
) -> Result<pb::LoginResponse, Status> {
    auth.login(pb::LoginRequest {
        username: OWNER.into(),
        password: password.into(),
    })
    .await
    .map(|r| r.into_inner())
}

/// Spends `token` on `auth` for a new pair.
pub async fn refresh(
    auth: &mut AuthServiceClient<Channel>,
    token: &str,
) -> Result<pb::RefreshResponse, Status> {
    auth.refresh(pb::RefreshRequest {
        refresh_token: token.into(),
    })
    .await
    .map(|r| r.into_inner())
}
