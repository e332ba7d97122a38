//! What a failed request leaves behind, as typed, serialisable data for the diagnosis engine.
//!
//! Evidence holds only what the *server* said (status, response headers, parsed fault or error
//! body, a bounded body excerpt) plus the request line. Request headers and bodies are never
//! recorded, so credentials cannot leak through it; `Set-Cookie` values are redacted as well.

use serde::{Deserialize, Serialize};

use crate::credentials::Protocol;

/// Longest body excerpt kept, in characters.
pub const BODY_EXCERPT_CHARS: usize = 2048;

/// The broad class of a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorKind {
    /// HTTP 401: the credentials were missing or rejected.
    Unauthorized,
    /// HTTP 403, or an access-denied code: authenticated but not allowed.
    Forbidden,
    /// The server asked us to slow down (429, 503, `ErrorServerBusy`) and retries ran out.
    Throttled,
    /// An EWS SOAP fault (HTTP 500 with a `s:Fault` body).
    SoapFault,
    /// An EWS response message with `ResponseClass="Error"`.
    EwsResponse,
    /// A Graph error body (`{"error":{"code":...}}`).
    Graph,
    /// An Autodiscover error (POX `Error`, SOAP `ErrorCode`, JSON `ErrorCode`) or no method worked.
    Autodiscover,
    /// Any other unexpected HTTP status.
    Http,
    /// The request never got an HTTP answer (DNS, connect, TLS, timeout).
    Transport,
    /// The answer could not be understood.
    InvalidResponse,
    /// The credential source failed to produce a header.
    Credentials,
    /// The caller's input or configuration was unusable.
    Config,
}

/// Why a request never got an HTTP answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransportKind {
    /// The host name did not resolve.
    Dns,
    /// The TCP connection failed (refused, unreachable).
    Connect,
    /// The TLS handshake failed (certificate, protocol).
    Tls,
    /// No answer in time.
    Timeout,
    /// Sending the request or reading the answer failed.
    Io,
    /// The answer exceeded the size limit.
    TooLarge,
}

pub use exgate_wire::diagnostics::MsDiagnostic;
pub use exgate_wire::graph::GraphError;
pub use exgate_wire::www_authenticate::Challenge;

/// `ServerVersionInfo` from an EWS or Autodiscover SOAP header.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerVersionInfo {
    /// Major version (15 for Exchange 2013 and later).
    pub major: Option<u32>,
    /// Minor version (0 = 2013, 1 = 2016, 2 = 2019, 20 = Exchange Online).
    pub minor: Option<u32>,
    /// Major build number.
    pub major_build: Option<u32>,
    /// Minor build number.
    pub minor_build: Option<u32>,
    /// Schema version string, e.g. `V2018_01_08` or `Exchange2016`.
    pub version: Option<String>,
}

/// A parsed EWS SOAP fault (HTTP 500).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SoapFault {
    /// `faultcode` as sent, e.g. `a:ErrorServerBusy`.
    pub faultcode: String,
    /// `faultstring`.
    pub faultstring: String,
    /// `detail/e:ResponseCode`, falling back to the local part of `faultcode`.
    pub response_code: Option<String>,
    /// `detail/e:Message`.
    pub message: Option<String>,
    /// `MessageXml` values as (name, value): `t:Value Name=...` and named children such as
    /// `LineNumber`.
    pub message_xml: Vec<(String, String)>,
}

/// An EWS response message whose `ResponseClass` is not `Success`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EwsResponseError {
    /// `Error` or `Warning`.
    pub response_class: String,
    /// `ResponseCode`, e.g. `ErrorFolderNotFound`.
    pub response_code: String,
    /// `MessageText`.
    pub message_text: Option<String>,
    /// `MessageXml` values as (name, value).
    pub message_xml: Vec<(String, String)>,
}

/// An Autodiscover error (any of the three forms).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutodiscoverError {
    /// The error code (`600`, `InvalidUser`, `InvalidProtocol`, ...).
    pub code: String,
    /// The message text.
    pub message: Option<String>,
}

