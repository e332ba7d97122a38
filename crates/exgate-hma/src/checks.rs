//! The checks of Microsoft's HMA guide over an organisation's cmdlet output, each a tree node
//! with its status and findings (cause ids from the diagnosis catalog, evidence, and the fix as
//! the cmdlet to run).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::model::{EXCHANGE_ONLINE_APP, Org, Origin, VdirKind};

/// How sure a finding is that HMA will fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// HMA fails (for some clients, servers or namespaces).
    Error,
    /// Works today, but risky or unsupported.
    Warning,
    /// Worth knowing (the next certificate rotation).
    Info,
}

/// One thing found wrong (or worth knowing).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Cause id (a cause of the diagnosis catalog, `catalog/causes.toml`).
    pub id: String,
    /// Severity.
    pub severity: Severity,
    /// What it is about: a server, a virtual directory, a namespace.
    pub subject: String,
    /// What was read, with file and line.
    pub evidence: Vec<String>,
    /// The cmdlet (or step) that fixes it.
    pub fix: String,
}

/// A check's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "status", content = "why")]
pub enum Status {
    /// Passed.
    Pass,
    /// Failed: see the findings.
    Fail,
    /// Passed with warnings.
    Warning,
    /// Not run, and why (usually: a cmdlet's output was not given).
    NotRun(String),
}

/// One check of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Stable name (`spns`, `vdir_oauth`, ...).
    pub name: &'static str,
    /// What it checks, for people.
    pub title: &'static str,
    /// Outcome.
    #[serde(flatten)]
    pub status: Status,
    /// Its findings.
    pub findings: Vec<Finding>,
    /// What passed or was seen, for the tree (a line each).
    pub passed: Vec<String>,
}

/// The readiness report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Ready: every check ran and none found an error.
    pub ready: bool,
    /// Every finding, errors first.
    pub findings: Vec<Finding>,
    /// The checks, in order.
    pub checks: Vec<Check>,
    /// Text that was not read, with where.
    pub unrecognised: Vec<String>,
}

struct Builder {
    check: Check,
}

impl Builder {
    fn new(name: &'static str, title: &'static str) -> Builder {
        Builder {
            check: Check {
                name,
                title,
                status: Status::Pass,
                findings: Vec::new(),
                passed: Vec::new(),
            },
        }
    }
    fn not_run(mut self, why: impl Into<String>) -> Check {
        self.check.status = Status::NotRun(why.into());
        self.check
    }
    fn find(
        &mut self,
        id: &str,
        severity: Severity,
        subject: impl Into<String>,
        evidence: Vec<String>,
        fix: impl Into<String>,
    ) {
        self.check.findings.push(Finding {
            id: id.to_owned(),
            severity,
            subject: subject.into(),
            evidence,
            fix: fix.into(),
        });
    }
    fn pass(&mut self, line: impl Into<String>) {
        self.check.passed.push(line.into());
    }
    fn done(mut self) -> Check {
        self.check.status = status_of(&self.check.findings);
        self.check
    }
}

/// A check's status from its findings: an error fails it, a warning warns.
pub(crate) fn status_of(findings: &[Finding]) -> Status {
    if findings.iter().any(|f| f.severity == Severity::Error) {
        Status::Fail
    } else if findings.iter().any(|f| f.severity == Severity::Warning) {
        Status::Warning
    } else {
        Status::Pass
    }
}

fn ev(origin: &Origin, what: impl std::fmt::Display) -> String {
    format!("{origin}: {what}")
}

/// The host of an `http(s)://host[:port]/...` URL, lower case.
fn host_of(url: &str) -> Option<String> {
    let rest = url.trim().split_once("://")?.1;
    let host = rest.split(['/', '?', '#']).next()?;
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    let host = host.split(':').next()?;
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

/// Runs every check over `org`, at `now` (certificate expiry); the live probe is reported as not
/// run.
pub fn check(org: &Org, now: time::PrimitiveDateTime) -> Report {
    check_all(org, &Live::default(), now)
}

/// What the live probes answered, when they ran.
#[derive(Debug, Clone, Copy, Default)]
pub struct Live<'a> {
    /// The empty-Bearer probe of each virtual directory.
    pub probes: Option<&'a [crate::probe::ProbeAnswer]>,
    /// The token request and EWS call for each namespace.
    pub signins: Option<&'a [crate::signin::SigninAnswer]>,
}

