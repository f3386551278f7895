//! The [`Issuer`] itself: its state, the reads every flow shares (streams,
//! the catalogue, users, accounts), token claims and signing. Each flow is a
//! module of its own beside this one.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use gatehouse_crypto::jwt::{AccessClaims, sign};
use gatehouse_crypto::password::PasswordHasher;
use gatehouse_domain::account::{Account, AccountEvent};
use gatehouse_domain::catalogue::{self, Catalogue, ScopeEvent};
use gatehouse_domain::clock::SharedClock;
use gatehouse_domain::email::Email;
use gatehouse_domain::ids::{AccountId, SessionId, UserId};
use gatehouse_domain::scope::{self, Scopes};
use gatehouse_domain::session::SessionLifetime;
use gatehouse_domain::user::{User, UserEvent, UsernameEvent, username_stream};
use gatehouse_eventstore::{EventStore, Metadata, NewEvent, ProjectionRunner, StreamId};
use gatehouse_projections::{ApiKeys, KeyActivity};
use uuid::Uuid;

use crate::error::IssuerError;
use crate::keyring::LiveKeyring;
use crate::settings::IssuerSettings;
use crate::throttle::Throttle;

/// Who is calling and from where, for event metadata and throttling.
#[derive(Debug, Clone, Default)]
pub struct CallContext {
    pub client_address: Option<String>,
    pub request_id: Option<String>,
}

/// A verified bearer of an admin call.
#[derive(Debug, Clone)]
pub struct Principal {
    pub account_id: AccountId,
    /// User id or key id.
    pub subject: String,
    /// The grants as given (`*`, `resource:*`, concrete) — of the key, or of
    /// the user's login session — resolved when checked, not the token's
    /// claim: an owner holds a scope defined after it logged in.
    pub grants: Scopes,
    /// The login session of a user's access token; `None` for API keys and
    /// SDK tokens (which cannot change a password).
    pub session: Option<SessionId>,
}

impl Principal {
    /// Checks that the principal holds the built-in `scope` on `account`.
    /// Another account's credential gets `PERMISSION_DENIED`, exactly like a
    /// missing scope, so the answer does not reveal whether the account exists.
    pub fn require(&self, scope: &str, account: AccountId) -> Result<(), IssuerError> {
        self.require_anywhere(scope)?;
        if self.account_id == account {
            Ok(())
        } else {
            Err(IssuerError::PermissionDenied {
                scope: scope.to_string(),
            })
        }
    }

    /// Checks a built-in scope that is not about one account (`platform:admin`).
    /// Built-in scopes are always live, so no catalogue is needed.
    pub fn require_anywhere(&self, scope: &str) -> Result<(), IssuerError> {
        if scope::covers(&self.grants, scope) {
            Ok(())
        } else {
            Err(IssuerError::PermissionDenied {
                scope: scope.to_string(),
            })
        }
    }
}

/// The issuer.
#[derive(Clone)]
pub struct Issuer {
    pub(crate) store: EventStore,
    pub(crate) hasher: PasswordHasher,
    pub(crate) keyring: LiveKeyring,
    pub(crate) throttle: Throttle,
    pub(crate) settings: Arc<IssuerSettings>,
    /// Brought up to date before listings, so a key created a moment ago is listed.
    pub(crate) api_keys: Arc<ProjectionRunner<ApiKeys>>,
    /// Likewise for the activity log.
    pub(crate) key_activity: Arc<ProjectionRunner<KeyActivity>>,
    /// The one reader behind every live activity tail, and their caps.
    pub(crate) activity_hub: Arc<crate::audit::ActivityHub>,
    /// Where every decision reads "now" from.
    pub(crate) clock: SharedClock,
    /// This process's turns on contended streams (a user's, for logins).
    pub(crate) turns: Arc<crate::decide::StreamTurns>,
    /// The index the SDK exchange answers from (`None` in the admin
    /// commands, which exchange nothing).
    pub(crate) view: Option<crate::memory::LogView>,
}

