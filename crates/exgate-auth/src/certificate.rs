//! Certificate credentials: loading a key and certificate from PEM (PKCS#8, PKCS#1, encrypted
//! PKCS#8) or PFX (modern and legacy RC2/3DES), thumbprints, `keyCredentials` entries, and
//! generation of a self-signed certificate.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use aws_lc_rs::digest;
use aws_lc_rs::signature::{KeyPair, RsaKeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use time::OffsetDateTime;

use crate::error::CredentialError;

/// Facts about an X.509 certificate, as shown by `exgate cert show`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertificateInfo {
    /// Subject distinguished name.
    pub subject: String,
    /// Issuer distinguished name.
    pub issuer: String,
    /// Start of validity.
    #[serde(with = "time::serde::rfc3339")]
    pub not_before: OffsetDateTime,
    /// End of validity.
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    /// Serial number, hex.
    pub serial: String,
    /// SHA-1 over the certificate DER, upper-case hex (what the portal shows).
    pub sha1_hex: String,
    /// SHA-256 over the certificate DER, upper-case hex.
    pub sha256_hex: String,
    /// `x5t`: base64url (no padding) SHA-1.
    pub x5t: String,
    /// `x5t#S256`: base64url (no padding) SHA-256.
    pub x5t_s256: String,
    /// RSA modulus size in bits, when the key is RSA.
    pub key_bits: Option<usize>,
    /// The public key's algorithm: `RSA`, `ECDSA P-256`, `ECDSA P-384`, `Ed25519`, or the OID.
    pub key_algorithm: String,
    /// The certificate DER, standard base64 (the `value` of a keyCredential).
    pub der_base64: String,
}

/// Something that makes a certificate unfit for an application's sign-in, or soon so.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertificateWarning {
    /// What is wrong, with the fix.
    pub message: String,
    /// Entra ID refuses the certificate as it is (not merely soon).
    pub invalid: bool,
}

