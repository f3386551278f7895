//! Signing keys — Ed25519 (default), ECDSA P-256 or RSA-2048 — generated here
//! with aws-lc-rs, sealed with the master key before they reach the event log,
//! unsealed only inside issuers, and published as JWKs.

use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RsaKeyPair,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use gatehouse_domain::signing::SigningAlg;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use serde::Serialize;

use crate::CryptoError;
use crate::master::MasterKey;

/// A freshly generated key, ready to be recorded as `SigningKeyCreated`.
pub struct GeneratedKey {
    pub kid: String,
    pub alg: SigningAlg,
    /// The public JWK members, base64url, joined by `.` (`x`, `x.y`, `n.e`).
    pub public_key: String,
    /// PKCS#8, sealed with the master key and bound to the kid.
    pub sealed_private_key: String,
}

impl std::fmt::Debug for GeneratedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeneratedKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Generates a key pair for `alg` and seals its private half (PKCS#8).
pub fn generate(master: &MasterKey, alg: SigningAlg) -> Result<GeneratedKey, CryptoError> {
    let failed = |_| CryptoError::KeyGeneration;
    let (pkcs8, public_key): (Vec<u8>, String) = match alg {
        SigningAlg::EdDSA => {
            let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).map_err(failed)?;
            let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
                .map_err(|_| CryptoError::KeyGeneration)?;
            let x = b64(pair.public_key().as_ref());
            (pkcs8.as_ref().to_vec(), x)
        }
        SigningAlg::ES256 => {
            let pkcs8 = EcdsaKeyPair::generate_pkcs8(
                &ECDSA_P256_SHA256_FIXED_SIGNING,
                &SystemRandom::new(),
            )
            .map_err(failed)?;
            let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
                .map_err(|_| CryptoError::KeyGeneration)?;
            // SEC1 uncompressed point: 0x04 ‖ x ‖ y, 32 bytes each on P-256.
            let point = pair.public_key().as_ref();
            if point.len() != 65 || point[0] != 4 {
                return Err(CryptoError::KeyGeneration);
            }
            let xy = format!("{}.{}", b64(&point[1..33]), b64(&point[33..]));
            (pkcs8.as_ref().to_vec(), xy)
        }
        SigningAlg::RS256 => {
            let pair = RsaKeyPair::generate(KeySize::Rsa2048).map_err(failed)?;
            let pkcs8 = pair.as_der().map_err(failed)?;
            let public = pair.public_key();
            let ne = format!(
                "{}.{}",
                b64(public.modulus().big_endian_without_leading_zero()),
                b64(public.exponent().big_endian_without_leading_zero())
            );
            (pkcs8.as_ref().to_vec(), ne)
        }
    };
    let kid = uuid::Uuid::now_v7().simple().to_string();
    Ok(GeneratedKey {
        public_key,
        sealed_private_key: master.seal(&pkcs8, &kid)?,
        kid,
        alg,
    })
}

/// jsonwebtoken's name of `alg`.
pub fn algorithm(alg: SigningAlg) -> Algorithm {
    match alg {
        SigningAlg::EdDSA => Algorithm::EdDSA,
        SigningAlg::ES256 => Algorithm::ES256,
        SigningAlg::RS256 => Algorithm::RS256,
    }
}

/// A key that signs access tokens.
#[derive(Clone)]
pub struct Signer {
    pub kid: String,
    pub(crate) alg: Algorithm,
    pub(crate) key: EncodingKey,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// Unseals a recorded private key and checks it is a key of `alg`.
    pub fn unseal(
        master: &MasterKey,
        kid: &str,
        alg: SigningAlg,
        sealed: &str,
    ) -> Result<Self, CryptoError> {
        let pkcs8 = master.open(sealed, kid)?;
        let key = match alg {
            SigningAlg::EdDSA => {
                Ed25519KeyPair::from_pkcs8(&pkcs8).map_err(|_| CryptoError::Unseal)?;
                EncodingKey::from_ed_der(&pkcs8)
            }
            SigningAlg::ES256 => {
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8)
                    .map_err(|_| CryptoError::Unseal)?;
                EncodingKey::from_ec_der(&pkcs8)
            }
            SigningAlg::RS256 => {
                RsaKeyPair::from_pkcs8(&pkcs8).map_err(|_| CryptoError::Unseal)?;
                // jsonwebtoken signs with an RFC 8017 RSAPrivateKey.
                EncodingKey::from_rsa_der(pkcs8_private_key(&pkcs8).ok_or(CryptoError::Unseal)?)
            }
        };
        Ok(Self {
            kid: kid.to_string(),
            alg: algorithm(alg),
            key,
        })
    }
}

/// The `privateKey` OCTET STRING of a PKCS#8 v1 `PrivateKeyInfo` (RFC 5208):
/// `SEQUENCE { INTEGER version, SEQUENCE algorithm, OCTET STRING privateKey }`.
fn pkcs8_private_key(der: &[u8]) -> Option<&[u8]> {
    /// One DER element at the start of `input`: (tag, contents, rest).
    fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let (&tag, rest) = input.split_first()?;
        let (&first, rest) = rest.split_first()?;
        let (len, rest) = if first < 0x80 {
            (usize::from(first), rest)
        } else {
            let count = usize::from(first & 0x7f);
            if count == 0 || count > 4 || rest.len() < count {
                return None;
            }
            let len = rest[..count]
                .iter()
                .fold(0usize, |len, b| (len << 8) | usize::from(*b));
            (len, &rest[count..])
        };
        (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
    }
    let (0x30, info, _) = element(der)? else {
        return None;
    };
    let (0x02, _, rest) = element(info)? else {
        return None;
    };
    let (0x30, _, rest) = element(rest)? else {
        return None;
    };
    let (0x04, key, _) = element(rest)? else {
        return None;
    };
    Some(key)
}

