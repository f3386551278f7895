//! The transports: thin adapters over the application layer
//! (`gatehouse-issuer`, `gatehouse-verifier`), each reading credentials in one
//! place and mapping errors in one place.
//!
//! - [`grpc`]: the `gatehouse.v1` services and Envoy's `ext_authz` over tonic.

pub mod grpc;
