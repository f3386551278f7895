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
