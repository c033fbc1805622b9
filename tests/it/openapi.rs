//! The API described (CONTRACTS.md §4.3): the document covers exactly the API routes the
//! router answers (the HTML pages are routed apart and left out), an OpenAPI validator
//! accepts it, and every JSON response the suite
//! receives through its helpers (the golden ones included) validates against the schema
//! the document gives for that route and status (`conforms`).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp};

/// The document as the service builds it.
fn document() -> Value {
    fulfillment::api::openapi()
}

/// `(METHOD, path)` of every operation in a document.
fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if [
                "get", "put", "post", "delete", "patch", "head", "options", "trace",
            ]
            .contains(&method.as_str())
            {
                ops.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    ops
}

/// `(METHOD, path)` of every route in an axum router, read from its `Debug` form (axum
/// has no other way to list them). A method answered by a handler shows as `Route`.
fn routed(router: &axum::Router) -> BTreeSet<(String, String)> {
    let text = format!("{router:?}");
    // The router's own routes come before its fallback's.
    let text = text.split("fallback_router:").next().unwrap();
    let mut paths = HashMap::new();
    let mut methods = HashMap::new();
    for part in text.split("RouteId(").skip(1) {
        let (id, rest) = part.split_once("): ").unwrap();
        if let Some(path) = rest.strip_prefix('"') {
            paths.insert(id.to_owned(), path.split('"').next().unwrap().to_owned());
        } else if let Some(body) = rest.strip_prefix("MethodRouter(MethodRouter { ") {
            let fields = body.split(", fallback").next().unwrap();
            let set: Vec<String> = fields
                .split(", ")
                .filter_map(|f| f.split_once(": "))
                .filter(|(_, v)| *v != "None")
                .map(|(m, _)| m.to_uppercase())
                .collect();
            methods.insert(id.to_owned(), set);
        }
    }
    let mut out = BTreeSet::new();
    for (id, path) in paths {
        for m in methods.get(&id).into_iter().flatten() {
            out.insert((m.clone(), path.clone()));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_lists_exactly_the_routes_of_the_router() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let router = fulfillment::api::router(app.running().state.clone());
    let pages: axum::Router =
        fulfillment::api::pages::routes().with_state(app.running().state.clone());
    let pages = routed(&pages);
    assert!(
        pages.contains(&("GET".into(), "/".into()))
            && pages.contains(&("GET".into(), "/api/docs".into())),
        "{pages:?}"
    );
    let routes: BTreeSet<_> = routed(&router).difference(&pages).cloned().collect();
    let doc = documented(&document());
    assert!(
        routes.len() > 30,
        "the router's routes were not read: {routes:?}"
    );
    assert!(doc.is_disjoint(&pages), "a page is in the document");
    for (_, path) in &doc {
        assert!(
            path.starts_with("/api/") || path == "/health" || path == "/ready",
            "{path} is not an API path"
        );
    }
    let undocumented: Vec<_> = routes.difference(&doc).collect();
    let unrouted: Vec<_> = doc.difference(&routes).collect();
    assert!(
        undocumented.is_empty(),
        "routes missing from the document: {undocumented:?}"
    );
    assert!(
        unrouted.is_empty(),
        "documented but not routed: {unrouted:?}"
    );

    // And the service serves that document.
    let served: Value = app
        .http
        .get(app.url("/api/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(served, document());
}

#[test]
fn the_document_is_openapi_3_1_with_every_scheme_and_stream() {
    let doc = document();
    assert_eq!(doc["openapi"], "3.1.0");
    let schemes: BTreeSet<&str> = doc["components"]["securitySchemes"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for s in [
        "user_jwt",
        "operator_jwt",
        "internal_secret",
        "node_credential",
        "event_ticket",
    ] {
        assert!(schemes.contains(s), "{s} missing");
    }
    let sse = &doc["paths"]["/api/v1/my/events"]["get"]["responses"]["200"]["content"];
    assert!(sse.get("text/event-stream").is_some(), "{sse}");
    // Every operation of the authenticated surfaces names its security, and every
    // response has a description.
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let public = path.starts_with("/api/v1/public") || !path.starts_with("/api/");
            let public = public || path == "/api/openapi.json";
            if !public {
                assert!(
                    op.get("security").is_some(),
                    "{method} {path} has no security"
                );
            }
            for (status, resp) in op["responses"].as_object().unwrap() {
                assert!(resp["description"].is_string(), "{method} {path} {status}");
            }
        }
    }
    insta::assert_json_snapshot!("openapi_document", doc);
}

/// `openapi-spec-validator` (PyPI), which `scripts/test` installs, accepts the document.
#[test]
fn an_openapi_validator_accepts_the_document() {
    let file = std::env::temp_dir().join(format!("openapi-{}.json", std::process::id()));
    std::fs::write(&file, serde_json::to_vec_pretty(&document()).unwrap()).unwrap();
    let out = std::process::Command::new("python3")
        .args(["-m", "openapi_spec_validator"])
        .arg(&file)
        .output()
        .expect("openapi-spec-validator is installed (scripts/test installs it)");
    let _ = std::fs::remove_file(&file);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("OK"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Validators of the document's response schemas, by operation and status.
struct Conformance {
    doc: Value,
    validators: Mutex<HashMap<(String, String, u16), Arc<jsonschema::Validator>>>,
}

fn conformance() -> &'static Conformance {
    static C: OnceLock<Conformance> = OnceLock::new();
    C.get_or_init(|| Conformance {
        doc: document(),
        validators: Mutex::new(HashMap::new()),
    })
}

/// The documented path that a concrete path matches.
fn template_of<'a>(doc: &'a Value, path: &str) -> Option<&'a str> {
    let path = path.split('?').next().unwrap();
    let segments: Vec<&str> = path.split('/').collect();
    doc["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .find(|t| {
            let ts: Vec<&str> = t.split('/').collect();
            ts.len() == segments.len()
                && ts
                    .iter()
                    .zip(&segments)
                    .all(|(t, s)| (t.starts_with('{') && !s.is_empty()) || t == s)
        })
}

/// Panics unless `body`, answered with `status` to `method path`, is what the document
/// says that route answers with that status. Paths the document does not list (probes of
/// unknown routes) are left to the tests of the fallback.
pub(crate) fn conforms(method: &str, path: &str, status: u16, body: &Value) {
    let c = conformance();
    let Some(template) = template_of(&c.doc, path) else {
        return;
    };
    let op = &c.doc["paths"][template][method.to_lowercase()];
    if op.is_null() {
        return; // 405: answered by the router, not an operation.
    }
    let response = &op["responses"][status.to_string()];
    assert!(
        !response.is_null(),
        "{method} {template} answered {status}, which the document does not list: {body}"
    );
    let Some(schema) = response["content"]["application/json"].get("schema") else {
        return;
    };
    let key = (method.to_owned(), template.to_owned(), status);
    // A test that panics elsewhere while holding the lock leaves the cache as good as it was.
    let cached = c
        .validators
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&key)
        .cloned();
    let validator = match cached {
        Some(v) => v,
        None => {
            let root = json!({
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "components": c.doc["components"],
                "allOf": [schema],
            });
            let v = Arc::new(
                jsonschema::options()
                    .should_validate_formats(true)
                    .build(&root)
                    .unwrap_or_else(|e| panic!("schema of {method} {template} {status}: {e}")),
            );
            c.validators
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(key, v.clone());
            v
        }
    };
    let errors: Vec<String> = validator
        .iter_errors(body)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{method} {path} → {status} does not match the document: {errors:#?}\n{body:#}"
    );
}

#[test]
fn conformance_catches_a_body_the_document_does_not_describe() {
    let ok = json!({"error": "no such node", "code": "node_not_found"});
    conforms("GET", "/api/v1/my/nodes/abc", 404, &ok);
    for bad in [
        json!({"error": "no such node"}),
        json!({"error": "x", "code": "y", "extra": 1}),
    ] {
        let caught =
            std::panic::catch_unwind(|| conforms("GET", "/api/v1/my/nodes/abc", 404, &bad));
        assert!(caught.is_err(), "{bad} passed");
    }
    let undocumented =
        std::panic::catch_unwind(|| conforms("GET", "/api/v1/my/nodes/abc", 418, &ok));
    assert!(undocumented.is_err());
    // Concrete paths find their templates; a query string is not part of the path.
    let doc = &conformance().doc;
    assert_eq!(
        template_of(doc, "/api/v1/my/nodes/x/migrate?a=b"),
        Some("/api/v1/my/nodes/{resource_id}/migrate")
    );
    assert_eq!(
        template_of(doc, "/api/v1/my/nodes/"),
        None,
        "an empty segment is no id"
    );
}
