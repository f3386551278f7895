//! The route policy of Envoy's `ext_authz`: which scopes a request needs,
//! by method and path prefix, matched on the normalised path so encoding and
//! dot-segment tricks cannot route around a rule.

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
                match parts.as_slice() {
                    [method, prefix, scopes] if prefix.starts_with('/') => Ok(Route {
                        method: method.to_ascii_uppercase(),
                        path_prefix: (*prefix).to_string(),
                        scopes: scopes
                            .split(',')
                            .filter(|s| !s.is_empty())
                            .map(|s| {
                                Scope::parse_concrete(s)
                                    .map(|_| s.to_string())
                                    .map_err(|e| format!("invalid route {entry:?}: {e}"))
                            })
                            .collect::<Result<_, _>>()?,
                    }),
                    [method, prefix] if prefix.starts_with('/') => Ok(Route {
                        method: method.to_ascii_uppercase(),
                        path_prefix: (*prefix).to_string(),
                        scopes: Vec::new(),
                    }),
                    _ => Err(format!(
                        "invalid route {entry:?}: expected `METHOD /prefix scope,scope`"
                    )),
                }
            })
            .collect()
    }
}

/// The scopes a route table asks for `method` and `path`: the longest
/// matching prefix, on segment boundaries, of the normalised path. `None` for
/// a path that cannot be matched safely.
pub fn route_scopes(routes: &[Route], method: &str, path: &str) -> Option<Vec<String>> {
    let path = normalize_path(path)?;
    let under = |prefix: &str| {
        let prefix = prefix.trim_end_matches('/');
        prefix.is_empty() || path == prefix || path.starts_with(&format!("{prefix}/"))
    };
    Some(
        routes
            .iter()
            .filter(|r| {
                (r.method == "*" || r.method.eq_ignore_ascii_case(method)) && under(&r.path_prefix)
            })
            .max_by_key(|r| r.path_prefix.trim_end_matches('/').len())
            .map(|r| r.scopes.clone())
            .unwrap_or_default(),
    )
}

/// Normalises a request path for route matching: query dropped,
/// percent-encoding decoded, slashes merged, dot segments resolved. `None`
/// for a path that cannot be matched safely: bad encoding, an encoded `/`,
/// `\` or `%`, a backslash, or `..` above the root — so `/orders/../admin`,
/// `//admin` and `/%61dmin` all meet the `/admin` route or are refused.
pub fn normalize_path(raw: &str) -> Option<String> {
    let path = raw.split(['?', '#']).next().unwrap_or("");
    let bytes = path.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let byte = u8::from_str_radix(path.get(i + 1..i + 3)?, 16).ok()?;
                if matches!(byte, b'/' | b'\\' | b'%') || byte < 0x20 {
                    return None;
                }
                decoded.push(byte);
                i += 3;
            }
            b'\\' => return None,
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
        ] {
            assert_eq!(normalize_path(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn routes_match_on_segment_boundaries_of_normalised_paths() {
        let routes = Route::parse_table(
            "GET /orders orders:read; * /admin admin:all; * /admin/audit audit:read",
        )
        .unwrap();
        let scopes = |method: &str, path: &str| route_scopes(&routes, method, path);
        assert_eq!(
            scopes("GET", "/orders/1"),
            Some(vec!["orders:read".to_string()])
        );
        assert_eq!(
            scopes("POST", "/orders/1"),
            Some(vec![]),
            "method must match"
        );
        assert_eq!(
            scopes("GET", "/orders/../admin/x"),
            Some(vec!["admin:all".to_string()])
        );
        assert_eq!(
            scopes("GET", "//admin/x"),
            Some(vec!["admin:all".to_string()])
        );
        assert_eq!(
            scopes("GET", "/%61dmin"),
            Some(vec!["admin:all".to_string()])
        );
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
    }
}
