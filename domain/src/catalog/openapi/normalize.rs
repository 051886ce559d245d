//! OpenAPI 3.0 schemas in 3.1's form, so one reader takes both: 3.0's `nullable: true`
//! becomes a `"null"` in `type`, and its boolean `exclusiveMinimum`/`exclusiveMaximum`
//! (modifiers of `minimum`/`maximum`) become the numbers 3.1 and JSON Schema use. Other
//! 3.0 keywords mean the same in 3.1.

use serde_json::{json, Value};

/// `document` with 3.0 schema keywords rewritten as 3.1's; a 3.1 document as it is.
pub fn to_3_1(document: &Value) -> Value {
    let mut document = document.clone();
    if document["openapi"]
        .as_str()
        .is_some_and(|v| v.starts_with("3.0."))
    {
        rewrite(&mut document);
    }
    document
}

fn rewrite(value: &mut Value) {
    match value {
        Value::Object(object) => {
            // Only the keyword: a property *named* `nullable` holds an object.
            let nullable = match object.get("nullable") {
                Some(Value::Bool(flag)) => {
                    let flag = *flag;
                    object.remove("nullable");
                    flag
                }
                _ => false,
            };
            if nullable {
                match object.get_mut("type") {
                    Some(Value::String(t)) => {
                        let t = t.clone();
                        object.insert("type".into(), json!([t, "null"]));
                    }
                    Some(Value::Array(types)) if !types.contains(&json!("null")) => {
                        types.push(json!("null"));
                    }
                    _ => {}
                }
            }
            for (flag, bound) in [
                ("exclusiveMinimum", "minimum"),
                ("exclusiveMaximum", "maximum"),
            ] {
                if let Some(Value::Bool(exclusive)) = object.get(flag).cloned() {
                    object.remove(flag);
                    if exclusive {
                        if let Some(limit) = object.remove(bound) {
                            object.insert(flag.into(), limit);
                        }
                    }
                }
            }
            object.values_mut().for_each(rewrite);
        }
        Value::Array(items) => items.iter_mut().for_each(rewrite),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_oh_keywords_take_their_three_one_form() {
        let document = json!({
            "openapi": "3.0.3",
            "components": {"schemas": {"Age": {
                "type": "integer", "nullable": true,
                "minimum": 0, "exclusiveMinimum": true,
                "maximum": 200, "exclusiveMaximum": false
            }}}
        });
        assert_eq!(
            to_3_1(&document)["components"]["schemas"]["Age"],
            json!({"type": ["integer", "null"], "exclusiveMinimum": 0, "maximum": 200})
        );
        // A 3.1 document is left alone.
        let modern = json!({"openapi": "3.1.0", "x": {"nullable": true}});
        assert_eq!(to_3_1(&modern), modern);
    }
}
