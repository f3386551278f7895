//! The `gatehouse.v1` services. Until their issues land, every RPC answers
//! `UNIMPLEMENTED` through the generated default methods.

use gatehouse_api::v1::{
    audit_service_server::AuditService, verifier_service_server::VerifierService,
};
use gatehouse_eventstore::EventStore;

/// Verifies credentials from memory.
#[derive(Clone)]
pub struct Verifier {
    pub store: EventStore,
}

impl VerifierService for Verifier {}

/// Serves the key activity log.
#[derive(Clone)]
pub struct Audit {
    pub store: EventStore,
}

impl AuditService for Audit {}