impl CertificateInfo {
    /// Parses a DER certificate.
    pub fn from_der(der: &[u8]) -> Result<CertificateInfo, String> {
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| format!("not an X.509 certificate: {e}"))?;
        let ts = |t: i64| {
            OffsetDateTime::from_unix_timestamp(t)
                .map_err(|e| format!("validity out of range: {e}"))
        };
        let sha1 = digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, der);
        let sha256 = digest::digest(&digest::SHA256, der);
        let key_bits = match cert.public_key().parsed() {
            Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => Some(rsa.key_size()),
            _ => None,
        };
        let spki = cert.public_key();
        let oid = spki.algorithm.algorithm.to_id_string();
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok())
            .map(|o| o.to_id_string());
        let key_algorithm = match (oid.as_str(), curve.as_deref()) {
            ("1.2.840.113549.1.1.1", _) => "RSA".to_owned(),
            ("1.2.840.10045.2.1", Some("1.2.840.10045.3.1.7")) => "ECDSA P-256".to_owned(),
            ("1.2.840.10045.2.1", Some("1.3.132.0.34")) => "ECDSA P-384".to_owned(),
            ("1.2.840.10045.2.1", Some(c)) => format!("ECDSA ({c})"),
            ("1.3.101.112", _) => "Ed25519".to_owned(),
            (other, _) => other.to_owned(),
        };
        Ok(CertificateInfo {
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            not_before: ts(cert.validity().not_before.timestamp())?,
            not_after: ts(cert.validity().not_after.timestamp())?,
            serial: cert.raw_serial_as_string().replace(':', ""),
            sha1_hex: hex_upper(sha1.as_ref()),
            sha256_hex: hex_upper(sha256.as_ref()),
            x5t: URL_SAFE_NO_PAD.encode(sha1.as_ref()),
            x5t_s256: URL_SAFE_NO_PAD.encode(sha256.as_ref()),
            key_bits,
            key_algorithm,
            der_base64: STANDARD.encode(der),
        })
    }

    /// Days of validity left now (negative once expired).
    pub fn days_left_now(&self) -> i64 {
        self.days_left(OffsetDateTime::now_utc())
    }

    /// Days of validity left at `now` (negative once expired).
    pub fn days_left(&self, now: OffsetDateTime) -> i64 {
        (self.not_after - now).whole_days()
    }

    /// What makes this certificate unfit, at `now`, for an application's sign-in with Entra ID
    /// (`invalid`), or soon so: not yet valid, expired (Entra ID answers `AADSTS7000274`),
    /// expiring within 30 days, an RSA key under 2048 bits, or no RSA key at all.
    pub fn warnings(&self, now: OffsetDateTime) -> Vec<CertificateWarning> {
        let date = |t: OffsetDateTime| {
            t.format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_else(|_| t.to_string())
        };
        let mut w = Vec::new();
        let mut add =
            |message: String, invalid: bool| w.push(CertificateWarning { message, invalid });
        if self.not_before > now {
            add(
                format!(
                    "the certificate is not valid before {}",
                    date(self.not_before)
                ),
                true,
            );
        }
        let days = self.days_left(now);
        if self.not_after <= now {
            add(
                format!(
                    "the certificate expired on {}: Entra ID answers AADSTS7000274 (fix: make a new one with `exgate cert new` and register it)",
                    date(self.not_after)
                ),
                true,
            );
        } else if days < 30 {
            add(
                format!(
                    "the certificate expires in {days} days ({}): register a new one before then",
                    date(self.not_after)
                ),
                false,
            );
        }
        match self.key_bits {
            Some(b) if b < 2048 => {
                add(
                    "the key is under 2048 bits: Entra ID refuses it".into(),
                    true,
                );
            }
            Some(_) => {}
            None => add(
                format!(
                    "the key is {}, not RSA: fine for a TLS server certificate, but Entra ID takes only RSA certificates for an application",
                    self.key_algorithm
                ),
                false,
            ),
        }
        w
    }

    /// A `keyCredentials` entry for the application manifest: `customKeyIdentifier` = base64
    /// SHA-1, a fresh `keyId`, `type` AsymmetricX509Cert, `usage` Verify, `value` base64 DER.
    pub fn key_credential(&self) -> serde_json::Value {
        let sha1 = hex_decode(&self.sha1_hex).unwrap_or_default();
        serde_json::json!({
            "customKeyIdentifier": STANDARD.encode(sha1),
            "keyId": uuid::Uuid::new_v4().to_string(),
            "type": "AsymmetricX509Cert",
            "usage": "Verify",
            "value": self.der_base64,
        })
    }

    /// The Microsoft Graph `PATCH /applications/{id}` body that registers this certificate.
    /// (It replaces the app's key credentials: include existing ones to keep them.)
    pub fn graph_key_credentials_body(&self) -> serde_json::Value {
        let fmt = |t: OffsetDateTime| {
            t.format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default()
        };
        serde_json::json!({
            "keyCredentials": [{
                "type": "AsymmetricX509Cert",
                "usage": "Verify",
                "key": self.der_base64,
                "displayName": self.subject,
                "startDateTime": fmt(self.not_before),
                "endDateTime": fmt(self.not_after),
            }]
        })
    }
}

/// A certificate credential ready to sign client assertions. The private key never appears in
/// `Debug` output.
#[derive(Clone)]
pub struct ClientCertificate {
    key: Arc<RsaKeyPair>,
    cert_der: Arc<Vec<u8>>,
    chain_der: Arc<Vec<Vec<u8>>>,
    info: Arc<CertificateInfo>,
}

impl std::fmt::Debug for ClientCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCertificate")
            .field("subject", &self.info.subject)
            .field("sha1", &self.info.sha1_hex)
            .field("key", &"<redacted>")
            .finish()
    }
}

