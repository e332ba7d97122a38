//! SMTP, IMAP and POP replies.

use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

/// One server reply of a mail protocol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct MailReply {
    /// `smtp`, `imap` or `pop`.
    pub protocol: String,
    /// SMTP basic code (`535`) or IMAP/POP status (`NO`, `BAD`, `-ERR`).
    pub code: String,
    /// SMTP enhanced status code (`5.7.139`), when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enhanced: Option<String>,
    /// The reply text.
    #[serde(default)]
    pub text: String,
}

static SMTP: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(r"\b([245]\d\d)[ -]([245]\.\d{1,3}\.\d{1,3})\b[ \t]*([^\r\n]*)").ok()
});
/// Without an enhanced code, only reply codes that are not also common HTTP statuses.
static SMTP_LINE: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(r"(?m)^[ \t]*(421|45[0-2]|501|53[0-9]|55[0-4])[ -]([^\r\n]*)$").ok()
});
static IMAP: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(r"(?m)(?:^|[ \t])(?:[A-Za-z0-9.*]+[ \t]+)?(NO|BAD)[ \t]+((?:\[[^\]]*\][ \t]*)?[A-Z][^\r\n]*)")
        .ok()
});
static POP: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(r"(-ERR)[ \t]+([^\r\n]*)").ok());

/// Extracts the failure replies of SMTP, IMAP and POP found anywhere in the text.
pub fn parse_replies(text: &str) -> Vec<MailReply> {
    let mut out = Vec::new();
    if let Some(re) = SMTP.as_ref() {
        for c in re.captures_iter(text) {
            let code = c.get(1).map_or("", |m| m.as_str());
            if code.starts_with('2') {
                continue;
            }
            out.push(MailReply {
                protocol: "smtp".into(),
                code: code.into(),
                enhanced: c.get(2).map(|m| m.as_str().to_owned()),
                text: c.get(3).map_or("", |m| m.as_str()).trim().to_owned(),
            });
        }
    }
    if out.is_empty()
        && let Some(re) = SMTP_LINE.as_ref()
    {
        for c in re.captures_iter(text) {
            out.push(MailReply {
                protocol: "smtp".into(),
                code: c.get(1).map_or("", |m| m.as_str()).into(),
                enhanced: None,
                text: c.get(2).map_or("", |m| m.as_str()).trim().to_owned(),
            });
        }
    }
    if let Some(re) = IMAP.as_ref() {
        for c in re.captures_iter(text) {
            out.push(MailReply {
                protocol: "imap".into(),
                code: c.get(1).map_or("", |m| m.as_str()).into(),
                enhanced: None,
                text: c.get(2).map_or("", |m| m.as_str()).trim().to_owned(),
            });
        }
    }
    if let Some(re) = POP.as_ref() {
        for c in re.captures_iter(text) {
            out.push(MailReply {
                protocol: "pop".into(),
                code: "-ERR".into(),
                enhanced: None,
                text: c.get(2).map_or("", |m| m.as_str()).trim().to_owned(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtp_enhanced() {
        let r = parse_replies(
            "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant.",
        );
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].code, "535");
        assert_eq!(r[0].enhanced.as_deref(), Some("5.7.139"));
        assert!(r[0].text.starts_with("Authentication unsuccessful"));
    }

    #[test]
    fn imap_and_pop() {
        let r = parse_replies("A1 NO AUTHENTICATE failed.\r\n");
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].protocol, "imap");
        assert_eq!(r[0].text, "AUTHENTICATE failed.");
        let r = parse_replies("-ERR Authentication failure: unknown user name or bad password.");
        assert_eq!(r[0].protocol, "pop");
    }
}
