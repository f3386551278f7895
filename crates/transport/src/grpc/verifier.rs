//! `gatehouse.v1.VerifierService` over the verifier's [`Decider`]; Envoy's
//! `Authorization` over the same decider is in `ext_authz`.

use gatehouse_api::v1 as pb;
use tonic::{Code, Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt as _};

use gatehouse_issuer::error::ERROR_DOMAIN;
use gatehouse_verifier::{Decider, Denial, Kind, Verified};

/// `VerifierService` and Envoy's `Authorization` over one [`Decider`].
#[derive(Clone)]
pub struct VerifierGrpc {
    pub decider: Decider,
}

fn denial_status(denial: &Denial) -> Status {
    let code = match denial {
        Denial::Unauthenticated(_) => Code::Unauthenticated,
        Denial::InsufficientScope(_) => Code::PermissionDenied,
        Denial::InvalidScope(_) | Denial::TooManyScopes(_) => Code::InvalidArgument,
    };
    let mut details = ErrorDetails::new();
    details.set_error_info(denial.reason(), ERROR_DOMAIN, []);
    Status::with_error_details(code, denial.to_string(), details)
}

fn principal(verified: Verified) -> pb::Principal {
    pb::Principal {
        account_id: verified.account_id,
        subject: verified.subject,
        kind: match verified.kind {
            Kind::User => pb::PrincipalKind::User,
            Kind::Sdk => pb::PrincipalKind::Sdk,
            Kind::ApiKey => pb::PrincipalKind::ApiKey,
        } as i32,
        key_id: verified.key_id.unwrap_or_default(),
        scopes: verified.scopes.to_vec(),
        expires_at: verified.expires_at.map(|at| prost_types::Timestamp {
            seconds: at.timestamp(),
            nanos: 0,
        }),
        session_id: verified.session_id.unwrap_or_default(),
    }
}

#[tonic::async_trait]
impl pb::verifier_service_server::VerifierService for VerifierGrpc {
    async fn verify(
        &self,
        request: Request<pb::VerifyRequest>,
    ) -> Result<Response<pb::VerifyResponse>, Status> {
        let caller = super::client_address(&request);
        let r = request.into_inner();
        let audience = (!r.audience.is_empty()).then_some(r.audience.as_str());
        match self
            .decider
            .decide(
                &r.credential,
                &r.required_scopes,
                audience,
                caller.as_deref(),
            )
            .await
        {
            Ok(verified) => Ok(Response::new(pb::VerifyResponse {
                principal: Some(principal(verified)),
            })),
            Err(denial) => Err(denial_status(&denial)),
        }
    }
}
