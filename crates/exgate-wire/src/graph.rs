//! Microsoft Graph (and Outlook REST, AAD Graph `odata.error`) error bodies.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A Graph error: `{"error":{"code", "message", "innerError":{...}}}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GraphError {
    /// `error.code`, e.g. `ErrorAccessDenied`.
    pub code: String,
    /// `error.message` (or `message.value` in the `odata.error` shape).
    #[serde(default)]
    pub message: String,
    /// `error.innerError.code`, when present.
    #[serde(default)]
    pub inner_code: Option<String>,
    /// `error.innerError.request-id`.
    #[serde(default)]
    pub request_id: Option<String>,
    /// `error.innerError.client-request-id`.
    #[serde(default)]
    pub client_request_id: Option<String>,
    /// `error.innerError.date`.
    #[serde(default)]
    pub date: Option<String>,
}

fn str_of(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str).map(str::to_owned)
}

impl GraphError {
    /// Parses a Graph error body; `None` for anything else.
    pub fn parse(body: &[u8]) -> Option<Self> {
        let v: Value = serde_json::from_slice(body).ok()?;
        Self::from_value(&v)
    }

    /// Reads a Graph error from a parsed JSON value (`error` object or `odata.error`).
    pub fn from_value(v: &Value) -> Option<Self> {
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
        let ie = inner.get("innerError").or_else(|| inner.get("innererror"));
        let field = |k: &str| str_of(ie.and_then(|i| i.get(k)));
        Some(GraphError {
            code,
            message,
            inner_code: field("code"),
            request_id: field("request-id"),
            client_request_id: field("client-request-id"),
            date: field("date"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies() {
        let g = GraphError::parse(
            br#"{"error":{"code":"ErrorAccessDenied","message":"Access to OData is disabled."}}"#,
        )
        .unwrap();
        assert_eq!(g.code, "ErrorAccessDenied");
        let g = GraphError::parse(br#"{"odata.error":{"code":"Authorization_RequestDenied","message":{"lang":"en","value":"Insufficient privileges to complete the operation."}}}"#).unwrap();
        assert_eq!(g.code, "Authorization_RequestDenied");
        assert_eq!(
            g.message,
            "Insufficient privileges to complete the operation."
        );
        let g = GraphError::parse(br#"{"error":{"code":"TooManyRequests","innerError":{"code":"429","date":"2024-01-01T10:00:00","request-id":"rid"},"message":"Please retry again later."}}"#).unwrap();
        assert_eq!(g.inner_code.as_deref(), Some("429"));
        assert_eq!(g.request_id.as_deref(), Some("rid"));
        assert!(GraphError::parse(br#"{"error":"invalid_client"}"#).is_none());
        assert!(GraphError::parse(b"not json").is_none());
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in ".{0,200}") {
            let _ = GraphError::parse(s.as_bytes());
        }
    }
}
