//! Error types. Every error keeps its evidence as typed fields (the raw Entra error body, the file
//! and field of a configuration problem) and never carries a secret.

use std::path::PathBuf;

use serde::Serialize;

pub use exgate_wire::entra::{EntraError, aadsts_codes_in};

/// What kind of transport failure happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TransportKind {
    /// The connection could not be established (refused, DNS, TLS).
    Connect,
    /// The request or the response timed out.
    Timeout,
    /// The response was not what the protocol says (bad JSON, missing field).
    Protocol,
    /// Any other I/O failure.
    Other,
}

/// A configuration problem: which setting, where it came from, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{source_name}{}: field `{field}`: {message}{}", line.map(|l| format!(" line {l}")).unwrap_or_default(), if fix.is_empty() { String::new() } else { format!(" (fix: {fix})") })]
pub struct ConfigError {
    /// Where the setting came from: a file path, `environment` or `flags`.
    pub source_name: String,
    /// Line in the file, when known.
    pub line: Option<usize>,
    /// Name of the setting.
    pub field: String,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub fix: String,
}

impl ConfigError {
    /// A configuration error without a line number.
    pub fn new(
        source_name: impl Into<String>,
        field: impl Into<String>,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        ConfigError {
            source_name: source_name.into(),
            line: None,
            field: field.into(),
            message: message.into(),
            fix: fix.into(),
        }
    }
}

/// A problem with a certificate or private key file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}{}", path.display(), if fix.is_empty() { String::new() } else { format!(" (fix: {fix})") })]
pub struct CredentialError {
    /// The file (or `<memory>`).
    pub path: PathBuf,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub fix: String,
}

impl CredentialError {
    pub(crate) fn new(
        path: impl Into<PathBuf>,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        CredentialError {
            path: path.into(),
            message: message.into(),
            fix: fix.into(),
        }
    }
}

/// A problem with the encrypted token store.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store exists but cannot be decrypted with the configured key, or is corrupt.
    /// Cause id `local_token_store_key_mismatch`. The file is left untouched.
    #[error(
        "token store {}: {reason} (cause: local_token_store_key_mismatch; fix: use the key the store was written with, or move the file away to start a new store)",
        path.display()
    )]
    KeyMismatch {
        /// The store file.
        path: PathBuf,
        /// Why it could not be read.
        reason: String,
    },
    /// The key could not be loaded.
    #[error("token store key: {0}")]
    Key(String),
    /// Reading or writing the file failed.
    #[error("token store {}: {message}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error text.
        message: String,
    },
}

impl StoreError {
    /// The failure-cause id for this error, when one applies.
    pub fn cause_id(&self) -> Option<&'static str> {
        match self {
            StoreError::KeyMismatch { .. } => Some("local_token_store_key_mismatch"),
            _ => None,
        }
    }
}

/// Every failure of token acquisition.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// Entra ID answered with an OAuth error body.
    #[error("Entra ID returned HTTP {status}: {}: {}", body.error, body.summary())]
    Entra {
        /// HTTP status.
        status: u16,
        /// The parsed error body (boxed: it is large and errors should be small).
        body: Box<EntraError>,
    },
    /// A non-OAuth HTTP failure (HTML error page, 5xx without a body).
    #[error("HTTP {status} from {url}: {snippet}")]
    Http {
        /// HTTP status.
        status: u16,
        /// The URL (no query string).
        url: String,
        /// The start of the body.
        snippet: String,
    },
    /// The request could not be sent or its response not read.
    #[error("{kind:?} error talking to {url}: {message}")]
    Transport {
        /// Failure class.
        kind: TransportKind,
        /// The URL (no query string).
        url: String,
        /// Error text (never contains request bodies).
        message: String,
    },
    /// The configuration is invalid; nothing was sent.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A certificate or key could not be loaded or used.
    #[error(transparent)]
    Credential(#[from] CredentialError),
    /// The token store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An interactive flow ended without a token (declined, expired, state mismatch).
    #[error("{flow}: {message}")]
    Flow {
        /// The flow (`device_code`, `authorization_code`, `consent`).
        flow: &'static str,
        /// What happened.
        message: String,
    },
    /// The operation would need a user, and none is configured (app-only credential asked for a
    /// user token, or no stored refresh token).
    #[error("{0}")]
    Unsupported(String),
}

