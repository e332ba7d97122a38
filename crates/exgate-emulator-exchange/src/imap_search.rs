//! IMAP `SEARCH` criteria (RFC 3501 6.4.4): parsed from the command's tokens into a tree of
//! keys, then evaluated per message. Keys are ANDed; `OR a b`, `NOT a` and parenthesised lists
//! combine them. String keys match case-insensitive substrings; date keys compare dates only
//! (`SINCE`/`BEFORE`/`ON` the internal date, `SENT*` the `Date` header). Flags the emulator does
//! not keep (`\Flagged`, `\Answered`, keywords) are never set, as after a `STORE` it refuses.

use time::{Date, Month};

use crate::imap::Tok;
use crate::store::Message;

/// One search key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Key {
    All,
    /// `SEEN` (true) / `UNSEEN` (false).
    Seen(bool),
    /// `DELETED` / `UNDELETED` (the session's `\Deleted` marks).
    Deleted(bool),
    /// `DRAFT` / `UNDRAFT`.
    Draft(bool),
    /// Flags never set here: `FLAGGED`, `ANSWERED`, `RECENT`, `NEW`, `KEYWORD x` (false); their
    /// negations (true).
    Constant(bool),
    /// `FROM`, `TO`, `CC`, `BCC`, `SUBJECT`, `HEADER name value`.
    Header(String, String),
    /// `BODY s`.
    Body(String),
    /// `TEXT s`: headers or body.
    Text(String),
    /// `SINCE`/`BEFORE`/`ON` (internal date) and `SENTSINCE`/`SENTBEFORE`/`SENTON`.
    Date {
        sent: bool,
        cmp: DateCmp,
        date: Date,
    },
    /// `LARGER n` / `SMALLER n` (RFC 822 size).
    Larger(u64),
    Smaller(u64),
    /// A sequence set, or `UID set`.
    Seq(String),
    Uid(String),
    Not(Box<Key>),
    Or(Box<Key>, Box<Key>),
    And(Vec<Key>),
}

/// How a date key compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DateCmp {
    Since,
    Before,
    On,
}

/// What a criterion is evaluated against.
pub(crate) struct Candidate<'a> {
    /// Sequence number (1-based).
    pub seq: u32,
    /// UID.
    pub uid: u32,
    /// Highest sequence number and UID of the folder (the value of `*`).
    pub max_seq: u32,
    pub max_uid: u32,
    pub seen: bool,
    pub deleted: bool,
    /// The message, generated on demand (flags and numbers need no message).
    pub message: &'a dyn Fn() -> Option<Message>,
}

/// Why criteria are refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SearchError {
    /// Malformed: `BAD`.
    Syntax,
    /// A charset other than US-ASCII or UTF-8: `NO [BADCHARSET]`.
    Charset,
}

/// Parses the arguments of `SEARCH` (an optional `CHARSET x` first).
pub(crate) fn parse(args: &[Tok]) -> Result<Key, SearchError> {
    let mut toks = args;
    if let [Tok::Atom(c), cs, rest @ ..] = toks
        && c.eq_ignore_ascii_case("CHARSET")
    {
        let name = astring(cs).ok_or(SearchError::Syntax)?.to_ascii_uppercase();
        if !matches!(name.as_str(), "UTF-8" | "US-ASCII") {
            return Err(SearchError::Charset);
        }
        toks = rest;
    }
    let mut p = Parser { toks, at: 0 };
    let mut keys = Vec::new();
    while p.at < p.toks.len() {
        keys.push(p.key(0)?);
    }
    Ok(match keys.len() {
        0 => Key::All,
        1 => keys.remove(0),
        _ => Key::And(keys),
    })
}

fn astring(t: &Tok) -> Option<String> {
    match t {
        Tok::Atom(a) => Some(a.clone()),
        Tok::Str(s) => Some(String::from_utf8_lossy(s).into_owned()),
        Tok::List(_) => None,
    }
}

