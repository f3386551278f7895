//! `gatehouse.v1.AccountService`, `KeyService`, `AuditService`,
//! `ScopeService` — a few lines per RPC over the application layer, as
//! `http::admin` is for HTTP.

use gatehouse_api::v1 as pb;
use gatehouse_domain::activity::ActivityKind;
use gatehouse_domain::catalogue::Definition;
use gatehouse_domain::ids::AccountId;
use gatehouse_domain::scope::Scopes;
use prost_types::Timestamp;
use tonic::{Request, Response, Status};

use gatehouse_issuer::{Issuer, IssuerError};

use super::{OrStatus as _, authenticate, context, datetime, duration, timestamp};

fn user_pb(user: &gatehouse_domain::user::User) -> pb::User {
    pb::User {
        user_id: user.id.to_string(),
        account_id: user.account_id.to_string(),
        username: user.username.to_string(),
        scopes: user.scopes.to_vec(),
        created_at: Some(timestamp(user.created_at)),
    }
}

/// `gatehouse.v1.AccountService`.
#[derive(Clone)]
pub struct AccountsGrpc {
    pub issuer: Issuer,
}

#[tonic::async_trait]
impl pb::account_service_server::AccountService for AccountsGrpc {
    #[tracing::instrument(skip_all, err(level = "debug"))]
    async fn create_account(
        &self,
        request: Request<pb::CreateAccountRequest>,
    ) -> Result<Response<pb::CreateAccountResponse>, Status> {
        let ctx = context(&request);
        let principal = authenticate(&self.issuer, &request).await?;
        let r = request.into_inner();
        // proto3 strings: empty means not given.
        let owner_username = (!r.owner_username.is_empty()).then_some(r.owner_username.as_str());
        let owner_password = (!r.owner_password.is_empty()).then_some(r.owner_password);
        let (account, owner) = self
            .issuer
            .create_account(&principal, &r.name, owner_username, owner_password, &ctx)
            .await
            .grpc()?;
        Ok(Response::new(pb::CreateAccountResponse {
            account: Some(pb::Account {
                account_id: account.id.to_string(),
                name: account.name,
                created_at: Some(timestamp(account.created_at)),
            }),
            owner: owner.as_ref().map(user_pb),
        }))
    }

    #[tracing::instrument(skip_all, err(level = "debug"))]
    async fn create_user(
        &self,
        request: Request<pb::CreateUserRequest>,
    ) -> Result<Response<pb::CreateUserResponse>, Status> {
        let ctx = context(&request);
        let principal = authenticate(&self.issuer, &request).await?;
        let r = request.into_inner();
        let account_id = AccountId::parse(&r.account_id).grpc()?;
        let scopes = Scopes::parse(&r.scopes).grpc()?;
        let user = self
            .issuer
            .create_user(
                &principal,
                account_id,
                &r.username,
                r.password,
                scopes,
                &ctx,
            )
            .await
            .grpc()?;
        Ok(Response::new(pb::CreateUserResponse {
            user: Some(user_pb(&user)),
        }))
    }
}

fn key_state(state: gatehouse_domain::apikey::KeyState) -> i32 {
    use gatehouse_domain::apikey::KeyState;
    (match state {
        KeyState::Active => pb::KeyState::Active,
        KeyState::Rotating => pb::KeyState::Rotating,
        KeyState::Revoked => pb::KeyState::Revoked,
        KeyState::Expired => pb::KeyState::Expired,
        KeyState::Deleted => pb::KeyState::Deleted,
    }) as i32
}

fn key_pb(key: &gatehouse_issuer::keys::KeyView) -> pb::ApiKey {
    pb::ApiKey {
        key_id: key.key_id.to_string(),
        account_id: key.account_id.to_string(),
        name: key.name.clone(),
        scopes: key.scopes.clone(),
        hint: key.hint.clone(),
        state: key_state(key.state),
        created_at: Some(timestamp(key.created_at)),
        rotated_at: key.rotated_at.map(timestamp),
        expires_at: key.expires_at.map(timestamp),
        last_used_at: key.last_used_at.map(timestamp),
        previous_secret_valid_until: key.previous_secret_valid_until.map(timestamp),
        revoked_at: key.revoked_at.map(timestamp),
        retired_scopes: key.retired_scopes.clone(),
        deleted_at: key.deleted_at.map(timestamp),
    }
}

