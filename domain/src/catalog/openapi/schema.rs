//! References within an OpenAPI document (`#/components/…`), followed: a tool's input
//! schema must stand alone, since a client sees only the tool.

use serde_json::{Map, Value};

/// How deep schemas may nest once references are inlined.
const MAX_DEPTH: usize = 32;

/// How many references in a row one value may go through.
const MAX_HOPS: usize = 16;

/// The most JSON values one schema may hold once its references are inlined: a schema
/// that refers to the same large one many times over, layer upon layer, would otherwise
/// grow exponentially from a few kilobytes.
const MAX_NODES: usize = 50_000;

/// The target of a reference, as a JSON pointer into the document.
fn target<'a>(document: &'a Value, reference: &str) -> Result<&'a Value, String> {
    let pointer = reference.strip_prefix('#').ok_or_else(|| {
        format!("`{reference}` points outside the document; only `#/…` references are followed")
    })?;
    document
        .pointer(pointer)
        .ok_or_else(|| format!("`{reference}` points at nothing in the document"))
}

fn reference(value: &Value) -> Option<&str> {
    value.get("$ref").and_then(Value::as_str)
}

/// `value`, or what its `$ref` (and that one's, and so on) points at.
pub fn resolve(document: &Value, value: &Value) -> Result<Value, String> {
    let mut current = value;
    for _ in 0..MAX_HOPS {
        match reference(current) {
            Some(r) => current = target(document, r)?,
            None => return Ok(current.clone()),
        }
    }
    Err(format!("more than {MAX_HOPS} references in a row"))
}

/// `schema` with every reference replaced by what it points at. A schema that refers to
/// itself (a tree, a linked list) is cut where it recurs: that part accepts any value.
pub fn inline(document: &Value, schema: &Value) -> Result<Value, String> {
    let mut walk = Walk {
        trail: Vec::new(),
        nodes: 0,
    };
    inline_at(document, schema, &mut walk, 0)
}

/// Where an inlining is: the references it is inside, and how much it has written.
struct Walk {
    trail: Vec<String>,
    nodes: usize,
}

fn inline_at(
    document: &Value,
    value: &Value,
    walk: &mut Walk,
    depth: usize,
) -> Result<Value, String> {
    if depth > MAX_DEPTH {
        return Err(format!("schemas nest more than {MAX_DEPTH} levels deep"));
    }
    walk.nodes += 1;
    if walk.nodes > MAX_NODES {
        return Err(format!(
            "the schema holds more than {MAX_NODES} values once its references are inlined"
        ));
    }
    match value {
        Value::Object(object) => {
            if let Some(r) = reference(value) {
                if walk.trail.iter().any(|t| t == r) {
                    return Ok(Value::Object(Map::from_iter([(
                        "description".to_owned(),
                        Value::String(format!("(recursive: {r})")),
                    )])));
                }
                let pointed = target(document, r)?;
                walk.trail.push(r.to_owned());
                let resolved = inline_at(document, pointed, walk, depth + 1);
                walk.trail.pop();
                let mut resolved = resolved?;
                // 3.1 allows keywords beside `$ref`; they add to the target.
                if let Value::Object(target) = &mut resolved {
                    for (k, v) in object.iter().filter(|(k, _)| k.as_str() != "$ref") {
                        target.insert(k.clone(), inline_at(document, v, walk, depth + 1)?);
                    }
                }
                return Ok(resolved);
            }
            let mut out = Map::new();
            for (k, v) in object {
                out.insert(k.clone(), inline_at(document, v, walk, depth + 1)?);
            }
            Ok(Value::Object(out))
        }
        Value::Array(items) => items
            .iter()
            .map(|v| inline_at(document, v, walk, depth + 1))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        other => Ok(other.clone()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn references_are_inlined_and_recursion_is_cut() {
        let document = json!({"components": {"schemas": {
            "Pet": {"type": "object", "properties": {
                "category": {"$ref": "#/components/schemas/Category"},
                "parent": {"$ref": "#/components/schemas/Pet"}
            }},
            "Category": {"type": "object", "properties": {"name": {"type": "string"}}}
        }}});
        let pet = inline(&document, &json!({"$ref": "#/components/schemas/Pet"})).unwrap();
        assert_eq!(
            pet["properties"]["category"]["properties"]["name"]["type"],
            "string"
        );
        assert_eq!(
            pet["properties"]["parent"]["description"],
            "(recursive: #/components/schemas/Pet)"
        );
        assert!(!pet.to_string().contains("$ref"));
    }

    #[test]
    fn references_that_multiply_are_refused_before_they_grow() {
        // Each layer refers to the one below four times: 4^16 copies of the bottom.
        let mut schemas = serde_json::Map::new();
        schemas.insert("L0".into(), json!({"type": "string"}));
        for i in 1..=16 {
            let below = json!({"$ref": format!("#/components/schemas/L{}", i - 1)});
            schemas.insert(
                format!("L{i}"),
                json!({"type": "object", "properties": {"a": below, "b": below, "c": below, "d": below}}),
            );
        }
        let document = json!({"components": {"schemas": schemas}});
        let started = std::time::Instant::now();
        let refused = inline(&document, &json!({"$ref": "#/components/schemas/L16"}));
        assert!(refused.unwrap_err().contains("more than"));
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn references_outside_or_to_nothing_are_refused() {
        let document = json!({});
        let outside = inline(&document, &json!({"$ref": "other.yaml#/Pet"}));
        assert!(outside.unwrap_err().contains("outside the document"));
        let nothing = inline(&document, &json!({"$ref": "#/components/schemas/Gone"}));
        assert!(nothing.unwrap_err().contains("points at nothing"));
        let looping = json!({"a": {"$ref": "#/b"}, "b": {"$ref": "#/a"}});
        assert!(resolve(&looping, &json!({"$ref": "#/a"})).is_err());
    }
}
