//! Access tokens: JWTs with `typ: at+jwt`, the signing key's `alg` (EdDSA,
//! ES256 or RS256) and its `kid`, verified strictly (RFC 8725): a token is
//! checked only with the algorithm of the key its `kid` names (never `none`,
//! never HMAC), `typ` checked, `iss`/`aud`/`exp`/`nbf` required, unknown `kid`
//! refused; `jku`, `x5u` and `jwk` headers are never used.

use std::collections::HashMap;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use gatehouse_domain::signing::SigningAlg;

use crate::CryptoError;
use crate::keys::Signer;

/// The JWT `typ` of access tokens (RFC 9068).
pub const ACCESS_TOKEN_TYPE: &str = "at+jwt";
/// Longest token the verifier will parse.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// Claims of an access token: `iss`, `sub`, `aud`, `exp`, `iat`, `nbf`, `jti`, `acc` (account), `scope`, `sid` (user tokens).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    /// User id (user tokens) or key id (SDK tokens).
    pub sub: String,
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    pub jti: String,
    /// Account id.
    pub acc: String,
    /// Space-separated scopes.
    pub scope: String,
    /// Refresh family (session) of user tokens; absent on SDK tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// Which secret of its key an SDK token was exchanged with (0: the
    /// key's first, n: the n-th rotation's), so the token dies with that
    /// secret; absent on user tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ksv: Option<u32>,
}

impl AccessClaims {
    /// Who the token speaks for, by the domain's one rule (see
    /// `gatehouse_domain::token`), for the issuer and the verifier alike.
    pub fn subject(
        &self,
        max_user_lifetime_secs: i64,
    ) -> Result<gatehouse_domain::token::TokenSubject, gatehouse_domain::token::SubjectError> {
        gatehouse_domain::token::TokenSubject::read(
            gatehouse_domain::token::SubjectClaims {
                acc: &self.acc,
                sub: &self.sub,
                sid: self.sid.as_deref(),
                ksv: self.ksv,
                iat: self.iat,
                exp: self.exp,
            },
            max_user_lifetime_secs,
        )
    }
}

/// Signs `claims` with `signer`.
pub fn sign(claims: &AccessClaims, signer: &Signer) -> Result<String, CryptoError> {
    let mut header = Header::new(signer.alg);
    header.typ = Some(ACCESS_TOKEN_TYPE.to_string());
    header.kid = Some(signer.kid.clone());
    jsonwebtoken::encode(&header, claims, &signer.key)
        .map_err(|e| CryptoError::Signing(e.to_string()))
}

/// Why a token was refused; `reason` is the stable machine-readable code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is malformed")]
    Malformed,
    #[error("the token's algorithm is not allowed")]
    AlgorithmNotAllowed,
    #[error("the token is not an access token")]
    WrongType,
    #[error("the token was signed by an unknown key")]
    UnknownSigningKey,
    #[error("the token's signature is invalid")]
    BadSignature,
    #[error("the token expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token was issued by someone else")]
    WrongIssuer,
    #[error("the token is for another audience")]
    WrongAudience,
}

impl TokenError {
    /// The `google.rpc.ErrorInfo.reason` of this failure.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Malformed | Self::WrongType => "CREDENTIAL_MALFORMED",
            Self::AlgorithmNotAllowed | Self::BadSignature => "BAD_SIGNATURE",
            Self::UnknownSigningKey => "UNKNOWN_SIGNING_KEY",
            Self::Expired => "TOKEN_EXPIRED",
            Self::NotYetValid => "TOKEN_NOT_YET_VALID",
            Self::WrongIssuer => "WRONG_ISSUER",
            Self::WrongAudience => "WRONG_AUDIENCE",
        }
    }
}

/// Verifies access tokens against a set of published keys.
#[derive(Clone)]
pub struct TokenVerifier {
    /// Each published key with the one algorithm it verifies.
    keys: HashMap<String, (Algorithm, DecodingKey)>,
    /// Unix time from which a retired key verifies nothing: every token it
    /// genuinely signed has expired by then, so anything later is forged.
    retired: HashMap<String, i64>,
    issuer: String,
    audience: String,
    leeway_secs: u64,
}