/// Nesting deeper than this is refused (a search of `NOT NOT NOT ...` cannot exhaust the stack).
const MAX_DEPTH: usize = 32;

struct Parser<'a> {
    toks: &'a [Tok],
    at: usize,
}

impl Parser<'_> {
    fn next(&mut self) -> Result<&Tok, SearchError> {
        let t = self.toks.get(self.at).ok_or(SearchError::Syntax)?;
        self.at += 1;
        Ok(t)
    }

    fn string(&mut self) -> Result<String, SearchError> {
        astring(self.next()?).ok_or(SearchError::Syntax)
    }

    fn number(&mut self) -> Result<u64, SearchError> {
        match self.next()? {
            Tok::Atom(a) => a.parse().map_err(|_| SearchError::Syntax),
            _ => Err(SearchError::Syntax),
        }
    }

    fn date(&mut self) -> Result<Date, SearchError> {
        parse_date(&self.string()?).ok_or(SearchError::Syntax)
    }

    fn key(&mut self, depth: usize) -> Result<Key, SearchError> {
        if depth > MAX_DEPTH {
            return Err(SearchError::Syntax);
        }
        let tok = self.next()?.clone();
        let atom = match tok {
            Tok::List(items) => {
                let mut inner = Parser {
                    toks: &items,
                    at: 0,
                };
                let mut keys = Vec::new();
                while inner.at < items.len() {
                    keys.push(inner.key(depth + 1)?);
                }
                return match keys.len() {
                    0 => Err(SearchError::Syntax),
                    1 => Ok(keys.remove(0)),
                    _ => Ok(Key::And(keys)),
                };
            }
            Tok::Str(_) => return Err(SearchError::Syntax),
            Tok::Atom(a) => a,
        };
        let upper = atom.to_ascii_uppercase();
        let date = |p: &mut Self, sent, cmp| {
            Ok(Key::Date {
                sent,
                cmp,
                date: p.date()?,
            })
        };
        Ok(match upper.as_str() {
            "ALL" => Key::All,
            "SEEN" => Key::Seen(true),
            "UNSEEN" => Key::Seen(false),
            "DELETED" => Key::Deleted(true),
            "UNDELETED" => Key::Deleted(false),
            "DRAFT" => Key::Draft(true),
            "UNDRAFT" => Key::Draft(false),
            "FLAGGED" | "ANSWERED" | "RECENT" | "NEW" => Key::Constant(false),
            "UNFLAGGED" | "UNANSWERED" | "OLD" => Key::Constant(true),
            "KEYWORD" => {
                self.string()?;
                Key::Constant(false)
            }
            "UNKEYWORD" => {
                self.string()?;
                Key::Constant(true)
            }
            "FROM" | "TO" | "CC" | "BCC" | "SUBJECT" => {
                Key::Header(upper.to_ascii_lowercase(), self.string()?)
            }
            "HEADER" => {
                let name = self.string()?.to_ascii_lowercase();
                Key::Header(name, self.string()?)
            }
            "BODY" => Key::Body(self.string()?),
            "TEXT" => Key::Text(self.string()?),
            "SINCE" => date(self, false, DateCmp::Since)?,
            "BEFORE" => date(self, false, DateCmp::Before)?,
            "ON" => date(self, false, DateCmp::On)?,
            "SENTSINCE" => date(self, true, DateCmp::Since)?,
            "SENTBEFORE" => date(self, true, DateCmp::Before)?,
            "SENTON" => date(self, true, DateCmp::On)?,
            "LARGER" => Key::Larger(self.number()?),
            "SMALLER" => Key::Smaller(self.number()?),
            "UID" => match self.next()? {
                Tok::Atom(set) if valid_set(set) => Key::Uid(set.clone()),
                _ => return Err(SearchError::Syntax),
            },
            "NOT" => Key::Not(Box::new(self.key(depth + 1)?)),
            "OR" => {
                let a = self.key(depth + 1)?;
                let b = self.key(depth + 1)?;
                Key::Or(Box::new(a), Box::new(b))
            }
            _ if valid_set(&atom) => Key::Seq(atom),
            _ => return Err(SearchError::Syntax),
        })
    }
}

