//! The one route policy: which scopes a request needs, by method and path
//! prefix, for Envoy's `ext_authz`, forward auth and the client crate's
//! guard alike. Paths are matched normalised (ignoring ASCII case), so
//! encoding, case, parameter and dot-segment tricks cannot route around a
//! rule. The longest whole-segment prefix wins, then a rule naming the
//! method beats one for GET answering a HEAD, which beats `*`; two rules for
//! one method and prefix are refused, so the order of a table never changes
//! a decision. Unmatched requests are denied when the policy says so.

use crate::scope::Scope;

/// One entry of the ext_authz route table.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// `*` matches every method.
    pub method: String,
    pub path_prefix: String,
    pub scopes: Vec<String>,
}

impl Route {
    /// One rule: `method` (`*` for any) on paths under `prefix`, needing
    /// `scopes` (each concrete). The prefix is normalised as request paths
    /// are; one that cannot be (not a plain ASCII path) is refused.
    pub fn new<S: AsRef<str>>(
        method: &str,
        prefix: &str,
        scopes: &[S],
    ) -> Result<Route, RouteError> {
        let entry = || format!("{method} {prefix}");
        let path_prefix = normalize_path(prefix)
            .filter(|p| prefix.starts_with('/') && p.is_ascii())
            .ok_or_else(|| RouteError::Invalid {
                entry: entry(),
                why: "the prefix must be a plain ASCII path such as /orders".into(),
            })?
            .to_ascii_lowercase();
        let method = method.trim();
        if method.is_empty() || !(method == "*" || method.bytes().all(|b| b.is_ascii_alphabetic()))
        {
            return Err(RouteError::Invalid {
                entry: entry(),
                why: "the method must be a name such as GET, or *".into(),
            });
        }
        let scopes = scopes
            .iter()
            .map(|s| {
                Scope::parse_concrete(s.as_ref())
                    .map(|_| s.as_ref().to_string())
                    .map_err(|e| RouteError::Invalid {
                        entry: entry(),
                        why: e.to_string(),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Route {
            method: method.to_ascii_uppercase(),
            path_prefix,
            scopes,
        })
    }

    /// Parses `METHOD PREFIX scope,scope` entries separated by `;`, e.g.
    /// `GET /orders orders:read; * /admin admin:all`.
    pub fn parse_table(table: &str) -> Result<Vec<Route>, RouteError> {
        table
            .split(';')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(|entry| {
                let parts: Vec<&str> = entry.split_whitespace().collect();
                let (method, prefix, scopes) = match parts.as_slice() {
                    [method, prefix, scopes] => (method, prefix, Some(scopes)),
                    [method, prefix] => (method, prefix, None),
                    _ => {
                        return Err(RouteError::Invalid {
                            entry: entry.to_string(),
                            why: "expected `METHOD /prefix scope,scope`".into(),
                        });
                    }
                };
                let scopes: Vec<&str> = scopes
                    .map(|s| s.split(',').filter(|s| !s.is_empty()).collect())
                    .unwrap_or_default();
                Route::new(method, prefix, &scopes).map_err(|e| match e {
                    RouteError::Invalid { why, .. } => RouteError::Invalid {
                        entry: entry.to_string(),
                        why,
                    },
                    other => other,
                })
            })
            .collect()
    }

    /// The prefix as rules are compared: without a trailing `/`.
    fn prefix(&self) -> &str {
        self.path_prefix.trim_end_matches('/')
    }
}

/// A route table that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("invalid route {entry:?}: {why}")]
    Invalid { entry: String, why: String },
    #[error(
        "two routes for {method} {prefix}: one method and prefix may have one rule, or the order of the table would decide"
    )]
    Duplicate { method: String, prefix: String },
}

/// What the route policy makes of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteDecision {
    /// A credential holding these scopes (none: any valid credential) may pass.
    Require(Vec<String>),
    /// No route matches and the policy denies unmatched requests.
    Unmatched,
    /// The path cannot be matched safely (see [`normalize_path`]).
    Unsafe,
}

