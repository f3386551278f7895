//! `gatehouse.v1.AccountService` over the issuer.

use gatehouse_api::v1 as pb;
use gatehouse_domain::ids::AccountId;
use gatehouse_domain::scope::Scopes;
use tonic::{Request, Response, Status};

use gatehouse_issuer::Issuer;

use super::{OrStatus as _, authenticate, context, timestamp};

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
