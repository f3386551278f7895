//! `/api/v1/accounts` and their users.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use gatehouse_domain::scope::Scopes;
use gatehouse_issuer::IssuerError;
use serde::Deserialize;
use utoipa::ToSchema;

use super::error::ApiError;
use super::extract::{Authed, Body, Path};
use super::state::AppState;
use super::views::{AccountCreated, AccountJson, ErrorBody, UserEnvelope, UserJson, rfc3339};

use super::account;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountBody {
    /// 1 to 100 characters.
    #[schema(min_length = 1, max_length = 100, pattern = r"\S")]
    name: String,
    /// With `owner_password`: the account's first user, holding `*`.
    #[serde(default)]
    owner_username: Option<String>,
    #[serde(default)]
    owner_password: Option<String>,
}

/// Creates an account and, optionally, its owner (`platform:admin`).
#[utoipa::path(
    post, path = "/api/v1/accounts", tag = "accounts",
    request_body = AccountBody,
    security(("bearer" = [])),
    responses(
        (status = 201, body = AccountCreated),
        (status = "default", description = "An error", body = ErrorBody),
    ),
)]
pub async fn create_account(
    State(state): State<AppState>,
    auth: Authed,
    Body(body): Body<AccountBody>,
) -> Result<(StatusCode, Json<AccountCreated>), ApiError> {
    let (account, owner) = state
        .issuer()?
        .create_account(
            &auth.principal,
            &body.name,
            body.owner_username.as_deref(),
            body.owner_password,
            &auth.ctx,
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(AccountCreated {
            account: AccountJson {
                id: account.id.to_string(),
                name: account.name,
                created_at: rfc3339(account.created_at),
            },
            owner: owner.as_ref().map(UserJson::from),
        }),
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserBody {
    /// An email address.
    #[schema(format = Email)]
    username: String,
    /// 12 to 256 characters.
    #[schema(min_length = 12, max_length = 256, pattern = r"\S")]
    password: String,
    #[serde(default)]
    scopes: Vec<String>,
}

/// Creates a user with scopes in the account (`users:write`).
#[utoipa::path(
    post, path = "/api/v1/accounts/{account_id}/users", tag = "accounts",
    params(("account_id" = uuid::Uuid, Path)),
    request_body = UserBody,
    security(("bearer" = [])),
    responses(
        (status = 201, body = UserEnvelope),
        (status = "default", description = "An error", body = ErrorBody),
    ),
)]
pub async fn create_user(
    State(state): State<AppState>,
    auth: Authed,
    Path(account_id): Path<String>,
    Body(body): Body<UserBody>,
) -> Result<(StatusCode, Json<UserEnvelope>), ApiError> {
    let scopes = Scopes::parse(&body.scopes).map_err(IssuerError::from)?;
    let user = state
        .issuer()?
        .create_user(
            &auth.principal,
            account(&account_id)?,
            &body.username,
            body.password,
            scopes,
            &auth.ctx,
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(UserEnvelope {
            user: UserJson::from(&user),
        }),
    ))
}
