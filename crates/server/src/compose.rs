//! Building the issuer from settings: master key, password hasher, keyring.

use std::sync::Arc;
use std::time::Duration;

use gatehouse_crypto::master::MasterKey;
use gatehouse_crypto::password::PasswordHasher;
use gatehouse_domain::clock::SharedClock;
use gatehouse_domain::secret::KeyFormat;
use gatehouse_domain::signing::SigningKeyEvent;
use gatehouse_eventstore::EventStore;
use gatehouse_issuer::{Issuer, IssuerSettings, LiveKeyring, ThrottleSettings};
use tokio_util::sync::CancellationToken;

use crate::settings::{DatabaseArgs, IssuerArgs};
use crate::startup::StartupError;

/// Resolves the master key: the variable, the file, or (embedded default
/// only) `<data-dir>/master.key`, created on first start.
pub fn master_key(database: &DatabaseArgs, args: &IssuerArgs) -> Result<MasterKey, StartupError> {
    let config = |e: gatehouse_crypto::CryptoError| StartupError::Config(e.to_string());
    if let Some(encoded) = args.master_key.as_deref().filter(|k| !k.trim().is_empty()) {
        return MasterKey::from_base64(encoded).map_err(config);
    }
    let path = match (&args.master_key_file, database.url().starts_with("sqlite:")) {
        (Some(path), _) => path.clone(),
        (None, true) => database.data_dir.join("master.key"),
        (None, false) => {
            return Err(StartupError::Config(
                "an issuer on Postgres needs GATEHOUSE_MASTER_KEY (32 bytes, base64, the same for every issuer; \
                 e.g. `openssl rand -base64 32`) or --master-key-file"
                    .into(),
            ));
        }
    };
    let (key, created) = MasterKey::load_or_create(&path).map_err(config)?;
    if created {
        tracing::warn!(path = %path.display(), "created a new master key file (mode 0600); back it up: signing keys cannot be unsealed without it");
    }
    Ok(key)
}

/// How a serving issuer's keyring starts and stays current.
pub struct Follow {
    /// The keyring is followed until this is cancelled.
    pub stop: CancellationToken,
    /// The signing-key events the process's index has already read, and
    /// the log position they are as of: the keyring starts from them
    /// instead of reading the whole log again (millions of events with a
    /// million keys, for a handful of signing keys).
    pub known: Vec<SigningKeyEvent>,
    pub position: u64,
}

/// Builds the issuer, loads the signing keys (from `follow`'s, or by
/// reading the log) and creates the first one if needed. With `follow`, a
/// task keeps the keyring current until cancelled.
pub async fn build(
    store: &EventStore,
    database: &DatabaseArgs,
    args: &IssuerArgs,
    clock: SharedClock,
    follow: Option<Follow>,
) -> Result<Issuer, StartupError> {
    let config =
        |what: &str, e: &dyn std::fmt::Display| StartupError::Config(format!("{what}: {e}"));
    let key_format = KeyFormat::new(&args.key_prefix, &args.key_environment)
        .map_err(|e| config("key format", &e))?;
    let issuer_url = args.issuer_url();
    if !(issuer_url.starts_with("https://") || issuer_url.starts_with("http://")) {
        return Err(StartupError::Config(format!(
            "--issuer-url must be the deployment's http(s) URL, got {issuer_url:?}"
        )));
    }
    let master = Arc::new(master_key(database, args)?);
    let parallel = args
        .max_parallel_hashes
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let hasher = PasswordHasher::new(parallel).map_err(|e| config("password hasher", &e))?;
    let settings = IssuerSettings {
        issuer: args.issuer_url(),
        audience: args.audience.clone(),
        access_token_ttl: Duration::from_secs(args.access_token_ttl_secs.clamp(1, 24 * 3600)),
        sdk_token_ttl: Duration::from_secs(args.sdk_token_ttl_secs.clamp(1, 24 * 3600)),
        refresh_token_ttl: Duration::from_secs(
            args.refresh_token_ttl_secs.clamp(60, 365 * 24 * 3600),
        ),
        session_max_lifetime: Duration::from_secs(
            args.session_max_lifetime_secs.clamp(1, 365 * 24 * 3600),
        ),
        leeway: Duration::from_secs(args.clock_leeway_secs.min(300)),
        key_format,
        throttle: ThrottleSettings {
            free_per_pair: args.login_free_attempts,
            free_per_username: args.login_free_attempts_per_username,
            free_per_address: args.login_free_attempts_per_address,
            base_delay: Duration::from_millis(args.login_base_delay_ms.max(1)),
            ..ThrottleSettings::default()
        },
        signing_key_publish_lead: Duration::from_secs(args.signing_key_publish_lead_secs),
        // Ten years at most: "for ever" in practice, and countable.
        max_user_token_lifetime: Duration::from_secs(
            args.revoked_session_retention_secs
                .min(10 * 365 * 24 * 3600),
        ),
    };
    let keyring = LiveKeyring::new(
        master,
        args.signing_alg.into(),
        &settings.issuer,
        &settings.audience,
        settings.leeway.as_secs(),
    );
    let next = match &follow {
        Some(follow) => {
            follow
                .known
                .iter()
                .for_each(|event| keyring.observe_event(event));
            follow.position + 1
        }
        None => keyring
            .load(store)
            .await
            .map_err(|e| config("loading signing keys", &e))?,
    };
    keyring
        .ensure_key(store, clock.now())
        .await
        .map_err(|e| config("creating the first signing key", &e))?;
    let now = clock.now();
    if let Some(current) = keyring.signing_alg(now)
        && current != keyring.configured_alg()
    {
        tracing::warn!(
            %current,
            configured = %keyring.configured_alg(),
            "the signing key is not of --signing-alg: it takes effect at the next rotation \
             (`gatehouse signing-keys rotate`)"
        );
    }
    if let Some(Follow { stop, .. }) = follow {
        let mut subscription = store.subscribe(next).await?;
        let keyring = keyring.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    event = subscription.next() => match event {
                        Some(event) => keyring.observe(&event),
                        None => return,
                    },
                }
            }
        });
    }
    Ok(Issuer::new(store.clone(), hasher, keyring, settings, clock))
}
