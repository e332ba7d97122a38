//! The Autodiscover client: JSON v2, then SOAP, then POX.
//!
//! Order (documented in `docs/mail.md`): for each method in turn — JSON v2
//! (`GET /autodiscover/autodiscover.json/v1.0/{email}?Protocol=EWS`, unauthenticated, what
//! Exchange Online and Exchange 2019 answer fastest), SOAP (`POST /autodiscover/autodiscover.svc`,
//! `GetUserSettings`, what exchangelib uses), POX (`POST /autodiscover/autodiscover.xml`, the
//! oldest form) — try each candidate origin (`https://{domain}`, then
//! `https://autodiscover.{domain}`, or the origins configured). A failure (including 401: it
//! does not mean bad credentials there) moves on to the next URL.
//!
//! Redirects (HTTP 301/302/307/308 `Location`, SOAP `RedirectUrl`/`RedirectAddress`, POX
//! `redirectUrl`/`redirectAddr`) are followed with these rules: at most `max_redirects` hops in
//! total, a URL is never visited twice for the same address, a redirect to the same address is
//! refused, and redirect targets must be https unless plain http was explicitly allowed.

use std::collections::HashSet;
use std::sync::Arc;

use reqwest::Method;
use reqwest::header::{CONTENT_TYPE, LOCATION};
use serde::Serialize;
use url::Url;

use crate::credentials::{Anonymous, Credentials, Protocol, Target};
use crate::error::MailError;
use crate::evidence::{AutodiscoverError, ErrorKind, ServerVersionInfo, TrailEntry};
use crate::http::{Answer, HttpClient, Prepared};
use crate::xml::{self, Element, esc};

/// Default redirect hop limit (Microsoft's guidance and exchangelib's `MAX_REDIRECTS`).
pub const DEFAULT_MAX_REDIRECTS: u32 = 10;

/// An Autodiscover form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AutodiscoverMethod {
    /// `autodiscover.json/v1.0/{email}?Protocol=EWS`.
    Json,
    /// `autodiscover.svc` `GetUserSettings`.
    Soap,
    /// `autodiscover.xml` (Plain Old XML).
    Pox,
}

impl AutodiscoverMethod {
    /// The order methods are tried in.
    pub const ORDER: [AutodiscoverMethod; 3] = [
        AutodiscoverMethod::Json,
        AutodiscoverMethod::Soap,
        AutodiscoverMethod::Pox,
    ];

    fn name(self) -> &'static str {
        match self {
            AutodiscoverMethod::Json => "json",
            AutodiscoverMethod::Soap => "soap",
            AutodiscoverMethod::Pox => "pox",
        }
    }

    fn url(self, origin: &Url, email: &str) -> Result<Url, url::ParseError> {
        match self {
            AutodiscoverMethod::Json => {
                let mut u = origin.join("/autodiscover/autodiscover.json/v1.0/")?;
                if let Ok(mut segs) = u.path_segments_mut() {
                    segs.pop_if_empty().push(email);
                }
                u.query_pairs_mut().append_pair("Protocol", "EWS");
                Ok(u)
            }
            AutodiscoverMethod::Soap => origin.join("/autodiscover/autodiscover.svc"),
            AutodiscoverMethod::Pox => origin.join("/autodiscover/autodiscover.xml"),
        }
    }
}

/// What Autodiscover found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AutodiscoverResult {
    /// The EWS endpoint.
    pub ews_url: String,
    /// The address the answer was for (after `redirectAddr` hops, and
    /// `AutoDiscoverSMTPAddress` when the server sends it).
    pub smtp_address: String,
    /// The method that answered.
    pub method: AutodiscoverMethod,
    /// `EwsSupportedSchemas` (SOAP only).
    pub ews_supported_schemas: Option<String>,
    /// `ServerVersionInfo` (SOAP only).
    pub server_version: Option<ServerVersionInfo>,
    /// Every step taken.
    pub trail: Vec<TrailEntry>,
}

/// The Autodiscover client.
#[derive(Debug, Clone)]
pub struct AutodiscoverClient {
    http: HttpClient,
    credentials: Arc<dyn Credentials>,
    origins: Option<Vec<Url>>,
    methods: Vec<AutodiscoverMethod>,
    max_redirects: u32,
    allow_http: bool,
}

