//! HTTP+JSON: the seeds' routes over the same application layer as gRPC, on
//! the same port. Bodies are snake_case JSON; every error is
//! `{code, message, statusCode, reason?}` from [`error::ApiError`].
//!
//! - [`auth`]: login, refresh, logout, SDK-token exchange, verify, JWKS, probes;
//! - [`admin`]: keys, scopes, accounts, users, the activity log;
//! - [`extract`]: JSON bodies, the caller's context, the bearer credential;
//! - [`layers`]: request ids and CORS;
//! - [`error`]: the one mapping of failures to statuses, bodies and challenges;
//! - [`views`]: the JSON shapes.

pub mod admin;
pub mod auth;
pub mod error;
pub mod extract;
pub mod layers;
pub mod state;
pub mod views;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{StatusCode, header};
use axum::routing::{get, post};
use tower::ServiceExt as _;

pub use error::ApiError;
pub use state::AppState;

/// How the HTTP side is configured.
#[derive(Debug, Clone, Default)]
pub struct HttpSettings {
    /// Bodies over this many bytes are 413.
    pub body_limit: usize,
    /// Browser origins allowed by CORS (none by default).
    pub cors_origins: Vec<axum::http::HeaderValue>,
}

/// The HTTP routes of the roles in `state`.
pub fn router(state: AppState, settings: &HttpSettings) -> Router {
    let mut router = Router::new()
        .route("/healthz", get(auth::healthz))
        .route("/readyz", get(auth::readyz));
    if state.issuer.is_some() {
        router = router
            .route("/api/auth/login", post(auth::login))
            .route("/api/token/refresh", post(auth::refresh))
            .route("/api/auth/logout", post(auth::logout))
            .route("/api/auth/password", post(auth::change_password))
            .route("/v1/auth/sdk-token", post(auth::sdk_token))
            .route("/api/v1/auth/sdk-token", post(auth::sdk_token))
            .route("/.well-known/jwks.json", get(auth::jwks))
            .route("/.well-known/openid-configuration", get(auth::discovery))
            .route(
                "/api/v1/scopes",
                get(admin::list_scopes).post(admin::define_scope),
            )
            .route("/api/v1/scopes/import", post(admin::import_scopes))
            .route("/api/v1/scopes/{name}/retire", post(admin::retire_scope))
            .route("/api/v1/accounts", post(admin::create_account))
            .route(
                "/api/v1/accounts/{account_id}/users",
                post(admin::create_user),
            )
            .route(
                "/api/v1/accounts/{account_id}/keys",
                get(admin::list_keys).post(admin::create_key),
            )
            .route(
                "/api/v1/accounts/{account_id}/keys/{key_id}",
                get(admin::get_key).delete(admin::delete_key),
            )
            .route(
                "/api/v1/accounts/{account_id}/keys/{key_id}/rotate",
                post(admin::rotate_key),
            )
            .route(
                "/api/v1/accounts/{account_id}/keys/{key_id}/revoke",
                post(admin::revoke_key),
            )
            .route(
                "/api/v1/accounts/{account_id}/activity",
                get(admin::activity),
            )
            .route(
                "/api/v1/accounts/{account_id}/activity/stream",
                get(admin::activity_stream),
            );
    }
    if state.decider.is_some() {
        router = router.route("/api/v1/verify", post(auth::verify));
    }
    let router = router
        .fallback(|| async { ApiError::not_found() })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed on this route",
            )
        })
        .layer(DefaultBodyLimit::max(settings.body_limit))
        .with_state(state);
    layers::with_cors(router, &settings.cors_origins)
}

/// One listener for both: requests with a gRPC content type go to `grpc`,
/// everything else to `http` (so an unknown HTTP path is a JSON 404, never a
/// gRPC `UNIMPLEMENTED`).
/// Request ids and the log span wrap both.
pub fn multiplex(grpc: Router, http: Router) -> Router {
    layers::with_request_ids(Router::new().fallback_service(tower::service_fn(
        move |request: Request| {
            let is_grpc = request
                .headers()
                .get(header::CONTENT_TYPE)
                .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
            let target = if is_grpc { grpc.clone() } else { http.clone() };
            target.oneshot(request)
        },
    )))
}
