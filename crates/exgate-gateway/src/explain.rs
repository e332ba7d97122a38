//! Upstream refusals through exgate-diagnose: the cause and its first fix for the log and
//! `exgate gateway status`, and a short, secret-free reason for the device.

use exgate_diagnose::{Evidence, Protocol, SignedIn};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;

/// A diagnosed refusal.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Explained {
    /// The cause id (`smtp_auth_disabled`), empty when nothing matched.
    pub cause: String,
    /// Its title.
    pub title: String,
    /// The first fix step.
    pub fix: String,
    /// Confidence of the top cause.
    pub confidence: f32,
}

impl Explained {
    /// `cause: title (fix: ...)` for a log line.
    pub fn summary(&self) -> String {
        if self.cause.is_empty() {
            return "no known cause matched".into();
        }
        format!("{}: {} (fix: {})", self.cause, self.title, self.fix)
    }
}

/// How the gateway signed in upstream, for the diagnosis of a refusal.
#[derive(Clone, Copy)]
pub enum SignedInAs<'a> {
    /// XOAUTH2 with this token (its claims are checked against what the protocol needs).
    Token(&'a SecretString),
    /// A password (`upstream_basic`, mechanism `login`): token causes are ruled out.
    Password,
    /// NTLM with a password (`upstream_basic`, mechanism `ntlm`).
    Windows,
    /// Not known (no sign-in was attempted yet).
    Unknown,
}

impl<'a> SignedInAs<'a> {
    /// How `account` signs in upstream, with the token when it used one.
    pub fn of(account: &crate::config::AccountConfig, token: Option<&'a SecretString>) -> Self {
        match (&account.upstream_basic, token) {
            (Some(b), _) if b.mechanism == crate::config::PasswordMechanism::Ntlm => {
                SignedInAs::Windows
            }
            (Some(_), _) => SignedInAs::Password,
            (None, Some(t)) => SignedInAs::Token(t),
            (None, None) => SignedInAs::Unknown,
        }
    }
}

/// Diagnoses what Exchange (or Entra ID) answered, with how the gateway signed in.
pub fn explain(protocol: Protocol, text: &str, mailbox: &str, how: SignedInAs<'_>) -> Explained {
    let signed_in = match how {
        SignedInAs::Token(t) => Some(SignedIn::Token {
            user: mailbox,
            token: t.expose_secret(),
        }),
        SignedInAs::Password => Some(SignedIn::Password { user: mailbox }),
        SignedInAs::Windows => Some(SignedIn::Windows { user: mailbox }),
        SignedInAs::Unknown => None,
    };
    let ev = Evidence::mail_refusal(protocol, text, signed_in).with_mailbox(mailbox.to_owned());
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let d = exgate_diagnose::diagnose(&ev.at(now));
    match d.causes.first() {
        Some(c) => Explained {
            cause: c.id.clone(),
            title: c.title.clone(),
            fix: c.fix.first().cloned().unwrap_or_default(),
            confidence: c.confidence,
        },
        None => Explained {
            cause: String::new(),
            title: String::new(),
            fix: String::new(),
            confidence: 0.0,
        },
    }
}

/// A reply text fit for a device: one line, printable ASCII, at most 200 characters.
pub fn short(text: &str) -> String {
    let one: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                ' '
            }
        })
        .collect();
    let one = one.split_whitespace().collect::<Vec<_>>().join(" ");
    one.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtp_auth_disabled_is_named() {
        let e = explain(
            Protocol::Smtp,
            "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant.",
            "scanner@contoso.com",
            SignedInAs::Unknown,
        );
        assert_eq!(e.cause, "smtp_auth_disabled", "{e:?}");
        assert!(!e.fix.is_empty());
        assert_eq!(short("a\r\nb\u{7}c  d"), "a b c d");
    }

    /// A refused password or NTLM sign-in upstream is explained without token advice.
    #[test]
    fn a_refused_password_or_ntlm_sign_in_gets_no_token_cause() {
        for how in [SignedInAs::Password, SignedInAs::Windows] {
            let e = explain(
                Protocol::Smtp,
                "535 5.7.3 Authentication unsuccessful [mail.contoso.com]",
                "CONTOSO\\copier",
                how,
            );
            assert!(!e.cause.is_empty(), "{e:?}");
            let text = format!("{} {} {}", e.cause, e.title, e.fix).to_ascii_lowercase();
            assert!(
                !text.contains("token") && !text.contains("xoauth2"),
                "{e:?}"
            );
        }
    }
}
