//! The transports: thin adapters over the application layer
//! (`gatehouse-issuer`, `gatehouse-verifier`), each reading credentials in one
//! place and mapping errors in one place.
//!
//! - [`grpc`]: the `gatehouse.v1` services and Envoy's `ext_authz` over tonic;
//! - [`http`]: the HTTP+JSON routes over axum, and the multiplexer that
//!   serves both on one port.

pub mod grpc;
pub mod http;

/// Counts a login by outcome, whichever transport it came by.
pub fn count_login<T>(result: &Result<T, gatehouse_issuer::IssuerError>) {
    use gatehouse_issuer::IssuerError;
    let outcome = match result {
        Ok(_) => "success",
        Err(IssuerError::Throttled { .. }) => "throttled",
        Err(IssuerError::BadCredentials) => "bad_credentials",
        Err(_) => "error",
    };
    metrics::counter!("gatehouse_logins_total", "result" => outcome).increment(1);
}
