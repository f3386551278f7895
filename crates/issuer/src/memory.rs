//! What the issuer answers from memory: the verifier's index (API keys in
//! their compact form, interned scope sets, the scope catalogue), fed from
//! the log by the same follower, so the SDK exchange reads no database.
//!
//! In a process that also verifies, issuer and verifier share one index.
//! It stays current as the verifier's does: the log's tail (`LISTEN` on
//! Postgres, the local writer's wake-up on SQLite, a poll behind both), and
//! a coalesced catch-up before refusing a key id or secret it has not seen,
//! so a key created or rotated a moment ago, here or on another issuer, is
//! found. This process's revocations and catalogue changes return once
//! the index has them (waiting up to half a second; past that, as another
//! process's would, within the tail's latency).

use std::sync::{Arc, RwLock};

use gatehouse_domain::ids::SessionId;
use gatehouse_domain::scope::Scopes;
use gatehouse_domain::session::Session;
use gatehouse_verifier::Follower;
use gatehouse_verifier::index::Index;

use crate::error::IssuerError;
use crate::service::Issuer;

/// The index and the follower that keeps it current.
#[derive(Clone)]
pub struct LogView {
    index: Arc<RwLock<Index>>,
    follower: Arc<Follower>,
}

impl LogView {
    pub fn new(index: Arc<RwLock<Index>>, follower: Arc<Follower>) -> Self {
        Self { index, follower }
    }

    /// Runs `read` on the index as it stands.
    pub(crate) fn read<T>(&self, read: impl FnOnce(&Index) -> T) -> Result<T, IssuerError> {
        let index = self
            .index
            .read()
            .map_err(|_| IssuerError::Internal("the issuer's index lock is poisoned".into()))?;
        Ok(read(&index))
    }

    /// Runs `write` on the index (this issuer's own appends, applied at once).
    pub(crate) fn write(&self, write: impl FnOnce(&mut Index)) -> Result<(), IssuerError> {
        let mut index = self
            .index
            .write()
            .map_err(|_| IssuerError::Internal("the issuer's index lock is poisoned".into()))?;
        write(&mut index);
        Ok(())
    }

    /// Brings the index up to the log's head once (coalesced and rate
    /// limited as the verifier's); whether it did.
    pub(crate) async fn catch_up(&self) -> bool {
        self.follower.catch_up().await
    }
}

impl Issuer {
    /// Resolves `grants` against the live catalogue, from the index when
    /// this issuer keeps one (it has this process's catalogue changes before
    /// they return, other issuers' within the tail's latency).
    pub(crate) async fn resolve_now(&self, grants: &Scopes) -> Result<Scopes, IssuerError> {
        match &self.view {
            Some(view) => view.read(|index| index.catalogue().resolve(grants)),
            None => self.resolve(grants).await,
        }
    }

    /// The head of session `id` as this issuer's index keeps it, as the
    /// domain's session (without spent hashes) and its stream version.
    pub(crate) fn session_head(&self, id: SessionId) -> Option<(Session, u64)> {
        let view = self.view.as_ref()?;
        view.read(|index| {
            index
                .session_head(&id)
                .map(|(head, grants)| (head.session(id, grants), head.version))
        })
        .ok()
        .flatten()
    }

    /// Keeps `session` as of `version` of its stream in the index, so its
    /// next refresh here is decided from memory. Best effort: without it,
    /// that refresh reads the stream.
    pub(crate) fn remember_session(&self, session: &Session, version: u64) {
        if let Some(view) = &self.view {
            let _ = view.write(|index| index.remember_session(session, version));
        }
    }

    /// Decides with `decide` on this issuer's index; when it finds nothing
    /// (`None`: an id or secret not seen yet), once more after one
    /// catch-up, and `Unavailable` if the catch-up failed. No database call
    /// but the catch-up's.
    pub(crate) async fn decide_in_memory<T>(
        &self,
        decide: impl Fn(&Index) -> Option<T>,
    ) -> Result<Option<T>, IssuerError> {
        let view = self.view.as_ref().ok_or_else(|| {
            IssuerError::Unavailable("this process keeps no index to answer from".into())
        })?;
        if let Some(found) = view.read(&decide)? {
            return Ok(Some(found));
        }
        // Not caught up (the log unreachable, or the tail too far behind):
        // the key may well exist, so this is no refusal of the credential.
        if !view.catch_up().await {
            return Err(IssuerError::Unavailable(
                "the issuer's index could not catch up with the event log".into(),
            ));
        }
        view.read(&decide)
    }
}
