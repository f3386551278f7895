//! The `gatehouse.v1` services not built yet: every RPC answers
//! `UNIMPLEMENTED` through the generated default methods until its issue lands.

use gatehouse_api::v1::audit_service_server::AuditService;
use gatehouse_eventstore::EventStore;

/// Serves the key activity log.
#[derive(Clone)]
pub struct Audit {
    pub store: EventStore,
}

impl AuditService for Audit {}
