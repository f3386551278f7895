//! Settings, from flags or `GATEHOUSE_*` environment variables.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use gatehouse_eventstore::StoreOptions;

/// Where the event log lives.
#[derive(Debug, Clone, clap::Args)]
pub struct DatabaseArgs {
    /// Postgres URL (`postgres://…`) or `sqlite:PATH`. Falls back to
    /// `DATABASE_URL`; without either, SQLite in the data directory.
    #[arg(long, env = "GATEHOUSE_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// Directory for the embedded SQLite database and generated key files.
    #[arg(long, env = "GATEHOUSE_DATA_DIR", default_value = "gatehouse-data")]
    pub data_dir: PathBuf,

    /// Most database connections per pool.
    #[arg(long, env = "GATEHOUSE_DB_MAX_CONNECTIONS", default_value_t = 10)]
    pub db_max_connections: u32,

    /// How often event-log readers poll without a notification (milliseconds).
    #[arg(long, env = "GATEHOUSE_POLL_INTERVAL_MS", default_value_t = 500)]
    pub poll_interval_ms: u64,
}

impl DatabaseArgs {
    /// The URL to connect to: the flag, then `DATABASE_URL`, then the embedded default.
    pub fn url(&self) -> String {
        self.database_url
            .clone()
            .filter(|u| !u.trim().is_empty())
            .or_else(|| {
                std::env::var("DATABASE_URL")
                    .ok()
                    .filter(|u| !u.trim().is_empty())
            })
            .unwrap_or_else(|| format!("sqlite:{}", self.data_dir.join("gatehouse.db").display()))
    }

    /// Pool and polling settings for the store.
    pub fn store_options(&self) -> StoreOptions {
        StoreOptions {
            max_connections: self.db_max_connections.max(1),
            poll_interval: Duration::from_millis(self.poll_interval_ms.clamp(10, 60_000)),
        }
    }
}

/// Which half of Gatehouse a process serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    /// Issuer and verifier in one process (the default).
    All,
    /// Login, refresh, SDK tokens, keys, accounts, audit.
    Issuer,
    /// Verify only; scale these out.
    Verifier,
}

impl Role {
    /// Whether this role serves the issuing services.
    pub fn issues(self) -> bool {
        matches!(self, Self::All | Self::Issuer)
    }

    /// Whether this role serves `Verify`.
    pub fn verifies(self) -> bool {
        matches!(self, Self::All | Self::Verifier)
    }
}

