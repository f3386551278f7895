//! Every setting of `serve`, checked before anything is opened or bound —
//! the same check `gatehouse check-config` runs. A setting that would kill
//! the server later (a bad route table, a missing master key) is refused
//! before it listens, never after it has looked healthy; and every problem is
//! reported at once, not the first of them.

use axum::http::{HeaderValue, Uri};
use gatehouse_crypto::master::MasterKey;
use gatehouse_domain::secret::KeyFormat;
use gatehouse_verifier::routes::{Route, RoutePolicy};

use crate::settings::{Role, ServeArgs};

/// Settings parsed while checking, handed to the server.
#[derive(Debug, Clone)]
pub struct Checked {
    pub routes: RoutePolicy,
    pub cors_origins: Vec<HeaderValue>,
    pub trusted_proxies: gatehouse_transport::peer::TrustedProxies,
    /// TLS for the listener, when a certificate and key are given.
    pub tls: Option<std::sync::Arc<tokio_rustls::rustls::ServerConfig>>,
}

/// What is wrong with a configuration: one line per problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.join("; "))]
pub struct ConfigErrors(pub Vec<String>);

/// The longest clock leeway accepted (seconds).
pub const MAX_LEEWAY_SECS: u64 = 300;
/// The longest access or SDK token lifetime accepted (seconds).
pub const MAX_ACCESS_TTL_SECS: u64 = 24 * 3600;

/// Checks `args` for a process serving `role`, without touching the
/// database, the network or any file but an existing master key file.
pub fn check(args: &ServeArgs, role: Role) -> Result<Checked, ConfigErrors> {
    let mut problems = Vec::new();
    let issuer = &args.issuer;
    if std::env::var_os("GATEHOUSE_ISSUER").is_some() {
        problems.push("GATEHOUSE_ISSUER was renamed GATEHOUSE_ISSUER_URL (an http(s) URL)".into());
    }
    match issuer.issuer.as_deref() {
        None if role != Role::All => problems.push(
            "a process serving one role is part of a larger deployment: give every process the \
             same --issuer-url (GATEHOUSE_ISSUER_URL); the default, http:// + this process's own \
             address, would differ between them"
                .into(),
        ),
        None => {}
        Some(url) => {
            if let Err(problem) = check_http_url(url) {
                problems.push(format!(
                    "--issuer-url (GATEHOUSE_ISSUER_URL) must be the deployment's http(s) URL: {problem}"
                ));
            }
        }
    }
    if let Err(e) = KeyFormat::new(&issuer.key_prefix, &issuer.key_environment) {
        problems.push(format!(
            "--key-prefix / --key-environment (GATEHOUSE_KEY_PREFIX / GATEHOUSE_KEY_ENVIRONMENT): {e}"
        ));
    }
    if issuer.audience.trim().is_empty() {
        problems.push("--audience (GATEHOUSE_AUDIENCE) must not be empty".into());
    }
    if issuer.clock_leeway_secs > MAX_LEEWAY_SECS {
        problems.push(format!(
            "--clock-leeway-secs (GATEHOUSE_CLOCK_LEEWAY_SECS) is at most {MAX_LEEWAY_SECS}"
        ));
    }
    for (flag, value) in [
        (
            "--access-token-ttl-secs (GATEHOUSE_ACCESS_TOKEN_TTL_SECS)",
            issuer.access_token_ttl_secs,
        ),
        (
            "--sdk-token-ttl-secs (GATEHOUSE_SDK_TOKEN_TTL_SECS)",
            issuer.sdk_token_ttl_secs,
        ),
    ] {
        if !(1..=MAX_ACCESS_TTL_SECS).contains(&value) {
            problems.push(format!("{flag} must be 1 to {MAX_ACCESS_TTL_SECS}"));
        }
    }
    if !(60..=365 * 24 * 3600).contains(&issuer.refresh_token_ttl_secs) {
        problems.push(
            "--refresh-token-ttl-secs (GATEHOUSE_REFRESH_TOKEN_TTL_SECS) must be 60 to 31536000"
                .into(),
        );
    }
    if !(1..=365 * 24 * 3600).contains(&issuer.session_max_lifetime_secs) {
        problems.push(
            "--session-max-lifetime-secs (GATEHOUSE_SESSION_MAX_LIFETIME_SECS) must be 1 to 31536000"
                .into(),
        );
    }
    let url = args.database.url();
    let sqlite = url.starts_with("sqlite:");
    if !(sqlite || url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        problems.push(
            "--database-url (GATEHOUSE_DATABASE_URL, DATABASE_URL) must be postgres://… or sqlite:PATH"
                .into(),
        );
    }
    if role.issues() {
        check_master_key(args, sqlite, &mut problems);
    }
    // Verifiers and issuers alike refuse a user token that lives as long as
    // revoked sessions are remembered: every token minted so would be dead.
    if args.issuer.access_token_ttl_secs >= args.issuer.revoked_session_retention_secs {
        problems.push(
            "--access-token-ttl-secs (GATEHOUSE_ACCESS_TOKEN_TTL_SECS) must be below \
             --revoked-session-retention-secs (GATEHOUSE_REVOKED_SESSION_RETENTION_SECS): \
             user tokens living that long are refused (TOKEN_LIFETIME_TOO_LONG)"
                .into(),
        );
    }
    if !(100..=3_600_000).contains(&args.request_timeout_ms) {
        problems.push(
            "--request-timeout-ms (GATEHOUSE_REQUEST_TIMEOUT_MS) must be 100 to 3600000".into(),
        );
    }
    if args.max_connections == Some(0) {
        problems.push("--max-connections (GATEHOUSE_MAX_CONNECTIONS) must be at least 1".into());
    }
    if !(1..=3600).contains(&args.connection_first_byte_secs) {
        problems.push(
            "--connection-first-byte-secs (GATEHOUSE_CONNECTION_FIRST_BYTE_SECS) must be 1 to 3600"
                .into(),
        );
    }
    if !(1..=86_400).contains(&args.connection_idle_secs) {
        problems.push(
            "--connection-idle-secs (GATEHOUSE_CONNECTION_IDLE_SECS) must be 1 to 86400".into(),
        );
    }
    if args.max_streams_per_connection == 0 {
        problems.push(
            "--max-streams-per-connection (GATEHOUSE_MAX_STREAMS_PER_CONNECTION) must be at least 1"
                .into(),
        );
    }
    if !(1024..=1 << 20).contains(&args.max_header_bytes) {
        problems
            .push("--max-header-bytes (GATEHOUSE_MAX_HEADER_BYTES) must be 1024 to 1048576".into());
    }
    if args.metrics_listen == Some(args.listen) && args.listen.port() != 0 {
        problems.push("--metrics-listen must differ from --listen".into());
    }
    let routes = match Route::parse_table(&args.ext_authz_routes)
        .and_then(|routes| RoutePolicy::new(routes, args.ext_authz_deny_unmatched))
    {
        Ok(policy) => policy,
        Err(e) => {
            problems.push(format!(
                "--ext-authz-routes (GATEHOUSE_EXT_AUTHZ_ROUTES): {e}"
            ));
            RoutePolicy::default()
        }
    };
    let tls = match (&args.tls_cert_file, &args.tls_key_file) {
        (Some(cert), Some(key)) => match crate::tls::load(cert, key) {
            Ok(config) => Some(config),
            Err(e) => {
                problems.push(e);
                None
            }
        },
        (None, None) => None,
        _ => {
            problems.push("--tls-cert-file and --tls-key-file go together".into());
            None
        }
    };
    let header = match args.forwarded_header {
        crate::settings::ForwardedHeaderArg::XForwardedFor => {
            gatehouse_transport::peer::ForwardedHeader::XForwardedFor
        }
        crate::settings::ForwardedHeaderArg::Forwarded => {
            gatehouse_transport::peer::ForwardedHeader::Forwarded
        }
    };
    let trusted_proxies =
        gatehouse_transport::peer::TrustedProxies::parse(&args.trusted_proxies, header)
            .unwrap_or_else(|e| {
                problems.push(format!("--trusted-proxy (GATEHOUSE_TRUSTED_PROXIES): {e}"));
                Default::default()
            });
    let mut cors_origins = Vec::new();
    for origin in &args.cors_origins {
        let origin = origin.trim_end_matches('/');
        match check_http_url(origin).ok().and_then(|()| HeaderValue::from_str(origin).ok()) {
            Some(value) if !origin.contains(['?', '#']) && Uri::try_from(origin).is_ok_and(|u| u.path() == "/") => {
                cors_origins.push(value)
            }
            _ => problems.push(format!(
                "--cors-origin (GATEHOUSE_CORS_ORIGINS) {origin:?} must be an origin such as https://console.example.com"
            )),
        }
    }
    if problems.is_empty() {
        Ok(Checked {
            routes,
            cors_origins,
            trusted_proxies,
            tls,
        })
    } else {
        Err(ConfigErrors(problems))
    }
}

