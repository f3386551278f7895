//! The route policy of Envoy's `ext_authz`: which scopes a request needs,
//! by method and path prefix, matched on the normalised path (ignoring ASCII
//! case) so encoding, case, parameter and dot-segment tricks cannot route
//! around a rule; unmatched requests are denied when the policy says so.

use gatehouse_domain::scope::Scope;

/// One entry of the ext_authz route table.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// `*` matches every method.
    pub method: String,
    pub path_prefix: String,
    pub scopes: Vec<String>,
}

impl Route {
    /// Parses `METHOD PREFIX scope,scope` entries separated by `;`, e.g.
    /// `GET /orders orders:read; * /admin admin:all`.
    pub fn parse_table(table: &str) -> Result<Vec<Route>, String> {
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
                        return Err(format!(
                            "invalid route {entry:?}: expected `METHOD /prefix scope,scope`"
                        ));
                    }
                };
                // Prefixes are matched against normalised paths, so they are
                // normalised too; one that cannot be would never match.
                let path_prefix = normalize_path(prefix)
                    .filter(|p| prefix.starts_with('/') && p.is_ascii())
                    .ok_or_else(|| {
                        format!(
                            "invalid route {entry:?}: the prefix must be a plain ASCII path such as /orders"
                        )
                    })?
                    .to_ascii_lowercase();
                let scopes = scopes
                    .map(|scopes| {
                        scopes
                            .split(',')
                            .filter(|s| !s.is_empty())
                            .map(|s| {
                                Scope::parse_concrete(s)
                                    .map(|_| s.to_string())
                                    .map_err(|e| format!("invalid route {entry:?}: {e}"))
                            })
                            .collect::<Result<Vec<_>, _>>()
                    })
                    .transpose()?
                    .unwrap_or_default();
                Ok(Route {
                    method: method.to_ascii_uppercase(),
                    path_prefix,
                    scopes,
                })
            })
            .collect()
    }
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

/// The ext_authz route table and what happens to requests it does not match.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RoutePolicy {
    pub routes: Vec<Route>,
    /// Deny requests that match no route instead of asking only for a valid
    /// credential: an endpoint added upstream stays closed until a route
    /// names it.
    pub deny_unmatched: bool,
}

impl RoutePolicy {
    /// Decides `method` and `path`: the longest matching prefix, on segment
    /// boundaries and ignoring ASCII case, of the normalised path.
    pub fn decide(&self, method: &str, path: &str) -> RouteDecision {
        let Some(path) = normalize_path(path) else {
            return RouteDecision::Unsafe;
        };
        let path = path.to_ascii_lowercase();
        let under = |prefix: &str| {
            let prefix = prefix.trim_end_matches('/');
            prefix.is_empty() || path == prefix || path.starts_with(&format!("{prefix}/"))
        };
        let matched = self
            .routes
            .iter()
            .filter(|r| {
                // Upstreams answer HEAD with their GET handler: so does the policy.
                let method_matches = r.method == "*"
                    || r.method.eq_ignore_ascii_case(method)
                    || (r.method == "GET" && method.eq_ignore_ascii_case("HEAD"));
                method_matches && under(&r.path_prefix)
            })
            .max_by_key(|r| r.path_prefix.trim_end_matches('/').len());
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
        let policy = RoutePolicy {
            routes: Route::parse_table(
                "GET /orders orders:read; * /Admin admin:all; * /admin/audit audit:read",
            )
            .unwrap(),
            deny_unmatched: false,
        };
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

        let closed = RoutePolicy {
            deny_unmatched: true,
            ..policy.clone()
        };
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
}