enum Step {
    Found(AutodiscoverResult),
    RedirectUrl(String),
    RedirectAddr(String),
    Failed(Box<MailError>),
}

impl AutodiscoverClient {
    /// A client using `credentials` for SOAP and POX (JSON v2 is always anonymous).
    pub fn new(http: HttpClient, credentials: Arc<dyn Credentials>) -> Self {
        AutodiscoverClient {
            http,
            credentials,
            origins: None,
            methods: AutodiscoverMethod::ORDER.to_vec(),
            max_redirects: DEFAULT_MAX_REDIRECTS,
            allow_http: false,
        }
    }

    /// Tries these origins instead of `https://{domain}` and `https://autodiscover.{domain}`.
    pub fn with_origins(mut self, origins: Vec<Url>) -> Self {
        self.origins = Some(origins);
        self
    }

    /// Tries only these methods, in this order.
    pub fn with_methods(mut self, methods: Vec<AutodiscoverMethod>) -> Self {
        self.methods = methods;
        self
    }

    /// Redirect hop limit.
    pub fn with_max_redirects(mut self, n: u32) -> Self {
        self.max_redirects = n;
        self
    }

    /// Accepts plain-http redirect targets (test beds only).
    pub fn allow_http(mut self, allow: bool) -> Self {
        self.allow_http = allow;
        self
    }

    fn candidates(&self, email: &str) -> Result<Vec<Url>, MailError> {
        if let Some(o) = &self.origins {
            return Ok(o.clone());
        }
        let domain = email
            .rsplit_once('@')
            .map(|(_, d)| d)
            .filter(|d| !d.is_empty())
            .ok_or_else(|| {
                MailError::config(format!("{email:?} is not an email address (no domain)"))
            })?;
        [
            format!("https://{domain}/"),
            format!("https://autodiscover.{domain}/"),
        ]
        .iter()
        .map(|s| {
            Url::parse(s).map_err(|e| MailError::config(format!("bad domain in {email:?}: {e}")))
        })
        .collect()
    }

