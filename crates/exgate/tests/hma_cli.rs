//! `exgate hma`: exit codes, JSON shape, directories, UTF-16 files and the collection script.

mod common;

use assert_cmd::Command;

const HEALTHY: &str = include_str!("../../exgate-hma/tests/fixtures/healthy-two-servers.txt");

fn exgate() -> Command {
    let mut c = Command::cargo_bin("exgate").expect("binary");
    c.env("NO_COLOR", "1");
    c
}

#[test]
fn ready_not_ready_and_could_not_run() {
    let dir = tempfile::tempdir().unwrap();
    let healthy = dir.path().join("healthy.txt");
    std::fs::write(&healthy, HEALTHY).unwrap();
    let out = exgate()
        .args(["hma", "check", "--cmdlets"])
        .arg(&healthy)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .starts_with("Hybrid Modern Authentication readiness: READY")
    );

    // A directory holding the same output as UTF-16 with CRLF, split over two files, one fault.
    let split = dir.path().join("collected");
    std::fs::create_dir(&split).unwrap();
    let bad = HEALTHY.replace(
        "OAuth2ClientProfileEnabled : True",
        "OAuth2ClientProfileEnabled : False",
    );
    let (a, b) = bad.split_at(bad.find("[PS] exgate> Get-AuthServer").unwrap());
    let mut utf16 = vec![0xFF, 0xFE];
    for u in a.replace('\n', "\r\n").encode_utf16() {
        utf16.extend(u.to_le_bytes());
    }
    std::fs::write(split.join("1.txt"), utf16).unwrap();
    std::fs::write(split.join("2.txt"), b).unwrap();
    let html = dir.path().join("report.html");
    let out = exgate()
        .args(["hma", "check", "--json", "--cmdlets"])
        .arg(&split)
        .arg("--html")
        .arg(&html)
        .output()
        .unwrap();
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("NOT READY") && page.contains("hma_client_profile_disabled"));
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ready"], false);
    let f = &v["findings"][0];
    assert_eq!(f["id"], "hma_client_profile_disabled");
    assert_eq!(f["severity"], "error");
    assert_eq!(
        f["fix"],
        "Set-OrganizationConfig -OAuth2ClientProfileEnabled $true"
    );
    assert!(f["evidence"][0].as_str().unwrap().contains("2.txt:"), "{f}");
    assert!(
        v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["status"].is_string())
    );

    // Nothing readable: exit 2, and what was not read.
    let junk = dir.path().join("junk.txt");
    std::fs::write(&junk, "hello\nworld\n").unwrap();
    let out = exgate()
        .args(["hma", "check", "--cmdlets"])
        .arg(&junk)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("junk.txt:1") && err.contains("collect-script"),
        "{err}"
    );
    let out = exgate()
        .args(["hma", "check", "--cmdlets", "/nonexistent/x.txt"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/x.txt"));
    // A URL with credentials is refused before anything is probed, and never echoed.
    let out = exgate()
        .args([
            "hma",
            "check",
            "--url",
            "https://mail.contoso.com",
            "https://admin:CANARY-pw@mail.contoso.com",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("user name or password") && !err.contains("CANARY"),
        "{err}"
    );
    assert!(!err.contains("probing"), "nothing probed: {err}");
}

#[test]
fn the_collection_script_runs_every_cmdlet_the_checks_read() {
    let out = exgate().args(["hma", "collect-script"]).output().unwrap();
    assert!(out.status.success());
    let script = String::from_utf8_lossy(&out.stdout);
    for cmdlet in [
        "Get-ExchangeServer",
        "Get-MapiVirtualDirectory",
        "Get-WebServicesVirtualDirectory",
        "Get-OabVirtualDirectory",
        "Get-AutodiscoverVirtualDirectory",
        "Get-ActiveSyncVirtualDirectory",
        "Get-ClientAccessService",
        "Get-AuthServer",
        "Get-PartnerApplication",
        "Get-OrganizationConfig",
        "Get-AuthConfig",
        "Get-ExchangeCertificate",
        "Get-IntraOrganizationConnector",
        "Test-OAuthConnectivity",
        "Get-MgServicePrincipal",
    ] {
        assert!(script.contains(cmdlet), "{cmdlet}");
    }
    // It writes the prompt lines the reader takes the cmdlet from.
    assert!(script.contains("[PS] exgate> $Command"));
}

mod live {
    //! The live probe against the emulator's on-premises servers, one per switch.

    use std::path::Path;

    const SCENARIO: &str = r#"
[[tenants]]
name = "contoso"
id = "f31f3647-5d87-4b69-a0b6-73f62aeab14c"
domains = ["contoso.com"]

[[tenants.users]]
upn = "alice@contoso.com"
password = "Alice-Pass-2026"

[[tenants.users]]
upn = "dave@contoso.com"
password = "Dave-Pass-2026"

[[tenants.consent]]
app = "Hybrid mail client"
resource = "https://outlook.office365.com"
scopes = ["EWS.AccessAsUser.All"]

[[applications]]
client_id = "0d6a3c55-7f40-4a2e-9c1b-5e8f2a4b6c71"
name = "Hybrid mail client"
home_tenant = "contoso"
public_client = true

[[applications.permissions]]
resource = "https://outlook.office365.com"
scopes = ["EWS.AccessAsUser.All"]

[[tenants.consent]]
app = "Hybrid daemon"
resource = "https://outlook.office365.com"
roles = ["full_access_as_app"]

[[applications]]
client_id = "5b2e8c1d-0a4f-4d6e-8b3c-9f1a2e7d4c60"
name = "Hybrid daemon"
home_tenant = "contoso"

[[applications.secrets]]
value = "hybrid-daemon-secret-2026"

[exchange]

[[exchange.mailboxes]]
address = "alice@contoso.com"
server = "ready"

[[exchange.servers]]
name = "ready"
tenant = "contoso.com"
public_url = "https://mail.contoso.com"
hma = true
spns = ["https://mail.contoso.com"]

[[exchange.servers]]
name = "nospn"
tenant = "contoso.com"
public_url = "https://nospn.contoso.com"
hma = true

[[exchange.servers]]
name = "offload"
tenant = "contoso.com"
public_url = "https://offload.contoso.com"
hma = true
tls_offload = true
spns = ["https://offload.contoso.com"]

[[exchange.servers]]
name = "forwarded"
tenant = "contoso.com"
public_url = "https://webmail.contoso.com"
forwarded_as = "https://mail-int.contoso.com"
hma = true
spns = ["https://webmail.contoso.com"]

[[exchange.servers]]
name = "nohma"
tenant = "contoso.com"
public_url = "https://nohma.contoso.com"

[[exchange.servers]]
name = "noprofile"
tenant = "contoso.com"
public_url = "https://noprofile.contoso.com"
hma = true
client_profile_enabled = false

[[exchange.servers]]
name = "stripped"
tenant = "contoso.com"
public_url = "https://stripped.contoso.com"
hma = true
strip_bearer_challenge = true

[[exchange.servers]]
name = "ewsnooauth"
tenant = "contoso.com"
public_url = "https://ewsnooauth.contoso.com"
hma = true
[exchange.servers.ews]
auth = ["basic", "ntlm"]
"#;

    use super::common::Emulator;

    fn start(dir: &Path) -> (Emulator, String) {
        std::fs::write(dir.join("scenario.toml"), SCENARIO).unwrap();
        let (emulator, v) =
            super::common::start_emulator(dir, &["--tls", "--ca-out", "ca.pem"], |_| {
                dir.join("ca.pem").exists()
            });
        (
            emulator,
            v["base_url"].as_str().unwrap_or_default().to_owned(),
        )
    }

    /// The EWS and Autodiscover findings of probing one server.
    fn probe(dir: &Path, base: &str, server: &str) -> (i32, Vec<(String, String)>) {
        probe_with(dir, base, server, &[])
    }

    fn probe_with(
        dir: &Path,
        base: &str,
        server: &str,
        extra: &[&str],
    ) -> (i32, Vec<(String, String)>) {
        let out = super::exgate()
            .current_dir(dir)
            .args(["hma", "check", "--json", "--ca-cert", "ca.pem", "--url"])
            .arg(format!("{base}/onprem/{server}"))
            .args(extra)
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
        let check = v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "live_probe")
            .unwrap()
            .clone();
        let found = check["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["severity"] == "error")
            .map(|f| {
                (
                    f["subject"]
                        .as_str()
                        .unwrap()
                        .rsplit(' ')
                        .next()
                        .unwrap()
                        .to_owned(),
                    f["id"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        (out.status.code().unwrap_or(-1), found)
    }

    #[test]
    fn every_switch_is_named_by_the_probe() {
        let dir = tempfile::tempdir().unwrap();
        let (_emulator, base) = start(dir.path());
        let pair = |a: &str, b: &str| (a.to_owned(), b.to_owned());
        // Ready: EWS and Autodiscover pass; MAPI, OAB, ActiveSync are not served (warnings).
        let (_, found) = probe(dir.path(), &base, "ready");
        assert!(found.is_empty(), "{found:?}");
        // A pasted EWS URL is probed as its namespace.
        let (code, found) = probe(dir.path(), &base, "ready/EWS/Exchange.asmx");
        assert!(found.is_empty(), "{found:?}");
        assert_eq!(
            code, 1,
            "cmdlet checks not run: not ready, but no probe error"
        );
        let (_, found) = probe(dir.path(), &base, "nohma");
        assert_eq!(
            found,
            [
                pair("EWS", "oauth_not_enabled_onprem"),
                pair("Autodiscover", "oauth_not_enabled_onprem")
            ]
        );
        let (_, found) = probe(dir.path(), &base, "noprofile");
        assert_eq!(
            found,
            [
                pair("EWS", "hma_client_profile_disabled"),
                pair("Autodiscover", "hma_client_profile_disabled")
            ]
        );
        let (_, found) = probe(dir.path(), &base, "stripped");
        assert_eq!(
            found,
            [
                pair("EWS", "hma_vdir_oauth_disabled"),
                pair("Autodiscover", "hma_vdir_oauth_disabled")
            ]
        );
        // With the cmdlets showing OAuth on both directories, the missing challenge is the device's.
        std::fs::write(
            dir.path().join("vdirs.txt"),
            "[PS] C:\\> Get-WebServicesVirtualDirectory | fl server,*oauth*\n\nServer : EX1\nOAuthAuthentication : True\n\n\
             [PS] C:\\> Get-AutodiscoverVirtualDirectory | fl server,*oauth*\n\nServer : EX1\nOAuthAuthentication : True\n",
        )
        .unwrap();
        let (_, found) = probe_with(dir.path(), &base, "stripped", &["--cmdlets", "vdirs.txt"]);
        assert_eq!(
            found,
            [
                pair("EWS", "bearer_challenge_stripped"),
                pair("Autodiscover", "bearer_challenge_stripped")
            ]
        );
        let (code, found) = probe(dir.path(), &base, "ewsnooauth");
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0], pair("EWS", "oauth_not_enabled_onprem"));
        assert_eq!(code, 1);
    }

    /// The sign-in probe's findings (subject, id, severity) for one server and resource.
    fn sign_in(
        dir: &Path,
        base: &str,
        server: &str,
        resource: &str,
        user: &str,
        password: &str,
    ) -> (i32, Vec<(String, String)>, serde_json::Value) {
        let out = super::exgate()
            .current_dir(dir)
            .env("EXGATE_TEST_PW", password)
            .env_remove("AZURE_CLIENT_ID")
            .env_remove("AZURE_TENANT_ID")
            .env_remove("AZURE_CLIENT_SECRET")
            .args(["hma", "check", "--json", "--ca-cert", "ca.pem", "--url"])
            .arg(format!("{base}/onprem/{server}"))
            .args(["--resource", resource])
            .args(["--client-id", "0d6a3c55-7f40-4a2e-9c1b-5e8f2a4b6c71"])
            // The challenge names login.windows.net, as Exchange's does; the emulator is Entra ID.
            .args(["--authority-host", base])
            .args(["--username", user, "--password-env", "EXGATE_TEST_PW"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!stderr.contains(password), "password in stderr: {stderr}");
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains(password),
            "password in the report"
        );
        let v: serde_json::Value =
            serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
        let check = v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "signin_probe")
            .unwrap()
            .clone();
        let found = check["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                (
                    f["id"].as_str().unwrap().to_owned(),
                    f["severity"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        (out.status.code().unwrap_or(-1), found, check)
    }

    #[test]
    fn sign_in_probe_names_spn_offloading_publishing_rule_and_unsynced_user() {
        let dir = tempfile::tempdir().unwrap();
        let (_emulator, base) = start(dir.path());
        let pw = "Alice-Pass-2026";
        let err = |id: &str| vec![(id.to_owned(), "error".to_owned())];
        // Ready: the token is issued for the namespace and EWS accepts it.
        let (_, found, check) = sign_in(
            dir.path(),
            &base,
            "ready",
            "https://mail.contoso.com",
            "alice@contoso.com",
            pw,
        );
        assert!(found.is_empty(), "{check}");
        assert_eq!(check["status"], "pass", "{check}");
        let passed = check["passed"].to_string();
        assert!(
            passed.contains("aud https://mail.contoso.com") && passed.contains("GetFolder"),
            "{passed}"
        );
        // The namespace is not an SPN of Exchange: Entra ID refuses the token (AADSTS500011).
        let (code, found, check) = sign_in(
            dir.path(),
            &base,
            "nospn",
            "https://nospn.contoso.com",
            "alice@contoso.com",
            pw,
        );
        assert_eq!(found, err("spn_missing"), "{check}");
        let text = check.to_string();
        assert!(text.contains("AADSTS500011"), "{text}");
        assert!(text.contains("Update-MgServicePrincipal"), "{text}");
        assert!(text.contains("https://nospn.contoso.com"), "{text}");
        assert_eq!(code, 1);
        // TLS terminated in front of Exchange: 2000003 with an http Actual.
        let (_, found, check) = sign_in(
            dir.path(),
            &base,
            "offload",
            "https://offload.contoso.com",
            "alice@contoso.com",
            pw,
        );
        assert_eq!(found, err("ssl_offloading"), "{check}");
        assert!(check.to_string().contains("2000003"));
        // A publishing rule forwards webmail to mail-int: 2000003 with another host.
        let (_, found, check) = sign_in(
            dir.path(),
            &base,
            "forwarded",
            "https://webmail.contoso.com",
            "alice@contoso.com",
            pw,
        );
        assert_eq!(found, err("publishing_name_mismatch"), "{check}");
        let text = check.to_string();
        assert!(
            text.contains("mail-int.contoso.com")
                && text.contains("exgate explain ranks: publishing_name_mismatch"),
            "{text}"
        );
        // A user Entra ID signs in but on-premises Exchange does not know: 2000005.
        let (_, found, check) = sign_in(
            dir.path(),
            &base,
            "ready",
            "https://mail.contoso.com",
            "dave@contoso.com",
            "Dave-Pass-2026",
        );
        assert_eq!(found, err("user_not_in_aad"), "{check}");
        assert!(check.to_string().contains("dave@contoso.com"));
        // A wrong password: Entra ID's refusal, ranked by the diagnosis engine.
        let (_, found, check) = sign_in(
            dir.path(),
            &base,
            "ready",
            "https://mail.contoso.com",
            "alice@contoso.com",
            "Not-Alice-Pass",
        );
        assert_eq!(found, err("wrong_credentials"), "{check}");
        // The application's own token: the SPN is proven by the token; on-premises EWS refuses
        // app-only tokens (2000008), which is said, not counted against readiness.
        let out = super::exgate()
            .current_dir(dir.path())
            .env("EXGATE_TEST_SECRET", "hybrid-daemon-secret-2026")
            .args(["hma", "check", "--json", "--ca-cert", "ca.pem", "--url"])
            .arg(format!("{base}/onprem/ready"))
            .args([
                "--resource",
                "https://mail.contoso.com",
                "--authority-host",
                &base,
            ])
            .args(["--client-id", "5b2e8c1d-0a4f-4d6e-8b3c-9f1a2e7d4c60"])
            .args(["--client-secret-env", "EXGATE_TEST_SECRET"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(!text.contains("hybrid-daemon-secret-2026"));
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let check = v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "signin_probe")
            .unwrap();
        assert_eq!(check["status"], "pass", "{check}");
        assert_eq!(
            check["findings"][0]["id"], "partner_app_apponly_permissions_missing",
            "{check}"
        );
        assert_eq!(check["findings"][0]["severity"], "info");
        assert!(check.to_string().contains("/.default issued"), "{check}");
    }
}

mod transport {
    //! What the live probe says when no HTTP answer comes.

    #[test]
    fn untrusted_certificate_wrong_name_and_closed_port_are_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("scenario.toml"),
            "[[tenants]]\nname = \"contoso\"\nid = \"f31f3647-5d87-4b69-a0b6-73f62aeab14c\"\ndomains = [\"contoso.com\"]\n\n[exchange]\n\n[[exchange.servers]]\nname = \"ready\"\ntenant = \"contoso.com\"\npublic_url = \"https://mail.contoso.com\"\nhma = true\n",
        )
        .unwrap();
        let (_emulator, v) =
            super::common::start_emulator(dir.path(), &["--tls", "--ca-out", "ca.pem"], |_| {
                dir.path().join("ca.pem").exists()
            });
        let base = v["base_url"].as_str().unwrap_or_default().to_owned();
        let ids = |url: String, ca: bool| -> Vec<String> {
            let mut c = super::exgate();
            c.current_dir(dir.path())
                .args(["hma", "check", "--json", "--timeout", "5"]);
            if ca {
                c.args(["--ca-cert", "ca.pem"]);
            }
            let out = c.arg("--url").arg(url).output().unwrap();
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            let mut ids: Vec<String> = v["findings"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f["id"].as_str().unwrap().to_owned())
                .collect();
            ids.dedup();
            ids
        };
        // The emulator's CA is not trusted without --ca-cert.
        assert_eq!(
            ids(format!("{base}/onprem/ready"), false),
            ["tls_untrusted"]
        );
        // Nothing listens.
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        assert_eq!(
            ids(format!("https://localhost:{closed}/onprem/ready"), true),
            ["network_unreachable"]
        );
        // A --resource that is not a namespace is refused before anything is asked, naming it.
        let out = super::exgate()
            .current_dir(dir.path())
            .args([
                "hma",
                "check",
                "--url",
                "https://localhost:1",
                "--resource",
                "mail.contoso.com",
            ])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("--resource mail.contoso.com") && err.contains("fix:"),
            "{err}"
        );
        // AZURE_CLIENT_ID alone in the environment (another tool's) is not a credential: the
        // sign-in probe does not run and the report still comes.
        let out = super::exgate()
            .current_dir(dir.path())
            .env("AZURE_CLIENT_ID", "11111111-2222-3333-4444-555555555555")
            .env_remove("AZURE_CLIENT_SECRET")
            .env_remove("AZURE_CLIENT_CERTIFICATE_PATH")
            .args(["hma", "check", "--json", "--timeout", "5", "--url"])
            .arg(format!("https://localhost:{closed}/onprem/ready"))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let signin = v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "signin_probe")
            .unwrap()
            .clone();
        assert!(signin["status"].to_string().contains("not_run"), "{signin}");
    }
}
