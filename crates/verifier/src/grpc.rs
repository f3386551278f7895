//! `gatehouse.v1.VerifierService` and Envoy's `envoy.service.auth.v3.Authorization`.

use std::sync::Arc;

use envoy_types::pb::envoy::config::core::v3::header_value_option::HeaderAppendAction;
use envoy_types::pb::envoy::config::core::v3::{HeaderValue, HeaderValueOption};
use envoy_types::pb::envoy::service::auth::v3::authorization_server::Authorization;
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use envoy_types::pb::envoy::service::auth::v3::{
    CheckRequest, CheckResponse, DeniedHttpResponse, OkHttpResponse,
};
use envoy_types::pb::envoy::r#type::v3::{HttpStatus, StatusCode as HttpStatusCode};
use envoy_types::pb::google::rpc::Status as RpcStatus;
use gatehouse_api::v1 as pb;
use gatehouse_domain::scope::Scope;
use tonic::{Code, Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt as _};

use crate::follower::Follower;
use crate::verify::{Denial, Kind, Outcome, Verified, Verifier};

/// `google.rpc.ErrorInfo.domain` of verifier denials.
pub const ERROR_DOMAIN: &str = "gatehouse";

/// Verification with one catch-up on the log for an unknown, well-formed key.
#[derive(Clone)]
pub struct VerifierService {
    pub verifier: Verifier,
    pub follower: Arc<Follower>,
    /// Method + path prefix → scopes, for `Check` requests without
    /// `context_extensions`.
    pub routes: Arc<Vec<Route>>,
}

/// One entry of the ext_authz route table.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// `*` matches every method.
    pub method: String,
    pub path_prefix: String,
    pub scopes: Vec<String>,
}

impl Route {
    /// Parses `METHOD PREFIX scope,scope` entries separated by `;`, e.g.
    /// `GET /orders orders:read; * /admin admin:all`.
    pub fn parse_table(table: &str) -> Result<Vec<Route>, String> {
        table
            .split(';')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(|entry| {
                let parts: Vec<&str> = entry.split_whitespace().collect();
                match parts.as_slice() {
                    [method, prefix, scopes] if prefix.starts_with('/') => Ok(Route {
                        method: method.to_ascii_uppercase(),
                        path_prefix: (*prefix).to_string(),
                        scopes: scopes
                            .split(',')
                            .filter(|s| !s.is_empty())
                            .map(|s| {
                                Scope::parse_concrete(s)
                                    .map(|_| s.to_string())
                                    .map_err(|e| format!("invalid route {entry:?}: {e}"))
                            })
                            .collect::<Result<_, _>>()?,
                    }),
                    [method, prefix] if prefix.starts_with('/') => Ok(Route {
                        method: method.to_ascii_uppercase(),
                        path_prefix: (*prefix).to_string(),
                        scopes: Vec::new(),
                    }),
                    _ => Err(format!(
                        "invalid route {entry:?}: expected `METHOD /prefix scope,scope`"
                    )),
                }
            })
            .collect()
    }
}

impl VerifierService {
    /// Decides, and counts the outcome by result and reason. `caller` (an
    /// address) goes into the key's usage summary.
    pub async fn decide(
        &self,
        credential: &str,
        required: &[String],
        audience: Option<&str>,
        caller: Option<&str>,
    ) -> Result<Verified, Denial> {
        let result = self
            .decide_uncounted(credential, required, audience, caller)
            .await;
        let (outcome, reason) = match &result {
            Ok(_) => ("allow", "OK"),
            Err(denial) => ("deny", denial.reason()),
        };
        metrics::counter!("gatehouse_verify_total", "result" => outcome, "reason" => reason)
            .increment(1);
        result
    }

    async fn decide_uncounted(
        &self,
        credential: &str,
        required: &[String],
        audience: Option<&str>,
        caller: Option<&str>,
    ) -> Result<Verified, Denial> {
        let now = chrono::Utc::now();
        match self
            .verifier
            .verify(credential, required, audience, caller, now)
        {
            Outcome::Decided(result) => result,
            Outcome::UnknownKey => {
                self.follower.catch_up().await;
                match self.verifier.verify(
                    credential,
                    required,
                    audience,
                    caller,
                    chrono::Utc::now(),
                ) {
                    Outcome::Decided(result) => result,
                    Outcome::UnknownKey => Err(Denial::Unauthenticated("KEY_UNKNOWN")),
                }
            }
        }
    }

