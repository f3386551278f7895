//! A small axum service whose routes are guarded by Gatehouse.
//!
//! ```sh
//! GATEHOUSE_VERIFIER_URL=http://127.0.0.1:50051 \
//!   cargo run -p gatehouse-client --example guarded_service
//! curl -H "authorization: Bearer $TOKEN" http://127.0.0.1:8080/claws
//! ```
//! `GET /claws` needs `claws:read`, `POST /claws` needs `claws:write`; the
//! handler sees who called. Gatehouse unreachable: 503 (fail closed).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests: a failure is a panic

use axum::Extension;
use axum::http::Method;
use axum::routing::get;
use gatehouse_client::{GuardLayer, Principal, RouteScopes};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let verifier =
        std::env::var("GATEHOUSE_VERIFIER_URL").unwrap_or_else(|_| "http://127.0.0.1:50051".into());
    let listen = std::env::var("LISTEN").unwrap_or_else(|_| "127.0.0.1:8080".into());
    // One HTTP/2 connection to the verifier, reused by every request.
    let channel = tonic::transport::Endpoint::from_shared(verifier)?.connect_lazy();
    let guard = GuardLayer::new(channel).routes(
        RouteScopes::new()
            .route(Some(Method::GET), "/claws", ["claws:read"])
            .route(Some(Method::POST), "/claws", ["claws:write"]),
    )?;
    let app = axum::Router::new()
        .route(
            "/claws",
            get(|Extension(caller): Extension<Principal>| async move {
                format!(
                    "claws of account {} for {}\n",
                    caller.account_id, caller.subject
                )
            })
            .post(|Extension(caller): Extension<Principal>| async move {
                format!("claw created by {}\n", caller.subject)
            }),
        )
        .layer(guard);
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!("guarded service on http://{listen}");
    axum::serve(listener, app).await?;
    Ok(())
}
