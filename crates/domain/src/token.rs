//! Who a verified access token speaks for: the one reading of its claims,
//! for the issuer (authenticating admin calls) and the verifier alike, so
//! the two can never disagree about a token.

use crate::ids::{AccountId, KeyId, SessionId};

/// The subject of a token whose signature and times have been checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSubject {
    /// A user token: it dies with its login session.
    User {
        account: AccountId,
        /// The user id (`sub`).
        user: String,
        session: SessionId,
    },
    /// An SDK token: it dies with its key and with the secret it was
    /// exchanged with (`ksv`).
    Sdk {
        account: AccountId,
        key: KeyId,
        secret: u32,
    },
}

/// Why a token's claims name no subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SubjectError {
    #[error("the token's claims are malformed")]
    Malformed,
    /// A user token living longer than revoked sessions are remembered: its
    /// session's revocation could be forgotten while it still verifies.
    #[error("the token lives longer than revoked sessions are remembered")]
    LifetimeTooLong,
}

impl SubjectError {
    /// The `google.rpc.ErrorInfo.reason` of this failure.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Malformed => "CREDENTIAL_MALFORMED",
            Self::LifetimeTooLong => "TOKEN_LIFETIME_TOO_LONG",
        }
    }
}

/// The claims the subject is read from.
#[derive(Debug, Clone, Copy)]
pub struct SubjectClaims<'a> {
    pub acc: &'a str,
    pub sub: &'a str,
    pub sid: Option<&'a str>,
    pub ksv: Option<u32>,
    pub iat: i64,
    pub exp: i64,
}

impl TokenSubject {
    /// Reads the subject of `claims`. A token with a session is a user's,
    /// refused when it lives longer than `max_user_lifetime_secs`; one
    /// without is an SDK token, whose `sub` is its key. Tokens minted before
    /// `ksv` existed count as the key's first secret's: exact for a key never
    /// rotated, refused otherwise.
    pub fn read(
        claims: SubjectClaims<'_>,
        max_user_lifetime_secs: i64,
    ) -> Result<Self, SubjectError> {
        let account = AccountId::parse(claims.acc).map_err(|_| SubjectError::Malformed)?;
        match claims.sid {
            Some(sid) => {
                if claims.exp.saturating_sub(claims.iat) > max_user_lifetime_secs {
                    return Err(SubjectError::LifetimeTooLong);
                }
                Ok(Self::User {
                    account,
                    user: claims.sub.to_string(),
                    session: SessionId::parse(sid).map_err(|_| SubjectError::Malformed)?,
                })
            }
            None => Ok(Self::Sdk {
                account,
                key: KeyId::parse(claims.sub).map_err(|_| SubjectError::Malformed)?,
                secret: claims.ksv.unwrap_or(0),
            }),
        }
    }

    pub fn account(&self) -> AccountId {
        match self {
            Self::User { account, .. } | Self::Sdk { account, .. } => *account,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims<'a>(acc: &'a str, sub: &'a str, sid: Option<&'a str>) -> SubjectClaims<'a> {
        SubjectClaims {
            acc,
            sub,
            sid,
            ksv: None,
            iat: 1_000,
            exp: 1_900,
        }
    }

    #[test]
    fn user_and_sdk_tokens_name_their_subjects_and_malformed_ones_none() {
        let account = AccountId::from_uuid(uuid::Uuid::now_v7()).to_string();
        let session = SessionId::from_uuid(uuid::Uuid::now_v7()).to_string();
        let key = KeyId::from_uuid(uuid::Uuid::now_v7()).to_string();
        let user = TokenSubject::read(claims(&account, "u1", Some(&session)), 3600).unwrap();
        assert!(matches!(user, TokenSubject::User { ref user, .. } if user == "u1"));
        let sdk = TokenSubject::read(claims(&account, &key, None), 3600).unwrap();
        assert!(matches!(sdk, TokenSubject::Sdk { secret: 0, .. }));
        assert_eq!(sdk.account().to_string(), account);
        for bad in [
            claims("not-an-account", &key, None),
            claims(&account, "not-a-key", None),
            claims(&account, "u1", Some("not-a-session")),
        ] {
            assert_eq!(TokenSubject::read(bad, 3600), Err(SubjectError::Malformed));
        }
    }

    #[test]
    fn a_user_token_outliving_the_session_memory_is_refused() {
        let account = AccountId::from_uuid(uuid::Uuid::now_v7()).to_string();
        let session = SessionId::from_uuid(uuid::Uuid::now_v7()).to_string();
        let key = KeyId::from_uuid(uuid::Uuid::now_v7()).to_string();
        assert_eq!(
            TokenSubject::read(claims(&account, "u1", Some(&session)), 899),
            Err(SubjectError::LifetimeTooLong)
        );
        assert!(TokenSubject::read(claims(&account, "u1", Some(&session)), 900).is_ok());
        assert!(
            TokenSubject::read(claims(&account, &key, None), 1).is_ok(),
            "SDK tokens die with their key, which is never forgotten"
        );
    }
}
