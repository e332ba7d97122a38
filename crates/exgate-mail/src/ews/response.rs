//! Response envelopes: `ServerVersionInfo`, SOAP faults and `ResponseMessages`.

use crate::evidence::{EwsResponseError, ServerVersionInfo, SoapFault};
use crate::xml::{self, Element};

/// A parsed SOAP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SoapResponse {
    /// `ServerVersionInfo` from the SOAP header (EWS attribute form or the Autodiscover
    /// child-element form).
    pub server_version: Option<ServerVersionInfo>,
    /// The body: a fault or the operation's response element.
    pub body: SoapBody,
}

/// What the SOAP body held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SoapBody {
    /// A `s:Fault`.
    Fault(SoapFault),
    /// The first element of `s:Body`, e.g. `m:GetFolderResponse`.
    Response(Element),
}

/// One `*ResponseMessage`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseMessage {
    /// `ResponseClass`: `Success`, `Warning` or `Error`.
    pub class: String,
    /// `ResponseCode` (`NoError` on success).
    pub code: String,
    /// `MessageText`.
    pub text: Option<String>,
    /// `MessageXml` values.
    pub message_xml: Vec<(String, String)>,
    /// The whole message element, for operation-specific content.
    pub element: Element,
}

impl ResponseMessage {
    /// True for `ResponseClass="Success"` with `NoError` (what exchangelib requires).
    pub fn is_success(&self) -> bool {
        self.class == "Success" && (self.code == "NoError" || self.code.is_empty())
    }

    /// The error view of this message, for evidence.
    pub fn to_error(&self) -> EwsResponseError {
        EwsResponseError {
            response_class: self.class.clone(),
            response_code: self.code.clone(),
            message_text: self.text.clone(),
            message_xml: self.message_xml.clone(),
        }
    }
}