    /// Finds the EWS URL for `email`.
    pub async fn discover(&self, email: &str) -> Result<AutodiscoverResult, MailError> {
        let mut email = email.to_owned();
        let mut trail: Vec<TrailEntry> = Vec::new();
        let mut hops = 0u32;
        let mut visited: HashSet<(AutodiscoverMethod, String, String)> = HashSet::new();
        let mut last_error: Option<MailError> = None;
        'restart: loop {
            for &method in &self.methods {
                for origin in self.candidates(&email)? {
                    let mut url = method.url(&origin, &email).map_err(|e| {
                        MailError::config(format!("bad Autodiscover origin {origin}: {e}"))
                    })?;
                    loop {
                        let entry = |status: Option<u16>, outcome: &str, detail: Option<String>| {
                            TrailEntry {
                                method: method.name().to_owned(),
                                url: url.to_string(),
                                email: email.clone(),
                                status,
                                outcome: outcome.to_owned(),
                                detail,
                            }
                        };
                        if !visited.insert((method, url.to_string(), email.to_ascii_lowercase())) {
                            trail.push(entry(None, "skipped-visited", None));
                            break;
                        }
                        match self.attempt(method, &url, &email).await {
                            (status, Step::Found(mut r)) => {
                                trail.push(entry(status, "found", Some(r.ews_url.clone())));
                                r.trail = trail;
                                return Ok(r);
                            }
                            (status, Step::RedirectUrl(target)) => {
                                trail.push(entry(status, "redirect-url", Some(target.clone())));
                                hops += 1;
                                if hops > self.max_redirects {
                                    return Err(self.fail(
                                        "redirect limit exceeded",
                                        trail,
                                        last_error,
                                    ));
                                }
                                match Url::parse(&target).or_else(|_| url.join(&target)) {
                                    Ok(next)
                                        if next.scheme() == "https"
                                            || (self.allow_http && next.scheme() == "http") =>
                                    {
                                        url = next;
                                    }
                                    _ => {
                                        trail.push(entry(None, "refused-redirect", Some(target)));
                                        break;
                                    }
                                }
                            }
                            (status, Step::RedirectAddr(addr)) => {
                                trail.push(entry(status, "redirect-address", Some(addr.clone())));
                                hops += 1;
                                if hops > self.max_redirects {
                                    return Err(self.fail(
                                        "redirect limit exceeded",
                                        trail,
                                        last_error,
                                    ));
                                }
                                if addr.eq_ignore_ascii_case(&email) || !addr.contains('@') {
                                    trail.push(entry(None, "refused-redirect", Some(addr)));
                                    break;
                                }
                                email = addr;
                                continue 'restart;
                            }
                            (status, Step::Failed(e)) => {
                                let detail = e.evidence().service_code().map(str::to_owned);
                                trail.push(entry(status, "error", detail));
                                last_error = Some(*e);
                                break;
                            }
                        }
                    }
                }
            }
            return Err(self.fail(
                "every Autodiscover method and URL failed",
                trail,
                last_error,
            ));
        }
    }

    fn fail(&self, why: &str, trail: Vec<TrailEntry>, last: Option<MailError>) -> MailError {
        let mut ev = last.map(|e| e.evidence().clone()).unwrap_or_default();
        ev.protocol = Some(Protocol::Autodiscover);
        let steps = trail.len();
        ev.trail = trail;
        MailError::with_message(
            ErrorKind::Autodiscover,
            format!(
                "Autodiscover failed: {why} ({steps} steps; see the trail); set the EWS URL explicitly or fix the Autodiscover DNS records"
            ),
            ev,
        )
    }

    async fn attempt(
        &self,
        method: AutodiscoverMethod,
        url: &Url,
        email: &str,
    ) -> (Option<u16>, Step) {
        let anonymous: Arc<dyn Credentials> = Arc::new(Anonymous);
        let (creds, req) = match method {
            AutodiscoverMethod::Json => (
                anonymous,
                self.prepare(Method::GET, url, email, None, "autodiscover-json"),
            ),
            AutodiscoverMethod::Soap => (
                self.credentials.clone(),
                self.prepare(
                    Method::POST,
                    url,
                    email,
                    Some(soap_request(url, email)),
                    "autodiscover-soap",
                ),
            ),
            AutodiscoverMethod::Pox => (
                self.credentials.clone(),
                self.prepare(
                    Method::POST,
                    url,
                    email,
                    Some(pox_request(email)),
                    "autodiscover-pox",
                ),
            ),
        };
        let answer = self
            .http
            .with_retry(|| async {
                let a = self.http.send_once(&req, creds.as_ref()).await?;
                let s = a.status.as_u16();
                if s >= 500 || s == 429 {
                    let ev = HttpClient::answer_evidence(&req, creds.as_ref(), &a);
                    return Err(MailError::from_evidence(
                        crate::http::kind_for_status(s),
                        ev,
                    ));
                }
                Ok(a)
            })
            .await;
        let a = match answer {
            Ok(a) => a,
            Err(e) => {
                let status = e.evidence().status;
                return (status, Step::Failed(Box::new(e)));
            }
        };
        let status = Some(a.status.as_u16());
        // Evidence is built on failure only: a usable answer never needs it.
        let evidence = || HttpClient::answer_evidence(&req, creds.as_ref(), &a);
        if a.status.is_redirection() {
            return match a.headers.get(LOCATION).and_then(|v| v.to_str().ok()) {
                Some(loc) => (status, Step::RedirectUrl(loc.to_owned())),
                None => (
                    status,
                    Step::Failed(Box::new(MailError::from_evidence(
                        ErrorKind::Http,
                        evidence(),
                    ))),
                ),
            };
        }
        if !a.status.is_success() {
            let kind = crate::http::kind_for_status(a.status.as_u16());
            let mut ev = evidence();
            if method == AutodiscoverMethod::Json {
                ev.autodiscover_error = json_error(&a.body);
            }
            let kind = if ev.autodiscover_error.is_some() && kind == ErrorKind::Http {
                ErrorKind::Autodiscover
            } else {
                kind
            };
            return (
                status,
                Step::Failed(Box::new(MailError::from_evidence(kind, ev))),
            );
        }
        let parsed = match method {
            AutodiscoverMethod::Json => read_json(&a.body, email),
            AutodiscoverMethod::Soap => read_soap(&a, email),
            AutodiscoverMethod::Pox => read_pox(&a, email),
        };
        match parsed {
            Ok(step) => (status, step),
            Err(Parsed::Error(err)) => {
                let mut ev = evidence();
                ev.autodiscover_error = Some(err);
                (
                    status,
                    Step::Failed(Box::new(MailError::from_evidence(
                        ErrorKind::Autodiscover,
                        ev,
                    ))),
                )
            }
            Err(Parsed::Invalid(why)) => (
                status,
                Step::Failed(Box::new(MailError::with_message(
                    ErrorKind::InvalidResponse,
                    format!("Autodiscover {} answer is unusable: {why}", method.name()),
                    evidence(),
                ))),
            ),
        }
    }

    fn prepare(
        &self,
        method: Method,
        url: &Url,
        email: &str,
        body: Option<String>,
        op: &str,
    ) -> Prepared {
        let mut headers = Vec::new();
        if body.is_some() {
            headers.push((CONTENT_TYPE, "text/xml; charset=utf-8".to_owned()));
        }
        Prepared {
            method,
            url: url.clone(),
            headers,
            body: body.map(String::into_bytes),
            target: Target {
                protocol: Protocol::Autodiscover,
                origin: url.origin().ascii_serialization(),
                mailbox: Some(email.to_owned()),
            },
            operation: op.to_owned(),
        }
    }
}