pub(crate) fn event(
    parts: (&'static str, serde_json::Value),
    ctx: &CallContext,
    actor: Option<String>,
) -> NewEvent {
    let (event_type, payload) = parts;
    NewEvent::new(event_type, payload).with_metadata(Metadata {
        actor,
        request_id: ctx.request_id.clone(),
        client_address: ctx.client_address.clone(),
        causation_id: None,
    })
}

pub(crate) fn stream(id: String) -> Result<StreamId, IssuerError> {
    Ok(StreamId::parse(id)?)
}

/// A request's page size: 0 means `default`; otherwise 1 to `max`.
pub(crate) fn page_size(requested: i32, default: i64, max: i64) -> Result<i64, IssuerError> {
    match i64::from(requested) {
        0 => Ok(default),
        n if (1..=max).contains(&n) => Ok(n),
        _ => Err(IssuerError::InvalidArgument(format!(
            "page_size must be between 1 and {max}"
        ))),
    }
}

/// A required text field: absent or empty is `INVALID_ARGUMENT` naming it
/// (never a credential failure: the caller sent a malformed request).
pub fn required<'a>(field: &'static str, value: &'a str) -> Result<&'a str, IssuerError> {
    if value.trim().is_empty() {
        Err(IssuerError::InvalidArgument(format!("{field} is required")))
    } else {
        Ok(value)
    }
}

/// Seconds from `now` until `at` (0 once past).
pub(crate) fn secs_until(at: DateTime<Utc>, now: DateTime<Utc>) -> i64 {
    (at - now).num_seconds().max(0)
}

pub(crate) fn secs(duration: std::time::Duration) -> i64 {
    i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)
}

impl Issuer {
    pub fn new(
        store: EventStore,
        hasher: PasswordHasher,
        keyring: LiveKeyring,
        settings: IssuerSettings,
        clock: SharedClock,
    ) -> Self {
        let throttle = Throttle::new(store.clone(), settings.throttle);
        Self {
            api_keys: Arc::new(ProjectionRunner::new(store.clone(), ApiKeys)),
            key_activity: Arc::new(ProjectionRunner::new(store.clone(), KeyActivity)),
            activity_hub: Arc::default(),
            turns: Arc::default(),
            view: None,
            store,
            hasher,
            keyring,
            throttle,
            settings: Arc::new(settings),
            clock,
        }
    }

    /// Answers the SDK exchange from `view` (see [`crate::memory`]).
    pub fn with_view(mut self, view: crate::memory::LogView) -> Self {
        self.view = Some(view);
        self
    }

    /// The current time, from the issuer's clock.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// The idle and absolute session timeouts of the settings.
    pub(crate) fn session_lifetime(&self) -> SessionLifetime {
        // Ten years at most: settings are clamped far below, and `now + idle`
        // must never overflow.
        let duration = |d| {
            chrono::Duration::from_std(d)
                .unwrap_or(chrono::Duration::MAX)
                .min(chrono::Duration::days(3650))
        };
        SessionLifetime {
            idle: duration(self.settings.refresh_token_ttl),
            max_lifetime: duration(self.settings.session_max_lifetime),
        }
    }

    pub(crate) fn store(&self) -> &EventStore {
        &self.store
    }

    pub(crate) fn api_keys_runner(&self) -> &ProjectionRunner<ApiKeys> {
        &self.api_keys
    }

    pub(crate) fn key_activity_runner(&self) -> &ProjectionRunner<KeyActivity> {
        &self.key_activity
    }

    pub(crate) fn activity_hub(&self) -> &Arc<crate::audit::ActivityHub> {
        &self.activity_hub
    }

    pub fn settings(&self) -> &IssuerSettings {
        &self.settings
    }

    pub fn keyring(&self) -> &LiveKeyring {
        &self.keyring
    }

    /// The published signing keys as JWKS, now.
    pub fn jwks(&self) -> Vec<gatehouse_crypto::keys::PublicJwk> {
        self.keyring.jwks(self.now())
    }

