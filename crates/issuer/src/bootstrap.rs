//! Bootstrap: the first account, its owner, an admin key and the scope
//! catalogue, in one atomic change.

use gatehouse_crypto::random;
use gatehouse_domain::account::Account;
use gatehouse_domain::apikey::{ApiKey, NewApiKey, SecretIndexEvent, SecretIssued, secret_stream};
use gatehouse_domain::catalogue::{self, Definition};
use gatehouse_domain::ids::{AccountId, KeyId};
use gatehouse_domain::scope::{self, Scopes};
use gatehouse_domain::secret::{SecretHash, hint};
use gatehouse_eventstore::{ExpectedVersion, NewEvent};
use uuid::Uuid;

use crate::accounts::NewUser;
use crate::decide::{Step, decide_and_append};
use crate::error::IssuerError;
use crate::service::{CallContext, Issuer, event, stream};

/// What bootstrap prints, once (`Debug` shows no secret).
#[derive(Clone, serde::Serialize)]
pub struct Bootstrapped {
    pub account_id: String,
    pub user_id: String,
    pub key_id: String,
    pub secret: String,
}

impl std::fmt::Debug for Bootstrapped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bootstrapped")
            .field("account_id", &self.account_id)
            .field("user_id", &self.user_id)
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl Issuer {
    /// Creates the first account, its owner and an admin key — both holding
    /// `*` and `platform:admin` — and imports `definitions` into the scope
    /// catalogue, once, in one atomic change.
    pub async fn bootstrap(
        &self,
        account_name: &str,
        username: &str,
        password: String,
        definitions: &[Definition],
    ) -> Result<Bootstrapped, IssuerError> {
        let ctx = CallContext::default();
        let now = self.now();
        let actor = Some("bootstrap".to_string());
        let account_id = AccountId::from_uuid(Uuid::now_v7());
        let account = Account::create(account_id, account_name, now)?;
        let scopes = Scopes::parse(&[scope::ALL, scope::PLATFORM_ADMIN])?;
        // Refused before the password is hashed; decided again at the append.
        let (catalogue, _) = self.catalogue().await?;
        catalogue.import(definitions, false, now)?;
        let (user, user_batches) = self
            .new_user(
                NewUser {
                    account_id,
                    username,
                    password,
                    scopes: scopes.clone(),
                },
                &ctx,
                actor.clone(),
                now,
            )
            .await?;
        let key_id = KeyId::from_uuid(Uuid::now_v7());
        let secret = self
            .settings
            .key_format
            .api_key_secret(&random::bytes::<24>()?);
        let key = ApiKey::create(
            NewApiKey {
                id: key_id,
                account_id,
                name: "bootstrap admin",
                scopes,
                secret_hash: SecretHash::of(&secret),
                hint: hint(&secret),
                expires_at: None,
            },
            now,
        )?;
        let issued = SecretIndexEvent::Issued(SecretIssued { key_id });
        let marker = NewEvent::new(
            "Bootstrapped.v1",
            serde_json::json!({ "account_id": account_id, "at": now }),
        );
        let bootstrap_stream = stream("bootstrap".into())?;
        let mut fixed = vec![
            (
                bootstrap_stream.clone(),
                ExpectedVersion::NoStream,
                vec![marker],
            ),
            (
                stream(account_id.stream())?,
                ExpectedVersion::NoStream,
                vec![event(parts!(account), &ctx, actor.clone())],
            ),
            (
                stream(key_id.stream())?,
                ExpectedVersion::NoStream,
                vec![event(parts!(key), &ctx, actor)],
            ),
            (
                stream(secret_stream(&SecretHash::of(&secret)))?,
                ExpectedVersion::NoStream,
                vec![event(parts!(issued), &ctx, None)],
            ),
        ];
        fixed.extend(user_batches);
        let (fixed, bootstrap_stream, ctx) = (&fixed, &bootstrap_stream, &ctx);
        // Decided again after a lost race: another bootstrap, a scope
        // defined meanwhile, or the owner's address taken.
        decide_and_append(&self.store, || async move {
            // The claim is read before the marker: another bootstrap commits
            // both at once, so a claim it made is always answered "already
            // bootstrapped", never "username taken".
            let taken = self.claims_taken(fixed).await?;
            if self.store.stream_version(bootstrap_stream).await? > 0 {
                return Err(IssuerError::FailedPrecondition(
                    "Gatehouse is already bootstrapped; nothing was written".into(),
                ));
            }
            if taken {
                return Err(IssuerError::AlreadyExists("a user with this username"));
            }
            let (catalogue, catalogue_version) = self.catalogue().await?;
            let imported = catalogue.import(definitions, false, now)?;
            let mut batches = fixed.clone();
            if !imported.is_empty() {
                batches.push((
                    stream(catalogue::STREAM.into())?,
                    ExpectedVersion::Exact(catalogue_version),
                    imported
                        .iter()
                        .map(|e| event(parts!(e), ctx, Some("bootstrap".into())))
                        .collect(),
                ));
            }
            Ok(Step::Append(batches, ()))
        })
        .await?;
        Ok(Bootstrapped {
            account_id: account_id.to_string(),
            user_id: user.id.to_string(),
            key_id: key_id.to_string(),
            secret,
        })
    }
}
