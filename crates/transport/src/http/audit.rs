//! The key activity log: pages, and the live SSE stream.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use gatehouse_domain::activity::ActivityKind;
use gatehouse_domain::ids::KeyId;
use gatehouse_issuer::IssuerError;
use gatehouse_issuer::audit::ActivityQuery;
use serde::Deserialize;
use utoipa::IntoParams;

use super::error::ApiError;
use super::extract::{Authed, Path, Query};
use super::state::AppState;
use super::views::{ActivityJson, ActivityPage, ErrorBody};

use super::account;

#[derive(Deserialize, Default, IntoParams)]
#[serde(default)]
#[into_params(parameter_in = Query)]
pub struct ActivityParams {
    /// Only this key's entries.
    #[param(format = Uuid)]
    key_id: String,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    /// Comma-separated kinds, e.g. `created,revoked`.
    kinds: String,
    page_token: String,
    page_size: i32,
}

impl ActivityParams {
    /// The parsed query for `account_id`.
    fn query(&self, account_id: &str) -> Result<ActivityQuery, ApiError> {
        let kinds = self
            .kinds
            .split(',')
            .filter(|k| !k.is_empty())
            .map(ActivityKind::parse)
            .collect::<Result<Vec<_>, _>>()
            .map_err(IssuerError::from)?;
        Ok(ActivityQuery::new(
            account(account_id)?,
            (!self.key_id.is_empty())
                .then(|| KeyId::parse(&self.key_id))
                .transpose()
                .map_err(IssuerError::from)?,
            self.since,
            self.until,
            kinds,
        )?)
    }
}

/// The key activity log, in log order.
#[utoipa::path(
    get, path = "/api/v1/accounts/{account_id}/activity", tag = "activity",
    params(("account_id" = uuid::Uuid, Path), ActivityParams),
    security(("bearer" = [])),
    responses(
        (status = 200, body = ActivityPage),
        (status = "default", description = "An error", body = ErrorBody),
    ),
)]
pub async fn activity(
    State(state): State<AppState>,
    auth: Authed,
    Path(account_id): Path<String>,
    Query(q): Query<ActivityParams>,
) -> Result<Json<ActivityPage>, ApiError> {
    let query = q.query(&account_id)?;
    let (rows, next_page_token) = state
        .issuer()?
        .list_activity(&auth.principal, &query, q.page_size, &q.page_token)
        .await?;
    Ok(Json(ActivityPage {
        events: rows.iter().map(ActivityJson::from).collect(),
        next_page_token,
    }))
}

/// The live tail as Server-Sent Events (`event: activity`, `id:` the entry's
/// cursor, so a reconnecting client sends `Last-Event-ID` and misses
/// nothing). The credential is checked again on every poll: the stream ends
/// with an `event: error` carrying the error body once it is revoked or
/// logged out.
#[utoipa::path(
    get, path = "/api/v1/accounts/{account_id}/activity/stream", tag = "activity",
    params(("account_id" = uuid::Uuid, Path), ActivityParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "`event: activity` entries (each an ActivityJson), then `event: error` when the credential ends", content_type = "text/event-stream", body = String),
        (status = "default", description = "An error", body = ErrorBody),
    ),
)]
pub async fn activity_stream(
    State(state): State<AppState>,
    auth: Authed,
    parts: axum::http::request::Parts,
    Path(account_id): Path<String>,
) -> Result<
    axum::response::Sse<
        impl futures::Stream<Item = Result<axum::response::sse::Event, std::convert::Infallible>>,
    >,
    ApiError,
> {
    use axum::response::sse::{Event, KeepAlive, Sse};
    let issuer = state.issuer()?.clone();
    let axum::extract::Query(q) = axum::extract::Query::<ActivityParams>::try_from_uri(&parts.uri)
        .map_err(|rejection| {
            ApiError::bad_request(rejection.body_text().replace(
                "Failed to deserialize query string: ",
                "invalid query parameter ",
            ))
        })?;
    let mut query = q.query(&account_id)?;
    // A tail has no end: `until` does not apply (as over gRPC).
    query.until = None;
    let after = parts
        .headers
        .get("last-event-id")
        .map(|v| v.to_str().unwrap_or("-"))
        .unwrap_or_default();
    let rx = issuer.tail_activity(&auth.principal, auth.bearer, query, after, state.poll)?;
    let stream = futures::StreamExt::map(tokio_stream::wrappers::ReceiverStream::new(rx), |item| {
        Ok::<_, std::convert::Infallible>(match item {
            Ok(row) => Event::default()
                .event("activity")
                .id(row.cursor.clone())
                .json_data(ActivityJson::from(&row))
                .unwrap_or_default(),
            Err(error) => Event::default()
                .event("error")
                .data(ApiError::from(error).body().to_string()),
        })
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
