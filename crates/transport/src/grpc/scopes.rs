//! `gatehouse.v1.ScopeService` over the issuer.

use gatehouse_api::v1 as pb;
use gatehouse_domain::catalogue::Definition;
use tonic::{Request, Response, Status};

use gatehouse_issuer::Issuer;

use super::{OrStatus as _, authenticate, context};

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
