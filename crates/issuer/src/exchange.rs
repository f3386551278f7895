//! The SDK-token exchange: an API key for a one-hour access token.

use gatehouse_domain::apikey::{ApiKey, ApiKeyEvent};
use gatehouse_domain::ids::{AccountId, KeyId};
use gatehouse_domain::secret::SecretHash;

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
        let (events, _) = self.load(&key_id.stream(), ApiKeyEvent::decode).await?;
        let key = ApiKey::fold(&events).ok_or_else(invalid)?;
        let now = self.now();
        let hash = SecretHash::of(secret);
        key.authenticate(&hash, now).map_err(|_| invalid())?;
        if key.account_id != account_id {
            return Err(invalid());
        }
        let ttl = self.settings.sdk_token_ttl;
        let scopes = self.resolve(&key.scopes).await?;
        let mut claims = self.claims(key.id.to_string(), key.account_id, &scopes, None, ttl, now);
        // Bound to the secret it came from: rotated away or revoked, the
        // token dies with it rather than living out its hour.
        claims.ksv = Some(key.secret_version(&hash).ok_or_else(|| {
            IssuerError::Internal("an authenticated secret has no version".into())
        })?);
        let token = self.sign(&claims)?;
        Ok((token, secs(ttl)))
    }
}
