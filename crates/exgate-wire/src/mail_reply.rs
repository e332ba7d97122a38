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
    Regex::new(r#"(?m)(?:^|[ \t`'"(])(?:[A-Za-z0-9.*]+[ \t]+)?(NO|BAD)[ \t]+((?:\[[A-Z][^\]]*\][ \t]*)?(?:\[?b?['"])?[A-Z][^\r\n`'"]*)"#)
        .ok()
});
/// An enhanced status code quoted without its reply code (`The server response was: 4.3.111
/// Temporary server error`); three parts exactly, so version numbers do not match.
static ENHANCED_ONLY: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(r"(?:^|[\s:;'(\[])([45]\.\d{1,3}\.\d{1,3})(?:[^.\d]|$)[ \t]*([^\r\n]*)").ok()
});
static POP: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(r"(-ERR)[ \t]+([^\r\n]*)").ok());

/// Extracts the failure replies of SMTP, IMAP and POP found anywhere in the text.
pub fn parse_replies(text: &str) -> Vec<MailReply> {
    let mut out = Vec::new();
    if let Some(re) = SMTP.as_ref() {
        // One line can quote several replies (`530 5.7.57 ... Error: 535 5.7.3 ...`): each
        // reply's text ends where the next reply begins.
        let mut at = 0;
        while let Some(c) = text.get(at..).and_then(|rest| re.captures(rest)) {
            let (Some(whole), Some(tail)) = (c.get(0), c.get(3)) else {
                break;
            };
            let mut reply_text = tail.as_str();
            let mut next = at + whole.end();
            if let Some(inner) = re.find(reply_text) {
                next = at + tail.start() + inner.start();
                reply_text = reply_text.get(..inner.start()).unwrap_or(reply_text);
            }
            let code = c.get(1).map_or("", |m| m.as_str());
            if !code.starts_with('2') {
                out.push(MailReply {
                    protocol: "smtp".into(),
                    code: code.into(),
                    enhanced: c.get(2).map(|m| m.as_str().to_owned()),
                    text: reply_text.trim().to_owned(),
                });
            }
            if next <= at {
                break;
            }
            at = next;
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
    if out.is_empty()
        && let Some(re) = ENHANCED_ONLY.as_ref()
    {
        for c in re.captures_iter(text) {
            let enhanced = c.get(1).map_or("", |m| m.as_str());
            out.push(MailReply {
                protocol: "smtp".into(),
                code: String::new(),
                enhanced: Some(enhanced.to_owned()),
                text: c.get(2).map_or("", |m| m.as_str()).trim().to_owned(),
            });
        }
    }
    if let Some(re) = IMAP.as_ref() {
        for c in re.captures_iter(text) {
            let text = c.get(2).map_or("", |m| m.as_str());
            let text = text.trim_start_matches(['[', 'b', '\'', '"']).trim();
            out.push(MailReply {
                protocol: "imap".into(),
                code: c.get(1).map_or("", |m| m.as_str()).into(),
                enhanced: None,
                text: text.to_owned(),
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

    proptest::proptest! {
        #[test]
        fn never_panics(s in ".{0,200}") {
            let _ = parse_replies(&s);
        }
    }

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
    fn several_replies_on_one_line() {
        let r = parse_replies(
            "530 5.7.57 Client not authenticated to send mail. Error: 535 5.7.3 Authentication unsuccessful",
        );
        assert_eq!(r.len(), 2, "{r:?}");
        assert_eq!(r[0].enhanced.as_deref(), Some("5.7.57"));
        assert_eq!(r[0].text, "Client not authenticated to send mail. Error:");
        assert_eq!(r[1].code, "535");
    }

    #[test]
    fn quoted_replies() {
        let r = parse_replies("the call gets a reply of `NO AUTHENTICATE failed.`");
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].text, "AUTHENTICATE failed.");
        let r = parse_replies(
            "EXAMINE command error: BAD [b'User is authenticated but not connected.']",
        );
        assert_eq!(r[0].code, "BAD");
        assert!(r[0].text.starts_with("User is authenticated"), "{:?}", r[0]);
        let r = parse_replies(
            "The server response was: 4.3.111 Temporary server error. Please try again later",
        );
        assert_eq!(r[0].enhanced.as_deref(), Some("4.3.111"));
        assert!(
            parse_replies("MSAL.Desktop 4.8 or later, version 4.42.1.0 of the library").is_empty()
        );
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
