//! EWS SOAP faults and response messages, read leniently.
//!
//! EWS answers request-level failures with an HTTP 500 `s:Fault` (`faultcode`, `faultstring`,
//! `detail/e:ResponseCode`) and item-level failures with `ResponseClass="Error"` messages
//! (`m:MessageText`, `m:ResponseCode`, optional `MessageXml`). Pasted SOAP is often truncated or
//! not well-formed, so the elements are located by local name rather than by a strict XML parse.

use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

/// One EWS error found in a SOAP body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct EwsError {
    /// The response code (`ErrorImpersonateUserDenied`, …).
    pub code: String,
    /// The message text or fault string.
    #[serde(default)]
    pub message: String,
    /// `BackOffMilliseconds` from `MessageXml`, when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub back_off_ms: Option<u64>,
    /// Whether it came from a SOAP fault (request-level) rather than a response message.
    #[serde(default)]
    pub fault: bool,
}

fn re(p: &str) -> Option<Regex> {
    Regex::new(p).ok()
}

static FAULTCODE: LazyLock<Option<Regex>> =
    LazyLock::new(|| re(r"<faultcode[^>]*>\s*(?:[\w.-]+:)?(\w+)\s*</faultcode>"));
static FAULTSTRING: LazyLock<Option<Regex>> =
    LazyLock::new(|| re(r"<faultstring[^>]*>([^<]*)</faultstring>"));
static RESPONSE_CODE: LazyLock<Option<Regex>> = LazyLock::new(|| {
    re(r"<(?:[\w.-]+:)?ResponseCode[^>]*>\s*(\w+)\s*</(?:[\w.-]+:)?ResponseCode>")
});
static MESSAGE_TEXT: LazyLock<Option<Regex>> = LazyLock::new(|| {
    re(r"<(?:[\w.-]+:)?(?:MessageText|Message)[^>]*>([^<]*)</(?:[\w.-]+:)?(?:MessageText|Message)>")
});
static BACKOFF: LazyLock<Option<Regex>> =
    LazyLock::new(|| re(r#"Name="BackOffMilliseconds"[^>]*>\s*(\d+)"#));

/// Whether the text looks like a SOAP envelope or EWS XML.
pub fn looks_like_soap(text: &str) -> bool {
    text.contains("Envelope") && text.contains('<') || text.contains("ResponseCode>")
}

/// Extracts every EWS error (fault codes and non-success response codes).
pub fn parse_soap(text: &str) -> Vec<EwsError> {
    let mut out: Vec<EwsError> = Vec::new();
    let back_off_ms = BACKOFF
        .as_ref()
        .and_then(|r| r.captures(text))
        .and_then(|c| c.get(1))
        .and_then(|m| m.as_str().parse().ok());
    let fault_string = FAULTSTRING
        .as_ref()
        .and_then(|r| r.captures(text))
        .and_then(|c| c.get(1))
        .map(|m| m.as_str().trim().to_owned());
    if let Some(code) = FAULTCODE
        .as_ref()
        .and_then(|r| r.captures(text))
        .and_then(|c| c.get(1))
    {
        out.push(EwsError {
            code: code.as_str().to_owned(),
            message: fault_string.clone().unwrap_or_default(),
            back_off_ms,
            fault: true,
        });
    }
    let messages: Vec<String> = MESSAGE_TEXT
        .as_ref()
        .map(|r| {
            r.captures_iter(text)
                .filter_map(|c| c.get(1).map(|m| m.as_str().trim().to_owned()))
                .collect()
        })
        .unwrap_or_default();
    if let Some(r) = RESPONSE_CODE.as_ref() {
        for (i, c) in r.captures_iter(text).enumerate() {
            let Some(code) = c.get(1).map(|m| m.as_str()) else {
                continue;
            };
            if code == "NoError" {
                continue;
            }
            if let Some(existing) = out.iter_mut().find(|e| e.code == code) {
                if existing.message.is_empty() {
                    existing.message = messages.get(i).cloned().unwrap_or_default();
                }
                continue;
            }
            out.push(EwsError {
                code: code.to_owned(),
                message: messages
                    .get(i)
                    .cloned()
                    .or_else(|| fault_string.clone())
                    .unwrap_or_default(),
                back_off_ms,
                fault: false,
            });
        }
    }
    // A fault code like `s:Client` with the real code in detail: prefer the detail code.
    if out.len() > 1
        && out
            .first()
            .is_some_and(|e| e.fault && !e.code.starts_with("Error"))
    {
        out.remove(0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_with_backoff() {
        let xml = r#"<?xml version="1.0" encoding="utf-8"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><s:Fault><faultcode xmlns:a="http://schemas.microsoft.com/exchange/services/2006/types">a:ErrorServerBusy</faultcode><faultstring xml:lang="en-US">The server cannot service this request right now. Try again later.</faultstring><detail><e:ResponseCode xmlns:e="http://schemas.microsoft.com/exchange/services/2006/errors">ErrorServerBusy</e:ResponseCode><e:Message xmlns:e="http://schemas.microsoft.com/exchange/services/2006/errors">The server cannot service this request right now. Try again later.</e:Message><t:MessageXml xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types"><t:Value Name="BackOffMilliseconds">297749</t:Value></t:MessageXml></detail></s:Fault></s:Body></s:Envelope>"#;
        let e = parse_soap(xml);
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].code, "ErrorServerBusy");
        assert!(e[0].fault);
        assert_eq!(e[0].back_off_ms, Some(297749));
    }

    #[test]
    fn response_message_error() {
        let xml = r#"<m:GetFolderResponseMessage ResponseClass="Error"><m:MessageText>The specified folder could not be found in the store.</m:MessageText><m:ResponseCode>ErrorFolderNotFound</m:ResponseCode></m:GetFolderResponseMessage><m:ResponseCode>NoError</m:ResponseCode>"#;
        let e = parse_soap(xml);
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].code, "ErrorFolderNotFound");
        assert_eq!(
            e[0].message,
            "The specified folder could not be found in the store."
        );
    }
}
