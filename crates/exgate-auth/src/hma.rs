//! Hybrid Modern Auth: the empty-bearer probe of an on-premises Exchange URL, parsing of
//! `WWW-Authenticate` challenges, and the token request the challenge implies.

use serde::Serialize;
use url::Url;

use crate::authority::{Authority, EndpointVersion};
use crate::error::{AuthError, ConfigError, strip_query};
use crate::token::TokenRequest;

pub use exgate_wire::www_authenticate::{Challenge, parse_all as parse_www_authenticate};

/// What an on-premises Exchange server says about Modern Auth in its Bearer challenge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HmaChallenge {
    /// `authorization_uri`: present only when Hybrid Modern Auth is enabled (EvoSTS is the
    /// default authorization endpoint).
    pub authorization_uri: Option<String>,
    /// `client_id`: the Exchange resource app id.
    pub client_id: Option<String>,
    /// `trusted_issuers`, split on commas (`00000001-...@<tenant>`).
    pub trusted_issuers: Vec<String>,
    /// `token_types`, split on spaces.
    pub token_types: Vec<String>,
    /// `error` (e.g. `invalid_token` when a presented token was rejected).
    pub error: Option<String>,
    /// Other schemes offered alongside Bearer (`Basic`, `NTLM`, `Negotiate`).
    pub other_schemes: Vec<String>,
}

