//! A server's tools as Berth keeps them: name, description and input schema, with the
//! schema bounded so that one odd tool cannot bloat the log.

use berth_domain::server::Tool;
use serde_json::Value;

/// The tool as recorded (an input schema too large to keep is left out, and logged).
pub(super) fn recorded(tool: &rmcp::model::Tool) -> Tool {
    let kept = Tool::kept(
        tool.name.to_string(),
        tool.description.as_ref().map(|d| d.to_string()),
        Value::Object(tool.input_schema.as_ref().clone()),
    );
    if kept.input_schema.is_none() {
        tracing::warn!(
            tool = %tool.name,
            "a tool's inputSchema is too large to keep; left out"
        );
    }
    kept
}