fn parse_account(raw: &str) -> Result<AccountId, IssuerError> {
    Ok(AccountId::parse(raw)?)
}

fn parse_key(raw: &str) -> Result<gatehouse_domain::ids::KeyId, IssuerError> {
    Ok(gatehouse_domain::ids::KeyId::parse(raw)?)
}

/// `gatehouse.v1.KeyService`.
#[derive(Clone)]
pub struct KeysGrpc {
    pub issuer: Issuer,
}

#[tonic::async_trait]
impl pb::key_service_server::KeyService for KeysGrpc {
    #[tracing::instrument(skip_all, err(level = "debug"))]
    async fn create_api_key(
        &self,
        request: Request<pb::CreateApiKeyRequest>,
    ) -> Result<Response<pb::CreateApiKeyResponse>, Status> {
        let ctx = context(&request);
        let principal = authenticate(&self.issuer, &request).await?;
        let r = request.into_inner();
        let account_id = parse_account(&r.account_id).grpc()?;
        let scopes = Scopes::parse(&r.scopes).grpc()?;
        let expires_at = datetime(r.expires_at, "expires_at").grpc()?;
        let issued = self
            .issuer
            .create_key(&principal, account_id, &r.name, scopes, expires_at, &ctx)
            .await
            .grpc()?;
        Ok(Response::new(pb::CreateApiKeyResponse {
            key: Some(key_pb(&issued.key)),
            secret: issued.secret,
        }))
    }

