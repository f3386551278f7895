//! Credential formats and the hashes stored in their place.
//!
//! - API key secret: `<prefix>_<env>_<body><checksum>` — `body` is 33 base62
//!   characters of 192 random bits, `checksum` 6 base62 characters of the
//!   CRC32 of everything before it. The checksum lets a verifier reject a typo or
//!   a random string without a lookup, and lets secret scanners recognise keys.
//! - Refresh token: `<prefix>_rt_<session id, 32 hex><body>` — `body` is 43
//!   base62 characters of 256 random bits. The session id in the clear lets the
//!   issuer load the session's stream directly; only the hash is stored.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::DomainError;
use crate::ids::SessionId;

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const KEY_BODY_LEN: usize = 33;
const CHECKSUM_LEN: usize = 6;
const REFRESH_BODY_LEN: usize = 43;
/// Longest credential worth looking at; anything longer is malformed.
pub const MAX_CREDENTIAL_LEN: usize = 4096;

/// SHA-256 of a secret, hex-encoded: what is stored instead of the secret.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretHash(String);

impl SecretHash {
    pub fn of(secret: &str) -> Self {
        let digest = Sha256::digest(secret.as_bytes());
        Self(digest.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// The raw SHA-256 of a secret: what [`Self::digest`] returns for
    /// [`Self::of`], without the hex round trip.
    pub fn digest_of(secret: &str) -> [u8; 32] {
        Sha256::digest(secret.as_bytes()).into()
    }

    /// The hash whose [`Self::digest`] is `digest` (an index's compact
    /// form back into the one the domain compares).
    pub fn from_digest(digest: &[u8; 32]) -> Self {
        Self(digest.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// Constant-time comparison.
    pub fn matches(&self, other: &SecretHash) -> bool {
        self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The 32 bytes the hex stands for: what an in-memory index keys on
    /// (a third of the hex string's size, and no allocation). `None` for a
    /// hash that is not 64 lowercase hex digits, which no secret hashes to.
    pub fn digest(&self) -> Option<[u8; 32]> {
        let hex = self.0.as_bytes();
        if hex.len() != 64 {
            return None;
        }
        // Lowercase only, as `of` writes it: one digest, one spelling.
        let nibble = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        };
        let mut out = [0u8; 32];
        for (byte, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
            *byte = nibble(pair[0])? << 4 | nibble(pair[1])?;
        }
        Some(out)
    }
}

impl std::fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretHash({}…)", &self.0[..8.min(self.0.len())])
    }
}

/// The last 4 characters of a secret, shown in listings to tell keys apart.
pub fn hint(secret: &str) -> String {
    let chars: Vec<char> = secret.chars().collect();
    chars[chars.len().saturating_sub(4)..].iter().collect()
}

/// Fixed-width base62 of a big-endian byte string.
fn base62(bytes: &[u8], width: usize) -> String {
    let mut digits = bytes.to_vec();
    let mut out = vec![b'0'; width];
    for slot in out.iter_mut().rev() {
        let mut remainder: u32 = 0;
        for digit in digits.iter_mut() {
            let acc = (remainder << 8) | u32::from(*digit);
            *digit = (acc / 62) as u8;
            remainder = acc % 62;
        }
        *slot = BASE62[remainder as usize];
    }
    String::from_utf8(out).unwrap_or_default()
}

fn is_base62(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_alphanumeric())
}

fn checksum(text: &str) -> String {
    base62(
        &crc32fast::hash(text.as_bytes()).to_be_bytes(),
        CHECKSUM_LEN,
    )
}

/// How API key secrets of this deployment start: `wc` and `live` in `wc_live_…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFormat {
    pub prefix: String,
    pub environment: String,
}

impl KeyFormat {
    /// Both parts 1–16 characters of `[a-z0-9]`.
    pub fn new(prefix: &str, environment: &str) -> Result<Self, DomainError> {
        let ok = |s: &str| {
            (1..=16).contains(&s.len())
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        };
        if !ok(prefix) || !ok(environment) {
            return Err(DomainError::invalid(
                "key format",
                "prefix and environment must be 1-16 of [a-z0-9]",
            ));
        }
        Ok(Self {
            prefix: prefix.to_string(),
            environment: environment.to_string(),
        })
    }

    /// Formats a new API key secret from 24 random bytes.
    pub fn api_key_secret(&self, random: &[u8; 24]) -> String {
        let head = format!(
            "{}_{}_{}",
            self.prefix,
            self.environment,
            base62(random, KEY_BODY_LEN)
        );
        let sum = checksum(&head);
        format!("{head}{sum}")
    }

    /// Whether `secret` is shaped like one of this deployment's API keys and
    /// its checksum holds — no lookup needed to reject typos and noise.
    /// Whether `credential` starts as this deployment's keys do
    /// (`wc_live_`): such a string is judged as a key (a bad checksum is
    /// `BAD_CHECKSUM`), never as a JWT.
    pub fn looks_like_api_key(&self, credential: &str) -> bool {
        credential
            .strip_prefix(self.prefix.as_str())
            .and_then(|rest| rest.strip_prefix('_'))
            .and_then(|rest| rest.strip_prefix(self.environment.as_str()))
            .is_some_and(|rest| rest.starts_with('_'))
    }