/// Runs every check over `org` and, when given, the live probes' answers. `ready` needs every
/// cmdlet check to have run and passed, and each live probe, when it ran, to have passed: a
/// probe adds proof, its absence does not remove any.
pub fn check_all(org: &Org, live: &Live<'_>, now: time::PrimitiveDateTime) -> Report {
    let probes = live.probes;
    let mut checks = vec![
        versions(org),
        spns(org),
        vdir_oauth(org),
        consistency(org),
        evosts(org),
        client_profile(org),
        s2s(org),
        auth_certificate(org, now),
        oauth_test(org),
    ];
    let probe = match probes {
        Some(answers) => crate::probe::check_probes(answers, org),
        None => Builder::new(crate::probe::LIVE_PROBE, crate::probe::LIVE_PROBE_TITLE)
            .not_run("no --url namespace given"),
    };
    let probe_ran = probes.is_some();
    checks.push(probe);
    let signin = match live.signins {
        Some(answers) => crate::signin::check_signins(answers),
        None => Builder::new(crate::signin::SIGNIN, crate::signin::SIGNIN_TITLE)
            .not_run("no credential given to sign in with (--client-id, --username)"),
    };
    let signin_ran = live.signins.is_some();
    checks.push(signin);
    let mut findings: Vec<Finding> = checks.iter().flat_map(|c| c.findings.clone()).collect();
    findings.sort_by_key(|f| f.severity);
    let ready = checks
        .iter()
        .filter(|c| probe_ran || c.name != crate::probe::LIVE_PROBE)
        .filter(|c| signin_ran || c.name != crate::signin::SIGNIN)
        .all(|c| matches!(c.status, Status::Pass | Status::Warning))
        && !findings.iter().any(|f| f.severity == Severity::Error);
    Report {
        ready,
        findings,
        checks,
        unrecognised: org
            .unrecognised
            .iter()
            .map(|u| ev(&u.origin, &u.value))
            .collect(),
    }
}

const HCW: &str =
    "Run the latest Hybrid Configuration Wizard (classic hybrid) from a supported server";

fn versions(org: &Org) -> Check {
    let mut b = Builder::new("versions", "Every server runs a version HMA supports");
    if org.servers.is_empty() {
        return b.not_run("no Get-ExchangeServer | fl Name,AdminDisplayVersion,ServerRole output");
    }
    for s in &org.servers {
        let Some((major, minor, build)) = s.version else {
            b.find(
                "hma_unsupported_topology",
                Severity::Warning,
                &s.name,
                vec![ev(
                    &s.origin,
                    format!("AdminDisplayVersion : {} (not read)", s.version_text),
                )],
                "Get-ExchangeServer | fl Name,AdminDisplayVersion",
            );
            continue;
        };
        // Minimums from Microsoft's HMA guide: 2013 CU19 (15.0.1365), 2016 CU8 (15.1.1415),
        // 2019 CU1 (15.2.330); Exchange 2010 (14.x) and older never get EvoSts.
        let (name, minimum) = match (major, minor) {
            (m, _) if m < 15 => ("Exchange 2010 or older", None),
            (15, 0) => ("Exchange 2013", Some((1365, "CU19"))),
            (15, 1) => ("Exchange 2016", Some((1415, "CU8"))),
            _ => ("Exchange 2019 / SE", Some((330, "CU1"))),
        };
        let evidence = vec![ev(
            &s.origin,
            format!("{} AdminDisplayVersion : {}", s.name, s.version_text),
        )];
        match minimum {
            None => b.find(
                "hma_unsupported_topology",
                Severity::Error,
                &s.name,
                evidence,
                "Decommission the server: HMA is not supported with Exchange 2010 (or Edge 2010) in the organisation, and the Hybrid Configuration Wizard creates no EvoSts while one is present",
            ),
            Some((min, cu)) if build < min => b.find(
                "hma_unsupported_topology",
                Severity::Error,
                &s.name,
                evidence,
                format!("Install the latest cumulative update on {} ({name} needs {cu} or later for HMA)", s.name),
            ),
            Some(_) if major == 15 && minor == 0 => b.find(
                "hma_unsupported_topology",
                Severity::Warning,
                &s.name,
                evidence,
                format!("Move {} off Exchange 2013: out of support since April 2023", s.name),
            ),
            Some(_) => b.pass(format!("{}: {name} {}", s.name, s.version_text)),
        }
    }
    b.done()
}