/// A route table and what happens to requests it does not match. Built by
/// [`RoutePolicy::new`], which refuses a table whose order could matter.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RoutePolicy {
    routes: Vec<Route>,
    /// Deny requests that match no route instead of asking only for a valid
    /// credential: an endpoint added upstream stays closed until a route
    /// names it.
    deny_unmatched: bool,
}

impl RoutePolicy {
    /// The policy of `routes`; two rules for one method and prefix are
    /// [`RouteError::Duplicate`].
    pub fn new(routes: Vec<Route>, deny_unmatched: bool) -> Result<Self, RouteError> {
        let mut seen = std::collections::BTreeSet::new();
        for route in &routes {
            if !seen.insert((route.method.as_str(), route.prefix())) {
                return Err(RouteError::Duplicate {
                    method: route.method.clone(),
                    prefix: if route.prefix().is_empty() {
                        "/".into()
                    } else {
                        route.prefix().into()
                    },
                });
            }
        }
        Ok(Self {
            routes,
            deny_unmatched,
        })
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    pub fn deny_unmatched(&self) -> bool {
        self.deny_unmatched
    }

    /// Decides `method` and `path`: of the rules whose prefix covers the
    /// normalised path on segment boundaries (ignoring ASCII case), the
    /// longest prefix, then the most specific method (the request's own,
    /// then GET for a HEAD, then `*`). No two rules share both, so the
    /// choice is the same whatever the table's order.
    pub fn decide(&self, method: &str, path: &str) -> RouteDecision {
        let Some(path) = normalize_path(path) else {
            return RouteDecision::Unsafe;
        };
        self.choose(method, &path.to_ascii_lowercase())
    }

    /// Decides on the path as it is (query dropped, ASCII case ignored), not
    /// normalised: for a guard in front of a router that matches raw paths
    /// (axum does), where `/claws/..` reaches the `/claws/{id}` handler and
    /// so must meet the `/claws` rule, not the root's.
    pub fn decide_literal(&self, method: &str, path: &str) -> RouteDecision {
        let path = path.split(['?', '#']).next().unwrap_or("");
        self.choose(method, &path.to_ascii_lowercase())
    }

    /// The rule for `path` (already as rules are compared).
    fn choose(&self, method: &str, path: &str) -> RouteDecision {
        let under = |prefix: &str| {
            prefix.is_empty()
                || path == prefix
                || path
                    .strip_prefix(prefix)
                    .is_some_and(|rest| rest.starts_with('/'))
        };
        // Upstreams answer HEAD with their GET handler: so does the policy.
        let specificity = |rule: &str| {
            if rule.eq_ignore_ascii_case(method) {
                Some(2)
            } else if rule == "GET" && method.eq_ignore_ascii_case("HEAD") {
                Some(1)
            } else if rule == "*" {
                Some(0)
            } else {
                None
            }
        };
        let matched = self
            .routes
            .iter()
            .filter(|r| under(r.prefix()))
            .filter_map(|r| specificity(&r.method).map(|s| ((r.prefix().len(), s), r)))
            .max_by_key(|(rank, _)| *rank)
            .map(|(_, r)| r);
        match matched {
            Some(route) => RouteDecision::Require(route.scopes.clone()),
            None if self.deny_unmatched => RouteDecision::Unmatched,
            None => RouteDecision::Require(Vec::new()),
        }
    }
}

/// Normalises a request path for route matching, as Envoy's `normalize_path`
/// and `merge_slashes` do and then some: query dropped, percent-encoding
/// decoded, `;` parameters dropped from each segment (servlet containers
/// ignore them: `/admin;x=1` reaches `/admin`), slashes merged, dot segments
/// resolved. `None` for a path that cannot be matched safely: bad encoding,
/// an encoded `/`, `\`, `%` or `;`, a control character, a backslash, or `..`
/// above the root — so `/orders/../admin`, `//admin`, `/admin;x` and
/// `/%61dmin` all meet the `/admin` route or are refused.
pub fn normalize_path(raw: &str) -> Option<String> {
    let path = raw.split(['?', '#']).next().unwrap_or("");
    let bytes = path.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let byte = u8::from_str_radix(path.get(i + 1..i + 3)?, 16).ok()?;
                if matches!(byte, b'/' | b'\\' | b'%' | b';') || byte < 0x20 || byte == 0x7f {
                    return None;
                }
                decoded.push(byte);
                i += 3;
            }
            b'\\' => return None,
            byte if byte < 0x20 || byte == 0x7f => return None,
            byte => {
                decoded.push(byte);
                i += 1;
            }
        }
    }
    let decoded = String::from_utf8(decoded).ok()?;
    if !decoded.starts_with('/') {
        return None;
    }
    let mut segments: Vec<&str> = Vec::new();
    for segment in decoded.split('/') {
        // `;` parameters belong to the segment; the segment is what routes.
        let segment = segment.split(';').next().unwrap_or("");
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop()?;
            }
            segment => segments.push(segment),
        }
    }
    Some(format!("/{}", segments.join("/")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_normalised_before_matching() {
        assert_eq!(
            normalize_path("/orders/../admin/x?y=1").as_deref(),
            Some("/admin/x")
        );
        assert_eq!(normalize_path("//admin//x/./").as_deref(), Some("/admin/x"));
        assert_eq!(normalize_path("/%61dmin/x").as_deref(), Some("/admin/x"));
        assert_eq!(normalize_path("/").as_deref(), Some("/"));
        assert_eq!(
            normalize_path("/a;v=1/b;x/;y").as_deref(),
            Some("/a/b"),
            "; parameters are dropped"
        );
        for bad in [
            "/a/%2f/b",
            "/a/%2F",
            "/..",
            "/a/../../b",
            "/a\\b",
            "/%zz",
            "relative",
            "/%5c",
            "/%00",
            "/a%3Bb",
            "/a\u{7f}",
            "/a\tb",
        ] {
            assert_eq!(normalize_path(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn routes_match_on_segment_boundaries_of_normalised_paths() {
        let policy = RoutePolicy::new(
            Route::parse_table(
                "GET /orders orders:read; * /Admin admin:all; * /admin/audit audit:read",
            )
            .unwrap(),
            false,
        )
        .unwrap();
        let scopes = |method: &str, path: &str| match policy.decide(method, path) {
            RouteDecision::Require(scopes) => Some(scopes),
            RouteDecision::Unsafe => None,
            RouteDecision::Unmatched => panic!("allowed unmatched"),
        };
        let admin = Some(vec!["admin:all".to_string()]);
        assert_eq!(
            scopes("GET", "/orders/1"),
            Some(vec!["orders:read".to_string()])
        );
        assert_eq!(
            scopes("POST", "/orders/1"),
            Some(vec![]),
            "method must match"
        );
        assert_eq!(scopes("GET", "/orders/../admin/x"), admin);
        assert_eq!(scopes("GET", "//admin/x"), admin);
        assert_eq!(scopes("GET", "/%61dmin"), admin);
        assert_eq!(scopes("GET", "/ADMIN/x"), admin, "case is ignored");
        assert_eq!(scopes("get", "/aDmIn"), admin);
        assert_eq!(
            scopes("GET", "/admin;jsessionid=1/x"),
            admin,
            "; parameters"
        );
        assert_eq!(scopes("GET", "/orders;x/../admin"), admin);
        assert_eq!(
            scopes("GET", "/admin/audit/7"),
            Some(vec!["audit:read".to_string()]),
            "longest prefix"
        );
        assert_eq!(
            scopes("GET", "/administrator"),
            Some(vec![]),
            "segment boundary"
        );
        assert_eq!(scopes("GET", "/admin%2Fx"), None);
        assert_eq!(
            scopes("HEAD", "/orders/1"),
            Some(vec!["orders:read".to_string()]),
            "HEAD is answered by GET handlers, so GET rules cover it"
        );
        assert_eq!(scopes("GET", "/admin%3bx"), None, "an encoded ; is refused");

        let closed = RoutePolicy::new(policy.routes().to_vec(), true).unwrap();
        assert_eq!(closed.decide("GET", "/elsewhere"), RouteDecision::Unmatched);
        assert_eq!(closed.decide("POST", "/orders"), RouteDecision::Unmatched);
        assert_eq!(
            closed.decide("GET", "/ORDERS/1"),
            RouteDecision::Require(vec!["orders:read".into()])
        );
        assert_eq!(closed.decide("GET", "/a/%2f"), RouteDecision::Unsafe);
        assert_eq!(
            RoutePolicy::default().decide("GET", "/x"),
            RouteDecision::Require(vec![]),
            "no table, not closed: any valid credential"
        );
    }

    #[test]
    fn route_tables_parse() {
        let routes = Route::parse_table(
            "GET /orders orders:read; * /admin admin:all,audit:read ;POST /public",
        )
        .unwrap();
        assert_eq!(routes.len(), 3);
        assert_eq!(routes[1].scopes, ["admin:all", "audit:read"]);
        assert!(routes[2].scopes.is_empty());
        assert!(Route::parse_table("GET orders x").is_err());
        assert!(Route::parse_table("GET /orders orders:*").is_err());
        assert!(Route::parse_table("GET /orders *").is_err());
        assert!(Route::parse_table("").unwrap().is_empty());
        // Prefixes are normalised as paths are; one that cannot be is refused.
        let routes = Route::parse_table("GET /a/./b//c/ x:read; * /Files/%61 x:read").unwrap();
        assert_eq!(routes[0].path_prefix, "/a/b/c");
        assert_eq!(routes[1].path_prefix, "/files/a");
        assert!(Route::parse_table("GET /a/%2Fb x:read").is_err());
        assert!(Route::parse_table("GET /../a x:read").is_err());
        assert!(Route::parse_table("GET /caf\u{e9} x:read").is_err());
    }

    fn require(scopes: &[&str]) -> RouteDecision {
        RouteDecision::Require(scopes.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn a_method_rule_beats_star_on_the_same_prefix_whatever_the_order() {
        // The red team's table: a claws:read key must not POST.
        for table in [
            "POST /claws claws:write; * /claws claws:read",
            "* /claws claws:read; POST /claws claws:write",
        ] {
            let policy = RoutePolicy::new(Route::parse_table(table).unwrap(), false).unwrap();
            assert_eq!(
                policy.decide("POST", "/claws/1"),
                require(&["claws:write"]),
                "{table}"
            );
            assert_eq!(
                policy.decide("GET", "/claws/1"),
                require(&["claws:read"]),
                "{table}"
            );
        }
        // The table docker-compose.yml ships: GET needs keys:read only.
        for table in [
            "GET /api/keys keys:read; * /api/keys keys:write",
            "* /api/keys keys:write; GET /api/keys keys:read",
        ] {
            let policy = RoutePolicy::new(Route::parse_table(table).unwrap(), false).unwrap();
            assert_eq!(
                policy.decide("GET", "/api/keys"),
                require(&["keys:read"]),
                "{table}"
            );
            assert_eq!(
                policy.decide("HEAD", "/api/keys/1"),
                require(&["keys:read"]),
                "{table}"
            );
            assert_eq!(
                policy.decide("DELETE", "/api/keys/1"),
                require(&["keys:write"]),
                "{table}"
            );
        }
        // A HEAD rule beats the GET rule that would otherwise answer a HEAD.
        let policy = RoutePolicy::new(
            Route::parse_table("HEAD /x x:read; GET /x x:write; * /x team:read").unwrap(),
            false,
        )
        .unwrap();
        assert_eq!(policy.decide("HEAD", "/x"), require(&["x:read"]));
        assert_eq!(policy.decide("GET", "/x"), require(&["x:write"]));
    }

    #[test]
    fn a_literal_decision_matches_the_path_as_a_router_sees_it() {
        let policy = RoutePolicy::new(
            Route::parse_table("* /claws claws:read; POST /claws claws:write").unwrap(),
            false,
        )
        .unwrap();
        // A raw router sends `/claws/..` to `/claws/{id}`: the rule holds.
        assert_eq!(
            policy.decide_literal("GET", "/claws/.."),
            require(&["claws:read"])
        );
        assert_eq!(
            policy.decide_literal("GET", "/claws/%2e%2e"),
            require(&["claws:read"])
        );
        assert_eq!(
            policy.decide_literal("POST", "/Claws/1?x=1"),
            require(&["claws:write"])
        );
        assert_eq!(policy.decide_literal("GET", "/clawsx"), require(&[]));
    }

    #[test]
    fn two_rules_for_one_method_and_prefix_are_refused() {
        for table in [
            "GET /a x:read; GET /a x:write",
            "* /a x:read; * /A/ x:write",
            "get /a/./b x:read; GET /a/b",
            "* / x:read; * // x:write",
        ] {
            let routes = Route::parse_table(table).unwrap();
            assert!(
                matches!(
                    RoutePolicy::new(routes, false),
                    Err(RouteError::Duplicate { .. })
                ),
                "{table}"
            );
        }
        assert!(
            RoutePolicy::new(
                Route::parse_table("GET /a x:read; POST /a x:write").unwrap(),
                false
            )
            .is_ok()
        );
        assert!(Route::new("G T", "/a", &["x:read"]).is_err());
        assert!(Route::new("", "/a", &["x:read"]).is_err());
    }

    mod order {
        use super::super::*;
        use proptest::prelude::*;

        const METHODS: [&str; 5] = ["*", "GET", "POST", "HEAD", "DELETE"];
        const PREFIXES: [&str; 6] = ["/", "/a", "/a/b", "/A/b/", "/b", "/a/bc"];
        const PATHS: [&str; 8] = ["/", "/a", "/a/b", "/a/b/c", "/a/bc", "/b/x", "/c", "/A/B"];

        /// A table of distinct (method, prefix) rules, each with its own scope.
        fn table() -> impl Strategy<Value = Vec<Route>> {
            proptest::collection::btree_set((0..METHODS.len(), 0..PREFIXES.len()), 0..12).prop_map(
                |rules| {
                    let mut seen = std::collections::BTreeSet::new();
                    rules
                        .into_iter()
                        .enumerate()
                        .filter_map(|(n, (m, p))| {
                            let route =
                                Route::new(METHODS[m], PREFIXES[p], &[format!("r{n}:read")])
                                    .ok()?;
                            seen.insert((route.method.clone(), route.prefix().to_string()))
                                .then_some(route)
                        })
                        .collect()
                },
            )
        }

        proptest! {
            #[test]
            fn the_order_of_a_table_never_changes_a_decision(
                routes in table(),
                deny in any::<bool>(),
                shuffle in any::<u64>(),
            ) {
                let policy = RoutePolicy::new(routes.clone(), deny).unwrap();
                let mut shuffled = routes;
                // A deterministic shuffle from the drawn seed.
                let mut seed = shuffle | 1;
                for i in (1..shuffled.len()).rev() {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    shuffled.swap(i, (seed % (i as u64 + 1)) as usize);
                }
                let reversed: Vec<Route> = shuffled.iter().rev().cloned().collect();
                let other = RoutePolicy::new(shuffled, deny).unwrap();
                let backwards = RoutePolicy::new(reversed, deny).unwrap();
                for method in ["GET", "POST", "HEAD", "PUT", "DELETE"] {
                    for path in PATHS {
                        let decision = policy.decide(method, path);
                        prop_assert_eq!(&decision, &other.decide(method, path));
                        prop_assert_eq!(&decision, &backwards.decide(method, path));
                    }
                }
            }
        }
    }
}