impl ClientCertificate {
    /// Loads a certificate credential from a file. PEM files may hold the certificate and the key
    /// together; otherwise give `key_path`. Anything that is not PEM is read as PFX/PKCS#12.
    /// `password` decrypts an encrypted PEM key or the PFX.
    pub fn from_file(
        path: &Path,
        key_path: Option<&Path>,
        password: Option<&SecretString>,
    ) -> Result<ClientCertificate, CredentialError> {
        let bytes = read(path)?;
        if looks_like_pem(&bytes) {
            let key_bytes = match key_path {
                Some(k) => Some((read(k)?, k.to_path_buf())),
                None => None,
            };
            let (kb, kp) = match &key_bytes {
                Some((b, p)) => (b.as_slice(), p.as_path()),
                None => (bytes.as_slice(), path),
            };
            Self::from_pem_parts(&bytes, path, kb, kp, password)
        } else {
            Self::from_pfx(&bytes, path, password)
        }
    }

    /// Loads from PEM text held in memory (certificate and key may be the same text).
    pub fn from_pem(
        cert_pem: &[u8],
        key_pem: &[u8],
        passphrase: Option<&SecretString>,
    ) -> Result<ClientCertificate, CredentialError> {
        let mem = Path::new("<memory>");
        Self::from_pem_parts(cert_pem, mem, key_pem, mem, passphrase)
    }

    fn from_pem_parts(
        cert_pem: &[u8],
        cert_path: &Path,
        key_pem: &[u8],
        key_path: &Path,
        passphrase: Option<&SecretString>,
    ) -> Result<ClientCertificate, CredentialError> {
        let certs: Vec<Vec<u8>> = parse_pem(cert_pem, cert_path)?
            .into_iter()
            .filter(|p| p.tag() == "CERTIFICATE")
            .map(|p| p.into_contents())
            .collect();
        if certs.is_empty() {
            return Err(CredentialError::new(
                cert_path,
                "no CERTIFICATE block found",
                "give the PEM certificate (-----BEGIN CERTIFICATE-----) or a PFX file",
            ));
        }
        let key = load_pem_key(key_pem, key_path, passphrase)?;
        Self::assemble(key, certs, cert_path)
    }

    /// Loads from PFX/PKCS#12 bytes (AES/PBES2 and legacy RC2-40/3DES exports).
    pub fn from_pfx(
        bytes: &[u8],
        path: &Path,
        password: Option<&SecretString>,
    ) -> Result<ClientCertificate, CredentialError> {
        let pw = password.map(|p| p.expose_secret()).unwrap_or("");
        let store = p12_keystore::KeyStore::from_pkcs12(
            bytes,
            pw,
            p12_keystore::Pkcs12ImportPolicy::Relaxed,
        )
        .map_err(|e| {
            CredentialError::new(
                path,
                format!("cannot read the PFX: {e}"),
                if password.is_none() {
                    "give the PFX password (--cert-password or AZURE_CLIENT_CERTIFICATE_PASSWORD)"
                } else {
                    "check the PFX password and that the file is a PKCS#12 export with the private key"
                },
            )
        })?;
        let Some((_, chain)) = store.private_key_chain() else {
            return Err(CredentialError::new(
                path,
                "the PFX holds no private key with a certificate",
                "export the certificate together with its private key",
            ));
        };
        let key = RsaKeyPair::from_pkcs8(chain.key().as_der()).map_err(|e| {
            CredentialError::new(
                path,
                format!("the PFX key is not a usable RSA key: {e}"),
                "Entra ID certificate credentials need an RSA key of 2048 bits or more",
            )
        })?;
        let certs: Vec<Vec<u8>> = chain.certs().iter().map(|c| c.as_der().to_vec()).collect();
        if certs.is_empty() {
            return Err(CredentialError::new(
                path,
                "the PFX key has no certificate",
                "export the certificate together with its private key",
            ));
        }
        Self::assemble(key, certs, path)
    }

