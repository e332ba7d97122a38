//! The authority: host, tenant and endpoint version, and the URLs derived from them.

use serde::{Deserialize, Serialize};
use url::Url;

use crate::error::ConfigError;

/// The public-cloud authority host.
pub const PUBLIC_CLOUD_HOST: &str = "https://login.microsoftonline.com";

/// Which generation of the Entra endpoints to use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EndpointVersion {
    /// `/oauth2/token` with `resource=`.
    V1,
    /// `/oauth2/v2.0/token` with `scope=` (the default).
    #[default]
    V2,
}

/// An Entra authority: host URL (public cloud, sovereign cloud or emulator), tenant (GUID, domain,
/// or one of `common`/`organizations`/`consumers`) and endpoint version.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Authority {
    host: Url,
    tenant: String,
    version: EndpointVersion,
}

impl Authority {
    /// Builds an authority. `host` is a URL such as `https://login.microsoftonline.us` or
    /// `http://127.0.0.1:41234`; a bare host name gets `https://`.
    pub fn new(host: &str, tenant: &str, version: EndpointVersion) -> Result<Self, ConfigError> {
        let host = parse_host(host)?;
        let tenant = tenant.trim();
        if tenant.is_empty()
            || !tenant
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_')
        {
            return Err(ConfigError::new(
                "authority",
                "tenant",
                format!("`{tenant}` is not a tenant id or domain"),
                "give the directory (tenant) id GUID or a verified domain such as contoso.onmicrosoft.com",
            ));
        }
        Ok(Authority {
            host,
            tenant: tenant.to_ascii_lowercase(),
            version,
        })
    }

    /// The public-cloud authority for a tenant, v2 endpoints.
    pub fn public_cloud(tenant: &str) -> Result<Self, ConfigError> {
        Authority::new(PUBLIC_CLOUD_HOST, tenant, EndpointVersion::V2)
    }

    /// The authority host, e.g. `https://login.microsoftonline.com/`.
    pub fn host(&self) -> &Url {
        &self.host
    }

    /// The tenant as configured (lower case).
    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// The endpoint version.
    pub fn version(&self) -> EndpointVersion {
        self.version
    }

    /// The same authority with another tenant (after resolving a domain to its GUID).
    pub fn with_tenant(&self, tenant: &str) -> Result<Self, ConfigError> {
        Authority::new(self.host.as_str(), tenant, self.version)
    }

    /// The same authority with another endpoint version.
    pub fn with_version(&self, version: EndpointVersion) -> Self {
        Authority {
            version,
            ..self.clone()
        }
    }

    /// Whether the tenant is a multi-tenant alias that cannot identify a directory.
    pub fn is_multi_tenant_alias(&self) -> bool {
        matches!(
            self.tenant.as_str(),
            "common" | "organizations" | "consumers"
        )
    }

    /// Refuses `common`/`organizations`/`consumers` for app-only flows, before any request
    /// (Entra would answer AADSTS50059; cause `tenant_not_specified`).
    pub fn require_specific_tenant(&self) -> Result<(), ConfigError> {
        if self.is_multi_tenant_alias() {
            return Err(ConfigError::new(
                "authority",
                "tenant",
                format!(
                    "`{}` cannot be used for app-only (client credentials) tokens: Entra ID answers AADSTS50059 because no tenant is identified",
                    self.tenant
                ),
                "set the tenant to the directory id GUID or a verified domain of the tenant that holds the mailboxes",
            ));
        }
        Ok(())
    }

    fn join(&self, path: &str) -> Url {
        let mut url = self.host.clone();
        url.set_path(&format!("{}/{}", self.tenant, path));
        url
    }

    /// The token endpoint.
    pub fn token_endpoint(&self) -> Url {
        match self.version {
            EndpointVersion::V1 => self.join("oauth2/token"),
            EndpointVersion::V2 => self.join("oauth2/v2.0/token"),
        }
    }

    /// The device authorization endpoint.
    pub fn device_code_endpoint(&self) -> Url {
        match self.version {
            EndpointVersion::V1 => self.join("oauth2/devicecode"),
            EndpointVersion::V2 => self.join("oauth2/v2.0/devicecode"),
        }
    }

    /// The browser authorization endpoint.
    pub fn authorize_endpoint(&self) -> Url {
        match self.version {
            EndpointVersion::V1 => self.join("oauth2/authorize"),
            EndpointVersion::V2 => self.join("oauth2/v2.0/authorize"),
        }
    }

    /// The OpenID configuration document.
    pub fn openid_configuration_url(&self) -> Url {
        match self.version {
            EndpointVersion::V1 => self.join(".well-known/openid-configuration"),
            EndpointVersion::V2 => self.join("v2.0/.well-known/openid-configuration"),
        }
    }

    /// The admin-consent endpoint (`/{tenant}/v2.0/adminconsent` or v1 `/{tenant}/adminconsent`).
    pub fn admin_consent_endpoint(&self) -> Url {
        match self.version {
            EndpointVersion::V1 => self.join("adminconsent"),
            EndpointVersion::V2 => self.join("v2.0/adminconsent"),
        }
    }

