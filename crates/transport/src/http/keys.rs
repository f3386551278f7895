//! `/api/v1/accounts/{account_id}/keys…`: API key administration, each
//! route a few lines over the issuer, described for `/openapi.json` by its
//! `#[utoipa::path]`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use gatehouse_domain::scope::Scopes;
use gatehouse_issuer::IssuerError;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::error::ApiError;
use super::extract::{Authed, Body, OptionalBody, Path, Query};
use super::state::AppState;
use super::views::{ErrorBody, IssuedKeyJson, KeyEnvelope, KeyJson, KeyList, rfc3339};

use super::{account, ids};

#[derive(Deserialize, Default, IntoParams)]
#[serde(default)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// From the previous page's `next_page_token`.
    page_token: String,
    /// 1 to 500; 0 or absent: 50.
    page_size: i32,
    /// List deleted keys too.
    include_deleted: bool,
}

/// One account's keys, newest first.
#[utoipa::path(
    get, path = "/api/v1/accounts/{account_id}/keys", tag = "keys",
    params(("account_id" = uuid::Uuid, Path), ListQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, body = KeyList),
        (status = "default", description = "An error", body = ErrorBody),
    ),
)]
pub async fn list_keys(
    State(state): State<AppState>,
    auth: Authed,
    Path(account_id): Path<String>,
    Query(q): Query<ListQuery>,
) -> Result<Json<KeyList>, ApiError> {
    let page = state
        .issuer()?
        .list_keys(
            &auth.principal,
            account(&account_id)?,
            q.page_size,
            &q.page_token,
            q.include_deleted,
        )
        .await?;
    Ok(Json(KeyList {
        keys: page.keys.iter().map(KeyJson::from).collect(),
        next_page_token: page.next_page_token,
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKeyBody {
    /// 1 to 100 characters.
    #[schema(min_length = 1, max_length = 100, pattern = r"\S")]
    name: String,
    /// Catalogue scopes, `resource:*` or `*`, within the caller's own grants.
    scopes: Vec<String>,
    #[serde(default)]
    expires_at: Option<DateTime<Utc>>,
}

/// Creates a key; its secret is in this answer and nowhere else, ever.
#[utoipa::path(
    post, path = "/api/v1/accounts/{account_id}/keys", tag = "keys",
    params(("account_id" = uuid::Uuid, Path)),
    request_body = CreateKeyBody,
    security(("bearer" = [])),
    responses(
        (status = 201, body = IssuedKeyJson),
        (status = "default", description = "An error", body = ErrorBody),
    ),
)]
pub async fn create_key(
    State(state): State<AppState>,
    auth: Authed,
    Path(account_id): Path<String>,
    Body(body): Body<CreateKeyBody>,
) -> Result<(StatusCode, Json<IssuedKeyJson>), ApiError> {
    let scopes = Scopes::parse(&body.scopes).map_err(IssuerError::from)?;
    let issued = state
        .issuer()?
        .create_key(
            &auth.principal,
            account(&account_id)?,
            &body.name,
            scopes,
            body.expires_at,
            &auth.ctx,
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(IssuedKeyJson {
            key: KeyJson::from(&issued.key),
            secret: issued.secret,
            previous_secret_valid_until: None,
        }),
    ))
}

/// One key's metadata (never its secret).
#[utoipa::path(
    get, path = "/api/v1/accounts/{account_id}/keys/{key_id}", tag = "keys",
    params(("account_id" = uuid::Uuid, Path), ("key_id" = uuid::Uuid, Path)),
    security(("bearer" = [])),
    responses(
        (status = 200, body = KeyJson),
        (status = "default", description = "An error", body = ErrorBody),
    ),
)]
pub async fn get_key(
    State(state): State<AppState>,
    auth: Authed,
    Path((account_id, key_id)): Path<(String, String)>,
) -> Result<Json<KeyJson>, ApiError> {
    let (account_id, key_id) = ids(&account_id, &key_id)?;
    let view = state
        .issuer()?
        .get_key(&auth.principal, account_id, key_id)
        .await?;
    Ok(Json(KeyJson::from(&view)))
}

