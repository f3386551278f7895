//! Usage of API keys, summarised by verifiers per interval.
//!
//! A verifier counts uses in memory and writes one `KeyUsageRecorded.v1` per
//! key per interval to the key's `keyusage-<id>` stream, so the write rate is
//! bounded by keys × intervals however fast `Verify` runs. The usage stream is
//! separate from the key's own stream so that background counting never
//! conflicts with an administrator's rotation or revocation.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain_events;
use crate::ids::{AccountId, KeyId};

/// Most distinct callers remembered per key and interval.
pub const MAX_DISTINCT_CALLERS: usize = 1000;
/// Longest denial reason counted as itself; longer ones count as `OTHER`.
pub const MAX_REASON_CHARS: usize = 64;
/// Most distinct denial reasons per key and interval; further ones count
/// as `OTHER`.
pub const MAX_DISTINCT_REASONS: usize = 32;
/// What a caller that is not an IP address is recorded as.
pub const UNKNOWN_CALLER: &str = "unknown";

/// The caller as a usage summary records it: the IP address of `raw` (an
/// address, or an address with a port, as a peer or a proxy reports it),
/// written canonically; anything else is [`UNKNOWN_CALLER`]. A caller's
/// address comes from whoever reports it (an Envoy `Check` names its own),
/// so it is never stored as sent: no text of a caller's choosing, and no
/// size of its choosing, reaches the log.
pub fn caller_address(raw: &str) -> String {
    let raw = raw.trim();
    if raw.len() > 64 {
        return UNKNOWN_CALLER.to_string();
    }
    let parsed = raw
        .parse::<std::net::IpAddr>()
        .or_else(|_| raw.parse::<std::net::SocketAddr>().map(|a| a.ip()))
        .or_else(|_| {
            raw.strip_prefix('[')
                .and_then(|r| r.strip_suffix(']'))
                .unwrap_or("")
                .parse::<std::net::IpAddr>()
        });
    match parsed {
        // An IPv4 client of a dual-stack listener is the IPv4 address.
        Ok(std::net::IpAddr::V6(v6)) => v6
            .to_ipv4_mapped()
            .map_or_else(|| v6.to_string(), |v4| v4.to_string()),
        Ok(ip) => ip.to_string(),
        Err(_) => UNKNOWN_CALLER.to_string(),
    }
}

