//! `gatehouse.v1.KeyService` over the issuer.

use gatehouse_api::v1 as pb;
use gatehouse_domain::scope::Scopes;
use tonic::{Request, Response, Status};

use gatehouse_issuer::Issuer;

use super::{
    OrStatus as _, authenticate, context, datetime, duration, parse_account, parse_key, timestamp,
};

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
