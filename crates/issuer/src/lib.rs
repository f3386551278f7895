//! The Gatehouse issuer.
//!
//! - [`issuer`]: [`Issuer`] — accounts, users, login, refresh rotation with
//!   reuse detection, logout, SDK-token exchange, bootstrap;
//! - [`audit`]: the key activity log (list, watch);
//! - [`keyring`]: the live signing keyring (JWKS, signer, rotation);
//! - [`keys`]: API key create/list/get/rotate/revoke/delete and the expiry
//!   scheduler;
//! - [`scopes`]: the scope catalogue — define, list, retire, import;
//! - [`throttle`]: the database-backed login throttle;
//! - [`grpc`]: `AuthService`, `AccountService`, `KeyService`, `AuditService`
//!   and `ScopeService` over tonic;
//! - [`error`]: [`IssuerError`] and its one mapping to `tonic::Status`;
//! - [`settings`]: token lifetimes, issuer/audience, throttle settings.

pub mod audit;
pub mod error;
pub mod grpc;
pub mod issuer;
pub mod keyring;
pub mod keys;
pub mod scopes;
pub mod settings;
pub mod throttle;

pub use error::IssuerError;
pub use issuer::{Bootstrapped, CallContext, Issuer, Principal};
pub use keyring::LiveKeyring;
pub use settings::{IssuerSettings, ThrottleSettings};
