//! The Gatehouse issuer, as an application layer with no transport in it:
//! each operation takes parsed input and an authenticated [`Principal`] and
//! returns a result or an [`IssuerError`]; the gRPC and HTTP adapters in
//! `gatehouse-transport` are a few lines each over it.
//!
//! - [`service`]: [`Issuer`] — its state and the reads every flow shares;
//! - [`bearer`]: authentication of an admin call's bearer credential;
//! - [`accounts`]: accounts and users;
//! - [`sessions`]: login, refresh rotation with reuse detection, logout,
//!   password change;
//! - [`exchange`]: the SDK-token exchange, answered from memory;
//! - [`memory`]: [`LogView`] — the index the issuer answers from, kept
//!   current from the log;
//! - [`bootstrap`]: the first account, owner, admin key and catalogue;
//! - [`audit`]: the key activity log (list, watch);
//! - [`decide`]: the one decide-and-append path, with its bounded retry;
//! - [`keyring`]: the live signing keyring (JWKS, signer, rotation);
//! - [`keys`]: API key create/list/get/rotate/revoke/delete and the expiry
//!   scheduler;
//! - [`scopes`]: the scope catalogue — define, list, retire, import;
//! - [`throttle`]: the database-backed login throttle;
//! - [`error`]: [`IssuerError`], its class and reason, for each transport to
//!   map once;
//! - [`settings`]: token lifetimes, issuer/audience, throttle settings.

/// An event's type and payload, for [`service::event`].
macro_rules! parts {
    ($e:expr) => {
        ($e.event_type(), $e.payload())
    };
}

pub mod accounts;
pub mod audit;
pub mod bearer;
pub mod bootstrap;
pub mod decide;
pub mod error;
pub mod exchange;
pub mod keyring;
pub mod keys;
pub mod memory;
pub mod scopes;
pub mod service;
pub mod sessions;
pub mod settings;
pub mod throttle;

#[cfg(test)]
mod testing;

pub use bootstrap::Bootstrapped;
pub use error::{ErrorClass, IssuerError};
pub use keyring::LiveKeyring;
pub use memory::LogView;
pub use service::{CallContext, Issuer, Principal};
pub use sessions::{LoginResult, TokenPair};
pub use settings::{IssuerSettings, ThrottleSettings};