    fn scopes_for(&self, method: &str, path: &str) -> Option<Vec<String>> {
        route_scopes(&self.routes, method, path)
    }
}

/// The scopes a route table asks for `method` and `path`: the longest
/// matching prefix, on segment boundaries, of the normalised path. `None` for
/// a path that cannot be matched safely.
pub fn route_scopes(routes: &[Route], method: &str, path: &str) -> Option<Vec<String>> {
    let path = normalize_path(path)?;
    let under = |prefix: &str| {
        let prefix = prefix.trim_end_matches('/');
        prefix.is_empty() || path == prefix || path.starts_with(&format!("{prefix}/"))
    };
    Some(
        routes
            .iter()
            .filter(|r| {
                (r.method == "*" || r.method.eq_ignore_ascii_case(method)) && under(&r.path_prefix)
            })
            .max_by_key(|r| r.path_prefix.trim_end_matches('/').len())
            .map(|r| r.scopes.clone())
            .unwrap_or_default(),
    )
}

/// Normalises a request path for route matching: query dropped,
/// percent-encoding decoded, slashes merged, dot segments resolved. `None`
/// for a path that cannot be matched safely: bad encoding, an encoded `/`,
/// `\` or `%`, a backslash, or `..` above the root — so `/orders/../admin`,
/// `//admin` and `/%61dmin` all meet the `/admin` route or are refused.
pub fn normalize_path(raw: &str) -> Option<String> {
    let path = raw.split(['?', '#']).next().unwrap_or("");
    let bytes = path.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let byte = u8::from_str_radix(path.get(i + 1..i + 3)?, 16).ok()?;
                if matches!(byte, b'/' | b'\\' | b'%') || byte < 0x20 {
                    return None;
                }
                decoded.push(byte);
                i += 3;
            }
            b'\\' => return None,
            byte => {
                decoded.push(byte);
                i += 1;
            }
        }
    }
    let decoded = String::from_utf8(decoded).ok()?;
    if !decoded.starts_with('/') {
        return None;
    }
    let mut segments: Vec<&str> = Vec::new();
    for segment in decoded.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop()?;
            }
            segment => segments.push(segment),
        }
    }
    Some(format!("/{}", segments.join("/")))
}

fn denial_status(denial: &Denial) -> Status {
    let (code, message) = match denial {
        Denial::Unauthenticated(_) => (Code::Unauthenticated, "invalid credential".to_string()),
        Denial::InsufficientScope(missing) => (
            Code::PermissionDenied,
            format!("insufficient scope: missing {}", missing.join(" ")),
        ),
        Denial::InvalidScope(scope) => (
            Code::InvalidArgument,
            format!(
                "invalid required scope {scope:?}: required scopes are concrete resource:action, never wildcards"
            ),
        ),
    };
    let mut details = ErrorDetails::new();
    details.set_error_info(denial.reason(), ERROR_DOMAIN, []);
    Status::with_error_details(code, message, details)
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
impl pb::verifier_service_server::VerifierService for VerifierService {
    async fn verify(
        &self,
        request: Request<pb::VerifyRequest>,
    ) -> Result<Response<pb::VerifyResponse>, Status> {
        let caller = request.remote_addr().map(|a| a.ip().to_string());
        let r = request.into_inner();
        let audience = (!r.audience.is_empty()).then_some(r.audience.as_str());
        match self
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

/// The answer to a request whose path cannot be matched safely: 400.
fn path_rejected() -> CheckResponse {
    CheckResponse {
        status: Some(RpcStatus {
            code: Code::InvalidArgument as i32,
            message: "PATH_REJECTED".into(),
            ..Default::default()
        }),
        http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
            status: Some(HttpStatus {
                code: HttpStatusCode::BadRequest as i32,
            }),
            headers: vec![header("content-type", "application/json")],
            body: serde_json::json!({ "error": "PATH_REJECTED" }).to_string(),
        })),
        ..Default::default()
    }
}

