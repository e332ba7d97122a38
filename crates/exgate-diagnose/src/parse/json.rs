//! Entra ID (token endpoint) and Microsoft Graph error bodies.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The Entra ID error body: `{"error": …, "error_description": "AADSTS…", "error_codes": […], …}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct EntraError {
    /// OAuth `error` (`invalid_client`, `invalid_grant`, …).
    #[serde(default)]
    pub error: String,
    /// `error_description`, including the AADSTS code and the trace lines.
    #[serde(default)]
    pub error_description: String,
    /// `error_codes`: the AADSTS numbers.
    #[serde(default)]
    pub error_codes: Vec<u32>,
    /// `suberror`, when present (`basic_action`, `token_expired`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suberror: Option<String>,
    /// `trace_id`, for support cases.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// `correlation_id`, for support cases.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
}

/// A Microsoft Graph (or Outlook REST / AAD Graph `odata.error`) error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct GraphError {
    /// `error.code` (`ErrorAccessDenied`, `InvalidAuthenticationToken`, …).
    pub code: String,
    /// `error.message` (or `message.value` in the `odata.error` shape).
    #[serde(default)]
    pub message: String,
}

fn str_of(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str).map(str::to_owned)
}

/// Parses an Entra error body. `None` unless it is a JSON object whose `error` is a string.
pub fn parse_entra_error(body: &str) -> Option<EntraError> {
    let v: Value = serde_json::from_str(body.trim()).ok()?;
    entra_from_value(&v)
}

pub(crate) fn entra_from_value(v: &Value) -> Option<EntraError> {
    let obj = v.as_object()?;
    let error = str_of(obj.get("error"))?;
    let error_codes = obj
        .get("error_codes")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_u64)
                .filter_map(|n| u32::try_from(n).ok())
                .collect()
        })
        .unwrap_or_default();
    Some(EntraError {
        error,
        error_description: str_of(obj.get("error_description")).unwrap_or_default(),
        error_codes,
        suberror: str_of(obj.get("suberror")),
        trace_id: str_of(obj.get("trace_id")),
        correlation_id: str_of(obj.get("correlation_id")),
    })
}

/// Parses a Graph error body (`{"error":{"code":…,"message":…}}` or `{"odata.error":…}`).
pub fn parse_graph_error(body: &str) -> Option<GraphError> {
    let v: Value = serde_json::from_str(body.trim()).ok()?;
    graph_from_value(&v)
}

pub(crate) fn graph_from_value(v: &Value) -> Option<GraphError> {
    let obj = v.as_object()?;
    let inner = obj
        .get("error")
        .filter(|e| e.is_object())
        .or_else(|| obj.get("odata.error"))?
        .as_object()?;
    let code = str_of(inner.get("code"))?;
    let message = match inner.get("message") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Object(m)) => str_of(m.get("value")).unwrap_or_default(),
        _ => String::new(),
    };
    Some(GraphError { code, message })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entra_body() {
        let e = parse_entra_error(r#"{"error":"invalid_grant","error_description":"AADSTS50173: The provided grant has expired","error_codes":[50173],"trace_id":"t","correlation_id":"c"}"#).unwrap();
        assert_eq!(e.error, "invalid_grant");
        assert_eq!(e.error_codes, vec![50173]);
        assert_eq!(e.trace_id.as_deref(), Some("t"));
        assert!(parse_entra_error(r#"{"error":{"code":"x"}}"#).is_none());
        assert!(parse_entra_error("not json").is_none());
    }

    #[test]
    fn graph_bodies() {
        let g = parse_graph_error(
            r#"{"error":{"code":"ErrorAccessDenied","message":"Access to OData is disabled."}}"#,
        )
        .unwrap();
        assert_eq!(g.code, "ErrorAccessDenied");
        let g = parse_graph_error(r#"{"odata.error":{"code":"Authorization_RequestDenied","message":{"lang":"en","value":"Insufficient privileges to complete the operation."}}}"#).unwrap();
        assert_eq!(g.code, "Authorization_RequestDenied");
        assert_eq!(
            g.message,
            "Insufficient privileges to complete the operation."
        );
        assert!(parse_graph_error(r#"{"error":"invalid_client"}"#).is_none());
    }
}