/// Why a body is not a usable SOAP response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    /// Not XML.
    #[error(transparent)]
    Xml(#[from] xml::XmlError),
    /// XML, but not a SOAP envelope with a body.
    #[error("not a SOAP envelope: {0}")]
    NotSoap(&'static str),
}

fn num(v: Option<&str>) -> Option<u32> {
    v.and_then(|s| s.trim().parse().ok())
}

/// Reads `ServerVersionInfo` in either form.
pub fn server_version(info: &Element) -> ServerVersionInfo {
    let get = |name: &str| {
        info.attr(name)
            .map(str::to_owned)
            .or_else(|| info.child_text(name))
    };
    ServerVersionInfo {
        major: num(get("MajorVersion").as_deref()),
        minor: num(get("MinorVersion").as_deref()),
        major_build: num(get("MajorBuildNumber").as_deref()),
        minor_build: num(get("MinorBuildNumber").as_deref()),
        version: get("Version"),
    }
}

/// `MessageXml` content as (name, value): `t:Value Name="X"` gives `X`; other children give
/// their own local name (`LineNumber`, `Violation`, `FieldURI`...).
pub fn message_xml_values(mx: &Element) -> Vec<(String, String)> {
    mx.children
        .iter()
        .map(|c| {
            let name = if c.name == "Value" {
                c.attr("Name").unwrap_or("Value").to_owned()
            } else {
                c.name.clone()
            };
            let value = if c.text.trim().is_empty() {
                c.attr("FieldURI").unwrap_or_default().to_owned()
            } else {
                c.text.trim().to_owned()
            };
            (name, value)
        })
        .collect()
}

fn fault(f: &Element) -> SoapFault {
    let faultcode = f.child_text("faultcode").unwrap_or_default();
    let detail = f.child("detail");
    let response_code = detail
        .and_then(|d| d.child_text("ResponseCode"))
        .or_else(|| {
            faultcode
                .rsplit(':')
                .next()
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        });
    SoapFault {
        faultstring: f.child_text("faultstring").unwrap_or_default(),
        response_code,
        message: detail.and_then(|d| d.child_text("Message")),
        message_xml: detail
            .and_then(|d| d.child("MessageXml"))
            .map(message_xml_values)
            .unwrap_or_default(),
        faultcode,
    }
}

/// Parses a SOAP response body (HTTP 200 or 500).
pub fn parse_response(body: &str) -> Result<SoapResponse, ResponseError> {
    let mut root = xml::parse(body)?;
    if root.name != "Envelope" {
        return Err(ResponseError::NotSoap("the root element is not Envelope"));
    }
    let server_version = root
        .child("Header")
        .and_then(|h| h.child("ServerVersionInfo"))
        .map(server_version);
    let b = root
        .children
        .iter_mut()
        .find(|c| c.name == "Body")
        .ok_or(ResponseError::NotSoap("no Body element"))?;
    // The tree is ours: the first element of the body is moved out, not copied.
    let first = std::mem::take(&mut b.children)
        .into_iter()
        .next()
        .ok_or(ResponseError::NotSoap("the Body is empty"))?;
    let body = if first.name == "Fault" {
        SoapBody::Fault(fault(&first))
    } else {
        SoapBody::Response(first)
    };
    Ok(SoapResponse {
        server_version,
        body,
    })
}

/// One `*ResponseMessage` element, read and kept.
fn message(m: Element) -> ResponseMessage {
    ResponseMessage {
        class: m.attr("ResponseClass").unwrap_or_default().to_owned(),
        code: m.child_text("ResponseCode").unwrap_or_default(),
        text: m.child_text("MessageText"),
        message_xml: m
            .child("MessageXml")
            .map(message_xml_values)
            .unwrap_or_default(),
        element: m,
    }
}

/// All `*ResponseMessage` elements of an operation response, in order.
pub fn response_messages(resp: &Element) -> Vec<ResponseMessage> {
    let Some(msgs) = resp.child("ResponseMessages") else {
        return Vec::new();
    };
    msgs.children.iter().map(|m| message(m.clone())).collect()
}

/// The first `*ResponseMessage` of an operation response, moved out of it rather than copied:
/// the same message as `response_messages(&resp).into_iter().next()`, for callers that need
/// only that one (every single-item operation).
pub fn first_response_message(resp: Element) -> Option<ResponseMessage> {
    let mut resp = resp;
    let msgs = resp
        .children
        .iter_mut()
        .find(|c| c.name == "ResponseMessages")?;
    let first = std::mem::take(&mut msgs.children).into_iter().next()?;
    Some(message(first))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const BUSY: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/">
  <s:Header><h:ServerVersionInfo MajorVersion="15" MinorVersion="20" MajorBuildNumber="8466" MinorBuildNumber="32" Version="V2018_01_08" xmlns:h="http://schemas.microsoft.com/exchange/services/2006/types"/></s:Header>
  <s:Body>
    <s:Fault>
      <faultcode xmlns:a="http://schemas.microsoft.com/exchange/services/2006/types">a:ErrorServerBusy</faultcode>
      <faultstring xml:lang="en-US">The server cannot service this request right now. Try again later.</faultstring>
      <detail>
        <e:ResponseCode xmlns:e="http://schemas.microsoft.com/exchange/services/2006/errors">ErrorServerBusy</e:ResponseCode>
        <e:Message xmlns:e="http://schemas.microsoft.com/exchange/services/2006/errors">The server cannot service this request right now. Try again later.</e:Message>
        <t:MessageXml xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types">
          <t:Value Name="BackOffMilliseconds">297749</t:Value>
        </t:MessageXml>
      </detail>
    </s:Fault>
  </s:Body>
</s:Envelope>"#;

    #[test]
    fn parses_server_busy_fault_with_back_off_and_version() {
        let r = parse_response(BUSY).unwrap();
        let v = r.server_version.unwrap();
        assert_eq!(
            (v.major, v.minor, v.major_build, v.minor_build),
            (Some(15), Some(20), Some(8466), Some(32))
        );
        assert_eq!(v.version.as_deref(), Some("V2018_01_08"));
        let SoapBody::Fault(f) = r.body else {
            panic!("expected a fault")
        };
        assert_eq!(f.faultcode, "a:ErrorServerBusy");
        assert_eq!(f.response_code.as_deref(), Some("ErrorServerBusy"));
        assert_eq!(
            f.message_xml,
            vec![("BackOffMilliseconds".to_owned(), "297749".to_owned())]
        );
    }

    #[test]
    fn falls_back_to_faultcode_local_name_without_detail() {
        let doc = r#"<?xml version="1.0"?><s:Envelope xmlns:s="x"><s:Body><s:Fault><faultcode>a:ErrorSchemaValidation</faultcode><faultstring>bad</faultstring></s:Fault></s:Body></s:Envelope>"#;
        let SoapBody::Fault(f) = parse_response(doc).unwrap().body else {
            panic!("expected a fault")
        };
        assert_eq!(f.response_code.as_deref(), Some("ErrorSchemaValidation"));
    }

    #[test]
    fn reads_per_item_errors_with_message_xml() {
        let doc = r#"<?xml version="1.0"?><s:Envelope xmlns:s="x"><s:Body><m:GetFolderResponse><m:ResponseMessages>
<m:GetFolderResponseMessage ResponseClass="Error"><m:MessageText>The specified folder could not be found in the store.</m:MessageText><m:ResponseCode>ErrorFolderNotFound</m:ResponseCode><m:DescriptiveLinkKey>0</m:DescriptiveLinkKey><m:MessageXml><t:FieldURI FieldURI="folder:Foo"/></m:MessageXml></m:GetFolderResponseMessage>
<m:GetFolderResponseMessage ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode></m:GetFolderResponseMessage>
</m:ResponseMessages></m:GetFolderResponse></s:Body></s:Envelope>"#;
        let r = parse_response(doc).unwrap();
        assert_eq!(r.server_version, None);
        let SoapBody::Response(el) = r.body else {
            panic!("expected a response")
        };
        let msgs = response_messages(&el);
        assert_eq!(msgs.len(), 2);
        assert!(!msgs[0].is_success());
        assert_eq!(msgs[0].code, "ErrorFolderNotFound");
        assert_eq!(
            msgs[0].message_xml,
            vec![("FieldURI".to_owned(), "folder:Foo".to_owned())]
        );
        assert!(msgs[1].is_success());
    }

    #[test]
    fn rejects_non_soap() {
        assert!(parse_response("<html><body>Object moved</body></html>").is_err());
        assert!(parse_response("<s:Envelope xmlns:s='x'><s:Body/></s:Envelope>").is_err());
        assert!(parse_response("plain text").is_err());
    }

    #[test]
    fn first_response_message_is_the_first_of_response_messages() {
        let doc = r#"<s:Envelope xmlns:s="x"><s:Body><m:GetFolderResponse><m:ResponseMessages><m:GetFolderResponseMessage ResponseClass="Error"><m:MessageText>Not found.</m:MessageText><m:ResponseCode>ErrorFolderNotFound</m:ResponseCode><m:MessageXml><t:Value Name="X">1</t:Value></m:MessageXml></m:GetFolderResponseMessage><m:GetFolderResponseMessage ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode></m:GetFolderResponseMessage></m:ResponseMessages></m:GetFolderResponse></s:Body></s:Envelope>"#;
        let SoapBody::Response(el) = parse_response(doc).unwrap().body else {
            panic!("expected a response")
        };
        let first = first_response_message(el.clone()).unwrap();
        assert_eq!(Some(&first), response_messages(&el).first());
        assert_eq!(first.code, "ErrorFolderNotFound");
        assert_eq!(first.text.as_deref(), Some("Not found."));
        assert_eq!(first.message_xml, vec![("X".to_owned(), "1".to_owned())]);
        assert_eq!(first_response_message(Element::default()), None);
    }

    /// `parse_response` as it was written before it moved the body out of the tree: by copy.
    fn parse_response_by_copy(body: &str) -> Result<SoapResponse, ResponseError> {
        let root = xml::parse(body)?;
        if root.name != "Envelope" {
            return Err(ResponseError::NotSoap("the root element is not Envelope"));
        }
        let server_version = root
            .child("Header")
            .and_then(|h| h.child("ServerVersionInfo"))
            .map(server_version);
        let b = root
            .child("Body")
            .ok_or(ResponseError::NotSoap("no Body element"))?;
        let first = b
            .children
            .first()
            .ok_or(ResponseError::NotSoap("the Body is empty"))?;
        let body = if first.name == "Fault" {
            SoapBody::Fault(fault(first))
        } else {
            SoapBody::Response(first.clone())
        };
        Ok(SoapResponse {
            server_version,
            body,
        })
    }

    fn message_xml() -> impl Strategy<Value = String> {
        ("Success|Warning|Error", "NoError|Error[A-Z][a-z]{0,8}", "[ a-z]{0,6}").prop_map(
            |(class, code, text)| {
                format!(
                    "<m:GetFolderResponseMessage ResponseClass=\"{class}\"><m:MessageText>{text}</m:MessageText><m:ResponseCode>{code}</m:ResponseCode><m:MessageXml><t:Value Name=\"N\">{text}</t:Value></m:MessageXml></m:GetFolderResponseMessage>"
                )
            },
        )
    }

    /// SOAP-like documents: well-formed envelopes with or without a header, a fault, a
    /// response with any number of messages, or an empty body; and the same pieces in any
    /// order, so that every branch of the readers is reached.
    fn soapish() -> impl Strategy<Value = String> {
        let header = prop_oneof![
            Just(String::new()),
            Just("<s:Header><h:ServerVersionInfo MajorVersion=\"15\" MinorVersion=\"2\"/></s:Header>".to_owned()),
            Just("<s:Header/>".to_owned()),
        ];
        let content = prop_oneof![
            Just(String::new()),
            Just("<s:Fault><faultcode>a:ErrorX</faultcode><faultstring>f</faultstring></s:Fault>".to_owned()),
            proptest::collection::vec(message_xml(), 0..4).prop_map(|m| format!(
                "<m:GetFolderResponse><m:ResponseMessages>{}</m:ResponseMessages></m:GetFolderResponse>",
                m.concat()
            )),
            Just("<m:GetFolderResponse/>".to_owned()),
            Just("<m:GetFolderResponse><m:ResponseMessages/></m:GetFolderResponse>".to_owned()),
        ];
        let well_formed = (header, content, proptest::collection::vec(message_xml(), 0..2))
            .prop_map(|(h, c, extra)| {
                format!(
                    "<?xml version=\"1.0\"?><s:Envelope xmlns:s=\"x\">{h}<s:Body>{c}{}</s:Body></s:Envelope>",
                    extra.concat()
                )
            });
        let piece = prop_oneof![
            Just("<s:Envelope xmlns:s=\"x\">".to_owned()),
            Just("</s:Envelope>".to_owned()),
            Just("<s:Body>".to_owned()),
            Just("</s:Body>".to_owned()),
            Just("<m:ResponseMessages>".to_owned()),
            Just("</m:ResponseMessages>".to_owned()),
            message_xml(),
            "[ a-z<>/]{0,5}",
        ];
        let shuffled = proptest::collection::vec(piece, 0..10).prop_map(|p| p.concat());
        prop_oneof![3 => well_formed, 1 => shuffled]
    }

    proptest! {
        #[test]
        fn never_panics(s in ".{0,400}") {
            if let Ok(r) = parse_response(&s)
                && let SoapBody::Response(e) = &r.body
            {
                let _ = response_messages(e);
                let _ = first_response_message(e.clone());
            }
        }

        #[test]
        fn moving_out_of_the_tree_reads_what_copying_read(s in soapish()) {
            let moved = parse_response(&s);
            prop_assert_eq!(&moved, &parse_response_by_copy(&s));
            if let Ok(SoapResponse { body: SoapBody::Response(e), .. }) = moved {
                let all = response_messages(&e);
                prop_assert_eq!(first_response_message(e), all.into_iter().next());
            }
        }

        #[test]
        fn fault_fields_round_trip(code in "Error[A-Za-z]{1,20}", text in "[ -~]{0,60}", ms in 0u64..10_000_000) {
            let doc = format!(
                "<?xml version=\"1.0\"?><s:Envelope xmlns:s=\"x\"><s:Body><s:Fault><faultcode>a:{code}</faultcode><faultstring>{}</faultstring><detail><e:ResponseCode>{code}</e:ResponseCode><t:MessageXml><t:Value Name=\"BackOffMilliseconds\">{ms}</t:Value></t:MessageXml></detail></s:Fault></s:Body></s:Envelope>",
                crate::xml::esc(&text)
            );
            let SoapBody::Fault(f) = parse_response(&doc).unwrap().body else {
                return Err(TestCaseError::fail("no fault"));
            };
            prop_assert_eq!(f.response_code.as_deref(), Some(code.as_str()));
            prop_assert_eq!(f.faultstring, text.trim().to_owned());
            prop_assert_eq!(f.message_xml, vec![("BackOffMilliseconds".to_owned(), ms.to_string())]);
        }
    }
}
