//! The API described (CONTRACTS.md §4.3): an OpenAPI 3.1 document generated from the
//! routes themselves. Every handler carries a `#[utoipa::path]` and is registered through
//! `utoipa_axum::routes!`, so a route cannot be added to the router without being added to
//! the document. `GET /api/openapi.json` serves it and `GET /api/docs` renders it with the
//! assets the binary carries (`pages::assets`).

pub mod refusals;

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use std::collections::BTreeSet;

use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{OpenApi as Document, RefOr};
use utoipa::{Modify, OpenApi, PartialSchema, ToSchema};

use crate::api::error::{CreateNodeRefusal, ErrorBody, SuccessRefusal};
use crate::api::extract::FREE_TEXT_FIELDS;
use crate::domain::entitlement::VpnStatus;
use crate::domain::migration::ShownMigration;
use crate::domain::progress::HostingStatus;
use crate::domain::{EventKind, ResourceKind, Status};
use crate::ports::store::LoadSort;

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

/// A closed string enum of the domain, its values taken from the type itself.
fn wire_values<T: Serialize>(all: &[T]) -> RefOr<Schema> {
    let values = all
        .iter()
        .map(|v| serde_json::to_value(v).expect("a wire enum serialises"));
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(values))
        .into()
}

macro_rules! wire_schema {
    ($($ty:ty),+ $(,)?) => {$(
        impl PartialSchema for $ty {
            fn schema() -> RefOr<Schema> {
                wire_values(&<$ty>::ALL)
            }
        }
        impl ToSchema for $ty {}
    )+};
}

wire_schema!(HostingStatus, Status, VpnStatus, EventKind, ResourceKind);

/// A migration's status as the apps see it, under the name the document always gave it.
impl PartialSchema for ShownMigration {
    fn schema() -> RefOr<Schema> {
        wire_values(ShownMigration::ALL)
    }
}

impl ToSchema for ShownMigration {
    fn name() -> std::borrow::Cow<'static, str> {
        "MigrationStatus".into()
    }
}

/// The orders of the node-load view, by the names `?sort=` takes.
impl PartialSchema for LoadSort {
    fn schema() -> RefOr<Schema> {
        let names = LoadSort::NAMES.map(|(name, _)| name);
        wire_values(&names)
    }
}

impl ToSchema for LoadSort {}

/// The document of a router's routes: its operations, plus the parts every document has.
/// It leaves utoipa's types for JSON, which can say what they cannot (`propertyNames`).
pub fn document(routes: Document) -> Value {
    let mut doc = ApiDoc::openapi();
    doc.merge(routes);
    let mut json = merge_flattened(doc);
    describe_inputs(&mut json);
    json
}

/// No control characters (`domain::input::is_clean`), as JSON Schema says it.
const CLEAN: &str = r"^[^\x00-\x1f\x7f-\x9f]*$";
/// Clean and not blank (`domain::input::id`): what a required id or name must be.
const NOT_BLANK: &str = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$";

