//! The one mapping of failures to HTTP: `{code, message, statusCode, reason?}`
//! on every non-2xx (Scope's clients read `code` + `message`, Claude Scope's
//! `statusCode` + `message`, so one body serves both), `WWW-Authenticate: Bearer` (RFC 6750) on 401
//! and 403, `Retry-After` on 429.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use gatehouse_issuer::{ErrorClass, IssuerError};
use gatehouse_verifier::Denial;

/// A refused request, as the caller will see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// The stable reason (the gRPC `ErrorInfo.reason`), where the caller may know it.
    pub reason: Option<&'static str>,
    /// For 403s about scopes: the scopes needed, for the challenge's `scope`.
    pub scope: Option<String>,
    /// Seconds, for 429.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            reason: None,
            scope: None,
            retry_after: None,
        }
    }

    pub fn with_reason(mut self, reason: &'static str) -> Self {
        self.reason = Some(reason);
        self
    }

    /// 400 with the same reason gRPC gives for `INVALID_ARGUMENT`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message).with_reason("INVALID_ARGUMENT")
    }

    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "no such route").with_reason("NOT_FOUND")
    }

    /// The `code` of the body, one per status.
    pub fn code(&self) -> &'static str {
        match self.status {
            StatusCode::BAD_REQUEST => "invalid_request",
            StatusCode::UNAUTHORIZED => "unauthorized",
            StatusCode::FORBIDDEN => "forbidden",
            StatusCode::NOT_FOUND => "not_found",
            StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
            StatusCode::CONFLICT => "conflict",
            StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
            StatusCode::TOO_MANY_REQUESTS => "too_many_requests",
            StatusCode::SERVICE_UNAVAILABLE => "unavailable",
            StatusCode::GATEWAY_TIMEOUT => "timeout",
            _ => "internal",
        }
    }

    /// The body, also used by Envoy `ext_authz` denials.
    pub fn body(&self) -> serde_json::Value {
        serde_json::to_value(self.error_body()).unwrap_or_default()
    }

    /// The body as its documented type.
    pub fn error_body(&self) -> super::views::ErrorBody {
        super::views::ErrorBody {
            code: self.code(),
            message: self.message.clone(),
            status_code: self.status.as_u16(),
            reason: self.reason,
        }
    }

    /// The RFC 6750 challenge of a 401 or 403: no `error` when no credential
    /// was presented.
    pub fn challenge(&self) -> Option<String> {
        match self.status {
            StatusCode::UNAUTHORIZED if self.reason == Some("CREDENTIAL_MISSING") => {
                Some(r#"Bearer realm="gatehouse""#.into())
            }
            StatusCode::UNAUTHORIZED => {
                Some(r#"Bearer realm="gatehouse", error="invalid_token""#.into())
            }
            // Only a missing scope is RFC 6750's `insufficient_scope`; a 403
            // for another cause (a wrong old password) has no challenge.
            StatusCode::FORBIDDEN => match &self.scope {
                Some(scope) => Some(format!(
                    r#"Bearer realm="gatehouse", error="insufficient_scope", scope="{scope}""#
                )),
                None if self.reason == Some("INSUFFICIENT_SCOPE") => {
                    Some(r#"Bearer realm="gatehouse", error="insufficient_scope""#.into())
                }
                None => None,
            },
            _ => None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.error_body())).into_response();
        let headers = response.headers_mut();
        if let Some(value) = self
            .challenge()
            .and_then(|c| HeaderValue::from_str(&c).ok())
        {
            headers.insert(header::WWW_AUTHENTICATE, value);
        }
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
        }
        if self.status == StatusCode::PAYLOAD_TOO_LARGE {
            // The rest of the body may be unread: the connection is not reused.
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

impl From<IssuerError> for ApiError {
    fn from(error: IssuerError) -> Self {
        let status = match error.class() {
            ErrorClass::InvalidArgument => StatusCode::BAD_REQUEST,
            ErrorClass::Unauthenticated => StatusCode::UNAUTHORIZED,
            ErrorClass::PermissionDenied => StatusCode::FORBIDDEN,
            ErrorClass::NotFound => StatusCode::NOT_FOUND,
            ErrorClass::AlreadyExists | ErrorClass::FailedPrecondition | ErrorClass::Conflict => {
                StatusCode::CONFLICT
            }
            ErrorClass::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            ErrorClass::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorClass::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let scope = match &error {
            IssuerError::PermissionDenied { scope } => Some(scope.clone()),
            IssuerError::Grant(gatehouse_domain::catalogue::GrantError::CannotGrant(scopes)) => {
                Some(scopes.join(" "))
            }
            _ => None,
        };
        Self {
            status,
            reason: (status != StatusCode::INTERNAL_SERVER_ERROR).then(|| error.reason()),
            retry_after: error.retry_after().map(|d| d.as_secs()),
            message: error.public_message(),
            scope,
        }
    }
}

impl From<Denial> for ApiError {
    fn from(denial: Denial) -> Self {
        let (reason, message) = (denial.reason(), denial.to_string());
        match denial {
            Denial::Unauthenticated(_) => {
                Self::new(StatusCode::UNAUTHORIZED, message).with_reason(reason)
            }
            Denial::InsufficientScope(missing) => Self {
                scope: Some(missing.join(" ")),
                ..Self::new(StatusCode::FORBIDDEN, message).with_reason(reason)
            },
            Denial::InvalidScope(_) | Denial::TooManyScopes(_) => {
                Self::bad_request(message).with_reason(reason)
            }
        }
    }
}