/// `1:3,5,7:*`: comma-separated numbers (non-zero) or `*`, single or as `a:b` ranges.
fn valid_set(s: &str) -> bool {
    let number = |n: &str| n == "*" || (n.parse::<u32>().is_ok_and(|v| v > 0));
    !s.is_empty()
        && s.split(',').all(|part| match part.split_once(':') {
            Some((a, b)) => number(a) && number(b),
            None => number(part),
        })
}

/// `1-Feb-1994` (day 1 or 2 digits, English month abbreviation, 4-digit year).
pub(crate) fn parse_date(s: &str) -> Option<Date> {
    let s = s.trim_matches('"');
    let mut parts = s.split('-');
    let day: u8 = parts.next()?.parse().ok()?;
    let month = match parts.next()?.to_ascii_lowercase().as_str() {
        "jan" => Month::January,
        "feb" => Month::February,
        "mar" => Month::March,
        "apr" => Month::April,
        "may" => Month::May,
        "jun" => Month::June,
        "jul" => Month::July,
        "aug" => Month::August,
        "sep" => Month::September,
        "oct" => Month::October,
        "nov" => Month::November,
        "dec" => Month::December,
        _ => return None,
    };
    let year: i32 = parts.next()?.parse().ok()?;
    if parts.next().is_some() {
        return None;
    }
    Date::from_calendar_date(year, month, day).ok()
}

fn contains(hay: &str, needle: &str) -> bool {
    hay.to_lowercase().contains(&needle.to_lowercase())
}

fn in_set(set: &str, n: u32, max: u32) -> bool {
    // `*` is the highest number in use; an empty folder has none.
    if max == 0 {
        return false;
    }
    set.split(',').any(|part| {
        let num = |s: &str| -> Option<u32> { if s == "*" { Some(max) } else { s.parse().ok() } };
        match part.split_once(':') {
            Some((a, b)) => match (num(a), num(b)) {
                (Some(a), Some(b)) => (a.min(b)..=a.max(b)).contains(&n),
                _ => false,
            },
            None => num(part) == Some(n),
        }
    })
}