    /// A stable text key for caches: host, tenant and version.
    pub fn cache_key(&self) -> String {
        let v = match self.version {
            EndpointVersion::V1 => "v1",
            EndpointVersion::V2 => "v2",
        };
        format!(
            "{}|{}|{}",
            self.host.as_str().trim_end_matches('/'),
            self.tenant,
            v
        )
    }
}

impl std::fmt::Display for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{}",
            self.host.as_str().trim_end_matches('/'),
            self.tenant
        )
    }
}

fn parse_host(host: &str) -> Result<Url, ConfigError> {
    let host = host.trim();
    let text = if host.contains("://") {
        host.to_string()
    } else {
        format!("https://{host}")
    };
    let bad = |msg: String| {
        ConfigError::new(
            "authority",
            "authority_host",
            msg,
            "give a URL such as https://login.microsoftonline.com (or the emulator's base URL)",
        )
    };
    let mut url = Url::parse(&text).map_err(|e| bad(format!("`{host}` is not a URL: {e}")))?;
    if url.scheme() != "https" && url.scheme() != "http" {
        return Err(bad(format!(
            "`{host}` must use https (or http for loopback)"
        )));
    }
    if url.scheme() == "http" {
        let loopback = matches!(
            url.host(),
            Some(url::Host::Ipv4(ip)) if ip.is_loopback()
        ) || matches!(url.host(), Some(url::Host::Ipv6(ip)) if ip.is_loopback())
            || url.host_str() == Some("localhost");
        if !loopback {
            return Err(bad(format!(
                "`{host}` uses plain http; only loopback hosts may"
            )));
        }
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad(format!("`{host}` has no host name")));
    }
    // Only scheme, host and port count; a path such as `/common` is dropped.
    url.set_path("/");
    url.set_query(None);
    url.set_fragment(None);
    Ok(url)
}

/// The fields of an OpenID configuration document that exgate uses.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct OpenIdConfiguration {
    /// The token endpoint; its path carries the tenant GUID.
    pub token_endpoint: String,
    /// The issuer.
    #[serde(default)]
    pub issuer: String,
    /// The authorization endpoint.
    #[serde(default)]
    pub authorization_endpoint: String,
    /// The device authorization endpoint.
    #[serde(default)]
    pub device_authorization_endpoint: String,
}

impl OpenIdConfiguration {
    /// The tenant id taken from the path of the token endpoint (`/{tid}/oauth2/...`).
    pub fn tenant_id(&self) -> Option<String> {
        let url = Url::parse(&self.token_endpoint).ok()?;
        let first = url.path_segments()?.next()?.to_string();
        (!first.is_empty()).then_some(first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_v1_and_v2() {
        let a = Authority::new("http://127.0.0.1:8080", "Contoso.COM", EndpointVersion::V2)
            .expect("valid");
        assert_eq!(
            a.token_endpoint().as_str(),
            "http://127.0.0.1:8080/contoso.com/oauth2/v2.0/token"
        );
        assert_eq!(
            a.openid_configuration_url().as_str(),
            "http://127.0.0.1:8080/contoso.com/v2.0/.well-known/openid-configuration"
        );
        let v1 = a.with_version(EndpointVersion::V1);
        assert_eq!(
            v1.token_endpoint().as_str(),
            "http://127.0.0.1:8080/contoso.com/oauth2/token"
        );
        assert_eq!(
            v1.device_code_endpoint().as_str(),
            "http://127.0.0.1:8080/contoso.com/oauth2/devicecode"
        );
    }

    #[test]
    fn bare_host_gets_https_and_path_is_dropped() {
        let a = Authority::new("login.microsoftonline.us/common", "t", EndpointVersion::V2)
            .expect("valid");
        assert_eq!(a.host().as_str(), "https://login.microsoftonline.us/");
    }

    #[test]
    fn refuses_common_for_app_only() {
        for t in ["common", "organizations", "consumers"] {
            let a = Authority::public_cloud(t).expect("valid");
            let err = a.require_specific_tenant().expect_err("refused");
            assert_eq!(err.field, "tenant");
            assert!(err.message.contains("AADSTS50059"));
        }
        assert!(
            Authority::public_cloud("contoso.com")
                .expect("valid")
                .require_specific_tenant()
                .is_ok()
        );
    }

    #[test]
    fn rejects_plain_http_off_loopback_and_bad_tenants() {
        assert!(Authority::new("http://login.example", "t", EndpointVersion::V2).is_err());
        assert!(Authority::new("ftp://x", "t", EndpointVersion::V2).is_err());
        assert!(Authority::public_cloud("a/b").is_err());
        assert!(Authority::public_cloud("").is_err());
    }

    #[test]
    fn tenant_from_openid_configuration() {
        let c = OpenIdConfiguration {
            token_endpoint: "https://login.microsoftonline.com/1111-2222/oauth2/v2.0/token".into(),
            issuer: String::new(),
            authorization_endpoint: String::new(),
            device_authorization_endpoint: String::new(),
        };
        assert_eq!(c.tenant_id().as_deref(), Some("1111-2222"));
    }

    proptest::proptest! {
        #[test]
        fn authority_new_never_panics(host in ".{0,60}", tenant in ".{0,40}") {
            let _ = Authority::new(&host, &tenant, EndpointVersion::V2);
        }
    }
}
