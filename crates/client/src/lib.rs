//! The Rust client of Gatehouse: SDK tokens kept fresh, a guard for a
//! service's routes, and the typed admin calls the CLI uses.
//!
//! [`TokenSource`] does what Scope's SDK does for its users: it
//! exchanges an API key (`account_id`, `key_id`, `key_secret`) for a one-hour
//! SDK token at `POST /v1/auth/sdk-token`, hands that token to every caller,
//! and refreshes it `refresh_buffer` (default 60 s) before it expires — once
//! for all concurrent callers. If a refresh fails while the current token is
//! still valid, callers keep getting it and the refresh is retried with
//! jittered backoff; a refused key (revoked, expired, rotated past its grace)
//! is an [`Error::Unauthorized`] its callers see. [`BearerLayer`] attaches
//! the token to a tonic channel's calls, [`BearerMiddleware`] to every request
//! of a `reqwest-middleware` client, [`TokenSource::authorize`] to one
//! reqwest request.
//!
//! ```no_run
//! # async fn demo() -> Result<(), gatehouse_client::Error> {
//! use gatehouse_client::{Credentials, TokenSource};
//!
//! let tokens = TokenSource::new(
//!     "https://auth.example.com",
//!     Credentials::new("01a2…account", "01a2…key", "wc_live_…"),
//! )?;
//! let token = tokens.token().await?; // exchanged once, then cached
//! let request = reqwest::Client::new().get("https://api.example.com/claws");
//! let answer = tokens.authorize(request).await?.send().await;
//! # Ok(()) }
//! ```

//!
//! [`GuardLayer`] guards a service's own routes: it reads the bearer
//! credential, calls Gatehouse's `Verify` with the scopes its [`RouteScopes`]
//! table names for the route, puts the [`Principal`] in the request's
//! extensions, and denies with Gatehouse's JSON error body and `WWW-Authenticate`
//! (HTTP) or the matching gRPC status — for axum and tonic services alike.
//!
//! [`AdminClient`] makes the typed admin calls (keys, activity, scopes,
//! accounts, users) that the `gatehouse` command line is built on.

mod admin;
mod bearer;
mod guard;
mod token;

pub use admin::{AdminClient, AdminError};
pub use bearer::{Bearer, BearerLayer, BearerMiddleware};
pub use guard::{
    GuardBody, GuardLayer, Guarded, Principal, RouteError, RouteScopes, WhenUnavailable,
};
pub use token::{Credentials, Error, TokenSource, TokenSourceConfig};
