//! The seeds' sign-in routes, SDK-token exchange, verification, JWKS and
//! probes — each a few lines over the application layer.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::ApiError;
use super::extract::{Authed, Body, Context, OptionalBody, bearer};
use super::state::AppState;
use super::views::PrincipalJson;

#[derive(Deserialize)]
pub struct LoginBody {
    username: String,
    password: String,
}

/// `POST /api/auth/login`.
pub async fn login(
    State(state): State<AppState>,
    Context(ctx): Context,
    Body(body): Body<LoginBody>,
) -> Result<Json<Value>, ApiError> {
    let result = state
        .issuer()?
        .login(&body.username, body.password, &ctx)
        .await;
    crate::count_login(&result);
    let result = result?;
    Ok(Json(json!({
        "access_token": result.tokens.access_token,
        "refresh_token": result.tokens.refresh_token,
        "token_type": "Bearer",
        "expires_in": result.tokens.expires_in,
        "refresh_expires_in": result.tokens.refresh_expires_in,
        "account": { "id": result.account.id.to_string(), "name": result.account.name },
        "user": {
            "id": result.user.id.to_string(),
            "username": result.user.username.to_string(),
            "scopes": result.scopes.to_vec(),
        },
    })))
}

#[derive(Deserialize)]
pub struct RefreshBody {
    refresh_token: String,
}

/// `POST /api/token/refresh`.
pub async fn refresh(
    State(state): State<AppState>,
    Context(ctx): Context,
    Body(body): Body<RefreshBody>,
) -> Result<Json<Value>, ApiError> {
    let tokens = state.issuer()?.refresh(&body.refresh_token, &ctx).await?;
    Ok(Json(json!({
        "access_token": tokens.access_token,
        "refresh_token": tokens.refresh_token,
        "token_type": "Bearer",
        "expires_in": tokens.expires_in,
        "refresh_expires_in": tokens.refresh_expires_in,
    })))
}

/// `POST /api/auth/logout`: 204.
pub async fn logout(
    State(state): State<AppState>,
    Context(ctx): Context,
    Body(body): Body<RefreshBody>,
) -> Result<StatusCode, ApiError> {
    state.issuer()?.logout(&body.refresh_token, &ctx).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
pub struct PasswordBody {
    old_password: String,
    new_password: String,
}

/// `POST /api/auth/password`: 204; the user's other sessions end.
pub async fn change_password(
    State(state): State<AppState>,
    Authed { principal, ctx }: Authed,
    Body(body): Body<PasswordBody>,
) -> Result<StatusCode, ApiError> {
    state
        .issuer()?
        .change_password(&principal, body.old_password, body.new_password, &ctx)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
pub struct SdkTokenBody {
    account_id: String,
    key_id: String,
    key_secret: String,
}

/// `POST /v1/auth/sdk-token` and `POST /api/v1/auth/sdk-token`.
pub async fn sdk_token(
    State(state): State<AppState>,
    Body(body): Body<SdkTokenBody>,
) -> Result<Json<Value>, ApiError> {
    let (access_token, expires_in) = state
        .issuer()?
        .exchange_sdk_token(&body.account_id, &body.key_id, &body.key_secret)
        .await?;
    Ok(Json(json!({
        "access_token": access_token,
        "expires_in": expires_in,
        "token_type": "Bearer",
    })))
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct VerifyBody {
    required_scopes: Vec<String>,
    audience: Option<String>,
}

/// `POST /api/v1/verify`: the bearer credential, checked for `required_scopes`.
pub async fn verify(
    State(state): State<AppState>,
    parts: axum::http::request::Parts,
    OptionalBody(body): OptionalBody<VerifyBody>,
) -> Result<Json<PrincipalJson>, ApiError> {
    let decider = state.decider()?;
    let credential = bearer(&parts).unwrap_or_default();
    let caller = super::extract::context(&parts).client_address;
    let verified = decider
        .decide(
            &credential,
            &body.required_scopes,
            body.audience.as_deref(),
            caller.as_deref(),
        )
        .await?;
    Ok(Json(verified.into()))
}

/// `GET /.well-known/jwks.json`: the published keys (RFC 7517), cacheable
/// for less than a signing key's publish lead.
pub async fn jwks(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let keys = state.issuer()?.keyring().jwks(chrono::Utc::now());
    Ok((
        [(header::CACHE_CONTROL, "public, max-age=60")],
        Json(json!({ "keys": keys })),
    ))
}

/// `GET /healthz`: the process answers.
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /readyz`: the event log answers and, on a verifier, the index is fresh.
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
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
    Ok(Json(json!({ "status": "ready" })))
}

/// `GET /.well-known/openid-configuration`: where the keys and token
/// endpoints are. `issuer` is exactly the `iss` of every token (an http(s)
/// URL, checked at start-up), and the endpoints hang off it.
pub async fn discovery(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let issuer = state.issuer()?;
    // The algorithms of the published keys: during a switch, both.
    let mut algorithms: Vec<&str> = issuer
        .keyring()
        .jwks(chrono::Utc::now())
        .iter()
        .map(|k| k.alg)
        .collect();
    algorithms.sort_unstable();
    algorithms.dedup();
    let issuer = issuer.settings().issuer.clone();
    // Always the configured URL, never the request's Host: a cache in front
    // must not be able to serve a discovery document naming another host.
    let base = issuer.trim_end_matches('/').to_string();
    Ok(Json(json!({
        "issuer": issuer,
        "jwks_uri": format!("{base}/.well-known/jwks.json"),
        "token_endpoint": format!("{base}/api/auth/login"),
        "refresh_endpoint": format!("{base}/api/token/refresh"),
        "sdk_token_endpoint": format!("{base}/v1/auth/sdk-token"),
        "response_types_supported": ["token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": algorithms,
        "token_endpoint_auth_methods_supported": ["none"],
    })))
}