impl HmaChallenge {
    /// Extracts the Bearer challenge from parsed challenges; `None` when there is none.
    pub fn from_challenges(challenges: &[Challenge]) -> Option<HmaChallenge> {
        let bearer = challenges
            .iter()
            .find(|c| c.scheme.eq_ignore_ascii_case("bearer"))?;
        let split = |v: Option<&str>, sep: char| -> Vec<String> {
            v.map(|v| {
                v.split(sep)
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
        };
        Some(HmaChallenge {
            authorization_uri: bearer.param("authorization_uri").map(str::to_string),
            client_id: bearer.param("client_id").map(str::to_string),
            trusted_issuers: split(bearer.param("trusted_issuers"), ','),
            token_types: split(bearer.param("token_types"), ' '),
            error: bearer.param("error").map(str::to_string),
            other_schemes: challenges
                .iter()
                .filter(|c| !c.scheme.eq_ignore_ascii_case("bearer"))
                .map(|c| c.scheme.clone())
                .collect(),
        })
    }

    /// Whether Hybrid Modern Auth is enabled (an `authorization_uri` is advertised).
    pub fn hma_enabled(&self) -> bool {
        self.authorization_uri.is_some()
    }

    /// The tenant named by `trusted_issuers` (`00000001-0000-0000-c000-000000000000@<tenant>`),
    /// unless it is `*`.
    pub fn tenant_from_issuers(&self) -> Option<String> {
        self.trusted_issuers.iter().find_map(|i| {
            let (principal, realm) = i.split_once('@')?;
            (principal == "00000001-0000-0000-c000-000000000000"
                && realm != "*"
                && !realm.is_empty())
            .then(|| realm.to_string())
        })
    }

    /// Fills in what `settings` does not set from this challenge: the authority host (of
    /// `authorization_uri`) and the tenant (its path, or `trusted_issuers`). What the settings
    /// name wins (a sovereign cloud, an emulator, a known tenant).
    pub fn fill_authority(&self, settings: &mut crate::AuthSettings) -> Result<(), ConfigError> {
        if settings.authority_host.is_some() && settings.tenant.is_some() {
            return Ok(());
        }
        let authority = self.authority(settings.endpoint.unwrap_or_default())?;
        if settings.authority_host.is_none() {
            settings.authority_host = Some(authority.host().to_string());
        }
        if settings.tenant.is_none() {
            settings.tenant = Some(authority.tenant().to_string());
        }
        Ok(())
    }

    /// The authority to request the token from: the host of `authorization_uri`, and its tenant
    /// unless that is `common`, in which case the tenant from `trusted_issuers`.
    pub fn authority(&self, version: EndpointVersion) -> Result<Authority, ConfigError> {
        let bad = |m: String| {
            ConfigError::new(
                "hma",
                "authorization_uri",
                m,
                "enable Hybrid Modern Auth (EvoSTS as default authorization endpoint) on the Exchange server",
            )
        };
        let uri = self
            .authorization_uri
            .as_deref()
            .ok_or_else(|| bad("the server's Bearer challenge has no authorization_uri: Hybrid Modern Auth is not enabled".into()))?;
        let url = Url::parse(uri).map_err(|e| bad(format!("`{uri}` is not a URL: {e}")))?;
        let host = format!("{}://{}", url.scheme(), url.host_str().unwrap_or_default());
        let host = match url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host,
        };
        let path_tenant = url
            .path_segments()
            .and_then(|mut s| s.next())
            .unwrap_or_default()
            .to_string();
        let tenant = if path_tenant.is_empty()
            || matches!(path_tenant.as_str(), "common" | "organizations")
        {
            self.tenant_from_issuers().unwrap_or(path_tenant)
        } else {
            path_tenant
        };
        Authority::new(&host, &tenant, version)
    }
}

/// The token request for an on-premises Exchange host: app-only `https://host/.default`, or
/// delegated `https://host/EWS.AccessAsUser.All`.
pub fn on_prem_request(ews_url: &Url, delegated: bool) -> TokenRequest {
    let host = ews_url.host_str().unwrap_or_default();
    let resource = match ews_url.port() {
        Some(p) => format!("{}://{host}:{p}", ews_url.scheme()),
        None => format!("{}://{host}", ews_url.scheme()),
    };
    if delegated {
        TokenRequest::scopes([format!("{resource}/EWS.AccessAsUser.All")])
    } else {
        TokenRequest::scopes([format!("{resource}/.default")])
    }
}

/// Sends the empty-bearer probe (`Authorization: Bearer ` with no token) to an on-premises EWS
/// URL and parses the 401 challenge.
pub async fn probe(http: &reqwest::Client, ews_url: &Url) -> Result<HmaChallenge, AuthError> {
    let resp = http
        .post(ews_url.clone())
        .header("Authorization", "Bearer ")
        .header("Content-Type", "text/xml; charset=utf-8")
        .body("")
        .send()
        .await
        .map_err(|e| AuthError::transport(ews_url, e))?;
    let status = resp.status().as_u16();
    let values: Vec<String> = resp
        .headers()
        .get_all("www-authenticate")
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_string))
        .collect();
    let challenges = parse_www_authenticate(values.iter().map(String::as_str));
    HmaChallenge::from_challenges(&challenges).ok_or_else(|| AuthError::Http {
        status,
        url: strip_query(ews_url),
        snippet: if values.is_empty() {
            "no WWW-Authenticate header: a device in front of Exchange may be answering".into()
        } else {
            format!("no Bearer challenge (offered: {})", values.join(" | "))
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXO: &str = r#"Bearer client_id="00000002-0000-0ff1-ce00-000000000000", trusted_issuers="00000001-0000-0000-c000-000000000000@*", token_types="app_asserted_user_v1 service_asserted_app_v1", authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize",Basic Realm="""#;
    const ONPREM: &str = r#"Bearer client_id="00000002-0000-0ff1-ce00-000000000000", trusted_issuers="00000001-0000-0000-c000-000000000000@5de110f8-2e0f-4d45-891d-bcf2218e253d,00000004-0000-0ff1-ce00-000000000000@contoso.com", token_types="app_asserted_user_v1 service_asserted_app_v1", authorization_uri="https://login.windows.net/common/oauth2/authorize""#;

    #[test]
    fn parses_exchange_online_combined_header() {
        let ch = parse_www_authenticate([EXO]);
        assert_eq!(ch.len(), 2, "{ch:?}");
        assert_eq!(ch[0].scheme, "Bearer");
        assert_eq!(ch[1].scheme, "Basic");
        assert_eq!(ch[1].param("realm"), Some(""));
        let h = HmaChallenge::from_challenges(&ch).expect("bearer");
        assert_eq!(
            h.client_id.as_deref(),
            Some("00000002-0000-0ff1-ce00-000000000000")
        );
        assert_eq!(
            h.token_types,
            vec!["app_asserted_user_v1", "service_asserted_app_v1"]
        );
        assert_eq!(h.tenant_from_issuers(), None);
        assert_eq!(h.other_schemes, vec!["Basic"]);
    }

    #[test]
    fn fill_authority_keeps_what_the_settings_name() {
        let ch = parse_www_authenticate([ONPREM]);
        let h = HmaChallenge::from_challenges(&ch).expect("bearer");
        let mut s = crate::AuthSettings::default();
        h.fill_authority(&mut s).expect("fills");
        assert_eq!(
            s.authority_host.as_deref().map(|h| h.trim_end_matches('/')),
            Some("https://login.windows.net")
        );
        assert_eq!(
            s.tenant.as_deref(),
            Some("5de110f8-2e0f-4d45-891d-bcf2218e253d")
        );
        let mut s = crate::AuthSettings {
            authority_host: Some("https://localhost:8443".into()),
            ..crate::AuthSettings::default()
        };
        h.fill_authority(&mut s).expect("fills");
        assert_eq!(s.authority_host.as_deref(), Some("https://localhost:8443"));
        assert_eq!(
            s.tenant.as_deref(),
            Some("5de110f8-2e0f-4d45-891d-bcf2218e253d")
        );
    }

    #[test]
    fn parses_on_prem_hma_two_headers_and_derives_authority() {
        let ch = parse_www_authenticate([ONPREM, r#"Basic realm="mail.contoso.com""#]);
        let h = HmaChallenge::from_challenges(&ch).expect("bearer");
        assert!(h.hma_enabled());
        assert_eq!(h.trusted_issuers.len(), 2);
        assert_eq!(
            h.tenant_from_issuers().as_deref(),
            Some("5de110f8-2e0f-4d45-891d-bcf2218e253d")
        );
        let a = h.authority(EndpointVersion::V2).expect("authority");
        assert_eq!(a.host().as_str(), "https://login.windows.net/");
        assert_eq!(a.tenant(), "5de110f8-2e0f-4d45-891d-bcf2218e253d");
        let url = Url::parse("https://mail.contoso.com/EWS/Exchange.asmx").expect("url");
        assert_eq!(
            on_prem_request(&url, false).scopes,
            vec!["https://mail.contoso.com/.default"]
        );
        assert_eq!(
            on_prem_request(&url, true).scopes,
            vec!["https://mail.contoso.com/EWS.AccessAsUser.All"]
        );
    }

    #[test]
    fn without_hma_there_is_no_authorization_uri() {
        let ch = parse_www_authenticate([
            r#"Bearer client_id="00000002-0000-0ff1-ce00-000000000000", trusted_issuers="00000001-0000-0000-c000-000000000000@t", token_types="app_asserted_user_v1 service_asserted_app_v1""#,
            "NTLM",
            "Negotiate",
        ]);
        let h = HmaChallenge::from_challenges(&ch).expect("bearer");
        assert!(!h.hma_enabled());
        assert!(h.authority(EndpointVersion::V2).is_err());
        assert_eq!(h.other_schemes, vec!["NTLM", "Negotiate"]);
    }

    #[test]
    fn rejected_token_error_and_token68() {
        let ch = parse_www_authenticate([
            r#"Bearer error="invalid_token", client_id="x""#,
            "Negotiate YIIabc==",
        ]);
        let h = HmaChallenge::from_challenges(&ch).expect("bearer");
        assert_eq!(h.error.as_deref(), Some("invalid_token"));
        assert_eq!(ch[1].token68.as_deref(), Some("YIIabc=="));
    }

    proptest::proptest! {
        #[test]
        fn parser_never_panics(s in ".{0,200}") {
            let ch = parse_www_authenticate([s.as_str()]);
            let _ = HmaChallenge::from_challenges(&ch);
        }

        #[test]
        fn parser_never_panics_on_header_like_input(s in r#"[A-Za-z =",\\]{0,80}"#) {
            let _ = parse_www_authenticate([s.as_str()]);
        }
    }
}