    #[tracing::instrument(skip_all, err(level = "debug"))]
    async fn list_api_keys(
        &self,
        request: Request<pb::ListApiKeysRequest>,
    ) -> Result<Response<pb::ListApiKeysResponse>, Status> {
        let principal = authenticate(&self.issuer, &request).await?;
        let r = request.into_inner();
        let account_id = parse_account(&r.account_id).grpc()?;
        let page = self
            .issuer
            .list_keys(
                &principal,
                account_id,
                r.page_size,
                &r.page_token,
                r.include_deleted,
            )
            .await
            .grpc()?;
        Ok(Response::new(pb::ListApiKeysResponse {
            keys: page.keys.iter().map(key_pb).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    #[tracing::instrument(skip_all, err(level = "debug"))]
    async fn get_api_key(
        &self,
        request: Request<pb::GetApiKeyRequest>,
    ) -> Result<Response<pb::GetApiKeyResponse>, Status> {
        let principal = authenticate(&self.issuer, &request).await?;
        let r = request.into_inner();
        let view = self
            .issuer
            .get_key(
                &principal,
                parse_account(&r.account_id).grpc()?,
                parse_key(&r.key_id).grpc()?,
            )
            .await
            .grpc()?;
        Ok(Response::new(pb::GetApiKeyResponse {
            key: Some(key_pb(&view)),
        }))
    }

    #[tracing::instrument(skip_all, err(level = "debug"))]
    async fn rotate_api_key(
        &self,
        request: Request<pb::RotateApiKeyRequest>,
    ) -> Result<Response<pb::RotateApiKeyResponse>, Status> {
        let ctx = context(&request);
        let principal = authenticate(&self.issuer, &request).await?;
        let r = request.into_inner();
        let grace = duration(r.grace_period, "grace_period").grpc()?;
        let issued = self
            .issuer
            .rotate_key(
                &principal,
                parse_account(&r.account_id).grpc()?,
                parse_key(&r.key_id).grpc()?,
                grace,
                &ctx,
            )
            .await
            .grpc()?;
        let valid_until = issued.previous_secret_valid_until.map(timestamp);
        Ok(Response::new(pb::RotateApiKeyResponse {
            key: Some(key_pb(&issued.key)),
            secret: issued.secret,
            previous_secret_valid_until: valid_until,
        }))
    }

    #[tracing::instrument(skip_all, err(level = "debug"))]
    async fn revoke_api_key(
        &self,
        request: Request<pb::RevokeApiKeyRequest>,
    ) -> Result<Response<pb::RevokeApiKeyResponse>, Status> {
        let ctx = context(&request);
        let principal = authenticate(&self.issuer, &request).await?;
        let r = request.into_inner();
        let view = self
            .issuer
            .revoke_key(
                &principal,
                parse_account(&r.account_id).grpc()?,
                parse_key(&r.key_id).grpc()?,
                &r.reason,
                &ctx,
            )
            .await
            .grpc()?;
        Ok(Response::new(pb::RevokeApiKeyResponse {
            key: Some(key_pb(&view)),
        }))
    }

    #[tracing::instrument(skip_all, err(level = "debug"))]
    async fn delete_api_key(
        &self,
        request: Request<pb::DeleteApiKeyRequest>,
    ) -> Result<Response<pb::DeleteApiKeyResponse>, Status> {
        let ctx = context(&request);
        let principal = authenticate(&self.issuer, &request).await?;
        let r = request.into_inner();
        self.issuer
            .delete_key(
                &principal,
                parse_account(&r.account_id).grpc()?,
                parse_key(&r.key_id).grpc()?,
                &r.reason,
                &ctx,
            )
            .await
            .grpc()?;
        Ok(Response::new(pb::DeleteApiKeyResponse {}))
    }
}

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

fn scope_pb(view: gatehouse_issuer::scopes::ScopeView) -> pb::ScopeInfo {
    pb::ScopeInfo {
        name: view.name,
        description: view.description,
        retired: view.retired,
        built_in: view.built_in,
    }
}

/// `gatehouse.v1.ScopeService`.
#[derive(Clone)]
pub struct ScopesGrpc {
    pub issuer: Issuer,
}

#[tonic::async_trait]
impl pb::scope_service_server::ScopeService for ScopesGrpc {
    #[tracing::instrument(skip_all, err(level = "debug"))]
    async fn define_scope(
        &self,
        request: Request<pb::DefineScopeRequest>,
    ) -> Result<Response<pb::DefineScopeResponse>, Status> {
        let ctx = context(&request);
        let principal = authenticate(&self.issuer, &request).await?;
        let r = request.into_inner();
        let (scope, changed) = self
            .issuer
            .define_scope(&principal, &r.name, &r.description, &ctx)
            .await
            .grpc()?;
        Ok(Response::new(pb::DefineScopeResponse {
            scope: Some(scope_pb(scope)),
            changed,
        }))
    }

    #[tracing::instrument(skip_all, err(level = "debug"))]
    async fn list_scopes(
        &self,
        request: Request<pb::ListScopesRequest>,
    ) -> Result<Response<pb::ListScopesResponse>, Status> {
        let principal = authenticate(&self.issuer, &request).await?;
        let scopes = self.issuer.list_scopes(&principal).await.grpc()?;
        Ok(Response::new(pb::ListScopesResponse {
            scopes: scopes.into_iter().map(scope_pb).collect(),
        }))
    }

    #[tracing::instrument(skip_all, err(level = "debug"))]
    async fn retire_scope(
        &self,
        request: Request<pb::RetireScopeRequest>,
    ) -> Result<Response<pb::RetireScopeResponse>, Status> {
        let ctx = context(&request);
        let principal = authenticate(&self.issuer, &request).await?;
        let scope = self
            .issuer
            .retire_scope(&principal, &request.into_inner().name, &ctx)
            .await
            .grpc()?;
        Ok(Response::new(pb::RetireScopeResponse {
            scope: Some(scope_pb(scope)),
        }))
    }

    #[tracing::instrument(skip_all, err(level = "debug"))]
    async fn import_scopes(
        &self,
        request: Request<pb::ImportScopesRequest>,
    ) -> Result<Response<pb::ImportScopesResponse>, Status> {
        let ctx = context(&request);
        let principal = authenticate(&self.issuer, &request).await?;
        let r = request.into_inner();
        let definitions: Vec<Definition> = r
            .scopes
            .into_iter()
            .map(|d| Definition {
                name: d.name,
                description: d.description,
            })
            .collect();
        let imported = self
            .issuer
            .import_scopes(&principal, &definitions, r.prune, &ctx)
            .await
            .grpc()?;
        Ok(Response::new(pb::ImportScopesResponse {
            defined: imported.defined,
            described: imported.described,
            retired: imported.retired,
        }))
    }
}
