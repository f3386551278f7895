//! The master key that seals signing keys at rest.
//!
//! From `GATEHOUSE_MASTER_KEY` (32 bytes, base64) or a key file. The embedded
//! default creates the file (mode 0600) on first start; every issuer sharing a
//! Postgres must be given the same key.

use std::io::Write as _;
use std::path::Path;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

use crate::CryptoError;

/// An AES-256-GCM key. `Debug` prints nothing of it.
pub struct MasterKey {
    key: LessSafeKey,
    /// Derives the synthetic nonces of [`MasterKey::seal_cursor`].
    nonces: hmac::Key,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(…)")
    }
}

impl MasterKey {
    /// From 32 bytes, base64-encoded.
    pub fn from_base64(encoded: &str) -> Result<Self, CryptoError> {
        let bytes = STANDARD
            .decode(encoded.trim())
            .map_err(|_| CryptoError::MasterKey("not valid base64".into()))?;
        Self::from_bytes(&bytes)
    }

    fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        if bytes.len() != 32 {
            return Err(CryptoError::MasterKey(format!(
                "must be 32 bytes, got {}",
                bytes.len()
            )));
        }
        let key = UnboundKey::new(&AES_256_GCM, bytes)
            .map_err(|_| CryptoError::MasterKey("rejected".into()))?;
        let derived = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, bytes),
            b"gatehouse/cursor-nonce/v1",
        );
        Ok(Self {
            key: LessSafeKey::new(key),
            nonces: hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref()),
        })
    }

    /// A new random key, base64-encoded (for `GATEHOUSE_MASTER_KEY`).
    pub fn generate_base64() -> Result<String, CryptoError> {
        Ok(STANDARD.encode(crate::random::bytes::<32>()?))
    }

    /// Reads the key file, or creates it (0600) if it does not exist. Returns
    /// whether it was created.
    ///
    /// Safe when several processes start at once on one fresh data
    /// directory: the key is written whole to a file of its own and linked
    /// into place, which fails if another process linked first; that one's
    /// key is then read. No process ever reads a half-written key.
    pub fn load_or_create(path: &Path) -> Result<(Self, bool), CryptoError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Ok((Self::from_base64(&text)?, false)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(dir) = path.parent().filter(|d| !d.exists()) {
                    let mut builder = std::fs::DirBuilder::new();
                    builder.recursive(true);
                    #[cfg(unix)]
                    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
                    builder
                        .create(dir)
                        .map_err(|e| CryptoError::MasterKey(e.to_string()))?;
                }
                let encoded = Self::generate_base64()?;
                if Self::create_whole(path, &encoded)? {
                    Ok((Self::from_base64(&encoded)?, true))
                } else {
                    // Another process created it first: use that one.
                    Self::load_or_create(path)
                }
            }
            Err(e) => Err(CryptoError::MasterKey(format!(
                "cannot read {}: {e}",
                path.display()
            ))),
        }
    }

    /// Writes `encoded` to a private temporary file beside `path` and links it
    /// to `path`; `false` if `path` already exists.
    fn create_whole(path: &Path, encoded: &str) -> Result<bool, CryptoError> {
        let fail = |e: std::io::Error| {
            CryptoError::MasterKey(format!("cannot create {}: {e}", path.display()))
        };
        let mut temp = path.as_os_str().to_owned();
        let nonce: [u8; 8] = crate::random::bytes()?;
        temp.push(format!(
            ".{}.{}.tmp",
            std::process::id(),
            u64::from_le_bytes(nonce)
        ));
        let temp = std::path::PathBuf::from(temp);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let written = options.open(&temp).and_then(|mut file| {
            file.write_all(encoded.as_bytes())?;
            file.sync_all()
        });
        written.map_err(fail)?;
        let linked = std::fs::hard_link(&temp, path);
        let _ = std::fs::remove_file(&temp);
        match linked {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            // A filesystem without hard links (FAT, some network mounts):
            // create it in place, as exclusive as the filesystem allows.
            Err(_) => {
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                match options.open(path) {
                    Ok(mut file) => {
                        file.write_all(encoded.as_bytes())
                            .and_then(|()| file.sync_all())
                            .map_err(fail)?;
                        Ok(true)
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
                    Err(e) => Err(fail(e)),
                }
            }
        }
    }

    /// Encrypts `plaintext`, bound to `context` (e.g. the kid): base64 of
    /// nonce ‖ ciphertext ‖ tag.
    pub fn seal(&self, plaintext: &[u8], context: &str) -> Result<String, CryptoError> {
        let nonce_bytes: [u8; NONCE_LEN] = crate::random::bytes()?;
        let mut in_out = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce_bytes),
                Aad::from(context.as_bytes()),
                &mut in_out,
            )
            .map_err(|_| CryptoError::KeyGeneration)?;
        let mut out = nonce_bytes.to_vec();
        out.extend_from_slice(&in_out);
        Ok(STANDARD.encode(out))
    }

    /// An opaque cursor for `value` under `context` (say, a log position in
    /// one account's activity): deterministic, so one entry always has the
    /// same cursor, and revealing nothing of the value (AES-256-GCM with a
    /// synthetic nonce, the HMAC of context and value, as SIV does), so
    /// cursors cannot be subtracted to count what others wrote. URL-safe.
    pub fn seal_cursor(&self, value: u64, context: &str) -> String {
        let mut input = context.as_bytes().to_vec();
        input.push(0);
        input.extend_from_slice(&value.to_be_bytes());
        let tag = hmac::sign(&self.nonces, &input);
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&tag.as_ref()[..NONCE_LEN]);
        let mut in_out = value.to_be_bytes().to_vec();
        if self
            .key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context.as_bytes()),
                &mut in_out,
            )
            .is_err()
        {
            return String::new();
        }
        let mut out = nonce.to_vec();
        out.extend_from_slice(&in_out);
        URL_SAFE_NO_PAD.encode(out)
    }

    /// The value of a cursor [`MasterKey::seal_cursor`] made for `context`;
    /// `None` for anything else (another context's cursor included).
    pub fn open_cursor(&self, cursor: &str, context: &str) -> Option<u64> {
        if cursor.len() > 64 {
            return None;
        }
        let bytes = URL_SAFE_NO_PAD.decode(cursor).ok()?;
        if bytes.len() != NONCE_LEN + 8 + AES_256_GCM.tag_len() {
            return None;
        }
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut in_out = sealed.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(context.as_bytes()), &mut in_out)
            .ok()?;
        Some(u64::from_be_bytes(plain.try_into().ok()?))
    }

    /// Decrypts what [`MasterKey::seal`] produced with the same `context`.
    pub fn open(&self, sealed: &str, context: &str) -> Result<Vec<u8>, CryptoError> {
        let bytes = STANDARD.decode(sealed).map_err(|_| CryptoError::Unseal)?;
        if bytes.len() < NONCE_LEN {
            return Err(CryptoError::Unseal);
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| CryptoError::Unseal)?;
        let mut in_out = ciphertext.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(context.as_bytes()), &mut in_out)
            .map_err(|_| CryptoError::Unseal)?;
        Ok(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_are_stable_opaque_and_bound_to_their_context() {
        let key = MasterKey::from_bytes(&[7u8; 32]).unwrap();
        let a = key.seal_cursor(41, "activity:a");
        assert_eq!(a, key.seal_cursor(41, "activity:a"), "deterministic");
        assert_ne!(a, key.seal_cursor(42, "activity:a"));
        assert_ne!(a, key.seal_cursor(41, "activity:b"));
        let raw = URL_SAFE_NO_PAD.decode(&a).unwrap();
        assert!(
            !raw.windows(8).any(|w| w == 41u64.to_be_bytes()) && a.len() < 64,
            "the value does not stand in the cursor: {a}"
        );
        assert_eq!(key.open_cursor(&a, "activity:a"), Some(41));
        assert_eq!(key.open_cursor(&a, "activity:b"), None, "another context's");
        let other = MasterKey::from_bytes(&[8u8; 32]).unwrap();
        assert_eq!(other.open_cursor(&a, "activity:a"), None, "another key's");
        for bad in ["", "41", "!!!", &"A".repeat(100), &a[..a.len() - 1]] {
            assert_eq!(key.open_cursor(bad, "activity:a"), None, "{bad:?}");
        }
    }

    #[test]
    fn sealed_material_opens_only_with_the_same_key_and_context() {
        let key = MasterKey::from_base64(&MasterKey::generate_base64().unwrap()).unwrap();
        let sealed = key.seal(b"private", "kid-1").unwrap();
        assert!(!sealed.contains("private"));
        assert_eq!(key.open(&sealed, "kid-1").unwrap(), b"private");
        assert!(key.open(&sealed, "kid-2").is_err());
        let other = MasterKey::from_base64(&MasterKey::generate_base64().unwrap()).unwrap();
        assert!(other.open(&sealed, "kid-1").is_err());
        assert!(MasterKey::from_base64("c2hvcnQ=").is_err());
        assert_eq!(format!("{key:?}"), "MasterKey(…)");
    }

    #[test]
    fn the_key_file_is_created_private_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/master.key");
        let (first, created) = MasterKey::load_or_create(&path).unwrap();
        assert!(created);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(
                std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        let (second, created) = MasterKey::load_or_create(&path).unwrap();
        assert!(!created);
        let sealed = first.seal(b"x", "c").unwrap();
        assert_eq!(second.open(&sealed, "c").unwrap(), b"x");
    }
}
