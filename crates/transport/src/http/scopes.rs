//! `/api/v1/scopes…`: the scope catalogue.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use gatehouse_domain::catalogue::Definition;
use serde::Deserialize;
use utoipa::ToSchema;

use super::error::ApiError;
use super::extract::{Authed, Body, Path};
use super::state::AppState;
use super::views::{ErrorBody, ImportedJson, ScopeDefined, ScopeEnvelope, ScopeJson, ScopeList};

/// The built-in scopes and the catalogue.
#[utoipa::path(
    get, path = "/api/v1/scopes", tag = "scopes",
    security(("bearer" = [])),
    responses(
        (status = 200, body = ScopeList),
        (status = "default", description = "An error", body = ErrorBody),
    ),
)]
pub async fn list_scopes(
    State(state): State<AppState>,
    auth: Authed,
) -> Result<Json<ScopeList>, ApiError> {
    let scopes = state
        .issuer()?
        .list_scopes(&auth.principal)
        .await?
        .into_iter()
        .map(ScopeJson::from)
        .collect();
    Ok(Json(ScopeList { scopes }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DefineBody {
    /// `resource:action`, lower case.
    #[schema(min_length = 3)]
    name: String,
    /// 1 to 500 characters.
    #[schema(min_length = 1, max_length = 500, pattern = r"\S")]
    description: String,
}

/// Defines a scope (or redescribes it): `platform:admin`.
#[utoipa::path(
    post, path = "/api/v1/scopes", tag = "scopes",
    request_body = DefineBody,
    security(("bearer" = [])),
    responses(
        (status = 201, body = ScopeDefined),
        (status = "default", description = "An error", body = ErrorBody),
    ),
)]
pub async fn define_scope(
    State(state): State<AppState>,
    auth: Authed,
    Body(body): Body<DefineBody>,
) -> Result<(StatusCode, Json<ScopeDefined>), ApiError> {
    let (scope, changed) = state
        .issuer()?
        .define_scope(&auth.principal, &body.name, &body.description, &auth.ctx)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(ScopeDefined {
            scope: ScopeJson::from(scope),
            changed,
        }),
    ))
}

/// Retires a scope: it grants nothing from now on (`platform:admin`).
#[utoipa::path(
    post, path = "/api/v1/scopes/{name}/retire", tag = "scopes",
    params(("name" = String, Path)),
    security(("bearer" = [])),
    responses(
        (status = 200, body = ScopeEnvelope),
        (status = "default", description = "An error", body = ErrorBody),
    ),
)]
pub async fn retire_scope(
    State(state): State<AppState>,
    auth: Authed,
    Path(name): Path<String>,
) -> Result<Json<ScopeEnvelope>, ApiError> {
    let scope = state
        .issuer()?
        .retire_scope(&auth.principal, &name, &auth.ctx)
        .await?;
    Ok(Json(ScopeEnvelope {
        scope: ScopeJson::from(scope),
    }))
}

/// One scope of an import.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DefinitionBody {
    name: String,
    description: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportBody {
    scopes: Vec<DefinitionBody>,
    /// Retire catalogue scopes the file does not name.
    #[serde(default)]
    prune: bool,
}

/// Imports a scope file in one transaction (`platform:admin`).
#[utoipa::path(
    post, path = "/api/v1/scopes/import", tag = "scopes",
    request_body = ImportBody,
    security(("bearer" = [])),
    responses(
        (status = 200, body = ImportedJson),
        (status = "default", description = "An error", body = ErrorBody),
    ),
)]
pub async fn import_scopes(
    State(state): State<AppState>,
    auth: Authed,
    Body(body): Body<ImportBody>,
) -> Result<Json<ImportedJson>, ApiError> {
    let definitions: Vec<Definition> = body
        .scopes
        .into_iter()
        .map(|d| Definition {
            name: d.name,
            description: d.description,
        })
        .collect();
    let imported = state
        .issuer()?
        .import_scopes(&auth.principal, &definitions, body.prune, &auth.ctx)
        .await?;
    Ok(Json(ImportedJson {
        defined: imported.defined,
        described: imported.described,
        retired: imported.retired,
    }))
}
