//! Sign-in (login, refresh, logout, password change), the SDK-token
//! exchange, JWKS, discovery and the probes — each a few lines over the
//! application layer, each described for `/openapi.json` by its
//! `#[utoipa::path]`.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::Deserialize;
use utoipa::ToSchema;

use super::error::ApiError;
use super::extract::{Authed, Body, Context};
use super::state::AppState;
use super::views::{
    AccountRef, Discovery, ErrorBody, JwkJson, Jwks, LoginResponse, LoginUser, Probe,
    SdkTokenResponse, TokenResponse,
};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    /// The account email.
    #[schema(min_length = 1, pattern = r"\S")]
    username: String,
    #[schema(min_length = 1, pattern = r"\S")]
    password: String,
}

/// Password login: an access token, a refresh token and the account.
#[utoipa::path(
    post, path = "/api/auth/login", tag = "auth",
    request_body = LoginBody,
    responses(
        (status = 200, body = LoginResponse),
        (status = "default", description = "An error (unknown user and wrong password alike: 401)", body = ErrorBody),
    ),
)]
pub async fn login(
    State(state): State<AppState>,
    Context(ctx): Context,
    Body(body): Body<LoginBody>,
) -> Result<Json<LoginResponse>, ApiError> {
    let result = state
        .issuer()?
        .login(&body.username, body.password, &ctx)
        .await?;
    Ok(Json(LoginResponse {
        access_token: result.tokens.access_token,
        refresh_token: result.tokens.refresh_token,
        token_type: "Bearer",
        expires_in: result.tokens.expires_in,
        refresh_expires_in: result.tokens.refresh_expires_in,
        account: AccountRef {
            id: result.account.id.to_string(),
            name: result.account.name,
        },
        user: LoginUser {
            id: result.user.id.to_string(),
            username: result.user.username.to_string(),
            scopes: result.scopes.to_vec(),
        },
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshBody {
    #[schema(min_length = 1, pattern = r"\S")]
    refresh_token: String,
}

/// Spends a refresh token for a new pair; a spent one revokes its family.
#[utoipa::path(
    post, path = "/api/token/refresh", tag = "auth",
    request_body = RefreshBody,
    responses(
        (status = 200, body = TokenResponse),
        (status = "default", description = "An error", body = ErrorBody),
    ),
)]
pub async fn refresh(
    State(state): State<AppState>,
    Context(ctx): Context,
    Body(body): Body<RefreshBody>,
) -> Result<Json<TokenResponse>, ApiError> {
    let tokens = state.issuer()?.refresh(&body.refresh_token, &ctx).await?;
    Ok(Json(TokenResponse {
        access_token: tokens.access_token,
        refresh_token: tokens.refresh_token,
        token_type: "Bearer",
        expires_in: tokens.expires_in,
        refresh_expires_in: tokens.refresh_expires_in,
    }))
}

/// Ends the session the refresh token belongs to.
#[utoipa::path(
    post, path = "/api/auth/logout", tag = "auth",
    request_body = RefreshBody,
    responses(
        (status = 204, description = "Logged out"),
        (status = "default", description = "An error", body = ErrorBody),
    ),
)]
pub async fn logout(
    State(state): State<AppState>,
    Context(ctx): Context,
    Body(body): Body<RefreshBody>,
) -> Result<StatusCode, ApiError> {
    state.issuer()?.logout(&body.refresh_token, &ctx).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordBody {
    #[schema(min_length = 1, pattern = r"\S")]
    old_password: String,
    /// 12 to 256 characters.
    #[schema(min_length = 12, max_length = 256, pattern = r"\S")]
    new_password: String,
}

/// Changes the caller's password (a user's access token); the user's other
/// sessions end.
#[utoipa::path(
    post, path = "/api/auth/password", tag = "auth",
    request_body = PasswordBody,
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Changed; the other sessions ended"),
        (status = "default", description = "An error (a wrong old password: 403 WRONG_PASSWORD)", body = ErrorBody),
    ),
)]
pub async fn change_password(
    State(state): State<AppState>,
    Authed { principal, ctx, .. }: Authed,
    Body(body): Body<PasswordBody>,
) -> Result<StatusCode, ApiError> {
    state
        .issuer()?
        .change_password(&principal, body.old_password, body.new_password, &ctx)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SdkTokenBody {
    #[schema(format = Uuid)]
    account_id: String,
    #[schema(format = Uuid)]
    key_id: String,
    #[schema(min_length = 1, pattern = r"\S")]
    key_secret: String,
}

async fn exchange(state: AppState, body: SdkTokenBody) -> Result<Json<SdkTokenResponse>, ApiError> {
    let (access_token, expires_in) = state
        .issuer()?
        .exchange_sdk_token(&body.account_id, &body.key_id, &body.key_secret)
        .await?;
    Ok(Json(SdkTokenResponse {
        access_token,
        expires_in,
        token_type: "Bearer",
    }))
}

/// Exchanges an API key for a one-hour access token (`/v1/auth/sdk-token`,
/// the path Scope's SDK calls).
#[utoipa::path(
    post, path = "/v1/auth/sdk-token", tag = "auth",
    request_body = SdkTokenBody,
    responses(
        (status = 200, body = SdkTokenResponse),
        (status = "default", description = "An error", body = ErrorBody),
    ),
)]
pub async fn sdk_token(
    State(state): State<AppState>,
    Body(body): Body<SdkTokenBody>,
) -> Result<Json<SdkTokenResponse>, ApiError> {
    exchange(state, body).await
}