/// Every namespace clients use, with where each was read.
fn namespaces(org: &Org) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for v in &org.vdirs {
        for (which, url) in [
            ("InternalUrl", &v.internal_url),
            ("ExternalUrl", &v.external_url),
        ] {
            if let Some(url) = url
                && let Some(host) = host_of(url)
            {
                out.entry(host).or_default().push(ev(
                    &v.origin,
                    format!("{} {} {which} : {url}", v.server, v.kind),
                ));
            }
        }
    }
    for a in &org.autodiscover_uris {
        if let Some(host) = host_of(&a.value.1) {
            out.entry(host).or_default().push(ev(
                &a.origin,
                format!(
                    "{} AutoDiscoverServiceInternalUri : {}",
                    a.value.0, a.value.1
                ),
            ));
        }
    }
    out
}

fn spns(org: &Org) -> Check {
    let mut b = Builder::new(
        "spns",
        "Every client namespace is an https:// service principal name of Exchange Online (00000002-0000-0ff1-ce00-000000000000)",
    );
    let Some(spns) = &org.spns else {
        return b.not_run("no service principal names of 00000002-0000-0ff1-ce00-000000000000 (Get-MgServicePrincipal -Filter \"AppId eq '00000002-0000-0ff1-ce00-000000000000'\" | select -ExpandProperty ServicePrincipalNames)");
    };
    let names = namespaces(org);
    if names.is_empty() {
        return b.not_run("no virtual directory URLs (Get-MapiVirtualDirectory, Get-WebServicesVirtualDirectory, Get-OABVirtualDirectory, Get-ActiveSyncVirtualDirectory | fl server,*url*; Get-ClientAccessService | fl Name,AutoDiscoverServiceInternalUri)");
    }
    let registered: BTreeSet<String> = spns
        .value
        .iter()
        .filter(|s| s.to_ascii_lowercase().starts_with("https://"))
        .filter_map(|s| host_of(s))
        .collect();
    let mut missing = Vec::new();
    for (host, seen) in &names {
        if registered.contains(host) {
            b.pass(format!("https://{host}/ is registered"));
        } else {
            let mut evidence = seen.clone();
            evidence.push(ev(
                &spns.origin,
                format!(
                    "no https://{host}/ among the {} service principal names",
                    spns.value.len()
                ),
            ));
            missing.push(host.clone());
            b.find(
                "spn_missing",
                Severity::Error,
                format!("https://{host}/"),
                evidence,
                String::new(),
            );
        }
    }
    if !missing.is_empty() {
        let adds: Vec<String> = missing
            .iter()
            .map(|h| format!("\"https://{h}/\""))
            .collect();
        let fix = format!(
            "$sp = Get-MgServicePrincipal -Filter \"AppId eq '{EXCHANGE_ONLINE_APP}'\"; Update-MgServicePrincipal -ServicePrincipalId $sp.Id -ServicePrincipalNames ($sp.ServicePrincipalNames + @({}))",
            adds.join(", ")
        );
        for f in &mut b.check.findings {
            f.fix.clone_from(&fix);
        }
    }
    b.done()
}

