//! Entra ID (token endpoint) and Microsoft Graph error bodies, as `exgate-wire` parses them.

use serde_json::Value;

pub use exgate_wire::entra::EntraError;
pub use exgate_wire::graph::GraphError;

/// Parses an Entra error body. `None` unless it is a JSON object whose `error` is a string.
pub fn parse_entra_error(body: &str) -> Option<EntraError> {
    EntraError::parse(body.trim().as_bytes())
}

pub(crate) fn entra_from_value(v: &Value) -> Option<EntraError> {
    EntraError::from_value(v)
}

/// Parses a Graph error body (`{"error":{"code":…,"message":…}}` or `{"odata.error":…}`).
pub fn parse_graph_error(body: &str) -> Option<GraphError> {
    GraphError::parse(body.trim().as_bytes())
}

pub(crate) fn graph_from_value(v: &Value) -> Option<GraphError> {
    GraphError::from_value(v)
}
