//! How the line protocols (SMTP, IMAP, POP) sign in: SASL XOAUTH2 with an access token, a
//! password (AUTH LOGIN, IMAP LOGIN, POP USER/PASS), or Windows authentication (NTLM) toward
//! on-premises Exchange. Secrets never appear in `Debug`.

use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};

/// Sign-in for SMTP ([`crate::smtp::SmtpAuth`]) and IMAP ([`crate::imap::ImapAuth`]).
#[derive(Clone)]
pub enum SaslAuth {
    /// SASL XOAUTH2 with an access token for `user`.
    Xoauth2 {
        /// The mailbox (`user=`).
        user: String,
        /// The access token.
        token: SecretString,
    },
    /// A password (Basic: a password or an app password).
    Login {
        /// The account.
        user: String,
        /// The password.
        password: SecretString,
    },
    /// Windows authentication (NTLMv2): SMTP `AUTH NTLM` ([MS-SMTPNTLM]), IMAP
    /// `AUTHENTICATE NTLM`, POP `AUTH NTLM`, for on-premises servers that take no password in
    /// the clear.
    Ntlm(crate::ntlm::NtlmCredentials),
}

impl std::fmt::Debug for SaslAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SaslAuth::Xoauth2 { user, .. } => write!(f, "Xoauth2({user}, [REDACTED])"),
            SaslAuth::Login { user, .. } => write!(f, "Login({user}, [REDACTED])"),
            SaslAuth::Ntlm(c) => write!(f, "Ntlm({}, [REDACTED])", c.account()),
        }
    }
}

impl SaslAuth {
    /// `xoauth2`, `login` or `ntlm`.
    pub fn mechanism(&self) -> &'static str {
        match self {
            SaslAuth::Xoauth2 { .. } => "xoauth2",
            SaslAuth::Login { .. } => "login",
            SaslAuth::Ntlm(_) => "ntlm",
        }
    }

    /// The account that signs in (the mailbox, or the user name of a password or NTLM
    /// sign-in).
    pub fn user(&self) -> String {
        match self {
            SaslAuth::Xoauth2 { user, .. } | SaslAuth::Login { user, .. } => user.clone(),
            SaslAuth::Ntlm(c) => c.account(),
        }
    }
}

/// The base64 XOAUTH2 initial response: `user=<user>\x01auth=Bearer <token>\x01\x01`.
pub(crate) fn xoauth2_response(user: &str, token: &SecretString) -> String {
    let payload = format!(
        "user={user}\x01auth=Bearer {}\x01\x01",
        token.expose_secret()
    );
    base64::engine::general_purpose::STANDARD.encode(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xoauth2_response_and_debug() {
        let t = SecretString::from("CANARY-t");
        assert_eq!(
            xoauth2_response("a@b.c", &t),
            base64::engine::general_purpose::STANDARD
                .encode("user=a@b.c\x01auth=Bearer CANARY-t\x01\x01")
        );
        let a = SaslAuth::Xoauth2 {
            user: "a@b.c".into(),
            token: t,
        };
        assert_eq!(a.mechanism(), "xoauth2");
        assert!(!format!("{a:?}").contains("CANARY"));
    }
}
