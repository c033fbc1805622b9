//! The API described (CONTRACTS.md §4.3): an OpenAPI 3.1 document generated from the
//! routes themselves. Every handler carries a `#[utoipa::path]` and is registered through
//! `utoipa_axum::routes!`, so a route cannot be added to the router without being added to
//! the document. `GET /api/openapi.json` serves it and `GET /api/docs` renders it with the
//! assets the binary carries (`pages::assets`).

pub mod refusals;
mod shaping;

use shaping::{describe_inputs, merge_flattened};

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use utoipa::openapi::schema::Schema;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{OpenApi as Document, RefOr};
use utoipa::{Modify, OpenApi, PartialSchema, ToSchema};

use crate::error::{CreateNodeRefusal, ErrorBody, SuccessRefusal};
use ports::store::LoadSort;

/// The security schemes, by the names the operations use.
pub const USER: &str = "user_jwt";
pub const INTERNAL: &str = "internal_secret";
pub const OPERATOR: &str = "operator_jwt";
pub const NODE: &str = "node_credential";
pub const TICKET: &str = "event_ticket";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "fulfillment-service",
        description = "Turns paid orders into running infrastructure: hosting nodes and VPN users.\n\n\
            Every refusal is a 4xx or 5xx with `{\"error\", \"code\"}` (endpoints with their own \
            `{\"success\": false, …}` shape carry both beside it). Timestamps are RFC 3339 UTC. \
            Metrics (`GET /metrics`, Prometheus text) are served on their own listener \
            (`METRICS_ADDR`), not on this one.",
        license(name = "UNLICENSED"),
    ),
    modifiers(&Shared),
    components(schemas(ErrorBody, CreateNodeRefusal, SuccessRefusal)),
    tags(
        (name = "user", description = "The app's API: my node(s), my VPN, regions (a user JWT)."),
        (name = "events", description = "Live updates: whole documents as they change (§4.1)."),
        (name = "public", description = "No credentials."),
        (name = "internal", description = "The subscription service's API (`X-Internal-Secret`)."),
        (name = "operator", description = "Operators (`X-Internal-Secret` or an operator JWT)."),
        (name = "callbacks", description = "Node agents report on themselves."),
    )
)]
struct ApiDoc;

/// The parts the derive cannot name: the security schemes and the shaped refusals.
struct Shared;

impl Modify for Shared {
    fn modify(&self, doc: &mut Document) {
        let bearer = |what: &str| {
            let mut http = Http::new(HttpAuthScheme::Bearer);
            http.bearer_format = what.contains("JWT").then(|| "JWT".into());
            http.description = Some(what.into());
            SecurityScheme::Http(http)
        };
        let components = doc.components.get_or_insert_with(Default::default);
        let schemes = [
            (
                USER,
                bearer("A user JWT (HS256): the user is claim `uid`, else `sub`; `exp` required."),
            ),
            (
                OPERATOR,
                bearer(
                    "An operator JWT (HS256, claim `role: operator`, `sub` the operator's name; `fulfillment token --operator NAME`).",
                ),
            ),
            (
                NODE,
                bearer(
                    "The per-node credential minted when the node was created (a node reports only on itself).",
                ),
            ),
            (
                INTERNAL,
                SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                    "X-Internal-Secret",
                    "The internal secret shared with the subscription and hosting services.",
                ))),
            ),
            (
                TICKET,
                SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::with_description(
                    "ticket",
                    "A short-lived ticket from `POST /api/v1/my/events/ticket` (a browser cannot send headers on an event stream).",
                ))),
            ),
        ];
        for (name, scheme) in schemes {
            components.add_security_scheme(name, scheme);
        }
        for (name, schema) in refusals::shaped() {
            components.schemas.insert(name.into(), schema);
        }
    }
}

/// The orders of the node-load view, by the names `?sort=` takes (`LoadSort` is the
/// storage port's, so its schema is this stand-in's).
pub struct LoadSortNames;

impl PartialSchema for LoadSortNames {
    fn schema() -> RefOr<Schema> {
        let names = LoadSort::NAMES.map(|(name, _)| name);
        domain::schema::wire_values(&names)
    }
}

impl ToSchema for LoadSortNames {}

/// The document of a router's routes: its operations, plus the parts every document has.
/// It leaves utoipa's types for JSON, which can say what they cannot (`propertyNames`).
pub fn document(routes: Document) -> Value {
    let mut doc = ApiDoc::openapi();
    doc.merge(routes);
    let mut json = merge_flattened(doc);
    describe_inputs(&mut json);
    json
}

/// The document as it is served.
pub fn to_json(doc: &Value) -> String {
    serde_json::to_string_pretty(doc).expect("the document serialises")
}

/// `GET /api/openapi.json`.
pub fn serve(text: &'static str) -> Response {
    let mut resp = text.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}