/// `gatehouse serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address for gRPC and HTTP+JSON, on one port. Port 0 picks a free one.
    #[arg(long, env = "GATEHOUSE_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,

    #[command(flatten)]
    pub database: DatabaseArgs,

    #[command(flatten)]
    pub issuer: IssuerArgs,

    /// How often the issuer's scheduler records due grace and key expiries (ms).
    #[arg(long, env = "GATEHOUSE_SCHEDULER_INTERVAL_MS", default_value_t = 1000)]
    pub scheduler_interval_ms: u64,

    /// ext_authz route table: `METHOD /prefix scope,scope` entries separated by
    /// `;` (longest prefix wins; `*` = any method). `context_extensions`
    /// `required_scopes` overrides it per route in Envoy.
    #[arg(long, env = "GATEHOUSE_EXT_AUTHZ_ROUTES", default_value = "")]
    pub ext_authz_routes: String,

    /// Deny ext_authz requests that match no route (403 `ROUTE_UNMATCHED`)
    /// instead of asking only for a valid credential, so an endpoint added
    /// upstream stays closed until a route names it.
    #[arg(
        long,
        env = "GATEHOUSE_EXT_AUTHZ_DENY_UNMATCHED",
        default_value_t = false,
        action = clap::ArgAction::Set,
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    pub ext_authz_deny_unmatched: bool,

    /// A verifier that has not read the log for this long reports NOT_SERVING
    /// (it keeps answering from memory) (seconds).
    #[arg(long, env = "GATEHOUSE_MAX_STALENESS_SECS", default_value_t = 60)]
    pub max_staleness_secs: u64,

    /// A verifier stores its index as a snapshot once it has folded this
    /// many events since the last one (and at start-up), so later start-ups
    /// read the snapshot and only the events after it. 0: never write one.
    #[arg(
        long,
        env = "GATEHOUSE_SNAPSHOT_EVERY_EVENTS",
        default_value_t = 100_000
    )]
    pub snapshot_every_events: u64,

    /// Start the verifier from the log alone, ignoring a stored snapshot.
    #[arg(
        long,
        env = "GATEHOUSE_IGNORE_SNAPSHOT",
        default_value_t = false,
        action = clap::ArgAction::Set,
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    pub ignore_snapshot: bool,

    /// How often a verifier writes its per-key usage summaries (milliseconds).
    #[arg(long, env = "GATEHOUSE_USAGE_INTERVAL_MS", default_value_t = 60_000)]
    pub usage_interval_ms: u64,

    /// Requests answered at once on the port, gRPC and HTTP together; one
    /// beyond it is refused at once (RESOURCE_EXHAUSTED / 503 `OVERLOADED`)
    /// rather than queued. 0: no limit.
    #[arg(
        long,
        env = "GATEHOUSE_MAX_CONCURRENT_REQUESTS",
        default_value_t = 1024
    )]
    pub max_concurrent_requests: usize,

    /// Longest a request may take to produce its answer (milliseconds);
    /// then DEADLINE_EXCEEDED / 504. A live tail, once started, streams on.
    #[arg(long, env = "GATEHOUSE_REQUEST_TIMEOUT_MS", default_value_t = 30_000)]
    pub request_timeout_ms: u64,

    /// HTTP/2 streams (calls) open at once on one connection.
    #[arg(
        long,
        env = "GATEHOUSE_MAX_STREAMS_PER_CONNECTION",
        default_value_t = 256
    )]
    pub max_streams_per_connection: u32,

    /// Largest HTTP/2 header list (metadata) a request may carry, in bytes.
    #[arg(long, env = "GATEHOUSE_MAX_HEADER_BYTES", default_value_t = 16 * 1024)]
    pub max_header_bytes: u32,

    /// HTTP/2 keep-alive: a ping after this long idle (seconds); a
    /// connection that does not answer within 20 s is closed, and so are
    /// dead peers' half-open TCP connections. 0: off.
    #[arg(long, env = "GATEHOUSE_HTTP2_KEEPALIVE_SECS", default_value_t = 60)]
    pub http2_keepalive_secs: u64,

    /// Connections open at once on the port; beyond it a new connection
    /// takes the slot of one that has not sent a byte yet, or else is closed
    /// at once. Default: the descriptor limit
    /// (raised to its hard limit at start-up) less a quarter of it, at most
    /// 1,024, kept for the database and files.
    #[arg(long, env = "GATEHOUSE_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,

    /// Longest a new connection may stay silent before its first byte
    /// (seconds); then it is closed.
    #[arg(
        long,
        env = "GATEHOUSE_CONNECTION_FIRST_BYTE_SECS",
        default_value_t = 10
    )]
    pub connection_first_byte_secs: u64,

    /// Longest a connection may go without a byte in either direction
    /// (seconds); then it is closed. HTTP/2 keep-alive pings count, so a
    /// live HTTP/2 client stays connected.
    #[arg(long, env = "GATEHOUSE_CONNECTION_IDLE_SECS", default_value_t = 300)]
    pub connection_idle_secs: u64,

    /// Largest HTTP request body accepted, in bytes; larger ones get 413.
    #[arg(long, env = "GATEHOUSE_HTTP_BODY_LIMIT_BYTES", default_value_t = 1 << 20)]
    pub http_body_limit_bytes: u64,

    /// A browser origin allowed to call the HTTP API (CORS), e.g.
    /// `https://console.example.com`; repeat, or comma-separate in the
    /// variable. None by default.
    #[arg(
        long = "cors-origin",
        env = "GATEHOUSE_CORS_ORIGINS",
        value_delimiter = ','
    )]
    pub cors_origins: Vec<String>,

    /// A proxy or load balancer (address or CIDR range) whose `Forwarded` /
    /// `X-Forwarded-For` headers name the real client, for the login
    /// throttle and the audit trail; repeat, or comma-separate in the
    /// variable. None by default: the peer is the client, whatever it sends.
    #[arg(
        long = "trusted-proxy",
        env = "GATEHOUSE_TRUSTED_PROXIES",
        value_delimiter = ','
    )]
    pub trusted_proxies: Vec<String>,

    /// The one header the trusted proxies write the client into:
    /// `x-forwarded-for` (nginx, HAProxy, AWS ALB, Envoy) or `forwarded`
    /// (RFC 7239). The other is ignored: a proxy passes it through as the
    /// client sent it.
    #[arg(
        long,
        env = "GATEHOUSE_FORWARDED_HEADER",
        value_enum,
        default_value = "x-forwarded-for"
    )]
    pub forwarded_header: ForwardedHeaderArg,

    /// Serve Prometheus metrics at `http://ADDR/metrics` (off when unset).
    #[arg(long, env = "GATEHOUSE_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,

    /// PEM certificate chain for TLS on the listener (with --tls-key-file);
    /// without both, the listener speaks plaintext (h2c and HTTP/1.1), for
    /// a TLS-terminating proxy or a private network.
    #[arg(long, env = "GATEHOUSE_TLS_CERT_FILE", requires = "tls_key_file")]
    pub tls_cert_file: Option<PathBuf>,

    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of --tls-cert-file.
    #[arg(long, env = "GATEHOUSE_TLS_KEY_FILE", requires = "tls_cert_file")]
    pub tls_key_file: Option<PathBuf>,

    /// Serve gRPC server reflection (v1 and v1alpha), so grpcurl and
    /// grpcui can list and call the services without the proto files. The
    /// protos are public; turn it off to expose nothing beyond the calls.
    #[arg(
        long,
        env = "GATEHOUSE_GRPC_REFLECTION",
        default_value_t = true,
        action = clap::ArgAction::Set,
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    pub grpc_reflection: bool,

    /// Serve the web console at `/console` (issuer roles only): an account's
    /// API keys in a browser, over the HTTP API. Turn it off where no person
    /// manages keys through this deployment.
    #[arg(
        long,
        env = "GATEHOUSE_CONSOLE",
        default_value_t = true,
        action = clap::ArgAction::Set,
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    pub console: bool,

    /// Longest a graceful shutdown waits for in-flight calls (seconds).
    #[arg(long, env = "GATEHOUSE_SHUTDOWN_GRACE_SECS", default_value_t = 10)]
    pub shutdown_grace_secs: u64,
}

