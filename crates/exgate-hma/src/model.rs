//! Records recognised by what they contain (the prompt's cmdlet when the paste kept it, else the
//! properties printed) and read into the typed configuration of an organisation.

use serde::Serialize;

use crate::layout::{self, Layout, Record};

/// Where a value was read: file and line, for evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Origin {
    /// The file as given.
    pub file: String,
    /// Line number, from 1.
    pub line: usize,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// The virtual directories HMA needs OAuth on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VdirKind {
    /// MAPI over HTTP (`/mapi`).
    Mapi,
    /// EWS (`/EWS/Exchange.asmx`).
    Ews,
    /// Offline address book (`/OAB`).
    Oab,
    /// Autodiscover.
    Autodiscover,
    /// Exchange ActiveSync (`/Microsoft-Server-ActiveSync`).
    ActiveSync,
}

impl VdirKind {
    /// Every kind, in report order.
    pub const ALL: [VdirKind; 5] = [
        VdirKind::Mapi,
        VdirKind::Ews,
        VdirKind::Oab,
        VdirKind::Autodiscover,
        VdirKind::ActiveSync,
    ];

    /// The cmdlet noun that lists it.
    pub fn cmdlet(self) -> &'static str {
        match self {
            VdirKind::Mapi => "MapiVirtualDirectory",
            VdirKind::Ews => "WebServicesVirtualDirectory",
            VdirKind::Oab => "OabVirtualDirectory",
            VdirKind::Autodiscover => "AutodiscoverVirtualDirectory",
            VdirKind::ActiveSync => "ActiveSyncVirtualDirectory",
        }
    }

    /// The `Set-` cmdlet that turns OAuth on for every directory of this kind.
    pub fn oauth_fix(self) -> &'static str {
        match self {
            VdirKind::Mapi => {
                "Get-MapiVirtualDirectory | Set-MapiVirtualDirectory -IISAuthenticationMethods Ntlm, OAuth, Negotiate"
            }
            VdirKind::Ews => {
                "Get-WebServicesVirtualDirectory | Set-WebServicesVirtualDirectory -OAuthAuthentication $true"
            }
            VdirKind::Oab => {
                "Get-OabVirtualDirectory | Set-OabVirtualDirectory -OAuthAuthentication $true"
            }
            VdirKind::Autodiscover => {
                "Get-AutodiscoverVirtualDirectory | Set-AutodiscoverVirtualDirectory -OAuthAuthentication $true"
            }
            VdirKind::ActiveSync => {
                "Add OAuth to the IIS authentication of /Microsoft-Server-ActiveSync on the server (it is there by default; re-run the Hybrid Configuration Wizard if it was removed), then: Get-ActiveSyncVirtualDirectory | fl server,*auth*"
            }
        }
    }

    fn from_text(t: &str) -> Option<VdirKind> {
        let t = t.to_ascii_lowercase();
        // Cmdlet nouns first, then the directory names of Identity and URLs.
        if t.contains("mapivirtualdirectory") {
            Some(VdirKind::Mapi)
        } else if t.contains("webservicesvirtualdirectory") {
            Some(VdirKind::Ews)
        } else if t.contains("oabvirtualdirectory") {
            Some(VdirKind::Oab)
        } else if t.contains("autodiscovervirtualdirectory") {
            Some(VdirKind::Autodiscover)
        } else if t.contains("activesyncvirtualdirectory") {
            Some(VdirKind::ActiveSync)
        } else if t.contains("/mapi") || t.contains("\\mapi") {
            Some(VdirKind::Mapi)
        } else if t.contains("/ews") || t.contains("\\ews") {
            Some(VdirKind::Ews)
        } else if t.contains("/oab") || t.contains("\\oab") {
            Some(VdirKind::Oab)
        } else if t.contains("autodiscover") {
            Some(VdirKind::Autodiscover)
        } else if t.contains("microsoft-server-activesync") {
            Some(VdirKind::ActiveSync)
        } else {
            None
        }
    }
}