/// A denial reason as counted: our reasons are short upper-case words; any
/// other text, or one reason too many, is `OTHER`.
fn reason_key(reason: &str, counted: &BTreeMap<String, u64>) -> String {
    let plain = !reason.is_empty()
        && reason.len() <= MAX_REASON_CHARS
        && reason
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
    if plain && (counted.contains_key(reason) || counted.len() < MAX_DISTINCT_REASONS) {
        reason.to_string()
    } else {
        "OTHER".to_string()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyUsageRecorded {
    pub key_id: KeyId,
    pub account_id: AccountId,
    pub interval_start: DateTime<Utc>,
    pub interval_end: DateTime<Utc>,
    pub uses: u64,
    pub denials: u64,
    pub denials_by_reason: BTreeMap<String, u64>,
    /// Capped at [`MAX_DISTINCT_CALLERS`].
    pub distinct_callers: u64,
    pub first_caller: Option<String>,
    pub last_caller: Option<String>,
    pub last_used_at: Option<DateTime<Utc>>,
}

domain_events!(
    /// Events of the `keyusage-<key id>` stream.
    UsageEvent {
        Recorded(KeyUsageRecorded) = "KeyUsageRecorded.v1",
    }
);

/// The stream of a key's usage summaries.
pub fn usage_stream(key: KeyId) -> String {
    format!("keyusage-{key}")
}

/// Uses of one key during the current interval, counted in memory.
#[derive(Debug, Clone)]
pub struct UsageWindow {
    pub account_id: AccountId,
    pub started: DateTime<Utc>,
    uses: u64,
    denials: u64,
    denials_by_reason: BTreeMap<String, u64>,
    callers: BTreeSet<String>,
    first_caller: Option<String>,
    last_caller: Option<String>,
    last_used_at: Option<DateTime<Utc>>,
}

impl UsageWindow {
    pub fn new(account_id: AccountId, started: DateTime<Utc>) -> Self {
        Self {
            account_id,
            started,
            uses: 0,
            denials: 0,
            denials_by_reason: BTreeMap::new(),
            callers: BTreeSet::new(),
            first_caller: None,
            last_caller: None,
            last_used_at: None,
        }
    }

    /// Counts one presentation: allowed, or denied for `reason`.
    pub fn record(&mut self, caller: Option<&str>, denial: Option<&str>, at: DateTime<Utc>) {
        match denial {
            None => {
                self.uses += 1;
                self.last_used_at = Some(at);
            }
            Some(reason) => {
                self.denials += 1;
                let reason = reason_key(reason, &self.denials_by_reason);
                *self.denials_by_reason.entry(reason).or_default() += 1;
            }
        }
        if let Some(caller) = caller.map(caller_address) {
            if self.first_caller.is_none() {
                self.first_caller = Some(caller.clone());
            }
            if self.last_caller.as_deref() != Some(caller.as_str()) {
                self.last_caller = Some(caller.clone());
            }
            if self.callers.len() < MAX_DISTINCT_CALLERS {
                self.callers.insert(caller);
            }
        }
    }

    /// Folds a later window of the same key into this one (used when a flush
    /// failed and counting went on meanwhile).
    pub fn merge(&mut self, later: UsageWindow) {
        self.started = self.started.min(later.started);
        self.uses += later.uses;
        self.denials += later.denials;
        for (reason, count) in later.denials_by_reason {
            let reason = reason_key(&reason, &self.denials_by_reason);
            *self.denials_by_reason.entry(reason).or_default() += count;
        }
        for caller in later.callers {
            if self.callers.len() >= MAX_DISTINCT_CALLERS {
                break;
            }
            self.callers.insert(caller);
        }
        if self.first_caller.is_none() {
            self.first_caller = later.first_caller;
        }
        if later.last_caller.is_some() {
            self.last_caller = later.last_caller;
        }
        self.last_used_at = self.last_used_at.max(later.last_used_at);
    }

    /// The summary event of this window, closed at `now`.
    pub fn summary(&self, key_id: KeyId, now: DateTime<Utc>) -> UsageEvent {
        UsageEvent::Recorded(KeyUsageRecorded {
            key_id,
            account_id: self.account_id,
            interval_start: self.started,
            interval_end: now,
            uses: self.uses,
            denials: self.denials,
            denials_by_reason: self.denials_by_reason.clone(),
            distinct_callers: self.callers.len() as u64,
            first_caller: self.first_caller.clone(),
            last_caller: self.last_caller.clone(),
            last_used_at: self.last_used_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_counts_uses_denials_and_callers() {
        let now = Utc::now();
        let key = KeyId::from_uuid(uuid::Uuid::now_v7());
        let mut window = UsageWindow::new(AccountId::from_uuid(uuid::Uuid::now_v7()), now);
        for _ in 0..3 {
            window.record(Some("10.0.0.1"), None, now);
        }
        window.record(Some("10.0.0.2"), Some("INSUFFICIENT_SCOPE"), now);
        window.record(None, None, now);
        let UsageEvent::Recorded(summary) = window.summary(key, now);
        assert_eq!(
            (summary.uses, summary.denials, summary.distinct_callers),
            (4, 1, 2)
        );
        assert_eq!(summary.denials_by_reason["INSUFFICIENT_SCOPE"], 1);
        assert_eq!(summary.first_caller.as_deref(), Some("10.0.0.1"));
        assert_eq!(summary.last_caller.as_deref(), Some("10.0.0.2"));
        assert_eq!(usage_stream(key), format!("keyusage-{key}"));

        let mut later = UsageWindow::new(window.account_id, now);
        later.record(Some("10.0.0.3"), Some("KEY_REVOKED"), now);
        window.merge(later);
        let UsageEvent::Recorded(merged) = window.summary(key, now);
        assert_eq!(
            (merged.uses, merged.denials, merged.distinct_callers),
            (4, 2, 3)
        );
        assert_eq!(merged.last_caller.as_deref(), Some("10.0.0.3"));
    }

    #[test]
    fn callers_are_recorded_as_addresses_or_unknown() {
        assert_eq!(caller_address("10.0.0.1"), "10.0.0.1");
        assert_eq!(caller_address("10.0.0.1:443"), "10.0.0.1");
        assert_eq!(caller_address("[2001:db8::1]:443"), "2001:db8::1");
        assert_eq!(caller_address("[2001:DB8:0::1]"), "2001:db8::1");
        assert_eq!(caller_address("::ffff:192.0.2.7"), "192.0.2.7");
        for hostile in [
            "",
            "example.com",
            "10.0.0.1; DROP TABLE events",
            "10.0.0.1\u{0}",
            "\u{0}",
            "<script>",
            "10.0.0.256",
        ] {
            assert_eq!(caller_address(hostile), UNKNOWN_CALLER, "{hostile:?}");
        }
        assert_eq!(caller_address(&"1".repeat(2 << 20)), UNKNOWN_CALLER);
    }

    #[test]
    fn a_summary_stays_small_whatever_it_is_fed() {
        let now = Utc::now();
        let key = KeyId::from_uuid(uuid::Uuid::now_v7());
        let mut window = UsageWindow::new(AccountId::from_uuid(uuid::Uuid::now_v7()), now);
        let huge = "x".repeat(2 << 20);
        for n in 0..5_000u32 {
            let caller = format!("{huge}{n}");
            window.record(Some(&caller), Some(&caller), now);
            window.record(Some(&format!("R{n}")), Some(&format!("REASON_{n}")), now);
        }
        let summary = window.summary(key, now);
        let size = summary.payload().to_string().len();
        assert!(size < 64 * 1024, "{size} bytes");
        let UsageEvent::Recorded(summary) = summary;
        assert_eq!(summary.first_caller.as_deref(), Some(UNKNOWN_CALLER));
        assert_eq!(summary.denials, 10_000);
        assert!(summary.denials_by_reason.len() <= MAX_DISTINCT_REASONS + 1);
        assert!(summary.denials_by_reason["OTHER"] > 5_000);
    }
}
