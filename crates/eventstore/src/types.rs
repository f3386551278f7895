//! The values the event store takes and returns.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::StoreError;

/// Largest serialized payload one event may carry. Events describe credential
/// lifecycle changes; anything near this size is a bug or an attack.
pub const MAX_PAYLOAD_BYTES: usize = 1024 * 1024;
/// Longest stream id accepted (`apikey-<uuid>` is 43 characters).
pub const MAX_STREAM_ID_LEN: usize = 200;
/// Most events one append may carry.
pub const MAX_EVENTS_PER_APPEND: usize = 1000;

/// Position of an event in the global log. The first event has position 1, so
/// a checkpoint of 0 means "nothing processed yet".
pub type Position = u64;

/// Identifies one stream, e.g. `apikey-0193…`. Parsed at the edge: non-empty,
/// at most [`MAX_STREAM_ID_LEN`] characters of `[A-Za-z0-9_.:-]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct StreamId(String);

impl StreamId {
    /// Validates a stream id.
    pub fn parse(raw: impl Into<String>) -> Result<Self, StoreError> {
        let raw = raw.into();
        let valid = !raw.is_empty()
            && raw.len() <= MAX_STREAM_ID_LEN
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'));
        if valid {
            Ok(Self(raw))
        } else {
            Err(StoreError::InvalidStreamId { len: raw.len() })
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for StreamId {
    type Error = StoreError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(value)
    }
}

impl From<StreamId> for String {
    fn from(id: StreamId) -> Self {
        id.0
    }
}

impl std::fmt::Display for StreamId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What the writer believes the stream's version is. The append fails with
/// [`StoreError::WrongExpectedVersion`] when the belief is wrong, so two writers
/// that decided on the same state cannot both win.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedVersion {
    /// No check (e.g. a usage summary that depends on no prior state).
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream's last event has exactly this version (first event = 1).
    Exact(u64),
}

impl ExpectedVersion {
    fn matches(self, actual: u64) -> bool {
        match self {
            Self::Any => true,
            Self::NoStream => actual == 0,
            Self::Exact(v) => actual == v,
        }
    }

    /// Checks `actual` (0 = no stream) against this expectation.
    pub(crate) fn check(self, stream: &StreamId, actual: u64) -> Result<(), StoreError> {
        if self.matches(actual) {
            Ok(())
        } else {
            Err(StoreError::WrongExpectedVersion {
                stream: stream.to_string(),
                expected: self,
                actual,
            })
        }
    }
}

impl std::fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Any => f.write_str("any"),
            Self::NoStream => f.write_str("no stream"),
            Self::Exact(v) => write!(f, "{v}"),
        }
    }
}

/// Who caused an event and from where; stored beside every event so auditors
/// can answer "who did this" without joining anything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    /// A user id, key id, or `system` for the scheduler.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_address: Option<String>,
    /// The event or command that caused this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<String>,
}

/// An event to append. `event_type` is a versioned name such as
/// `ApiKeyCreated.v1`; `occurred_at` comes from the caller's clock so decisions
/// stay testable.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub event_type: String,
    pub payload: serde_json::Value,
    pub metadata: Metadata,
    pub occurred_at: DateTime<Utc>,
}

impl NewEvent {
    /// An event with empty metadata, stamped now.
    pub fn new(event_type: impl Into<String>, payload: serde_json::Value) -> Self {
        Self {
            event_type: event_type.into(),
            payload,
            metadata: Metadata::default(),
            occurred_at: Utc::now(),
        }
    }

    /// Replaces the metadata.
    pub fn with_metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = metadata;
        self
    }
}

/// An event as stored, with its place in the stream and in the global log.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedEvent {
    pub position: Position,
    pub stream_id: StreamId,
    pub stream_version: u64,
    pub event_type: String,
    pub payload: serde_json::Value,
    pub metadata: Metadata,
    pub occurred_at: DateTime<Utc>,
}

/// Events checked and serialized before any database work, so a bad append
/// fails without touching the store.
pub(crate) struct ValidatedEvent {
    pub event_type: String,
    pub payload: String,
    pub metadata: String,
    pub occurred_at: DateTime<Utc>,
}

/// Checks every event of an append; the whole batch is refused if one is bad.
pub(crate) fn validate(events: Vec<NewEvent>) -> Result<Vec<ValidatedEvent>, StoreError> {
    if events.is_empty() {
        return Err(StoreError::EmptyAppend);
    }
    if events.len() > MAX_EVENTS_PER_APPEND {
        return Err(StoreError::TooManyEvents {
            count: events.len(),
            limit: MAX_EVENTS_PER_APPEND,
        });
    }
    events
        .into_iter()
        .map(|event| {
            let type_ok = !event.event_type.is_empty()
                && event.event_type.len() <= 100
                && event
                    .event_type
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_');
            if !type_ok {
                return Err(StoreError::InvalidEventType);
            }
            let payload = serde_json::to_string(&event.payload).map_err(StoreError::Serialize)?;
            if payload.len() > MAX_PAYLOAD_BYTES {
                return Err(StoreError::PayloadTooLarge {
                    size: payload.len(),
                    limit: MAX_PAYLOAD_BYTES,
                });
            }
            let metadata = serde_json::to_string(&event.metadata).map_err(StoreError::Serialize)?;
            Ok(ValidatedEvent {
                event_type: event.event_type,
                payload,
                metadata,
                occurred_at: event.occurred_at,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_are_parsed_at_the_edge() {
        assert!(StreamId::parse("apikey-0193a1b2-7c3d-7e4f-8a9b-0c1d2e3f4a5b").is_ok());
        assert!(StreamId::parse("signingkey-k1:v2").is_ok());
        for bad in ["", " ", "a b", "emoji-🔑", "semi;colon", &"x".repeat(201)] {
            assert!(
                matches!(
                    StreamId::parse(bad),
                    Err(StoreError::InvalidStreamId { .. })
                ),
                "{bad:?} should be refused"
            );
        }
    }

    #[test]
    fn expected_versions_match_only_their_state() {
        let s = StreamId::parse("s-1").unwrap();
        assert!(ExpectedVersion::Any.check(&s, 7).is_ok());
        assert!(ExpectedVersion::NoStream.check(&s, 0).is_ok());
        assert!(ExpectedVersion::NoStream.check(&s, 1).is_err());
        assert!(ExpectedVersion::Exact(3).check(&s, 3).is_ok());
        assert!(matches!(
            ExpectedVersion::Exact(3).check(&s, 4),
            Err(StoreError::WrongExpectedVersion { actual: 4, .. })
        ));
    }

    #[test]
    fn a_batch_with_one_bad_event_is_refused_whole() {
        let ok = NewEvent::new("Thing.v1", serde_json::json!({"a": 1}));
        let huge = NewEvent::new(
            "Thing.v1",
            serde_json::json!({"blob": "x".repeat(MAX_PAYLOAD_BYTES)}),
        );
        assert!(matches!(
            validate(vec![ok.clone(), huge]),
            Err(StoreError::PayloadTooLarge { .. })
        ));
        assert!(matches!(validate(vec![]), Err(StoreError::EmptyAppend)));
        let bad_type = NewEvent::new("no spaces allowed", serde_json::json!({}));
        assert!(matches!(
            validate(vec![ok, bad_type]),
            Err(StoreError::InvalidEventType)
        ));
    }
}
