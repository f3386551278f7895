//! Issuer settings (flags and `GATEHOUSE_*` variables, see the binary).

use std::time::Duration;

use gatehouse_domain::secret::KeyFormat;

/// How tokens are minted and logins throttled.
#[derive(Debug, Clone)]
pub struct IssuerSettings {
    /// `iss` of every token.
    pub issuer: String,
    /// `aud` of every token.
    pub audience: String,
    pub access_token_ttl: Duration,
    pub sdk_token_ttl: Duration,
    /// The refresh token's lifetime, renewed by each use: the session's idle timeout.
    pub refresh_token_ttl: Duration,
    /// A session's absolute lifetime from login, however often it refreshes.
    pub session_max_lifetime: Duration,
    /// Clock skew tolerated when verifying bearer tokens.
    pub leeway: Duration,
    /// `wc` / `live` of `wc_live_…` secrets and `wc_rt_…` refresh tokens.
    pub key_format: KeyFormat,
    pub throttle: ThrottleSettings,
    /// How long a new signing key is published before it signs.
    pub signing_key_publish_lead: Duration,
    /// Longest a user token may live and still be accepted: how long
    /// verifiers remember a revoked session (the same rule everywhere).
    pub max_user_token_lifetime: Duration,
}

/// Growing delays after repeated login failures (OWASP's guidance: delays,
/// not a hard lock, counted first per username and client address).
#[derive(Debug, Clone, Copy)]
pub struct ThrottleSettings {
    /// Failures of one username from one client address before delays
    /// start: what stops one attacker guessing one account.
    pub free_per_pair: u32,
    /// Failures of one username from anywhere: a looser ceiling against
    /// guessing spread over many addresses.
    pub free_per_username: u32,
    /// Failures from one address at any username: a looser ceiling against
    /// one address spraying many accounts (a NAT's users share it).
    pub free_per_address: u32,
    /// First delay; doubles with every further failure.
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// A counter untouched this long starts again from zero.
    pub window: Duration,
}

impl Default for ThrottleSettings {
    fn default() -> Self {
        Self {
            free_per_pair: 5,
            free_per_username: 50,
            free_per_address: 100,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(15 * 60),
            window: Duration::from_secs(3600),
        }
    }
}
