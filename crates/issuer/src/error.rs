//! The application's errors, transport-free: each says its [`ErrorClass`]
//! (what kind of failure, which every transport maps once — to a gRPC code,
//! to an HTTP status) and its stable machine-readable reason.

use std::time::Duration;

use gatehouse_domain::DomainError;
use gatehouse_domain::catalogue::{CatalogueError, GrantError};
use gatehouse_eventstore::StoreError;

/// `google.rpc.ErrorInfo.domain` of every Gatehouse error.
pub const ERROR_DOMAIN: &str = "gatehouse";

/// What kind of failure an error is, for the transports to map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    InvalidArgument,
    Unauthenticated,
    PermissionDenied,
    NotFound,
    AlreadyExists,
    FailedPrecondition,
    /// A concurrent change won.
    Conflict,
    /// Throttled; retry after the given time.
    TooManyRequests,
    /// The database cannot be reached now; retry later.
    Unavailable,
    Internal,
}

/// Everything an issuer call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum IssuerError {
    #[error("{0}")]
    InvalidArgument(String),
    /// Unknown user and wrong password, alike.
    #[error("invalid username or password")]
    BadCredentials,
    /// Malformed, unknown, expired, spent or revoked refresh token.
    #[error("invalid refresh token")]
    InvalidRefreshToken { reason: &'static str },
    /// Wrong secret, another account's key, revoked or expired key, alike.
    #[error("invalid key credentials")]
    InvalidKeyCredentials,
    /// The bearer credential of an admin call is missing or invalid.
    #[error("a valid bearer credential is required")]
    Unauthenticated { reason: &'static str },
    #[error("the credential lacks the scope {scope} on this account")]
    PermissionDenied { scope: String },
    /// Only a user's own login (not an API key or SDK token) may do this.
    #[error("this needs a user's access token from a login")]
    UserTokenRequired,
    /// The old password of a password change did not match.
    #[error("the old password is not correct")]
    WrongPassword,
    /// A grant refused by the grant rule: unknown, retired or not held.
    #[error(transparent)]
    Grant(#[from] GrantError),
    /// A catalogue change refused.
    #[error(transparent)]
    Catalogue(CatalogueError),
    #[error("too many failed logins; retry later")]
    Throttled { retry_after: Duration },
    /// A live tail beyond the caps (per credential, per process).
    #[error("too many live activity tails are open{0}; close one or retry later")]
    TooManyWatches(&'static str),
    #[error("{0} already exists")]
    AlreadyExists(&'static str),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("a concurrent change won; retry")]
    Conflict,
    /// The database is unreachable or out of connections (the cause is logged).
    #[error("the service is temporarily unavailable; retry shortly")]
    Unavailable(String),
    #[error("internal error")]
    Internal(String),
}

impl From<DomainError> for IssuerError {
    fn from(error: DomainError) -> Self {
        Self::InvalidArgument(error.to_string())
    }
}

impl From<CatalogueError> for IssuerError {
    fn from(error: CatalogueError) -> Self {
        match error {
            CatalogueError::Invalid(e) => e.into(),
            other => Self::Catalogue(other),
        }
    }
}

impl From<StoreError> for IssuerError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::WrongExpectedVersion { .. } => Self::Conflict,
            other if other.is_unavailable() => Self::Unavailable(other.to_string()),
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<gatehouse_crypto::CryptoError> for IssuerError {
    fn from(error: gatehouse_crypto::CryptoError) -> Self {
        Self::Internal(error.to_string())
    }
}

impl IssuerError {
    /// The class every transport maps from.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::InvalidArgument(_) => ErrorClass::InvalidArgument,
            Self::BadCredentials
            | Self::InvalidRefreshToken { .. }
            | Self::InvalidKeyCredentials
            | Self::Unauthenticated { .. } => ErrorClass::Unauthenticated,
            Self::PermissionDenied { .. } | Self::UserTokenRequired | Self::WrongPassword => {
                ErrorClass::PermissionDenied
            }
            Self::Grant(GrantError::Unknown(_) | GrantError::Retired(_)) => {
                ErrorClass::InvalidArgument
            }
            Self::Grant(GrantError::CannotGrant(_)) => ErrorClass::PermissionDenied,
            Self::Catalogue(CatalogueError::Invalid(_) | CatalogueError::BuiltIn(_)) => {
                ErrorClass::InvalidArgument
            }
            Self::Catalogue(CatalogueError::NotFound(_)) => ErrorClass::NotFound,
            Self::Catalogue(CatalogueError::AlreadyRetired(_) | CatalogueError::Full) => {
                ErrorClass::FailedPrecondition
            }
            Self::Throttled { .. } | Self::TooManyWatches(_) => ErrorClass::TooManyRequests,
            Self::AlreadyExists(_) => ErrorClass::AlreadyExists,
            Self::NotFound(_) => ErrorClass::NotFound,
            Self::FailedPrecondition(_) => ErrorClass::FailedPrecondition,
            Self::Conflict => ErrorClass::Conflict,
            Self::Unavailable(_) => ErrorClass::Unavailable,
            Self::Internal(_) => ErrorClass::Internal,
        }
    }

    /// The stable reason (`google.rpc.ErrorInfo.reason`, the HTTP body's `reason`).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::InvalidArgument(_) => "INVALID_ARGUMENT",
            Self::BadCredentials => "INVALID_CREDENTIALS",
            Self::InvalidRefreshToken { reason } | Self::Unauthenticated { reason } => reason,
            Self::InvalidKeyCredentials => "INVALID_KEY_CREDENTIALS",
            Self::PermissionDenied { .. } => "INSUFFICIENT_SCOPE",
            Self::UserTokenRequired => "USER_TOKEN_REQUIRED",
            Self::WrongPassword => "WRONG_PASSWORD",
            Self::Grant(GrantError::Unknown(_)) => "SCOPE_UNKNOWN",
            Self::Grant(GrantError::Retired(_)) => "SCOPE_RETIRED",
            Self::Grant(GrantError::CannotGrant(_)) => "CANNOT_GRANT",
            Self::Catalogue(CatalogueError::Invalid(_)) => "INVALID_ARGUMENT",
            Self::Catalogue(CatalogueError::BuiltIn(_)) => "SCOPE_BUILT_IN",
            Self::Catalogue(CatalogueError::NotFound(_)) => "SCOPE_UNKNOWN",
            Self::Catalogue(CatalogueError::AlreadyRetired(_)) => "SCOPE_RETIRED",
            Self::Catalogue(CatalogueError::Full) => "CATALOGUE_FULL",
            Self::Throttled { .. } => "LOGIN_THROTTLED",
            Self::TooManyWatches(_) => "TOO_MANY_WATCHES",
            Self::AlreadyExists(_) => "ALREADY_EXISTS",
            Self::NotFound(_) => "NOT_FOUND",
            Self::FailedPrecondition(_) => "FAILED_PRECONDITION",
            Self::Conflict => "CONFLICT",
            Self::Unavailable(_) => "UNAVAILABLE",
            Self::Internal(_) => "INTERNAL",
        }
    }

    /// What the caller may read: the message, except for internal errors,
    /// whose cause is logged instead.
    pub fn public_message(&self) -> String {
        match self {
            Self::Internal(cause) => {
                tracing::error!(%cause, "internal error");
                "internal error".to_string()
            }
            Self::Unavailable(cause) => {
                tracing::warn!(%cause, "database unavailable");
                self.to_string()
            }
            Self::Throttled { retry_after } => {
                format!("{self} (in {} s)", retry_after.as_secs().max(1))
            }
            other => other.to_string(),
        }
    }

    /// How long a throttled caller should wait.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Throttled { retry_after } => Some(*retry_after),
            Self::TooManyWatches(_) => Some(Duration::from_secs(5)),
            Self::Unavailable(_) => Some(Duration::from_secs(1)),
            _ => None,
        }
    }
}
