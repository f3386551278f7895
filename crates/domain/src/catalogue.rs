//! The scope catalogue: the product's own scopes (WorkClaw's `claws:read` …),
//! deployment-wide, event-sourced on the one `scopes` stream — and the one
//! rule that decides who may grant what.
//!
//! A scope *exists* if it is built in or defined in the catalogue; it is
//! *live* if it exists and is not retired. Only live scopes are held by
//! anyone: [`Catalogue::holds`] resolves grants (`*`, `resource:*`, concrete)
//! against the live set at check time, and [`Catalogue::check_grant`] is the
//! single grant rule that key creation, rotation, revocation, deletion and user
//! creation all call.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::DomainError;
use crate::domain_events;
use crate::scope::{self, Scope, Scopes, covers, covers_grant, is_built_in};

/// The stream holding every catalogue event.
pub const STREAM: &str = "scopes";
/// Longest description.
pub const MAX_DESCRIPTION_CHARS: usize = 500;
/// Most scopes the catalogue holds, retired ones included. A `*` token
/// carries every live scope (and the five built-ins) in its `scope` claim,
/// and a token must fit an 8 KiB header (the verifier's limit, and most
/// proxies'): 69 names of at most 65 characters are ≈ 4.5 KB, ≈ 6 KB once
/// base64-encoded, leaving room for the other claims and the signature.
pub const MAX_SCOPES: usize = 64;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScopeDefined {
    pub name: Scope,
    pub description: String,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScopeDescribed {
    pub name: Scope,
    pub description: String,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScopeRetired {
    pub name: Scope,
    pub at: DateTime<Utc>,
}

domain_events!(
    /// Events of the `scopes` stream. Defining a retired scope again brings it
    /// back (`ScopeDefined.v1`).
    ScopeEvent {
        Defined(ScopeDefined) = "ScopeDefined.v1",
        Described(ScopeDescribed) = "ScopeDescribed.v1",
        Retired(ScopeRetired) = "ScopeRetired.v1",
    }
);

impl ScopeEvent {
    /// The scope the event is about.
    pub fn name(&self) -> &Scope {
        match self {
            Self::Defined(e) => &e.name,
            Self::Described(e) => &e.name,
            Self::Retired(e) => &e.name,
        }
    }
}

/// One catalogue entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub description: String,
    pub retired: bool,
}

/// Whether a scope can be held, as of the catalogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Gatehouse's own (`keys:read` …, `platform:admin`): always live.
    BuiltIn,
    Live,
    Retired,
    Unknown,
}

/// Why a catalogue command is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogueError {
    #[error(transparent)]
    Invalid(#[from] DomainError),
    #[error("{0} is built in and cannot be defined or retired")]
    BuiltIn(String),
    #[error("scope {0} is not in the catalogue")]
    NotFound(String),
    #[error("scope {0} is already retired")]
    AlreadyRetired(String),
    #[error("the catalogue holds at most {MAX_SCOPES} scopes")]
    Full,
}

/// Why a grant is refused, naming every scope at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    /// INVALID_ARGUMENT, reason `SCOPE_UNKNOWN`.
    #[error("unknown scope{}: {} (define it in the catalogue first)", plural(.0), .0.join(", "))]
    Unknown(Vec<String>),
    /// INVALID_ARGUMENT, reason `SCOPE_RETIRED`.
    #[error("retired scope{}: {} (retired scopes grant nothing)", plural(.0), .0.join(", "))]
    Retired(Vec<String>),
    /// PERMISSION_DENIED, reason `CANNOT_GRANT`.
    #[error("the credential cannot grant {} it does not hold: {}", if .0.len() == 1 { "a scope" } else { "scopes" }, .0.join(", "))]
    CannotGrant(Vec<String>),
}

fn plural(items: &[String]) -> &'static str {
    if items.len() == 1 { "" } else { "s" }
}

/// What a grant check is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// New grants (create key, create user): each must exist and be live,
    /// and the grantor must be able to give it.
    New,
    /// A key's existing grants (rotate, revoke, delete): the grantor must be
    /// able to give every one of them, retired ones included. Grants are
    /// stored as written and resolved at check time, so a retired scope
    /// granted nothing today but comes back to every key holding it when it
    /// is defined again; skipping it would let a narrower caller take over
    /// (rotate and read the new secret of) a key that is wider once it
    /// returns.
    Existing,
}

