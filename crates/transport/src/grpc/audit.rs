//! `gatehouse.v1.AuditService` over the issuer.

use gatehouse_api::v1 as pb;
use gatehouse_domain::activity::ActivityKind;
use prost_types::Timestamp;
use tonic::{Request, Response, Status};

use gatehouse_issuer::{Issuer, IssuerError};

use super::{OrStatus as _, authenticate, datetime, parse_account, parse_key, timestamp};

/// The wire enum of an activity kind: the same name, upper case and prefixed.
fn activity_kind(kind: ActivityKind) -> pb::ActivityKind {
    let name = format!("ACTIVITY_KIND_{}", kind.as_str().to_ascii_uppercase());
    pb::ActivityKind::from_str_name(&name).unwrap_or(pb::ActivityKind::Unspecified)
}

fn kinds(raw: &[i32]) -> Result<Vec<ActivityKind>, IssuerError> {
    raw.iter()
        .map(|k| {
            ActivityKind::ALL
                .into_iter()
                .find(|kind| activity_kind(*kind) as i32 == *k)
                .ok_or_else(|| IssuerError::InvalidArgument(format!("unknown activity kind {k}")))
        })
        .collect()
}

fn activity_pb(entry: &gatehouse_issuer::audit::ActivityEntry) -> pb::KeyActivity {
    let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    let usage = entry.usage.as_ref().map(|u| pb::UsageSummary {
        interval_start: Some(timestamp(u.interval_start)),
        interval_end: Some(timestamp(u.interval_end)),
        uses: count(u.uses),
        denials: count(u.denials),
        distinct_callers: count(u.distinct_callers),
        first_caller: u.first_caller.clone().unwrap_or_default(),
        last_caller: u.last_caller.clone().unwrap_or_default(),
        denials_by_reason: u
            .denials_by_reason
            .iter()
            .map(|(k, v)| (k.clone(), count(*v)))
            .collect(),
    });
    pb::KeyActivity {
        cursor: entry.cursor.clone(),
        account_id: entry.account_id.clone(),
        key_id: entry.key_id.clone(),
        kind: activity_kind(entry.kind) as i32,
        actor: entry.actor.clone().unwrap_or_default(),
        client_address: entry.client_address.clone().unwrap_or_default(),
        occurred_at: Some(timestamp(entry.occurred_at)),
        usage,
        reason: entry.reason.clone().unwrap_or_default(),
        scope: entry.scope.clone().unwrap_or_default(),
    }
}

fn activity_query(
    account_id: &str,
    key_id: &str,
    since: Option<Timestamp>,
    until: Option<Timestamp>,
    kinds: &[i32],
) -> Result<gatehouse_issuer::audit::ActivityQuery, IssuerError> {
    gatehouse_issuer::audit::ActivityQuery::new(
        parse_account(account_id)?,
        (!key_id.is_empty())
            .then(|| parse_key(key_id))
            .transpose()?,
        datetime(since, "since")?,
        datetime(until, "until")?,
        self::kinds(kinds)?,
    )
}

/// `gatehouse.v1.AuditService`.
#[derive(Clone)]
pub struct AuditGrpc {
    pub issuer: Issuer,
    /// How often a watch looks for new activity.
    pub poll: std::time::Duration,
}

#[tonic::async_trait]
impl pb::audit_service_server::AuditService for AuditGrpc {
    type WatchKeyActivityStream = tonic::codegen::BoxStream<pb::KeyActivity>;

    #[tracing::instrument(skip_all, err(level = "debug"))]
    async fn list_key_activity(
        &self,
        request: Request<pb::ListKeyActivityRequest>,
    ) -> Result<Response<pb::ListKeyActivityResponse>, Status> {
        let principal = authenticate(&self.issuer, &request).await?;
        let r = request.into_inner();
        let query = activity_query(&r.account_id, &r.key_id, r.since, r.until, &r.kinds).grpc()?;
        let (rows, next_page_token) = self
            .issuer
            .list_activity(&principal, &query, r.page_size, &r.page_token)
            .await
            .grpc()?;
        Ok(Response::new(pb::ListKeyActivityResponse {
            activity: rows.iter().map(activity_pb).collect(),
            next_page_token,
        }))
    }

    #[tracing::instrument(skip_all, err(level = "debug"))]
    async fn watch_key_activity(
        &self,
        request: Request<pb::WatchKeyActivityRequest>,
    ) -> Result<Response<Self::WatchKeyActivityStream>, Status> {
        let bearer = super::bearer(&request);
        let principal = authenticate(&self.issuer, &request).await?;
        let r = request.into_inner();
        let query = activity_query(&r.account_id, &r.key_id, r.since, None, &r.kinds).grpc()?;
        // The tail re-checks the credential: it ends with UNAUTHENTICATED
        // (or PERMISSION_DENIED) once the key is revoked or the session ends.
        let rx = self
            .issuer
            .tail_activity(&principal, bearer, query, "", self.poll)
            .map_err(super::status)?;
        let stream =
            futures::StreamExt::map(tokio_stream::wrappers::ReceiverStream::new(rx), |item| {
                item.map(|row| activity_pb(&row)).map_err(super::status)
            });
        Ok(Response::new(Box::pin(stream)))
    }
}