/// Splits a recorded public key into its base64url members.
fn members(public_key: &str, count: usize) -> Result<Vec<&str>, CryptoError> {
    let parts: Vec<&str> = public_key.split('.').collect();
    if parts.len() == count && parts.iter().all(|p| !p.is_empty()) {
        Ok(parts)
    } else {
        Err(CryptoError::KeyGeneration)
    }
}

/// The verifying half of a published key of `alg`.
pub fn decoding_key(alg: SigningAlg, public_key: &str) -> Result<DecodingKey, CryptoError> {
    let bad = |_| CryptoError::KeyGeneration;
    match alg {
        SigningAlg::EdDSA => DecodingKey::from_ed_components(public_key).map_err(bad),
        SigningAlg::ES256 => {
            let xy = members(public_key, 2)?;
            DecodingKey::from_ec_components(xy[0], xy[1]).map_err(bad)
        }
        SigningAlg::RS256 => {
            let ne = members(public_key, 2)?;
            DecodingKey::from_rsa_components(ne[0], ne[1]).map_err(bad)
        }
    }
}

/// A published key as an RFC 7517 JWK.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PublicJwk {
    pub kty: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crv: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub e: Option<String>,
    pub kid: String,
    pub alg: &'static str,
    #[serde(rename = "use")]
    pub use_: &'static str,
}

impl PublicJwk {
    /// The JWK of a recorded key.
    pub fn new(kid: &str, alg: SigningAlg, public_key: &str) -> Result<Self, CryptoError> {
        let mut jwk = Self {
            kty: "OKP",
            crv: None,
            x: None,
            y: None,
            n: None,
            e: None,
            kid: kid.to_string(),
            alg: alg.as_str(),
            use_: "sig",
        };
        match alg {
            SigningAlg::EdDSA => {
                jwk.crv = Some("Ed25519");
                jwk.x = Some(members(public_key, 1)?[0].to_string());
            }
            SigningAlg::ES256 => {
                let xy = members(public_key, 2)?;
                jwk.kty = "EC";
                jwk.crv = Some("P-256");
                jwk.x = Some(xy[0].to_string());
                jwk.y = Some(xy[1].to_string());
            }
            SigningAlg::RS256 => {
                let ne = members(public_key, 2)?;
                jwk.kty = "RSA";
                jwk.n = Some(ne[0].to_string());
                jwk.e = Some(ne[1].to_string());
            }
        }
        Ok(jwk)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_algorithm_generates_unseals_and_publishes() {
        let master = MasterKey::from_base64(&MasterKey::generate_base64().unwrap()).unwrap();
        for alg in [SigningAlg::EdDSA, SigningAlg::ES256, SigningAlg::RS256] {
            let key = generate(&master, alg).unwrap();
            assert_eq!(key.alg, alg);
            assert!(!format!("{key:?}").contains(&key.sealed_private_key));
            let signer = Signer::unseal(&master, &key.kid, alg, &key.sealed_private_key).unwrap();
            assert_eq!(signer.alg, algorithm(alg));
            decoding_key(alg, &key.public_key).unwrap();
            let jwk = PublicJwk::new(&key.kid, alg, &key.public_key).unwrap();
            assert_eq!(jwk.alg, alg.as_str());
            // A key is unsealed only as the algorithm it was made for.
            let other = match alg {
                SigningAlg::EdDSA => SigningAlg::ES256,
                _ => SigningAlg::EdDSA,
            };
            assert!(Signer::unseal(&master, &key.kid, other, &key.sealed_private_key).is_err());
        }
    }

    #[test]
    fn jwks_carry_each_algorithms_members() {
        let es = PublicJwk::new("k", SigningAlg::ES256, "eA.eQ").unwrap();
        let json = serde_json::to_value(&es).unwrap();
        assert_eq!(json["kty"], "EC");
        assert_eq!(json["crv"], "P-256");
        assert_eq!(
            (json["x"].as_str(), json["y"].as_str()),
            (Some("eA"), Some("eQ"))
        );
        assert!(json.get("n").is_none());
        let rs = serde_json::to_value(PublicJwk::new("k", SigningAlg::RS256, "bg.AQAB").unwrap())
            .unwrap();
        assert_eq!(
            (rs["kty"].as_str(), rs["e"].as_str()),
            (Some("RSA"), Some("AQAB"))
        );
        assert!(rs.get("crv").is_none());
        assert!(PublicJwk::new("k", SigningAlg::ES256, "only-x").is_err());
    }

    #[test]
    fn malformed_pkcs8_is_refused_not_panicked_on() {
        for der in [
            &[][..],
            &[0x30],
            &[0x30, 0x85, 1, 1, 1, 1, 1],
            &[0x30, 0x02, 0x02, 0x00],
        ] {
            assert_eq!(pkcs8_private_key(der), None);
        }
    }
}