/// Everything known about a failed request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ErrorEvidence {
    /// The broad class; `None` only while evidence is being assembled.
    pub kind: Option<ErrorKind>,
    /// The protocol of the request.
    pub protocol: Option<Protocol>,
    /// The operation (`GetFolder`, `GET /users/{id}`, `autodiscover-json`, ...).
    pub operation: Option<String>,
    /// The credential mode used (`bearer`, `basic`, `empty-bearer`, `none`).
    pub auth_mode: Option<String>,
    /// HTTP method.
    pub method: Option<String>,
    /// Request URL.
    pub url: Option<String>,
    /// HTTP status, when an answer came.
    pub status: Option<u16>,
    /// Every response header in order, repeated names kept; `Set-Cookie` values redacted.
    pub headers: Vec<(String, String)>,
    /// Raw `x-ms-diagnostics` header.
    pub x_ms_diagnostics: Option<String>,
    /// Parsed `x-ms-diagnostics`.
    pub diagnostics: Option<MsDiagnostic>,
    /// Parsed `WWW-Authenticate` challenges (all headers).
    pub challenges: Vec<Challenge>,
    /// `ServerVersionInfo`, when the response had one.
    pub server_version: Option<ServerVersionInfo>,
    /// The SOAP fault.
    pub soap_fault: Option<SoapFault>,
    /// The failing EWS response message.
    pub ews_response: Option<EwsResponseError>,
    /// The Graph error body.
    pub graph_error: Option<GraphError>,
    /// The Autodiscover error.
    pub autodiscover_error: Option<AutodiscoverError>,
    /// The beginning of the response body (at most [`BODY_EXCERPT_CHARS`] characters).
    pub body_excerpt: Option<String>,
    /// Why no answer came.
    pub transport: Option<TransportKind>,
    /// Transport error text.
    pub transport_message: Option<String>,
    /// How many attempts were made (retries included).
    pub attempts: u32,
    /// Every Autodiscover step taken, in order (empty for other protocols).
    pub trail: Vec<TrailEntry>,
}

/// One Autodiscover step.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrailEntry {
    /// `json`, `soap` or `pox`.
    pub method: String,
    /// The URL tried.
    pub url: String,
    /// The address looked up.
    pub email: String,
    /// HTTP status, when an answer came.
    pub status: Option<u16>,
    /// What happened (`found`, `redirect-url`, `redirect-address`, `error`, ...).
    pub outcome: String,
    /// Detail: the error code, redirect target or found EWS URL.
    pub detail: Option<String>,
}

