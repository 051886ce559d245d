//! References within an OpenAPI document (`#/components/…`), followed: a tool's input
//! schema must stand alone, since a client sees only the tool.

use serde_json::{Map, Value};

/// How deep schemas may nest once references are inlined.
const MAX_DEPTH: usize = 32;

/// How many references in a row one value may go through.
const MAX_HOPS: usize = 16;

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
    let mut trail = Vec::new();
    inline_at(document, schema, &mut trail, 0)
}

fn inline_at(
    document: &Value,
    value: &Value,
    trail: &mut Vec<String>,
    depth: usize,
) -> Result<Value, String> {
    if depth > MAX_DEPTH {
        return Err(format!("schemas nest more than {MAX_DEPTH} levels deep"));
    }
    match value {
        Value::Object(object) => {
            if let Some(r) = reference(value) {
                if trail.iter().any(|t| t == r) {
                    return Ok(Value::Object(Map::from_iter([(
                        "description".to_owned(),
                        Value::String(format!("(recursive: {r})")),
                    )])));
                }
                let pointed = target(document, r)?;
                trail.push(r.to_owned());
                let resolved = inline_at(document, pointed, trail, depth + 1);
                trail.pop();
                let mut resolved = resolved?;
                // 3.1 allows keywords beside `$ref`; they add to the target.
                if let Value::Object(target) = &mut resolved {
                    for (k, v) in object.iter().filter(|(k, _)| k.as_str() != "$ref") {
                        target.insert(k.clone(), inline_at(document, v, trail, depth + 1)?);
                    }
                }
                return Ok(resolved);
            }
            let mut out = Map::new();
            for (k, v) in object {
                out.insert(k.clone(), inline_at(document, v, trail, depth + 1)?);
            }
            Ok(Value::Object(out))
        }
        Value::Array(items) => items
            .iter()
            .map(|v| inline_at(document, v, trail, depth + 1))
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