fn vdir_oauth(org: &Org) -> Check {
    let mut b = Builder::new(
        "vdir_oauth",
        "OAuth is on for every virtual directory of every server",
    );
    if org.vdirs.is_empty() {
        return b.not_run("no virtual directory output (Get-MapiVirtualDirectory | fl server,*url*,*auth*, and the same for WebServices, OAB, Autodiscover, ActiveSync)");
    }
    let kinds: BTreeSet<VdirKind> = org.vdirs.iter().map(|v| v.kind).collect();
    for v in &org.vdirs {
        match v.oauth {
            Some(true) => b.pass(format!("{} {}: OAuth", v.server, v.kind)),
            Some(false) => {
                let printed = if v.methods.is_empty() {
                    "OAuthAuthentication : False".to_owned()
                } else {
                    format!(
                        "authentication methods {{{}}} without OAuth",
                        v.methods.join(", ")
                    )
                };
                b.find(
                    "hma_vdir_oauth_disabled",
                    Severity::Error,
                    format!("{} {}", v.server, v.kind),
                    vec![ev(&v.origin, printed)],
                    v.kind.oauth_fix(),
                );
            }
            None => b.find(
                "hma_vdir_oauth_disabled",
                Severity::Warning,
                format!("{} {}", v.server, v.kind),
                vec![ev(&v.origin, "no authentication property printed")],
                format!("Get-{} | fl server,*url*,*auth*", v.kind.cmdlet()),
            ),
        }
    }
    let absent: Vec<String> = VdirKind::ALL
        .iter()
        .filter(|k| !kinds.contains(k))
        .map(|k| format!("Get-{}", k.cmdlet()))
        .collect();
    if !absent.is_empty() {
        b.find(
            "hma_vdir_oauth_disabled",
            Severity::Warning,
            "virtual directories not given",
            vec![format!("no output of {}", absent.join(", "))],
            format!(
                "{} | fl server,*url*,*auth*",
                absent.join(" | fl server,*url*,*auth*; ")
            ),
        );
    }
    b.done()
}

fn consistency(org: &Org) -> Check {
    let mut b = Builder::new(
        "consistency",
        "Every server has the same virtual directory settings",
    );
    let servers: BTreeSet<&str> = org.vdirs.iter().map(|v| v.server.as_str()).collect();
    if servers.len() < 2 {
        return b.not_run(if org.vdirs.is_empty() {
            "no virtual directory output"
        } else {
            "one server"
        });
    }
    for kind in VdirKind::ALL {
        let of: Vec<_> = org.vdirs.iter().filter(|v| v.kind == kind).collect();
        let mut by: BTreeMap<(Option<bool>, Vec<String>), Vec<&crate::model::Vdir>> =
            BTreeMap::new();
        for v in &of {
            let mut m: Vec<String> = v.methods.iter().map(|s| s.to_ascii_lowercase()).collect();
            m.sort();
            by.entry((v.oauth, m)).or_default().push(v);
        }
        if by.len() > 1 {
            let evidence = of
                .iter()
                .map(|v| {
                    ev(
                        &v.origin,
                        format!(
                            "{}: OAuth {}, methods {{{}}}",
                            v.server,
                            v.oauth
                                .map_or("not printed", |o| if o { "on" } else { "off" }),
                            v.methods.join(", ")
                        ),
                    )
                })
                .collect();
            b.find(
                "hma_servers_inconsistent",
                Severity::Warning,
                format!("{kind} virtual directories"),
                evidence,
                format!("Give every server the same settings: Get-{} | fl server,*auth*, then Set-{} on the odd ones", kind.cmdlet(), kind.cmdlet()),
            );
        } else if !of.is_empty() {
            b.pass(format!("{kind}: the same on {} servers", of.len()));
        }
    }
    b.done()
}

