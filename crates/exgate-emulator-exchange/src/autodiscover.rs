//! Autodiscover: POX (`autodiscover.xml`, with redirectAddr/redirectUrl), SOAP
//! (`autodiscover.svc`, GetUserSettings) and JSON v2 (`autodiscover.json`).

use std::fmt::Write as _;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::auth::{self, Principal, Vdir};
use crate::state::{Counters, Inner, Site};
use crate::store::Mailbox;
use crate::xml::{self, esc};

const NS_POX_RESP: &str = "http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006";
const NS_POX_OUTLOOK: &str =
    "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a";
const NS_AD: &str = "http://schemas.microsoft.com/exchange/2010/Autodiscover";
const SCHEMAS: &str = "Exchange2007, Exchange2007_SP1, Exchange2010, Exchange2010_SP1, Exchange2010_SP2, Exchange2013, Exchange2013_SP1, Exchange2015, Exchange2016";

/// URL path prefix of a site under the emulator's base URL.
pub(crate) fn prefix(st: &Inner, site: Site) -> String {
    match site {
        Site::Online => String::new(),
        Site::OnPrem(i) => st
            .servers
            .get(i)
            .map(|s| format!("/onprem/{}", s.cfg.name))
            .unwrap_or_default(),
    }
}

fn ews_url(st: &Inner, origin: &str, site: Site) -> String {
    format!("{origin}{}/EWS/Exchange.asmx", prefix(st, site))
}

fn with_ct(status: StatusCode, ct: &'static str, body: String) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    r
}

/// Where a mailbox should be looked up from `site`.
enum Placement<'a> {
    Here(&'a Mailbox),
    RedirectAddr(String),
    RedirectUrl(Site),
    Unknown,
}

fn place<'a>(st: &'a Inner, site: Site, tenant_id: Option<&str>, email: &str) -> Placement<'a> {
    let Some(m) = st.find(email).and_then(|i| st.mailbox(i)) else {
        return Placement::Unknown;
    };
    if tenant_id.is_some_and(|t| t != m.tenant_id) || !m.provisioned {
        return Placement::Unknown;
    }
    let home = st.site_of(m);
    if home == site {
        return Placement::Here(m);
    }
    match (site, &m.routing_address) {
        (Site::OnPrem(_), Some(r)) if !r.eq_ignore_ascii_case(email) => {
            Placement::RedirectAddr(r.clone())
        }
        _ => Placement::RedirectUrl(home),
    }
}

fn pox_error(code: u32, message: &str) -> Response {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><Autodiscover xmlns=\"{NS_POX_RESP}\"><Response xmlns=\"{NS_POX_RESP}\"><Error Time=\"00:00:00.0000000\" Id=\"2477272013\"><ErrorCode>{code}</ErrorCode><Message>{}</Message><DebugData/></Error></Response></Autodiscover>",
        esc(message)
    );
    with_ct(StatusCode::OK, "text/xml; charset=utf-8", body)
}

