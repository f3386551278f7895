//! The transports: thin adapters over the application layer
//! (`gatehouse-issuer`, `gatehouse-verifier`), each reading credentials in one
//! place and mapping errors in one place.
//!
//! - [`grpc`]: the `gatehouse.v1` services and Envoy's `ext_authz` over tonic;
//! - [`http`]: the HTTP+JSON routes over axum, and the multiplexer that
//!   serves both on one port;
//! - [`peer`]: who the caller is (its address, through trusted proxies);
//! - [`limits`]: concurrency and deadlines on the whole port.

pub mod grpc;
pub mod http;
pub mod limits;
pub mod peer;

/// The credential of an `Authorization` header, read alike by every transport
/// (and as `Verify` and Envoy's `Check` read theirs): `Bearer <token>`, or a
/// bare token. No header (or an empty one) is no credential; any other
/// scheme (`Basic …`) is a credential that will not verify — 401
/// `invalid_token`, never "missing".
pub fn credential_of(header: Option<&[u8]>) -> Option<String> {
    let raw = String::from_utf8_lossy(header?);
    let token = gatehouse_verifier::verify::strip_bearer(&raw);
    (!token.is_empty()).then(|| token.to_string())
}
