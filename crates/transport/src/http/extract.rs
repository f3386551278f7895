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
        // serde reads a struct from a JSON array too (`["x"]` fills fields
        // by position): every body here is an object, so refuse arrays first.
        let (parts, body) = req.into_parts();
        let bytes =
            axum::body::Bytes::from_request(Request::from_parts(parts.clone(), body), state)
                .await
                .map_err(|rejection| {
                    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                        ApiError::new(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            "the body is larger than the server accepts",
                        )
                    } else {
                        ApiError::bad_request(rejection.body_text())
                    }
                })?;
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
            return Err(ApiError::bad_request("the body must be a JSON object"));
        }
        let req = Request::from_parts(parts, axum::body::Body::from(bytes));
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

/// A JSON body whose fields are all optional: no body at all (a bare
/// `curl -X POST`) and `null` are `T::default()`; a body is otherwise read
/// as [`Body`] reads it.
pub struct OptionalBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for OptionalBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        use axum::body::HttpBody as _;
        if req.body().size_hint().exact() == Some(0) {
            return Ok(Self(T::default()));
        }
        Body::<Option<T>>::from_request(req, state)
            .await
            .map(|Body(v)| Self(v.unwrap_or_default()))
    }
}

/// Query parameters whose rejections speak the error format (400 naming the
/// parameter, not axum's plain text).
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(v)| Self(v))
            .map_err(|rejection| {
                ApiError::bad_request(rejection.body_text().replace(
                    "Failed to deserialize query string: ",
                    "invalid query parameter ",
                ))
            })
    }
}

/// Path segments whose rejections speak the error format.
pub struct Path<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(v)| Self(v))
            .map_err(|rejection| ApiError::bad_request(rejection.body_text()))
    }
}

/// serde's message without the offending value: a misplaced password or
/// secret must not come back in an error. `field: invalid type: string
/// "hunter2", expected a sequence` becomes `field: invalid type, expected a
/// sequence`.
fn without_value(message: &str) -> String {
    let message = message.split(" at line ").next().unwrap_or(message);
    let (path, detail) = match message.split_once(": ") {
        Some((path, detail)) if !path.contains(' ') => (Some(path), detail),
        _ => (None, message),
    };
    let detail = match detail.split_once(": ") {
        Some((kind, rest)) if kind.starts_with("invalid") => {
            match rest.rsplit_once(", expected ") {
                Some((_, expected)) => format!("{kind}, expected {expected}"),
                None => kind.to_string(),
            }
        }
        _ => detail.to_string(),
    };
    match path {
        Some(path) if path != "." => format!("{path}: {detail}"),
        _ => detail,
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
        JsonRejection::JsonDataError(e) => {
            ApiError::bad_request(without_value(&e.body_text().replace(
                "Failed to deserialize the JSON body into the target type: ",
                "",
            )))
        }
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
            .get::<crate::peer::ClientAddress>()
            .map(|c| c.0)
            .or_else(|| crate::peer::peer(&parts.extensions))
            .map(|ip| ip.to_string()),
        request_id: parts
            .headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.chars().take(128).collect()),
    }
}

/// The `Authorization: Bearer …` credential, if any.
pub fn bearer(parts: &Parts) -> Option<String> {
    crate::credential_of(parts.headers.get("authorization").map(|v| v.as_bytes()))
}

/// The authenticated caller of an admin route: the one place HTTP calls are
/// authenticated. No `Debug`: it holds the credential.
pub struct Authed {
    pub principal: Principal,
    pub ctx: CallContext,
    /// The credential itself, for a live tail that checks it again.
    pub bearer: Option<String>,
}

impl FromRequestParts<AppState> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let issuer = state.issuer()?;
        let bearer = bearer(parts);
        let principal = issuer.authenticate(bearer.as_deref()).await?;
        Ok(Self {
            principal,
            ctx: context(parts),
            bearer,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::without_value;

    #[test]
    fn data_errors_name_the_field_but_not_the_value() {
        assert_eq!(
            without_value(
                r#"password: invalid type: string "hunter2 secret", expected u32 at line 1 column 30"#
            ),
            "password: invalid type, expected u32"
        );
        assert_eq!(
            without_value(
                "password: invalid type: integer `12345678`, expected a string at line 1 column 22"
            ),
            "password: invalid type, expected a string"
        );
        assert_eq!(
            without_value(r#"password: invalid type: string "a, expected b", expected u32"#),
            "password: invalid type, expected u32"
        );
        assert_eq!(
            without_value("missing field `new_password` at line 1 column 2"),
            "missing field `new_password`"
        );
    }
}
