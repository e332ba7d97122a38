//! The transport of the line protocols (SMTP, IMAP): rustls with the aws-lc-rs provider, the
//! platform's roots plus optional extra roots (an emulator's CA), over any async stream, and
//! bounded, timed line reads and writes.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};

/// A byte stream, plain or TLS.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// The client configurations built so far, by their extra roots: building one reads and parses
/// the platform's whole root store (a hundred and more PEM certificates), which is far more work
/// than a TLS handshake, so every connection with the same roots shares one. Bounded: a process
/// uses one or two sets of extra roots.
type ConfigCache = Vec<(Option<Vec<u8>>, Arc<rustls::ClientConfig>)>;
static CONFIGS: std::sync::LazyLock<std::sync::Mutex<ConfigCache>> =
    std::sync::LazyLock::new(|| std::sync::Mutex::new(Vec::new()));
const MAX_CACHED_CONFIGS: usize = 8;

pub(crate) fn tls_config(
    extra_root_pem: Option<&[u8]>,
) -> Result<Arc<rustls::ClientConfig>, String> {
    if let Ok(cache) = CONFIGS.lock()
        && let Some((_, c)) = cache.iter().find(|(k, _)| k.as_deref() == extra_root_pem)
    {
        return Ok(Arc::clone(c));
    }
    let config = build_tls_config(extra_root_pem)?;
    if let Ok(mut cache) = CONFIGS.lock() {
        if cache.len() >= MAX_CACHED_CONFIGS {
            cache.remove(0);
        }
        cache.push((extra_root_pem.map(<[u8]>::to_vec), Arc::clone(&config)));
    }
    Ok(config)
}

fn build_tls_config(extra_root_pem: Option<&[u8]>) -> Result<Arc<rustls::ClientConfig>, String> {
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

/// A TCP connection to `host:port` (or to `connect_to`, keeping `host` as the TLS name),
/// within `timeout`, with Nagle off (line protocols answer each line).
pub(crate) async fn connect_tcp(
    host: &str,
    port: u16,
    connect_to: Option<std::net::SocketAddr>,
    timeout: Duration,
) -> Result<tokio::net::TcpStream, String> {
    let tcp = match connect_to {
        Some(addr) => tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await,
        None => tokio::time::timeout(timeout, tokio::net::TcpStream::connect((host, port))).await,
    }
    .map_err(|_| "connecting timed out".to_owned())?
    .map_err(|e| format!("cannot connect: {e}"))?;
    let _ = tcp.set_nodelay(true);
    Ok(tcp)
}

/// [`connect_tcp`], then TLS from the first byte (IMAP 993, POP 995, SMTP 465).
pub(crate) async fn connect_implicit_tls(
    host: &str,
    port: u16,
    connect_to: Option<std::net::SocketAddr>,
    extra_root_pem: Option<&[u8]>,
    timeout: Duration,
) -> Result<Box<dyn Io>, String> {
    let config = tls_config(extra_root_pem)?;
    let tcp = connect_tcp(host, port, connect_to, timeout).await?;
    start_tls(Box::new(tcp), host, config, timeout).await
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

/// A buffered connection of a line protocol.
pub type LineIo = BufReader<Box<dyn Io>>;

/// Reads one line of at most `max` bytes, without its line ending (lossy UTF-8).
pub(crate) async fn read_line(
    io: &mut LineIo,
    max: usize,
    timeout: Duration,
) -> Result<String, String> {
    let mut raw = Vec::new();
    let n = tokio::time::timeout(timeout, async {
        let mut limited = io.take(max as u64);
        limited.read_until(b'\n', &mut raw).await
    })
    .await
    .map_err(|_| "no answer within the timeout".to_owned())?
    .map_err(|e| format!("reading: {e}"))?;
    if n == 0 {
        return Err("the server closed the connection".into());
    }
    Ok(String::from_utf8_lossy(&raw)
        .trim_end_matches(['\r', '\n'])
        .to_owned())
}

/// Writes `line` and CRLF.
pub(crate) async fn write_line(
    io: &mut LineIo,
    line: &str,
    timeout: Duration,
) -> Result<(), String> {
    let mut bytes = line.as_bytes().to_vec();
    bytes.extend_from_slice(b"\r\n");
    tokio::time::timeout(timeout, async {
        let w = io.get_mut();
        w.write_all(&bytes).await?;
        w.flush().await
    })
    .await
    .map_err(|_| "sending timed out".to_owned())?
    .map_err(|e| format!("sending: {e}"))
}

/// Writes `bytes` as they are.
pub(crate) async fn write_bytes(
    io: &mut LineIo,
    bytes: &[u8],
    timeout: Duration,
) -> Result<(), String> {
    tokio::time::timeout(timeout, async {
        let w = io.get_mut();
        w.write_all(bytes).await?;
        w.flush().await
    })
    .await
    .map_err(|_| "sending timed out".to_owned())?
    .map_err(|e| format!("sending: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_are_built_once_per_set_of_roots() {
        let a = tls_config(None).expect("platform roots");
        let b = tls_config(None).expect("platform roots");
        assert!(Arc::ptr_eq(&a, &b));
        // Bad extra roots are refused each time, never cached.
        let bad = b"-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n";
        assert!(tls_config(Some(bad)).is_err());
        assert!(tls_config(Some(bad)).is_err());
    }
}