impl ErrorEvidence {
    /// All values of a response header (case-insensitive name).
    pub fn header_values<'a, 'n>(
        &'a self,
        name: &'n str,
    ) -> impl Iterator<Item = &'a str> + use<'a, 'n> {
        self.headers
            .iter()
            .filter(move |(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The first value of a response header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.header_values(name).next()
    }

    /// The EWS or Graph error code, whichever is present (SOAP fault first).
    pub fn service_code(&self) -> Option<&str> {
        self.soap_fault
            .as_ref()
            .and_then(|f| f.response_code.as_deref())
            .or(self.ews_response.as_ref().map(|e| e.response_code.as_str()))
            .or(self.graph_error.as_ref().map(|g| g.code.as_str()))
            .or(self.autodiscover_error.as_ref().map(|a| a.code.as_str()))
    }

    /// The wait the server asked for: EWS `BackOffMilliseconds`, or `Retry-After` (seconds or
    /// HTTP-date, counted from now).
    pub fn advertised_wait(&self) -> Option<std::time::Duration> {
        crate::retry::advertised_wait(self, std::time::SystemTime::now())
    }

    /// A `MessageXml` value by name from the SOAP fault or the response message.
    pub fn message_xml_value(&self, name: &str) -> Option<&str> {
        let fault = self.soap_fault.iter().flat_map(|f| f.message_xml.iter());
        let msg = self.ews_response.iter().flat_map(|e| e.message_xml.iter());
        fault
            .chain(msg)
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Records the response headers (redacting cookies) and derived fields.
    pub(crate) fn set_headers(&mut self, headers: &reqwest::header::HeaderMap) {
        self.headers = headers
            .iter()
            .map(|(k, v)| {
                let name = k.as_str().to_owned();
                let value = if name.eq_ignore_ascii_case("set-cookie") {
                    match v.to_str().ok().and_then(|s| s.split_once('=')) {
                        Some((cookie, _)) => format!("{cookie}=[REDACTED]"),
                        None => "[REDACTED]".to_owned(),
                    }
                } else {
                    String::from_utf8_lossy(v.as_bytes()).into_owned()
                };
                (name, value)
            })
            .collect();
        self.x_ms_diagnostics = self.header("x-ms-diagnostics").map(str::to_owned);
        self.diagnostics = self
            .x_ms_diagnostics
            .as_deref()
            .and_then(exgate_wire::diagnostics::parse_ms_diagnostics);
        self.challenges =
            exgate_wire::www_authenticate::parse_all(self.header_values("www-authenticate"));
    }

    /// Stores a bounded excerpt of the body.
    pub(crate) fn set_body(&mut self, body: &[u8]) {
        if body.is_empty() {
            return;
        }
        let text = String::from_utf8_lossy(body);
        self.body_excerpt = Some(text.chars().take(BODY_EXCERPT_CHARS).collect());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_exchange_online_combined_challenge() {
        let v = r#"Bearer client_id="00000002-0000-0ff1-ce00-000000000000", trusted_issuers="00000001-0000-0000-c000-000000000000@*", token_types="app_asserted_user_v1 service_asserted_app_v1", authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", error="invalid_token",Basic Realm="""#;
        let c = exgate_wire::www_authenticate::parse_all([v]);
        assert_eq!(c.len(), 2, "{c:?}");
        assert_eq!(c[0].scheme, "Bearer");
        assert_eq!(
            c[0].param("client_id"),
            Some("00000002-0000-0ff1-ce00-000000000000")
        );
        assert_eq!(
            c[0].param("token_types"),
            Some("app_asserted_user_v1 service_asserted_app_v1")
        );
        assert_eq!(c[0].param("error"), Some("invalid_token"));
        assert_eq!(c[1].scheme, "Basic");
        assert_eq!(c[1].param("realm"), Some(""));
    }

    #[test]
    fn parses_onprem_two_headers_with_comma_inside_quotes() {
        let b = r#"Bearer client_id="00000002-0000-0ff1-ce00-000000000000", trusted_issuers="00000001-0000-0000-c000-000000000000@5de110f8-2e0f-4d45-891d-bcf2218e253d,00000004-0000-0ff1-ce00-000000000000@contoso.com", token_types="app_asserted_user_v1 service_asserted_app_v1""#;
        let c = exgate_wire::www_authenticate::parse_all([b, r#"Basic realm="mail.contoso.com""#]);
        assert_eq!(c.len(), 2);
        assert!(
            c[0].param("trusted_issuers")
                .unwrap()
                .contains("@contoso.com")
        );
        assert_eq!(c[0].param("authorization_uri"), None);
        assert_eq!(c[1].param("realm"), Some("mail.contoso.com"));
    }

    #[test]
    fn parses_x_ms_diagnostics() {
        let d = exgate_wire::diagnostics::parse_ms_diagnostics(
            r#"2000003;reason="The hostname component of the audience claim value is invalid. Expected 'https://mail.contoso.com'. Actual 'http://mail.contoso.com'.";error_category="invalid_resource""#,
        )
        .unwrap();
        assert_eq!(d.code.as_deref(), Some("2000003"));
        assert!(d.reason.starts_with("The hostname component"));
        assert_eq!(d.category.as_deref(), Some("invalid_resource"));
        assert_eq!(exgate_wire::diagnostics::parse_ms_diagnostics(""), None);
    }

    #[test]
    fn parses_graph_error_with_inner_error() {
        let g = GraphError::parse(br#"{"error":{"code":"TooManyRequests","innerError":{"code":"429","date":"2024-01-01T10:00:00","message":"Please retry after","request-id":"rid","status":"429"},"message":"Please retry again later."}}"#).unwrap();
        assert_eq!(g.code, "TooManyRequests");
        assert_eq!(g.inner_code.as_deref(), Some("429"));
        assert_eq!(g.request_id.as_deref(), Some("rid"));
        assert_eq!(g.date.as_deref(), Some("2024-01-01T10:00:00"));
        assert_eq!(GraphError::parse(b"{\"value\":[]}"), None);
        assert_eq!(GraphError::parse(b"not json"), None);
    }

    #[test]
    fn evidence_round_trips_through_json() {
        let mut ev = ErrorEvidence {
            kind: Some(ErrorKind::Unauthorized),
            protocol: Some(Protocol::Ews),
            status: Some(401),
            transport: None,
            attempts: 1,
            ..ErrorEvidence::default()
        };
        ev.headers = vec![("x-ms-diagnostics".into(), "2000001;reason=\"x\"".into())];
        ev.diagnostics = exgate_wire::diagnostics::parse_ms_diagnostics("2000001;reason=\"x\"");
        ev.soap_fault = Some(SoapFault {
            faultcode: "a:ErrorServerBusy".into(),
            message_xml: vec![("BackOffMilliseconds".into(), "5".into())],
            ..SoapFault::default()
        });
        let json = serde_json::to_string(&ev).unwrap();
        let back: ErrorEvidence = serde_json::from_str(&json).unwrap();
        assert_eq!(back, ev);
        assert!(json.contains("\"kind\":\"unauthorized\""));
        let sparse: ErrorEvidence = serde_json::from_str(r#"{"status":503}"#).unwrap();
        assert_eq!(sparse.status, Some(503));
    }

    proptest! {
        #[test]
        fn header_parsers_never_panic(s in ".{0,200}") {
            let _ = exgate_wire::www_authenticate::parse_all([s.as_str()]);
            let _ = exgate_wire::diagnostics::parse_ms_diagnostics(&s);
            let _ = GraphError::parse(s.as_bytes());
        }

        #[test]
        fn challenge_params_round_trip(
            scheme in "[A-Za-z]{1,10}",
            params in proptest::collection::vec(("[a-z_]{1,10}", "[ !#-\\[\\]-~]{0,20}"), 0..5),
        ) {
            let rendered: Vec<String> = params.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
            let header = format!("{scheme} {}", rendered.join(", "));
            let c = exgate_wire::www_authenticate::parse_all([header.as_str()]);
            prop_assert_eq!(c.len(), 1);
            prop_assert_eq!(&c[0].scheme, &scheme);
            prop_assert_eq!(&c[0].params, &params);
        }
    }
}
