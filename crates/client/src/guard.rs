//! The guard layer: `Verify` per request, with the route's scopes.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::http::{HeaderValue, Method, Request, Response, StatusCode, header};
use gatehouse_api::v1 as pb;
use gatehouse_api::v1::verifier_service_client::VerifierServiceClient;
use tonic::transport::Channel;
use tonic_types::{ErrorDetails, StatusExt as _};

pub use gatehouse_domain::routes::RouteError;
use gatehouse_domain::routes::{Route, RouteDecision, RoutePolicy};

/// A verified caller, put in the request's extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub account_id: String,
    /// User id or key id.
    pub subject: String,
    /// `user`, `sdk` or `api_key`.
    pub kind: &'static str,
    pub key_id: Option<String>,
    pub scopes: Vec<String>,
}

/// Which scopes each route needs: `METHOD /prefix → scopes`, decided by
/// Gatehouse's one route policy (the same as ext_authz's) on the path as the
/// service's router sees it: the longest whole-segment prefix (ignoring
/// ASCII case) wins,
/// then a rule for the request's method beats one for any method; a route
/// no rule matches needs a valid credential and no scope. Two rules for one
/// method and prefix are refused by [`GuardLayer::routes`].
#[derive(Debug, Clone, Default)]
pub struct RouteScopes {
    rules: Vec<(Option<Method>, String, Vec<String>)>,
}

impl RouteScopes {
    pub fn new() -> Self {
        Self::default()
    }

    /// Requires `scopes` for `method` (`None`: any method) on paths under
    /// `prefix` (for gRPC, e.g. `/pkg.Service/Method`).
    pub fn route<I, S>(mut self, method: Option<Method>, prefix: &str, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.rules.push((
            method,
            prefix.to_string(),
            scopes.into_iter().map(Into::into).collect(),
        ));
        self
    }

    /// The rules as the route policy: each prefix a plain path, each scope
    /// concrete, no two rules for one method and prefix.
    pub fn policy(&self) -> Result<RoutePolicy, RouteError> {
        let routes = self
            .rules
            .iter()
            .map(|(method, prefix, scopes)| {
                Route::new(method.as_ref().map_or("*", Method::as_str), prefix, scopes)
            })
            .collect::<Result<Vec<_>, _>>()?;
        RoutePolicy::new(routes, false)
    }
}

/// What the guard does when Gatehouse cannot be asked (unreachable, or no
/// answer within the deadline).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum WhenUnavailable {
    /// Deny with 503 (`UNAVAILABLE` over gRPC): nothing unverified gets in.
    /// The default.
    #[default]
    FailClosed,
    /// Let the request through without a [`Principal`] (logged at warn).
    /// Only for routes whose handlers check for the principal themselves.
    FailOpen,
}

/// A response body the guard can deny with: JSON for HTTP callers, empty for
/// gRPC ones (whose status travels in headers).
pub trait GuardBody: Default + Send {
    fn json(text: String) -> Self;
}

impl GuardBody for axum::body::Body {
    fn json(text: String) -> Self {
        Self::from(text)
    }
}

impl GuardBody for tonic::body::Body {
    fn json(text: String) -> Self {
        Self::new(text)
    }
}

struct Guard {
    verifier: VerifierServiceClient<Channel>,
    routes: RoutePolicy,
    deadline: Duration,
    when_unavailable: WhenUnavailable,
}

/// Guards every request of the wrapped service. Cheap to clone.
#[derive(Clone)]
pub struct GuardLayer {
    guard: Arc<Guard>,
}

impl GuardLayer {
    /// A guard asking the Gatehouse verifier behind `channel` (one HTTP/2
    /// connection, reused by every request; see `Channel::from_shared`).
    pub fn new(channel: Channel) -> Self {
        Self {
            guard: Arc::new(Guard {
                verifier: VerifierServiceClient::new(channel),
                routes: RoutePolicy::default(),
                deadline: Duration::from_secs(2),
                when_unavailable: WhenUnavailable::default(),
            }),
        }
    }

    fn with(self, change: impl FnOnce(&mut Guard)) -> Self {
        let mut guard = Arc::try_unwrap(self.guard).unwrap_or_else(|shared| Guard {
            verifier: shared.verifier.clone(),
            routes: shared.routes.clone(),
            deadline: shared.deadline,
            when_unavailable: shared.when_unavailable,
        });
        change(&mut guard);
        Self {
            guard: Arc::new(guard),
        }
    }

    /// The scopes each route needs; a table with two rules for one method
    /// and prefix, or a rule that is not a plain path with concrete scopes,
    /// is refused.
    pub fn routes(self, routes: RouteScopes) -> Result<Self, RouteError> {
        let policy = routes.policy()?;
        Ok(self.with(|g| g.routes = policy))
    }

    /// The longest a `Verify` may take before Gatehouse counts as
    /// unavailable (default 2 s).
    pub fn deadline(self, deadline: Duration) -> Self {
        self.with(|g| g.deadline = deadline)
    }