/// What the extractors (`api::extract`) enforce on every input, written into the request
/// schemas so the document states it once instead of each type repeating it: no string,
/// key or unknown key's value holds a control character (the free-text fields excepted),
/// a string that may not be empty may not be blank either, and keys the type does not read
/// are ignored (the schema `Ignored`), as the deployed clients' extra fields always were.
fn describe_inputs(doc: &mut Value) {
    let components = doc["components"]["schemas"].clone();
    let mut bodies = BTreeSet::new();
    for op in doc["paths"]
        .as_object_mut()
        .into_iter()
        .flat_map(|paths| paths.values_mut())
        .flat_map(|item| {
            item.as_object_mut()
                .into_iter()
                .flat_map(|m| m.values_mut())
        })
    {
        let body = &op["requestBody"]["content"]["application/json"]["schema"]["$ref"];
        if let Some(name) = body.as_str() {
            let name = name.trim_start_matches("#/components/schemas/").to_owned();
            // An empty body reads as `{}`: it is refused only if a field is required.
            let required = components_required(&components, &name);
            op["requestBody"]["required"] = required.into();
            bodies.insert(name);
        }
        let params = op.get_mut("parameters").and_then(Value::as_array_mut);
        for param in params.into_iter().flatten() {
            let free = FREE_TEXT_FIELDS.contains(&param["name"].as_str().unwrap_or_default());
            if param["in"] == "query" && !free {
                describe_string(&mut param["schema"]);
            }
        }
    }
    let schemas = &mut doc["components"]["schemas"];
    for name in bodies {
        let body = &mut schemas[&name];
        let required = body["required"].clone();
        let properties = body.get_mut("properties").and_then(Value::as_object_mut);
        for (field, schema) in properties.into_iter().flatten() {
            // The derive gives `String`'s default (`""`) to fields that are required.
            if required
                .as_array()
                .is_some_and(|r| r.contains(&field.as_str().into()))
            {
                schema.as_object_mut().map(|s| s.remove("default"));
            }
            if !FREE_TEXT_FIELDS.contains(&field.as_str()) {
                describe_string(schema);
            }
        }
        body["propertyNames"] = serde_json::json!({ "pattern": CLEAN });
        if body.get("additionalProperties").is_none() {
            body["additionalProperties"] =
                serde_json::json!({ "$ref": "#/components/schemas/Ignored" });
        }
    }
    schemas["Ignored"] = serde_json::json!({
        "description": "A key the service does not read: ignored, though like every key and \
            string of a body it holds no control characters.",
        "anyOf": [
            { "type": ["null", "boolean", "number"] },
            { "type": "string", "pattern": CLEAN },
            { "type": "array", "items": { "$ref": "#/components/schemas/Ignored" } },
            {
                "type": "object",
                "propertyNames": { "pattern": CLEAN },
                "additionalProperties": { "$ref": "#/components/schemas/Ignored" },
            },
        ],
    });
}

/// Whether a component schema requires any field.
fn components_required(components: &Value, name: &str) -> bool {
    components[name]["required"]
        .as_array()
        .is_some_and(|r| !r.is_empty())
}

/// A string input's pattern, unless its type gave one (or a format that says more).
fn describe_string(schema: &mut Value) {
    let is_string = match &schema["type"] {
        Value::String(t) => t == "string",
        Value::Array(ts) => ts.iter().any(|t| t == "string"),
        _ => false,
    };
    if !is_string || schema.get("pattern").is_some() || schema.get("format").is_some() {
        return;
    }
    let required = schema["minLength"].as_u64().is_some_and(|n| n > 0);
    schema["pattern"] = (if required { NOT_BLANK } else { CLEAN }).into();
}

/// A view that flattens others in (`#[serde(flatten)]`) is one object on the wire, but the
/// derive describes it as `allOf` its parts, and parts that are each closed admit no object
/// at all. Every `allOf` of the document is such a view: it becomes one closed object with
/// the parts' properties, and a part no other schema names leaves the components.
fn merge_flattened(doc: Document) -> Value {
    let mut json = serde_json::to_value(&doc).expect("the document serialises");
    let components = json["components"]["schemas"].clone();
    let mut parts = BTreeSet::new();
    merge_all_of(&mut json, &components, &mut parts);
    let text = json.to_string();
    let schemas = json["components"]["schemas"]
        .as_object_mut()
        .expect("the document has schemas");
    for part in parts {
        if !text.contains(&format!("\"#/components/schemas/{part}\"")) {
            schemas.remove(&part);
        }
    }
    json
}

fn merge_all_of(node: &mut Value, components: &Value, parts: &mut BTreeSet<String>) {
    match node {
        Value::Array(items) => {
            for item in items {
                merge_all_of(item, components, parts);
            }
        }
        Value::Object(map) => {
            for child in map.values_mut() {
                merge_all_of(child, components, parts);
            }
            let Some(Value::Array(all_of)) = map.remove("allOf") else {
                return;
            };
            let mut properties = Map::new();
            let mut required = Vec::new();
            for mut part in all_of {
                if let Some(name) = part["$ref"].as_str() {
                    let name = name.trim_start_matches("#/components/schemas/").to_owned();
                    part = components[&name].clone();
                    merge_all_of(&mut part, components, parts);
                    parts.insert(name);
                }
                assert_eq!(
                    part["type"], "object",
                    "a flattened part is an object: {part}"
                );
                if let Some(p) = part["properties"].as_object() {
                    properties.extend(p.clone());
                }
                if let Some(r) = part["required"].as_array() {
                    required.extend(r.iter().cloned());
                }
            }
            map.insert("type".into(), "object".into());
            map.insert("properties".into(), properties.into());
            if !required.is_empty() {
                map.insert("required".into(), required.into());
            }
            map.insert("additionalProperties".into(), false.into());
        }
        _ => {}
    }
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
