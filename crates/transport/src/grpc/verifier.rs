//! `gatehouse.v1.VerifierService` and Envoy's `envoy.service.auth.v3.Authorization`.

use envoy_types::pb::envoy::config::core::v3::header_value_option::HeaderAppendAction;
use envoy_types::pb::envoy::config::core::v3::{HeaderValue, HeaderValueOption};
use envoy_types::pb::envoy::service::auth::v3::authorization_server::Authorization;
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use envoy_types::pb::envoy::service::auth::v3::{
    CheckRequest, CheckResponse, DeniedHttpResponse, OkHttpResponse,
};
use envoy_types::pb::envoy::r#type::v3::HttpStatus;
use envoy_types::pb::google::rpc::Status as RpcStatus;
use gatehouse_api::v1 as pb;
use tonic::{Code, Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt as _};

use gatehouse_issuer::error::ERROR_DOMAIN;
use gatehouse_verifier::routes::RouteDecision;
use gatehouse_verifier::{Decider, Denial, Kind, Verified};

use crate::http::ApiError;

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

/// A header that replaces any value of the same name (so a client cannot
/// smuggle its own `x-gatehouse-*` values past the proxy).
fn header(key: &str, value: &str) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(HeaderValue {
            key: key.to_string(),
            value: value.to_string(),
            ..Default::default()
        }),
        append_action: HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
        ..Default::default()
    }
}

/// A denial as Envoy sends it to the caller: the HTTP API's status, JSON
/// body and `WWW-Authenticate` challenge, so an API behind Envoy answers
/// exactly as Gatehouse's own routes do.
fn denied(grpc: Code, error: &ApiError) -> CheckResponse {
    let headers = std::iter::once(header("content-type", "application/json"))
        .chain(error.challenge().map(|c| header("www-authenticate", &c)))
        .collect();
    CheckResponse {
        status: Some(RpcStatus {
            code: grpc as i32,
            message: error.reason.unwrap_or_default().to_string(),
            ..Default::default()
        }),
        http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
            status: Some(HttpStatus {
                code: i32::from(error.status.as_u16()),
            }),
            headers,
            body: error.body().to_string(),
        })),
        ..Default::default()
    }
}

/// The answer to a request whose path cannot be matched safely: 400.
fn path_rejected() -> CheckResponse {
    denied(
        Code::InvalidArgument,
        &ApiError::bad_request("the request path cannot be matched safely")
            .with_reason("PATH_REJECTED"),
    )
}

/// The answer to a request no route matches, when unmatched requests are
/// denied: 403, whatever credential it carries.
fn route_unmatched() -> CheckResponse {
    denied(
        Code::PermissionDenied,
        &ApiError::new(
            axum::http::StatusCode::FORBIDDEN,
            "no route of the authorization policy allows this request",
        )
        .with_reason("ROUTE_UNMATCHED"),
    )
}

#[tonic::async_trait]
impl Authorization for VerifierGrpc {
    async fn check(
        &self,
        request: Request<CheckRequest>,
    ) -> Result<Response<CheckResponse>, Status> {
        let check = request.into_inner();
        let http = check
            .attributes
            .as_ref()
            .and_then(|a| a.request.as_ref())
            .and_then(|r| r.http.as_ref());
        let credential = http
            .and_then(|h| {
                h.headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("authorization"))
                    .map(|(_, v)| v.clone())
            })
            .unwrap_or_default();
        let extensions = check.attributes.as_ref().map(|a| &a.context_extensions);
        let required: Vec<String> = match extensions.and_then(|e| e.get("required_scopes")) {
            Some(scopes) => scopes.split_whitespace().map(str::to_string).collect(),
            None => {
                let method = http.map(|h| h.method.as_str()).unwrap_or("");
                // Refused before any credential is looked at.
                match self
                    .decider
                    .route(method, http.map(|h| h.path.as_str()).unwrap_or(""))
                {
                    RouteDecision::Require(scopes) => scopes,
                    RouteDecision::Unsafe => return Ok(Response::new(path_rejected())),
                    RouteDecision::Unmatched => return Ok(Response::new(route_unmatched())),
                }
            }
        };
        // The original client's address, as Envoy saw it.
        let caller = check
            .attributes
            .as_ref()
            .and_then(|a| a.source.as_ref())
            .and_then(|p| p.address.as_ref())
            .and_then(|a| match &a.address {
                Some(
                    envoy_types::pb::envoy::config::core::v3::address::Address::SocketAddress(s),
                ) => Some(s.address.clone()),
                _ => None,
            });
        let response = match self
            .decider
            .decide(&credential, &required, None, caller.as_deref())
            .await
        {
            Ok(verified) => CheckResponse {
                status: Some(RpcStatus {
                    code: Code::Ok as i32,
                    ..Default::default()
                }),
                http_response: Some(HttpResponse::OkResponse(OkHttpResponse {
                    headers: vec![
                        header("x-gatehouse-account", &verified.account_id),
                        header("x-gatehouse-subject", &verified.subject),
                        header("x-gatehouse-scopes", &verified.scopes.to_claim()),
                    ],
                    ..Default::default()
                })),
                ..Default::default()
            },
            Err(denial) => {
                let grpc = match &denial {
                    Denial::Unauthenticated(_) => Code::Unauthenticated,
                    Denial::InsufficientScope(_) => Code::PermissionDenied,
                    // The route's configuration is at fault, not the caller.
                    Denial::InvalidScope(_) | Denial::TooManyScopes(_) => Code::Internal,
                };
                let mut error = ApiError::from(denial);
                if grpc == Code::Internal {
                    error = ApiError::new(
                        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                        "the route requires an invalid scope",
                    );
                }
                denied(grpc, &error)
            }
        };
        Ok(Response::new(response))
    }
}
