//! `gatehouse.v1.AuthService` — login, refresh, logout, password change,
//! SDK-token exchange, JWKS — a few lines per RPC over the application layer,
//! as `http::auth` is for HTTP.

use gatehouse_api::v1 as pb;
use tonic::{Request, Response, Status};

use gatehouse_issuer::Issuer;

use super::{OrStatus as _, authenticate, context};

/// `gatehouse.v1.AuthService`.
#[derive(Clone)]
pub struct AuthGrpc {
    pub issuer: Issuer,
}

#[tonic::async_trait]
impl pb::auth_service_server::AuthService for AuthGrpc {
    #[tracing::instrument(skip_all, err(level = "debug"))]
    async fn login(
        &self,
        request: Request<pb::LoginRequest>,
    ) -> Result<Response<pb::LoginResponse>, Status> {
        let ctx = context(&request);
        let pb::LoginRequest { username, password } = request.into_inner();
        let result = self.issuer.login(&username, password, &ctx).await.grpc()?;
        Ok(Response::new(pb::LoginResponse {
            access_token: result.tokens.access_token,
            refresh_token: result.tokens.refresh_token,
            token_type: "Bearer".into(),
            expires_in: result.tokens.expires_in,
            refresh_expires_in: result.tokens.refresh_expires_in,
            account: Some(pb::AccountInfo {
                account_id: result.user.account_id.to_string(),
                user_id: result.user.id.to_string(),
                username: result.user.username.to_string(),
                scopes: result.scopes.to_vec(),
            }),
        }))
    }

    #[tracing::instrument(skip_all, err(level = "debug"))]
    async fn refresh(
        &self,
        request: Request<pb::RefreshRequest>,
    ) -> Result<Response<pb::RefreshResponse>, Status> {
        let ctx = context(&request);
        let tokens = self
            .issuer
            .refresh(&request.into_inner().refresh_token, &ctx)
            .await
            .grpc()?;
        Ok(Response::new(pb::RefreshResponse {
            access_token: tokens.access_token,
            refresh_token: tokens.refresh_token,
            token_type: "Bearer".into(),
            expires_in: tokens.expires_in,
            refresh_expires_in: tokens.refresh_expires_in,
        }))
    }

    #[tracing::instrument(skip_all, err(level = "debug"))]
    async fn exchange_sdk_token(
        &self,
        request: Request<pb::ExchangeSdkTokenRequest>,
    ) -> Result<Response<pb::ExchangeSdkTokenResponse>, Status> {
        let r = request.into_inner();
        let (access_token, expires_in) = self
            .issuer
            .exchange_sdk_token(&r.account_id, &r.key_id, &r.key_secret)
            .await
            .grpc()?;
        Ok(Response::new(pb::ExchangeSdkTokenResponse {
            access_token,
            expires_in,
            token_type: "Bearer".into(),
        }))
    }

    #[tracing::instrument(skip_all, err(level = "debug"))]
    async fn change_password(
        &self,
        request: Request<pb::ChangePasswordRequest>,
    ) -> Result<Response<pb::ChangePasswordResponse>, Status> {
        let ctx = context(&request);
        let principal = authenticate(&self.issuer, &request).await?;
        let r = request.into_inner();
        self.issuer
            .change_password(&principal, r.old_password, r.new_password, &ctx)
            .await
            .grpc()?;
        Ok(Response::new(pb::ChangePasswordResponse {}))
    }

    #[tracing::instrument(skip_all, err(level = "debug"))]
    async fn logout(
        &self,
        request: Request<pb::LogoutRequest>,
    ) -> Result<Response<pb::LogoutResponse>, Status> {
        let ctx = context(&request);
        self.issuer
            .logout(&request.into_inner().refresh_token, &ctx)
            .await
            .grpc()?;
        Ok(Response::new(pb::LogoutResponse {}))
    }

    async fn get_jwks(
        &self,
        _request: Request<pb::GetJwksRequest>,
    ) -> Result<Response<pb::GetJwksResponse>, Status> {
        let keys = self
            .issuer
            .jwks()
            .into_iter()
            .map(|jwk| pb::Jwk {
                kty: jwk.kty.into(),
                crv: jwk.crv.unwrap_or_default().into(),
                x: jwk.x.unwrap_or_default(),
                y: jwk.y.unwrap_or_default(),
                n: jwk.n.unwrap_or_default(),
                e: jwk.e.unwrap_or_default(),
                kid: jwk.kid,
                alg: jwk.alg.into(),
                r#use: jwk.use_.into(),
            })
            .collect();
        Ok(Response::new(pb::GetJwksResponse { keys }))
    }
}
