//! Envoy's `envoy.service.auth.v3.Authorization` (`ext_authz`) over the
//! verifier's decider: the route policy picks the scopes, the decider judges
//! the credential, and a denial carries the HTTP API's own answer.

use envoy_types::pb::envoy::config::core::v3::header_value_option::HeaderAppendAction;
use envoy_types::pb::envoy::config::core::v3::{HeaderValue, HeaderValueOption};
use envoy_types::pb::envoy::service::auth::v3::authorization_server::Authorization;
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use envoy_types::pb::envoy::service::auth::v3::{
    CheckRequest, CheckResponse, DeniedHttpResponse, OkHttpResponse,
};
use envoy_types::pb::envoy::r#type::v3::HttpStatus;
use envoy_types::pb::google::rpc::Status as RpcStatus;
use tonic::{Code, Request, Response, Status};

use gatehouse_verifier::Denial;
use gatehouse_verifier::routes::RouteDecision;

use super::verifier::VerifierGrpc;
use crate::http::ApiError;

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
