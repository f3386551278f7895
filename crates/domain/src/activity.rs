//! The kinds of entry in the key activity log, named once: the projection
//! stores [`ActivityKind::as_str`], the APIs map it, filters parse it.

use crate::DomainError;
use crate::apikey::ApiKeyEvent;
use crate::catalogue::ScopeEvent;

/// What an activity entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ActivityKind {
    Created,
    Rotated,
    GraceExpired,
    Revoked,
    Expired,
    Deleted,
    /// A verifier's usage summary for one interval.
    Usage,
    /// Deployment-wide catalogue changes, shown in every account's log.
    ScopeDefined,
    ScopeDescribed,
    ScopeRetired,
}

impl ActivityKind {
    pub const ALL: [Self; 10] = [
        Self::Created,
        Self::Rotated,
        Self::GraceExpired,
        Self::Revoked,
        Self::Expired,
        Self::Deleted,
        Self::Usage,
        Self::ScopeDefined,
        Self::ScopeDescribed,
        Self::ScopeRetired,
    ];

    /// The stored and displayed name (snake_case).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Rotated => "rotated",
            Self::GraceExpired => "grace_expired",
            Self::Revoked => "revoked",
            Self::Expired => "expired",
            Self::Deleted => "deleted",
            Self::Usage => "usage",
            Self::ScopeDefined => "scope_defined",
            Self::ScopeDescribed => "scope_described",
            Self::ScopeRetired => "scope_retired",
        }
    }

    pub fn parse(name: &str) -> Result<Self, DomainError> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == name)
            .ok_or_else(|| {
                DomainError::invalid("activity kind", format!("{name:?} is not a known kind"))
            })
    }

    pub fn of_key_event(event: &ApiKeyEvent) -> Self {
        match event {
            ApiKeyEvent::Created(_) => Self::Created,
            ApiKeyEvent::Rotated(_) => Self::Rotated,
            ApiKeyEvent::GraceExpired(_) => Self::GraceExpired,
            ApiKeyEvent::Revoked(_) => Self::Revoked,
            ApiKeyEvent::Expired(_) => Self::Expired,
            ApiKeyEvent::Deleted(_) => Self::Deleted,
        }
    }

    pub fn of_scope_event(event: &ScopeEvent) -> Self {
        match event {
            ScopeEvent::Defined(_) => Self::ScopeDefined,
            ScopeEvent::Described(_) => Self::ScopeDescribed,
            ScopeEvent::Retired(_) => Self::ScopeRetired,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_ones_are_refused() {
        for kind in ActivityKind::ALL {
            assert_eq!(ActivityKind::parse(kind.as_str()), Ok(kind));
        }
        assert!(ActivityKind::parse("Created").is_err());
        assert!(ActivityKind::parse("").is_err());
    }
}
