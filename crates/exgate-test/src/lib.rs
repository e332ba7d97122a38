//! The harness exgate's test suites share: the emulator started in-process from a scenario text,
//! and TLS material (a private CA and a server certificate it issued for given names). A
//! dev-dependency only; it panics on failure, as test set-up does.

use std::path::Path;

use exgate_emulator::{Emulator, EmulatorOptions, Scenario};

/// Installs the aws-lc-rs crypto provider for rustls (once per process; later calls do nothing).
pub fn install_crypto() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// Starts the emulator on a loopback port with the scenario `toml` and `options`.
///
/// # Panics
/// When the scenario does not parse or the emulator cannot start.
pub async fn start_emulator(toml: &str, options: EmulatorOptions) -> Emulator {
    install_crypto();
    let scenario = Scenario::from_toml_str(toml, Path::new("scenario.toml"))
        .unwrap_or_else(|e| panic!("test scenario: {e}"));
    Emulator::start(scenario, options)
        .await
        .unwrap_or_else(|e| panic!("the emulator starts: {e}"))
}

/// Starts the emulator with TLS (its own CA, see [`Emulator::ca_pem`]) and `options` otherwise.
pub async fn start_emulator_tls(toml: &str, options: EmulatorOptions) -> Emulator {
    start_emulator(
        toml,
        EmulatorOptions {
            tls: true,
            ..options
        },
    )
    .await
}

/// A private CA and a server certificate it issued, in PEM.
#[derive(Debug, Clone)]
pub struct TestPki {
    /// The CA certificate clients trust.
    pub ca_pem: String,
    /// The server's certificate (for the names given).
    pub cert_pem: String,
    /// The server's private key (PKCS#8).
    pub key_pem: String,
}

impl TestPki {
    /// A CA and a server certificate for `names` (DNS names or IP addresses).
    ///
    /// # Panics
    /// When rcgen refuses a name.
    pub fn new(names: &[&str]) -> TestPki {
        let ca_key = rcgen::KeyPair::generate().unwrap_or_else(|e| panic!("CA key: {e}"));
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())
            .unwrap_or_else(|e| panic!("CA params: {e}"));
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let ca = ca_params
            .self_signed(&ca_key)
            .unwrap_or_else(|e| panic!("CA: {e}"));
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let key = rcgen::KeyPair::generate().unwrap_or_else(|e| panic!("server key: {e}"));
        let mut params = rcgen::CertificateParams::new(
            names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>(),
        )
        .unwrap_or_else(|e| panic!("server names {names:?}: {e}"));
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params
            .signed_by(&key, &issuer)
            .unwrap_or_else(|e| panic!("server certificate: {e}"));
        TestPki {
            ca_pem: ca.pem(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// A rustls server configuration presenting the server certificate (aws-lc-rs, TLS 1.2 and
    /// 1.3, no client certificates), for a test server.
    ///
    /// # Panics
    /// When the PEM does not load.
    pub fn server_config(&self) -> rustls::ServerConfig {
        use rustls::pki_types::pem::PemObject as _;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let cert = CertificateDer::from_pem_slice(self.cert_pem.as_bytes())
            .unwrap_or_else(|e| panic!("server certificate PEM: {e}"));
        let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes())
            .unwrap_or_else(|e| panic!("server key PEM: {e}"));
        rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap_or_else(|e| panic!("TLS versions: {e}"))
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap_or_else(|e| panic!("server certificate: {e}"))
    }

    /// Writes the server's certificate and key to `dir/<stem>.pem` and `dir/<stem>.key`, and
    /// the CA to `dir/<stem>-ca.pem`.
    ///
    /// # Panics
    /// When a file cannot be written.
    pub fn write(&self, dir: &Path, stem: &str) {
        for (name, text) in [
            (format!("{stem}.pem"), &self.cert_pem),
            (format!("{stem}.key"), &self.key_pem),
            (format!("{stem}-ca.pem"), &self.ca_pem),
        ] {
            std::fs::write(dir.join(&name), text).unwrap_or_else(|e| panic!("write {name}: {e}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_certificate_is_issued_by_the_ca() {
        install_crypto();
        let pki = TestPki::new(&["localhost", "127.0.0.1"]);
        use rustls::client::danger::ServerCertVerifier as _;
        use rustls::pki_types::pem::PemObject as _;
        use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
        let ca = CertificateDer::from_pem_slice(pki.ca_pem.as_bytes())
            .unwrap_or_else(|e| panic!("CA PEM: {e}"));
        let leaf = CertificateDer::from_pem_slice(pki.cert_pem.as_bytes())
            .unwrap_or_else(|e| panic!("server PEM: {e}"));
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca).unwrap_or_else(|e| panic!("root: {e}"));
        let verifier = rustls::client::WebPkiServerVerifier::builder(std::sync::Arc::new(roots))
            .build()
            .unwrap_or_else(|e| panic!("verifier: {e}"));
        for name in ["localhost", "127.0.0.1"] {
            let server = ServerName::try_from(name).unwrap_or_else(|e| panic!("{e}"));
            verifier
                .verify_server_cert(&leaf, &[], &server, &[], UnixTime::now())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        let other = ServerName::try_from("example.com").unwrap_or_else(|e| panic!("{e}"));
        assert!(
            verifier
                .verify_server_cert(&leaf, &[], &other, &[], UnixTime::now())
                .is_err()
        );
        assert!(pki.key_pem.contains("PRIVATE KEY"));
        let dir = std::env::temp_dir().join(format!("exgate-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        pki.write(&dir, "server");
        assert!(dir.join("server-ca.pem").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
