//! Reading a request: the JSON body (400 naming the field, 413, 415 — never a
//! 500 or a credential failure for a malformed body), the caller's context,
//! and the bearer credential, authenticated in one place.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use gatehouse_issuer::{CallContext, Principal};
use serde::de::DeserializeOwned;

use super::error::ApiError;
use super::state::AppState;

/// A JSON body whose rejections speak the error format.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the body must be JSON (Content-Type: application/json)",
        ),
        JsonRejection::JsonSyntaxError(e) => {
            ApiError::bad_request(format!("malformed JSON: {}", e.body_text()))
        }
        // serde's path names the field: `username: invalid type …`, `missing field …`.
        JsonRejection::JsonDataError(e) => ApiError::bad_request(e.body_text().replace(
            "Failed to deserialize the JSON body into the target type: ",
            "",
        )),
        other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "the body is larger than the server accepts",
        ),
        other => ApiError::bad_request(other.body_text()),
    }
}

/// Client address and request id.
pub struct Context(pub CallContext);

impl<S: Send + Sync> FromRequestParts<S> for Context {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(context(parts)))
    }
}

pub fn context(parts: &Parts) -> CallContext {
    CallContext {
        client_address: parts
            .extensions
            .get::<tonic::transport::server::TcpConnectInfo>()
            .and_then(|info| info.remote_addr())
            .map(|addr| addr.ip().to_string()),
        request_id: parts
            .headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.chars().take(128).collect()),
    }
}

/// The `Authorization: Bearer …` credential, if any.
pub fn bearer(parts: &Parts) -> Option<String> {
    let value = parts.headers.get("authorization")?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_string())
        .filter(|t| !t.is_empty())
}

/// The authenticated caller of an admin route: the one place HTTP calls are
/// authenticated.
pub struct Authed {
    pub principal: Principal,
    pub ctx: CallContext,
}

impl FromRequestParts<AppState> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let issuer = state.issuer()?;
        let principal = issuer.authenticate(bearer(parts).as_deref()).await?;
        Ok(Self {
            principal,
            ctx: context(parts),
        })
    }
}