/// `--forwarded-header` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ForwardedHeaderArg {
    #[value(name = "x-forwarded-for")]
    XForwardedFor,
    #[value(name = "forwarded")]
    Forwarded,
}

/// `--signing-alg` values, as JWS names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SigningAlgArg {
    #[value(name = "EdDSA")]
    EdDsa,
    #[value(name = "ES256")]
    Es256,
    #[value(name = "RS256")]
    Rs256,
}

impl From<SigningAlgArg> for gatehouse_domain::signing::SigningAlg {
    fn from(arg: SigningAlgArg) -> Self {
        match arg {
            SigningAlgArg::EdDsa => Self::EdDSA,
            SigningAlgArg::Es256 => Self::ES256,
            SigningAlgArg::Rs256 => Self::RS256,
        }
    }
}

/// The issuer URL of commands that serve nothing (bootstrap, key rotation).
pub const DEFAULT_ISSUER_URL: &str = "http://127.0.0.1:50051";

/// How the issuer mints tokens and keys.
#[derive(Debug, Clone, clap::Args)]
pub struct IssuerArgs {
    /// How long a verifier remembers a revoked login session (seconds).
    /// User tokens that live longer than this are refused, by verifiers and
    /// issuers alike (`TOKEN_LIFETIME_TOO_LONG`), so none outlives the
    /// memory of its session's revocation; keep it above the access-token
    /// lifetime.
    #[arg(
        long,
        env = "GATEHOUSE_REVOKED_SESSION_RETENTION_SECS",
        default_value_t = 24 * 3600
    )]
    pub revoked_session_retention_secs: u64,

    /// `iss` of every token and discovery's `issuer`: the deployment's URL
    /// (https in production). Default: `http://` + the bound listen address.
    /// Every issuer and verifier of one deployment needs the same value.
    #[arg(long = "issuer-url", env = "GATEHOUSE_ISSUER_URL")]
    pub issuer: Option<String>,

    /// Algorithm of new signing keys: EdDSA (Ed25519), ES256 (P-256) or
    /// RS256 (RSA-2048) for consumers that accept nothing else. A change takes
    /// effect at the next signing-key rotation; older keys stay published
    /// (with their own `alg`) until their tokens expire.
    #[arg(
        long,
        env = "GATEHOUSE_SIGNING_ALG",
        value_enum,
        ignore_case = true,
        default_value = "EdDSA"
    )]
    pub signing_alg: SigningAlgArg,

    /// `aud` of every token (and the audience `Verify` checks by default).
    #[arg(long, env = "GATEHOUSE_AUDIENCE", default_value = "gatehouse")]
    pub audience: String,

    /// Access token lifetime of user logins (seconds).
    #[arg(long, env = "GATEHOUSE_ACCESS_TOKEN_TTL_SECS", default_value_t = 900)]
    pub access_token_ttl_secs: u64,

    /// Clock skew tolerated when checking a token's `exp` and `nbf`
    /// (seconds, at most 300).
    #[arg(long, env = "GATEHOUSE_CLOCK_LEEWAY_SECS", default_value_t = 30)]
    pub clock_leeway_secs: u64,

    /// SDK token lifetime (seconds): the `expires_in` of the SDK-token
    /// exchange (3600, what Scope's SDK clients expect).
    #[arg(long, env = "GATEHOUSE_SDK_TOKEN_TTL_SECS", default_value_t = 3600)]
    pub sdk_token_ttl_secs: u64,

    /// Refresh token lifetime (seconds), renewed by every rotation: a
    /// session unused this long is over (its idle timeout).
    #[arg(
        long,
        alias = "session-idle-timeout-secs",
        env = "GATEHOUSE_REFRESH_TOKEN_TTL_SECS",
        default_value_t = 30 * 24 * 3600
    )]
    pub refresh_token_ttl_secs: u64,

    /// A login session's absolute lifetime (seconds): however often it
    /// refreshes, the user logs in again this long after the last login.
    #[arg(
        long,
        env = "GATEHOUSE_SESSION_MAX_LIFETIME_SECS",
        default_value_t = 30 * 24 * 3600
    )]
    pub session_max_lifetime_secs: u64,

    /// `wc` in `wc_live_…` and `wc_rt_…`.
    #[arg(long, env = "GATEHOUSE_KEY_PREFIX", default_value = "wc")]
    pub key_prefix: String,

    /// `live` in `wc_live_…`.
    #[arg(long, env = "GATEHOUSE_KEY_ENVIRONMENT", default_value = "live")]
    pub key_environment: String,

    /// Master key sealing signing keys: 32 bytes, base64. Required on Postgres
    /// (every issuer needs the same one); the embedded default creates a file.
    #[arg(long, env = "GATEHOUSE_MASTER_KEY", hide_env_values = true)]
    pub master_key: Option<String>,

    /// File holding the master key (created, mode 0600, if missing).
    #[arg(long, env = "GATEHOUSE_MASTER_KEY_FILE")]
    pub master_key_file: Option<PathBuf>,

    /// Failed logins of one username from one client address before delays
    /// start (the tight counter: it delays the guesser, not the owner).
    #[arg(long, env = "GATEHOUSE_LOGIN_FREE_ATTEMPTS", default_value_t = 5)]
    pub login_free_attempts: u32,

    /// Failed logins of one username from any address before delays start
    /// (a looser ceiling against guessing spread over many addresses).
    #[arg(
        long,
        env = "GATEHOUSE_LOGIN_FREE_ATTEMPTS_PER_USERNAME",
        default_value_t = 50
    )]
    pub login_free_attempts_per_username: u32,

    /// Failed logins from one client address at any username before delays
    /// start (a looser ceiling; a NAT's or proxy's users share an address).
    #[arg(
        long,
        env = "GATEHOUSE_LOGIN_FREE_ATTEMPTS_PER_ADDRESS",
        default_value_t = 100
    )]
    pub login_free_attempts_per_address: u32,

    /// First throttle delay (milliseconds); doubles per further failure, up to 15 min.
    #[arg(long, env = "GATEHOUSE_LOGIN_BASE_DELAY_MS", default_value_t = 1000)]
    pub login_base_delay_ms: u64,

    /// How long a rotated-in signing key is published before it signs (seconds).
    #[arg(
        long,
        env = "GATEHOUSE_SIGNING_KEY_PUBLISH_LEAD_SECS",
        default_value_t = 300
    )]
    pub signing_key_publish_lead_secs: u64,

    /// Most argon2 hashes at once (default: the number of cores).
    #[arg(long, env = "GATEHOUSE_MAX_PARALLEL_HASHES")]
    pub max_parallel_hashes: Option<usize>,
}

impl IssuerArgs {
    /// `--issuer-url`, or the default of a process listening on the default port.
    pub fn issuer_url(&self) -> String {
        self.issuer
            .clone()
            .unwrap_or_else(|| DEFAULT_ISSUER_URL.to_owned())
    }
}