/// POX Autodiscover.
pub(crate) fn pox(
    st: &Inner,
    site: Site,
    origin: &str,
    headers: &HeaderMap,
    conn: Option<crate::ConnectionId>,
    body: &[u8],
) -> Response {
    Counters::bump(&st.counters.autodiscover);
    let principal = match auth::authenticate(st, site, Vdir::Autodiscover, headers, conn) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let Ok(root) = xml::parse(body) else {
        return pox_error(600, "Invalid Request");
    };
    let Some(email) = root
        .path(&["Request", "EMailAddress"])
        .map(|e| e.text.trim().to_owned())
        .filter(|e| !e.is_empty())
    else {
        return pox_error(600, "Invalid Request");
    };
    let schema = root
        .path(&["Request", "AcceptableResponseSchema"])
        .map(|e| e.text.trim().to_owned())
        .unwrap_or_default();
    if schema != NS_POX_OUTLOOK {
        return pox_error(601, "Provider is not available for this schema.");
    }
    let account = match place(st, site, Some(principal.tenant_id()), &email) {
        Placement::Unknown => return pox_error(500, "The e-mail address cannot be found."),
        Placement::RedirectAddr(a) => format!(
            "<Account><Action>redirectAddr</Action><RedirectAddr>{}</RedirectAddr></Account>",
            esc(&a)
        ),
        Placement::RedirectUrl(home) => format!(
            "<Account><Action>redirectUrl</Action><RedirectUrl>{origin}{}/autodiscover/autodiscover.xml</RedirectUrl></Account>",
            prefix(st, home)
        ),
        Placement::Here(m) => {
            let ews = ews_url(st, origin, site);
            let server = origin.split("://").nth(1).unwrap_or(origin);
            let online = if site == Site::Online {
                "True"
            } else {
                "False"
            };
            format!(
                "<User><DisplayName>{dn}</DisplayName><LegacyDN>/o=ExchangeLabs/ou=Exchange Administrative Group (FYDIBOHF23SPDLT)/cn=Recipients/cn={legacy}</LegacyDN><AutoDiscoverSMTPAddress>{addr}</AutoDiscoverSMTPAddress><DeploymentId>{tid}</DeploymentId></User><Account><AccountType>email</AccountType><Action>settings</Action><MicrosoftOnline>{online}</MicrosoftOnline><Protocol><Type>EXCH</Type><Server>{server}</Server><ASUrl>{ews}</ASUrl><EwsUrl>{ews}</EwsUrl><OOFUrl>{ews}</OOFUrl></Protocol><Protocol><Type>EXPR</Type><Server>{server}</Server><SSL>On</SSL><AuthPackage>Basic</AuthPackage><ASUrl>{ews}</ASUrl><EwsUrl>{ews}</EwsUrl></Protocol><Protocol><Type>WEB</Type><Internal><OWAUrl AuthenticationMethod=\"Basic, Fba\">{origin}/owa/</OWAUrl><Protocol><Type>EXCH</Type><ASUrl>{ews}</ASUrl></Protocol></Internal></Protocol></Account>",
                dn = esc(&m.display_name),
                legacy = esc(&m.address.replace('@', "_")),
                addr = esc(&m.address),
                tid = m.tenant_id,
            )
        }
    };
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><Autodiscover xmlns=\"{NS_POX_RESP}\"><Response xmlns=\"{NS_POX_OUTLOOK}\">{account}</Response></Autodiscover>"
    );
    with_ct(StatusCode::OK, "text/xml; charset=utf-8", body)
}

fn soap_envelope(site: Site, body: &str) -> String {
    let (minor, mb, nb, ver) = match site {
        Site::Online => (20, 8466, 32, "Exchange2015"),
        Site::OnPrem(_) => (2, 1544, 4, "Exchange2015"),
    };
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\" xmlns:a=\"http://www.w3.org/2005/08/addressing\"><s:Header><a:Action s:mustUnderstand=\"1\">http://schemas.microsoft.com/exchange/2010/Autodiscover/Autodiscover/GetUserSettingsResponse</a:Action><h:ServerVersionInfo xmlns:h=\"{NS_AD}\" xmlns:i=\"http://www.w3.org/2001/XMLSchema-instance\"><h:MajorVersion>15</h:MajorVersion><h:MinorVersion>{minor}</h:MinorVersion><h:MajorBuildNumber>{mb}</h:MajorBuildNumber><h:MinorBuildNumber>{nb}</h:MinorBuildNumber><h:Version>{ver}</h:Version></h:ServerVersionInfo></s:Header><s:Body>{body}</s:Body></s:Envelope>"
    )
}

