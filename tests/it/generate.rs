//! Seeded generators of hostile input for `generated_input.rs`: strings (empty, huge,
//! control characters, near-valid values), numbers at the edges, nested JSON, mutated
//! bodies, percent-encoded path segments and queries.

use rand::Rng;
use rand::rngs::StdRng;
use serde_json::{Map, Value, json};

/// A string a careless or hostile caller might send.
pub fn string(rng: &mut StdRng) -> String {
    let pick =
        |rng: &mut StdRng, options: &[&str]| options[rng.random_range(0..options.len())].to_owned();
    match rng.random_range(0..10) {
        0 => String::new(),
        1 => "x".repeat(rng.random_range(257..20_000)),
        2 => pick(
            rng,
            &[
                "\u{0}",
                "a\u{0}b",
                "\r\n",
                "x\r\nInjected: 1",
                "\u{1b}[31m",
                "\u{7f}",
                "\u{85}",
                "\t",
            ],
        ),
        3 => pick(
            rng,
            &[
                "premium",
                "basic",
                "3tb",
                "gold-ultra",
                "otun",
                "obox",
                "vpn_user",
                "trial",
                "gift",
                "stripe",
                "apple",
            ],
        ),
        4 => pick(
            rng,
            &[
                "ap-northeast-1",
                "us-east-1",
                "mars-1",
                "../../etc/passwd",
                "'; drop table resources; --",
            ],
        ),
        5 => pick(
            rng,
            &["a@b.c", "no-at", "a@b@c", "a b@c.d", "@", "x@y\r\nBcc: z"],
        ),
        6 => pick(
            rng,
            &[
                "2026-01-01T00:00:00Z",
                "9999-12-31T23:59:59Z",
                "0000-01-01T00:00:00Z",
                "yesterday",
                "2026-13-45T99:99:99Z",
            ],
        ),
        7 => "é✓🦀".repeat(rng.random_range(1..200)),
        8 => uuid::Uuid::new_v4().to_string(),
        _ => (0..rng.random_range(1..40))
            .map(|_| char::from(rng.random_range(0u8..128)))
            .collect(),
    }
}

/// A number at the edges.
pub fn number(rng: &mut StdRng) -> Value {
    match rng.random_range(0..12) {
        0 => json!(i64::MAX),
        1 => json!(i64::MIN),
        2 => json!(u64::MAX),
        3 => json!(1e300),
        4 => json!(-1e300),
        5 => json!(1e-300),
        6 => json!(0),
        7 => json!(-1),
        8 => json!(0.5),
        9 => json!(9_223_372_036_854_775_807i64 - 1),
        10 => json!(rng.random_range(-100_000i64..100_000)),
        _ => json!(f64::MAX),
    }
}

/// Any JSON value, nested up to `depth`.
pub fn value(rng: &mut StdRng, depth: u32) -> Value {
    match rng.random_range(0..if depth == 0 { 5 } else { 8 }) {
        0 => Value::Null,
        1 => json!(rng.random_bool(0.5)),
        2 | 3 => number(rng),
        4 => json!(string(rng)),
        5 => Value::Array(
            (0..rng.random_range(0..4))
                .map(|_| value(rng, depth - 1))
                .collect(),
        ),
        6 => {
            let mut map = Map::new();
            for _ in 0..rng.random_range(0..4) {
                map.insert(
                    string(rng).chars().take(40).collect(),
                    value(rng, depth - 1),
                );
            }
            Value::Object(map)
        }
        _ => deep(rng.random_range(10..300)),
    }
}

/// Nesting past any sane depth (and past serde_json's own limit, 128).
pub fn deep(levels: usize) -> Value {
    let mut v = json!(1);
    for i in 0..levels {
        v = if i % 2 == 0 {
            json!([v])
        } else {
            json!({"a": v})
        };
    }
    v
}

/// A valid body with one part changed, an extra field, or something else entirely.
pub fn mutate(rng: &mut StdRng, template: &Value) -> String {
    let mut body = template.clone();
    match rng.random_range(0..10) {
        0 => return random_bytes(rng),
        1 => return value(rng, 3).to_string(),
        2 => {
            body.as_object_mut()
                .unwrap()
                .insert(string(rng).chars().take(30).collect(), value(rng, 3));
        }
        _ => {
            let map = body.as_object_mut().unwrap();
            let keys: Vec<String> = map.keys().cloned().collect();
            let key = keys[rng.random_range(0..keys.len())].clone();
            if rng.random_bool(0.1) {
                map.remove(&key);
            } else {
                map.insert(key, value(rng, 3));
            }
        }
    }
    body.to_string()
}

pub fn random_bytes(rng: &mut StdRng) -> String {
    let raw: Vec<u8> = (0..rng.random_range(0..200))
        .map(|_| rng.random())
        .collect();
    String::from_utf8_lossy(&raw).into_owned()
}

/// A path segment: any bytes, percent-encoded (so invalid UTF-8 and NUL reach the router).
pub fn segment(rng: &mut StdRng) -> String {
    let bytes: Vec<u8> = match rng.random_range(0..4) {
        0 => string(rng).into_bytes(),
        1 => (0..rng.random_range(1..12)).map(|_| rng.random()).collect(),
        2 => uuid::Uuid::new_v4().to_string().into_bytes(),
        _ => b"u-1".to_vec(),
    };
    let mut out = String::new();
    for b in bytes.iter().take(3000) {
        if b.is_ascii_alphanumeric() || *b == b'-' {
            out.push(char::from(*b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    if out.is_empty() { "%00".into() } else { out }
}

pub fn query(rng: &mut StdRng, keys: &[&str]) -> String {
    let mut pairs = Vec::new();
    for k in keys {
        if rng.random_bool(0.6) {
            pairs.push(format!("{k}={}", segment(rng)));
        }
    }
    pairs.join("&")
}
