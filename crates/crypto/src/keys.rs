//! Ed25519 signing keys: generated here, sealed with the master key before
//! they reach the event log, unsealed only inside issuers.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{DecodingKey, EncodingKey};

use crate::CryptoError;
use crate::master::MasterKey;

/// A freshly generated key, ready to be recorded as `SigningKeyCreated`.
pub struct GeneratedKey {
    pub kid: String,
    /// base64url public key (JWK `x`).
    pub public_key: String,
    /// PKCS#8, sealed with the master key and bound to the kid.
    pub sealed_private_key: String,
}

impl std::fmt::Debug for GeneratedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeneratedKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// Generates a key pair and seals its private half.
pub fn generate(master: &MasterKey) -> Result<GeneratedKey, CryptoError> {
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
        .map_err(|_| CryptoError::KeyGeneration)?;
    let pair =
        Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|_| CryptoError::KeyGeneration)?;
    let kid = uuid::Uuid::now_v7().simple().to_string();
    Ok(GeneratedKey {
        public_key: URL_SAFE_NO_PAD.encode(pair.public_key().as_ref()),
        sealed_private_key: master.seal(pkcs8.as_ref(), &kid)?,
        kid,
    })
}

/// A key that signs access tokens.
#[derive(Clone)]
pub struct Signer {
    pub kid: String,
    pub(crate) key: EncodingKey,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// Unseals a recorded private key.
    pub fn unseal(master: &MasterKey, kid: &str, sealed: &str) -> Result<Self, CryptoError> {
        let pkcs8 = master.open(sealed, kid)?;
        Ed25519KeyPair::from_pkcs8(&pkcs8).map_err(|_| CryptoError::Unseal)?;
        Ok(Self {
            kid: kid.to_string(),
            key: EncodingKey::from_ed_der(&pkcs8),
        })
    }
}

/// The verifying half of a published key.
pub fn decoding_key(public_key: &str) -> Result<DecodingKey, CryptoError> {
    DecodingKey::from_ed_components(public_key).map_err(|_| CryptoError::KeyGeneration)
}
