//! `GET /api/docs`: the OpenAPI document, rendered on the server into a page of its own
//! (no script from elsewhere, nothing but the pages' own stylesheet).

use std::sync::OnceLock;

use askama::Template;
use axum::response::Response;
use serde_json::Value;

use super::{ASSETS, Assets};

struct ResponseRow {
    status: String,
    description: String,
    body: String,
    /// The schema's name, when the body is one of the document's schemas.
    link: Option<String>,
}

struct Operation {
    anchor: String,
    method: String,
    path: String,
    summary: String,
    security: String,
    params: Vec<String>,
    body: String,
    responses: Vec<ResponseRow>,
}

struct Tag {
    name: String,
    description: String,
    ops: Vec<Operation>,
}

struct SchemaRow {
    name: String,
    json: String,
}

#[derive(Template)]
#[template(path = "docs.html")]
struct DocsPage<'a> {
    assets: &'a Assets,
    openapi: String,
    version: String,
    description: String,
    tags: Vec<Tag>,
    schemas: Vec<SchemaRow>,
}

/// What a schema is called where it is used: its name when it is a reference.
fn schema_name(content: &Value) -> String {
    let Some((media, c)) = content.as_object().and_then(|m| m.iter().next()) else {
        return String::new();
    };
    let schema = &c["schema"];
    let name = schema["$ref"]
        .as_str()
        .map(|r| r.rsplit('/').next().unwrap_or(r).to_owned())
        .or_else(|| schema["type"].as_str().map(str::to_owned))
        .unwrap_or_else(|| "object".into());
    if media == "application/json" {
        name
    } else {
        format!("{media}: {name}")
    }
}

fn render(doc: &Value) -> DocsPage<'static> {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let mut tags: Vec<Tag> = doc["tags"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| Tag {
            name: text(&t["name"]),
            description: text(&t["description"]),
            ops: Vec::new(),
        })
        .collect();
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        for (method, op) in item.as_object().into_iter().flatten() {
            let tag = op["tags"][0].as_str().unwrap_or("other");
            let security = op["security"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s.as_object())
                .map(|s| s.keys().next().cloned().unwrap_or_else(|| "none".into()))
                .collect::<Vec<_>>()
                .join(" or ");
            let operation = Operation {
                anchor: format!("{method}-{path}").replace(['/', '{', '}'], "-"),
                method: method.clone(),
                path: path.clone(),
                summary: text(&op["summary"]),
                security,
                params: op["parameters"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|p| {
                        format!(
                            "{} ({}{})",
                            text(&p["name"]),
                            text(&p["in"]),
                            if p["required"] == true {
                                ", required"
                            } else {
                                ""
                            }
                        )
                    })
                    .collect(),
                body: schema_name(&op["requestBody"]["content"]),
                responses: op["responses"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(status, r)| ResponseRow {
                        status: status.clone(),
                        description: text(&r["description"]),
                        body: schema_name(&r["content"]),
                        link: r["content"]["application/json"]["schema"]["$ref"]
                            .as_str()
                            .and_then(|r| r.rsplit('/').next())
                            .map(str::to_owned),
                    })
                    .collect(),
            };
            match tags.iter_mut().find(|t| t.name == tag) {
                Some(t) => t.ops.push(operation),
                None => tags.push(Tag {
                    name: tag.into(),
                    description: String::new(),
                    ops: vec![operation],
                }),
            }
        }
    }
    DocsPage {
        assets: &ASSETS,
        openapi: text(&doc["openapi"]),
        version: text(&doc["info"]["version"]),
        description: text(&doc["info"]["description"]),
        tags,
        schemas: doc["components"]["schemas"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(name, s)| SchemaRow {
                name: name.clone(),
                json: serde_json::to_string_pretty(s).unwrap_or_default(),
            })
            .collect(),
    }
}

/// `GET /api/docs`.
pub async fn docs() -> Response {
    static PAGE: OnceLock<String> = OnceLock::new();
    let html = PAGE.get_or_init(|| {
        let doc = crate::api::openapi();
        render(&doc)
            .render()
            .unwrap_or_else(|e| format!("<p>{e}</p>"))
    });
    super::secure(axum::response::IntoResponse::into_response(
        axum::response::Html(html.as_str()),
    ))
}
