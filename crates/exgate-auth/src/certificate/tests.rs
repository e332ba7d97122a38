use super::*;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

const FIXTURE_SHA1: &str = "0AFEBB61331E3C104F579D20A13B419EFFE8BFBD";

fn pass() -> SecretString {
    SecretString::from("fixture-pass")
}

#[test]
fn loads_pem_pkcs8_key_and_cert() {
    let c =
        ClientCertificate::from_file(&fixture("cert.pem"), Some(&fixture("key-pkcs8.pem")), None)
            .expect("loads");
    assert_eq!(c.info().sha1_hex, FIXTURE_SHA1);
    assert_eq!(c.info().key_bits, Some(2048));
    assert!(c.info().subject.contains("exgate-fixture"));
}

#[test]
fn loads_pem_pkcs1_key() {
    let c =
        ClientCertificate::from_file(&fixture("cert.pem"), Some(&fixture("key-pkcs1.pem")), None)
            .expect("loads");
    assert_eq!(c.info().sha1_hex, FIXTURE_SHA1);
}

#[test]
fn loads_encrypted_pkcs8_pem_with_passphrase() {
    let c = ClientCertificate::from_file(
        &fixture("cert.pem"),
        Some(&fixture("key-encrypted.pem")),
        Some(&pass()),
    )
    .expect("loads");
    assert_eq!(c.info().sha1_hex, FIXTURE_SHA1);
    let err = ClientCertificate::from_file(
        &fixture("cert.pem"),
        Some(&fixture("key-encrypted.pem")),
        None,
    )
    .expect_err("needs passphrase");
    assert!(err.message.contains("encrypted"), "{err}");
    let err = ClientCertificate::from_file(
        &fixture("cert.pem"),
        Some(&fixture("key-encrypted.pem")),
        Some(&SecretString::from("wrong")),
    )
    .expect_err("wrong passphrase");
    assert!(err.message.contains("decrypt"), "{err}");
}

#[test]
fn legacy_openssl_pem_encryption_is_explained() {
    let err = ClientCertificate::from_file(
        &fixture("cert.pem"),
        Some(&fixture("key-legacy-enc.pem")),
        Some(&pass()),
    )
    .expect_err("unsupported");
    assert!(err.fix.contains("openssl pkcs8 -topk8"), "{err}");
}

#[test]
fn loads_modern_and_legacy_pfx() {
    for name in ["modern.pfx", "legacy.pfx"] {
        let c = ClientCertificate::from_file(&fixture(name), None, Some(&pass()))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(c.info().sha1_hex, FIXTURE_SHA1, "{name}");
    }
    let err = ClientCertificate::from_file(
        &fixture("legacy.pfx"),
        None,
        Some(&SecretString::from("nope")),
    )
    .expect_err("wrong password");
    assert!(err.path.ends_with("legacy.pfx"));
}

#[test]
fn legacy_pfx_made_now_by_openssl_loads() {
    // Also exercise a freshly made `-legacy` export when the openssl CLI exists.
    let Ok(out) = std::process::Command::new("openssl")
        .arg("version")
        .output()
    else {
        return;
    };
    if !out.status.success() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let pfx = dir.path().join("x.pfx");
    let status = std::process::Command::new("openssl")
        .args(["pkcs12", "-export", "-legacy", "-inkey"])
        .arg(fixture("key-pkcs8.pem"))
        .arg("-in")
        .arg(fixture("cert.pem"))
        .args(["-passout", "pass:p"])
        .arg("-out")
        .arg(&pfx)
        .status()
        .expect("runs");
    assert!(status.success());
    let c =
        ClientCertificate::from_file(&pfx, None, Some(&SecretString::from("p"))).expect("loads");
    assert_eq!(c.info().sha1_hex, FIXTURE_SHA1);
}

#[test]
fn refuses_small_keys_and_mismatched_pairs() {
    let err = ClientCertificate::from_file(
        &fixture("small-cert.pem"),
        Some(&fixture("small-key.pem")),
        None,
    )
    .expect_err("small");
    assert!(
        err.message.contains("bits") || err.message.contains("RSA"),
        "{err}"
    );
    let err = ClientCertificate::from_file(
        &fixture("small-cert.pem"),
        Some(&fixture("key-pkcs8.pem")),
        None,
    )
    .expect_err("mismatch");
    assert!(err.message.contains("does not belong"), "{err}");
}

#[test]
fn generate_round_trips_through_pem_and_pfx() {
    let pw = SecretString::from("pfx-pw");
    let g = generate_self_signed("CN=exgate-test,O=Example", 2048, 30, &pw).expect("generates");
    assert_eq!(g.info.key_bits, Some(2048));
    assert_eq!(g.info.key_algorithm, "RSA");
    assert!(g.info.subject.contains("CN=exgate-test"));
    let from_pem = ClientCertificate::from_pem(
        g.cert_pem.as_bytes(),
        g.key_pem.expose_secret().as_bytes(),
        None,
    )
    .expect("pem loads");
    assert_eq!(from_pem.info().sha1_hex, g.info.sha1_hex);
    let from_pfx =
        ClientCertificate::from_pfx(&g.pfx, Path::new("g.pfx"), Some(&pw)).expect("pfx loads");
    assert_eq!(from_pfx.info().sha256_hex, g.info.sha256_hex);
    assert!(g.info.days_left(OffsetDateTime::now_utc()) >= 29);
    assert!(!format!("{g:?}").contains("PRIVATE KEY"));
}

