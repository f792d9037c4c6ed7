//! The web console's files, served at `/` and `/assets/…` from the binary itself.
//!
//! The console is a single-page app built from `console/src` into `console/dist` (see
//! `console/build.mjs`); the built files are committed and compiled in here with `include_bytes!`,
//! so building the hub needs nothing but cargo and serving it needs no file and no network. Its
//! addresses live after `#`, so `/` is its only page. With `WEFT_CONSOLE_DIR` set, the files are
//! read from that folder at each request instead (for working on the console with
//! `node build.mjs --watch`).
//!
//! Every answer forbids framing and sniffing; the page's Content-Security-Policy lets it load and
//! connect to its own origin only.

use std::sync::OnceLock;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// One file of the console.
struct Asset {
    path: &'static str,
    file: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

const ASSETS: &[Asset] = &[
    Asset {
        path: "/",
        file: "index.html",
        content_type: "text/html; charset=utf-8",
        bytes: include_bytes!("../../../console/dist/index.html"),
    },
    Asset {
        path: "/assets/app.js",
        file: "app.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../../console/dist/app.js"),
    },
    Asset {
        path: "/assets/app.css",
        file: "app.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("../../../console/dist/app.css"),
    },
];

/// What the page may load and where it may connect: its own origin only.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Whether `path` is one of the console's files (open to everyone: they hold no data).
pub fn is_console_path(path: &str) -> bool {
    ASSETS.iter().any(|a| a.path == path)
}

/// The console's routes.
pub fn router<S: Clone + Send + Sync + 'static>() -> axum::Router<S> {
    ASSETS.iter().fold(axum::Router::new(), |router, asset| {
        router.route(
            asset.path,
            get(move |headers: HeaderMap| serve(asset, headers)),
        )
    })
}

/// The ETag of each embedded file: a digest of its bytes, computed once.
fn etag(asset: &Asset) -> &'static str {
    static TAGS: OnceLock<Vec<String>> = OnceLock::new();
    let tags = TAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| format!("\"{}\"", &crate::auth::hash_bytes(a.bytes)[..32]))
            .collect()
    });
    let i = ASSETS
        .iter()
        .position(|a| a.path == asset.path)
        .expect("an asset of the table");
    &tags[i]
}

async fn serve(asset: &'static Asset, headers: HeaderMap) -> Response {
    let (bytes, tag): (std::borrow::Cow<'static, [u8]>, String) =
        match std::env::var_os("WEFT_CONSOLE_DIR") {
            Some(dir) => match std::fs::read(std::path::Path::new(&dir).join(asset.file)) {
                Ok(bytes) => {
                    let tag = format!("\"{}\"", &crate::auth::hash_bytes(&bytes)[..32]);
                    (bytes.into(), tag)
                }
                Err(e) => {
                    return crate::error::ApiError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "console",
                        format!(
                            "WEFT_CONSOLE_DIR is set, but its {} cannot be read: {e}",
                            asset.file
                        ),
                    )
                    .into_response();
                }
            },
            None => (asset.bytes.into(), etag(asset).to_string()),
        };
    let mut response = if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag))
    {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, asset.content_type)], bytes).into_response()
    };
    let h = response.headers_mut();
    // Revalidated at every load (the ETag makes that cheap), so a new hub's console is never
    // mixed with an old one's cached files.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(tag) = HeaderValue::from_str(&tag) {
        h.insert(header::ETAG, tag);
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_the_assets_that_are_embedded() {
        let page = std::str::from_utf8(ASSETS[0].bytes).unwrap();
        for asset in &ASSETS[1..] {
            assert!(page.contains(asset.path), "index.html loads {}", asset.path);
            assert!(!asset.bytes.is_empty());
        }
        assert!(is_console_path("/"));
        assert!(is_console_path("/assets/app.js"));
        assert!(!is_console_path("/assets/other.js"));
        assert!(!is_console_path("/api/runs"));
    }
}