#[derive(Deserialize, Default, ToSchema)]
#[serde(default)]
#[serde(deny_unknown_fields)]
pub struct RotateBody {
    /// How long the old secret keeps working: 0 to 30 days; absent: 24 h.
    grace_period_seconds: Option<i64>,
}

/// A new secret; the old one works until the grace period ends. The body
/// may be left out.
#[utoipa::path(
    post, path = "/api/v1/accounts/{account_id}/keys/{key_id}/rotate", tag = "keys",
    params(("account_id" = uuid::Uuid, Path), ("key_id" = uuid::Uuid, Path)),
    request_body(content = Option<RotateBody>, description = "May be left out"),
    security(("bearer" = [])),
    responses(
        (status = 200, body = IssuedKeyJson),
        (status = "default", description = "An error", body = ErrorBody),
    ),
)]
pub async fn rotate_key(
    State(state): State<AppState>,
    auth: Authed,
    Path((account_id, key_id)): Path<(String, String)>,
    OptionalBody(body): OptionalBody<RotateBody>,
) -> Result<Json<IssuedKeyJson>, ApiError> {
    let (account_id, key_id) = ids(&account_id, &key_id)?;
    // The range (0 to 30 days) is the domain's rule; here only the unit.
    let grace = match body.grace_period_seconds {
        Some(seconds) => Some(
            chrono::Duration::try_seconds(seconds)
                .ok_or_else(|| ApiError::bad_request("grace_period_seconds is too large"))?,
        ),
        None => None,
    };
    let issued = state
        .issuer()?
        .rotate_key(&auth.principal, account_id, key_id, grace, &auth.ctx)
        .await?;
    let valid_until = issued.previous_secret_valid_until.map(rfc3339);
    Ok(Json(IssuedKeyJson {
        key: KeyJson::from(&issued.key),
        secret: issued.secret,
        previous_secret_valid_until: valid_until,
    }))
}

#[derive(Deserialize, Default, ToSchema)]
#[serde(default)]
#[serde(deny_unknown_fields)]
pub struct ReasonBody {
    /// Recorded in the activity log.
    reason: String,
}

/// Revokes a key at once. The body may be left out.
#[utoipa::path(
    post, path = "/api/v1/accounts/{account_id}/keys/{key_id}/revoke", tag = "keys",
    params(("account_id" = uuid::Uuid, Path), ("key_id" = uuid::Uuid, Path)),
    request_body(content = Option<ReasonBody>, description = "May be left out"),
    security(("bearer" = [])),
    responses(
        (status = 200, body = KeyEnvelope),
        (status = "default", description = "An error", body = ErrorBody),
    ),
)]
pub async fn revoke_key(
    State(state): State<AppState>,
    auth: Authed,
    Path((account_id, key_id)): Path<(String, String)>,
    OptionalBody(body): OptionalBody<ReasonBody>,
) -> Result<Json<KeyEnvelope>, ApiError> {
    let (account_id, key_id) = ids(&account_id, &key_id)?;
    let view = state
        .issuer()?
        .revoke_key(&auth.principal, account_id, key_id, &body.reason, &auth.ctx)
        .await?;
    Ok(Json(KeyEnvelope {
        key: KeyJson::from(&view),
    }))
}

#[derive(Deserialize, Default, IntoParams)]
#[serde(default)]
#[into_params(parameter_in = Query)]
pub struct DeleteQuery {
    /// Recorded in the activity log.
    reason: String,
}

/// Deletes a key: revoked if still live, gone from the list, its history kept.
#[utoipa::path(
    delete, path = "/api/v1/accounts/{account_id}/keys/{key_id}", tag = "keys",
    params(("account_id" = uuid::Uuid, Path), ("key_id" = uuid::Uuid, Path), DeleteQuery),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = "default", description = "An error", body = ErrorBody),
    ),
)]
pub async fn delete_key(
    State(state): State<AppState>,
    auth: Authed,
    Path((account_id, key_id)): Path<(String, String)>,
    Query(q): Query<DeleteQuery>,
) -> Result<StatusCode, ApiError> {
    let (account_id, key_id) = ids(&account_id, &key_id)?;
    state
        .issuer()?
        .delete_key(&auth.principal, account_id, key_id, &q.reason, &auth.ctx)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