/// SOAP Autodiscover (GetUserSettings).
pub(crate) fn soap(
    st: &Inner,
    site: Site,
    origin: &str,
    headers: &HeaderMap,
    conn: Option<crate::ConnectionId>,
    body: &[u8],
) -> Response {
    Counters::bump(&st.counters.autodiscover);
    let principal = match auth::authenticate(st, site, Vdir::Autodiscover, headers, conn) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let request_error = |code: &str, msg: &str| {
        let b = format!(
            "<GetUserSettingsResponseMessage xmlns=\"{NS_AD}\"><Response xmlns:i=\"http://www.w3.org/2001/XMLSchema-instance\"><ErrorCode>{code}</ErrorCode><ErrorMessage>{}</ErrorMessage><UserResponses/></Response></GetUserSettingsResponseMessage>",
            esc(msg)
        );
        with_ct(
            StatusCode::OK,
            "text/xml; charset=utf-8",
            soap_envelope(site, &b),
        )
    };
    let Ok(root) = xml::parse(body) else {
        return request_error("InvalidRequest", "The request is not well-formed XML.");
    };
    let Some(req) = root.path(&["Body", "GetUserSettingsRequestMessage", "Request"]) else {
        return request_error("InvalidRequest", "Only GetUserSettings is supported.");
    };
    let requested: Vec<String> = req
        .child("RequestedSettings")
        .map(|r| {
            r.children_named("Setting")
                .map(|s| s.text.trim().to_owned())
                .collect()
        })
        .unwrap_or_default();
    let users: Vec<String> = req
        .child("Users")
        .map(|u| {
            u.children_named("User")
                .filter_map(|x| x.child_text("Mailbox").map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    if users.is_empty() || requested.is_empty() {
        return request_error(
            "InvalidRequest",
            "The request must name users and settings.",
        );
    }
    let mut out = String::new();
    for email in &users {
        out.push_str(&user_response(
            st, site, origin, &principal, email, &requested,
        ));
    }
    let b = format!(
        "<GetUserSettingsResponseMessage xmlns=\"{NS_AD}\"><Response xmlns:i=\"http://www.w3.org/2001/XMLSchema-instance\"><ErrorCode>NoError</ErrorCode><ErrorMessage/><UserResponses>{out}</UserResponses></Response></GetUserSettingsResponseMessage>"
    );
    with_ct(
        StatusCode::OK,
        "text/xml; charset=utf-8",
        soap_envelope(site, &b),
    )
}

fn user_response(
    st: &Inner,
    site: Site,
    origin: &str,
    principal: &Principal,
    email: &str,
    requested: &[String],
) -> String {
    let simple = |code: &str, msg: &str, target: Option<String>| {
        let target = match target {
            Some(t) => format!("<RedirectTarget>{}</RedirectTarget>", esc(&t)),
            None => "<RedirectTarget i:nil=\"true\"/>".to_owned(),
        };
        format!(
            "<UserResponse><ErrorCode>{code}</ErrorCode><ErrorMessage>{}</ErrorMessage>{target}<UserSettingErrors/><UserSettings/></UserResponse>",
            esc(msg)
        )
    };
    let m = match place(st, site, Some(principal.tenant_id()), email) {
        Placement::Unknown => {
            return simple("InvalidUser", &format!("Invalid user: '{email}'"), None);
        }
        Placement::RedirectAddr(a) => {
            return simple("RedirectAddress", "Redirection address.", Some(a));
        }
        Placement::RedirectUrl(home) => {
            return simple(
                "RedirectUrl",
                "Redirection URL.",
                Some(format!(
                    "{origin}{}/autodiscover/autodiscover.svc",
                    prefix(st, home)
                )),
            );
        }
        Placement::Here(m) => m,
    };
    let ews = ews_url(st, origin, site);
    let mut settings = String::new();
    let mut errors = String::new();
    for name in requested {
        let value: Option<(&str, String)> = match name.as_str() {
            "UserDisplayName" => Some(("StringSetting", m.display_name.clone())),
            "UserDN" => Some((
                "StringSetting",
                format!(
                    "/o=ExchangeLabs/ou=Exchange Administrative Group (FYDIBOHF23SPDLT)/cn=Recipients/cn={}",
                    m.address.replace('@', "_")
                ),
            )),
            "UserDeploymentId" => Some(("StringSetting", m.tenant_id.clone())),
            "AutoDiscoverSMTPAddress" => Some(("StringSetting", m.address.clone())),
            "ExternalEwsUrl" | "InternalEwsUrl" => Some(("StringSetting", ews.clone())),
            "EwsSupportedSchemas" => Some(("StringSetting", SCHEMAS.to_owned())),
            "CasVersion" => Some((
                "StringSetting",
                match site {
                    Site::Online => "15.20.8466.32".to_owned(),
                    Site::OnPrem(_) => "15.2.1544.4".to_owned(),
                },
            )),
            "GroupingInformation" => Some(("StringSetting", "GRP-1".to_owned())),
            "ExternalMailboxServer" | "InternalMailboxServer" => Some((
                "StringSetting",
                origin.split("://").nth(1).unwrap_or(origin).to_owned(),
            )),
            "ExternalEwsVersion" => Some((
                "StringSetting",
                match site {
                    Site::Online => "15.20.8466.32".to_owned(),
                    Site::OnPrem(_) => "15.02.1544.004".to_owned(),
                },
            )),
            _ => None,
        };
        match value {
            Some((ty, v)) => {
                let _ = write!(
                    settings,
                    "<UserSetting i:type=\"{ty}\"><Name>{}</Name><Value>{}</Value></UserSetting>",
                    esc(name),
                    esc(&v)
                );
            }
            None => {
                let _ = write!(
                    errors,
                    "<UserSettingError><ErrorCode>SettingIsNotAvailable</ErrorCode><ErrorMessage>User setting '{}' is not available.</ErrorMessage><SettingName>{}</SettingName></UserSettingError>",
                    esc(name),
                    esc(name)
                );
            }
        }
    }
    format!(
        "<UserResponse><ErrorCode>NoError</ErrorCode><ErrorMessage>No error.</ErrorMessage><RedirectTarget i:nil=\"true\"/><UserSettingErrors>{errors}</UserSettingErrors><UserSettings>{settings}</UserSettings></UserResponse>"
    )
}

/// JSON Autodiscover v2 (no authentication).
pub(crate) fn json_v2(
    st: &Inner,
    site: Site,
    origin: &str,
    email: Option<&str>,
    query: Option<&str>,
) -> Response {
    Counters::bump(&st.counters.autodiscover);
    let q: Vec<(String, String)> = query
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let param = |k: &str| {
        q.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.clone())
    };
    let json_resp = |status: StatusCode, v: serde_json::Value| {
        with_ct(status, "application/json; charset=utf-8", v.to_string())
    };
    let Some(email) = email.map(str::to_owned).or_else(|| param("Email")) else {
        return json_resp(
            StatusCode::BAD_REQUEST,
            json!({"ErrorCode": "InvalidUser", "ErrorMessage": "An e-mail address is required."}),
        );
    };
    let protocol = param("Protocol").unwrap_or_default();
    let here = prefix(st, site);
    let url_for = |p: &str, site: Site| -> Option<String> {
        let pre = prefix(st, site);
        match p.to_ascii_lowercase().as_str() {
            "ews" => Some(format!("{origin}{pre}/EWS/Exchange.asmx")),
            "autodiscoverv1" => Some(format!("{origin}{pre}/autodiscover/autodiscover.xml")),
            "activesync" => Some(format!("{origin}{pre}/Microsoft-Server-ActiveSync")),
            "rest" => Some(format!("{origin}{pre}/api")),
            _ => None,
        }
    };
    if url_for(&protocol, site).is_none() {
        return json_resp(
            StatusCode::BAD_REQUEST,
            json!({"ErrorCode": "InvalidProtocol", "ErrorMessage": format!("The given protocol value '{protocol}' is invalid. Supported values are 'Rest,ActiveSync,Ews,AutodiscoverV1'.")}),
        );
    }
    let redirect = |target_prefix: &str, count: u32| {
        let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let loc = format!(
            "{origin}{target_prefix}/autodiscover/autodiscover.json?Email={}&Protocol={}&RedirectCount={count}",
            enc(&email),
            enc(&protocol)
        );
        let mut r = with_ct(
            StatusCode::FOUND,
            "text/html; charset=utf-8",
            format!(
                "<html><head><title>Object moved</title></head><body><h2>Object moved to <a href=\"{}\">here</a>.</h2></body></html>",
                esc(&loc)
            ),
        );
        if let Ok(v) = HeaderValue::from_str(&loc) {
            r.headers_mut().insert(header::LOCATION, v);
        }
        r
    };
    let count: u32 = param("RedirectCount")
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    match place(st, site, None, &email) {
        Placement::Here(_) => json_resp(
            StatusCode::OK,
            json!({"Protocol": protocol, "Url": url_for(&protocol, site)}),
        ),
        Placement::RedirectUrl(home) if count < 10 => redirect(&prefix(st, home), count + 1),
        Placement::RedirectAddr(_) | Placement::RedirectUrl(_) | Placement::Unknown
            if count == 0 =>
        {
            redirect(&here, 1)
        }
        _ => json_resp(
            StatusCode::NOT_FOUND,
            json!({"ErrorCode": "InvalidUser", "ErrorMessage": format!("The user '{email}' could not be found.")}),
        ),
    }
}
