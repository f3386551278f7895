//! The verification decision as callers get it: from memory, with one
//! coalesced catch-up on the log for an unknown but well-formed key, counted
//! by outcome — the same for every transport.

use std::sync::Arc;

use crate::follower::Follower;
use crate::routes::{RouteDecision, RoutePolicy};
use crate::verify::{Denial, Outcome, Verified, Verifier};

/// Verification with one catch-up on the log for an unknown, well-formed key.
#[derive(Clone)]
pub struct Decider {
    pub verifier: Verifier,
    pub follower: Arc<Follower>,
    /// Method + path prefix → scopes, for `Check` requests without
    /// `context_extensions`.
    pub routes: Arc<RoutePolicy>,
    /// A verifier that has not read the log this long is not ready (it keeps
    /// answering from memory).
    pub max_staleness: std::time::Duration,
    /// Where decisions read "now" from (key expiry, grace, token lifetime).
    pub clock: gatehouse_domain::clock::SharedClock,
}

impl Decider {
    /// Whether the index has read the log within the staleness bound.
    pub fn is_fresh(&self) -> bool {
        self.follower.lag() <= self.max_staleness
    }

    /// Whether key usage is being recorded: not when every flush has failed
    /// for longer than the staleness bound (the audit is going blind;
    /// readiness says so, and `gatehouse_usage_flush_failing` is 1).
    pub fn records_usage(&self) -> bool {
        self.verifier
            .usage()
            .and_then(|usage| usage.failing_for())
            .is_none_or(|failing| failing <= self.max_staleness)
    }

    /// Decides, and counts the outcome by result and reason. `caller` (an
    /// address) goes into the key's usage summary.
    pub async fn decide(
        &self,
        credential: &str,
        required: &[String],
        audience: Option<&str>,
        caller: Option<&str>,
    ) -> Result<Verified, Denial> {
        let result = self
            .decide_uncounted(credential, required, audience, caller)
            .await;
        let (outcome, reason) = match &result {
            Ok(_) => ("allow", "OK"),
            Err(denial) => ("deny", denial.reason()),
        };
        metrics::counter!("gatehouse_verify_total", "result" => outcome, "reason" => reason)
            .increment(1);
        result
    }

    async fn decide_uncounted(
        &self,
        credential: &str,
        required: &[String],
        audience: Option<&str>,
        caller: Option<&str>,
    ) -> Result<Verified, Denial> {
        let now = self.clock.now();
        match self
            .verifier
            .verify(credential, required, audience, caller, now)
        {
            Outcome::Decided(result) => result,
            Outcome::UnknownKey => {
                self.follower.catch_up().await;
                match self
                    .verifier
                    .verify(credential, required, audience, caller, self.clock.now())
                {
                    Outcome::Decided(result) => result,
                    Outcome::UnknownKey => Err(Denial::Unauthenticated("KEY_UNKNOWN")),
                }
            }
        }
    }

    pub fn route(&self, method: &str, path: &str) -> RouteDecision {
        self.routes.decide(method, path)
    }
}
