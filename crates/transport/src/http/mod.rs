//! HTTP+JSON: the routes the products' callers use (login, refresh, SDK
//! token, keys) over the same application layer as gRPC, on
//! the same port. Bodies are snake_case JSON; every error is
//! `{code, message, statusCode, reason?}` from [`error::ApiError`].
//!
//! - [`auth`]: login, refresh, logout, SDK-token exchange, JWKS, probes;
//! - [`verifier`]: `POST /api/v1/verify`;
//! - [`keys`], [`scopes`], [`accounts`] (and users), [`audit`] (the activity
//!   log): the admin routes, one module per service as on gRPC;
//! - [`extract`]: JSON bodies, the caller's context, the bearer credential;
//! - [`layers`]: request ids and CORS;
//! - [`error`]: the one mapping of failures to statuses, bodies and challenges;
//! - [`views`]: the JSON shapes, which `/openapi.json` (OpenAPI 3.1, utoipa)
//!   describes from the same types.

pub mod accounts;
pub mod audit;
pub mod auth;
pub mod error;
pub mod extract;
pub mod keys;
pub mod layers;
pub mod scopes;
pub mod state;
pub mod verifier;
pub mod views;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{StatusCode, header};
use axum::routing::get;
use tower::ServiceExt as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use gatehouse_domain::ids::{AccountId, KeyId};
use gatehouse_issuer::IssuerError;

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

/// The description of the HTTP API; paths come from the handlers'
/// `#[utoipa::path]` attributes as [`api`] registers them.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Gatehouse",
        description = "Authentication: password login, refresh rotation, SDK-token exchange, scoped API keys, verification and the key activity log. Every error is `{code, message, statusCode, reason?}`."
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "auth", description = "Sign-in, tokens, signing keys"),
        (name = "verify", description = "Checking a credential"),
        (name = "keys", description = "API keys of an account"),
        (name = "activity", description = "The key activity log"),
        (name = "scopes", description = "The scope catalogue"),
        (name = "accounts", description = "Accounts and users"),
        (name = "probes", description = "Liveness and readiness"),
    )
)]
struct ApiDoc;

/// `Authorization: Bearer` with an access token or an API key secret.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "bearer",
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .description(Some("An access token (user or SDK) or an API key secret"))
                        .build(),
                ),
            );
    }
}

/// The routes of the roles asked for, each registered with its description.
fn api(issuer: bool, verifier: bool) -> OpenApiRouter<AppState> {
    use utoipa::OpenApi as _;
    let mut api = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(auth::healthz))
        .routes(routes!(auth::readyz));
    if issuer {
        api = api
            .routes(routes!(auth::login))
            .routes(routes!(auth::refresh))
            .routes(routes!(auth::logout))
            .routes(routes!(auth::change_password))
            .routes(routes!(auth::sdk_token))
            .routes(routes!(auth::sdk_token_v1))
            .routes(routes!(auth::jwks))
            .routes(routes!(auth::discovery))
            .routes(routes!(scopes::list_scopes, scopes::define_scope))
            .routes(routes!(scopes::import_scopes))
            .routes(routes!(scopes::retire_scope))
            .routes(routes!(accounts::create_account))
            .routes(routes!(accounts::create_user))
            .routes(routes!(keys::list_keys, keys::create_key))
            .routes(routes!(keys::get_key, keys::delete_key))
            .routes(routes!(keys::rotate_key))
            .routes(routes!(keys::revoke_key))
            .routes(routes!(audit::activity))
            .routes(routes!(audit::activity_stream));
    }
    if verifier {
        api = api.routes(routes!(verifier::verify));
    }
    api
}

/// The account and key ids of a key route's path.
pub(crate) fn ids(account_id: &str, key_id: &str) -> Result<(AccountId, KeyId), ApiError> {
    Ok((
        account(account_id)?,
        KeyId::parse(key_id).map_err(IssuerError::from)?,
    ))
}

/// The account id of a route's path.
pub(crate) fn account(account_id: &str) -> Result<AccountId, ApiError> {
    Ok(AccountId::parse(account_id).map_err(IssuerError::from)?)
}

/// The OpenAPI 3.1 description of every route (both roles).
pub fn openapi() -> utoipa::openapi::OpenApi {
    api(true, true).split_for_parts().1
}

/// The HTTP routes of the roles in `state`, and `/openapi.json` describing
/// exactly them.
pub fn router(state: AppState, settings: &HttpSettings) -> Router {
    let (router, description) =
        api(state.issuer.is_some(), state.decider.is_some()).split_for_parts();
    let description = std::sync::Arc::new(description);
    let router = router
        .route(
            "/openapi.json",
            get(move || {
                let description = description.clone();
                async move { axum::Json(description.as_ref().clone()) }
            }),
        )
        .fallback(|| async { ApiError::not_found() })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed on this route",
            )
        })
        .layer(DefaultBodyLimit::max(settings.body_limit))
        // Answers carry tokens and secrets (login, refresh, create, rotate):
        // no cache may keep them. Routes that may be cached (JWKS) say so.
        .layer(
            tower_http::set_header::SetResponseHeaderLayer::if_not_present(
                header::CACHE_CONTROL,
                axum::http::HeaderValue::from_static("no-store"),
            ),
        )
        .layer(axum::middleware::from_fn_with_state(
            settings.body_limit,
            refuse_declared_oversize,
        ))
        .with_state(state);
    layers::with_cors(router, &settings.cors_origins)
}

