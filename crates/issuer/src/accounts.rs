//! Accounts and their users: creation, and the username claim that makes an
//! address unique.

use chrono::{DateTime, Utc};
use gatehouse_domain::account::Account;
use gatehouse_domain::catalogue::Grant;
use gatehouse_domain::email::Email;
use gatehouse_domain::ids::{AccountId, UserId};
use gatehouse_domain::password::check_new_password;
use gatehouse_domain::scope::{self, Scopes};
use gatehouse_domain::user::{
    User, UserCreated, UserEvent, UsernameClaimed, UsernameEvent, username_stream,
};
use gatehouse_eventstore::{ExpectedVersion, NewEvent, StreamId};
use uuid::Uuid;

use crate::decide::{Step, decide_and_append};
use crate::error::IssuerError;
use crate::service::{CallContext, Issuer, Principal, event, stream};

/// What a new user is made of.
pub(crate) struct NewUser<'a> {
    pub account_id: AccountId,
    pub username: &'a str,
    pub password: String,
    pub scopes: Scopes,
}

impl Issuer {
    /// Creates an account, and its owner if one is given (username and
    /// password together, or neither). Needs `platform:admin`.
    pub async fn create_account(
        &self,
        principal: &Principal,
        name: &str,
        owner_username: Option<&str>,
        owner_password: Option<String>,
        ctx: &CallContext,
    ) -> Result<(Account, Option<User>), IssuerError> {
        principal.require_anywhere(scope::PLATFORM_ADMIN)?;
        let owner = match (owner_username, owner_password) {
            (Some(username), Some(password)) => Some((username, password)),
            (None, None) => None,
            _ => {
                return Err(IssuerError::InvalidArgument(
                    "owner_username and owner_password go together".into(),
                ));
            }
        };
        let now = self.now();
        let account_id = AccountId::from_uuid(Uuid::now_v7());
        let created = Account::create(account_id, name, now)?;
        let actor = Some(principal.subject.clone());
        let mut batches = vec![(
            stream(account_id.stream())?,
            ExpectedVersion::NoStream,
            vec![event(parts!(created), ctx, actor.clone())],
        )];
        let mut owner_user = None;
        if let Some((username, password)) = owner {
            // Owners hold everything in their account, resolved when checked.
            let scopes = Scopes::parse(&[scope::ALL])?;
            let (user, user_batches) = self
                .new_user(
                    NewUser {
                        account_id,
                        username,
                        password,
                        scopes,
                    },
                    ctx,
                    actor.clone(),
                    now,
                )
                .await?;
            batches.extend(user_batches);
            owner_user = Some(user);
        }
        self.append_new(batches).await?;
        let account = Account::fold([&created])
            .ok_or_else(|| IssuerError::Internal("account fold".into()))?;
        Ok((account, owner_user))
    }

    /// A new user's events (the user, and the claim on its username),
    /// not yet appended: the caller appends them with its own.
    pub(crate) async fn new_user(
        &self,
        new: NewUser<'_>,
        ctx: &CallContext,
        actor: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<(User, Vec<(StreamId, ExpectedVersion, Vec<NewEvent>)>), IssuerError> {
        let NewUser {
            account_id,
            username,
            password,
            scopes,
        } = new;
        let email = Email::parse(username)?;
        check_new_password(&password, &[email.as_str()])?;
        let password_hash = self.hasher.hash(password).await?;
        let user_id = UserId::from_uuid(Uuid::now_v7());
        let created = UserEvent::Created(UserCreated {
            user_id,
            account_id,
            username: email.clone(),
            password_hash,
            scopes,
            created_at: now,
        });
        let claimed = UsernameEvent::Claimed(UsernameClaimed { user_id });
        let user =
            User::fold([&created]).ok_or_else(|| IssuerError::Internal("user fold".into()))?;
        Ok((
            user,
            vec![
                (
                    stream(user_id.stream())?,
                    ExpectedVersion::NoStream,
                    vec![event(parts!(created), ctx, actor.clone())],
                ),
                (
                    stream(username_stream(&email))?,
                    ExpectedVersion::NoStream,
                    vec![event(parts!(claimed), ctx, actor)],
                ),
            ],
        ))
    }

    /// Creates a user in `account_id`. Needs `users:write` there; the grants
    /// follow the grant rule.
    pub async fn create_user(
        &self,
        principal: &Principal,
        account_id: AccountId,
        username: &str,
        password: String,
        scopes: Scopes,
        ctx: &CallContext,
    ) -> Result<User, IssuerError> {
        principal.require(scope::USERS_WRITE, account_id)?;
        let (catalogue, _) = self.catalogue().await?;
        catalogue.check_grant(&principal.grants, &scopes, Grant::New)?;
        if !self.account_exists(account_id).await? {
            return Err(IssuerError::NotFound("account"));
        }
        let (user, batches) = self
            .new_user(
                NewUser {
                    account_id,
                    username,
                    password,
                    scopes,
                },
                ctx,
                Some(principal.subject.clone()),
                self.now(),
            )
            .await?;
        self.append_new(batches).await?;
        Ok(user)
    }

    /// Whether any username these batches claim is claimed already.
    pub(crate) async fn claims_taken(
        &self,
        batches: &[(StreamId, ExpectedVersion, Vec<NewEvent>)],
    ) -> Result<bool, IssuerError> {
        for (stream, _, _) in batches {
            if stream.as_str().starts_with("username-")
                && self.store.stream_version(stream).await? > 0
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Appends a new account's or user's streams through the one
    /// decide-and-append path: each attempt first reads the username claims
    /// they make, so a taken address is `ALREADY_EXISTS` — decided, or
    /// found again after a lost race — never a bare conflict.
    async fn append_new(
        &self,
        batches: Vec<(StreamId, ExpectedVersion, Vec<NewEvent>)>,
    ) -> Result<(), IssuerError> {
        let batches = &batches;
        decide_and_append(&self.store, || async move {
            if self.claims_taken(batches).await? {
                return Err(IssuerError::AlreadyExists("a user with this username"));
            }
            Ok(Step::Append(batches.clone(), ()))
        })
        .await?;
        Ok(())
    }
}
