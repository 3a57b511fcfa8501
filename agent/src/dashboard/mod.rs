//! The live dashboard: one self-contained HTML page (HTML, CSS and vanilla
//! JavaScript, embedded in the binary) that the HTTP API serves at `GET /`
//! and `GET /dashboard`. The page polls `GET /status` about once a second and
//! shows the agent's identity, its releases with every wave's eligible /
//! installed / healthy / failed / silent counts and gate, a red `HALTED:`
//! banner with the reason for each halted release, connected peers split
//! into LAN and WAN, and transfer rates.
//!
//! The page asks for nothing but `/status` and loads nothing from elsewhere
//! (its Content-Security-Policy forbids it). Every string it shows from the
//! status (product and version names, halt reasons from directives, peer
//! IDs) goes in through `textContent`, never as markup. Elements carry stable
//! `id` and `data-*` attributes (documented at the top of the page's script)
//! so tests and scrapers can find them.

use axum::http::header;
use axum::response::IntoResponse;

/// The page.
pub const INDEX_HTML: &str = include_str!("index.html");

/// What the page may do: run its own inline script and style, and fetch from
/// its own origin; nothing else (no external scripts, images, frames or forms).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'unsafe-inline'; \
     style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// `GET /` and `GET /dashboard`: the page.
pub async fn page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        INDEX_HTML,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_polls_status_and_never_writes_markup_from_data() {
        assert!(INDEX_HTML.starts_with("<!DOCTYPE html>"));
        assert!(INDEX_HTML.contains("fetch(STATUS_URL"));
        // Strings from the status go in as text only.
        for banned in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
        ] {
            assert!(!INDEX_HTML.contains(banned), "the page uses {banned}");
        }
        // Nothing is loaded from elsewhere.
        for external in ["src=\"http", "href=\"http", "@import", "url(http"] {
            assert!(!INDEX_HTML.contains(external), "the page loads {external}");
        }
    }
}