/// The header value a header key reads (`Bcc` is never kept on a received message).
fn header(m: &Message, name: &str) -> String {
    let people = |v: &[crate::store::Person]| {
        v.iter()
            .map(|p| format!("{} <{}>", p.name, p.address))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match name {
        "from" => people(std::slice::from_ref(&m.from)),
        "to" => people(&m.to),
        "cc" => people(&m.cc),
        "subject" => m.subject.clone(),
        "message-id" => m.internet_message_id.clone(),
        _ => {
            // Any other header, read from the message as sent.
            let mime = m.mime();
            let head = mime.split("\r\n\r\n").next().unwrap_or("");
            head.lines()
                .filter_map(|l| l.split_once(':'))
                .filter(|(k, _)| k.trim().eq_ignore_ascii_case(name))
                .map(|(_, v)| v.trim().to_owned())
                .collect::<Vec<_>>()
                .join(", ")
        }
    }
}

/// Whether `c` satisfies `key`.
pub(crate) fn matches(key: &Key, c: &Candidate<'_>) -> bool {
    let with = |f: &dyn Fn(&Message) -> bool| (c.message)().is_some_and(|m| f(&m));
    match key {
        Key::All => true,
        Key::Seen(s) => c.seen == *s,
        Key::Deleted(d) => c.deleted == *d,
        Key::Draft(d) => with(&|m| m.is_draft == *d),
        Key::Constant(v) => *v,
        Key::Header(name, value) => with(&|m| {
            let h = header(m, name);
            // `HEADER x ""` matches every message that has the header.
            if value.is_empty() {
                !h.is_empty()
            } else {
                contains(&h, value)
            }
        }),
        Key::Body(s) => with(&|m| contains(&m.body, s)),
        Key::Text(s) => with(&|m| contains(&m.mime(), s)),
        Key::Date { sent, cmp, date } => with(&|m| {
            let d = if *sent {
                m.sent.date()
            } else {
                m.received.date()
            };
            match cmp {
                DateCmp::Since => d >= *date,
                DateCmp::Before => d < *date,
                DateCmp::On => d == *date,
            }
        }),
        Key::Larger(n) => with(&|m| m.size() as u64 > *n),
        Key::Smaller(n) => with(&|m| (m.size() as u64) < *n),
        Key::Seq(set) => in_set(set, c.seq, c.max_seq),
        Key::Uid(set) => in_set(set, c.uid, c.max_uid),
        Key::Not(k) => !matches(k, c),
        Key::Or(a, b) => matches(a, c) || matches(b, c),
        Key::And(keys) => keys.iter().all(|k| matches(k, c)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<Tok> {
        crate::imap::tokenize(s.as_bytes()).unwrap_or_default()
    }

    #[test]
    fn criteria_are_parsed() {
        assert_eq!(parse(&toks("")).unwrap(), Key::All);
        assert_eq!(
            parse(&toks("CHARSET UTF-8 SUBJECT \"Quarterly report\"")).unwrap(),
            Key::Header("subject".into(), "Quarterly report".into())
        );
        assert_eq!(
            parse(&toks("CHARSET KOI8-R ALL")).unwrap_err(),
            SearchError::Charset
        );
        assert_eq!(
            parse(&toks("OR SEEN NOT FROM alice SINCE 1-Feb-1994")).unwrap(),
            Key::And(vec![
                Key::Or(
                    Box::new(Key::Seen(true)),
                    Box::new(Key::Not(Box::new(Key::Header(
                        "from".into(),
                        "alice".into()
                    ))))
                ),
                Key::Date {
                    sent: false,
                    cmp: DateCmp::Since,
                    date: Date::from_calendar_date(1994, Month::February, 1).unwrap()
                }
            ])
        );
        assert_eq!(
            parse(&toks("(UNSEEN 1:*) UID 4:7")).unwrap(),
            Key::And(vec![
                Key::And(vec![Key::Seen(false), Key::Seq("1:*".into())]),
                Key::Uid("4:7".into())
            ])
        );
        for bad in [
            "SUBJECT",
            "SINCE 31-Feb-2026",
            "SINCE yesterday",
            "LARGER ten",
            "BOGUS",
            "OR SEEN",
            "()",
            "UID x",
        ] {
            assert_eq!(parse(&toks(bad)).unwrap_err(), SearchError::Syntax, "{bad}");
        }
        let deep = format!("{}ALL", "NOT ".repeat(100));
        assert_eq!(parse(&toks(&deep)).unwrap_err(), SearchError::Syntax);
    }

    #[test]
    fn sets_and_flags_need_no_message() {
        let none = || -> Option<Message> { None };
        let c = Candidate {
            seq: 3,
            uid: 7,
            max_seq: 5,
            max_uid: 9,
            seen: false,
            deleted: false,
            message: &none,
        };
        let yes = |s: &str| matches(&parse(&toks(s)).unwrap(), &c);
        assert!(yes("UNSEEN 2:4"));
        assert!(yes("UID 7"));
        assert!(!yes("UID 8:*"));
        assert!(!yes("5:*"));
        assert!(yes("OR 1 3"));
        assert!(yes("NOT DELETED UNFLAGGED"));
        assert!(!yes("FLAGGED"));
        // Needs the message, which is not there: no match.
        assert!(!yes("SUBJECT x"));
    }
}
