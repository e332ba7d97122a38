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

/// Diagnoses what Exchange (or Entra ID) answered, with the token the gateway used.
pub fn explain(
    protocol: Protocol,
    text: &str,
    mailbox: &str,
    token: Option<&SecretString>,
) -> Explained {
    let ev = match token {
        Some(t) => Evidence::mail_refusal(
            protocol,
            text,
            Some(SignedIn::Token {
                user: mailbox,
                token: t.expose_secret(),
            }),
        ),
        None => Evidence::mail_refusal(protocol, text, None).with_mailbox(mailbox.to_owned()),
    };
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
            None,
        );
        assert_eq!(e.cause, "smtp_auth_disabled", "{e:?}");
        assert!(!e.fix.is_empty());
        assert_eq!(short("a\r\nb\u{7}c  d"), "a b c d");
    }
}