/// An absolute http(s) URL with a host.
fn check_http_url(url: &str) -> Result<(), String> {
    let uri = Uri::try_from(url).map_err(|_| format!("{url:?} is not a URL"))?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http" | "https"), Some(host)) if !host.is_empty() => Ok(()),
        _ => Err(format!("{url:?} is not an http(s) URL with a host")),
    }
}

/// The master key an issuer needs: valid if given; on Postgres, given.
fn check_master_key(args: &ServeArgs, sqlite: bool, problems: &mut Vec<String>) {
    let issuer = &args.issuer;
    if let Some(encoded) = issuer
        .master_key
        .as_deref()
        .filter(|k| !k.trim().is_empty())
    {
        if let Err(e) = MasterKey::from_base64(encoded) {
            problems.push(format!("GATEHOUSE_MASTER_KEY: {e}"));
        }
        return;
    }
    match &issuer.master_key_file {
        Some(path) if path.exists() => {
            if let Err(e) = std::fs::read_to_string(path)
                .map_err(|e| e.to_string())
                .and_then(|text| {
                    MasterKey::from_base64(&text)
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                })
            {
                problems.push(format!(
                    "--master-key-file (GATEHOUSE_MASTER_KEY_FILE) {}: {e}",
                    path.display()
                ));
            }
        }
        // Created (0600) on first start.
        Some(_) => {}
        None if sqlite => {}
        None => problems.push(
            "an issuer on Postgres needs GATEHOUSE_MASTER_KEY (32 bytes, base64, the same for \
             every issuer; e.g. `openssl rand -base64 32`) or --master-key-file"
                .into(),
        ),
    }
}