enum Parsed {
    Error(AutodiscoverError),
    Invalid(String),
}

fn found(method: AutodiscoverMethod, ews: &str, email: String) -> Result<Step, Parsed> {
    let u = Url::parse(ews.trim())
        .map_err(|e| Parsed::Invalid(format!("EWS URL {ews:?} is not a URL: {e}")))?;
    Ok(Step::Found(AutodiscoverResult {
        ews_url: u.to_string(),
        smtp_address: email,
        method,
        ews_supported_schemas: None,
        server_version: None,
        trail: Vec::new(),
    }))
}

fn json_error(body: &[u8]) -> Option<AutodiscoverError> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    Some(AutodiscoverError {
        code: v.get("ErrorCode")?.as_str()?.to_owned(),
        message: v
            .get("ErrorMessage")
            .and_then(|m| m.as_str())
            .map(str::to_owned),
    })
}

fn read_json(body: &[u8], email: &str) -> Result<Step, Parsed> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| Parsed::Invalid(format!("not JSON: {e}")))?;
    if let Some(err) = json_error(body) {
        return Err(Parsed::Error(err));
    }
    let url = v
        .get("Url")
        .and_then(|u| u.as_str())
        .ok_or_else(|| Parsed::Invalid("no \"Url\" field".into()))?;
    found(AutodiscoverMethod::Json, url, email.to_owned())
}

/// The SOAP `GetUserSettings` request for `email` (the settings exchangelib relies on).
pub fn soap_request(url: &Url, email: &str) -> String {
    let settings = [
        "AutoDiscoverSMTPAddress",
        "ExternalEwsUrl",
        "InternalEwsUrl",
        "EwsSupportedSchemas",
    ]
    .iter()
    .map(|s| format!("<a:Setting>{s}</a:Setting>"))
    .collect::<String>();
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\" xmlns:t=\"http://schemas.microsoft.com/exchange/services/2006/types\" xmlns:a=\"http://schemas.microsoft.com/exchange/2010/Autodiscover\" xmlns:wsa=\"http://www.w3.org/2005/08/addressing\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"><s:Header><a:RequestedServerVersion>Exchange2016</a:RequestedServerVersion><wsa:Action>http://schemas.microsoft.com/exchange/2010/Autodiscover/Autodiscover/GetUserSettings</wsa:Action><wsa:To>{}</wsa:To></s:Header><s:Body><a:GetUserSettingsRequestMessage><a:Request><a:Users><a:User><a:Mailbox>{}</a:Mailbox></a:User></a:Users><a:RequestedSettings>{settings}</a:RequestedSettings></a:Request></a:GetUserSettingsRequestMessage></s:Body></s:Envelope>",
        esc(url.as_str()),
        esc(email)
    )
}