#[tonic::async_trait]
impl Authorization for VerifierService {
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
                match self.scopes_for(method, http.map(|h| h.path.as_str()).unwrap_or("")) {
                    Some(scopes) => scopes,
                    // Refused before any credential is looked at.
                    None => return Ok(Response::new(path_rejected())),
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
                let (grpc, http_status, challenge) = match &denial {
                    // The route's configuration is at fault, not the caller.
                    Denial::InvalidScope(_) => (
                        Code::Internal,
                        HttpStatusCode::InternalServerError,
                        String::new(),
                    ),
                    Denial::Unauthenticated(_) => (
                        Code::Unauthenticated,
                        HttpStatusCode::Unauthorized,
                        r#"Bearer error="invalid_token""#.to_string(),
                    ),
                    Denial::InsufficientScope(missing) => (
                        Code::PermissionDenied,
                        HttpStatusCode::Forbidden,
                        format!(
                            r#"Bearer error="insufficient_scope", scope="{}""#,
                            missing.join(" ")
                        ),
                    ),
                };
                let body = serde_json::json!({ "error": denial.reason() }).to_string();
                CheckResponse {
                    status: Some(RpcStatus {
                        code: grpc as i32,
                        message: denial.reason().to_string(),
                        ..Default::default()
                    }),
                    http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
                        status: Some(HttpStatus {
                            code: http_status as i32,
                        }),
                        headers: std::iter::once(header("content-type", "application/json"))
                            .chain(
                                (!challenge.is_empty())
                                    .then(|| header("www-authenticate", &challenge)),
                            )
                            .collect(),
                        body,
                    })),
                    ..Default::default()
                }
            }
        };
        Ok(Response::new(response))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_normalised_before_matching() {
        assert_eq!(
            normalize_path("/orders/../admin/x?y=1").as_deref(),
            Some("/admin/x")
        );
        assert_eq!(normalize_path("//admin//x/./").as_deref(), Some("/admin/x"));
        assert_eq!(normalize_path("/%61dmin/x").as_deref(), Some("/admin/x"));
        assert_eq!(normalize_path("/").as_deref(), Some("/"));
        for bad in [
            "/a/%2f/b",
            "/a/%2F",
            "/..",
            "/a/../../b",
            "/a\\b",
            "/%zz",
            "relative",
            "/%5c",
            "/%00",
        ] {
            assert_eq!(normalize_path(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn routes_match_on_segment_boundaries_of_normalised_paths() {
        let routes = Route::parse_table(
            "GET /orders orders:read; * /admin admin:all; * /admin/audit audit:read",
        )
        .unwrap();
        let scopes = |method: &str, path: &str| route_scopes(&routes, method, path);
        assert_eq!(
            scopes("GET", "/orders/1"),
            Some(vec!["orders:read".to_string()])
        );
        assert_eq!(
            scopes("POST", "/orders/1"),
            Some(vec![]),
            "method must match"
        );
        assert_eq!(
            scopes("GET", "/orders/../admin/x"),
            Some(vec!["admin:all".to_string()])
        );
        assert_eq!(
            scopes("GET", "//admin/x"),
            Some(vec!["admin:all".to_string()])
        );
        assert_eq!(
            scopes("GET", "/%61dmin"),
            Some(vec!["admin:all".to_string()])
        );
        assert_eq!(
            scopes("GET", "/admin/audit/7"),
            Some(vec!["audit:read".to_string()]),
            "longest prefix"
        );
        assert_eq!(
            scopes("GET", "/administrator"),
            Some(vec![]),
            "segment boundary"
        );
        assert_eq!(scopes("GET", "/admin%2Fx"), None);
    }

    #[test]
    fn route_tables_parse() {
        let routes = Route::parse_table(
            "GET /orders orders:read; * /admin admin:all,audit:read ;POST /public",
        )
        .unwrap();
        assert_eq!(routes.len(), 3);
        assert_eq!(routes[1].scopes, ["admin:all", "audit:read"]);
        assert!(routes[2].scopes.is_empty());
        assert!(Route::parse_table("GET orders x").is_err());
        assert!(Route::parse_table("GET /orders orders:*").is_err());
        assert!(Route::parse_table("GET /orders *").is_err());
        assert!(Route::parse_table("").unwrap().is_empty());
    }
}
