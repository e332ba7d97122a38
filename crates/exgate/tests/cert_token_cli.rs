//! `cert new` -> `cert show` -> register in a scenario -> `token get`, through the binary: the
//! certificate exgate makes is the one its keyCredentials entry describes, and it gets a token.

mod common;

use std::path::Path;

use assert_cmd::Command;

fn exgate(dir: &Path) -> Command {
    let mut c = Command::cargo_bin("exgate").expect("binary");
    c.current_dir(dir).env("NO_COLOR", "1");
    c
}

use common::Emulator;

fn start_emulator(dir: &Path) -> (Emulator, String) {
    let (emulator, v) = common::start_emulator(dir, &[], |_| true);
    (
        emulator,
        v["base_url"].as_str().unwrap_or_default().to_owned(),
    )
}

#[test]
fn cert_new_show_register_token_get_round_trip() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();

    exgate(dir)
        .args([
            "cert",
            "new",
            "--subject",
            "CN=exgate round trip",
            "--out",
            "app",
        ])
        .assert()
        .success();
    for f in ["app.key.pem", "app.cert.pem", "app.pfx", "app.pfx.password"] {
        assert!(dir.join(f).exists(), "{f}");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.join("app.key.pem"))
            .expect("key")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // Times are RFC 3339 in UTC.
    let text = exgate(dir)
        .args(["cert", "show", "app.cert.pem"])
        .output()
        .expect("cert show");
    let text = String::from_utf8_lossy(&text.stdout).into_owned();
    let line = text
        .lines()
        .find(|l| l.starts_with("not after"))
        .expect("not after line");
    let stamp = line.split_whitespace().nth(2).unwrap_or("");
    assert!(
        stamp.len() == 20 && stamp.ends_with('Z') && stamp.as_bytes().get(10) == Some(&b'T'),
        "{line}"
    );

    // The PFX `cert new` just wrote opens with the password file beside it.
    let pfx = exgate(dir)
        .env_remove("EXGATE_PFX_PASSWORD")
        .args(["cert", "show", "app.pfx", "--json"])
        .output()
        .expect("cert show pfx");
    assert!(
        pfx.status.success(),
        "{}",
        String::from_utf8_lossy(&pfx.stderr)
    );
    let pw = std::fs::read_to_string(dir.join("app.pfx.password")).expect("password file");
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&pfx.stdout),
        String::from_utf8_lossy(&pfx.stderr)
    );
    assert!(!all.contains(pw.trim()), "the PFX password was printed");

    let shown = exgate(dir)
        .args(["cert", "show", "app.cert.pem", "--json"])
        .output()
        .expect("cert show");
    assert!(shown.status.success());
    let shown: serde_json::Value = serde_json::from_slice(&shown.stdout).expect("JSON");
    let value = shown["keyCredential"]["value"].as_str().expect("value");
    assert_eq!(shown["keyCredential"]["type"], "AsymmetricX509Cert");
    assert_eq!(shown["keyCredential"]["usage"], "Verify");

    // Register exactly what keyCredentials would upload: the base64 DER, as a PEM certificate.
    let pem_body: Vec<String> = value
        .as_bytes()
        .chunks(64)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    let pem = format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        pem_body.join("\n")
    );
    let scenario = format!(
        r#"[[tenants]]
name = "contoso"
id = "11111111-2222-3333-4444-555555555555"
domains = ["contoso.com"]

[[tenants.consent]]
app = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
resource = "https://outlook.office365.com"
roles = ["full_access_as_app"]

[[applications]]
client_id = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
name = "Round trip daemon"
home_tenant = "contoso"

[[applications.certificates]]
pem = """{pem}"""

[[applications.permissions]]
resource = "https://outlook.office365.com"
roles = ["full_access_as_app"]
"#
    );
    std::fs::write(dir.join("scenario.toml"), scenario).expect("scenario");
    let (_emulator, base) = start_emulator(dir);
    let password = std::fs::read_to_string(dir.join("app.pfx.password")).expect("password");

    for extra in [
        vec![
            "--cert",
            "app.pfx",
            "--cert-password-env",
            "ROUND_TRIP_PFX_PASSWORD",
        ],
        vec!["--cert", "app.cert.pem", "--key", "app.key.pem", "--ps256"],
    ] {
        let out = exgate(dir)
            .args(["token", "get", "--json", "--tenant", "contoso.com"])
            .args(["--client-id", "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"])
            .args(["--authority-host", &base, "--flow", "certificate"])
            .args(&extra)
            .env("ROUND_TRIP_PFX_PASSWORD", password.trim())
            .output()
            .expect("token get");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{extra:?}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The summary describes a certificate-minted app token; the token itself is not printed.
        let summary: serde_json::Value = serde_json::from_str(&stdout).expect("JSON summary");
        assert_eq!(summary["claims"]["appidacr"], "2", "{stdout}");
        assert_eq!(
            summary["claims"]["roles"],
            serde_json::json!(["full_access_as_app"])
        );
        assert_eq!(summary["claims"]["aud"], "https://outlook.office365.com");
        assert!(
            !stdout.contains("eyJ0eXAi"),
            "the token was printed: {stdout}"
        );
        assert!(
            !stdout.contains(password.trim()),
            "the PFX password was printed"
        );
    }
}