    /// The algorithms of the published keys (during a switch, both), for
    /// discovery documents.
    pub fn signing_algorithms(&self) -> Vec<&'static str> {
        let mut algorithms: Vec<&'static str> = self
            .keyring
            .published(self.now())
            .iter()
            .map(|k| k.alg.as_str())
            .collect();
        algorithms.sort_unstable();
        algorithms.dedup();
        algorithms
    }

    pub(crate) async fn load<E>(
        &self,
        stream_id: &str,
        decode: impl Fn(&str, &serde_json::Value) -> Result<Option<E>, gatehouse_domain::DomainError>,
    ) -> Result<(Vec<E>, u64), IssuerError> {
        let stream = stream(stream_id.to_string())?;
        let recorded = self.store.read_stream(&stream).await?;
        let version = recorded.last().map_or(0, |e| e.stream_version);
        let mut events = Vec::with_capacity(recorded.len());
        for e in &recorded {
            if let Some(event) = decode(&e.event_type, &e.payload)
                .map_err(|e| IssuerError::Internal(e.to_string()))?
            {
                events.push(event);
            }
        }
        Ok((events, version))
    }

    /// The user of `email` and their stream's version.
    pub(crate) async fn load_user_by_email(
        &self,
        email: &Email,
    ) -> Result<Option<(User, u64)>, IssuerError> {
        let (claims, _) = self
            .load(&username_stream(email), UsernameEvent::decode)
            .await?;
        let Some(UsernameEvent::Claimed(claim)) = claims.first() else {
            return Ok(None);
        };
        self.load_user(claim.user_id).await
    }

    pub(crate) async fn load_user(&self, id: UserId) -> Result<Option<(User, u64)>, IssuerError> {
        let (events, version) = self.load(&id.stream(), UserEvent::decode).await?;
        Ok(User::fold(&events).map(|user| (user, version)))
    }

    /// The scope catalogue and the `scopes` stream's version, read from the
    /// log itself, so a scope defined a moment ago on any issuer counts.
    pub(crate) async fn catalogue(&self) -> Result<(Catalogue, u64), IssuerError> {
        let (events, version) = self.load(catalogue::STREAM, ScopeEvent::decode).await?;
        Ok((Catalogue::fold(&events), version))
    }

    /// Resolves `grants` against the live catalogue: what a token carries.
    pub(crate) async fn resolve(&self, grants: &Scopes) -> Result<Scopes, IssuerError> {
        Ok(self.catalogue().await?.0.resolve(grants))
    }

    pub(crate) async fn load_account(
        &self,
        account: AccountId,
    ) -> Result<Option<Account>, IssuerError> {
        let (events, _) = self.load(&account.stream(), AccountEvent::decode).await?;
        Ok(Account::fold(&events))
    }

    pub(crate) async fn account_exists(&self, account: AccountId) -> Result<bool, IssuerError> {
        Ok(self.load_account(account).await?.is_some())
    }

    /// Whether the event log answers and can take a write (for readiness
    /// probes): an issuer whose writer is stuck cannot log in, rotate or revoke.
    pub async fn ready(&self) -> Result<(), IssuerError> {
        self.store.head().await?;
        self.store
            .check_writable(std::time::Duration::from_secs(2))
            .await?;
        Ok(())
    }

    pub(crate) fn sign(&self, claims: &AccessClaims) -> Result<String, IssuerError> {
        let signer = self
            .keyring
            .signer(self.now())
            .ok_or_else(|| IssuerError::Internal("no signing key is active".into()))?;
        Ok(sign(claims, &signer)?)
    }

    pub(crate) fn claims(
        &self,
        subject: String,
        account: AccountId,
        scopes: &Scopes,
        session: Option<SessionId>,
        ttl: std::time::Duration,
        now: DateTime<Utc>,
    ) -> AccessClaims {
        AccessClaims {
            iss: self.settings.issuer.clone(),
            sub: subject,
            aud: self.settings.audience.clone(),
            exp: now.timestamp() + secs(ttl),
            iat: now.timestamp(),
            nbf: now.timestamp(),
            jti: Uuid::now_v7().to_string(),
            acc: account.to_string(),
            scope: scopes.to_claim(),
            sid: session.map(|s| s.to_string()),
            ksv: None,
        }
    }
}