    fn assemble(
        key: RsaKeyPair,
        certs: Vec<Vec<u8>>,
        path: &Path,
    ) -> Result<ClientCertificate, CredentialError> {
        let public = key.public_key().as_ref().to_vec();
        let mut leaf = None;
        let mut chain = Vec::new();
        for der in certs {
            let matches = x509_parser::parse_x509_certificate(&der)
                .map(|(_, c)| c.public_key().subject_public_key.data.as_ref() == public.as_slice())
                .unwrap_or(false);
            if matches && leaf.is_none() {
                leaf = Some(der);
            } else {
                chain.push(der);
            }
        }
        let Some(leaf) = leaf else {
            return Err(CredentialError::new(
                path,
                "the private key does not belong to the certificate",
                "pair the key with the certificate it was issued for",
            ));
        };
        let info =
            CertificateInfo::from_der(&leaf).map_err(|m| CredentialError::new(path, m, ""))?;
        let bits = key.public_modulus_len() * 8;
        if bits < 2048 {
            return Err(CredentialError::new(
                path,
                format!("the RSA key has {bits} bits"),
                "Entra ID needs RSA keys of at least 2048 bits: make a new one with `exgate cert new`",
            ));
        }
        let mut full_chain = vec![leaf.clone()];
        full_chain.extend(chain);
        Ok(ClientCertificate {
            key: Arc::new(key),
            cert_der: Arc::new(leaf),
            chain_der: Arc::new(full_chain),
            info: Arc::new(info),
        })
    }

    /// Certificate facts (subject, validity, thumbprints).
    pub fn info(&self) -> &CertificateInfo {
        &self.info
    }

    /// The certificate DER.
    pub fn der(&self) -> &[u8] {
        &self.cert_der
    }

    /// The chain, leaf first, as DER.
    pub fn chain_der(&self) -> &[Vec<u8>] {
        &self.chain_der
    }

    pub(crate) fn key(&self) -> &RsaKeyPair {
        &self.key
    }
}

/// Reads the certificate facts of a PEM certificate (the first `CERTIFICATE` block), a DER
/// certificate, or a PFX (the certificate of its key, else its first certificate).
pub fn load_certificate_info(
    path: &Path,
    password: Option<&SecretString>,
) -> Result<CertificateInfo, CredentialError> {
    let bytes = read(path)?;
    if looks_like_pem(&bytes) {
        let der = parse_pem(&bytes, path)?
            .into_iter()
            .find(|p| p.tag() == "CERTIFICATE")
            .map(pem::Pem::into_contents)
            .ok_or_else(|| {
                CredentialError::new(
                    path,
                    "no CERTIFICATE block found",
                    "give a PEM certificate, a DER .cer file or a PFX",
                )
            })?;
        return CertificateInfo::from_der(&der).map_err(|m| CredentialError::new(path, m, ""));
    }
    if let Ok(info) = CertificateInfo::from_der(&bytes) {
        return Ok(info);
    }
    let pw = password.map(|p| p.expose_secret()).unwrap_or("");
    let store =
        p12_keystore::KeyStore::from_pkcs12(&bytes, pw, p12_keystore::Pkcs12ImportPolicy::Relaxed)
            .map_err(|e| {
                CredentialError::new(
                    path,
                    format!("neither a certificate nor a readable PFX: {e}"),
                    "give the PFX password with --password-env, or a PEM/DER certificate",
                )
            })?;
    let der = match store.private_key_chain() {
        Some((_, chain)) => chain.certs().first().map(|c| c.as_der().to_vec()),
        None => store.entries().find_map(|(_, e)| match e {
            p12_keystore::KeyStoreEntry::Certificate(c) => Some(c.as_der().to_vec()),
            _ => None,
        }),
    }
    .ok_or_else(|| CredentialError::new(path, "the PFX holds no certificate", ""))?;
    CertificateInfo::from_der(&der).map_err(|m| CredentialError::new(path, m, ""))
}

