//! Entra ID error bodies: `{"error": …, "error_description": "AADSTS…", "error_codes": […], …}`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// An Entra ID error body, every field as sent (empty when absent).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct EntraError {
    /// OAuth error code, such as `invalid_client` or `invalid_grant`.
    pub error: String,
    /// Human-readable description, starting with `AADSTS<code>:`, with trace lines.
    pub error_description: String,
    /// AADSTS codes (from `error_codes`, or from the description when that is absent).
    pub error_codes: Vec<u32>,
    /// Server timestamp, `yyyy-MM-dd HH:mm:ssZ`.
    pub timestamp: String,
    /// Trace id of the request on the Entra side.
    pub trace_id: String,
    /// Correlation id (echoes `client-request-id`).
    pub correlation_id: String,
    /// Link to the error lookup page.
    pub error_uri: String,
    /// Finer error classification (`token_expired`, `consent_required`, `basic_action`, ...).
    pub suberror: String,
    /// Claims challenge (conditional access), raw JSON text.
    pub claims: String,
}

impl EntraError {
    /// Parses an Entra error body. `None` unless it is a JSON object whose `error` is a string.
    pub fn parse(body: &[u8]) -> Option<EntraError> {
        let value: Value = serde_json::from_slice(body).ok()?;
        Self::from_value(&value)
    }

    /// Reads an Entra error from a parsed JSON value.
    pub fn from_value(value: &Value) -> Option<EntraError> {
        let obj = value.as_object()?;
        let text = |key: &str| -> String {
            match obj.get(key) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            }
        };
        let error = match obj.get("error") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => return None,
        };
        let mut error_codes: Vec<u32> = obj
            .get("error_codes")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|c| c.as_u64().and_then(|n| u32::try_from(n).ok()))
                    .collect()
            })
            .unwrap_or_default();
        let error_description = text("error_description");
        if error_codes.is_empty() {
            error_codes = aadsts_codes_in(&error_description);
        }
        Some(EntraError {
            error,
            error_description,
            error_codes,
            timestamp: text("timestamp"),
            trace_id: text("trace_id"),
            correlation_id: text("correlation_id"),
            error_uri: text("error_uri"),
            suberror: text("suberror"),
            claims: text("claims"),
        })
    }

    /// The first line of `error_description` (without trace and correlation ids).
    pub fn summary(&self) -> &str {
        self.error_description
            .lines()
            .next()
            .unwrap_or(&self.error_description)
    }
}

/// Every `AADSTS<digits>` number of a text, in order, each once.
pub fn aadsts_codes_in(text: &str) -> Vec<u32> {
    let mut codes = Vec::new();
    let mut rest = text;
    while let Some(pos) = rest.find("AADSTS") {
        rest = rest.get(pos + "AADSTS".len()..).unwrap_or("");
        let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
        if let Ok(code) = digits.parse::<u32>()
            && !codes.contains(&code)
        {
            codes.push(code);
        }
    }
    codes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_and_codes() {
        let e = EntraError::parse(br#"{"error":"invalid_grant","error_description":"AADSTS50173: The provided grant has expired","error_codes":[50173],"trace_id":"t","correlation_id":"c"}"#).unwrap();
        assert_eq!(e.error, "invalid_grant");
        assert_eq!(e.error_codes, vec![50173]);
        assert_eq!(e.trace_id, "t");
        assert_eq!(e.summary(), "AADSTS50173: The provided grant has expired");
        assert!(EntraError::parse(br#"{"error":{"code":"x"}}"#).is_none());
        assert!(EntraError::parse(b"not json").is_none());
        // Codes from the description when the array is absent; several codes in one body.
        let e = EntraError::parse(br#"{"error":"invalid_client","error_description":"AADSTS70002: Error validating credentials. AADSTS50012: Client assertion is not within its valid time range."}"#).unwrap();
        assert_eq!(e.error_codes, vec![70002, 50012]);
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in ".{0,200}") {
            let _ = EntraError::parse(s.as_bytes());
            let _ = aadsts_codes_in(&s);
        }
    }
}
