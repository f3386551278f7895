//! The Gatehouse gRPC contract, `gatehouse.v1`, generated from `proto/` by `build.rs`.
//!
//! Every service and every Rust client depends on this crate. The encoded file
//! descriptor set is exported for server reflection.

pub mod codec;

/// Generated types and services of the `gatehouse.v1` package.
#[allow(clippy::all, clippy::pedantic, clippy::restriction, missing_docs)]
pub mod v1 {
    tonic::include_proto!("gatehouse.v1");
}

/// The encoded `FileDescriptorSet` of `gatehouse.v1`, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    tonic::include_file_descriptor_set!("gatehouse_v1_descriptor");

/// Fully-qualified names of the six `gatehouse.v1` services, as reflection lists them.
pub const SERVICE_NAMES: [&str; 6] = [
    "gatehouse.v1.AuthService",
    "gatehouse.v1.KeyService",
    "gatehouse.v1.AccountService",
    "gatehouse.v1.VerifierService",
    "gatehouse.v1.AuditService",
    "gatehouse.v1.ScopeService",
];
