//! The SDK-token exchange: an API key for a one-hour access token, decided
//! from memory (see [`crate::memory`]) with no database call.

use gatehouse_domain::apikey::KeyError;
use gatehouse_domain::ids::{AccountId, KeyId};
use gatehouse_domain::scope::Scopes;
use gatehouse_domain::secret::SecretHash;
use gatehouse_verifier::index::Index;

use crate::error::IssuerError;
use crate::service::{Issuer, required, secs};

impl Issuer {
    /// Exchanges an API key for a one-hour access token with the key's scopes.
    pub async fn exchange_sdk_token(
        &self,
        account_id: &str,
        key_id: &str,
        secret: &str,
    ) -> Result<(String, i64), IssuerError> {
        let invalid = || IssuerError::InvalidKeyCredentials;
        // Malformed ids are a malformed request, not a failed credential.
        let account_id = AccountId::parse(required("account_id", account_id)?)?;
        let key_id = KeyId::parse(required("key_id", key_id)?)?;
        required("key_secret", secret)?;
        if !self.settings.key_format.is_api_key_secret(secret) {
            return Err(invalid());
        }
        let now = self.now();
        let digest = SecretHash::digest_of(secret);
        // `None`: no such key id, or a secret it does not hold — perhaps
        // created or rotated a moment ago, so worth one catch-up. Refused:
        // revoked, expired, rotated past its grace, or of another account.
        // Granted: the key's scopes as the catalogue grants them now, and
        // the number of the secret presented.
        let decide = |index: &Index| {
            let (record, grants) = index.key(&key_id)?;
            match record.secrets.authenticate(&digest, now) {
                Err(KeyError::WrongSecret) => None,
                Err(_) => Some(None),
                Ok(()) if record.account_id != account_id => Some(None),
                Ok(()) => Some(
                    record
                        .secrets
                        .version_of(&digest)
                        .map(|version| (index.catalogue().resolve(grants), version)),
                ),
            }
        };
        let (scopes, version): (Scopes, u32) = self
            .decide_in_memory(decide)
            .await?
            .flatten()
            .ok_or_else(invalid)?;
        let ttl = self.settings.sdk_token_ttl;
        let mut claims = self.claims(key_id.to_string(), account_id, &scopes, None, ttl, now);
        // Bound to the secret it came from: rotated away or revoked, the
        // token dies with it rather than living out its hour.
        claims.ksv = Some(version);
        let token = self.sign(&claims)?;
        Ok((token, secs(ttl)))
    }
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, Utc};
    use gatehouse_domain::ids::AccountId;
    use gatehouse_domain::scope::Scopes;

    use crate::IssuerError;
    use crate::service::{CallContext, Principal};
    use crate::testing::issuer;

    /// Keys created and rotated a moment ago are exchanged (the index
    /// catches up once for a key or secret it has not seen), and then,
    /// with the database closed, every exchange and every admin call's
    /// key or SDK-token authentication still gets its answer: they make no
    /// database call.
    #[tokio::test]
    async fn the_exchange_answers_decide_in_memory_with_no_database_call() {
        let dir = tempfile::tempdir().unwrap();
        let issuer = issuer(&dir).await;
        let account_id = AccountId::from_uuid(uuid::Uuid::now_v7());
        let account = account_id.to_string();
        let owner = Principal {
            account_id,
            subject: "owner".into(),
            grants: Scopes::parse(&["*"]).unwrap(),
            session: None,
        };
        let ctx = CallContext::default();
        let scopes = Scopes::parse(&["keys:read"]).unwrap();
        let created = issuer
            .create_key(&owner, account_id, "sdk", scopes.clone(), None, &ctx)
            .await
            .unwrap();
        let revoked = issuer
            .create_key(&owner, account_id, "revoked", scopes, None, &ctx)
            .await
            .unwrap();
        let key_id = created.key.key_id.to_string();
        let first = created.secret.clone();
        issuer
            .exchange_sdk_token(&account, &key_id, &first)
            .await
            .unwrap();
        let rotated = issuer
            .rotate_key(
                &owner,
                account_id,
                created.key.key_id,
                Some(Duration::hours(1)),
                &ctx,
            )
            .await
            .unwrap();
        issuer
            .revoke_key(&owner, account_id, revoked.key.key_id, "done", &ctx)
            .await
            .unwrap();
        // The rotated key's new secret, seen here first.
        issuer
            .exchange_sdk_token(&account, &key_id, &rotated.secret)
            .await
            .unwrap();

        issuer.store().close().await;
        let verifier = issuer.keyring().verifier(Utc::now());
        for (secret, version) in [(&rotated.secret, 1), (&first, 0)] {
            let (token, expires_in) = issuer
                .exchange_sdk_token(&account, &key_id, secret)
                .await
                .unwrap();
            assert_eq!(expires_in, 3600);
            let claims = verifier
                .verify(&token, Some("test"), Utc::now().timestamp())
                .unwrap();
            assert_eq!(claims.sub, key_id);
            assert_eq!(claims.acc, account);
            assert_eq!(
                claims.ksv,
                Some(version),
                "bound to the secret it came from"
            );
        }
        let refused = |result: Result<(String, i64), IssuerError>| {
            assert!(
                matches!(result, Err(IssuerError::InvalidKeyCredentials)),
                "{result:?}"
            )
        };
        refused(
            issuer
                .exchange_sdk_token(
                    &revoked.key.account_id.to_string(),
                    &revoked.key.key_id.to_string(),
                    &revoked.secret,
                )
                .await,
        );
        let other = AccountId::from_uuid(uuid::Uuid::now_v7()).to_string();
        refused(issuer.exchange_sdk_token(&other, &key_id, &first).await);

        // Admin calls authenticate from memory too: by the key's secret,
        // and by an SDK token, which dies with its key.
        let by_secret = issuer.authenticate(Some(&rotated.secret)).await.unwrap();
        assert_eq!(by_secret.subject, key_id);
        assert_eq!(by_secret.account_id, account_id);
        let (token, _) = issuer
            .exchange_sdk_token(&account, &key_id, &rotated.secret)
            .await
            .unwrap();
        let by_token = issuer.authenticate(Some(&token)).await.unwrap();
        assert_eq!(by_token.grants, by_secret.grants);
        let reason = |result: Result<Principal, IssuerError>| match result {
            Err(IssuerError::Unauthenticated { reason }) => reason,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            reason(issuer.authenticate(Some(&revoked.secret)).await),
            "KEY_REVOKED"
        );
    }
}
