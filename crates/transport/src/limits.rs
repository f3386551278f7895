//! Limits on the whole port, gRPC and HTTP alike: how many requests run at
//! once (beyond it a request is shed at once, not queued, so an overload
//! shows as fast refusals rather than as every caller's latency) and how long
//! one may take to produce its answer (the server's deadline, or the
//! caller's `grpc-timeout` if shorter). A refused gRPC call gets a gRPC
//! status (`UNAVAILABLE` — retry elsewhere or later — or
//! `DEADLINE_EXCEEDED`); an HTTP request the JSON error body (503, 504) —
//! never a status of the other protocol. Verification and health checks,
//! answered from memory, are not counted: a flood of logins waiting for
//! argon2 must not stop `Verify`.
//!
//! A request takes its slot only once its body has arrived (up to
//! [`BUFFERED_BODY_BYTES`]; a larger body is passed on as it streams), so
//! clients that declare a body and send a byte of it cannot hold every slot
//! while their bodies never come; the deadline covers the wait for it. At
//! most [`BUFFERING`] requests wait for their bodies at once (a bound on the
//! memory they hold); beyond them a request takes its slot first, as before.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
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
    /// Requests reading their bodies before taking a slot.
    pub buffering: Arc<Semaphore>,
}

impl Limits {
    pub fn new(max_concurrent: usize, deadline: Duration) -> Self {
        Self {
            concurrent: (max_concurrent > 0).then(|| Arc::new(Semaphore::new(max_concurrent))),
            deadline,
            buffering: Arc::new(Semaphore::new(BUFFERING)),
        }
    }
}

/// Calls answered from memory in microseconds: exempt from the concurrency
/// limit, so slow calls elsewhere can never crowd them out.
fn answered_from_memory(path: &str) -> bool {
    path.starts_with("/gatehouse.v1.VerifierService/")
        || path.starts_with("/envoy.service.auth.v3.Authorization/")
        || path.starts_with("/grpc.health.v1.Health/")
        || matches!(path, "/api/v1/verify" | "/healthz" | "/readyz")
}

/// The caller's `grpc-timeout` (`<digits><unit>`, gRPC over HTTP/2 §Timeout).
fn grpc_timeout(request: &Request) -> Option<Duration> {
    let value = request.headers().get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    let n: u64 = digits.parse().ok().filter(|_| digits.len() <= 8)?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
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
        if code == tonic::Code::Unavailable {
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

/// Most of a request body read before the request takes its slot: far more
/// than the API's own bodies (a login, a key) need; a larger one streams on.
pub const BUFFERED_BODY_BYTES: usize = 64 << 10;
/// Requests reading their bodies at once before taking a slot: with
/// [`BUFFERED_BODY_BYTES`] each, at most 64 MiB held.
pub const BUFFERING: usize = 1024;

/// Reads `body` until it ends or [`BUFFERED_BODY_BYTES`] have arrived, and
/// returns a body that yields the same frames (trailers included), then
/// whatever is left of the original.
async fn arrived(body: Body) -> Body {
    use futures::StreamExt as _;
    use http_body_util::BodyExt as _;
    let mut body = body;
    let mut frames = Vec::new();
    let mut bytes = 0;
    let ended = loop {
        if bytes > BUFFERED_BODY_BYTES {
            break false;
        }
        match body.frame().await {
            Some(Ok(frame)) => {
                bytes += frame.data_ref().map_or(0, |d| d.len());
                frames.push(Ok(frame));
            }
            Some(Err(error)) => {
                frames.push(Err(error));
                break true;
            }
            None => break true,
        }
    };
    let only_data = frames
        .iter()
        .all(|frame| frame.as_ref().is_ok_and(|f| f.is_data()));
    if ended && only_data {
        // Whole and plain: one buffer, whose exact size the handlers see (an
        // empty body stays empty, as extractors that allow one expect).
        let mut whole = Vec::with_capacity(bytes);
        for frame in frames.into_iter().flatten() {
            if let Ok(data) = frame.into_data() {
                whole.extend_from_slice(&data);
            }
        }
        return if whole.is_empty() {
            Body::empty()
        } else {
            Body::from(whole)
        };
    }
    let read = futures::stream::iter(frames);
    if ended {
        Body::new(http_body_util::StreamBody::new(read))
    } else {
        let rest = http_body_util::BodyStream::new(body);
        Body::new(http_body_util::StreamBody::new(read.chain(rest)))
    }
}

/// Middleware: sheds a request beyond the concurrency limit and answers one
/// that passes its deadline.
pub async fn enforce(State(limits): State<Limits>, request: Request, next: Next) -> Response {
    let grpc = is_grpc(&request);
    let counted = !answered_from_memory(request.uri().path());
    let deadline = grpc_timeout(&request).map_or(limits.deadline, |t| t.min(limits.deadline));
    let semaphore = limits.concurrent.clone().filter(|_| counted);
    let answer = async move {
        let reading = semaphore
            .as_ref()
            .and_then(|_| limits.buffering.clone().try_acquire_owned().ok());
        let request = match reading {
            Some(_reading) => {
                let (parts, body) = request.into_parts();
                Request::from_parts(parts, arrived(body).await)
            }
            None => request,
        };
        take_slot(semaphore, grpc, request, next).await
    };
    match tokio::time::timeout(deadline, answer).await {
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

/// Runs `request` holding a slot of `semaphore` (if any), or sheds it.
async fn take_slot(
    semaphore: Option<Arc<Semaphore>>,
    grpc: bool,
    request: Request,
    next: Next,
) -> Response {
    let _permit = match semaphore {
        Some(semaphore) => match semaphore.try_acquire_owned() {
            Ok(permit) => Some(permit),
            Err(_) => {
                metrics::counter!("gatehouse_requests_shed_total").increment(1);
                return refuse(
                    grpc,
                    tonic::Code::Unavailable,
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the server is at its limit of concurrent requests; retry shortly",
                    "OVERLOADED",
                );
            }
        },
        None => None,
    };
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_timeout(value: &str) -> Request {
        axum::http::Request::builder()
            .header("grpc-timeout", value)
            .body(axum::body::Body::empty())
            .unwrap()
    }

    #[test]
    fn grpc_timeouts_are_read_and_bounded() {
        assert_eq!(
            grpc_timeout(&with_timeout("250m")),
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            grpc_timeout(&with_timeout("3S")),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            grpc_timeout(&with_timeout("1H")),
            Some(Duration::from_secs(3600))
        );
        assert_eq!(
            grpc_timeout(&with_timeout("99999999n")),
            Some(Duration::from_nanos(99_999_999))
        );
        for bad in ["", "m", "123456789S", "-1S", "1x", "1.5S", "S1"] {
            assert_eq!(grpc_timeout(&with_timeout(bad)), None, "{bad:?}");
        }
        assert!(answered_from_memory("/gatehouse.v1.VerifierService/Verify"));
        assert!(answered_from_memory("/api/v1/verify"));
        assert!(!answered_from_memory("/gatehouse.v1.AuthService/Login"));
        assert!(!answered_from_memory("/api/v1/verifyx"));
    }
}
