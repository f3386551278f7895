//! Token and key crypto for Gatehouse. Everything that touches key material or
//! a hash function with a cost lives here, behind small types:
//!
//! - [`password`]: argon2id (OWASP parameters) on a bounded blocking pool, with
//!   a dummy hash so unknown users cost the same as wrong passwords;
//! - [`master`]: the master key that seals signing keys at rest (AES-256-GCM);
//! - [`keys`]: Ed25519 signing-key generation and (un)sealing;
//! - [`jwt`]: access-token claims, signing, and strict verification (RFC 8725);
//! - [`random`]: secure random bytes.

pub mod jwt;
pub mod keys;
pub mod master;
pub mod password;
pub mod random;

/// Failures of the crypto layer. Messages never contain key material.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("master key: {0}")]
    MasterKey(String),
    #[error("cannot unseal a signing key (wrong master key?)")]
    Unseal,
    #[error("key generation failed")]
    KeyGeneration,
    #[error("password hashing failed: {0}")]
    PasswordHash(String),
    #[error("the password hashing pool is gone")]
    PoolClosed,
    #[error("token signing failed: {0}")]
    Signing(String),
    #[error("random number generator failed")]
    Random,
}
