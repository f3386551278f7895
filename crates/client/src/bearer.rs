//! Attaching the current SDK token to outgoing calls.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::http::{HeaderValue, Request, header};

use crate::token::{Error, TokenSource};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A tower layer for a client (e.g. a tonic `Channel`) that puts
/// `authorization: Bearer <token>` from a [`TokenSource`] on every request;
/// the token is awaited, so a refresh never blocks a runtime thread.
///
/// ```no_run
/// # async fn demo(tokens: gatehouse_client::TokenSource) {
/// let channel = tonic::transport::Endpoint::from_static("http://api.internal:50051").connect_lazy();
/// let channel = tower::ServiceBuilder::new()
///     .layer(gatehouse_client::BearerLayer::new(tokens))
///     .service(channel);
/// // e.g. SomeServiceClient::new(channel)
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct BearerLayer {
    tokens: TokenSource,
}

impl BearerLayer {
    pub fn new(tokens: TokenSource) -> Self {
        Self { tokens }
    }
}

impl<S> tower::Layer<S> for BearerLayer {
    type Service = Bearer<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Bearer {
            inner,
            tokens: self.tokens.clone(),
        }
    }
}

/// A client service behind [`BearerLayer`].
#[derive(Clone, Debug)]
pub struct Bearer<S> {
    inner: S,
    tokens: TokenSource,
}

impl<S, B> tower::Service<Request<B>> for Bearer<S>
where
    S: tower::Service<Request<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let tokens = self.tokens.clone();
        Box::pin(async move {
            // As gRPC statuses, so a tonic client sees UNAUTHENTICATED for a
            // refused key and UNAVAILABLE for an outage, not UNKNOWN.
            let token = tokens.token().await.map_err(|error| match error {
                Error::Unauthorized { .. } => tonic::Status::unauthenticated(error.to_string()),
                other => tonic::Status::unavailable(other.to_string()),
            })?;
            let value = HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| tonic::Status::internal("unusable token"))?;
            request.headers_mut().insert(header::AUTHORIZATION, value);
            inner.call(request).await.map_err(Into::into)
        })
    }
}

impl TokenSource {
    /// `request` with the current token as its bearer credential (for
    /// reqwest callers).
    pub async fn authorize(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::RequestBuilder, Error> {
        Ok(request.bearer_auth(self.token().await?))
    }
}

/// A `reqwest-middleware` middleware attaching the current token to every
/// request of a `ClientWithMiddleware`.
///
/// ```no_run
/// # async fn demo(tokens: gatehouse_client::TokenSource) -> Result<(), reqwest_middleware::Error> {
/// let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
///     .with(gatehouse_client::BearerMiddleware::new(tokens))
///     .build();
/// let answer = client.get("https://api.example.com/claws").send().await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct BearerMiddleware {
    tokens: TokenSource,
}

impl BearerMiddleware {
    pub fn new(tokens: TokenSource) -> Self {
        Self { tokens }
    }
}

#[tonic::async_trait]
impl reqwest_middleware::Middleware for BearerMiddleware {
    async fn handle(
        &self,
        mut request: reqwest::Request,
        extensions: &mut axum::http::Extensions,
        next: reqwest_middleware::Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        let token = self
            .tokens
            .token()
            .await
            .map_err(reqwest_middleware::Error::middleware)?;
        let value = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(reqwest_middleware::Error::middleware)?;
        request.headers_mut().insert(header::AUTHORIZATION, value);
        next.run(request, extensions).await
    }
}
