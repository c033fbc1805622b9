//! The document, shaped after the derive: what it cannot say. Flattened views become the one
//! closed object the wire carries, and the request schemas get the rules every input
//! meets in the extractors (`api::extract`).

use std::collections::BTreeSet;

use serde_json::{Map, Value};
use utoipa::openapi::OpenApi as Document;

use crate::extract::FREE_TEXT_FIELDS;

/// No control characters (`domain::input::is_clean`), as JSON Schema says it.
const CLEAN: &str = r"^[^\x00-\x1f\x7f-\x9f]*$";
/// Clean and not blank (`domain::input::id`): what a required id or name must be.
const NOT_BLANK: &str = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$";

/// What the extractors (`api::extract`) enforce on every input, written into the request
/// schemas so the document states it once instead of each type repeating it: no string,
/// key or unknown key's value holds a control character (the free-text fields excepted),
/// a string that may not be empty may not be blank either, and keys the type does not read
/// are ignored (the schema `Ignored`), as the deployed clients' extra fields always were.
pub(super) fn describe_inputs(doc: &mut Value) {
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
pub(super) fn merge_flattened(doc: Document) -> Value {
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use domain::input::is_clean;

    fn matches(pattern: &str, s: &str) -> bool {
        jsonschema::validator_for(&json!({ "type": "string", "pattern": pattern }))
            .unwrap()
            .is_valid(&json!(s))
    }

    #[test]
    fn the_patterns_say_what_the_input_rules_do() {
        let samples = [
            "",
            " ",
            "a",
            " a ",
            "é",
            "x\u{b}",
            "\u{85}",
            "a\u{9f}",
            "\u{a0}",
            "a\u{2028}b",
            "\t",
            "\u{7f}",
            "ok-id_1",
            "\u{3000}",
        ];
        for s in samples {
            assert_eq!(matches(CLEAN, s), is_clean(s), "CLEAN on {s:?}");
            let id = is_clean(s) && !s.trim().is_empty();
            assert_eq!(matches(NOT_BLANK, s), id, "NOT_BLANK on {s:?}");
        }
    }

    #[test]
    fn a_flattened_view_becomes_one_closed_object() {
        let doc: Document = serde_json::from_value(json!({
            "openapi": "3.1.0",
            "info": { "title": "t", "version": "1" },
            "paths": {},
            "components": { "schemas": {
                "Part": { "type": "object", "required": ["a"],
                    "properties": { "a": { "type": "string" } } },
                "View": { "allOf": [
                    { "$ref": "#/components/schemas/Part" },
                    { "type": "object", "required": ["b"],
                      "properties": { "b": { "type": "integer" } } },
                ] },
            } },
        }))
        .unwrap();
        let merged = merge_flattened(doc);
        let schemas = &merged["components"]["schemas"];
        assert_eq!(
            schemas["View"],
            json!({
                "type": "object",
                "properties": { "a": { "type": "string" }, "b": { "type": "integer" } },
                "required": ["a", "b"],
                "additionalProperties": false,
            })
        );
        assert!(
            schemas.get("Part").is_none(),
            "a part nothing names is gone"
        );
    }

    #[test]
    fn a_request_body_gets_the_extractors_rules() {
        let mut doc = json!({
            "paths": { "/x": { "post": {
                "requestBody": { "content": { "application/json": {
                    "schema": { "$ref": "#/components/schemas/Body" } } } },
                "parameters": [{ "name": "q", "in": "query", "schema": { "type": "string" } }],
            } } },
            "components": { "schemas": { "Body": {
                "type": "object",
                "required": ["id"],
                "properties": {
                    "id": { "type": "string", "minLength": 1, "default": "" },
                    "note": { "type": ["string", "null"] },
                    "reason": { "type": ["string", "null"] },
                },
            } } },
        });
        describe_inputs(&mut doc);
        let op = &doc["paths"]["/x"]["post"];
        assert_eq!(op["requestBody"]["required"], json!(true));
        assert_eq!(op["parameters"][0]["schema"]["pattern"], json!(CLEAN));
        let body = &doc["components"]["schemas"]["Body"];
        assert_eq!(body["properties"]["id"]["pattern"], json!(NOT_BLANK));
        assert!(body["properties"]["id"].get("default").is_none());
        // Free text is cleaned by the use case, never refused.
        assert!(body["properties"]["reason"].get("pattern").is_none());
        assert_eq!(body["properties"]["note"].get("pattern"), None);
        assert_eq!(
            body["additionalProperties"],
            json!({ "$ref": "#/components/schemas/Ignored" })
        );
        assert!(doc["components"]["schemas"]["Ignored"]["anyOf"].is_array());
    }
}