    pub fn is_api_key_secret(&self, secret: &str) -> bool {
        let expected_len =
            self.prefix.len() + self.environment.len() + 2 + KEY_BODY_LEN + CHECKSUM_LEN;
        if secret.len() != expected_len || !secret.is_ascii() {
            return false;
        }
        let Some(rest) = secret
            .strip_prefix(self.prefix.as_str())
            .and_then(|s| s.strip_prefix('_'))
            .and_then(|s| s.strip_prefix(self.environment.as_str()))
            .and_then(|s| s.strip_prefix('_'))
        else {
            return false;
        };
        if !is_base62(rest) {
            return false;
        }
        let (head, sum) = secret.split_at(secret.len() - CHECKSUM_LEN);
        checksum(head).as_bytes().ct_eq(sum.as_bytes()).into()
    }

    /// Formats a refresh token for `session` from 32 random bytes.
    pub fn refresh_token(&self, session: SessionId, random: &[u8; 32]) -> String {
        format!(
            "{}_rt_{}{}",
            self.prefix,
            session.as_uuid().simple(),
            base62(random, REFRESH_BODY_LEN)
        )
    }

    /// The session a refresh token claims to belong to, if it is well formed.
    pub fn refresh_token_session(&self, token: &str) -> Option<SessionId> {
        if token.len() > MAX_CREDENTIAL_LEN {
            return None;
        }
        let rest = token
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix("_rt_")?;
        if rest.len() != 32 + REFRESH_BODY_LEN || !is_base62(rest) {
            return None;
        }
        let (session, _) = rest.split_at(32);
        SessionId::parse(session).ok()
    }
}

#[cfg(test)]
mod digest_tests {
    use super::SecretHash;

    #[test]
    fn the_digest_is_the_sha256_the_hex_spells() {
        // SHA-256 of "abc", the FIPS 180-2 example.
        let hash = SecretHash::of("abc");
        let digest = hash.digest().unwrap();
        assert_eq!(digest[..4], [0xba, 0x78, 0x16, 0xbf]);
        assert_eq!(digest[31], 0xad);
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, hash.as_str());
        assert_eq!(SecretHash::from_digest(&digest), hash, "and back");
        assert!(SecretHash(String::from("zz")).digest().is_none());
        assert!(SecretHash("g".repeat(64)).digest().is_none());
        assert!(
            SecretHash("AB".repeat(32)).digest().is_none(),
            "one spelling"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn format() -> KeyFormat {
        KeyFormat::new("wc", "live").unwrap()
    }

    #[test]
    fn api_key_secrets_carry_a_checksum() {
        let secret = format().api_key_secret(&[7; 24]);
        assert!(secret.starts_with("wc_live_"));
        assert_eq!(secret.len(), 8 + 33 + 6);
        assert!(format().is_api_key_secret(&secret));
        // One changed character breaks the checksum.
        let mut typo = secret.clone().into_bytes();
        typo[12] = if typo[12] == b'a' { b'b' } else { b'a' };
        assert!(!format().is_api_key_secret(&String::from_utf8(typo).unwrap()));
        assert!(
            !KeyFormat::new("wc", "test")
                .unwrap()
                .is_api_key_secret(&secret)
        );
        assert!(!format().is_api_key_secret("wc_live_"));
        assert!(!format().is_api_key_secret(&"x".repeat(1 << 20)));
        assert_ne!(format().api_key_secret(&[8; 24]), secret);
    }

    #[test]
    fn base62_is_fixed_width_and_distinct() {
        assert_eq!(base62(&[0; 4], 6), "000000");
        assert_eq!(base62(&[0, 0, 0, 61], 6), "00000z");
        assert_eq!(base62(&[0, 0, 0, 62], 6), "000010");
        assert_eq!(base62(&[0xff; 24], KEY_BODY_LEN).len(), KEY_BODY_LEN);
    }

    #[test]
    fn refresh_tokens_name_their_session() {
        let session = SessionId::parse("0193a1b2-7c3d-7e4f-8a9b-0c1d2e3f4a5b").unwrap();
        let token = format().refresh_token(session, &[1; 32]);
        assert!(token.starts_with("wc_rt_0193a1b27c3d7e4f8a9b0c1d2e3f4a5b"));
        assert_eq!(format().refresh_token_session(&token), Some(session));
        assert_eq!(format().refresh_token_session("wc_rt_garbage"), None);
        assert_eq!(
            format().refresh_token_session(&token[..token.len() - 1]),
            None
        );
    }

    #[test]
    fn hashes_hide_secrets_even_in_debug() {
        let hash = SecretHash::of("wc_live_secret");
        assert_eq!(hash.as_str().len(), 64);
        assert!(hash.matches(&SecretHash::of("wc_live_secret")));
        assert!(!hash.matches(&SecretHash::of("wc_live_secreT")));
        assert!(!format!("{hash:?}").contains(hash.as_str()));
        assert_eq!(hint("wc_live_abcd1234"), "1234");
    }
}