fn read(path: &Path) -> Result<Vec<u8>, CredentialError> {
    std::fs::read(path).map_err(|e| {
        CredentialError::new(
            path,
            format!("cannot read: {e}"),
            "check the path and the file permissions",
        )
    })
}

fn looks_like_pem(bytes: &[u8]) -> bool {
    let trimmed = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .map(|i| &bytes[i..])
        .unwrap_or(&[]);
    trimmed.starts_with(b"-----BEGIN") || bytes.windows(10).any(|w| w == b"-----BEGIN")
}

fn parse_pem(bytes: &[u8], path: &Path) -> Result<Vec<pem::Pem>, CredentialError> {
    pem::parse_many(bytes).map_err(|e| {
        CredentialError::new(
            path,
            format!("invalid PEM: {e}"),
            "check that the file is intact",
        )
    })
}

fn load_pem_key(
    bytes: &[u8],
    path: &Path,
    passphrase: Option<&SecretString>,
) -> Result<RsaKeyPair, CredentialError> {
    let blocks = parse_pem(bytes, path)?;
    let reject = |e: aws_lc_rs::error::KeyRejected| {
        CredentialError::new(
            path,
            format!("the private key is not a usable RSA key: {e}"),
            "Entra ID certificate credentials need an RSA key of 2048 bits or more",
        )
    };
    for block in &blocks {
        match block.tag() {
            "PRIVATE KEY" => return RsaKeyPair::from_pkcs8(block.contents()).map_err(reject),
            "RSA PRIVATE KEY" => {
                if block
                    .headers()
                    .get("Proc-Type")
                    .is_some_and(|v| v.contains("ENCRYPTED"))
                {
                    return Err(CredentialError::new(
                        path,
                        "the key uses legacy OpenSSL PEM encryption (Proc-Type: 4,ENCRYPTED)",
                        "convert it: openssl pkcs8 -topk8 -v2 aes-256-cbc -in key.pem -out key-pkcs8.pem",
                    ));
                }
                return RsaKeyPair::from_der(block.contents()).map_err(reject);
            }
            "ENCRYPTED PRIVATE KEY" => {
                let Some(pass) = passphrase else {
                    return Err(CredentialError::new(
                        path,
                        "the private key is encrypted and no passphrase was given",
                        "give the passphrase (--cert-password or AZURE_CLIENT_CERTIFICATE_PASSWORD)",
                    ));
                };
                let info =
                    pkcs8::EncryptedPrivateKeyInfoRef::try_from(block.contents()).map_err(|e| {
                        CredentialError::new(path, format!("invalid encrypted key: {e}"), "")
                    })?;
                let doc = info.decrypt(pass.expose_secret().as_bytes()).map_err(|e| {
                    CredentialError::new(
                        path,
                        format!("cannot decrypt the private key: {e}"),
                        "check the passphrase (PBES2 with AES is supported)",
                    )
                })?;
                return RsaKeyPair::from_pkcs8(doc.as_bytes()).map_err(reject);
            }
            _ => {}
        }
    }
    Err(CredentialError::new(
        path,
        "no private key block found",
        "put the private key (-----BEGIN PRIVATE KEY----- or -----BEGIN RSA PRIVATE KEY-----) in the same PEM file, or name its file: --key on the command line, key_path in an auth profile, key in a project",
    ))
}

/// A freshly generated key and self-signed certificate.
pub struct GeneratedCertificate {
    /// PKCS#8 PEM private key.
    pub key_pem: SecretString,
    /// PEM certificate.
    pub cert_pem: String,
    /// PFX (PKCS#12, AES-256/PBES2, HMAC-SHA256) holding both, protected by the password given.
    pub pfx: Vec<u8>,
    /// Certificate facts.
    pub info: CertificateInfo,
}

