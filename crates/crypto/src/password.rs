//! argon2id password hashing, off the async runtime.
//!
//! Each hash takes ~19 MiB and tens of milliseconds of one core. Hashes run on
//! tokio's blocking pool behind a semaphore, so a login flood queues here
//! instead of starving `Verify` or exhausting memory.

use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;
use tracing::Instrument as _;

use crate::CryptoError;

/// OWASP Password Storage Cheat Sheet: argon2id, m = 19 MiB, t = 2, p = 1.
fn argon2() -> Result<Argon2<'static>, CryptoError> {
    let params =
        Params::new(19 * 1024, 2, 1, None).map_err(|e| CryptoError::PasswordHash(e.to_string()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Hashes and verifies passwords on a bounded pool.
#[derive(Clone)]
pub struct PasswordHasher {
    permits: Arc<Semaphore>,
    /// Verified against when the user does not exist, so "unknown user" costs
    /// the same as "wrong password" and the two cannot be told apart by timing.
    dummy_hash: Arc<str>,
}

impl std::fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordHasher")
            .field("available", &self.permits.available_permits())
            .finish_non_exhaustive()
    }
}

impl PasswordHasher {
    /// A hasher running at most `max_parallel` hashes at once. Computes the
    /// dummy hash (blocking, once, at start-up).
    pub fn new(max_parallel: usize) -> Result<Self, CryptoError> {
        let random: [u8; 16] = crate::random::bytes()?;
        let dummy = hash_blocking(&format!("{random:?}"))?;
        Ok(Self {
            permits: Arc::new(Semaphore::new(max_parallel.max(1))),
            dummy_hash: dummy.into(),
        })
    }

    /// The PHC string of `password`.
    pub async fn hash(&self, password: String) -> Result<String, CryptoError> {
        self.run(move || hash_blocking(&password)).await?
    }

    /// Whether `password` matches `phc`; with `None` (no such user) it verifies
    /// against the dummy hash and answers `false`, taking the same time.
    pub async fn verify(&self, password: String, phc: Option<String>) -> Result<bool, CryptoError> {
        let known = phc.is_some();
        let phc = phc.unwrap_or_else(|| self.dummy_hash.to_string());
        let matched = self.run(move || verify_blocking(&password, &phc)).await??;
        Ok(known && matched)
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, CryptoError> {
        // The permit moves into the blocking task: a caller that gives up
        // (cancelled request) does not free a slot while its hash still runs.
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| CryptoError::PoolClosed)?;
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            span.in_scope(work)
        })
        .instrument(tracing::Span::current())
        .await
        .map_err(|_| CryptoError::PoolClosed)
    }
}

fn hash_blocking(password: &str) -> Result<String, CryptoError> {
    let salt_bytes: [u8; 16] = crate::random::bytes()?;
    let salt = SaltString::encode_b64(&salt_bytes)
        .map_err(|e| CryptoError::PasswordHash(e.to_string()))?;
    argon2()?
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| CryptoError::PasswordHash(e.to_string()))
}

fn verify_blocking(password: &str, phc: &str) -> Result<bool, CryptoError> {
    let parsed = PasswordHash::new(phc).map_err(|e| CryptoError::PasswordHash(e.to_string()))?;
    // Parameters come from the stored hash, so old hashes keep verifying after
    // the defaults are raised.
    Ok(argon2()?
        .verify_password(password.as_bytes(), &parsed)
        .is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_are_argon2id_and_verify() {
        let hasher = PasswordHasher::new(2).unwrap();
        let hash = hasher.hash("correct horse battery".into()).await.unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(!hash.contains("correct horse"));
        assert!(
            hasher
                .verify("correct horse battery".into(), Some(hash.clone()))
                .await
                .unwrap()
        );
        assert!(!hasher.verify("wrong".into(), Some(hash)).await.unwrap());
        assert!(!hasher.verify("anything".into(), None).await.unwrap());
    }
}