impl std::fmt::Display for VdirKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            VdirKind::Mapi => "MAPI",
            VdirKind::Ews => "EWS",
            VdirKind::Oab => "OAB",
            VdirKind::Autodiscover => "Autodiscover",
            VdirKind::ActiveSync => "ActiveSync",
        })
    }
}

/// One virtual directory of one server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Vdir {
    /// Which directory.
    pub kind: VdirKind,
    /// The server (`Server`, else the server part of `Identity`).
    pub server: String,
    /// `InternalUrl`.
    pub internal_url: Option<String>,
    /// `ExternalUrl`.
    pub external_url: Option<String>,
    /// Whether OAuth is on: `OAuthAuthentication`, else OAuth among
    /// `IISAuthenticationMethods`/`InternalAuthenticationMethods`. `None` when not printed.
    pub oauth: Option<bool>,
    /// The authentication methods printed (`IISAuthenticationMethods`, else
    /// `InternalAuthenticationMethods`), for comparing servers.
    pub methods: Vec<String>,
    /// Where it was read.
    pub origin: Origin,
}

/// An `AuthServer` (EvoSts, AzureAD, ACS, ADFS).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuthServer {
    /// `Name`.
    pub name: String,
    /// `Type`, when printed.
    pub kind: Option<String>,
    /// `Enabled`.
    pub enabled: Option<bool>,
    /// `IsDefaultAuthorizationEndpoint`.
    pub is_default: Option<bool>,
    /// `DomainName`.
    pub domain_name: Option<String>,
    /// Where it was read.
    pub origin: Origin,
}

impl AuthServer {
    /// Whether this is the EvoSts (Entra ID) authorization server the HCW creates.
    pub fn is_evosts(&self) -> bool {
        self.name.to_ascii_lowercase().starts_with("evosts")
            || self
                .kind
                .as_deref()
                .is_some_and(|k| k.eq_ignore_ascii_case("AzureAD"))
                && self.is_default.is_some()
                && self.name.to_ascii_lowercase().contains("evo")
    }

    /// Whether this is a server-to-server OAuth issuer (`AzureAD` or `MicrosoftACS`, or named so).
    pub fn is_s2s(&self) -> bool {
        let k = self.kind.as_deref().unwrap_or("").to_ascii_lowercase();
        let n = self.name.to_ascii_lowercase();
        k == "azuread" || k == "microsoftacs" || n.starts_with("acs") || n.starts_with("azuread")
    }
}

/// A `PartnerApplication`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartnerApp {
    /// `Name`.
    pub name: String,
    /// `ApplicationIdentifier`.
    pub application_id: String,
    /// `Enabled`.
    pub enabled: Option<bool>,
    /// Where it was read.
    pub origin: Origin,
}

/// An Exchange server and its version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Server {
    /// `Name`.
    pub name: String,
    /// `AdminDisplayVersion` as printed.
    pub version_text: String,
    /// Major, minor, build read from it (`Version 15.1 (Build 2507.6)` -> 15, 1, 2507).
    pub version: Option<(u32, u32, u32)>,
    /// `ServerRole`, when printed (an Edge server holds no Auth certificate).
    pub role: Option<String>,
    /// Where it was read.
    pub origin: Origin,
}

/// An Exchange certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Certificate {
    /// `Thumbprint`, upper case.
    pub thumbprint: String,
    /// The server it was listed on (from `Identity` `SERVER\THUMBPRINT`, or `PSComputerName`).
    pub server: Option<String>,
    /// `NotAfter` as printed.
    pub not_after_text: Option<String>,
    /// `NotAfter` read.
    #[serde(skip)]
    pub not_after: Option<time::PrimitiveDateTime>,
    /// Where it was read.
    pub origin: Origin,
}

/// `Get-AuthConfig`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuthConfig {
    /// `CurrentCertificateThumbprint`, upper case.
    pub current: Option<String>,
    /// `NextCertificateThumbprint`.
    pub next: Option<String>,
    /// `NextCertificateEffectiveDate` as printed.
    pub next_effective: Option<String>,
    /// Where it was read.
    pub origin: Origin,
}