/// The catalogue as folded from the `scopes` stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalogue {
    entries: BTreeMap<Scope, Entry>,
}

/// One line of an import: a scope the catalogue must hold.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Definition {
    pub name: String,
    pub description: String,
}

fn check_description(text: &str) -> Result<String, DomainError> {
    let text = text.trim();
    if text.is_empty()
        || text.chars().count() > MAX_DESCRIPTION_CHARS
        || text.chars().any(char::is_control)
    {
        return Err(DomainError::invalid(
            "description",
            format!("1 to {MAX_DESCRIPTION_CHARS} printable characters"),
        ));
    }
    Ok(text.to_string())
}

impl Catalogue {
    pub fn fold<'a>(events: impl IntoIterator<Item = &'a ScopeEvent>) -> Self {
        let mut catalogue = Self::default();
        for event in events {
            catalogue.apply(event);
        }
        catalogue
    }

    /// Folds one event in (verifiers keep the catalogue this way).
    pub fn apply(&mut self, event: &ScopeEvent) {
        match event {
            ScopeEvent::Defined(e) => {
                self.entries.insert(
                    e.name.clone(),
                    Entry {
                        description: e.description.clone(),
                        retired: false,
                    },
                );
            }
            ScopeEvent::Described(e) => {
                if let Some(entry) = self.entries.get_mut(&e.name) {
                    entry.description = e.description.clone();
                }
            }
            ScopeEvent::Retired(e) => {
                if let Some(entry) = self.entries.get_mut(&e.name) {
                    entry.retired = true;
                }
            }
        }
    }

    /// Every catalogue entry, by name (built-ins are not entries).
    pub fn entries(&self) -> impl Iterator<Item = (&Scope, &Entry)> {
        self.entries.iter()
    }

    pub fn standing(&self, name: &str) -> Standing {
        if is_built_in(name) {
            return Standing::BuiltIn;
        }
        match self.entries.get(name) {
            Some(entry) if entry.retired => Standing::Retired,
            Some(_) => Standing::Live,
            None => Standing::Unknown,
        }
    }

    fn is_live(&self, name: &str) -> bool {
        matches!(self.standing(name), Standing::BuiltIn | Standing::Live)
    }

    /// Every live concrete scope: the built-ins, then the catalogue's.
    fn live(&self) -> impl Iterator<Item = &str> {
        scope::BUILT_IN
            .iter()
            .copied()
            .chain(std::iter::once(scope::PLATFORM_ADMIN))
            .chain(
                self.entries
                    .iter()
                    .filter(|(_, e)| !e.retired)
                    .map(|(s, _)| s.as_str()),
            )
    }

    /// Whether `grants` hold the concrete scope `required` now: it is live,
    /// and a grant reaches it.
    pub fn holds(&self, grants: &Scopes, required: &str) -> bool {
        self.is_live(required) && covers(grants, required)
    }

    /// Whether [`Catalogue::resolve`] would change `grants`: a wildcard, or a
    /// grant that is not live. Most keys and every fresh token need nothing.
    pub fn needs_resolving(&self, grants: &Scopes) -> bool {
        grants.iter().any(|g| g.ends_with('*') || !self.is_live(g))
    }

    /// The concrete scopes `grants` hold now — what a token's `scope` claim
    /// carries, so a consumer checking JWTs itself needs no wildcard logic.
    pub fn resolve(&self, grants: &Scopes) -> Scopes {
        if !grants.iter().any(|g| g.ends_with('*')) {
            // No wildcard: only the live ones of the grants themselves.
            return grants
                .scopes()
                .filter(|s| self.is_live(s.as_str()))
                .cloned()
                .collect();
        }
        self.live()
            .filter(|s| covers(grants, s))
            .filter_map(|s| Scope::parse(s).ok())
            .collect()
    }

    /// The grants in `grants` that are retired scopes (shown as such on keys).
    pub fn retired_among(&self, grants: &Scopes) -> Vec<String> {
        grants
            .iter()
            .filter(|s| self.standing(s) == Standing::Retired)
            .map(str::to_string)
            .collect()
    }

    /// The grant rule, the one place it is decided: may a holder of `grantor`
    /// give `grants`? New grants must exist (a wildcard must reach at least
    /// one live scope) and be live; every grant, and for an existing key's
    /// grants every retired one too, must be within the grantor's reach (`resource:*` needs `resource:*` or
    /// `*`; `*` needs `*`; `platform:admin` needs itself). Unknown scopes are
    /// reported first, then retired ones, then the ones the grantor lacks.
    pub fn check_grant(
        &self,
        grantor: &Scopes,
        grants: &Scopes,
        purpose: Grant,
    ) -> Result<(), GrantError> {
        let mut unknown = Vec::new();
        let mut retired = Vec::new();
        let mut lacking = Vec::new();
        for grant in grants.scopes() {
            let standing = self.grant_standing(grant);
            match (standing, purpose) {
                (Standing::Unknown, Grant::New) => unknown.push(grant.to_string()),
                (Standing::Retired, Grant::New) => retired.push(grant.to_string()),
                (Standing::BuiltIn | Standing::Live, _)
                | (Standing::Unknown | Standing::Retired, Grant::Existing) => {
                    if !covers_grant(grantor, grant) {
                        lacking.push(grant.to_string());
                    }
                }
            }
        }
        if !unknown.is_empty() {
            Err(GrantError::Unknown(unknown))
        } else if !retired.is_empty() {
            Err(GrantError::Retired(retired))
        } else if !lacking.is_empty() {
            Err(GrantError::CannotGrant(lacking))
        } else {
            Ok(())
        }
    }

    /// A wildcard stands as well as the best scope it reaches.
    fn grant_standing(&self, grant: &Scope) -> Standing {
        if grant.as_str() == scope::ALL {
            return Standing::Live;
        }
        if !grant.is_wildcard() {
            return self.standing(grant.as_str());
        }
        let resource = grant.resource();
        let mut best = Standing::Unknown;
        let reachable = scope::BUILT_IN
            .iter()
            .map(|s| (*s, false))
            .chain(self.entries.iter().map(|(s, e)| (s.as_str(), e.retired)));
        for (name, is_retired) in reachable {
            if name.split_once(':').map(|(r, _)| r) == Some(resource) {
                if !is_retired {
                    return Standing::Live;
                }
                best = Standing::Retired;
            }
        }
        best
    }

    /// Decides defining `name` (or bringing it back, or changing its
    /// description). Nothing to write if it already stands as asked.
    pub fn define(
        &self,
        name: &str,
        description: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<ScopeEvent>, CatalogueError> {
        let name = Scope::parse_concrete(name)?;
        if is_built_in(name.as_str()) || name.resource() == "platform" {
            return Err(CatalogueError::BuiltIn(name.to_string()));
        }
        let description = check_description(description)?;
        Ok(match self.entries.get(&name) {
            None if self.entries.len() >= MAX_SCOPES => return Err(CatalogueError::Full),
            None => Some(ScopeEvent::Defined(ScopeDefined {
                name,
                description,
                at: now,
            })),
            Some(entry) if entry.retired => Some(ScopeEvent::Defined(ScopeDefined {
                name,
                description,
                at: now,
            })),
            Some(entry) if entry.description != description => {
                Some(ScopeEvent::Described(ScopeDescribed {
                    name,
                    description,
                    at: now,
                }))
            }
            Some(_) => None,
        })
    }

    /// Decides retiring `name`.
    pub fn retire(&self, name: &str, now: DateTime<Utc>) -> Result<ScopeEvent, CatalogueError> {
        if is_built_in(name) {
            return Err(CatalogueError::BuiltIn(name.to_string()));
        }
        let scope = Scope::parse_concrete(name)?;
        match self.entries.get(&scope) {
            None => Err(CatalogueError::NotFound(name.to_string())),
            Some(entry) if entry.retired => Err(CatalogueError::AlreadyRetired(name.to_string())),
            Some(_) => Ok(ScopeEvent::Retired(ScopeRetired {
                name: scope,
                at: now,
            })),
        }
    }

    /// Decides an import: the catalogue comes to hold every definition (new
    /// ones defined, retired ones brought back, changed descriptions
    /// updated); with `prune`, live scopes the file does not name are
    /// retired. A second import of the same file decides nothing.
    pub fn import(
        &self,
        definitions: &[Definition],
        prune: bool,
        now: DateTime<Utc>,
    ) -> Result<Vec<ScopeEvent>, CatalogueError> {
        let mut next = self.clone();
        let mut events = Vec::new();
        let mut named = std::collections::BTreeSet::new();
        for definition in definitions {
            if !named.insert(definition.name.as_str()) {
                return Err(DomainError::invalid(
                    "scopes",
                    format!("{} is named twice", definition.name),
                )
                .into());
            }
            if let Some(event) = next.define(&definition.name, &definition.description, now)? {
                next.apply(&event);
                events.push(event);
            }
        }
        if prune {
            for (name, entry) in &self.entries {
                if !entry.retired && !named.contains(name.as_str()) {
                    events.push(ScopeEvent::Retired(ScopeRetired {
                        name: name.clone(),
                        at: now,
                    }));
                }
            }
        }
        Ok(events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scopes(raw: &[&str]) -> Scopes {
        Scopes::parse(raw).unwrap()
    }

    /// Given a catalogue holding these definitions, with these retired.
    fn given(defined: &[&str], retired: &[&str]) -> Catalogue {
        let now = Utc::now();
        let mut events = Vec::new();
        let mut catalogue = Catalogue::default();
        for name in defined {
            let event = catalogue.define(name, "d", now).unwrap().unwrap();
            catalogue.apply(&event);
            events.push(event);
        }
        for name in retired {
            let event = catalogue.retire(name, now).unwrap();
            catalogue.apply(&event);
            events.push(event);
        }
        assert_eq!(Catalogue::fold(&events), catalogue);
        catalogue
    }

    fn workclaw() -> Catalogue {
        given(
            &[
                "claws:read",
                "claws:write",
                "deployments:read",
                "deployments:write",
                "team:read",
                "team:write",
                "legacy:read",
            ],
            &["legacy:read"],
        )
    }

    #[test]
    fn an_owner_holding_all_may_grant_any_live_scope_but_not_platform_admin() {
        let catalogue = workclaw();
        let owner = scopes(&["*"]);
        // When granting concrete, wildcard and built-in scopes.
        let wanted = scopes(&["claws:read", "deployments:*", "keys:read", "*"]);
        assert_eq!(catalogue.check_grant(&owner, &wanted, Grant::New), Ok(()));
        // Then platform:admin is never reached by `*`.
        assert_eq!(
            catalogue.check_grant(&owner, &scopes(&["platform:admin"]), Grant::New),
            Err(GrantError::CannotGrant(vec!["platform:admin".into()]))
        );
    }

    #[test]
    fn unknown_then_retired_then_lacking_scopes_are_named() {
        let catalogue = workclaw();
        let narrow = scopes(&["claws:read", "keys:write"]);
        // Given a request mixing every fault, the unknown ones are reported first.
        let wanted = scopes(&[
            "claws:read",
            "nope:read",
            "zzz:*",
            "legacy:read",
            "team:write",
        ]);
        assert_eq!(
            catalogue.check_grant(&narrow, &wanted, Grant::New),
            Err(GrantError::Unknown(vec![
                "nope:read".into(),
                "zzz:*".into()
            ]))
        );
        let wanted = scopes(&["claws:read", "legacy:read", "legacy:*", "team:write"]);
        assert_eq!(
            catalogue.check_grant(&narrow, &wanted, Grant::New),
            Err(GrantError::Retired(vec![
                "legacy:*".into(),
                "legacy:read".into()
            ]))
        );
        let wanted = scopes(&["claws:read", "claws:write", "team:write"]);
        let error = catalogue
            .check_grant(&narrow, &wanted, Grant::New)
            .unwrap_err();
        assert_eq!(
            error,
            GrantError::CannotGrant(vec!["claws:write".into(), "team:write".into()])
        );
        assert!(error.to_string().contains("claws:write, team:write"));
    }

    #[test]
    fn a_wildcard_is_granted_only_by_that_wildcard_or_all() {
        let catalogue = workclaw();
        let both = scopes(&["claws:read", "claws:write"]);
        assert_eq!(
            catalogue.check_grant(&both, &scopes(&["claws:*"]), Grant::New),
            Err(GrantError::CannotGrant(vec!["claws:*".into()]))
        );
        let claws = scopes(&["claws:*"]);
        assert_eq!(
            catalogue.check_grant(&claws, &scopes(&["claws:*", "claws:write"]), Grant::New),
            Ok(())
        );
        assert_eq!(
            catalogue.check_grant(&claws, &scopes(&["*"]), Grant::New),
            Err(GrantError::CannotGrant(vec!["*".into()]))
        );
        // Built-in resources have wildcards too; platform has none.
        assert_eq!(
            catalogue.check_grant(&scopes(&["*"]), &scopes(&["keys:*"]), Grant::New),
            Ok(())
        );
        assert_eq!(
            catalogue.check_grant(&scopes(&["*"]), &scopes(&["platform:*"]), Grant::New),
            Err(GrantError::Unknown(vec!["platform:*".into()]))
        );
    }

    #[test]
    fn existing_grants_need_covering_only_where_they_still_grant() {
        let catalogue = workclaw();
        // Given a key holding a scope that is retired now and a live one.
        let mut catalogue = catalogue;
        let retired = catalogue.retire("claws:write", Utc::now()).unwrap();
        catalogue.apply(&retired);
        let key = scopes(&["claws:write", "claws:read"]);
        // Then a holder of the live one alone may not act on it: the retired
        // grant comes back to the key if the scope is defined again.
        assert_eq!(
            catalogue.check_grant(&scopes(&["claws:read"]), &key, Grant::Existing),
            Err(GrantError::CannotGrant(vec!["claws:write".into()]))
        );
        // A holder of both, or of the resource's wildcard, may.
        assert_eq!(
            catalogue.check_grant(
                &scopes(&["claws:read", "claws:write"]),
                &key,
                Grant::Existing
            ),
            Ok(())
        );
        assert_eq!(
            catalogue.check_grant(&scopes(&["claws:*"]), &key, Grant::Existing),
            Ok(())
        );
        // New grants of it are still refused as retired.
        assert_eq!(
            catalogue.check_grant(&scopes(&["*"]), &scopes(&["claws:write"]), Grant::New),
            Err(GrantError::Retired(vec!["claws:write".into()]))
        );
        // And a full-access key can be acted on only by a holder of `*`.
        let admin = scopes(&["*", "platform:admin"]);
        assert_eq!(
            catalogue.check_grant(&scopes(&["keys:write", "claws:*"]), &admin, Grant::Existing),
            Err(GrantError::CannotGrant(vec![
                "*".into(),
                "platform:admin".into()
            ]))
        );
    }

    #[test]
    fn holding_is_resolved_at_check_time() {
        let mut catalogue = workclaw();
        let owner = scopes(&["*"]);
        assert!(!catalogue.holds(&owner, "chat:read"), "not defined yet");
        // When a scope is defined later, `*` holds it at once.
        let defined = catalogue
            .define("chat:read", "Read chats", Utc::now())
            .unwrap();
        catalogue.apply(&defined.unwrap());
        assert!(catalogue.holds(&owner, "chat:read"));
        assert!(catalogue.holds(&scopes(&["chat:*"]), "chat:read"));
        // When it is retired, nobody holds it, however it was granted.
        catalogue.apply(&catalogue.retire("chat:read", Utc::now()).unwrap());
        assert!(!catalogue.holds(&owner, "chat:read"));
        assert!(!catalogue.holds(&scopes(&["chat:read"]), "chat:read"));
        assert!(!catalogue.holds(&owner, "platform:admin"));
        assert!(catalogue.holds(&scopes(&["platform:admin"]), "platform:admin"));
        assert_eq!(
            catalogue.retired_among(&scopes(&["chat:read", "claws:read"])),
            ["chat:read"]
        );
    }

    #[test]
    fn resolution_expands_wildcards_to_live_concrete_scopes() {
        let catalogue = workclaw();
        assert_eq!(
            catalogue.resolve(&scopes(&["claws:*", "legacy:read", "keys:read"])),
            scopes(&["claws:read", "claws:write", "keys:read"])
        );
        let all = catalogue.resolve(&scopes(&["*", "platform:admin"]));
        assert!(all.contains("team:write") && all.contains("keys:write"));
        assert!(all.contains("platform:admin"));
        assert!(!all.contains("legacy:read") && !all.iter().any(|s| s.contains('*')));
        assert_eq!(all.len(), 4 + 1 + 6);
        assert!(
            !catalogue
                .resolve(&scopes(&["*"]))
                .contains("platform:admin")
        );
    }

    #[test]
    fn a_full_catalogue_still_fits_a_star_tokens_claim_and_refuses_more() {
        let now = Utc::now();
        let mut catalogue = Catalogue::default();
        for i in 0..MAX_SCOPES {
            // Longest legal names: 32-character resource and action.
            let name = format!("{:a<32}:{:b<32}", format!("r{i}"), "x");
            let event = catalogue.define(&name, "d", now).unwrap().unwrap();
            catalogue.apply(&event);
        }
        assert_eq!(
            catalogue.define("one:more", "d", now),
            Err(CatalogueError::Full)
        );
        let claim = catalogue
            .resolve(&scopes(&["*", "platform:admin"]))
            .to_claim();
        // base64 grows it by a third; the rest of a token is under 1 KB.
        assert!(claim.len() * 4 / 3 + 1024 < 8 * 1024, "{}", claim.len());
    }

    #[test]
    fn define_retire_and_import_decide_only_what_changes() {
        let now = Utc::now();
        let mut catalogue = given(&["claws:read"], &[]);
        assert_eq!(catalogue.define("claws:read", "d", now), Ok(None));
        assert!(matches!(
            catalogue.define("claws:read", "new words", now),
            Ok(Some(ScopeEvent::Described(_)))
        ));
        assert_eq!(
            catalogue.define("keys:read", "d", now),
            Err(CatalogueError::BuiltIn("keys:read".into()))
        );
        assert!(catalogue.define("platform:other", "d", now).is_err());
        assert!(catalogue.define("claws:*", "d", now).is_err());
        assert!(catalogue.define("claws:write", "", now).is_err());
        assert_eq!(
            catalogue.retire("nope:read", now),
            Err(CatalogueError::NotFound("nope:read".into()))
        );
        catalogue.apply(&catalogue.retire("claws:read", now).unwrap());
        assert_eq!(
            catalogue.retire("claws:read", now),
            Err(CatalogueError::AlreadyRetired("claws:read".into()))
        );

        let file = |names: &[&str]| -> Vec<Definition> {
            names
                .iter()
                .map(|n| Definition {
                    name: n.to_string(),
                    description: "d".into(),
                })
                .collect()
        };
        // Importing brings back the retired scope and defines the new one.
        let events = catalogue
            .import(&file(&["claws:read", "team:read"]), false, now)
            .unwrap();
        assert!(matches!(
            events.as_slice(),
            [ScopeEvent::Defined(a), ScopeEvent::Defined(b)]
                if a.name.as_str() == "claws:read" && b.name.as_str() == "team:read"
        ));
        events.iter().for_each(|e| catalogue.apply(e));
        // A second import of the same file decides nothing.
        assert_eq!(
            catalogue.import(&file(&["claws:read", "team:read"]), false, now),
            Ok(vec![])
        );
        // Without --prune nothing unnamed is retired; with it, it is.
        assert_eq!(
            catalogue.import(&file(&["team:read"]), false, now),
            Ok(vec![])
        );
        let pruned = catalogue.import(&file(&["team:read"]), true, now).unwrap();
        assert!(
            matches!(pruned.as_slice(), [ScopeEvent::Retired(r)] if r.name.as_str() == "claws:read")
        );
        assert!(
            catalogue
                .import(&file(&["team:read", "team:read"]), false, now)
                .is_err()
        );
        assert!(catalogue.import(&file(&["Bad"]), false, now).is_err());
    }
}
