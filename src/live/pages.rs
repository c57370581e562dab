//! The web pages and their assets: `/` (index), `/dashboard`, `/admin`, and `/assets/{name}`,
//! all served from the table embedded at build time ([`crate::assets`]); nothing is read from
//! disk, so a binary copied anywhere serves the same pages.

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::AppState;
use crate::assets::{web_asset, web_source};

/// The page routes, merged into the server's router.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/dashboard", get(dashboard))
        .route("/admin", get(admin))
        .route("/assets/{name}", get(asset))
}

async fn index() -> Html<&'static str> {
    Html(web_source("index.html"))
}

async fn dashboard() -> Html<&'static str> {
    Html(web_source("dashboard.html"))
}

async fn admin() -> Html<&'static str> {
    Html(web_source("admin.html"))
}

/// One embedded file with its content type. Assets change only with the binary, and the pages
/// name them without a version, so browsers revalidate (`no-cache`) rather than keep a stale
/// copy across an upgrade.
async fn asset(Path(name): Path<String>) -> Response {
    match web_asset(&name) {
        Some(asset) => (
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(asset.content_type),
                ),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            ],
            asset.bytes(),
        )
            .into_response(),
        None => (
            StatusCode::NOT_FOUND,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            )],
            format!("no asset called {name:?}; the embedded assets are listed at /assets/"),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use crate::assets::web_source;

    #[test]
    fn every_page_the_server_serves_is_embedded() {
        for page in ["index.html", "dashboard.html", "admin.html"] {
            assert!(!web_source(page).is_empty(), "web/src/{page} is embedded");
        }
    }
}