/// The SDK-token exchange under `/api/v1`.
#[utoipa::path(
    post, path = "/api/v1/auth/sdk-token", tag = "auth",
    request_body = SdkTokenBody,
    responses(
        (status = 200, body = SdkTokenResponse),
        (status = "default", description = "An error", body = ErrorBody),
    ),
)]
pub async fn sdk_token_v1(
    State(state): State<AppState>,
    Body(body): Body<SdkTokenBody>,
) -> Result<Json<SdkTokenResponse>, ApiError> {
    exchange(state, body).await
}

/// The published signing keys (RFC 7517), cacheable for less than a signing
/// key's publish lead.
#[utoipa::path(
    get, path = "/.well-known/jwks.json", tag = "auth",
    responses(
        (status = 200, body = Jwks, headers(("cache-control" = String))),
        (status = "default", description = "An error", body = ErrorBody),
    ),
)]
pub async fn jwks(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let keys = state
        .issuer()?
        .jwks()
        .into_iter()
        .map(JwkJson::from)
        .collect();
    Ok((
        [(header::CACHE_CONTROL, "public, max-age=60")],
        Json(Jwks { keys }),
    ))
}

/// Liveness: the process answers.
#[utoipa::path(
    get, path = "/healthz", tag = "probes",
    responses((status = 200, body = Probe)),
)]
pub async fn healthz() -> Json<Probe> {
    Json(Probe {
        status: "ok",
        warnings: Vec::new(),
    })
}

/// Readiness: the event log answers and, on a verifier, the index is fresh.
#[utoipa::path(
    get, path = "/readyz", tag = "probes",
    responses(
        (status = 200, body = Probe),
        (status = "default", description = "Not ready (503 NOT_READY)", body = ErrorBody),
    ),
)]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Probe>, ApiError> {
    let unavailable =
        |why: &str| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, why).with_reason("NOT_READY");
    if let Some(issuer) = &state.issuer {
        issuer
            .ready()
            .await
            .map_err(|_| unavailable("the event log does not answer"))?;
    }
    if let Some(decider) = &state.decider
        && !decider.is_fresh()
    {
        return Err(unavailable("the verifier has not read the log recently"));
    }
    // Usage that cannot be recorded is said, not made an outage: pulling
    // every verifier out of rotation would stop verification for an audit gap.
    let mut warnings = Vec::new();
    if let Some(decider) = &state.decider
        && !decider.records_usage()
    {
        warnings.push("the verifier cannot record key usage");
    }
    Ok(Json(Probe {
        status: "ready",
        warnings,
    }))
}

/// Where the keys and token endpoints are. `issuer` is exactly the `iss` of
/// every token (an http(s) URL, checked at start-up), and the endpoints hang
/// off it — never off the request's Host, so a cache in front cannot serve a
/// document naming another host.
#[utoipa::path(
    get, path = "/.well-known/openid-configuration", tag = "auth",
    responses(
        (status = 200, body = Discovery),
        (status = "default", description = "An error", body = ErrorBody),
    ),
)]
pub async fn discovery(State(state): State<AppState>) -> Result<Json<Discovery>, ApiError> {
    let issuer = state.issuer()?;
    let algorithms = issuer.signing_algorithms();
    let issuer = issuer.settings().issuer.clone();
    let base = issuer.trim_end_matches('/').to_string();
    Ok(Json(Discovery {
        jwks_uri: format!("{base}/.well-known/jwks.json"),
        token_endpoint: format!("{base}/api/auth/login"),
        refresh_endpoint: format!("{base}/api/token/refresh"),
        sdk_token_endpoint: format!("{base}/v1/auth/sdk-token"),
        issuer,
        response_types_supported: vec!["token"],
        subject_types_supported: vec!["public"],
        id_token_signing_alg_values_supported: algorithms,
        token_endpoint_auth_methods_supported: vec!["none"],
    }))
}
