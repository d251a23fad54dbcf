//! The service's own static files, `/static/{name}`: embedded in the
//! binary (`crates/opptak-review/static/`), so what runs is what was built.
//! Served with their type, `nosniff` and a day's public caching (they hold
//! no personal data; a new build may change them, hence not immutable).
//! The pages' CSP (`script-src 'self'`) allows exactly these scripts.

use super::App;
use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::sync::Arc;

/// `(name, content type, body)` of every file served.
const FILES: &[(&str, &str, &str)] = &[(
    "player.js",
    "text/javascript; charset=utf-8",
    include_str!("../../static/player.js"),
)];

pub(super) fn routes() -> Router<Arc<App>> {
    Router::new().route("/static/{name}", get(file))
}

async fn file(Path(name): Path<String>) -> Response {
    let Some((_, kind, body)) = FILES.iter().find(|(n, _, _)| *n == name) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let mut r = (StatusCode::OK, *body).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=86400"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    r
}