#[test]
fn ecdsa_server_certificates_need_names_and_serve_tls() {
    let pw = SecretString::from("pfx-pw");
    let names = vec!["gw.contoso.local".to_owned(), "127.0.0.1".to_owned()];
    let g =
        generate_certificate("CN=gw", KeyAlgorithm::EcdsaP256, 30, &pw, &names).expect("generates");
    assert_eq!(g.info.key_bits, None);
    assert_eq!(g.info.key_algorithm, "ECDSA P-256");
    assert!(g.key_pem.expose_secret().contains("BEGIN PRIVATE KEY"));
    // rustls takes the pair as a server certificate.
    use rustls::pki_types::pem::PemObject as _;
    let certs = vec![
        rustls::pki_types::CertificateDer::from_pem_slice(g.cert_pem.as_bytes()).expect("cert"),
    ];
    let key =
        rustls::pki_types::PrivateKeyDer::from_pem_slice(g.key_pem.expose_secret().as_bytes())
            .expect("key");
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("an ECDSA server certificate");
    // The PFX is written too (for servers that import one).
    assert!(!g.pfx.is_empty());
    // Without names there is nothing to serve.
    assert!(generate_certificate("CN=gw", KeyAlgorithm::EcdsaP256, 30, &pw, &[]).is_err());
}

#[test]
fn refuses_weak_key_sizes_and_bad_subjects() {
    let pw = SecretString::from("x");
    assert!(generate_self_signed("CN=x", 1024, 30, &pw).is_err());
    assert!(generate_self_signed("nonsense", 2048, 30, &pw).is_err());
    assert!(generate_self_signed("XX=1", 2048, 30, &pw).is_err());
}

#[test]
fn certificate_info_from_pem_der_and_pfx() {
    let pem = load_certificate_info(&fixture("cert.pem"), None).expect("pem");
    assert_eq!(pem.sha1_hex, FIXTURE_SHA1);
    let dir = tempfile::tempdir().expect("tempdir");
    let der_path = dir.path().join("c.cer");
    std::fs::write(&der_path, STANDARD.decode(&pem.der_base64).expect("b64")).expect("write");
    assert_eq!(
        load_certificate_info(&der_path, None)
            .expect("der")
            .sha1_hex,
        FIXTURE_SHA1
    );
    let pfx = load_certificate_info(&fixture("legacy.pfx"), Some(&pass())).expect("pfx");
    assert_eq!(pfx.sha1_hex, FIXTURE_SHA1);
    assert!(load_certificate_info(&fixture("legacy.pfx"), None).is_err());
}

#[test]
fn key_credential_shape() {
    let c =
        ClientCertificate::from_file(&fixture("cert.pem"), Some(&fixture("key-pkcs8.pem")), None)
            .expect("loads");
    let kc = c.info().key_credential();
    assert_eq!(kc["type"], "AsymmetricX509Cert");
    assert_eq!(kc["usage"], "Verify");
    let cki = STANDARD
        .decode(kc["customKeyIdentifier"].as_str().expect("str"))
        .expect("b64");
    assert_eq!(hex_upper(&cki), FIXTURE_SHA1);
    assert!(uuid::Uuid::parse_str(kc["keyId"].as_str().expect("str")).is_ok());
    assert_eq!(
        STANDARD
            .decode(kc["value"].as_str().expect("str"))
            .expect("b64"),
        c.der()
    );
    // x5t is base64url(SHA-1) without padding.
    assert_eq!(URL_SAFE_NO_PAD.decode(&c.info().x5t).expect("b64"), cki);
    let body = c.info().graph_key_credentials_body();
    assert_eq!(body["keyCredentials"][0]["type"], "AsymmetricX509Cert");
}

#[test]
fn debug_never_shows_the_key() {
    let c =
        ClientCertificate::from_file(&fixture("cert.pem"), Some(&fixture("key-pkcs8.pem")), None)
            .expect("loads");
    let text = format!("{c:?}");
    assert!(text.contains("redacted"));
    assert!(!text.contains("MII"));
}

proptest::proptest! {
    #[test]
    fn pem_and_pfx_parsing_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
        let p = Path::new("fuzz");
        let _ = ClientCertificate::from_pfx(&bytes, p, None);
        let _ = ClientCertificate::from_pem(&bytes, &bytes, None);
        let _ = CertificateInfo::from_der(&bytes);
    }

    #[test]
    fn subject_parsing_never_panics(s in ".{0,80}") {
        let _ = parse_subject(&s);
    }
}

#[test]
fn warnings_say_what_entra_id_refuses() {
    let pw = SecretString::from("x");
    let g = generate_self_signed("CN=w", 2048, 10, &pw).expect("generates");
    let now = OffsetDateTime::now_utc();
    let w = g.info.warnings(now);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].message.contains("expires in") && !w[0].invalid);
    let later = g.info.warnings(now + time::Duration::days(400));
    assert!(
        later
            .iter()
            .any(|w| w.invalid && w.message.contains("AADSTS7000274"))
    );
    let earlier = g.info.warnings(now - time::Duration::days(1));
    assert!(
        earlier
            .iter()
            .any(|w| w.invalid && w.message.contains("not valid before"))
    );
    let long = generate_self_signed("CN=w", 2048, 365, &pw).expect("generates");
    assert!(long.info.warnings(now).is_empty());
    let ec = generate_certificate(
        "CN=w",
        KeyAlgorithm::EcdsaP256,
        365,
        &pw,
        &["localhost".to_owned()],
    )
    .expect("generates");
    let w = ec.info.warnings(now);
    assert!(
        w.len() == 1 && !w[0].invalid && w[0].message.contains("not RSA"),
        "{w:?}"
    );
}
