//! `POST /api/v1/verify`: the verifier's answer for a credential and the
//! scopes a caller needs, as `VerifierService.Verify` gives it on gRPC.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use utoipa::ToSchema;

use super::error::ApiError;
use super::extract::{OptionalBody, bearer};
use super::state::AppState;
use super::views::{ErrorBody, PrincipalJson};

#[derive(Deserialize, Default, ToSchema)]
#[serde(default)]
#[serde(deny_unknown_fields)]
pub struct VerifyBody {
    /// Concrete `resource:action` scopes the credential must hold.
    required_scopes: Vec<String>,
    /// The `aud` to check instead of the deployment's.
    audience: Option<String>,
}

/// Verifies the bearer credential (JWT or API key) for `required_scopes`.
/// The body may be left out.
#[utoipa::path(
    post, path = "/api/v1/verify", tag = "verify",
    request_body(content = Option<VerifyBody>, description = "May be left out"),
    security(("bearer" = [])),
    responses(
        (status = 200, body = PrincipalJson),
        (status = "default", description = "An error", body = ErrorBody),
    ),
)]
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