/// An intra-organization connector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Connector {
    /// `Name`.
    pub name: String,
    /// `DiscoveryEndpoint`.
    pub discovery_endpoint: Option<String>,
    /// `Enabled`.
    pub enabled: Option<bool>,
    /// `TargetAddressDomains`.
    pub target_domains: Vec<String>,
    /// Where it was read.
    pub origin: Origin,
}

/// A value with where it was read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Read<T> {
    /// The value.
    pub value: T,
    /// Where.
    pub origin: Origin,
}

/// The organisation as its cmdlets printed it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Org {
    /// Virtual directories.
    pub vdirs: Vec<Vdir>,
    /// `Get-ClientAccessService` `AutoDiscoverServiceInternalUri` per server.
    pub autodiscover_uris: Vec<Read<(String, String)>>,
    /// Servers.
    pub servers: Vec<Server>,
    /// Auth servers.
    pub auth_servers: Vec<AuthServer>,
    /// Whether `Get-AuthServer` was pasted at all.
    pub auth_servers_listed: bool,
    /// Partner applications.
    pub partner_apps: Vec<PartnerApp>,
    /// Whether `Get-PartnerApplication` was pasted.
    pub partner_apps_listed: bool,
    /// `OAuth2ClientProfileEnabled`.
    pub client_profile: Option<Read<bool>>,
    /// `Get-AuthConfig`.
    pub auth_config: Option<AuthConfig>,
    /// Exchange certificates.
    pub certificates: Vec<Certificate>,
    /// Intra-organization connectors.
    pub connectors: Vec<Connector>,
    /// Whether `Get-IntraOrganizationConnector` was pasted.
    pub connectors_listed: bool,
    /// The service principal names of `00000002-0000-0ff1-ce00-000000000000`.
    pub spns: Option<Read<Vec<String>>>,
    /// `Test-OAuthConnectivity` results: `ResultType` and the `Detail`/`Error` text.
    pub oauth_tests: Vec<Read<(String, String)>>,
    /// What was not recognised: a line each, with where.
    pub unrecognised: Vec<Read<String>>,
}

/// The Exchange Online application id (`00000002-0000-0ff1-ce00-000000000000`).
pub const EXCHANGE_ONLINE_APP: &str = "00000002-0000-0ff1-ce00-000000000000";

static VERB_NOUN: std::sync::LazyLock<Option<regex::Regex>> =
    std::sync::LazyLock::new(|| regex::Regex::new(r"(?i)\b(?:get|test)-[a-z]+").ok());

/// The cmdlet whose objects a pipeline prints: its last `Get-`/`Test-` (in `Get-ExchangeServer |
/// ForEach-Object { Get-ExchangeCertificate ... } | fl` the certificates), lower case.
fn producer(command: &str) -> String {
    VERB_NOUN
        .as_ref()
        .and_then(|r| r.find_iter(command).last())
        .map_or_else(String::new, |m| m.as_str().to_ascii_lowercase())
}

fn boolean(v: Option<&str>) -> Option<bool> {
    match v?.trim().to_ascii_lowercase().as_str() {
        "true" | "$true" => Some(true),
        "false" | "$false" => Some(false),
        _ => None,
    }
}

