//! The console: one page at `/console` for an account's API keys — sign in,
//! list, create (scopes from the catalogue), rotate, revoke, delete, and each
//! key's live activity log. It is plain HTML, CSS and a JavaScript module,
//! embedded here with `include_str!`, so nothing is built with Node and the
//! binary carries everything it serves.
//!
//! The page speaks only the HTTP+JSON API on the same origin and keeps its
//! tokens in memory (never in storage), so what protects the API protects
//! the console. Its responses carry a strict `Content-Security-Policy` (no
//! inline script or style, nothing from another origin, no framing).
//!
//! - [`router`]: the routes, to merge into the HTTP router of an issuer;
//! - `assets/`: `index.html`, `console.js`, `console.css`, `icon.svg`.

use axum::Router;
use axum::http::{HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// Where the console is served.
pub const PATH: &str = "/console";

/// Only same-origin scripts, styles, images and API calls; no plugins,
/// frames, forms posted by the browser, or `<base>` rewriting; and Trusted
/// Types with no policy, so no string can ever reach an HTML or script sink
/// (`innerHTML`, `eval`, …) — the browser enforces what the script promises.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'none'; \
     frame-ancestors 'none'; base-uri 'none'; require-trusted-types-for 'script'; \
     trusted-types 'none'";

/// Powerful features the page never uses, refused outright.
const PERMISSIONS_POLICY: &str =
    "camera=(), microphone=(), geolocation=(), payment=(), usb=(), serial=(), hid=()";

const INDEX: &str = include_str!("../assets/index.html");
const SCRIPT: &str = include_str!("../assets/console.js");
const STYLE: &str = include_str!("../assets/console.css");
const ICON: &str = include_str!("../assets/icon.svg");

/// Every path the console answers, with its content type and body.
const ASSETS: [(&str, &str, &str); 5] = [
    (PATH, "text/html; charset=utf-8", INDEX),
    ("/console/", "text/html; charset=utf-8", INDEX),
    (
        "/console/console.js",
        "text/javascript; charset=utf-8",
        SCRIPT,
    ),
    ("/console/console.css", "text/css; charset=utf-8", STYLE),
    ("/console/icon.svg", "image/svg+xml", ICON),
];

/// The console's routes (`/console`, `/console/` and its assets), for any
/// router state.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    ASSETS
        .into_iter()
        .fold(Router::new(), |router, (path, content_type, body)| {
            router.route(path, get(move || async move { asset(content_type, body) }))
        })
}

/// `body` with its type and the headers every console response carries.
fn asset(content_type: &'static str, body: &'static str) -> Response {
    let headers = [
        (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        // The assets change with the binary; a browser asks again each time.
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (
            HeaderName::from_static("cross-origin-opener-policy"),
            HeaderValue::from_static("same-origin"),
        ),
        (
            HeaderName::from_static("cross-origin-resource-policy"),
            HeaderValue::from_static("same-origin"),
        ),
        (
            HeaderName::from_static("permissions-policy"),
            HeaderValue::from_static(PERMISSIONS_POLICY),
        ),
    ];
    (headers, body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_nothing_inline_and_nothing_from_elsewhere() {
        // The CSP forbids inline script and style: the page must not need them.
        assert!(!INDEX.contains("<script>"), "inline script");
        assert!(!INDEX.contains("style="), "inline style attribute");
        assert!(!INDEX.contains("<style"), "inline style element");
        let handler = INDEX.split(" on").skip(1).any(|rest| {
            let name: String = rest.chars().take_while(char::is_ascii_lowercase).collect();
            !name.is_empty() && rest[name.len()..].starts_with('=')
        });
        assert!(!handler, "an inline event handler");
        for page in [INDEX, SCRIPT, STYLE] {
            assert!(!page.contains("http://"), "an absolute URL");
            assert!(!page.contains("https://"), "an absolute URL");
            assert!(!page.contains("//cdn"), "a CDN");
        }
        // Tokens are kept in memory only.
        assert!(!SCRIPT.contains("localStorage"));
        assert!(!SCRIPT.contains("sessionStorage"));
        assert!(!SCRIPT.contains("document.cookie"));
        // Untrusted text is never parsed as markup.
        assert!(!SCRIPT.contains("innerHTML"));
        assert!(!SCRIPT.contains("insertAdjacentHTML"));
    }
}
