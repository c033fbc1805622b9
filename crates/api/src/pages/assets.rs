//! The pages' assets, carried in the binary and served under a path that names their
//! content (`/assets/{version}/{file}`), so a browser may keep them forever and a new build
//! is never mixed with an old script.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

const CSS: &str = "text/css; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";

/// Every asset: its name, media type and bytes. Ours, then the docs page's renderer,
/// vendored from npm (`assets/vendor/MANIFEST` names each file's package, version and
/// sha256; `scripts/vendor-swagger-ui` refreshes them).
const FILES: [(&str, &str, &str); 5] = [
    (
        "style.css",
        CSS,
        include_str!("../../../../assets/style.css"),
    ),
    ("app.js", JS, include_str!("../../../../assets/app.js")),
    ("docs.js", JS, include_str!("../../../../assets/docs.js")),
    (
        "swagger-ui.css",
        CSS,
        include_str!("../../../../assets/vendor/swagger-ui-dist/swagger-ui.css"),
    ),
    (
        "swagger-ui-bundle.js",
        JS,
        include_str!("../../../../assets/vendor/swagger-ui-dist/swagger-ui-bundle.js"),
    ),
];

/// The version of the assets (a digest of all of them) and the paths the pages link.
pub struct Assets {
    pub version: String,
    pub style: String,
    pub script: String,
}

impl Assets {
    /// The path of one asset, under this build's version.
    pub fn path(&self, file: &str) -> String {
        format!("/assets/{}/{file}", self.version)
    }
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
        _ => crate::error::ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such asset")
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vendored files' provenance.
    const MANIFEST: &str = include_str!("../../../../assets/vendor/MANIFEST");

    #[test]
    fn every_vendored_file_is_the_one_its_manifest_names() {
        let listed: Vec<(&str, &str)> = MANIFEST
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                assert_eq!(f.len(), 4, "package version file sha256: {l}");
                assert_eq!((f[0], f[1]), ("swagger-ui-dist", "5.36.0"));
                (f[2], f[3])
            })
            .collect();
        let root = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../assets/vendor/swagger-ui-dist"
        );
        let mut on_disk: Vec<String> = std::fs::read_dir(root)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        on_disk.sort();
        let mut names: Vec<String> = listed.iter().map(|(f, _)| f.to_string()).collect();
        names.sort();
        assert_eq!(
            on_disk, names,
            "the manifest lists exactly the vendored files"
        );
        for (file, sha) in &listed {
            let bytes = std::fs::read(format!("{root}/{file}")).unwrap();
            assert_eq!(hex::encode(Sha256::digest(&bytes)), *sha, "{file}");
        }
        // What the binary serves is what was checked.
        for (name, _, body) in FILES.iter().filter(|(n, _, _)| n.starts_with("swagger")) {
            let (_, sha) = listed.iter().find(|(f, _)| f == name).expect("listed");
            assert_eq!(hex::encode(Sha256::digest(body.as_bytes())), *sha, "{name}");
        }
    }
}
