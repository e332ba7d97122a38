//! Admin consent: the URL an administrator opens, and the reading of the redirect that comes
//! back (query `admin_consent=True&tenant=...`, an error, or a `form_post` with an `id_token`).

use serde::Serialize;
use url::Url;

use crate::authority::{Authority, EndpointVersion};
use crate::error::aadsts_codes_in;
use crate::loopback::RedirectParams;

/// The admin-consent URL for `client_id`. On v2 `scope` defaults to
/// `https://graph.microsoft.com/.default` (all statically configured permissions). `common` lets
/// any tenant's admin consent.
pub fn admin_consent_url(
    authority: &Authority,
    client_id: &str,
    redirect_uri: &str,
    state: &str,
    scope: Option<&str>,
) -> Url {
    let mut url = authority.admin_consent_endpoint();
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("client_id", client_id);
        if authority.version() == EndpointVersion::V2 {
            q.append_pair(
                "scope",
                scope.unwrap_or("https://graph.microsoft.com/.default"),
            );
        }
        q.append_pair("redirect_uri", redirect_uri)
            .append_pair("state", state);
    }
    url
}

/// What the consent redirect said.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConsentOutcome {
    /// Whether consent was granted.
    pub granted: bool,
    /// The consenting tenant id (`tenant` parameter or the id token's `tid`).
    pub tenant: Option<String>,
    /// OAuth error, when consent failed.
    pub error: Option<String>,
    /// Error description.
    pub error_description: Option<String>,
    /// AADSTS codes found in the description.
    pub error_codes: Vec<u32>,
    /// Whether `state` matched the expected value (`None` when nothing was expected).
    pub state_matches: Option<bool>,
}

/// Reads a consent redirect.
pub fn consent_outcome(params: &RedirectParams, expected_state: Option<&str>) -> ConsentOutcome {
    let get = |k: &str| params.get(k).filter(|v| !v.is_empty()).cloned();
    let id_token_tid = get("id_token").and_then(|t| jwt_claim(&t, "tid"));
    let error = get("error");
    let error_description = get("error_description");
    let granted = error.is_none()
        && (get("admin_consent").is_some_and(|v| v.eq_ignore_ascii_case("true"))
            || id_token_tid.is_some()
            || get("code").is_some());
    ConsentOutcome {
        granted,
        tenant: get("tenant").or(id_token_tid),
        error_codes: error_description
            .as_deref()
            .map(aadsts_codes_in)
            .unwrap_or_default(),
        error,
        error_description,
        state_matches: expected_state.map(|s| params.get("state").map(String::as_str) == Some(s)),
    }
}

/// The claims of a JWT, decoded without verification (display only).
pub fn jwt_claims(jwt: &str) -> Option<serde_json::Map<String, serde_json::Value>> {
    exgate_wire::jwt::decode(jwt).ok().map(|d| d.claims)
}

/// One claim of a JWT, decoded without verification (display only).
pub fn jwt_claim(jwt: &str, claim: &str) -> Option<String> {
    match jwt_claims(jwt)?.get(claim)? {
        serde_json::Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    #[test]
    fn urls_v2_and_v1() {
        let a = Authority::public_cloud("common").expect("a");
        let u = admin_consent_url(&a, "app", "http://localhost:8400/", "st", None);
        assert_eq!(u.path(), "/common/v2.0/adminconsent");
        let q: std::collections::BTreeMap<_, _> = u.query_pairs().into_owned().collect();
        assert_eq!(q["client_id"], "app");
        assert_eq!(q["scope"], "https://graph.microsoft.com/.default");
        assert_eq!(q["redirect_uri"], "http://localhost:8400/");
        let u = admin_consent_url(&a.with_version(EndpointVersion::V1), "app", "r", "s", None);
        assert_eq!(u.path(), "/common/adminconsent");
        assert!(!u.as_str().contains("scope="));
    }

    #[test]
    fn outcomes() {
        let p: RedirectParams = [
            ("admin_consent", "True"),
            ("tenant", "1111"),
            ("state", "s"),
        ]
        .into_iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        let o = consent_outcome(&p, Some("s"));
        assert!(o.granted);
        assert_eq!(o.tenant.as_deref(), Some("1111"));
        assert_eq!(o.state_matches, Some(true));

        let p: RedirectParams = [
            ("error", "access_denied"),
            ("error_description", "AADSTS65004: User declined to consent"),
            ("state", "x"),
        ]
        .into_iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        let o = consent_outcome(&p, Some("s"));
        assert!(!o.granted);
        assert_eq!(o.error_codes, vec![65004]);
        assert_eq!(o.state_matches, Some(false));

        let claims = URL_SAFE_NO_PAD.encode(br#"{"tid":"2222","aud":"app"}"#);
        let p: RedirectParams = [("id_token", format!("e30.{claims}.sig"))]
            .into_iter()
            .map(|(a, b)| (a.to_string(), b))
            .collect();
        let o = consent_outcome(&p, None);
        assert!(o.granted);
        assert_eq!(o.tenant.as_deref(), Some("2222"));
    }

    proptest::proptest! {
        #[test]
        fn jwt_claim_never_panics(s in ".{0,120}") {
            let _ = jwt_claim(&s, "tid");
        }
    }
}
