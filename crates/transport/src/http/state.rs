//! What the HTTP handlers share: the roles this process serves.

use axum::http::StatusCode;
use gatehouse_issuer::Issuer;
use gatehouse_verifier::Decider;

use super::error::ApiError;

#[derive(Clone)]
pub struct AppState {
    /// Set when this process issues (`serve` or `serve issuer`).
    pub issuer: Option<Issuer>,
    /// Set when this process verifies (`serve` or `serve verifier`).
    pub decider: Option<Decider>,
    /// How often a live activity stream looks for new entries.
    pub poll: std::time::Duration,
}

impl AppState {
    pub fn issuer(&self) -> Result<&Issuer, ApiError> {
        self.issuer
            .as_ref()
            .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "this server does not issue"))
    }

    pub fn decider(&self) -> Result<&Decider, ApiError> {
        self.decider
            .as_ref()
            .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "this server does not verify"))
    }
}
