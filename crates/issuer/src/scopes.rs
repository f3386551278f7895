//! The scope catalogue's commands: define, list, retire, import. Changes need
//! `platform:admin`; listing needs only a valid credential (the key-creation
//! picker shows it to whoever creates keys).

use gatehouse_domain::catalogue::{self, Catalogue, CatalogueError, Definition, ScopeEvent};
use gatehouse_domain::scope::{self, Scope};
use gatehouse_eventstore::{ExpectedVersion, Metadata, NewEvent, StreamId};

use crate::decide::{Step, decide_and_append};
use crate::error::IssuerError;
use crate::service::{CallContext, Issuer, Principal};

/// One entry of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeView {
    pub name: String,
    pub description: String,
    pub retired: bool,
    pub built_in: bool,
}

/// What an import changed, by scope name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Imported {
    pub defined: Vec<String>,
    pub described: Vec<String>,
    pub retired: Vec<String>,
}

impl Imported {
    fn of(events: &[ScopeEvent]) -> Self {
        let mut imported = Self::default();
        for event in events {
            let name = event.name().to_string();
            match event {
                ScopeEvent::Defined(_) => imported.defined.push(name),
                ScopeEvent::Described(_) => imported.described.push(name),
                ScopeEvent::Retired(_) => imported.retired.push(name),
            }
        }
        imported
    }
}

fn view(catalogue: &Catalogue, name: &Scope) -> Option<ScopeView> {
    catalogue
        .entries()
        .find(|(n, _)| *n == name)
        .map(|(n, e)| ScopeView {
            name: n.to_string(),
            description: e.description.clone(),
            retired: e.retired,
            built_in: false,
        })
}

impl Issuer {
    /// Decides a catalogue change against the current catalogue and appends
    /// it with the stream's version; a concurrent change makes it decide again.
    async fn change_catalogue<T>(
        &self,
        principal: &Principal,
        ctx: &CallContext,
        decide: impl Fn(&Catalogue) -> Result<(Vec<ScopeEvent>, T), CatalogueError>,
    ) -> Result<(Catalogue, T), IssuerError> {
        principal.require_anywhere(scope::PLATFORM_ADMIN)?;
        let stream = &StreamId::parse(catalogue::STREAM)?;
        let decide = &decide;
        let (answer, written) = decide_and_append(self.store(), || async move {
            let (mut catalogue, version) = self.catalogue().await?;
            let (events, outcome) = decide(&catalogue)?;
            if events.is_empty() {
                return Ok(Step::Done((catalogue, outcome)));
            }
            let metadata = Metadata {
                actor: Some(principal.subject.clone()),
                request_id: ctx.request_id.clone(),
                client_address: ctx.client_address.clone(),
                causation_id: None,
            };
            let batch = events
                .iter()
                .map(|e| NewEvent::new(e.event_type(), e.payload()).with_metadata(metadata.clone()))
                .collect();
            events.iter().for_each(|e| catalogue.apply(e));
            Ok(Step::Append(
                vec![(stream.clone(), ExpectedVersion::Exact(version), batch)],
                (catalogue, outcome),
            ))
        })
        .await?;
        // A retired scope is granted by this process's next exchange and
        // verification no more once the call returns.
        crate::decide::applied_here(self.store(), &written).await;
        Ok(answer)
    }

    /// Defines a scope, brings back a retired one, or changes its
    /// description; returns it and whether anything was written.
    pub async fn define_scope(
        &self,
        principal: &Principal,
        name: &str,
        description: &str,
        ctx: &CallContext,
    ) -> Result<(ScopeView, bool), IssuerError> {
        let now = self.now();
        let (catalogue, (scope, changed)) = self
            .change_catalogue(principal, ctx, |catalogue| {
                let event = catalogue.define(name, description, now)?;
                let scope = Scope::parse_concrete(name)?;
                let changed = event.is_some();
                Ok((event.into_iter().collect(), (scope, changed)))
            })
            .await?;
        let view = view(&catalogue, &scope)
            .ok_or_else(|| IssuerError::Internal("defined scope missing".into()))?;
        Ok((view, changed))
    }

    /// Retires a scope: nobody holds it from now on.
    pub async fn retire_scope(
        &self,
        principal: &Principal,
        name: &str,
        ctx: &CallContext,
    ) -> Result<ScopeView, IssuerError> {
        let now = self.now();
        let (catalogue, scope) = self
            .change_catalogue(principal, ctx, |catalogue| {
                let event = catalogue.retire(name, now)?;
                let scope = event.name().clone();
                Ok((vec![event], scope))
            })
            .await?;
        view(&catalogue, &scope)
            .ok_or_else(|| IssuerError::Internal("retired scope missing".into()))
    }

    /// Makes the catalogue hold `definitions` (with `prune`, retiring what
    /// they do not name), in one append.
    pub async fn import_scopes(
        &self,
        principal: &Principal,
        definitions: &[Definition],
        prune: bool,
        ctx: &CallContext,
    ) -> Result<Imported, IssuerError> {
        let now = self.now();
        let (_, imported) = self
            .change_catalogue(principal, ctx, |catalogue| {
                let events = catalogue.import(definitions, prune, now)?;
                let imported = Imported::of(&events);
                Ok((events, imported))
            })
            .await?;
        Ok(imported)
    }

    /// The built-in scopes, then the catalogue (retired entries included).
    /// Any authenticated caller may list it.
    pub async fn list_scopes(&self, _principal: &Principal) -> Result<Vec<ScopeView>, IssuerError> {
        let (catalogue, _) = self.catalogue().await?;
        let built_in = scope::BUILT_IN_DESCRIPTIONS
            .iter()
            .map(|(name, description)| ScopeView {
                name: (*name).to_string(),
                description: (*description).to_string(),
                retired: false,
                built_in: true,
            });
        let defined = catalogue.entries().map(|(name, entry)| ScopeView {
            name: name.to_string(),
            description: entry.description.clone(),
            retired: entry.retired,
            built_in: false,
        });
        Ok(built_in.chain(defined).collect())
    }
}
