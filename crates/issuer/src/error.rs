//! The issuer's errors and their one mapping to `tonic::Status`.

use std::time::Duration;

use gatehouse_domain::DomainError;
use gatehouse_domain::catalogue::{CatalogueError, GrantError};
use gatehouse_eventstore::StoreError;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt as _};

/// `google.rpc.ErrorInfo.domain` of every Gatehouse error.
pub const ERROR_DOMAIN: &str = "gatehouse";

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
    /// A grant refused by the grant rule: unknown, retired or not held.
    #[error(transparent)]
    Grant(#[from] GrantError),
    /// A catalogue change refused.
    #[error(transparent)]
    Catalogue(CatalogueError),
    #[error("too many failed logins; retry later")]
    Throttled { retry_after: Duration },
    #[error("{0} already exists")]
    AlreadyExists(&'static str),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("a concurrent change won; retry")]
    Conflict,
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
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<gatehouse_crypto::CryptoError> for IssuerError {
    fn from(error: gatehouse_crypto::CryptoError) -> Self {
        Self::Internal(error.to_string())
    }
}

fn with_reason(code: Code, message: String, reason: &str, details: ErrorDetails) -> Status {
    let mut details = details;
    details.set_error_info(reason, ERROR_DOMAIN, []);
    Status::with_error_details(code, message, details)
}

impl From<IssuerError> for Status {
    fn from(error: IssuerError) -> Self {
        let message = error.to_string();
        let none = ErrorDetails::new;
        match error {
            IssuerError::InvalidArgument(_) => {
                with_reason(Code::InvalidArgument, message, "INVALID_ARGUMENT", none())
            }
            IssuerError::BadCredentials => with_reason(
                Code::Unauthenticated,
                message,
                "INVALID_CREDENTIALS",
                none(),
            ),
            IssuerError::InvalidRefreshToken { reason } => {
                with_reason(Code::Unauthenticated, message, reason, none())
            }
            IssuerError::InvalidKeyCredentials => with_reason(
                Code::Unauthenticated,
                message,
                "INVALID_KEY_CREDENTIALS",
                none(),
            ),
            IssuerError::Unauthenticated { reason } => {
                with_reason(Code::Unauthenticated, message, reason, none())
            }
            IssuerError::PermissionDenied { .. } => with_reason(
                Code::PermissionDenied,
                message,
                "INSUFFICIENT_SCOPE",
                none(),
            ),
            IssuerError::Grant(grant) => match grant {
                GrantError::Unknown(_) => {
                    with_reason(Code::InvalidArgument, message, "SCOPE_UNKNOWN", none())
                }
                GrantError::Retired(_) => {
                    with_reason(Code::InvalidArgument, message, "SCOPE_RETIRED", none())
                }
                GrantError::CannotGrant(_) => {
                    with_reason(Code::PermissionDenied, message, "CANNOT_GRANT", none())
                }
            },
            IssuerError::Catalogue(catalogue) => match catalogue {
                CatalogueError::Invalid(_) => {
                    with_reason(Code::InvalidArgument, message, "INVALID_ARGUMENT", none())
                }
                CatalogueError::BuiltIn(_) => {
                    with_reason(Code::InvalidArgument, message, "SCOPE_BUILT_IN", none())
                }
                CatalogueError::NotFound(_) => {
                    with_reason(Code::NotFound, message, "SCOPE_UNKNOWN", none())
                }
                CatalogueError::AlreadyRetired(_) => {
                    with_reason(Code::FailedPrecondition, message, "SCOPE_RETIRED", none())
                }
                CatalogueError::Full => {
                    with_reason(Code::FailedPrecondition, message, "CATALOGUE_FULL", none())
                }
            },
            IssuerError::Throttled { retry_after } => {
                let mut details = ErrorDetails::new();
                details.set_retry_info(Some(retry_after));
                let message = format!("{message} (in {} s)", retry_after.as_secs().max(1));
                with_reason(Code::ResourceExhausted, message, "LOGIN_THROTTLED", details)
            }
            IssuerError::AlreadyExists(_) => {
                with_reason(Code::AlreadyExists, message, "ALREADY_EXISTS", none())
            }
            IssuerError::NotFound(_) => with_reason(Code::NotFound, message, "NOT_FOUND", none()),
            IssuerError::FailedPrecondition(_) => with_reason(
                Code::FailedPrecondition,
                message,
                "FAILED_PRECONDITION",
                none(),
            ),
            IssuerError::Conflict => with_reason(Code::Aborted, message, "CONFLICT", none()),
            IssuerError::Internal(cause) => {
                tracing::error!(%cause, "internal error");
                Status::internal("internal error")
            }
        }
    }
}