/// Most bytes of a too-large body read and thrown away before the 413, so a
/// client still sending it reads the answer instead of a broken connection.
const DRAIN_AT_MOST: u64 = 8 << 20;

/// A body whose `Content-Length` is over the limit gets 413 at once — after
/// reading it (up to 8 MiB), since hyper closes a connection whose request
/// body was left unread and a client still writing would see a reset, not
/// the answer. Larger bodies are refused without reading: that connection
/// is closed, as it must be.
async fn refuse_declared_oversize(
    axum::extract::State(limit): axum::extract::State<usize>,
    request: Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(length) if length > limit as u64 => {
            if length <= DRAIN_AT_MOST {
                let mut body = request.into_body().into_data_stream();
                while let Some(Ok(_)) = futures::StreamExt::next(&mut body).await {}
            }
            ApiError::new(
                axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                "the body is larger than the server accepts",
            )
            .into_response()
        }
        _ => next.run(request).await,
    }
}

/// One listener for both: requests with a gRPC content type go to `grpc`,
/// everything else to `http` (so an unknown HTTP path is a JSON 404, never a
/// gRPC `UNIMPLEMENTED`).
/// Request ids and the log span wrap both.
pub fn multiplex(
    grpc: Router,
    http: Router,
    trusted: std::sync::Arc<crate::peer::TrustedProxies>,
    limits: crate::limits::Limits,
) -> Router {
    layers::with_request_ids(
        Router::new()
            .fallback_service(tower::service_fn(move |request: Request| {
                let is_grpc = request
                    .headers()
                    .get(header::CONTENT_TYPE)
                    .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
                let target = if is_grpc { grpc.clone() } else { http.clone() };
                target.oneshot(request)
            }))
            .layer(axum::middleware::map_request_with_state(
                trusted,
                crate::peer::client_addresses,
            ))
            .layer(axum::middleware::from_fn_with_state(
                limits,
                crate::limits::enforce,
            )),
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_description_is_openapi_3_1_and_names_every_route_of_design_7() {
        let description = serde_json::to_value(super::openapi()).unwrap();
        assert_eq!(description["openapi"], "3.1.0");
        let paths = description["paths"].as_object().unwrap();
        for (path, method) in [
            ("/api/auth/login", "post"),
            ("/api/token/refresh", "post"),
            ("/api/auth/logout", "post"),
            ("/api/auth/password", "post"),
            ("/v1/auth/sdk-token", "post"),
            ("/api/v1/auth/sdk-token", "post"),
            ("/api/v1/verify", "post"),
            ("/api/v1/accounts/{account_id}/keys", "get"),
            ("/api/v1/accounts/{account_id}/keys", "post"),
            ("/api/v1/accounts/{account_id}/keys/{key_id}", "get"),
            ("/api/v1/accounts/{account_id}/keys/{key_id}", "delete"),
            ("/api/v1/accounts/{account_id}/keys/{key_id}/rotate", "post"),
            ("/api/v1/accounts/{account_id}/keys/{key_id}/revoke", "post"),
            ("/api/v1/accounts/{account_id}/activity", "get"),
            ("/api/v1/accounts/{account_id}/activity/stream", "get"),
            ("/api/v1/scopes", "get"),
            ("/api/v1/scopes", "post"),
            ("/api/v1/scopes/{name}/retire", "post"),
            ("/api/v1/accounts", "post"),
            ("/api/v1/accounts/{account_id}/users", "post"),
            ("/.well-known/jwks.json", "get"),
            ("/.well-known/openid-configuration", "get"),
            ("/healthz", "get"),
            ("/readyz", "get"),
        ] {
            let operation = &paths
                .get(path)
                .unwrap_or_else(|| panic!("{path} is not described"))[method];
            assert!(operation.is_object(), "{method} {path} is not described");
            assert!(
                path == "/healthz"
                    || operation["responses"]["default"]["content"]["application/json"]["schema"]
                        .is_object(),
                "{method} {path} describes its error body"
            );
        }
        let schemas = &description["components"]["schemas"];
        assert_eq!(
            schemas["ErrorBody"]["required"],
            serde_json::json!(["code", "message", "statusCode"])
        );
        assert!(
            description["components"]["securitySchemes"]["bearer"].is_object(),
            "{description}"
        );
    }
}
