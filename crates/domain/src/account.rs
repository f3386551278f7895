//! Accounts (tenants).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::DomainError;
use crate::domain_events;
use crate::ids::AccountId;

/// Longest account name.
pub const MAX_NAME_CHARS: usize = 100;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccountCreated {
    pub account_id: AccountId,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

domain_events!(
    /// Events of the `account-<id>` stream.
    AccountEvent {
        Created(AccountCreated) = "AccountCreated.v1",
    }
);

/// An account as folded from its stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Account {
    pub id: AccountId,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

impl Account {
    /// Decides the creation of an account.
    pub fn create(
        id: AccountId,
        name: &str,
        now: DateTime<Utc>,
    ) -> Result<AccountEvent, DomainError> {
        let name = name.trim();
        if name.is_empty()
            || name.chars().count() > MAX_NAME_CHARS
            || name.chars().any(char::is_control)
        {
            return Err(DomainError::invalid(
                "account name",
                format!("1 to {MAX_NAME_CHARS} printable characters"),
            ));
        }
        Ok(AccountEvent::Created(AccountCreated {
            account_id: id,
            name: name.to_string(),
            created_at: now,
        }))
    }

    /// Folds the stream; `None` if it holds no creation.
    pub fn fold<'a>(events: impl IntoIterator<Item = &'a AccountEvent>) -> Option<Self> {
        let mut account = None;
        for event in events {
            match event {
                AccountEvent::Created(e) => {
                    account = Some(Self {
                        id: e.account_id,
                        name: e.name.clone(),
                        created_at: e.created_at,
                    })
                }
            }
        }
        account
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_and_events_round_trip() {
        let id = AccountId::from_uuid(uuid::Uuid::now_v7());
        let now = Utc::now();
        assert!(Account::create(id, "  ", now).is_err());
        assert!(Account::create(id, &"x".repeat(101), now).is_err());
        let event = Account::create(id, " Acme ", now).unwrap();
        assert_eq!(event.event_type(), "AccountCreated.v1");
        let back = AccountEvent::decode(event.event_type(), &event.payload())
            .unwrap()
            .unwrap();
        assert_eq!(back, event);
        assert_eq!(Account::fold([&back]).unwrap().name, "Acme");
        assert_eq!(
            AccountEvent::decode("UserCreated.v1", &serde_json::json!({})).unwrap(),
            None
        );
    }
}
