//! The pages' assets, carried in the binary and served under a path that names their
//! content (`/assets/{version}/{file}`), so a browser may keep them forever and a new build
//! is never mixed with an old script.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

/// Every asset: its name, media type and bytes.
const FILES: [(&str, &str, &str); 2] = [
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("../../../assets/style.css"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../../../assets/app.js"),
    ),
];

/// The version of the assets (a digest of all of them) and the paths the pages link.
pub struct Assets {
    pub version: String,
    pub style: String,
    pub script: String,
}

pub static ASSETS: LazyLock<Assets> = LazyLock::new(|| {
    let mut digest = Sha256::new();
    for (name, _, body) in FILES {
        digest.update(name.as_bytes());
        digest.update(body.as_bytes());
    }
    let version = hex::encode(&digest.finalize()[..6]);
    Assets {
        style: format!("/assets/{version}/style.css"),
        script: format!("/assets/{version}/app.js"),
        version,
    }
});

/// `GET /assets/{version}/{file}`.
pub async fn asset(Path((version, file)): Path<(String, String)>) -> Response {
    let found = FILES.iter().find(|(name, _, _)| *name == file);
    match found {
        Some((_, media, body)) if version == ASSETS.version => {
            let mut resp = (*body).into_response();
            let h = resp.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(media));
            h.insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=31536000, immutable"),
            );
            h.insert(
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            );
            resp
        }
        _ => crate::api::error::ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such asset")
            .into_response(),
    }
}