    /// Fail closed (default) or open when Gatehouse cannot be asked.
    pub fn when_unavailable(self, choice: WhenUnavailable) -> Self {
        self.with(|g| g.when_unavailable = choice)
    }
}

impl<S> tower::Layer<S> for GuardLayer {
    type Service = Guarded<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Guarded {
            inner,
            guard: self.guard.clone(),
        }
    }
}

/// A service behind the guard.
#[derive(Clone)]
pub struct Guarded<S> {
    inner: S,
    guard: Arc<Guard>,
}

/// Why a request was refused.
struct Denial {
    status: StatusCode,
    reason: String,
    message: String,
    /// A credential was presented (RFC 6750 `error="invalid_token"`).
    presented: bool,
    /// For 403: the scopes the route needs.
    scope: Option<String>,
}

impl Denial {
    fn internal(message: &str) -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            reason: "INTERNAL".into(),
            message: message.into(),
            presented: true,
            scope: None,
        }
    }

    fn code(&self) -> &'static str {
        match self.status {
            StatusCode::UNAUTHORIZED => "unauthorized",
            StatusCode::FORBIDDEN => "forbidden",
            StatusCode::BAD_REQUEST => "invalid_request",
            StatusCode::SERVICE_UNAVAILABLE => "unavailable",
            _ => "internal",
        }
    }

    fn into_response<B: GuardBody>(self, grpc: bool) -> Response<B> {
        if grpc {
            let code = match self.status {
                StatusCode::UNAUTHORIZED => tonic::Code::Unauthenticated,
                StatusCode::FORBIDDEN => tonic::Code::PermissionDenied,
                StatusCode::BAD_REQUEST => tonic::Code::InvalidArgument,
                StatusCode::SERVICE_UNAVAILABLE => tonic::Code::Unavailable,
                _ => tonic::Code::Internal,
            };
            let status = tonic::Status::with_error_details(
                code,
                self.message,
                ErrorDetails::with_error_info(self.reason, "gatehouse", []),
            );
            return status.into_http();
        }
        let body = serde_json::json!({
            "code": self.code(),
            "message": self.message,
            "statusCode": self.status.as_u16(),
            "reason": self.reason,
        });
        let mut response = Response::new(B::json(body.to_string()));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let challenge = match (self.status, self.presented, &self.scope) {
            (StatusCode::UNAUTHORIZED, false, _) => Some(r#"Bearer realm="gatehouse""#.to_string()),
            (StatusCode::UNAUTHORIZED, true, _) => {
                Some(r#"Bearer realm="gatehouse", error="invalid_token""#.to_string())
            }
            (StatusCode::FORBIDDEN, _, Some(scope)) => Some(format!(
                r#"Bearer realm="gatehouse", error="insufficient_scope", scope="{scope}""#
            )),
            _ => None,
        };
        if let Some(value) = challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
            headers.insert(header::WWW_AUTHENTICATE, value);
        }
        response
    }
}

impl Guard {
    /// The principal, `None` when failing open, or the denial.
    async fn check(
        &self,
        method: &Method,
        path: &str,
        authorization: Option<&HeaderValue>,
    ) -> Result<Option<Principal>, Denial> {
        // The path as the service's router sees it (axum matches raw paths).
        let scopes = match self.routes.decide_literal(method.as_str(), path) {
            RouteDecision::Require(scopes) => scopes,
            // Unmatched is the policy's answer only when it denies them,
            // which a guard's never does; answer it as unsafe all the same.
            RouteDecision::Unsafe | RouteDecision::Unmatched => {
                return Err(Denial {
                    status: StatusCode::BAD_REQUEST,
                    reason: "PATH_REJECTED".into(),
                    message: "the request path cannot be matched safely".into(),
                    presented: false,
                    scope: None,
                });
            }
        };
        let credential = authorization
            .map(|v| String::from_utf8_lossy(v.as_bytes()).trim().to_string())
            .filter(|c| !c.is_empty());
        let Some(credential) = credential else {
            return Err(Denial {
                status: StatusCode::UNAUTHORIZED,
                reason: "CREDENTIAL_MISSING".into(),
                message: "a bearer credential is required".into(),
                presented: false,
                scope: None,
            });
        };
        let mut verifier = self.verifier.clone();
        let mut request = tonic::Request::new(pb::VerifyRequest {
            credential,
            required_scopes: scopes.clone(),
            audience: String::new(),
        });
        request.set_timeout(self.deadline);
        let answer = tokio::time::timeout(self.deadline, verifier.verify(request)).await;
        let status = match answer {
            Ok(Ok(response)) => {
                let Some(p) = response.into_inner().principal else {
                    return Err(Denial::internal("Verify answered without a principal"));
                };
                return Ok(Some(Principal {
                    kind: match p.kind() {
                        pb::PrincipalKind::User => "user",
                        pb::PrincipalKind::Sdk => "sdk",
                        _ => "api_key",
                    },
                    account_id: p.account_id,
                    subject: p.subject,
                    key_id: (!p.key_id.is_empty()).then_some(p.key_id),
                    scopes: p.scopes,
                }));
            }
            Ok(Err(status)) => status,
            Err(_) => tonic::Status::deadline_exceeded("Verify took too long"),
        };
        let reason = status
            .get_details_error_info()
            .map(|info| info.reason)
            .unwrap_or_default();
        let denial = |status: StatusCode, scope: Option<String>| Denial {
            status,
            reason: reason.clone(),
            message: status_message(&status),
            presented: true,
            scope,
        };
        match status.code() {
            tonic::Code::Unauthenticated => Err(denial(StatusCode::UNAUTHORIZED, None)),
            tonic::Code::PermissionDenied => Err(denial(
                StatusCode::FORBIDDEN,
                (!scopes.is_empty()).then(|| scopes.join(" ")),
            )),
            // The only argument the caller does not control is this guard's
            // own route table (a wildcard scope, say): a server fault.
            tonic::Code::InvalidArgument => Err(Denial::internal(
                "the guard's route table names a scope Verify refuses",
            )),
            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => {
                match self.when_unavailable {
                    WhenUnavailable::FailOpen => {
                        tracing::warn!(%status, "Gatehouse unavailable: failing open");
                        Ok(None)
                    }
                    WhenUnavailable::FailClosed => {
                        tracing::warn!(%status, "Gatehouse unavailable: failing closed");
                        Err(Denial {
                            status: StatusCode::SERVICE_UNAVAILABLE,
                            reason: "AUTH_UNAVAILABLE".into(),
                            message: "the credential cannot be checked right now".into(),
                            presented: true,
                            scope: None,
                        })
                    }
                }
            }
            // Anything else is not an outage: never let it through.
            _ => {
                tracing::error!(%status, "Verify failed");
                Err(Denial::internal("the credential could not be checked"))
            }
        }
    }
}