fn opt(v: Option<&str>) -> Option<String> {
    v.map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

fn server_of(r: &Record) -> String {
    if let Some(s) = opt(r.get("Server")) {
        return s;
    }
    // `Identity : EX1\mapi (Default Web Site)`
    if let Some(id) = r.get("Identity")
        && let Some((server, _)) = id.split_once('\\')
    {
        return server.trim().to_owned();
    }
    opt(r.get("PSComputerName")).unwrap_or_else(|| "(server not printed)".to_owned())
}

/// `Version 15.1 (Build 2507.6)` -> (15, 1, 2507); `15.2.1544.4` -> (15, 2, 1544).
pub fn parse_version(text: &str) -> Option<(u32, u32, u32)> {
    let nums: Vec<u32> = text
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .filter_map(|s| s.parse().ok())
        .collect();
    match nums.as_slice() {
        [major, minor, build, ..] => Some((*major, *minor, *build)),
        _ => None,
    }
}

/// `3/28/2027 10:00:00 AM` (PowerShell's en-US default), `28/03/2027 10:00:00`, or ISO 8601
/// (what the collection script writes). A day/month order the numbers do not settle is `None`.
pub fn parse_date(text: &str) -> Option<time::PrimitiveDateTime> {
    use time::{Date, Month, PrimitiveDateTime, Time};
    let t = text.trim();
    let pm = t.to_ascii_uppercase().ends_with("PM");
    let am = t.to_ascii_uppercase().ends_with("AM");
    let nums: Vec<u32> = t
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .filter_map(|s| s.parse().ok())
        .collect();
    let (y, mo, d, rest) = match nums.as_slice() {
        [a, b, c, rest @ ..] if *a > 31 => (*a, *b, *c, rest),
        [a, b, c, rest @ ..] if *c > 31 => {
            // D/M/Y when the first cannot be a month, M/D/Y when the second cannot; when both
            // could, the date is not read (`05/03/2027` is March in London, May in New York).
            if *a > 12 {
                (*c, *b, *a, rest)
            } else if *b > 12 || a == b {
                (*c, *a, *b, rest)
            } else {
                return None;
            }
        }
        _ => return None,
    };
    let mut h = rest.first().copied().unwrap_or(0);
    if pm && h < 12 {
        h += 12;
    }
    if am && h == 12 {
        h = 0;
    }
    let mi = rest.get(1).copied().unwrap_or(0);
    let s = rest.get(2).copied().unwrap_or(0);
    let date = Date::from_calendar_date(
        i32::try_from(y).ok()?,
        Month::try_from(u8::try_from(mo).ok()?).ok()?,
        u8::try_from(d).ok()?,
    )
    .ok()?;
    let time = Time::from_hms(
        u8::try_from(h).ok()?,
        u8::try_from(mi).ok()?,
        u8::try_from(s).ok()?,
    )
    .ok()?;
    Some(PrimitiveDateTime::new(date, time))
}

impl Org {
    /// Adds what `text` (one file, already decoded) shows.
    pub fn add(&mut self, file: &str, text: &str) {
        let layout = layout::read(text);
        self.add_layout(file, &layout);
    }

    fn add_layout(&mut self, file: &str, layout: &Layout) {
        let at = |line: usize| Origin {
            file: file.to_owned(),
            line,
        };
        for r in &layout.records {
            let cmd = producer(r.cmdlet.as_deref().unwrap_or(""));
            let origin = at(r.line);
            let named = |noun: &str| cmd.contains(&noun.to_ascii_lowercase());
            if named("VirtualDirectory")
                || (r.has("Server")
                    && (r.has("InternalUrl")
                        || r.has("OAuthAuthentication")
                        || r.has("IISAuthenticationMethods")
                        || r.has("InternalAuthenticationMethods")))
            {
                let kind = VdirKind::from_text(&cmd)
                    .or_else(|| r.get("Identity").and_then(VdirKind::from_text))
                    .or_else(|| r.get("Name").and_then(VdirKind::from_text))
                    .or_else(|| r.get("InternalUrl").and_then(VdirKind::from_text))
                    .or_else(|| r.get("ExternalUrl").and_then(VdirKind::from_text));
                let Some(kind) = kind else {
                    self.unrecognised.push(Read {
                        value: "a virtual directory of unknown kind (no cmdlet, Identity or URL names it)".to_owned(),
                        origin,
                    });
                    continue;
                };
                let methods = r
                    .get("IISAuthenticationMethods")
                    .or_else(|| r.get("InternalAuthenticationMethods"))
                    .map(layout::list)
                    .unwrap_or_default();
                let in_methods = |k: &str| {
                    r.get(k).map(|v| {
                        layout::list(v)
                            .iter()
                            .any(|m| m.eq_ignore_ascii_case("OAuth"))
                    })
                };
                let oauth = match kind {
                    // MAPI has no OAuthAuthentication switch: its IIS methods decide.
                    VdirKind::Mapi => in_methods("IISAuthenticationMethods")
                        .or_else(|| in_methods("InternalAuthenticationMethods")),
                    _ => boolean(r.get("OAuthAuthentication"))
                        .or_else(|| in_methods("InternalAuthenticationMethods"))
                        .or_else(|| in_methods("IISAuthenticationMethods")),
                };
                self.vdirs.push(Vdir {
                    kind,
                    server: server_of(r),
                    internal_url: opt(r.get("InternalUrl")),
                    external_url: opt(r.get("ExternalUrl")),
                    oauth,
                    methods,
                    origin,
                });
            } else if named("ClientAccessService")
                || named("ClientAccessServer")
                || r.has("AutoDiscoverServiceInternalUri")
            {
                if let Some(uri) = opt(r.get("AutoDiscoverServiceInternalUri")) {
                    let server = opt(r.get("Name"))
                        .or_else(|| opt(r.get("Identity")))
                        .unwrap_or_else(|| server_of(r));
                    self.autodiscover_uris.push(Read {
                        value: (server, uri),
                        origin,
                    });
                }
            } else if named("Get-ExchangeServer") || r.has("AdminDisplayVersion") {
                let text = r.get("AdminDisplayVersion").unwrap_or("").to_owned();
                self.servers.push(Server {
                    name: opt(r.get("Name"))
                        .or_else(|| opt(r.get("Identity")))
                        .unwrap_or_else(|| "(name not printed)".to_owned()),
                    version: parse_version(&text),
                    version_text: text,
                    role: opt(r.get("ServerRole")),
                    origin,
                });
            } else if named("Get-AuthServer")
                || r.has("IsDefaultAuthorizationEndpoint")
                || r.has("TokenIssuingEndpoint")
            {
                self.auth_servers_listed = true;
                self.auth_servers.push(AuthServer {
                    name: opt(r.get("Name")).unwrap_or_default(),
                    kind: opt(r.get("Type")),
                    enabled: boolean(r.get("Enabled")),
                    is_default: boolean(r.get("IsDefaultAuthorizationEndpoint")),
                    domain_name: opt(r.get("DomainName")),
                    origin,
                });
            } else if named("Get-PartnerApplication")
                || (r.has("ApplicationIdentifier")
                    && (r.has("LinkedAccount") || r.has("AcceptSecurityIdentifierInformation")))
            {
                self.partner_apps_listed = true;
                self.partner_apps.push(PartnerApp {
                    name: opt(r.get("Name")).unwrap_or_default(),
                    application_id: opt(r.get("ApplicationIdentifier")).unwrap_or_default(),
                    enabled: boolean(r.get("Enabled")),
                    origin,
                });
            } else if r.has("OAuth2ClientProfileEnabled") {
                if let Some(v) = boolean(r.get("OAuth2ClientProfileEnabled")) {
                    self.client_profile = Some(Read { value: v, origin });
                }
            } else if r.has("CurrentCertificateThumbprint") {
                self.auth_config = Some(AuthConfig {
                    current: opt(r.get("CurrentCertificateThumbprint"))
                        .map(|s| s.to_ascii_uppercase()),
                    next: opt(r.get("NextCertificateThumbprint")).map(|s| s.to_ascii_uppercase()),
                    next_effective: opt(r.get("NextCertificateEffectiveDate")),
                    origin,
                });
            } else if named("Get-ExchangeCertificate")
                || (r.has("Thumbprint") && (r.has("NotAfter") || r.has("Services")))
            {
                let thumbprint = opt(r.get("Thumbprint"))
                    .unwrap_or_default()
                    .to_ascii_uppercase();
                let server = r
                    .get("Identity")
                    .and_then(|id| id.split_once('\\'))
                    .map(|(s, _)| s.trim().to_owned())
                    .or_else(|| opt(r.get("PSComputerName")))
                    .or_else(|| opt(r.get("Server")));
                let not_after_text = opt(r.get("NotAfter"));
                self.certificates.push(Certificate {
                    thumbprint,
                    server,
                    not_after: not_after_text.as_deref().and_then(parse_date),
                    not_after_text,
                    origin,
                });
            } else if named("IntraOrganizationConnector") || r.has("DiscoveryEndpoint") {
                self.connectors_listed = true;
                self.connectors.push(Connector {
                    name: opt(r.get("Name")).unwrap_or_default(),
                    discovery_endpoint: opt(r.get("DiscoveryEndpoint")),
                    enabled: boolean(r.get("Enabled")),
                    target_domains: r
                        .get("TargetAddressDomains")
                        .map(layout::list)
                        .unwrap_or_default(),
                    origin,
                });
            } else if r.has("ServicePrincipalNames") {
                let spns = r
                    .get("ServicePrincipalNames")
                    .map(layout::list)
                    .unwrap_or_default();
                self.add_spns(spns, origin);
            } else if named("Test-OAuthConnectivity") || r.has("ResultType") {
                let detail = opt(r.get("Detail"))
                    .or_else(|| opt(r.get("Error")))
                    .unwrap_or_default();
                self.oauth_tests.push(Read {
                    value: (opt(r.get("ResultType")).unwrap_or_default(), detail),
                    origin,
                });
            } else {
                let keys: Vec<&str> = r.fields.iter().take(4).map(|f| f.key.as_str()).collect();
                self.unrecognised.push(Read {
                    value: format!(
                        "a record with {} (not output of a cmdlet exgate reads)",
                        keys.join(", ")
                    ),
                    origin,
                });
            }
        }
        for b in &layout.bare {
            let cmd = b.cmdlet.as_deref().unwrap_or("").to_ascii_lowercase();
            let origin = at(b.items.first().map_or(0, |(l, _)| *l));
            let spn_like = |s: &str| {
                let l = s.to_ascii_lowercase();
                l.starts_with("https://")
                    || l.starts_with("http://")
                    || l.starts_with(EXCHANGE_ONLINE_APP)
            };
            if cmd.contains("serviceprincipalnames") || b.items.iter().all(|(_, s)| spn_like(s)) {
                let spns = b.items.iter().map(|(_, s)| s.clone()).collect();
                self.add_spns(spns, origin);
            } else if cmd.contains("oauth2clientprofileenabled")
                && let Some(v) = b.items.first().and_then(|(_, s)| boolean(Some(s)))
            {
                self.client_profile = Some(Read { value: v, origin });
            } else {
                for (line, s) in &b.items {
                    self.unrecognised.push(Read {
                        // Pasted text can hold a secret: it is shown redacted.
                        value: exgate_diagnose::redact::redact_text(
                            &s.chars().take(120).collect::<String>(),
                            exgate_diagnose::redact::TokenMode::Remove,
                        ),
                        origin: at(*line),
                    });
                }
            }
        }
    }

    fn add_spns(&mut self, spns: Vec<String>, origin: Origin) {
        match &mut self.spns {
            Some(r) => {
                for s in spns {
                    if !r.value.contains(&s) {
                        r.value.push(s);
                    }
                }
            }
            None => {
                self.spns = Some(Read {
                    value: spns,
                    origin,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_dates() {
        assert_eq!(
            parse_version("Version 15.1 (Build 2507.6)"),
            Some((15, 1, 2507))
        );
        assert_eq!(parse_version("15.2.1544.4"), Some((15, 2, 1544)));
        assert_eq!(parse_version("Version 14.3"), None);
        let d = parse_date("3/28/2027 10:00:00 PM").expect("date");
        assert_eq!(
            (d.year(), u8::from(d.month()), d.day(), d.hour()),
            (2027, 3, 28, 22)
        );
        assert!(
            parse_date("05/03/2027 10:00:00").is_none(),
            "day and month ambiguous"
        );
        let d = parse_date("28/03/2027 10:00:00").expect("date");
        assert_eq!((u8::from(d.month()), d.day()), (3, 28));
        assert!(parse_date("2027-03-28T10:00:00").is_some());
        assert!(parse_date("soon").is_none());
    }

    proptest::proptest! {
        #[test]
        fn reading_never_panics(s in "\\PC{0,300}") {
            let mut org = Org::default();
            org.add("x", &s);
            let _ = parse_date(&s);
            let _ = parse_version(&s);
        }
    }
}
