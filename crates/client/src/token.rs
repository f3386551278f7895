//! The SDK-token source: exchange, cache, refresh ahead of expiry.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Deserialize;
use std::sync::{Mutex, MutexGuard};
use tokio::time::Instant;

/// An API key's credentials. `Debug` shows no secret.
#[derive(Clone)]
pub struct Credentials {
    pub account_id: String,
    pub key_id: String,
    key_secret: String,
}

impl Credentials {
    pub fn new(
        account_id: impl Into<String>,
        key_id: impl Into<String>,
        key_secret: impl Into<String>,
    ) -> Self {
        Self {
            account_id: account_id.into(),
            key_id: key_id.into(),
            key_secret: key_secret.into(),
        }
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("account_id", &self.account_id)
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// How a [`TokenSource`] behaves.
#[derive(Debug, Clone)]
pub struct TokenSourceConfig {
    /// Refresh this long before the token expires (Scope's SDK calls it
    /// `token_refresh_buffer`, 60 s by default). Capped at half the token's lifetime, so a
    /// short-lived token is not refreshed on every call.
    pub refresh_buffer: Duration,
    /// First wait after a failed refresh; doubles per failure.
    pub min_backoff: Duration,
    /// Longest wait between refresh attempts.
    pub max_backoff: Duration,
    /// Deadline of one exchange request.
    pub request_timeout: Duration,
}

impl Default for TokenSourceConfig {
    fn default() -> Self {
        Self {
            refresh_buffer: Duration::from_secs(60),
            min_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(30),
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// Why no token could be had.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// Gatehouse refused the key (401): revoked, expired, rotated past its
    /// grace, or wrong. Retrying will not help.
    #[error("the key was refused: {message} ({reason})")]
    Unauthorized { reason: String, message: String },
    /// Gatehouse refused the request otherwise (4xx other than 401/429).
    #[error("the exchange was refused with {status}: {message} ({reason})")]
    Rejected {
        status: u16,
        reason: String,
        message: String,
    },
    /// Gatehouse could not be reached or failed (network, 5xx, 429); the
    /// source retries with backoff.
    #[error("Gatehouse is unavailable: {0}")]
    Unavailable(String),
    /// The base URL or the client could not be set up.
    #[error("invalid configuration: {0}")]
    Config(String),
}

impl Error {
    /// Whether a later attempt may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

/// Gatehouse's HTTP error body (`code`, `message`, `statusCode`, `reason`).
#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    message: String,
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Deserialize)]
struct Exchanged {
    access_token: String,
    expires_in: u64,
}

/// A token and when to stop using it, by this process's monotonic clock:
/// `expires_in` is trusted, not the local wall clock against `exp`, so clock
/// skew between the two machines does not matter.
#[derive(Clone)]
struct Cached {
    token: String,
    refresh_at: Instant,
    expires_at: Instant,
}

#[derive(Default)]
struct State {
    current: Option<Cached>,
    /// A refresh is running in the background (single flight).
    refreshing: bool,
    /// Failed refreshes in a row, and when the next may start.
    failures: u32,
    retry_at: Option<Instant>,
    last_error: Option<Error>,
}

struct Inner {
    http: reqwest::Client,
    url: String,
    credentials: Credentials,
    config: TokenSourceConfig,
    /// Never held across an await, so a plain mutex: a synchronous caller
    /// (the interceptor) always gets in.
    state: Mutex<State>,
    /// Held by whoever is exchanging, so there is one exchange at a time.
    exchange: tokio::sync::Mutex<()>,
    exchanges: AtomicU64,
}

/// Hands out SDK tokens, exchanging and refreshing them as needed. Cheap to
/// clone; clones share the cache.
#[derive(Clone)]
pub struct TokenSource {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSource")
            .field("url", &self.inner.url)
            .field("credentials", &self.inner.credentials)
            .finish_non_exhaustive()
    }
}

impl TokenSource {
    /// A source for Gatehouse at `base_url` (e.g. `https://auth.example.com`).
    pub fn new(base_url: &str, credentials: Credentials) -> Result<Self, Error> {
        Self::with_config(base_url, credentials, TokenSourceConfig::default())
    }

    pub fn with_config(
        base_url: &str,
        credentials: Credentials,
        config: TokenSourceConfig,
    ) -> Result<Self, Error> {
        let base = base_url.trim_end_matches('/');
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(Error::Config(format!(
                "the base URL must be http(s), got {base_url:?}"
            )));
        }
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .build()
            .map_err(|e| Error::Config(e.to_string()))?;
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                url: format!("{base}/v1/auth/sdk-token"),
                credentials,
                config,
                state: Mutex::new(State::default()),
                exchange: tokio::sync::Mutex::new(()),
                exchanges: AtomicU64::new(0),
            }),
        })
    }

    /// How many exchanges this source (and its clones) has made.
    pub fn exchanges(&self) -> u64 {
        self.inner.exchanges.load(Ordering::Relaxed)
    }

    /// A valid token: the cached one, or a fresh one when there is none.
    /// Within `refresh_buffer` of expiry the cached token is still handed out
    /// while one background refresh replaces it.
    pub async fn token(&self) -> Result<String, Error> {
        {
            let mut state = self.state();
            let now = Instant::now();
            if let Some(current) = state.current.clone()
                && now < current.expires_at
            {
                if now >= current.refresh_at {
                    self.start_background_refresh(&mut state, now);
                }
                return Ok(current.token);
            }
        }
        // No usable token: wait for the one exchange in flight, or make it.
        let _exchanging = self.inner.exchange.lock().await;
        {
            let state = self.state();
            let now = Instant::now();
            if let Some(current) = &state.current
                && now < current.expires_at
            {
                return Ok(current.token.clone());
            }
            if let (Some(at), Some(error)) = (state.retry_at, &state.last_error)
                && now < at
            {
                return Err(error.clone());
            }
        }
        let result = self.exchange_now().await;
        self.record(&result);
        result.map(|cached| cached.token)
    }

    /// The cached token without waiting, for synchronous callers such as a
    /// tonic interceptor: `None` until a first [`TokenSource::token`] has
    /// fetched one, or once it expired. Starts the background refresh when
    /// it is due (inside a tokio runtime).
    pub fn current(&self) -> Option<String> {
        let mut state = self.state();
        let now = Instant::now();
        match state.current.clone().filter(|c| now < c.expires_at) {
            Some(current) => {
                if now >= current.refresh_at {
                    self.start_background_refresh(&mut state, now);
                }
                Some(current.token)
            }
            None => {
                // Nothing to hand out: fetch one for the next call.
                self.start_background_refresh(&mut state, now);
                None
            }
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding it cannot leave the state inconsistent (each
        // change is one assignment), so a poisoned lock is still usable.
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Starts the one background refresh, unless one runs or backoff holds
    /// it back (or there is no runtime to run it on).
    fn start_background_refresh(&self, state: &mut State, now: Instant) {
        if state.refreshing || state.retry_at.is_some_and(|at| now < at) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        state.refreshing = true;
        let source = self.clone();
        runtime.spawn(async move { source.refresh_in_background().await });
    }

    /// A tonic interceptor attaching the cached token; a call made while
    /// there is none fails with `UNAUTHENTICATED` (prime the source with
    /// `token().await`, or prefer the async [`crate::BearerLayer`]).
    pub fn interceptor(
        &self,
    ) -> impl FnMut(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> + Clone + use<>
    {
        let source = self.clone();
        move |mut request: tonic::Request<()>| {
            let token = source.current().ok_or_else(|| {
                tonic::Status::unauthenticated("no SDK token yet: call TokenSource::token first")
            })?;
            let value = format!("Bearer {token}")
                .parse()
                .map_err(|_| tonic::Status::internal("unusable token"))?;
            request.metadata_mut().insert("authorization", value);
            Ok(request)
        }
    }

    async fn refresh_in_background(&self) {
        /// Clears `refreshing` however the task ends (a panic, a runtime
        /// shutting down), so refreshes never stop for good.
        struct Done<'a>(&'a TokenSource);
        impl Drop for Done<'_> {
            fn drop(&mut self) {
                self.0.state().refreshing = false;
            }
        }
        let _done = Done(self);
        let _exchanging = self.inner.exchange.lock().await;
        let result = self.exchange_now().await;
        self.record(&result);
    }

    /// Stores the outcome of an exchange: the new token, or the failure and
    /// when to try again (a refused key drops the cached token at once).
    fn record(&self, result: &Result<Cached, Error>) {
        let mut state = self.state();
        match result {
            Ok(cached) => {
                state.current = Some(cached.clone());
                state.failures = 0;
                state.retry_at = None;
                state.last_error = None;
            }
            Err(error) => {
                // Only a refused key ends the cached token; anything else (a
                // proxy's 404, a 5xx) leaves it in use until it expires.
                if matches!(error, Error::Unauthorized { .. }) {
                    state.current = None;
                }
                state.failures = state.failures.saturating_add(1);
                let wait = backoff(&self.inner.config, state.failures);
                tracing::warn!(%error, retry_in_ms = wait.as_millis() as u64, "SDK token refresh failed");
                state.retry_at = Some(Instant::now() + wait);
                state.last_error = Some(error.clone());
            }
        }
    }

    async fn exchange_now(&self) -> Result<Cached, Error> {
        self.inner.exchanges.fetch_add(1, Ordering::Relaxed);
        let credentials = &self.inner.credentials;
        let sent = Instant::now();
        let response = self
            .inner
            .http
            .post(&self.inner.url)
            .json(&serde_json::json!({
                "account_id": credentials.account_id,
                "key_id": credentials.key_id,
                "key_secret": credentials.key_secret,
            }))
            .send()
            .await
            .map_err(|e| Error::Unavailable(e.without_url().to_string()))?;
        let status = response.status();
        if status.is_success() {
            let body: Exchanged = response
                .json()
                .await
                .map_err(|e| Error::Unavailable(format!("unreadable answer: {e}")))?;
            // Counted from when the request was sent: the token cannot have
            // been issued earlier than that.
            // At most a day, whatever the server says (no overflow).
            let lifetime = Duration::from_secs(body.expires_in.min(24 * 3600));
            let buffer = self.inner.config.refresh_buffer.min(lifetime / 2);
            return Ok(Cached {
                token: body.access_token,
                refresh_at: sent + lifetime - buffer,
                expires_at: sent + lifetime,
            });
        }
        let body: ErrorBody = response.json().await.unwrap_or_default();
        let reason = body.reason.unwrap_or_default();
        Err(match status.as_u16() {
            401 => Error::Unauthorized {
                reason,
                message: body.message,
            },
            429 => Error::Unavailable(format!("throttled: {}", body.message)),
            code if (400..500).contains(&code) => Error::Rejected {
                status: code,
                reason,
                message: body.message,
            },
            code => Error::Unavailable(format!("{code}: {}", body.message)),
        })
    }
}

/// `min_backoff × 2^(failures-1)`, at most `max_backoff`, with ±25 % jitter so
/// many clients do not retry in step.
fn backoff(config: &TokenSourceConfig, failures: u32) -> Duration {
    let doubled = config
        .min_backoff
        .saturating_mul(1u32 << failures.saturating_sub(1).min(16));
    let capped = doubled.min(config.max_backoff);
    let jitter = (uuid::Uuid::new_v4().as_u128() % 501) as f64 / 1000.0 + 0.75;
    capped.mul_f64(jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped_and_jittered() {
        let config = TokenSourceConfig {
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            ..Default::default()
        };
        let first = backoff(&config, 1);
        assert!((75..=125).contains(&first.as_millis()), "{first:?}");
        let third = backoff(&config, 3);
        assert!((300..=500).contains(&third.as_millis()), "{third:?}");
        let many = backoff(&config, 40);
        assert!(many <= Duration::from_millis(1250), "{many:?}");
    }

    #[test]
    fn debug_shows_no_secret() {
        let credentials = Credentials::new("acc", "key", "wc_live_secret");
        assert!(!format!("{credentials:?}").contains("wc_live_secret"));
        let source = TokenSource::new("http://127.0.0.1:1", credentials).unwrap();
        assert!(!format!("{source:?}").contains("wc_live_secret"));
        assert!(matches!(
            TokenSource::new("ftp://x", Credentials::new("a", "b", "c")),
            Err(Error::Config(_))
        ));
    }
}
