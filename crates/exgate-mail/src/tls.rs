//! TLS for the line protocols (SMTP, IMAP): rustls with the aws-lc-rs provider, the platform's
//! roots plus optional extra roots (an emulator's CA), over any async stream.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};

/// A byte stream, plain or TLS.
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

pub(crate) fn tls_config(
    extra_root_pem: Option<&[u8]>,
) -> Result<Arc<rustls::ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let extra: Vec<CertificateDer<'static>> = match extra_root_pem {
        Some(pem) => CertificateDer::pem_slice_iter(pem)
            .collect::<Result<_, _>>()
            .map_err(|e| format!("the extra root CA file is not PEM: {e}"))?,
        None => Vec::new(),
    };
    let verifier =
        rustls_platform_verifier::Verifier::new_with_extra_roots(extra, provider.clone())
            .map_err(|e| format!("cannot load the platform's root certificates: {e}"))?;
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

pub(crate) async fn start_tls(
    stream: Box<dyn Io>,
    host: &str,
    config: Arc<rustls::ClientConfig>,
    timeout: Duration,
) -> Result<Box<dyn Io>, String> {
    let name = ServerName::try_from(host.to_owned())
        .map_err(|_| format!("`{host}` is not a valid TLS server name"))?;
    let connector = tokio_rustls::TlsConnector::from(config);
    let tls = tokio::time::timeout(timeout, connector.connect(name, stream))
        .await
        .map_err(|_| "the TLS handshake timed out".to_owned())?
        .map_err(|e| format!("TLS: {e}"))?;
    Ok(Box::new(tls))
}
