//! The Gatehouse server: everything between a socket and the services.
//!
//! - [`settings`]: flags and `GATEHOUSE_*` variables (clap);
//! - [`telemetry`]: the `tracing` subscriber;
//! - [`startup`]: [`Application`] — open the store, migrate, bind, serve
//!   `gatehouse.v1`, `grpc.health.v1` and reflection until shutdown;
//! - [`config`]: every setting checked before the server opens anything
//!   (also `gatehouse check-config`);
//! - [`compose`]: building the issuer from settings (master key, hasher, keyring).

pub mod compose;
pub mod config;
pub mod conn;
pub mod settings;
pub mod startup;
pub mod telemetry;
pub mod tls;

pub use settings::{DatabaseArgs, IssuerArgs, Role, ServeArgs};
pub use startup::{Application, StartupError, shutdown_signal};
