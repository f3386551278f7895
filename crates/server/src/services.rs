//! The `gatehouse.v1` services. Until their issues land, every RPC answers
//! `UNIMPLEMENTED` through the generated default methods.

use gatehouse_api::v1::{
    account_service_server::AccountService, audit_service_server::AuditService,
    auth_service_server::AuthService, key_service_server::KeyService,
    verifier_service_server::VerifierService,
};
use gatehouse_eventstore::EventStore;

/// Issues tokens: login, refresh, SDK exchange, logout, JWKS.
#[derive(Clone)]
pub struct Auth {
    /// The event log every state change is appended to.
    pub store: EventStore,
}

impl AuthService for Auth {}

/// Administers API keys.
#[derive(Clone)]
pub struct Keys {
    pub store: EventStore,
}

impl KeyService for Keys {}

/// Creates accounts and users.
#[derive(Clone)]
pub struct Accounts {
    pub store: EventStore,
}

impl AccountService for Accounts {}

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