impl AuthError {
    /// The AADSTS codes carried by this error (empty when it has none).
    pub fn aadsts_codes(&self) -> &[u32] {
        match self {
            AuthError::Entra { body, .. } => &body.error_codes,
            _ => &[],
        }
    }

    /// The Entra error body, when Entra answered with one.
    pub fn entra(&self) -> Option<&EntraError> {
        match self {
            AuthError::Entra { body, .. } => Some(body.as_ref()),
            _ => None,
        }
    }

    /// Whether retrying the same request may succeed: 5xx, 429, timeouts and connection
    /// failures. `invalid_grant` and `invalid_client` never are.
    pub fn is_transient(&self) -> bool {
        match self {
            AuthError::Entra { status, body } => {
                if body.error == "invalid_grant" || body.error == "invalid_client" {
                    return false;
                }
                *status == 429 || *status >= 500 || body.error == "temporarily_unavailable"
            }
            AuthError::Http { status, .. } => *status == 429 || *status >= 500,
            AuthError::Transport { kind, .. } => {
                matches!(kind, TransportKind::Connect | TransportKind::Timeout)
            }
            _ => false,
        }
    }

    pub(crate) fn transport(url: &url::Url, err: reqwest::Error) -> AuthError {
        let kind = if err.is_timeout() {
            TransportKind::Timeout
        } else if err.is_connect() {
            TransportKind::Connect
        } else if err.is_decode() {
            TransportKind::Protocol
        } else {
            TransportKind::Other
        };
        // reqwest errors carry the URL; ours is stripped of the query string.
        let message = error_chain(err.without_url());
        AuthError::Transport {
            kind,
            url: strip_query(url),
            message,
        }
    }
}

fn error_chain(err: reqwest::Error) -> String {
    use std::error::Error as _;
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

pub(crate) fn strip_query(url: &url::Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.set_fragment(None);
    let _ = u.set_password(None);
    u.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_entra_body_with_codes() {
        let body = br#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided.\r\nTrace ID: t\r\nCorrelation ID: c\r\nTimestamp: 2024-05-01 10:11:12Z","error_codes":[7000215],"timestamp":"2024-05-01 10:11:12Z","trace_id":"t","correlation_id":"c","error_uri":"https://login.microsoftonline.com/error?code=7000215"}"#;
        let e = EntraError::parse(body).expect("parses");
        assert_eq!(e.error, "invalid_client");
        assert_eq!(e.error_codes, vec![7000215]);
        assert_eq!(e.trace_id, "t");
        assert_eq!(e.correlation_id, "c");
        assert_eq!(
            e.summary(),
            "AADSTS7000215: Invalid client secret provided."
        );
        let err = AuthError::Entra {
            status: 401,
            body: Box::new(e),
        };
        assert_eq!(err.aadsts_codes(), &[7000215]);
        assert!(!err.is_transient());
    }

    #[test]
    fn codes_fall_back_to_description() {
        let e = EntraError::parse(br#"{"error":"invalid_grant","error_description":"AADSTS70008: expired. AADSTS70008 again, AADSTS50173"}"#).expect("parses");
        assert_eq!(e.error_codes, vec![70008, 50173]);
    }

    #[test]
    fn non_oauth_bodies_are_not_entra_errors() {
        assert!(EntraError::parse(b"<html>").is_none());
        assert!(EntraError::parse(b"{}").is_none());
        assert!(EntraError::parse(b"[1]").is_none());
    }

    #[test]
    fn transient_classification() {
        let e = |status, error: &str| AuthError::Entra {
            status,
            body: Box::new(EntraError {
                error: error.into(),
                ..Default::default()
            }),
        };
        assert!(e(503, "server_error").is_transient());
        assert!(e(429, "").is_transient());
        assert!(!e(500, "invalid_grant").is_transient());
        assert!(!e(400, "invalid_request").is_transient());
    }

    proptest::proptest! {
        #[test]
        fn entra_parse_never_panics(body in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = EntraError::parse(&body);
        }

        #[test]
        fn aadsts_scan_never_panics(text in ".{0,200}") {
            let _ = aadsts_codes_in(&text);
        }
    }
}
