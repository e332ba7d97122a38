//! Request envelopes: SOAP 1.1 with `s:`/`m:`/`t:` prefixes, `RequestServerVersion`, optional
//! `ExchangeImpersonation` and `TimeZoneContext`, exactly in the shape exchangelib sends.

use serde::Serialize;

use crate::xml::esc;

/// SOAP 1.1 envelope namespace.
pub const NS_SOAP: &str = "http://schemas.xmlsoap.org/soap/envelope/";
/// EWS messages namespace (`m:`).
pub const NS_MESSAGES: &str = "http://schemas.microsoft.com/exchange/services/2006/messages";
/// EWS types namespace (`t:`).
pub const NS_TYPES: &str = "http://schemas.microsoft.com/exchange/services/2006/types";

/// The default `RequestServerVersion` (what exchangelib sends first; EXO accepts it).
pub const DEFAULT_SERVER_VERSION: &str = "Exchange2016";

/// Who to impersonate: exactly one `ConnectingSID` child.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", content = "value")]
pub enum ConnectingSid {
    /// `t:PrimarySmtpAddress`.
    PrimarySmtpAddress(String),
    /// `t:SmtpAddress` (any proxy address).
    SmtpAddress(String),
    /// `t:PrincipalName` (UPN).
    PrincipalName(String),
    /// `t:SID` in SDDL form (`S-1-5-21-...`).
    Sid(String),
}

impl ConnectingSid {
    fn element(&self) -> (&'static str, &str) {
        match self {
            ConnectingSid::PrimarySmtpAddress(v) => ("PrimarySmtpAddress", v),
            ConnectingSid::SmtpAddress(v) => ("SmtpAddress", v),
            ConnectingSid::PrincipalName(v) => ("PrincipalName", v),
            ConnectingSid::Sid(v) => ("SID", v),
        }
    }

    /// The value (address, UPN or SID).
    pub fn value(&self) -> &str {
        self.element().1
    }
}

/// SOAP header options of one request.
#[derive(Debug, Clone, Default)]
pub struct Header<'a> {
    /// `RequestServerVersion/@Version`.
    pub version: &'a str,
    /// `ExchangeImpersonation`, when acting as another mailbox with an app-only token.
    pub impersonation: Option<&'a ConnectingSid>,
    /// `TimeZoneContext/TimeZoneDefinition/@Id`.
    pub time_zone: Option<&'a str>,
}

/// Wraps an operation body (an `m:` element) in the SOAP envelope.
pub fn envelope(header: &Header<'_>, body: &str) -> String {
    let mut s = String::with_capacity(body.len() + 600);
    s.push_str("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n");
    s.push_str(&format!(
        "<s:Envelope xmlns:s=\"{NS_SOAP}\" xmlns:m=\"{NS_MESSAGES}\" xmlns:t=\"{NS_TYPES}\"><s:Header>"
    ));
    s.push_str(&format!(
        "<t:RequestServerVersion Version=\"{}\"/>",
        esc(header.version)
    ));
    if let Some(sid) = header.impersonation {
        let (name, value) = sid.element();
        s.push_str(&format!(
            "<t:ExchangeImpersonation><t:ConnectingSID><t:{name}>{}</t:{name}></t:ConnectingSID></t:ExchangeImpersonation>",
            esc(value)
        ));
    }
    if let Some(tz) = header.time_zone {
        s.push_str(&format!(
            "<t:TimeZoneContext><t:TimeZoneDefinition Id=\"{}\"/></t:TimeZoneContext>",
            esc(tz)
        ));
    }
    s.push_str("</s:Header><s:Body>");
    s.push_str(body);
    s.push_str("</s:Body></s:Envelope>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_matches_exchangelib_shape() {
        let sid = ConnectingSid::PrimarySmtpAddress("user@example.com".into());
        let h = Header {
            version: "Exchange2016",
            impersonation: Some(&sid),
            time_zone: Some("UTC"),
        };
        let e = envelope(&h, "<m:GetFolder/>");
        assert_eq!(
            e,
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\" xmlns:m=\"http://schemas.microsoft.com/exchange/services/2006/messages\" xmlns:t=\"http://schemas.microsoft.com/exchange/services/2006/types\"><s:Header><t:RequestServerVersion Version=\"Exchange2016\"/><t:ExchangeImpersonation><t:ConnectingSID><t:PrimarySmtpAddress>user@example.com</t:PrimarySmtpAddress></t:ConnectingSID></t:ExchangeImpersonation><t:TimeZoneContext><t:TimeZoneDefinition Id=\"UTC\"/></t:TimeZoneContext></s:Header><s:Body><m:GetFolder/></s:Body></s:Envelope>"
        );
    }

    #[test]
    fn each_connecting_sid_kind_uses_its_element_and_escapes() {
        for (sid, el) in [
            (ConnectingSid::SmtpAddress("a&b@x".into()), "SmtpAddress"),
            (
                ConnectingSid::PrincipalName("a&b@x".into()),
                "PrincipalName",
            ),
            (ConnectingSid::Sid("a&b@x".into()), "SID"),
        ] {
            let h = Header {
                version: DEFAULT_SERVER_VERSION,
                impersonation: Some(&sid),
                time_zone: None,
            };
            let e = envelope(&h, "");
            assert!(e.contains(&format!("<t:{el}>a&amp;b@x</t:{el}>")), "{e}");
            assert!(!e.contains("TimeZoneContext"));
        }
        let none = envelope(
            &Header {
                version: DEFAULT_SERVER_VERSION,
                ..Header::default()
            },
            "",
        );
        assert!(!none.contains("ExchangeImpersonation"));
    }
}