fn status_message(status: &StatusCode) -> String {
    match *status {
        StatusCode::UNAUTHORIZED => "invalid credential".into(),
        StatusCode::FORBIDDEN => "insufficient scope".into(),
        _ => "invalid request".into(),
    }
}

impl<S, ReqBody, ResBody> tower::Service<Request<ReqBody>> for Guarded<S>
where
    S: tower::Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: GuardBody + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        // The service that was polled ready serves this request.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let guard = self.guard.clone();
        Box::pin(async move {
            let grpc = request
                .headers()
                .get(header::CONTENT_TYPE)
                .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
            let checked = guard
                .check(
                    request.method(),
                    request.uri().path(),
                    request.headers().get(header::AUTHORIZATION),
                )
                .await;
            match checked {
                Ok(principal) => {
                    if let Some(principal) = principal {
                        request.extensions_mut().insert(principal);
                    }
                    inner.call(request).await
                }
                Err(denial) => Ok(denial.into_response(grpc)),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scopes_for(routes: &RouteScopes, method: &Method, path: &str) -> Vec<String> {
        match routes
            .policy()
            .unwrap()
            .decide_literal(method.as_str(), path)
        {
            RouteDecision::Require(scopes) => scopes,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_longest_matching_prefix_and_then_the_method_decide() {
        let routes = RouteScopes::new()
            .route(None, "/claws", ["claws:read"])
            .route(Some(Method::POST), "/claws", ["claws:write"])
            .route(None, "/claws/admin", ["team:write"]);
        assert_eq!(
            scopes_for(&routes, &Method::GET, "/claws/1"),
            ["claws:read"]
        );
        assert_eq!(
            scopes_for(&routes, &Method::POST, "/claws/1"),
            ["claws:write"]
        );
        assert_eq!(
            scopes_for(&routes, &Method::GET, "/claws/admin/x"),
            ["team:write"]
        );
        assert!(scopes_for(&routes, &Method::GET, "/other").is_empty());
        assert_eq!(
            scopes_for(&routes, &Method::HEAD, "/claws/1"),
            ["claws:read"],
            "HEAD is a GET"
        );
        assert!(
            scopes_for(&routes, &Method::GET, "/clawsx").is_empty(),
            "prefixes cover whole segments"
        );
        assert_eq!(
            scopes_for(&routes, &Method::POST, "/claws/../claws/1"),
            ["claws:write"],
            "dot segments do not route around a rule"
        );
        let open = RouteScopes::new().route(None, "/api", ["api:read"]).route(
            None,
            "/api/public",
            Vec::<String>::new(),
        );
        assert_eq!(
            scopes_for(&open, &Method::GET, "/api/publicx/secret"),
            ["api:read"]
        );
        assert!(scopes_for(&open, &Method::GET, "/api/public/doc").is_empty());
    }

    #[test]
    fn a_table_whose_order_would_decide_is_refused() {
        let twice = RouteScopes::new()
            .route(Some(Method::GET), "/claws", ["claws:read"])
            .route(Some(Method::GET), "/claws/", ["claws:write"]);
        assert!(matches!(twice.policy(), Err(RouteError::Duplicate { .. })));
        let wildcard = RouteScopes::new().route(None, "/claws", ["claws:*"]);
        assert!(matches!(wildcard.policy(), Err(RouteError::Invalid { .. })));
    }
}
