//! The gRPC adapters: reading the caller (one [`authenticate`]), mapping the
//! application's errors to `tonic::Status` (one [`status`]), and time
//! conversions — then a few lines per RPC over the application layer.
//!
//! One file per service: `accounts`, `auth`, `keys`, `audit`, `scopes`,
//! `verifier` (gatehouse.v1), and `ext_authz` (Envoy's `Authorization`).

pub mod accounts;
pub mod audit;
pub mod auth;
pub mod ext_authz;
pub mod keys;
pub mod scopes;
pub mod verifier;

pub use accounts::AccountsGrpc;
pub use audit::AuditGrpc;
pub use auth::AuthGrpc;
pub use keys::KeysGrpc;
pub use scopes::ScopesGrpc;
pub use verifier::VerifierGrpc;

use gatehouse_domain::ids::AccountId;
use gatehouse_issuer::error::ERROR_DOMAIN;
use gatehouse_issuer::{CallContext, ErrorClass, Issuer, IssuerError, Principal};
use prost_types::Timestamp;
use tonic::{Code, Request, Status};
use tonic_types::{ErrorDetails, StatusExt as _};

/// The bearer token of the `authorization` metadata, if any.
pub fn bearer<T>(request: &Request<T>) -> Option<String> {
    crate::credential_of(
        request
            .metadata()
            .get("authorization")
            .map(|v| v.as_bytes()),
    )
}

/// Client address and request id of a call.
pub fn context<T>(request: &Request<T>) -> CallContext {
    CallContext {
        client_address: client_address(request),
        request_id: request
            .metadata()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.chars().take(128).collect()),
    }
}

/// The client's address as decided for the call (see [`crate::peer`]).
pub fn client_address<T>(request: &Request<T>) -> Option<String> {
    request
        .extensions()
        .get::<crate::peer::ClientAddress>()
        .map(|c| c.0)
        .or_else(|| request.remote_addr().map(|a| a.ip()))
        .map(|ip| ip.to_string())
}

/// The principal behind a call's bearer credential: the one place gRPC
/// calls are authenticated.
pub async fn authenticate<T>(issuer: &Issuer, request: &Request<T>) -> Result<Principal, Status> {
    issuer
        .authenticate(bearer(request).as_deref())
        .await
        .map_err(status)
}

pub(crate) fn parse_account(raw: &str) -> Result<AccountId, IssuerError> {
    Ok(AccountId::parse(raw)?)
}

pub(crate) fn parse_key(raw: &str) -> Result<gatehouse_domain::ids::KeyId, IssuerError> {
    Ok(gatehouse_domain::ids::KeyId::parse(raw)?)
}

/// The one mapping of an application error to a `tonic::Status`, with a
/// `google.rpc.ErrorInfo` reason (and `RetryInfo` when throttled).
pub fn status(error: IssuerError) -> Status {
    let code = match error.class() {
        ErrorClass::InvalidArgument => Code::InvalidArgument,
        ErrorClass::Unauthenticated => Code::Unauthenticated,
        ErrorClass::PermissionDenied => Code::PermissionDenied,
        ErrorClass::NotFound => Code::NotFound,
        ErrorClass::AlreadyExists => Code::AlreadyExists,
        ErrorClass::FailedPrecondition => Code::FailedPrecondition,
        ErrorClass::Conflict => Code::Aborted,
        ErrorClass::TooManyRequests => Code::ResourceExhausted,
        ErrorClass::Unavailable => Code::Unavailable,
        ErrorClass::Internal => Code::Internal,
    };
    let mut details = ErrorDetails::new();
    if let Some(retry_after) = error.retry_after() {
        details.set_retry_info(Some(retry_after));
    }
    if code == Code::Internal {
        return Status::internal(error.public_message());
    }
    details.set_error_info(error.reason(), ERROR_DOMAIN, []);
    Status::with_error_details(code, error.public_message(), details)
}

/// `?` on an application result inside an RPC handler.
pub trait OrStatus<T> {
    fn grpc(self) -> Result<T, Status>;
}

impl<T, E: Into<IssuerError>> OrStatus<T> for Result<T, E> {
    fn grpc(self) -> Result<T, Status> {
        self.map_err(|e| status(e.into()))
    }
}

/// A protobuf timestamp.
pub fn timestamp(at: chrono::DateTime<chrono::Utc>) -> Timestamp {
    Timestamp {
        seconds: at.timestamp(),
        nanos: i32::try_from(at.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

/// A time from a protobuf timestamp; `what` names the field when it is
/// invalid (negative nanos included).
pub fn datetime(
    ts: Option<Timestamp>,
    what: &str,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, IssuerError> {
    ts.map(|ts| {
        chrono::DateTime::from_timestamp(ts.seconds, u32::try_from(ts.nanos).unwrap_or(u32::MAX))
            .ok_or_else(|| IssuerError::InvalidArgument(format!("invalid {what}")))
    })
    .transpose()
}

/// A non-negative duration from a protobuf duration; `what` names the field.
pub fn duration(
    d: Option<prost_types::Duration>,
    what: &str,
) -> Result<Option<chrono::Duration>, IssuerError> {
    // Only the wire form is checked here; what range a duration may have is
    // the rule of the field it is for.
    d.map(|d| {
        if d.nanos.unsigned_abs() >= 1_000_000_000
            || (d.seconds < 0 && d.nanos > 0)
            || (d.seconds > 0 && d.nanos < 0)
        {
            return Err(IssuerError::InvalidArgument(format!(
                "{what}: nanos must be below 1e9"
            )));
        }
        chrono::Duration::try_seconds(d.seconds)
            .and_then(|s| s.checked_add(&chrono::Duration::nanoseconds(i64::from(d.nanos))))
            .ok_or_else(|| IssuerError::InvalidArgument(format!("{what} too large")))
    })
    .transpose()
}