fn read_soap(a: &Answer, email: &str) -> Result<Step, Parsed> {
    let root = xml::parse(&String::from_utf8_lossy(&a.body))
        .map_err(|e| Parsed::Invalid(e.to_string()))?;
    let server_version = root
        .path(&["Header", "ServerVersionInfo"])
        .map(crate::ews::response::server_version);
    let resp = root
        .find("GetUserSettingsResponseMessage")
        .and_then(|m| m.child("Response"))
        .ok_or_else(|| Parsed::Invalid("no GetUserSettingsResponseMessage/Response".into()))?;
    let top = resp
        .child_text("ErrorCode")
        .unwrap_or_else(|| "NoError".into());
    if top != "NoError" {
        return Err(Parsed::Error(AutodiscoverError {
            code: top,
            message: resp.child_text("ErrorMessage"),
        }));
    }
    let user = resp
        .path(&["UserResponses", "UserResponse"])
        .ok_or_else(|| Parsed::Invalid("no UserResponse".into()))?;
    let code = user
        .child_text("ErrorCode")
        .unwrap_or_else(|| "NoError".into());
    let target = user.child_text("RedirectTarget");
    match code.as_str() {
        "NoError" => {}
        "RedirectAddress" => {
            return target
                .map(Step::RedirectAddr)
                .ok_or_else(|| Parsed::Invalid("RedirectAddress without RedirectTarget".into()));
        }
        "RedirectUrl" => {
            return target
                .map(Step::RedirectUrl)
                .ok_or_else(|| Parsed::Invalid("RedirectUrl without RedirectTarget".into()));
        }
        _ => {
            return Err(Parsed::Error(AutodiscoverError {
                code,
                message: user.child_text("ErrorMessage"),
            }));
        }
    }
    let setting = |name: &str| -> Option<String> {
        user.child("UserSettings")?
            .children_named("UserSetting")
            .find(|s| s.child_text("Name").as_deref() == Some(name))
            .and_then(|s| s.child_text("Value"))
    };
    let ews = setting("ExternalEwsUrl")
        .or_else(|| setting("InternalEwsUrl"))
        .ok_or_else(|| Parsed::Invalid("no ExternalEwsUrl or InternalEwsUrl setting".into()))?;
    let smtp = setting("AutoDiscoverSMTPAddress").unwrap_or_else(|| email.to_owned());
    let mut step = found(AutodiscoverMethod::Soap, &ews, smtp)?;
    if let Step::Found(r) = &mut step {
        r.ews_supported_schemas = setting("EwsSupportedSchemas");
        r.server_version = server_version;
    }
    Ok(step)
}

/// The POX request for `email`.
pub fn pox_request(email: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<Autodiscover xmlns=\"http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006\"><Request><EMailAddress>{}</EMailAddress><AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a</AcceptableResponseSchema></Request></Autodiscover>",
        esc(email)
    )
}

fn pox_ews_url(account: &Element) -> Option<String> {
    let protocols: Vec<&Element> = account.children_named("Protocol").collect();
    for wanted in ["EXPR", "EXCH"] {
        if let Some(url) = protocols
            .iter()
            .find(|p| p.child_text("Type").as_deref() == Some(wanted))
            .and_then(|p| p.child_text("EwsUrl"))
        {
            return Some(url);
        }
    }
    None
}

