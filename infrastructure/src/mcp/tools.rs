//! A server's tools as Berth keeps them: name, description and input schema, with the
//! schema bounded so that one odd tool cannot bloat the log.

use berth_domain::server::{Tool, MAX_INPUT_SCHEMA_BYTES};
use serde_json::Value;

/// The tool as recorded.
pub(super) fn recorded(tool: &rmcp::model::Tool) -> Tool {
    Tool {
        name: tool.name.to_string(),
        description: tool.description.as_ref().map(|d| d.to_string()),
        input_schema: input_schema(&tool.name, &tool.input_schema),
    }
}

/// A tool's `inputSchema` as kept: no larger than [`MAX_INPUT_SCHEMA_BYTES`]; a larger one
/// is left out (and logged), not refused, so one odd tool does not keep a server from
/// running.
fn input_schema(tool: &str, schema: &serde_json::Map<String, Value>) -> Option<Value> {
    let schema = Value::Object(schema.clone());
    let size = serde_json::to_vec(&schema).map_or(usize::MAX, |bytes| bytes.len());
    if size > MAX_INPUT_SCHEMA_BYTES {
        tracing::warn!(
            tool,
            size,
            "a tool's inputSchema is too large to keep; left out"
        );
        return None;
    }
    Some(schema)
}