impl std::fmt::Debug for GeneratedCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeneratedCertificate")
            .field("info", &self.info)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// Generates an RSA key (2048, 3072 or 4096 bits) and a self-signed certificate for `subject`
/// (`CN=app,O=org` style), valid from now for `validity_days`.
pub fn generate_self_signed(
    subject: &str,
    key_bits: usize,
    validity_days: u32,
    pfx_password: &SecretString,
) -> Result<GeneratedCertificate, CredentialError> {
    generate_with_names(subject, key_bits, validity_days, pfx_password, &[])
}

/// Like [`generate_self_signed`], and also a TLS server certificate for `names` (DNS names or
/// IP addresses, as subject alternative names; extended key usage serverAuth besides
/// clientAuth): what a gateway presents to devices.
pub fn generate_with_names(
    subject: &str,
    key_bits: usize,
    validity_days: u32,
    pfx_password: &SecretString,
    names: &[String],
) -> Result<GeneratedCertificate, CredentialError> {
    generate_certificate(
        subject,
        KeyAlgorithm::Rsa { bits: key_bits },
        validity_days,
        pfx_password,
        names,
    )
}

/// The key of a generated certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlgorithm {
    /// RSA of 2048, 3072 or 4096 bits: what Entra ID takes for an application's certificate.
    Rsa {
        /// The key size.
        bits: usize,
    },
    /// ECDSA on P-256: a TLS server certificate only (a handshake signature costs a small
    /// fraction of an RSA one); Entra ID does not take it for applications.
    EcdsaP256,
}

/// Like [`generate_with_names`], with the key algorithm chosen. ECDSA needs `names` (it makes
/// only a TLS server certificate).
pub fn generate_certificate(
    subject: &str,
    algorithm: KeyAlgorithm,
    validity_days: u32,
    pfx_password: &SecretString,
    names: &[String],
) -> Result<GeneratedCertificate, CredentialError> {
    let mem = PathBuf::from("<generated>");
    let key = match algorithm {
        KeyAlgorithm::Rsa { bits } => {
            let size = match bits {
                2048 => rcgen::RsaKeySize::_2048,
                3072 => rcgen::RsaKeySize::_3072,
                4096 => rcgen::RsaKeySize::_4096,
                other => {
                    return Err(CredentialError::new(
                        mem,
                        format!("{other}-bit RSA keys are not offered"),
                        "use 2048, 3072 or 4096 bits (Entra ID refuses keys under 2048 bits)",
                    ));
                }
            };
            rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, size)
        }
        KeyAlgorithm::EcdsaP256 => {
            if names.is_empty() {
                return Err(CredentialError::new(
                    mem,
                    "an ECDSA key makes only a TLS server certificate, and no server name was given",
                    "give the names it serves (--san NAME), or use RSA for an application's certificate",
                ));
            }
            rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        }
    }
    .map_err(|e| CredentialError::new(&mem, format!("key generation failed: {e}"), ""))?;
    if validity_days == 0 {
        return Err(CredentialError::new(
            mem,
            "validity of 0 days",
            "give a validity of at least one day",
        ));
    }
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = parse_subject(subject).map_err(|m| {
        CredentialError::new(&mem, m, "give a subject such as CN=exgate-daemon,O=Contoso")
    })?;
    let now = OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::minutes(5);
    params.not_after = now + time::Duration::days(i64::from(validity_days));
    params.key_usages = match algorithm {
        KeyAlgorithm::Rsa { .. } => vec![
            rcgen::KeyUsagePurpose::DigitalSignature,
            rcgen::KeyUsagePurpose::KeyEncipherment,
        ],
        // An EC key signs (ECDHE); it never enciphers keys (RFC 5480 3).
        KeyAlgorithm::EcdsaP256 => vec![rcgen::KeyUsagePurpose::DigitalSignature],
    };
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    for name in names {
        let san = match name.parse::<std::net::IpAddr>() {
            Ok(ip) => rcgen::SanType::IpAddress(ip),
            Err(_) => rcgen::SanType::DnsName(name.clone().try_into().map_err(|_| {
                CredentialError::new(
                    &mem,
                    format!("`{name}` is not a DNS name or an IP address"),
                    "give --san a host name (printer-gw.contoso.local) or an address",
                )
            })?),
        };
        params.subject_alt_names.push(san);
    }
    if !names.is_empty() {
        params
            .extended_key_usages
            .push(rcgen::ExtendedKeyUsagePurpose::ServerAuth);
    }
    let cert = params
        .self_signed(&key)
        .map_err(|e| CredentialError::new(&mem, format!("certificate signing failed: {e}"), ""))?;
    let cert_der = cert.der().to_vec();
    let key_der = key.serialize_der();
    let info =
        CertificateInfo::from_der(&cert_der).map_err(|m| CredentialError::new(&mem, m, ""))?;
    let pfx = write_pfx(&key_der, &cert_der, pfx_password)
        .map_err(|m| CredentialError::new(&mem, m, ""))?;
    Ok(GeneratedCertificate {
        key_pem: SecretString::from(key.serialize_pem()),
        cert_pem: cert.pem(),
        pfx,
        info,
    })
}