fn evosts(org: &Org) -> Check {
    let mut b = Builder::new(
        "evosts",
        "One enabled EvoSts is the default authorization endpoint",
    );
    if !org.auth_servers_listed {
        return b.not_run("no Get-AuthServer | fl Name,Type,Enabled,IsDefaultAuthorizationEndpoint,DomainName output");
    }
    let evo: Vec<_> = org.auth_servers.iter().filter(|a| a.is_evosts()).collect();
    if evo.is_empty() {
        let seen = org
            .auth_servers
            .iter()
            .map(|a| ev(&a.origin, format!("Name : {}", a.name)))
            .collect();
        b.find(
            "hma_evosts_missing",
            Severity::Error,
            "Get-AuthServer",
            seen,
            HCW,
        );
        return b.done();
    }
    let enabled: Vec<_> = evo.iter().filter(|a| a.enabled != Some(false)).collect();
    for a in evo.iter().filter(|a| a.enabled == Some(false)) {
        b.find(
            "hma_evosts_missing",
            if enabled.is_empty() {
                Severity::Error
            } else {
                Severity::Warning
            },
            &a.name,
            vec![ev(&a.origin, "Enabled : False")],
            format!("Set-AuthServer \"{}\" -Enabled $true", a.name),
        );
    }
    if enabled.is_empty() {
        // Every EvoSts is disabled: that is the finding; which one is the default is moot.
        return b.done();
    }
    let defaults: Vec<_> = enabled
        .iter()
        .filter(|a| a.is_default == Some(true))
        .collect();
    match defaults.len() {
        0 => {
            let name = enabled.first().map_or("EvoSts", |a| a.name.as_str());
            b.find(
                "hma_evosts_not_default",
                Severity::Error,
                name,
                enabled
                    .iter()
                    .map(|a| {
                        ev(
                            &a.origin,
                            format!(
                                "{}: IsDefaultAuthorizationEndpoint : {}",
                                a.name,
                                a.is_default.map_or("not printed".to_owned(), |d| d.to_string())
                            ),
                        )
                    })
                    .collect(),
                format!("Set-AuthServer \"{name}\" -IsDefaultAuthorizationEndpoint $true"),
            );
        }
        1 => b.pass(format!("{} is enabled and the default", defaults[0].name)),
        _ => b.find(
            "hma_evosts_not_default",
            Severity::Error,
            "Get-AuthServer",
            defaults.iter().map(|a| ev(&a.origin, format!("{}: IsDefaultAuthorizationEndpoint : True", a.name))).collect(),
            "Keep one default: Set-AuthServer \"<the other one>\" -IsDefaultAuthorizationEndpoint $false",
        ),
    }
    b.done()
}

fn client_profile(org: &Org) -> Check {
    let mut b = Builder::new(
        "client_profile",
        "OAuth2ClientProfileEnabled is on for the organisation",
    );
    let Some(p) = &org.client_profile else {
        return b.not_run("no Get-OrganizationConfig | fl OAuth2ClientProfileEnabled output");
    };
    if p.value {
        b.pass("OAuth2ClientProfileEnabled : True");
    } else {
        b.find(
            "hma_client_profile_disabled",
            Severity::Error,
            "organisation",
            vec![ev(&p.origin, "OAuth2ClientProfileEnabled : False")],
            "Set-OrganizationConfig -OAuth2ClientProfileEnabled $true",
        );
    }
    b.done()
}

fn s2s(org: &Org) -> Check {
    let mut b = Builder::new(
        "s2s_oauth",
        "Server-to-server OAuth with Exchange Online: an AzureAD/ACS auth server, the Exchange Online partner application, the intra-organization connector",
    );
    if !org.auth_servers_listed && !org.partner_apps_listed && !org.connectors_listed {
        return b.not_run(
            "no Get-AuthServer, Get-PartnerApplication or Get-IntraOrganizationConnector output",
        );
    }
    if org.auth_servers_listed {
        match org
            .auth_servers
            .iter()
            .find(|a| a.is_s2s() && a.enabled != Some(false))
        {
            Some(a) => b.pass(format!("auth server {} enabled", a.name)),
            None => b.find(
                "hma_s2s_oauth_missing",
                Severity::Error,
                "Get-AuthServer",
                org.auth_servers
                    .iter()
                    .map(|a| {
                        ev(
                            &a.origin,
                            format!(
                                "{} Type : {}",
                                a.name,
                                a.kind.as_deref().unwrap_or("not printed")
                            ),
                        )
                    })
                    .collect(),
                HCW,
            ),
        }
    }
    if org.partner_apps_listed {
        match org
            .partner_apps
            .iter()
            .find(|p| p.application_id.eq_ignore_ascii_case(EXCHANGE_ONLINE_APP))
        {
            Some(p) if p.enabled == Some(false) => b.find(
                "hma_s2s_oauth_missing",
                Severity::Error,
                &p.name,
                vec![ev(&p.origin, "Enabled : False")],
                format!("Set-PartnerApplication \"{}\" -Enabled $true", p.name),
            ),
            Some(p) => b.pass(format!(
                "partner application {} ({EXCHANGE_ONLINE_APP})",
                p.name
            )),
            None => b.find(
                "hma_s2s_oauth_missing",
                Severity::Error,
                "Get-PartnerApplication",
                vec![format!(
                    "no partner application with ApplicationIdentifier {EXCHANGE_ONLINE_APP}"
                )],
                HCW,
            ),
        }
    }
    if org.connectors_listed {
        const DISCOVERY: &str = "https://autodiscover-s.outlook.com/autodiscover/autodiscover.svc";
        match org.connectors.iter().find(|c| c.enabled != Some(false)) {
            Some(c) => {
                if c.discovery_endpoint
                    .as_deref()
                    .is_some_and(|d| !d.eq_ignore_ascii_case(DISCOVERY))
                {
                    b.find(
                        "hma_s2s_oauth_missing",
                        Severity::Warning,
                        &c.name,
                        vec![ev(&c.origin, format!("DiscoveryEndpoint : {}", c.discovery_endpoint.as_deref().unwrap_or("")))],
                        format!("Set-IntraOrganizationConnector \"{}\" -DiscoveryEndpoint https://autodiscover-s.outlook.com/autodiscover/autodiscover.svc", c.name),
                    );
                } else {
                    b.pass(format!("intra-organization connector {} enabled", c.name));
                }
            }
            None => b.find(
                "hma_s2s_oauth_missing",
                Severity::Error,
                "Get-IntraOrganizationConnector",
                org.connectors
                    .iter()
                    .map(|c| ev(&c.origin, format!("{} Enabled : False", c.name)))
                    .collect(),
                HCW,
            ),
        }
    }
    b.done()
}