fn read_pox(a: &Answer, email: &str) -> Result<Step, Parsed> {
    let root = xml::parse(&String::from_utf8_lossy(&a.body))
        .map_err(|e| Parsed::Invalid(e.to_string()))?;
    let resp = root
        .child("Response")
        .ok_or_else(|| Parsed::Invalid("no Autodiscover/Response".into()))?;
    if let Some(err) = resp.child("Error") {
        return Err(Parsed::Error(AutodiscoverError {
            code: err.child_text("ErrorCode").unwrap_or_default(),
            message: err.child_text("Message"),
        }));
    }
    let account = resp
        .child("Account")
        .ok_or_else(|| Parsed::Invalid("no Account element".into()))?;
    match account.child_text("Action").as_deref() {
        Some("redirectAddr") => account
            .child_text("RedirectAddr")
            .map(Step::RedirectAddr)
            .ok_or_else(|| Parsed::Invalid("redirectAddr without RedirectAddr".into())),
        Some("redirectUrl") => account
            .child_text("RedirectUrl")
            .map(Step::RedirectUrl)
            .ok_or_else(|| Parsed::Invalid("redirectUrl without RedirectUrl".into())),
        _ => {
            let ews = pox_ews_url(account)
                .ok_or_else(|| Parsed::Invalid("no EwsUrl in any Protocol".into()))?;
            let smtp = resp
                .path(&["User", "AutoDiscoverSMTPAddress"])
                .map(|e| e.text.trim().to_owned())
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| email.to_owned());
            found(AutodiscoverMethod::Pox, &ews, smtp)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn answer(body: &str) -> Answer {
        Answer {
            status: reqwest::StatusCode::OK,
            headers: reqwest::header::HeaderMap::new(),
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn default_candidates_are_the_domain_then_the_autodiscover_host() {
        let c = AutodiscoverClient::new(HttpClient::new().unwrap(), Arc::new(Anonymous));
        let got: Vec<String> = c
            .candidates("user@contoso.com")
            .unwrap()
            .iter()
            .map(Url::to_string)
            .collect();
        assert_eq!(
            got,
            ["https://contoso.com/", "https://autodiscover.contoso.com/"]
        );
        assert!(c.candidates("user@").is_err());
        assert_eq!(
            AutodiscoverMethod::ORDER,
            [
                AutodiscoverMethod::Json,
                AutodiscoverMethod::Soap,
                AutodiscoverMethod::Pox
            ]
        );
    }

    #[test]
    fn json_url_encodes_the_address_in_the_path() {
        let u = AutodiscoverMethod::Json
            .url(
                &Url::parse("https://outlook.office365.com").unwrap(),
                "user@contoso.com",
            )
            .unwrap();
        assert_eq!(
            u.as_str(),
            "https://outlook.office365.com/autodiscover/autodiscover.json/v1.0/user@contoso.com?Protocol=EWS"
        );
    }

    #[test]
    fn pox_prefers_external_ews_url_and_reads_errors() {
        let ok = r#"<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006"><Response xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"><User><AutoDiscoverSMTPAddress>primary@example.com</AutoDiscoverSMTPAddress></User><Account><Action>settings</Action><Protocol><Type>EXCH</Type><EwsUrl>https://internal/EWS/Exchange.asmx</EwsUrl></Protocol><Protocol><Type>EXPR</Type><EwsUrl>https://mail.example.com/EWS/Exchange.asmx</EwsUrl></Protocol></Account></Response></Autodiscover>"#;
        let Ok(Step::Found(r)) = read_pox(&answer(ok), "user@example.com") else {
            panic!("expected settings")
        };
        assert_eq!(r.ews_url, "https://mail.example.com/EWS/Exchange.asmx");
        assert_eq!(r.smtp_address, "primary@example.com");
        let err = r#"<Autodiscover><Response><Error Time="21:25:04.8897083" Id="4130155072"><ErrorCode>600</ErrorCode><Message>Invalid Request</Message><DebugData/></Error></Response></Autodiscover>"#;
        let Err(Parsed::Error(e)) = read_pox(&answer(err), "u@x") else {
            panic!("expected an error")
        };
        assert_eq!(e.code, "600");
        assert_eq!(e.message.as_deref(), Some("Invalid Request"));
    }

    proptest! {
        #[test]
        fn soap_settings_round_trip(host in "[a-z]{1,12}(\\.[a-z]{2,6}){1,2}", local in "[a-z0-9.]{1,15}") {
            let smtp = format!("{local}@{host}");
            let ews = format!("https://{host}/EWS/Exchange.asmx");
            let body = format!(
                "<s:Envelope xmlns:s=\"x\"><s:Body><GetUserSettingsResponseMessage><Response><ErrorCode>NoError</ErrorCode><UserResponses><UserResponse><ErrorCode>NoError</ErrorCode><UserSettings><UserSetting><Name>AutoDiscoverSMTPAddress</Name><Value>{}</Value></UserSetting><UserSetting><Name>ExternalEwsUrl</Name><Value>{}</Value></UserSetting></UserSettings></UserResponse></UserResponses></Response></GetUserSettingsResponseMessage></s:Body></s:Envelope>",
                esc(&smtp),
                esc(&ews)
            );
            let Ok(Step::Found(r)) = read_soap(&answer(&body), "other@x") else {
                return Err(TestCaseError::fail("settings expected"));
            };
            prop_assert_eq!(r.smtp_address, smtp);
            prop_assert_eq!(r.ews_url, Url::parse(&ews).unwrap().to_string());
        }

        #[test]
        fn readers_never_panic(s in ".{0,300}") {
            let a = answer(&s);
            let _ = read_pox(&a, "u@x");
            let _ = read_soap(&a, "u@x");
            let _ = read_json(s.as_bytes(), "u@x");
        }
    }
}
