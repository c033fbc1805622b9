//! `GET /api/docs`: the OpenAPI document in Swagger UI, a well-kept renderer that lists
//! each operation with its summary, renders the Markdown of the descriptions and can try
//! a call with the caller's credentials. It is vendored into the binary (no CDN; see
//! `assets::MANIFEST`), and this page alone lets it use inline styles and `data:` images,
//! which it needs; scripts still come only from this origin.

use askama::Template;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::Response;

use super::{ASSETS, St};

#[derive(Template)]
#[template(path = "docs.html")]
struct DocsPage<'a> {
    product: &'a str,
    style: String,
    bundle: String,
    script: String,
}

/// The docs page's policy: the pages' own, plus what the renderer needs.
const DOCS_POLICY: &str = "default-src 'self'; style-src 'self' 'unsafe-inline'; \
    img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// `GET /api/docs`.
pub async fn docs(State(st): St) -> Response {
    let page = DocsPage {
        product: &st.product_name,
        style: ASSETS.path("swagger-ui.css"),
        bundle: ASSETS.path("swagger-ui-bundle.js"),
        script: ASSETS.path("docs.js"),
    };
    let mut resp = super::page(&page);
    resp.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(DOCS_POLICY),
    );
    resp
}
