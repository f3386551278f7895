//! What wraps every request on the port, gRPC and HTTP alike: an
//! `X-Request-Id` accepted or minted (UUIDv7), echoed on the response, carried
//! in the request's log span and, through the call context, in the events it
//! appends; and CORS for the configured browser origins.

use axum::Router;
use axum::http::{HeaderName, HeaderValue, Method, Request, header};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::TraceLayer;

const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Mints a UUIDv7 for a request that brings no usable id of its own.
#[derive(Clone, Copy, Default)]
struct MintUuid;

impl MakeRequestId for MintUuid {
    fn make_request_id<B>(&mut self, _: &Request<B>) -> Option<RequestId> {
        HeaderValue::from_str(&uuid::Uuid::now_v7().to_string())
            .ok()
            .map(RequestId::new)
    }
}

/// Whether a caller's request id may be recorded as given: 1 to 128
/// characters of a token-like alphabet (UUIDs, W3C trace ids, ULIDs …).
/// Anything else is replaced by a minted id, so a caller cannot write spaces,
/// markup or look-alike text into log spans and the audit trail.
fn usable_request_id(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    (1..=128).contains(&bytes.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:/+=".contains(b))
}

/// Request ids and a log span around `app`.
pub fn with_request_ids(app: Router) -> Router {
    app.layer(PropagateRequestIdLayer::new(X_REQUEST_ID))
        .layer(
            TraceLayer::new_for_http().make_span_with(|request: &Request<_>| {
                let id = request
                    .headers()
                    .get(X_REQUEST_ID)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                tracing::info_span!(
                    "request",
                    method = %request.method(),
                    path = %request.uri().path(),
                    request_id = %id,
                )
            }),
        )
        .layer(SetRequestIdLayer::new(X_REQUEST_ID, MintUuid))
        .layer(tower::util::MapRequestLayer::new(
            |mut request: Request<axum::body::Body>| {
                if request
                    .headers()
                    .get(X_REQUEST_ID)
                    .is_some_and(|v| !usable_request_id(v))
                {
                    request.headers_mut().remove(X_REQUEST_ID);
                }
                request
            },
        ))
}

/// CORS for `origins` (none: no CORS headers at all, so browsers on other
/// origins are refused as the same-origin policy intends).
pub fn with_cors(app: Router, origins: &[HeaderValue]) -> Router {
    if origins.is_empty() {
        return app;
    }
    app.layer(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins.iter().cloned()))
            .allow_methods([Method::GET, Method::POST, Method::DELETE])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE, X_REQUEST_ID])
            .expose_headers([header::WWW_AUTHENTICATE, header::RETRY_AFTER, X_REQUEST_ID])
            .max_age(std::time::Duration::from_secs(600)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_token_like_request_ids_are_kept() {
        for ok in [
            "trace-me-42",
            "01a2203e-52bd-7b8e-a3b5-b0a1b5f0a5c1",
            "00-4bf9-01",
        ] {
            assert!(usable_request_id(&HeaderValue::from_static(ok)), "{ok}");
        }
        let long = "a".repeat(129);
        for bad in ["", "two words", "<script>", long.as_str()] {
            assert!(
                !usable_request_id(&HeaderValue::from_str(bad).unwrap()),
                "{bad}"
            );
        }
    }
}
