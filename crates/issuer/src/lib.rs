//! The Gatehouse issuer, as an application layer with no transport in it:
//! each operation takes parsed input and an authenticated [`Principal`] and
//! returns a result or an [`IssuerError`]; the gRPC and HTTP adapters in
//! `gatehouse-transport` are a few lines each over it.
//!
//! - [`flows`]: [`Issuer`] — authentication of bearer credentials, accounts,
//!   users, login, refresh rotation with reuse detection, logout, SDK-token
//!   exchange, bootstrap;
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

pub mod audit;
pub mod decide;
pub mod error;
pub mod flows;
pub mod keyring;
pub mod keys;
pub mod scopes;
pub mod settings;
pub mod throttle;

pub use error::{ErrorClass, IssuerError};
pub use flows::{Bootstrapped, CallContext, Issuer, Principal};
pub use keyring::LiveKeyring;
pub use settings::{IssuerSettings, ThrottleSettings};