/// A random password for a PFX: 24 bytes from the system RNG, base64url (32 characters).
pub fn random_password() -> Result<SecretString, CredentialError> {
    let mut b = [0u8; 24];
    aws_lc_rs::rand::fill(&mut b)
        .map_err(|_| CredentialError::new("<random>", "the system random generator failed", ""))?;
    Ok(SecretString::from(URL_SAFE_NO_PAD.encode(b)))
}

/// Writes a PFX with one key and its certificate.
pub fn write_pfx(
    key_pkcs8_der: &[u8],
    cert_der: &[u8],
    password: &SecretString,
) -> Result<Vec<u8>, String> {
    let key = p12_keystore::PrivateKey::from_der(key_pkcs8_der).map_err(|e| e.to_string())?;
    let cert = p12_keystore::Certificate::from_der(cert_der).map_err(|e| e.to_string())?;
    let sha1 = digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, cert_der);
    let chain = p12_keystore::PrivateKeyChain::new(sha1.as_ref().to_vec(), key, [cert]);
    let mut store = p12_keystore::KeyStore::new();
    store.add_entry(
        "exgate",
        p12_keystore::KeyStoreEntry::PrivateKeyChain(chain),
    );
    store
        .writer(password.expose_secret())
        .write()
        .map_err(|e| e.to_string())
}

fn parse_subject(subject: &str) -> Result<rcgen::DistinguishedName, String> {
    let mut dn = rcgen::DistinguishedName::new();
    let mut any = false;
    for part in subject.split(',') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let Some((k, v)) = part.split_once('=') else {
            return Err(format!("`{part}` is not KEY=value"));
        };
        let v = v.trim();
        if v.is_empty() {
            return Err(format!("`{part}` has an empty value"));
        }
        let ty = match k.trim().to_ascii_uppercase().as_str() {
            "CN" => rcgen::DnType::CommonName,
            "O" => rcgen::DnType::OrganizationName,
            "OU" => rcgen::DnType::OrganizationalUnitName,
            "C" => rcgen::DnType::CountryName,
            "L" => rcgen::DnType::LocalityName,
            "ST" => rcgen::DnType::StateOrProvinceName,
            other => {
                return Err(format!(
                    "unknown subject attribute `{other}` (use CN, O, OU, C, L, ST)"
                ));
            }
        };
        dn.push(ty, v);
        any = true;
    }
    if !any {
        return Err("empty subject".into());
    }
    Ok(dn)
}

pub(crate) fn hex_upper(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02X}");
    }
    s
}

fn hex_decode(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| {
            text.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect()
}

#[cfg(test)]
mod tests;
