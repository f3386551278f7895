//! Limits on the whole port, gRPC and HTTP alike: how many requests run at
//! once (beyond it a request is shed at once, not queued, so an overload
//! shows as fast refusals rather than as every caller's latency) and how long
//! one may take to produce its answer. A refused gRPC call gets a gRPC status
//! (`RESOURCE_EXHAUSTED`, `DEADLINE_EXCEEDED`); an HTTP request the JSON
//! error body (503, 504) — never a status of the other protocol.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use crate::http::ApiError;

/// The limits of one listener.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Requests being answered at once; `None`: no limit.
    pub concurrent: Option<Arc<Semaphore>>,
    /// Longest a request may take to produce its response's head (a stream
    /// such as a live tail then runs on).
    pub deadline: Duration,
}

impl Limits {
    pub fn new(max_concurrent: usize, deadline: Duration) -> Self {
        Self {
            concurrent: (max_concurrent > 0).then(|| Arc::new(Semaphore::new(max_concurrent))),
            deadline,
        }
    }
}

fn is_grpc(request: &Request) -> bool {
    request
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// The refusal of `request` in its own protocol.
fn refuse(
    grpc: bool,
    code: tonic::Code,
    status: StatusCode,
    message: &str,
    reason: &'static str,
) -> Response {
    if grpc {
        let mut details = tonic_types::ErrorDetails::new();
        details.set_error_info(reason, gatehouse_issuer::error::ERROR_DOMAIN, []);
        if code == tonic::Code::ResourceExhausted {
            details.set_retry_info(Some(Duration::from_secs(1)));
        }
        let status =
            <tonic::Status as tonic_types::StatusExt>::with_error_details(code, message, details);
        return status.into_http::<axum::body::Body>().into_response();
    }
    let mut error = ApiError::new(status, message).with_reason(reason);
    if status == StatusCode::SERVICE_UNAVAILABLE {
        error.retry_after = Some(1);
    }
    error.into_response()
}

/// Middleware: sheds a request beyond the concurrency limit and answers one
/// that passes its deadline.
pub async fn enforce(State(limits): State<Limits>, request: Request, next: Next) -> Response {
    let grpc = is_grpc(&request);
    let _permit = match &limits.concurrent {
        Some(semaphore) => match semaphore.clone().try_acquire_owned() {
            Ok(permit) => Some(permit),
            Err(_) => {
                metrics::counter!("gatehouse_requests_shed_total").increment(1);
                return refuse(
                    grpc,
                    tonic::Code::ResourceExhausted,
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the server is at its limit of concurrent requests; retry shortly",
                    "OVERLOADED",
                );
            }
        },
        None => None,
    };
    match tokio::time::timeout(limits.deadline, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            metrics::counter!("gatehouse_requests_timed_out_total").increment(1);
            refuse(
                grpc,
                tonic::Code::DeadlineExceeded,
                StatusCode::GATEWAY_TIMEOUT,
                "the request took longer than the server's deadline",
                "DEADLINE_EXCEEDED",
            )
        }
    }
}