fn auth_certificate(org: &Org, now: time::PrimitiveDateTime) -> Check {
    let mut b = Builder::new(
        "auth_certificate",
        "The Auth certificate exists, is valid and is on every server",
    );
    let Some(cfg) = &org.auth_config else {
        return b.not_run("no Get-AuthConfig | fl CurrentCertificateThumbprint,NextCertificateThumbprint,NextCertificateEffectiveDate output");
    };
    let Some(current) = &cfg.current else {
        b.find(
            "hma_auth_certificate_invalid",
            Severity::Error,
            "Get-AuthConfig",
            vec![ev(&cfg.origin, "CurrentCertificateThumbprint is empty")],
            "New-ExchangeCertificate -KeySize 2048 -PrivateKeyExportable $true -SubjectName \"cn=Microsoft Exchange Server Auth Certificate\" -FriendlyName \"Microsoft Exchange Server Auth Certificate\" -DomainName @(); then Set-AuthConfig -NewCertificateThumbprint <thumbprint> -NewCertificateEffectiveDate (Get-Date); Set-AuthConfig -PublishCertificate; re-run the Hybrid Configuration Wizard",
        );
        return b.done();
    };
    if org.certificates.is_empty() {
        b.find(
            "hma_auth_certificate_invalid",
            Severity::Warning,
            current.as_str(),
            vec![ev(&cfg.origin, format!("CurrentCertificateThumbprint : {current}")), "no Get-ExchangeCertificate output to find it in".to_owned()],
            format!("Get-ExchangeServer | ForEach-Object {{ Get-ExchangeCertificate -Server $_.Name -Thumbprint {current} | fl Identity,Thumbprint,NotAfter }}"),
        );
        return b.done();
    }
    let found: Vec<_> = org
        .certificates
        .iter()
        .filter(|c| &c.thumbprint == current)
        .collect();
    if found.is_empty() {
        b.find(
            "hma_auth_certificate_invalid",
            Severity::Error,
            current.as_str(),
            vec![ev(&cfg.origin, format!("CurrentCertificateThumbprint : {current}")), format!("no certificate with that thumbprint among the {} listed", org.certificates.len())],
            "Create and publish a new Auth certificate (MonitorExchangeAuthCertificate.ps1 -ValidateAndRenewAuthCertificate $true, https://aka.ms/MonitorExchangeAuthCertificate), then re-run the Hybrid Configuration Wizard",
        );
        return b.done();
    }
    for c in &found {
        match c.not_after {
            Some(end) if end < now => b.find(
                "hma_auth_certificate_invalid",
                Severity::Error,
                format!("{} on {}", current, c.server.as_deref().unwrap_or("a server")),
                vec![ev(&c.origin, format!("NotAfter : {}", c.not_after_text.as_deref().unwrap_or("")))],
                "Renew the Auth certificate (MonitorExchangeAuthCertificate.ps1 -ValidateAndRenewAuthCertificate $true, https://aka.ms/MonitorExchangeAuthCertificate), then re-run the Hybrid Configuration Wizard",
            ),
            Some(end) if end < now + time::Duration::days(60) => b.find(
                "hma_auth_certificate_invalid",
                Severity::Warning,
                format!("{} on {}", current, c.server.as_deref().unwrap_or("a server")),
                vec![ev(&c.origin, format!("NotAfter : {} (within 60 days)", c.not_after_text.as_deref().unwrap_or("")))],
                "Stage the next Auth certificate now: MonitorExchangeAuthCertificate.ps1 -ValidateAndRenewAuthCertificate $true",
            ),
            Some(_) => b.pass(format!("{current} valid until {} on {}", c.not_after_text.as_deref().unwrap_or(""), c.server.as_deref().unwrap_or("a server"))),
            None => b.find(
                "hma_auth_certificate_invalid",
                Severity::Warning,
                current.as_str(),
                vec![ev(&c.origin, format!("NotAfter : {} (not read)", c.not_after_text.as_deref().unwrap_or("not printed")))],
                format!("Get-ExchangeCertificate -Thumbprint {current} | fl Identity,NotAfter"),
            ),
        }
    }
    // On every server (Edge servers hold none).
    let listed_on: BTreeSet<String> = org
        .certificates
        .iter()
        .filter_map(|c| c.server.as_ref())
        .map(|s| short(s))
        .collect();
    let with_it: BTreeSet<String> = found
        .iter()
        .filter_map(|c| c.server.as_ref())
        .map(|s| short(s))
        .collect();
    for s in &org.servers {
        let name = short(&s.name);
        let edge = s
            .role
            .as_deref()
            .is_some_and(|r| r.to_ascii_lowercase().contains("edge"));
        if !edge && listed_on.contains(&name) && !with_it.contains(&name) {
            b.find(
                "hma_auth_certificate_invalid",
                Severity::Error,
                format!("{current} on {}", s.name),
                vec![ev(&s.origin, format!("{} lists certificates, not {current}", s.name))],
                format!("Export the Auth certificate with its key from a server that has it and Import-ExchangeCertificate on {}", s.name),
            );
        }
    }
    if let (Some(next), Some(when)) = (&cfg.next, &cfg.next_effective) {
        b.find(
            "hma_auth_certificate_invalid",
            Severity::Info,
            next.as_str(),
            vec![ev(
                &cfg.origin,
                format!(
                    "NextCertificateThumbprint : {next}, NextCertificateEffectiveDate : {when}"
                ),
            )],
            "Re-run the Hybrid Configuration Wizard after the rotation",
        );
    }
    b.done()
}

fn short(server: &str) -> String {
    server
        .split('.')
        .next()
        .unwrap_or(server)
        .to_ascii_lowercase()
}

fn oauth_test(org: &Org) -> Check {
    let mut b = Builder::new("oauth_test", "Test-OAuthConnectivity succeeds");
    if org.oauth_tests.is_empty() {
        return b.not_run("no Test-OAuthConnectivity -Service EWS -TargetUri https://<namespace>/ews/ -Mailbox <user> | fl output");
    }
    for t in &org.oauth_tests {
        let (result, detail) = &t.value;
        if result.eq_ignore_ascii_case("Success") {
            b.pass("ResultType : Success");
        } else {
            let first: String = detail.chars().take(300).collect();
            b.find(
                "spn_missing",
                Severity::Error,
                "Test-OAuthConnectivity",
                vec![ev(&t.origin, format!("ResultType : {result} {first}"))],
                "A 401 here means a namespace missing from the service principal names (see the spns check) or a test mailbox whose account is not synced to Entra ID",
            );
        }
    }
    b.done()
}