impl TokenVerifier {
    pub fn new(issuer: &str, audience: &str, leeway_secs: u64) -> Self {
        Self {
            keys: HashMap::new(),
            retired: HashMap::new(),
            issuer: issuer.to_string(),
            audience: audience.to_string(),
            leeway_secs,
        }
    }

    /// Adds (or replaces) a published key of `alg`.
    pub fn insert_key(
        &mut self,
        kid: &str,
        alg: SigningAlg,
        public_key: &str,
    ) -> Result<(), CryptoError> {
        self.keys.insert(
            kid.to_string(),
            (
                crate::keys::algorithm(alg),
                crate::keys::decoding_key(alg, public_key)?,
            ),
        );
        Ok(())
    }

    /// Stops accepting `kid` from `published_until` (Unix seconds) on.
    pub fn retire_key(&mut self, kid: &str, published_until: i64) {
        self.retired.insert(kid.to_string(), published_until);
    }

    /// Whether `kid` verifies tokens at `now` (Unix seconds).
    pub fn is_published(&self, kid: &str, now: i64) -> bool {
        self.keys.contains_key(kid) && self.retired.get(kid).is_none_or(|until| now < *until)
    }

    /// Verifies `token` for `audience` (or the configured one) at `now`
    /// (Unix seconds, from the caller's clock): the signature by
    /// jsonwebtoken, the lifetime here, with the leeway, as jsonwebtoken
    /// would judge it against the system clock.
    pub fn verify(
        &self,
        token: &str,
        audience: Option<&str>,
        now: i64,
    ) -> Result<AccessClaims, TokenError> {
        if token.is_empty() || token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        if !matches!(
            header.alg,
            Algorithm::EdDSA | Algorithm::ES256 | Algorithm::RS256
        ) {
            return Err(TokenError::AlgorithmNotAllowed);
        }
        let typ_ok = header.typ.as_deref().is_some_and(|t| {
            t.eq_ignore_ascii_case(ACCESS_TOKEN_TYPE)
                || t.eq_ignore_ascii_case("application/at+jwt")
        });
        if !typ_ok {
            return Err(TokenError::WrongType);
        }
        let (alg, key) = header
            .kid
            .as_deref()
            .filter(|kid| self.is_published(kid, now))
            .and_then(|kid| self.keys.get(kid))
            .ok_or(TokenError::UnknownSigningKey)?;
        // The key decides the algorithm, never the token (RFC 8725 §3.1).
        if header.alg != *alg {
            return Err(TokenError::AlgorithmNotAllowed);
        }
        let mut validation = Validation::new(*alg);
        validation.algorithms = vec![*alg];
        validation.leeway = self.leeway_secs;
        // Judged below against the caller's clock, not the system's.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[audience.unwrap_or(&self.audience)]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        let claims = jsonwebtoken::decode::<AccessClaims>(token, key, &validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                ErrorKind::ImmatureSignature => TokenError::NotYetValid,
                ErrorKind::InvalidIssuer => TokenError::WrongIssuer,
                ErrorKind::InvalidAudience => TokenError::WrongAudience,
                ErrorKind::InvalidSignature | ErrorKind::InvalidAlgorithm => {
                    TokenError::BadSignature
                }
                _ => TokenError::Malformed,
            })?;
        let leeway = i64::try_from(self.leeway_secs).unwrap_or(i64::MAX);
        if claims.exp < now.saturating_sub(leeway) {
            return Err(TokenError::Expired);
        }
        if claims.nbf > now.saturating_add(leeway) {
            return Err(TokenError::NotYetValid);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::*;
    use crate::keys::generate;
    use crate::master::MasterKey;

    fn setup() -> (Signer, TokenVerifier, MasterKey) {
        setup_with(SigningAlg::EdDSA)
    }

    fn setup_with(alg: SigningAlg) -> (Signer, TokenVerifier, MasterKey) {
        let master = MasterKey::from_base64(&MasterKey::generate_base64().unwrap()).unwrap();
        let key = generate(&master, alg).unwrap();
        let signer = Signer::unseal(&master, &key.kid, alg, &key.sealed_private_key).unwrap();
        let mut verifier = TokenVerifier::new("https://gatehouse.test", "api", 5);
        verifier.insert_key(&key.kid, alg, &key.public_key).unwrap();
        (signer, verifier, master)
    }

    fn claims(now: i64) -> AccessClaims {
        AccessClaims {
            iss: "https://gatehouse.test".into(),
            sub: "user-1".into(),
            aud: "api".into(),
            exp: now + 900,
            iat: now,
            nbf: now,
            jti: "j1".into(),
            acc: "acc-1".into(),
            scope: "keys:read".into(),
            sid: Some("s1".into()),
            ksv: None,
        }
    }

    fn now() -> i64 {
        chrono::Utc::now().timestamp()
    }

    #[test]
    fn a_token_lives_by_the_callers_clock_within_the_leeway() {
        let (signer, verifier, _) = setup();
        // Far from the system's time: only the clock passed in counts.
        let t = 4_000_000_000;
        let token = sign(&claims(t), &signer).unwrap();
        assert!(verifier.verify(&token, None, t + 900 + 5).is_ok());
        assert_eq!(
            verifier.verify(&token, None, t + 900 + 6),
            Err(TokenError::Expired)
        );
        assert!(verifier.verify(&token, None, t - 5).is_ok());
        assert_eq!(
            verifier.verify(&token, None, t - 6),
            Err(TokenError::NotYetValid)
        );
    }

    #[test]
    fn a_signed_token_verifies_and_carries_its_claims() {
        let (signer, verifier, _) = setup();
        let token = sign(&claims(now()), &signer).unwrap();
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.typ.as_deref(), Some("at+jwt"));
        assert_eq!(header.kid.as_deref(), Some(signer.kid.as_str()));
        assert_eq!(
            verifier.verify(&token, None, now()).unwrap().scope,
            "keys:read"
        );
    }

    #[test]
    fn hostile_tokens_are_refused_with_their_reason() {
        let (signer, verifier, _) = setup();
        let t = now();
        let expired = AccessClaims {
            exp: t - 60,
            iat: t - 960,
            nbf: t - 960,
            ..claims(t)
        };
        assert_eq!(
            verifier.verify(&sign(&expired, &signer).unwrap(), None, now()),
            Err(TokenError::Expired)
        );
        let future = AccessClaims {
            nbf: t + 600,
            ..claims(t)
        };
        assert_eq!(
            verifier.verify(&sign(&future, &signer).unwrap(), None, now()),
            Err(TokenError::NotYetValid)
        );
        let foreign = AccessClaims {
            iss: "https://evil.test".into(),
            ..claims(t)
        };
        assert_eq!(
            verifier.verify(&sign(&foreign, &signer).unwrap(), None, now()),
            Err(TokenError::WrongIssuer)
        );
        let other_aud = AccessClaims {
            aud: "other".into(),
            ..claims(t)
        };
        assert_eq!(
            verifier.verify(&sign(&other_aud, &signer).unwrap(), None, now()),
            Err(TokenError::WrongAudience)
        );

        // Signed by a key the verifier does not know.
        let (stranger, _, _) = setup();
        assert_eq!(
            verifier.verify(&sign(&claims(t), &stranger).unwrap(), None, now()),
            Err(TokenError::UnknownSigningKey)
        );
        // Edited payload: the signature no longer matches.
        let token = sign(&claims(t), &signer).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        let forged_payload = URL_SAFE_NO_PAD.encode(
            serde_json::to_vec(&AccessClaims {
                scope: "platform:admin".into(),
                ..claims(t)
            })
            .unwrap(),
        );
        let forged = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
        assert_eq!(
            verifier.verify(&forged, None, now()),
            Err(TokenError::BadSignature)
        );
        // alg: none.
        let none_header = URL_SAFE_NO_PAD.encode(format!(
            r#"{{"alg":"none","typ":"at+jwt","kid":"{}"}}"#,
            signer.kid
        ));
        let none = format!("{none_header}.{}.", parts[1]);
        assert!(matches!(
            verifier.verify(&none, None, now()),
            Err(TokenError::Malformed | TokenError::AlgorithmNotAllowed)
        ));
        // HS256 "signed" with the public key.
        let mut hs_header = Header::new(Algorithm::HS256);
        hs_header.typ = Some("at+jwt".into());
        hs_header.kid = Some(signer.kid.clone());
        let hs = jsonwebtoken::encode(
            &hs_header,
            &claims(t),
            &jsonwebtoken::EncodingKey::from_secret(b"public"),
        )
        .unwrap();
        assert_eq!(
            verifier.verify(&hs, None, now()),
            Err(TokenError::AlgorithmNotAllowed)
        );
        // Garbage and huge input.
        assert_eq!(
            verifier.verify("garbage", None, now()),
            Err(TokenError::Malformed)
        );
        assert_eq!(
            verifier.verify(&"a".repeat(1 << 20), None, now()),
            Err(TokenError::Malformed)
        );
        assert_eq!(verifier.verify("", None, now()), Err(TokenError::Malformed));
    }

    #[test]
    fn a_retired_key_verifies_nothing_after_its_publication_ends() {
        let (signer, mut verifier, _) = setup();
        let token = sign(&claims(now()), &signer).unwrap();
        verifier.retire_key(&signer.kid, now() + 3600);
        assert!(
            verifier.verify(&token, None, now()).is_ok(),
            "still published"
        );
        verifier.retire_key(&signer.kid, now() - 1);
        assert_eq!(
            verifier.verify(&token, None, now()),
            Err(TokenError::UnknownSigningKey)
        );
        assert!(!verifier.is_published(&signer.kid, now()));
    }

    #[test]
    fn each_algorithm_verifies_its_own_tokens_and_no_other_algorithm_passes_for_it() {
        for alg in [SigningAlg::EdDSA, SigningAlg::ES256, SigningAlg::RS256] {
            let (signer, mut verifier, master) = setup_with(alg);
            let token = sign(&claims(now()), &signer).unwrap();
            let header = jsonwebtoken::decode_header(&token).unwrap();
            assert_eq!(header.alg, crate::keys::algorithm(alg));
            assert_eq!(
                verifier.verify(&token, None, now()).unwrap().sub,
                "user-1",
                "{alg}"
            );
            // A key of another algorithm published under the same kid is not
            // fooled by a token whose header names that other algorithm.
            let other = match alg {
                SigningAlg::RS256 => SigningAlg::ES256,
                _ => SigningAlg::RS256,
            };
            let stranger = generate(&master, other).unwrap();
            let forged_signer =
                Signer::unseal(&master, &stranger.kid, other, &stranger.sealed_private_key)
                    .unwrap();
            let forged = sign(
                &claims(now()),
                &Signer {
                    kid: signer.kid.clone(),
                    ..forged_signer
                },
            )
            .unwrap();
            assert_eq!(
                verifier.verify(&forged, None, now()),
                Err(TokenError::AlgorithmNotAllowed),
                "{alg}"
            );
            // HS256 keyed with the public key's text, under the real kid.
            let mut hs_header = Header::new(Algorithm::HS256);
            hs_header.typ = Some("at+jwt".into());
            hs_header.kid = Some(signer.kid.clone());
            let hs = jsonwebtoken::encode(
                &hs_header,
                &claims(now()),
                &jsonwebtoken::EncodingKey::from_secret(stranger.public_key.as_bytes()),
            )
            .unwrap();
            assert_eq!(
                verifier.verify(&hs, None, now()),
                Err(TokenError::AlgorithmNotAllowed),
                "{alg}"
            );
            // Across a switch, both keys verify their own tokens.
            verifier
                .insert_key(&stranger.kid, other, &stranger.public_key)
                .unwrap();
            assert!(verifier.verify(&token, None, now()).is_ok());
        }
    }
}
