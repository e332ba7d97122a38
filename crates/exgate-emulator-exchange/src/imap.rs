//! IMAP4 as Exchange Online's `outlook.office365.com:993` answers it (implicit TLS):
//! `CAPABILITY`, `AUTHENTICATE XOAUTH2` (bearer tokens of the emulator, with or without SASL-IR),
//! `LOGIN` / `AUTHENTICATE PLAIN` (passwords through the [`Directory`](crate::Directory)), the
//! IMAP switches of the organisation and the mailbox, then `LIST`/`LSUB`, `SELECT`/`EXAMINE`,
//! `STATUS`, `FETCH` (flags, UIDs, sizes), `SEARCH`, `IDLE` and `LOGOUT` over the same emulated
//! mailboxes EWS and Graph serve.
//!
//! The dialogue is a pure state machine ([`Session`]) fed one command at a time (literals
//! included); the I/O loop ([`serve_imap`]) bounds line and literal length, time per read and
//! concurrent connections. Tokens and passwords are held as [`SecretString`] and never logged or
//! echoed. Every authentication refusal is Exchange's bare `NO AUTHENTICATE failed.` /
//! `NO LOGIN failed.`.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use secrecy::{ExposeSecret, SecretString};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use crate::auth::{protocol_right, xoauth2_mailbox};
use crate::directory::PasswordCheck;
use crate::smtp::{ReadLine, parse_plain, parse_xoauth2, read_line, send, timed};
use crate::state::{Counters, ExchangeState, FolderChange, Inner};
use crate::store::{Folder, generated_is_read};

/// What `CAPABILITY` lists (before and after authentication, as Exchange Online).
pub const CAPABILITIES: &str = "IMAP4 IMAP4rev1 AUTH=PLAIN AUTH=XOAUTH2 SASL-IR UIDPLUS MOVE ID UNSELECT CHILDREN IDLE NAMESPACE LITERAL+";

/// What `CAPABILITY` lists on an on-premises server reached by its name: Windows
/// authentication (NTLM; GSSAPI is not played) and PLAIN instead of XOAUTH2, as an Exchange
/// server with `EnableGSSAPIAndNTLMAuth` lists them.
pub const ONPREM_CAPABILITIES: &str = "IMAP4 IMAP4rev1 AUTH=NTLM AUTH=PLAIN UIDPLUS MOVE ID UNSELECT CHILDREN IDLE NAMESPACE LITERAL+";

/// Longest line (a command without its literals, or a SASL response carrying a token).
const MAX_LINE: usize = 16 * 1024;
/// Largest literal accepted (no APPEND: literals only carry names and credentials).
const MAX_LITERAL: usize = 64 * 1024;
/// Largest command with its literals.
const MAX_COMMAND: usize = 128 * 1024;
/// Literals in one command.
const MAX_LITERALS: usize = 8;
/// Nesting of parenthesised lists.
const MAX_DEPTH: usize = 8;
/// Protocol errors before the server hangs up.
const MAX_ERRORS: u32 = 30;
/// Messages one FETCH or SEARCH answers for (beyond: `NO`).
const MAX_FETCH: usize = 100_000;

const FLAGS: &str = r"(\Seen \Answered \Flagged \Deleted \Draft $MDNSent)";
const BYE_LOGOUT: &str = "* BYE Microsoft Exchange Server IMAP4 server signing off.";
const BYE_CLOSED: &str = "* BYE Connection is closed. 13";
const UIDVALIDITY_SALT: &[u8] = b"imap-uidvalidity";

/// How the IMAP endpoint runs.
#[derive(Debug, Clone)]
pub struct ImapOptions {
    /// The server name whose UTF-16 base64 closes the greeting, as Exchange names its back end.
    pub host: String,
    /// Time allowed for each read (a command line, a literal, a SASL response, `DONE`).
    pub read_timeout: Duration,
    /// Concurrent connections; beyond them a connection gets `* BYE` after the handshake.
    pub max_connections: usize,
    /// Asked on each new connection for an injected fault (`[[faults]]`).
    pub on_connect: crate::line_faults::OnConnect,
}

impl Default for ImapOptions {
    fn default() -> Self {
        ImapOptions {
            host: "localhost".to_owned(),
            // RFC 9051's autologout timer is at least 30 minutes.
            read_timeout: Duration::from_secs(30 * 60),
            max_connections: 64,
            on_connect: crate::line_faults::OnConnect::default(),
        }
    }
}

/// One token of a command's arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Tok {
    /// An atom (including `NIL`, numbers, sequence sets, `BODY[...]`).
    Atom(String),
    /// A quoted string or a literal.
    Str(Vec<u8>),
    /// A parenthesised list.
    List(Vec<Tok>),
}

impl Tok {
    /// An astring's bytes (atom or string).
    fn astring(&self) -> Option<&[u8]> {
        match self {
            Tok::Atom(a) => Some(a.as_bytes()),
            Tok::Str(s) => Some(s),
            Tok::List(_) => None,
        }
    }

    fn text(&self) -> Option<String> {
        self.astring()
            .and_then(|b| std::str::from_utf8(b).ok())
            .map(str::to_owned)
    }
}

/// A parsed command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Command {
    pub tag: String,
    /// Upper case.
    pub name: String,
    pub args: Vec<Tok>,
}

fn tag_char(b: u8) -> bool {
    b.is_ascii_graphic() && !b"(){%*\"\\+".contains(&b)
}

fn atom_char(b: u8) -> bool {
    b.is_ascii_graphic() && !b"(){\"".contains(&b)
}

/// The tag of a raw command, when it has a valid one.
pub(crate) fn tag_of(raw: &[u8]) -> Option<String> {
    let end = raw.iter().position(|b| *b == b' ').unwrap_or(raw.len());
    let tag = raw.get(..end)?;
    (!tag.is_empty() && tag.len() <= 64 && tag.iter().all(|b| tag_char(*b)))
        .then(|| String::from_utf8_lossy(tag).into_owned())
}

/// `{N}` or `{N+}` at the end of a line → (N, non-synchronising).
pub(crate) fn literal_marker(line: &[u8]) -> Option<(usize, bool)> {
    let inner = line.strip_suffix(b"}")?;
    let open = inner.iter().rposition(|b| *b == b'{')?;
    let spec = inner.get(open + 1..)?;
    let (digits, plus) = match spec.strip_suffix(b"+") {
        Some(d) => (d, true),
        None => (spec, false),
    };
    if digits.is_empty() || digits.len() > 10 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = std::str::from_utf8(digits).ok()?.parse::<usize>().ok()?;
    Some((n, plus))
}

/// Splits a command (literals inline as `{N}\r\n<N octets>`) into tag, name and arguments.
/// `None` when it is not well formed.
pub(crate) fn parse_command(raw: &[u8]) -> Option<Command> {
    let tag = tag_of(raw)?;
    let rest = raw.get(tag.len()..)?.strip_prefix(b" ")?;
    let end = rest.iter().position(|b| *b == b' ').unwrap_or(rest.len());
    let name = rest.get(..end)?;
    if name.is_empty() || !name.iter().all(u8::is_ascii_alphabetic) {
        return None;
    }
    let name = String::from_utf8_lossy(name).to_ascii_uppercase();
    let args = match rest.get(end..) {
        Some(a) if !a.is_empty() => tokenize(a.strip_prefix(b" ")?)?,
        _ => Vec::new(),
    };
    Some(Command { tag, name, args })
}

/// Arguments separated by single spaces: atoms, quoted strings, literals, lists.
pub(crate) fn tokenize(raw: &[u8]) -> Option<Vec<Tok>> {
    let mut stack: Vec<Vec<Tok>> = vec![Vec::new()];
    let mut i = 0usize;
    let mut literals = 0usize;
    let mut need_sep = false;
    while i < raw.len() {
        let b = *raw.get(i)?;
        if b == b' ' {
            if !need_sep {
                return None;
            }
            need_sep = false;
            i += 1;
            continue;
        }
        if b == b')' {
            let done = stack.pop()?;
            stack.last_mut()?.push(Tok::List(done));
            need_sep = true;
            i += 1;
            continue;
        }
        if need_sep {
            return None;
        }
        match b {
            b'(' => {
                if stack.len() > MAX_DEPTH {
                    return None;
                }
                stack.push(Vec::new());
                i += 1;
                continue;
            }
            b'"' => {
                let mut s = Vec::new();
                i += 1;
                loop {
                    match *raw.get(i)? {
                        b'"' => break,
                        b'\\' => {
                            let c = *raw.get(i + 1)?;
                            if c != b'"' && c != b'\\' {
                                return None;
                            }
                            s.push(c);
                            i += 2;
                        }
                        b'\r' | b'\n' | 0 => return None,
                        c => {
                            s.push(c);
                            i += 1;
                        }
                    }
                }
                i += 1;
                stack.last_mut()?.push(Tok::Str(s));
            }
            b'{' => {
                let close = raw.get(i..)?.iter().position(|c| *c == b'}')? + i;
                let (n, _) = literal_marker(raw.get(i..=close)?)?;
                literals += 1;
                if literals > MAX_LITERALS || n > MAX_LITERAL {
                    return None;
                }
                let start = close + 1;
                if raw.get(start..start + 2)? != b"\r\n" {
                    return None;
                }
                let body = raw.get(start + 2..start + 2 + n)?;
                stack.last_mut()?.push(Tok::Str(body.to_vec()));
                i = start + 2 + n;
            }
            _ => {
                let start = i;
                let mut depth = 0u32;
                while let Some(&c) = raw.get(i) {
                    if c == b'[' {
                        depth += 1;
                    } else if c == b']' {
                        depth = depth.saturating_sub(1);
                    } else if depth > 0 && (c == b' ' || c == b'(' || c == b')') {
                        // Inside `BODY[HEADER.FIELDS (A B)]`.
                    } else if !atom_char(c) {
                        break;
                    }
                    i += 1;
                }
                if i == start || depth > 0 {
                    return None;
                }
                let atom = std::str::from_utf8(raw.get(start..i)?).ok()?;
                stack.last_mut()?.push(Tok::Atom(atom.to_owned()));
            }
        }
        need_sep = true;
    }
    if stack.len() != 1 {
        return None;
    }
    stack.pop()
}

/// A SASL exchange in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Mech {
    Xoauth2,
    Plain,
    /// Windows authentication on an on-premises server.
    Ntlm(crate::line_auth::NtlmStep),
}

/// What the I/O loop does after a command.
#[derive(Debug)]
pub(crate) enum Step {
    /// Write this (CRLF-terminated lines) and read the next command.
    Reply(String),
    /// Write it and close.
    Close(String),
    /// Write the `+ ` continuation (with `text` after it, e.g. an NTLM challenge); the next
    /// line goes to [`Session::sasl`].
    Challenge {
        tag: String,
        mech: Mech,
        text: String,
    },
    /// Write the `+ idling` continuation, wait for `DONE`, then answer the tag.
    Idle { tag: String },
}

#[derive(Debug, Clone, Copy)]
struct Selected {
    folder: Folder,
    read_only: bool,
    exists: u32,
}

/// One IMAP session's state.
#[derive(Debug)]
pub(crate) struct Session {
    /// Messages marked `\Deleted` (folder, position), until EXPUNGE or CLOSE.
    deleted: std::collections::HashSet<(Folder, u32)>,
    /// The authenticated mailbox (index).
    authed: Option<u32>,
    selected: Option<Selected>,
    errors: u32,
    /// The on-premises server the client reached by its name (the TLS server name), if any.
    pub(crate) onprem: Option<usize>,
}

fn line(s: &str) -> String {
    format!("{s}\r\n")
}

/// The greeting: Exchange closes it with the base64 of its back end's name in UTF-16LE.
pub(crate) fn greeting(host: &str) -> String {
    let name: Vec<u8> = host.encode_utf16().flat_map(u16::to_le_bytes).collect();
    line(&format!(
        "* OK The Microsoft Exchange IMAP4 service is ready. [{}]",
        B64.encode(name)
    ))
}

/// A mailbox name as a LIST answer writes it: an atom when it can be, else quoted.
fn quote(name: &str) -> String {
    if !name.is_empty()
        && name
            .bytes()
            .all(|b| atom_char(b) && b != b'\\' && b != b'%' && b != b'*')
    {
        name.to_owned()
    } else {
        format!("\"{}\"", name.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

/// The IMAP names of a mailbox's folders (`/` separates levels; the Inbox is `INBOX`; the
/// levels below the top of the information store). A folder whose name holds the separator, and
/// the folders under it, are not shown, as Exchange's IMAP does not show them (Microsoft's
/// "Tips for optimizing IMAP migrations": rename such folders).
fn imap_names(st: &Inner, i: u32) -> Vec<(Folder, String)> {
    let entries = st.folder_entries(i);
    let by_folder: HashMap<Folder, (&str, Option<Folder>)> = entries
        .iter()
        .map(|(f, n, p)| (*f, (n.as_str(), *p)))
        .collect();
    entries
        .iter()
        .filter_map(|(f, ..)| {
            let mut levels = Vec::new();
            let mut cur = Some(*f);
            while let Some(c) = cur {
                // The tree has no cycles; the bound only guards against a broken one.
                if c == Folder::MsgFolderRoot || c == Folder::Root || levels.len() > entries.len() {
                    break;
                }
                let (name, parent) = by_folder.get(&c).copied().unwrap_or(("", None));
                if name.contains('/') {
                    return None;
                }
                levels.push(if c == Folder::Inbox { "INBOX" } else { name });
                cur = parent;
            }
            levels.reverse();
            Some((*f, levels.join("/")))
        })
        .collect()
}

/// The IMAP name of one folder.
fn imap_name(st: &Inner, i: u32, f: Folder) -> String {
    imap_names(st, i)
        .into_iter()
        .find(|(g, _)| *g == f)
        .map(|(_, n)| n)
        .unwrap_or_default()
}

fn special_use(f: Folder) -> Option<&'static str> {
    match f {
        Folder::SentItems => Some(r"\Sent"),
        Folder::DeletedItems => Some(r"\Trash"),
        Folder::Drafts => Some(r"\Drafts"),
        Folder::JunkEmail => Some(r"\Junk"),
        Folder::Archive => Some(r"\Archive"),
        _ => None,
    }
}

/// The folders IMAP shows for a mailbox (the mail folders Graph lists) with their names,
/// sorted by name.
fn folders(st: &Inner, i: u32) -> Vec<(Folder, String)> {
    let mut v: Vec<(Folder, String)> = imap_names(st, i)
        .into_iter()
        .filter(|(f, _)| f.is_mail_folder())
        .collect();
    v.sort_by_key(|(_, n)| n.to_ascii_lowercase());
    v
}

/// Modified UTF-7 (RFC 3501 5.1.3), as mailbox names travel: printable ASCII as itself (`&` as
/// `&-`), anything else as `&` + base64 of its UTF-16 (`,` for `/`, no padding) + `-`.
pub(crate) fn utf7_encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut run: Vec<u16> = Vec::new();
    let flush = |run: &mut Vec<u16>, out: &mut String| {
        if run.is_empty() {
            return;
        }
        let bytes: Vec<u8> = run.iter().flat_map(|u| u.to_be_bytes()).collect();
        out.push('&');
        out.push_str(
            &base64::engine::general_purpose::STANDARD_NO_PAD
                .encode(bytes)
                .replace('/', ","),
        );
        out.push('-');
        run.clear();
    };
    for c in name.chars() {
        if (' '..='~').contains(&c) {
            flush(&mut run, &mut out);
            if c == '&' {
                out.push_str("&-");
            } else {
                out.push(c);
            }
        } else {
            let mut buf = [0u16; 2];
            run.extend_from_slice(c.encode_utf16(&mut buf));
        }
    }
    flush(&mut run, &mut out);
    out
}

/// A mailbox name in modified UTF-7, decoded; `None` when it is not valid modified UTF-7.
pub(crate) fn utf7_decode(name: &str) -> Option<String> {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(k) = rest.find('&') {
        out.push_str(&rest[..k]);
        let after = &rest[k + 1..];
        let end = after.find('-')?;
        let coded = &after[..end];
        if coded.is_empty() {
            out.push('&');
        } else {
            let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
                .decode(coded.replace(',', "/"))
                .ok()?;
            if bytes.len() % 2 != 0 {
                return None;
            }
            let units: Vec<u16> = bytes
                .chunks_exact(2)
                .map(|p| u16::from_be_bytes([p[0], p[1]]))
                .collect();
            out.push_str(&String::from_utf16(&units).ok()?);
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Some(out)
}

/// The folder an IMAP name (modified UTF-7, `/` between levels) names.
fn find_folder(st: &Inner, i: u32, name: &str) -> Option<Folder> {
    let decoded = utf7_decode(name);
    let name = decoded.as_deref().unwrap_or(name).trim_end_matches('/');
    folders(st, i)
        .into_iter()
        .find(|(_, n)| n.eq_ignore_ascii_case(name))
        .map(|(f, _)| f)
}

/// The folder an IMAP path names, with the levels that are missing created (the first level
/// is `INBOX` or a folder at the top of the information store).
fn make_path(st: &Inner, i: u32, path: &str) -> Result<Folder, FolderChange> {
    let mut parent = Folder::MsgFolderRoot;
    let mut prefix = String::new();
    for level in path.split('/') {
        if level.trim().is_empty() {
            return Err(FolderChange::InvalidName);
        }
        let full = if prefix.is_empty() {
            level.to_owned()
        } else {
            format!("{prefix}/{level}")
        };
        parent = match find_folder(st, i, &full) {
            Some(f) => f,
            None => {
                let level = utf7_decode(level).ok_or(FolderChange::InvalidName)?;
                st.create_folder(i, parent, &level)?
            }
        };
        prefix = full;
    }
    Ok(parent)
}

/// LIST wildcard match: `*` any run, `%` any run without `/`; case-insensitive.
pub(crate) fn wildcard(pattern: &[u8], name: &[u8]) -> bool {
    // prev[j]: pattern[..p] matches name[..j].
    let mut prev = vec![false; name.len() + 1];
    prev[0] = true;
    for &p in pattern {
        let mut cur = vec![false; name.len() + 1];
        match p {
            b'*' | b'%' => {
                cur[0] = prev[0];
                for j in 1..=name.len() {
                    let extend = p == b'*' || name.get(j - 1) != Some(&b'/');
                    cur[j] = prev[j] || (extend && cur[j - 1]);
                }
            }
            _ => {
                for j in 1..=name.len() {
                    cur[j] =
                        prev[j - 1] && name.get(j - 1).is_some_and(|c| c.eq_ignore_ascii_case(&p));
                }
            }
        }
        prev = cur;
    }
    prev.last().copied().unwrap_or(false)
}

fn is_read(st: &Inner, i: u32, f: Folder, pos: u32) -> bool {
    if let Some(read) = st.overlay.read_state(i, f, pos) {
        return read;
    }
    let Some(m) = st.mailbox(i) else { return true };
    let g = st.generated_count(m, f);
    if pos < g {
        generated_is_read(m, f, pos)
    } else {
        st.overlay.get(i, f, pos - g).is_none_or(|msg| msg.is_read)
    }
}

/// An IMAP string: quoted when it can be, else a literal; `NIL` for nothing.
fn nstring(s: Option<&str>) -> String {
    match s {
        None => "NIL".to_owned(),
        Some(s) if s.bytes().all(|b| (0x20..0x7f).contains(&b)) => {
            format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
        }
        Some(s) => format!("{{{}}}\r\n{s}", s.len()),
    }
}

/// The unfolded header fields of an RFC 5322 text, in order.
fn header_fields(mime: &str) -> Vec<(String, String)> {
    let head = mime.split("\r\n\r\n").next().unwrap_or_default();
    let mut out: Vec<(String, String)> = Vec::new();
    for l in head.split("\r\n") {
        if l.starts_with([' ', '\t']) {
            if let Some(last) = out.last_mut() {
                last.1.push(' ');
                last.1.push_str(l.trim());
            }
        } else if let Some((k, v)) = l.split_once(':') {
            out.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    out
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// An address list of the ENVELOPE: `((name NIL mailbox host) ...)`, or `NIL`.
fn addresses(v: Option<&str>) -> String {
    let Some(v) = v.filter(|v| !v.is_empty()) else {
        return "NIL".to_owned();
    };
    let parts: Vec<String> = v
        .split(">,")
        .filter_map(|a| {
            let a = a.trim().trim_end_matches('>');
            let (name, addr) = match a.rsplit_once('<') {
                Some((n, addr)) => (
                    Some(n.trim().trim_matches('"')).filter(|n| !n.is_empty()),
                    addr.trim(),
                ),
                None => (None, a),
            };
            let (local, host) = addr.split_once('@')?;
            Some(format!(
                "({} NIL {} {})",
                nstring(name),
                nstring(Some(local)),
                nstring(Some(host))
            ))
        })
        .collect();
    if parts.is_empty() {
        "NIL".to_owned()
    } else {
        format!("({})", parts.concat())
    }
}

/// `ENVELOPE` (RFC 3501 7.4.2) read from the message's own header.
fn envelope(mime: &str) -> String {
    let f = header_fields(mime);
    let from = addresses(field(&f, "From"));
    let sender = match field(&f, "Sender") {
        Some(s) => addresses(Some(s)),
        None => from.clone(),
    };
    let reply_to = match field(&f, "Reply-To") {
        Some(s) => addresses(Some(s)),
        None => from.clone(),
    };
    format!(
        "({} {} {from} {sender} {reply_to} {} {} {} {} {})",
        nstring(field(&f, "Date")),
        nstring(field(&f, "Subject")),
        addresses(field(&f, "To")),
        addresses(field(&f, "Cc")),
        addresses(field(&f, "Bcc")),
        nstring(field(&f, "In-Reply-To")),
        nstring(field(&f, "Message-ID")),
    )
}

/// A `Content-Type` (or `Content-Disposition`) value: the lower-case value before the first
/// `;`, and its parameters (names lower case, values unquoted; a `;` inside quotes is part of
/// the value).
fn mime_params(v: &str) -> (String, Vec<(String, String)>) {
    let mut pieces = Vec::new();
    let (mut cur, mut quoted) = (String::new(), false);
    for c in v.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            ';' if !quoted => pieces.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    pieces.push(cur);
    let mut parts = pieces.into_iter();
    let value = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
    let params = parts
        .filter_map(|p| {
            p.split_once('=').map(|(k, v)| {
                (
                    k.trim().to_ascii_lowercase(),
                    v.trim().trim_matches('"').to_owned(),
                )
            })
        })
        .collect();
    (value, params)
}

/// The `boundary` parameter of a `multipart/*` content type.
fn boundary(params: &[(String, String)]) -> Option<&str> {
    params
        .iter()
        .find(|(k, _)| k == "boundary")
        .map(|(_, v)| v.as_str())
}

/// How deep BODYSTRUCTURE follows nested multiparts and messages (deeper parts are described
/// as opaque `application/octet-stream`).
const MAX_NESTING: usize = 8;

/// The parts of a `multipart/*` body between its `boundary` delimiter lines, each with its
/// own header section (RFC 2046 5.1.1).
fn multipart_parts<'a>(body: &'a str, boundary: &str) -> Vec<&'a str> {
    let open = format!("--{boundary}");
    let mut parts = Vec::new();
    let mut start: Option<usize> = None;
    let mut at: usize = 0;
    for l in body.split_inclusive("\r\n") {
        let bare = l.trim_end_matches("\r\n");
        if bare == open || bare == format!("{open}--") {
            if let Some(s0) = start {
                // The CRLF before the delimiter belongs to the delimiter.
                let end = at.saturating_sub(2).max(s0);
                parts.push(&body[s0..end]);
            }
            if bare.ends_with("--") {
                return parts;
            }
            start = Some(at + l.len());
        }
        at += l.len();
    }
    parts
}

/// The header section and body of an entity (`""` header when it starts with its body).
fn split_entity(text: &str) -> (&str, &str) {
    if let Some(body) = text.strip_prefix("\r\n") {
        return ("", body);
    }
    match text.find("\r\n\r\n") {
        Some(k) => (&text[..k + 4], &text[k + 4..]),
        None => (text, ""),
    }
}

/// `BODYSTRUCTURE` (with extension data) or `BODY` of a message or body part (RFC 3501
/// 7.4.2): single parts, `message/rfc822` with the enclosed message's envelope and structure,
/// and `multipart/*` with each part in turn, followed at most [`MAX_NESTING`] deep.
fn body_structure(mime: &str, extended: bool) -> String {
    structure_at(mime, extended, 0)
}

fn structure_at(mime: &str, extended: bool, depth: usize) -> String {
    let f = header_fields(mime);
    let (_, body) = split_entity(mime);
    let (mut ctype, mut params) = mime_params(field(&f, "Content-Type").unwrap_or("text/plain"));
    let nested = ctype.starts_with("multipart/") || ctype == "message/rfc822";
    if nested && depth >= MAX_NESTING {
        (ctype, params) = ("application/octet-stream".to_owned(), Vec::new());
    }
    let (kind, sub) = ctype.split_once('/').unwrap_or(("text", "plain"));
    let up = |s: &str| nstring(Some(&s.to_ascii_uppercase()));
    if kind == "multipart" {
        let b = boundary(&params).unwrap_or_default();
        let parts: String = multipart_parts(body, b)
            .into_iter()
            .map(|p| structure_at(p, extended, depth + 1))
            .collect();
        // A multipart needs one part at least (RFC 3501 body-type-mpart): an empty one is
        // described by an empty text part.
        let parts = if parts.is_empty() {
            "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL NIL \"7BIT\" 0 0)".to_owned()
        } else {
            parts
        };
        return if extended {
            format!(
                "({parts} {} ({} {}) NIL NIL NIL)",
                up(sub),
                nstring(Some("BOUNDARY")),
                nstring(Some(b))
            )
        } else {
            format!("({parts} {})", up(sub))
        };
    }
    let attrs = |list: &[(String, String)]| -> String {
        if list.is_empty() {
            return "NIL".to_owned();
        }
        let inner: Vec<String> = list
            .iter()
            .map(|(k, v)| format!("{} {}", up(k), nstring(Some(v))))
            .collect();
        format!("({})", inner.join(" "))
    };
    let params = if params.is_empty() && kind == "text" {
        vec![("charset".to_owned(), "us-ascii".to_owned())]
    } else {
        params
    };
    let encoding = field(&f, "Content-Transfer-Encoding").unwrap_or("7bit");
    let mut basic = format!(
        "{} {} {} {} {} {} {}",
        up(kind),
        up(sub),
        attrs(&params),
        nstring(field(&f, "Content-ID")),
        nstring(field(&f, "Content-Description")),
        up(encoding),
        body.len()
    );
    // Lines of text: a last line without its CRLF (a part's body ends before the CRLF of
    // the next delimiter, RFC 2046 5.1.1) counts too.
    let lines =
        body.matches("\r\n").count() + usize::from(!body.is_empty() && !body.ends_with("\r\n"));
    if ctype == "message/rfc822" {
        // body-type-msg: the enclosed message's envelope and structure, then its lines.
        basic.push_str(&format!(
            " {} {} {lines}",
            envelope(body),
            structure_at(body, extended, depth + 1)
        ));
    } else if kind == "text" {
        basic.push_str(&format!(" {lines}"));
    }
    if !extended {
        return format!("({basic})");
    }
    let disposition = match field(&f, "Content-Disposition") {
        Some(d) => {
            let (value, params) = mime_params(d);
            format!("({} {})", up(&value), attrs(&params))
        }
        None => "NIL".to_owned(),
    };
    format!("({basic} NIL {disposition} NIL NIL)")
}

/// Body part `path` (1-based numbers, RFC 3501 6.4.5) of an entity: its whole text, header
/// section included. Part 1 of a single-part entity is the entity itself.
fn body_part<'a>(mime: &'a str, path: &[usize]) -> Option<&'a str> {
    let Some((first, rest)) = path.split_first() else {
        return Some(mime);
    };
    let f = header_fields(mime);
    let (ctype, params) = mime_params(field(&f, "Content-Type").unwrap_or("text/plain"));
    if !ctype.starts_with("multipart/") {
        return (*first == 1 && rest.is_empty()).then_some(mime);
    }
    let (_, body) = split_entity(mime);
    let part = *multipart_parts(body, boundary(&params)?).get(first.checked_sub(1)?)?;
    body_part(part, rest)
}

/// `INTERNALDATE` as IMAP writes it: `02-Nov-2026 10:00:00 +0000`.
fn internal_date(t: time::OffsetDateTime) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:02}-{}-{:04} {:02}:{:02}:{:02} +0000",
        t.day(),
        MONTHS[usize::from(u8::from(t.month())) - 1],
        t.year(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// A message-content FETCH item (RFC 3501 6.4.5): `BODY[section]<partial>`, its `.PEEK` form,
/// `RFC822`, `RFC822.HEADER`, `RFC822.TEXT`. Sections: empty, `HEADER`, `TEXT`,
/// `HEADER.FIELDS (...)`, `HEADER.FIELDS.NOT (...)`, and `1` (the only part of the emulator's
/// single-part messages). The non-`.PEEK` forms set `\Seen` (in `fetch`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct BodyItem {
    /// The name of the answer (`BODY[HEADER]`, `RFC822`).
    name: String,
    section: Section,
    partial: Option<(usize, usize)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Section {
    Full,
    Header,
    Text,
    Fields(Vec<String>, bool),
    /// A body part by number (`1`, `2.1`): its content, or with `mime` its header section.
    Part(Vec<usize>, bool),
}

impl BodyItem {
    fn parse(item: &str) -> Option<BodyItem> {
        match item {
            "RFC822" => {
                return Some(BodyItem {
                    name: "RFC822".into(),
                    section: Section::Full,
                    partial: None,
                });
            }
            "RFC822.HEADER" => {
                return Some(BodyItem {
                    name: "RFC822.HEADER".into(),
                    section: Section::Header,
                    partial: None,
                });
            }
            "RFC822.TEXT" => {
                return Some(BodyItem {
                    name: "RFC822.TEXT".into(),
                    section: Section::Text,
                    partial: None,
                });
            }
            _ => {}
        }
        let rest = item
            .strip_prefix("BODY.PEEK[")
            .or_else(|| item.strip_prefix("BODY["))?;
        let close = rest.find(']')?;
        let spec = &rest[..close];
        let tail = &rest[close + 1..];
        let section = match spec {
            "" => Section::Full,
            "HEADER" => Section::Header,
            "TEXT" => Section::Text,
            _ if spec.starts_with(|c: char| c.is_ascii_digit()) => {
                let (nums, mime) = match spec.strip_suffix(".MIME") {
                    Some(n) => (n, true),
                    None => (spec, false),
                };
                let path: Vec<usize> = nums
                    .split('.')
                    .map(|n| n.parse::<usize>().ok().filter(|n| *n > 0))
                    .collect::<Option<_>>()?;
                if path.len() > 8 {
                    return None;
                }
                Section::Part(path, mime)
            }
            _ => {
                let (not, list) = if let Some(l) = spec.strip_prefix("HEADER.FIELDS.NOT ") {
                    (true, l)
                } else {
                    (false, spec.strip_prefix("HEADER.FIELDS ")?)
                };
                let list = list.strip_prefix('(')?.strip_suffix(')')?;
                let names: Vec<String> = list.split_whitespace().map(str::to_owned).collect();
                if names.is_empty() {
                    return None;
                }
                Section::Fields(names, not)
            }
        };
        let partial = if tail.is_empty() {
            None
        } else {
            let inner = tail.strip_prefix('<')?.strip_suffix('>')?;
            let (a, b) = inner.split_once('.')?;
            Some((a.parse().ok()?, b.parse().ok()?))
        };
        Some(BodyItem {
            name: format!("BODY[{spec}]"),
            section,
            partial,
        })
    }

    /// The answer for a message whose RFC 5322 text is `mime`: the item name and a literal.
    fn answer(&self, mime: &str) -> String {
        let (head, body) = match mime.find("\r\n\r\n") {
            Some(k) => (&mime[..k + 4], &mime[k + 4..]),
            None => (mime, ""),
        };
        let data: String = match &self.section {
            Section::Full => mime.to_owned(),
            Section::Header => head.to_owned(),
            Section::Text => body.to_owned(),
            // A part that does not exist reads as empty (Exchange answers `NIL`-like empty
            // literals rather than an error).
            Section::Part(path, mime_header) => {
                let single = !header_fields(mime).iter().any(|(k, v)| {
                    k.eq_ignore_ascii_case("Content-Type")
                        && v.to_ascii_lowercase().starts_with("multipart/")
                });
                match body_part(mime, path) {
                    // Part 1 of a single-part message is its body; its MIME header is the
                    // message's header.
                    Some(_) if single && !*mime_header => body.to_owned(),
                    Some(p) => {
                        let (h, b) = split_entity(p);
                        if *mime_header {
                            h.to_owned()
                        } else {
                            b.to_owned()
                        }
                    }
                    None => String::new(),
                }
            }
            Section::Fields(names, not) => {
                let mut out = String::new();
                let mut keep = false;
                for l in head.split_inclusive("\r\n") {
                    if l == "\r\n" {
                        break;
                    }
                    if !l.starts_with([' ', '\t']) {
                        let field = l.split(':').next().unwrap_or_default();
                        keep = names.iter().any(|n| n.eq_ignore_ascii_case(field)) != *not;
                    }
                    if keep {
                        out.push_str(l);
                    }
                }
                out.push_str("\r\n");
                out
            }
        };
        let bytes = data.as_bytes();
        match self.partial {
            None => format!("{} {{{}}}\r\n{data}", self.name, bytes.len()),
            Some((origin, count)) => {
                let start = origin.min(bytes.len());
                let end = start.saturating_add(count).min(bytes.len());
                let slice = String::from_utf8_lossy(&bytes[start..end]);
                format!("{}<{origin}> {{{}}}\r\n{slice}", self.name, slice.len())
            }
        }
    }
}

/// Positions of the messages present in a folder, oldest first (sequence number = index + 1,
/// UID = position + 1).
fn present(st: &Inner, i: u32, f: Folder) -> Vec<u32> {
    let gone = st.overlay.deleted_in(i, f);
    (0..st.slots(i, f))
        .filter(|n| gone.binary_search(n).is_err())
        .collect()
}

fn uidvalidity(st: &Inner, i: u32, f: Folder) -> u32 {
    let address = st
        .mailbox(i)
        .map(|m| m.address.as_str())
        .unwrap_or_default();
    let h = crate::store::fnv(&[UIDVALIDITY_SALT, address.as_bytes(), &[f.code()]]);
    let v = (h as u32) & 0x7fff_ffff;
    v.max(1)
}

/// A sequence set (`1:3,5,7:*`) against `max` (the value of `*`) → sorted, unique numbers
/// within 1..=max, at most `MAX_FETCH` of them; `None` when malformed or too many.
pub(crate) fn sequence_set(set: &str, max: u32) -> Option<Vec<u32>> {
    let num = |s: &str| -> Option<u32> {
        if s == "*" {
            Some(max)
        } else {
            s.parse::<u32>().ok().filter(|n| *n > 0)
        }
    };
    let mut out = Vec::new();
    for part in set.split(',') {
        let (a, b) = match part.split_once(':') {
            Some((a, b)) => (num(a)?, num(b)?),
            None => {
                let n = num(part)?;
                (n, n)
            }
        };
        let (lo, hi) = (a.min(b).max(1), a.max(b).min(max));
        if lo <= hi {
            if out.len() + (hi - lo) as usize >= MAX_FETCH {
                return None;
            }
            out.extend(lo..=hi);
        }
    }
    out.sort_unstable();
    out.dedup();
    Some(out)
}

impl Session {
    pub(crate) fn new() -> Self {
        Session {
            deleted: std::collections::HashSet::new(),
            authed: None,
            selected: None,
            errors: 0,
            onprem: None,
        }
    }

    fn bad(&mut self, tag: &str, text: &str) -> Step {
        self.errors = self.errors.saturating_add(1);
        if self.errors > MAX_ERRORS {
            return Step::Close(format!("{tag} BAD {text}\r\n{BYE_CLOSED}\r\n"));
        }
        Step::Reply(line(&format!("{tag} BAD {text}")))
    }

    fn arg_error(&mut self, tag: &str) -> Step {
        self.bad(tag, "Command Argument Error. 11")
    }

    /// A line that is not a command at all (no tag, bad syntax, too long).
    pub(crate) fn garbage(&mut self, raw: &[u8]) -> Step {
        match tag_of(raw) {
            Some(tag) if raw.len() > tag.len() + 1 => self.arg_error(&tag),
            Some(tag) => self.bad(&tag, "Command Error. 12"),
            None => self.bad("*", "Command Error. 10"),
        }
    }

    /// One command, literals included (without the final CRLF).
    pub(crate) fn command(&mut self, st: &Inner, raw: &[u8]) -> Step {
        let Some(cmd) = parse_command(raw) else {
            return self.garbage(raw);
        };
        let tag = cmd.tag.as_str();
        let args = cmd.args.as_slice();
        match cmd.name.as_str() {
            "CAPABILITY" => Step::Reply(format!(
                "* CAPABILITY {}\r\n{tag} OK CAPABILITY completed.\r\n",
                if self.onprem.is_some() {
                    ONPREM_CAPABILITIES
                } else {
                    CAPABILITIES
                }
            )),
            "NOOP" | "CHECK" => {
                let mut out = self.changes(st);
                out.push_str(&line(&format!("{tag} OK {} completed.", cmd.name)));
                Step::Reply(out)
            }
            "LOGOUT" => Step::Close(format!("{BYE_LOGOUT}\r\n{tag} OK LOGOUT completed.\r\n")),
            "ID" => Step::Reply(format!(
                "* ID (\"name\" \"Microsoft.Exchange.Imap4.Imap4Server\" \"version\" \"15.20\")\r\n{tag} OK ID completed.\r\n"
            )),
            "STARTTLS" => self.bad(tag, "Command received in Invalid state."),
            "AUTHENTICATE" => self.authenticate(st, tag, args),
            "LOGIN" => self.login(st, tag, args),
            "SELECT" | "EXAMINE" | "STATUS" | "LIST" | "LSUB" | "NAMESPACE" | "CREATE"
            | "DELETE" | "RENAME" | "SUBSCRIBE" | "UNSUBSCRIBE" | "APPEND" | "IDLE" | "FETCH"
            | "SEARCH" | "UID" | "CLOSE" | "UNSELECT" | "EXPUNGE" | "STORE" | "COPY" | "MOVE" => {
                let Some(i) = self.authed else {
                    return self.bad(tag, "User is not authenticated.");
                };
                self.authenticated(st, i, &cmd)
            }
            _ => self.bad(tag, "Command Error. 12"),
        }
    }

    fn authenticated(&mut self, st: &Inner, i: u32, cmd: &Command) -> Step {
        let tag = cmd.tag.as_str();
        let args = cmd.args.as_slice();
        match cmd.name.as_str() {
            "SELECT" | "EXAMINE" => self.select(st, i, tag, &cmd.name, args),
            "STATUS" => self.status(st, i, tag, args),
            "LIST" | "LSUB" => self.list(st, i, tag, &cmd.name, args),
            "NAMESPACE" => Step::Reply(format!(
                "* NAMESPACE ((\"\" \"/\")) NIL NIL\r\n{tag} OK NAMESPACE completed.\r\n"
            )),
            "IDLE" => Step::Idle {
                tag: tag.to_owned(),
            },
            "CLOSE" | "UNSELECT" => {
                // CLOSE expunges silently what is marked \Deleted (not in a read-only folder).
                if cmd.name == "CLOSE" && self.selected.is_some_and(|s| !s.read_only) {
                    let _ = self.expunge(st, i, None);
                }
                if self.selected.take().is_none() {
                    return self.bad(tag, "Command received in Invalid state.");
                }
                self.deleted.clear();
                Step::Reply(line(&format!("{tag} OK {} completed.", cmd.name)))
            }
            "EXPUNGE" => match self.selected {
                None => self.bad(tag, "Command received in Invalid state."),
                Some(s) if s.read_only => Step::Reply(line(&format!(
                    "{tag} NO Command received in Invalid state."
                ))),
                Some(_) => {
                    let mut out = self.expunge(st, i, None);
                    out.push_str(&line(&format!("{tag} OK EXPUNGE completed.")));
                    Step::Reply(out)
                }
            },
            "FETCH" => self.fetch(st, i, tag, args, false),
            "STORE" => self.store(st, i, tag, args, false),
            "APPEND" => self.append(st, i, tag, args),
            "COPY" => self.copy_or_move(st, i, tag, args, false, false),
            "MOVE" => self.copy_or_move(st, i, tag, args, false, true),
            "SEARCH" => self.search(st, i, tag, args, false),
            "UID" => {
                let sub = args
                    .first()
                    .and_then(Tok::text)
                    .map(|s| s.to_ascii_uppercase());
                let rest = args.get(1..).unwrap_or_default();
                match sub.as_deref() {
                    Some("FETCH") => self.fetch(st, i, tag, rest, true),
                    Some("STORE") => self.store(st, i, tag, rest, true),
                    Some("EXPUNGE") => {
                        let Some(sel) = self.selected else {
                            return self.bad(tag, "Command received in Invalid state.");
                        };
                        let max = present(st, i, sel.folder).last().map_or(1, |p| p + 1);
                        let uids = match rest {
                            [Tok::Atom(set)] => sequence_set(set, max),
                            _ => None,
                        };
                        let Some(uids) = uids else {
                            return self.arg_error(tag);
                        };
                        if sel.read_only {
                            return Step::Reply(line(&format!(
                                "{tag} NO Command received in Invalid state."
                            )));
                        }
                        let mut out = self.expunge(st, i, Some(&uids));
                        out.push_str(&line(&format!("{tag} OK UID EXPUNGE completed.")));
                        Step::Reply(out)
                    }
                    Some("COPY") => self.copy_or_move(st, i, tag, rest, true, false),
                    Some("MOVE") => self.copy_or_move(st, i, tag, rest, true, true),
                    Some("SEARCH") => self.search(st, i, tag, rest, true),
                    _ => self.arg_error(tag),
                }
            }
            "CREATE" | "DELETE" | "RENAME" | "SUBSCRIBE" | "UNSUBSCRIBE" => {
                self.folder_command(st, i, tag, &cmd.name, args)
            }
            _ => self.bad(tag, "Command Error. 12"),
        }
    }

    /// `* n EXISTS` when the selected folder grew or shrank since the last report.
    fn changes(&mut self, st: &Inner) -> String {
        let (Some(i), Some(sel)) = (self.authed, self.selected.as_mut()) else {
            return String::new();
        };
        let now = st.count(i, sel.folder);
        // A folder deleted by another session reports nothing more (no `* 0 EXISTS` without
        // the EXPUNGEs RFC 3501 asks for).
        if now == sel.exists || !st.folder_exists(i, sel.folder) {
            return String::new();
        }
        sel.exists = now;
        line(&format!("* {now} EXISTS"))
    }

    fn authenticate(&mut self, st: &Inner, tag: &str, args: &[Tok]) -> Step {
        if self.authed.is_some() {
            return self.bad(tag, "Command received in Invalid state.");
        }
        let onprem = self.onprem.is_some();
        let mech = match args.first().and_then(Tok::text) {
            Some(m) if m.eq_ignore_ascii_case("XOAUTH2") && !onprem => Mech::Xoauth2,
            Some(m) if m.eq_ignore_ascii_case("NTLM") && onprem => {
                Mech::Ntlm(crate::line_auth::NtlmStep::Start)
            }
            Some(m) if m.eq_ignore_ascii_case("PLAIN") => Mech::Plain,
            Some(_) => return self.refuse(st, tag, "AUTHENTICATE"),
            None => return self.arg_error(tag),
        };
        match args.get(1..) {
            Some([]) | None => Step::Challenge {
                tag: tag.to_owned(),
                mech,
                text: String::new(),
            },
            Some([ir]) => match ir.astring() {
                Some(ir) => self.sasl(st, tag, mech, ir),
                None => self.arg_error(tag),
            },
            Some(_) => self.arg_error(tag),
        }
    }

    fn refuse(&mut self, st: &Inner, tag: &str, what: &str) -> Step {
        Counters::bump(&st.counters.auth_failures);
        self.errors = self.errors.saturating_add(1);
        Step::Reply(line(&format!("{tag} NO {what} failed.")))
    }

    /// The client's SASL response (after `+ ` or as the initial response). `=` is empty.
    pub(crate) fn sasl(&mut self, st: &Inner, tag: &str, mech: Mech, raw: &[u8]) -> Step {
        let text = std::str::from_utf8(raw).unwrap_or("\u{0}").trim();
        if text == "*" {
            return self.bad(tag, "AUTHENTICATE cancelled.");
        }
        let decoded = if text == "=" || text.is_empty() {
            Some(Vec::new())
        } else {
            B64.decode(text).ok()
        };
        let ok = match (mech, decoded) {
            (_, None) => false,
            (Mech::Ntlm(step), Some(d)) => {
                let server = self.onprem.unwrap_or(usize::MAX);
                match crate::line_auth::ntlm_step(st, server, step, &d) {
                    crate::line_auth::NtlmOutcome::Challenge(next, text) => {
                        return Step::Challenge {
                            tag: tag.to_owned(),
                            mech: Mech::Ntlm(next),
                            text,
                        };
                    }
                    crate::line_auth::NtlmOutcome::Done(Some(i)) => self.onprem_sign_in(st, i),
                    crate::line_auth::NtlmOutcome::Done(None) => false,
                }
            }
            (Mech::Xoauth2, Some(d)) => {
                parse_xoauth2(&d).is_some_and(|(user, token)| self.xoauth2(st, &user, &token))
            }
            (Mech::Plain, Some(d)) => {
                parse_plain(&d).is_some_and(|(user, pw)| self.password(st, &user, &pw))
            }
        };
        if ok {
            tracing::debug!("imap: authenticated");
            Step::Reply(line(&format!("{tag} OK AUTHENTICATE completed.")))
        } else {
            self.refuse(st, tag, "AUTHENTICATE")
        }
    }

    fn login(&mut self, st: &Inner, tag: &str, args: &[Tok]) -> Step {
        if self.authed.is_some() {
            return self.bad(tag, "Command received in Invalid state.");
        }
        let [user, password] = args else {
            return self.arg_error(tag);
        };
        let (Some(user), Some(password)) = (user.text(), password.text()) else {
            return self.refuse(st, tag, "LOGIN");
        };
        if self.password(st, &user, &SecretString::from(password)) {
            tracing::debug!("imap: logged in");
            Step::Reply(line(&format!("{tag} OK LOGIN completed.")))
        } else {
            self.refuse(st, tag, "LOGIN")
        }
    }

    /// Signs in to mailbox `i` of an on-premises server when IMAP is allowed for it.
    fn onprem_sign_in(&mut self, st: &Inner, i: u32) -> bool {
        let allowed = st
            .mailbox(i)
            .is_some_and(|m| Self::imap_allowed(st, i, &m.tenant_id));
        if allowed {
            self.authed = Some(i);
        }
        allowed
    }

    fn imap_allowed(st: &Inner, i: u32, tenant_id: &str) -> bool {
        st.org(&tenant_id.to_ascii_lowercase()).imap_enabled && !st.imap_disabled.contains(&i)
    }

    /// XOAUTH2: the token, the mailbox, the switches, then the right to use IMAP.
    fn xoauth2(&mut self, st: &Inner, user: &str, token: &SecretString) -> bool {
        let Some((claims, i, m)) = xoauth2_mailbox(st, user, token) else {
            return false;
        };
        if !Self::imap_allowed(st, i, &m.tenant_id) {
            return false;
        }
        let allowed = protocol_right(
            st,
            &claims,
            i,
            m,
            "IMAP.AccessAsUser.All",
            "IMAP.AccessAsApp",
        );
        if allowed {
            self.authed = Some(i);
        }
        allowed
    }

    /// LOGIN / AUTHENTICATE PLAIN: every refusal looks the same.
    fn password(&mut self, st: &Inner, user: &str, password: &SecretString) -> bool {
        if let Some(server) = self.onprem {
            return crate::line_auth::password(st, server, user, password)
                .is_some_and(|i| self.onprem_sign_in(st, i));
        }
        let upn = user.trim().to_ascii_lowercase();
        let domain = upn.rsplit('@').next().unwrap_or_default();
        let Some(tenant) = st.directory.tenant(domain) else {
            return false;
        };
        if !tenant.basic_auth {
            return false;
        }
        if st.directory.check_password(&upn, password.expose_secret()) != PasswordCheck::Ok {
            return false;
        }
        let Some((i, m)) = st.find(&upn).and_then(|i| st.mailbox(i).map(|m| (i, m))) else {
            return false;
        };
        if !m.tenant_id.eq_ignore_ascii_case(&tenant.id)
            || !m.provisioned
            || m.server.is_some()
            || !Self::imap_allowed(st, i, &m.tenant_id)
        {
            return false;
        }
        self.authed = Some(i);
        true
    }

    /// `CREATE`, `DELETE`, `RENAME`, `SUBSCRIBE`, `UNSUBSCRIBE`: changes to the one folder
    /// tree EWS and Graph see. `CREATE a/b/c` makes the levels that are missing, as Exchange
    /// does; an existing name is `NO Mailbox already exists.` (Exchange Online's text, quoted in
    /// OfflineIMAP issue 645); well-known folders are neither renamed nor deleted.
    fn folder_command(&mut self, st: &Inner, i: u32, tag: &str, name: &str, args: &[Tok]) -> Step {
        let texts: Vec<String> = args.iter().filter_map(Tok::text).collect();
        let want = if name == "RENAME" { 2 } else { 1 };
        if texts.len() != want || args.len() != want {
            return self.arg_error(tag);
        }
        let reply = |text: &str| Step::Reply(line(&format!("{tag} {text}")));
        let done = || reply(&format!("OK {name} completed."));
        let not_found = || reply("NO Folder not found.");
        let failed = || reply(&format!("NO {name} failed."));
        let exists = || reply("NO Mailbox already exists.");
        let outcome = |r: Result<(), FolderChange>| match r {
            Ok(()) => done(),
            Err(FolderChange::Exists) => exists(),
            Err(FolderChange::NotFound | FolderChange::ParentNotFound) => not_found(),
            Err(_) => failed(),
        };
        match name {
            "CREATE" => {
                let path = texts[0].trim_end_matches('/');
                if find_folder(st, i, path).is_some() {
                    return exists();
                }
                outcome(make_path(st, i, path).map(|_| ()))
            }
            "DELETE" => match find_folder(st, i, &texts[0]) {
                None => not_found(),
                Some(f) => {
                    let r = st.delete_folder(i, f);
                    // The selected folder, or one above it, is gone: nothing stays selected.
                    if r.is_ok()
                        && self
                            .selected
                            .is_some_and(|s| !st.folder_exists(i, s.folder))
                    {
                        self.selected = None;
                        self.deleted.clear();
                    }
                    outcome(r)
                }
            },
            "RENAME" => {
                let Some(f) = find_folder(st, i, &texts[0]) else {
                    return not_found();
                };
                let target = texts[1].trim_end_matches('/');
                // A change of case only renames the folder to itself.
                if find_folder(st, i, target).is_some_and(|g| g != f) {
                    return exists();
                }
                let (parent, leaf) = match target.rsplit_once('/') {
                    Some((p, l)) => match make_path(st, i, p) {
                        Ok(parent) => (parent, l),
                        Err(e) => return outcome(Err(e)),
                    },
                    None => (Folder::MsgFolderRoot, target),
                };
                let Some(leaf) = utf7_decode(leaf) else {
                    return outcome(Err(FolderChange::InvalidName));
                };
                outcome(st.rename_folder(i, f, parent, &leaf))
            }
            _ => match find_folder(st, i, &texts[0]) {
                None => not_found(),
                Some(f) => {
                    st.set_subscribed(i, f, name == "SUBSCRIBE");
                    done()
                }
            },
        }
    }

    fn folder_arg(st: &Inner, i: u32, t: Option<&Tok>) -> Result<Option<Folder>, ()> {
        let name = t.and_then(Tok::text).ok_or(())?;
        Ok(find_folder(st, i, &name))
    }

    fn select(&mut self, st: &Inner, i: u32, tag: &str, name: &str, args: &[Tok]) -> Step {
        // A failed SELECT leaves no folder selected (RFC 9051 6.3.2).
        self.selected = None;
        if args.len() != 1 {
            return self.arg_error(tag);
        }
        let Ok(folder) = Self::folder_arg(st, i, args.first()) else {
            return self.arg_error(tag);
        };
        let Some(folder) = folder else {
            return Step::Reply(line(&format!("{tag} NO Folder not found.")));
        };
        let read_only = name == "EXAMINE";
        let msgs = present(st, i, folder);
        let exists = u32::try_from(msgs.len()).unwrap_or(u32::MAX);
        let mut out = String::new();
        out.push_str(&line(&format!("* {exists} EXISTS")));
        out.push_str(&line("* 0 RECENT"));
        out.push_str(&line(&format!("* FLAGS {FLAGS}")));
        let permanent = if read_only { "()" } else { FLAGS };
        out.push_str(&line(&format!(
            "* OK [PERMANENTFLAGS {permanent}] Permanent flags"
        )));
        if let Some(k) = msgs.iter().position(|p| !is_read(st, i, folder, *p)) {
            out.push_str(&line(&format!(
                "* OK [UNSEEN {}] Is the first unseen message",
                k + 1
            )));
        }
        out.push_str(&line(&format!(
            "* OK [UIDVALIDITY {}] UIDVALIDITY value",
            uidvalidity(st, i, folder)
        )));
        out.push_str(&line(&format!(
            "* OK [UIDNEXT {}] The next unique identifier value",
            st.slots(i, folder).saturating_add(1)
        )));
        let mode = if read_only { "READ-ONLY" } else { "READ-WRITE" };
        out.push_str(&line(&format!("{tag} OK [{mode}] {name} completed.")));
        self.selected = Some(Selected {
            folder,
            read_only,
            exists,
        });
        Step::Reply(out)
    }

    fn status(&mut self, st: &Inner, i: u32, tag: &str, args: &[Tok]) -> Step {
        let [mbox, Tok::List(items)] = args else {
            return self.arg_error(tag);
        };
        let Ok(folder) = Self::folder_arg(st, i, Some(mbox)) else {
            return self.arg_error(tag);
        };
        let Some(folder) = folder else {
            return Step::Reply(line(&format!("{tag} NO Folder not found.")));
        };
        let mut parts = Vec::new();
        for it in items {
            let Some(name) = it.text().map(|s| s.to_ascii_uppercase()) else {
                return self.arg_error(tag);
            };
            let v = match name.as_str() {
                "MESSAGES" => st.count(i, folder),
                "UNSEEN" => st.unread(i, folder),
                "RECENT" => 0,
                "UIDNEXT" => st.slots(i, folder).saturating_add(1),
                "UIDVALIDITY" => uidvalidity(st, i, folder),
                _ => return self.arg_error(tag),
            };
            parts.push(format!("{name} {v}"));
        }
        Step::Reply(format!(
            "* STATUS {} ({})\r\n{tag} OK STATUS completed.\r\n",
            quote(&utf7_encode(&imap_name(st, i, folder))),
            parts.join(" ")
        ))
    }

    fn list(&mut self, st: &Inner, i: u32, tag: &str, name: &str, args: &[Tok]) -> Step {
        let [reference, pattern] = args else {
            return self.arg_error(tag);
        };
        let (Some(reference), Some(pattern)) = (reference.astring(), pattern.astring()) else {
            return self.arg_error(tag);
        };
        let mut out = String::new();
        if pattern.is_empty() {
            out.push_str(&line(&format!("* {name} (\\Noselect) \"/\" \"\"")));
        } else {
            let mut full = reference.to_vec();
            full.extend_from_slice(pattern);
            let all = folders(st, i);
            for (f, n) in &all {
                let f = *f;
                let wire = utf7_encode(n);
                if !wildcard(&full, wire.as_bytes()) || (name == "LSUB" && !st.subscribed(i, f)) {
                    continue;
                }
                let below = format!("{}/", n.to_ascii_lowercase());
                let has_children = all
                    .iter()
                    .any(|(_, c)| c.to_ascii_lowercase().starts_with(&below));
                let mut attrs = vec![if has_children {
                    r"\HasChildren"
                } else {
                    r"\HasNoChildren"
                }];
                attrs.extend(special_use(f));
                out.push_str(&line(&format!(
                    "* {name} ({}) \"/\" {}",
                    attrs.join(" "),
                    quote(&wire)
                )));
            }
        }
        out.push_str(&line(&format!("{tag} OK {name} completed.")));
        Step::Reply(out)
    }

    /// The messages a sequence set (or a UID set) names: (index, position).
    fn chosen(
        &self,
        st: &Inner,
        i: u32,
        folder: Folder,
        set: &str,
        uid: bool,
    ) -> Option<Vec<(usize, u32)>> {
        let msgs = present(st, i, folder);
        if uid {
            let max = msgs.last().map_or(0, |p| p + 1);
            let uids = sequence_set(set, max.max(1))?;
            Some(
                msgs.iter()
                    .enumerate()
                    .filter(|(_, p)| uids.binary_search(&(**p + 1)).is_ok())
                    .map(|(k, p)| (k, *p))
                    .collect(),
            )
        } else {
            let max = u32::try_from(msgs.len()).unwrap_or(u32::MAX);
            let seqs = sequence_set(set, max)?;
            Some(
                seqs.iter()
                    .filter_map(|s| {
                        let k = (*s as usize).checked_sub(1)?;
                        msgs.get(k).map(|p| (k, *p))
                    })
                    .collect(),
            )
        }
    }

    /// `APPEND folder [(flags)] ["date-time"] literal`: the message is read (headers and body,
    /// as SMTP submission reads it) and stored in the folder, where Graph and EWS see it too;
    /// `\Seen` among the flags marks it read. Answers `[APPENDUID uidvalidity uid]` (UIDPLUS).
    fn append(&mut self, st: &Inner, i: u32, tag: &str, args: &[Tok]) -> Step {
        let (Some(first), Some(Tok::Str(data))) = (args.first(), args.last()) else {
            return self.arg_error(tag);
        };
        if args.len() < 2 {
            return self.arg_error(tag);
        }
        let Ok(folder) = Self::folder_arg(st, i, Some(first)) else {
            return self.arg_error(tag);
        };
        let Some(folder) = folder else {
            return Step::Reply(line(&format!("{tag} NO [TRYCREATE] Folder not found.")));
        };
        let mut seen = false;
        for a in &args[1..args.len() - 1] {
            match a {
                Tok::List(flags) => {
                    for f in flags.iter().filter_map(Tok::text) {
                        if f.eq_ignore_ascii_case("\\Seen") {
                            seen = true;
                        } else if !f.starts_with('\\') {
                            return self.arg_error(tag);
                        }
                    }
                }
                // The internal date: the time of the APPEND is used.
                Tok::Str(_) => {}
                Tok::Atom(_) => return self.arg_error(tag),
            }
        }
        let Some(m) = st.mailbox(i) else {
            return self.arg_error(tag);
        };
        let message = crate::smtp::parse_message(data).into_message(
            i,
            m,
            folder,
            seen,
            folder == Folder::Drafts,
        );
        let Some(stored) = st.store(message) else {
            return Step::Reply(line(&format!("{tag} NO APPEND failed.")));
        };
        Step::Reply(line(&format!(
            "{tag} OK [APPENDUID {} {}] APPEND completed.",
            uidvalidity(st, i, folder),
            stored.n + 1
        )))
    }

    /// `COPY`/`MOVE` and their `UID` forms (UIDPLUS, MOVE): each message is stored again in the
    /// destination (a new item, as Exchange gives copies and moved items new ids); `MOVE` then
    /// removes the originals and reports `* n EXPUNGE` for each, highest first.
    fn copy_or_move(
        &mut self,
        st: &Inner,
        i: u32,
        tag: &str,
        args: &[Tok],
        uid: bool,
        moving: bool,
    ) -> Step {
        let name = match (uid, moving) {
            (false, false) => "COPY",
            (false, true) => "MOVE",
            (true, false) => "UID COPY",
            (true, true) => "UID MOVE",
        };
        let Some(sel) = self.selected else {
            return self.bad(tag, "Command received in Invalid state.");
        };
        let [Tok::Atom(set), dest] = args else {
            return self.arg_error(tag);
        };
        if moving && sel.read_only {
            return Step::Reply(line(&format!(
                "{tag} NO Command received in Invalid state."
            )));
        }
        let Ok(to) = Self::folder_arg(st, i, Some(dest)) else {
            return self.arg_error(tag);
        };
        let Some(to) = to else {
            return Step::Reply(line(&format!("{tag} NO [TRYCREATE] Folder not found.")));
        };
        let Some(chosen) = self.chosen(st, i, sel.folder, set, uid) else {
            return self.arg_error(tag);
        };
        let mut from_uids = Vec::new();
        let mut to_uids = Vec::new();
        for (_, pos) in &chosen {
            let Some(mut msg) = st.message(i, sel.folder, *pos) else {
                continue;
            };
            msg.folder = to;
            if let Some(stored) = st.store(msg) {
                from_uids.push((pos + 1).to_string());
                to_uids.push((stored.n + 1).to_string());
            }
        }
        let mut out = String::new();
        let code = if from_uids.is_empty() {
            String::new()
        } else {
            format!(
                "[COPYUID {} {} {}] ",
                uidvalidity(st, i, to),
                from_uids.join(","),
                to_uids.join(",")
            )
        };
        if moving {
            if !code.is_empty() {
                out.push_str(&line(&format!("* OK {}", code.trim_end())));
            }
            // Sequence numbers shift down as messages go: report from the highest.
            let mut gone: Vec<(usize, u32)> = chosen;
            gone.sort_by_key(|g| std::cmp::Reverse(g.0));
            for (k, pos) in gone {
                if st.delete(i, sel.folder, pos).is_some() {
                    out.push_str(&line(&format!("* {} EXPUNGE", k + 1)));
                }
            }
            if let Some(s) = self.selected.as_mut() {
                s.exists = st.count(i, s.folder);
            }
            out.push_str(&line(&format!("{tag} OK {name} completed.")));
        } else {
            out.push_str(&line(&format!("{tag} OK {code}{name} completed.")));
        }
        Step::Reply(out)
    }

    /// `STORE`/`UID STORE` of `\Seen` and `\Deleted` (`FLAGS`, `+FLAGS`, `-FLAGS`, `.SILENT`):
    /// `\Seen` is the read state every view shares (Graph `isRead`, EWS `IsRead`); `\Deleted`
    /// marks a message for `EXPUNGE` (or `CLOSE`). Other flags are refused, as they are not kept.
    fn store(&mut self, st: &Inner, i: u32, tag: &str, args: &[Tok], uid: bool) -> Step {
        let Some(sel) = self.selected else {
            return self.bad(tag, "Command received in Invalid state.");
        };
        let [Tok::Atom(set), Tok::Atom(what), flags] = args else {
            return self.arg_error(tag);
        };
        let what = what.to_ascii_uppercase();
        let (mode, silent) = match what.strip_suffix(".SILENT") {
            Some(m) => (m.to_owned(), true),
            None => (what.clone(), false),
        };
        let flags: Vec<String> = match flags {
            Tok::List(l) => l
                .iter()
                .filter_map(Tok::text)
                .map(|s| s.to_ascii_uppercase())
                .collect(),
            Tok::Atom(a) => vec![a.to_ascii_uppercase()],
            Tok::Str(_) => return self.arg_error(tag),
        };
        if !matches!(mode.as_str(), "FLAGS" | "+FLAGS" | "-FLAGS")
            || flags.iter().any(|f| f != "\\SEEN" && f != "\\DELETED")
        {
            return self.arg_error(tag);
        }
        if sel.read_only {
            return Step::Reply(line(&format!(
                "{tag} NO Command received in Invalid state."
            )));
        }
        let has = |f: &str| flags.iter().any(|x| x == f);
        let Some(chosen) = self.chosen(st, i, sel.folder, set, uid) else {
            return self.arg_error(tag);
        };
        let mut out = String::new();
        for (k, pos) in chosen {
            match mode.as_str() {
                "+FLAGS" | "-FLAGS" => {
                    let on = mode == "+FLAGS";
                    if has("\\SEEN") {
                        st.overlay.set_read(i, sel.folder, pos, on);
                    }
                    if has("\\DELETED") {
                        self.set_deleted(sel.folder, pos, on);
                    }
                }
                _ => {
                    st.overlay.set_read(i, sel.folder, pos, has("\\SEEN"));
                    self.set_deleted(sel.folder, pos, has("\\DELETED"));
                }
            }
            if !silent {
                let uid_part = if uid {
                    format!("UID {} ", pos + 1)
                } else {
                    String::new()
                };
                out.push_str(&line(&format!(
                    "* {} FETCH ({uid_part}FLAGS {})",
                    k + 1,
                    self.flags_of(st, i, sel.folder, pos)
                )));
            }
        }
        let name = if uid { "UID STORE" } else { "STORE" };
        out.push_str(&line(&format!("{tag} OK {name} completed.")));
        Step::Reply(out)
    }

    fn set_deleted(&mut self, folder: Folder, pos: u32, on: bool) {
        if on {
            self.deleted.insert((folder, pos));
        } else {
            self.deleted.remove(&(folder, pos));
        }
    }

    /// A message's flags as FETCH writes them: `(\Seen \Deleted)`, `()`.
    fn flags_of(&self, st: &Inner, i: u32, folder: Folder, pos: u32) -> String {
        let mut f = Vec::new();
        if is_read(st, i, folder, pos) {
            f.push(r"\Seen");
        }
        if self.deleted.contains(&(folder, pos)) {
            f.push(r"\Deleted");
        }
        format!("({})", f.join(" "))
    }

    /// `EXPUNGE`, `UID EXPUNGE <set>` and the silent expunge of `CLOSE`: the messages marked
    /// `\Deleted` in the selected folder are removed (Graph and EWS no longer list them), and
    /// each is reported as `* n EXPUNGE`, highest first.
    fn expunge(&mut self, st: &Inner, i: u32, only: Option<&[u32]>) -> String {
        let Some(sel) = self.selected else {
            return String::new();
        };
        let msgs = present(st, i, sel.folder);
        let mut gone: Vec<(usize, u32)> = msgs
            .iter()
            .enumerate()
            .filter(|(_, p)| self.deleted.contains(&(sel.folder, **p)))
            .filter(|(_, p)| only.is_none_or(|u| u.binary_search(&(**p + 1)).is_ok()))
            .map(|(k, p)| (k, *p))
            .collect();
        gone.sort_by_key(|g| std::cmp::Reverse(g.0));
        let mut out = String::new();
        for (k, pos) in gone {
            self.deleted.remove(&(sel.folder, pos));
            if st.delete(i, sel.folder, pos).is_some() {
                out.push_str(&line(&format!("* {} EXPUNGE", k + 1)));
            }
        }
        if let Some(s) = self.selected.as_mut() {
            s.exists = st.count(i, s.folder);
        }
        out
    }

    fn fetch(&mut self, st: &Inner, i: u32, tag: &str, args: &[Tok], uid: bool) -> Step {
        let Some(sel) = self.selected else {
            return self.bad(tag, "Command received in Invalid state.");
        };
        let [Tok::Atom(set), items] = args else {
            return self.arg_error(tag);
        };
        let items: Vec<String> = match items {
            Tok::Atom(a) => vec![a.to_ascii_uppercase()],
            Tok::List(l) => l
                .iter()
                .filter_map(Tok::text)
                .map(|s| s.to_ascii_uppercase())
                .collect(),
            Tok::Str(_) => return self.arg_error(tag),
        };
        let mut items: Vec<String> = items
            .into_iter()
            .flat_map(|s| match s.as_str() {
                "FAST" | "ALL" => vec!["FLAGS".to_owned(), "RFC822.SIZE".to_owned()],
                _ => vec![s],
            })
            .collect();
        if items.is_empty()
            || items.iter().any(|s| {
                !matches!(
                    s.as_str(),
                    "FLAGS"
                        | "UID"
                        | "RFC822.SIZE"
                        | "INTERNALDATE"
                        | "ENVELOPE"
                        | "BODYSTRUCTURE"
                        | "BODY"
                ) && BodyItem::parse(s).is_none()
            })
        {
            return self.arg_error(tag);
        }
        if uid && !items.iter().any(|s| s == "UID") {
            items.insert(0, "UID".to_owned());
        }
        if !uid && present(st, i, sel.folder).is_empty() {
            match sequence_set(set, 0) {
                None => return self.arg_error(tag),
                Some(seqs) if seqs.is_empty() && !set.contains('*') => {
                    return self.bad(tag, "The specified message set is invalid.");
                }
                Some(_) => {}
            }
        }
        let Some(chosen) = self.chosen(st, i, sel.folder, set, uid) else {
            return self.arg_error(tag);
        };
        // Fetching a body without .PEEK sets \Seen (RFC 3501 6.4.5), and the new flags are
        // reported when they were not asked for.
        let sets_seen = !sel.read_only
            && items
                .iter()
                .any(|s| s.starts_with("BODY[") || s == "RFC822" || s == "RFC822.TEXT");
        let flags_asked = items.iter().any(|s| s == "FLAGS");
        let mut out = String::new();
        for (k, pos) in chosen {
            let newly_seen = sets_seen && !is_read(st, i, sel.folder, pos);
            if newly_seen {
                st.overlay.set_read(i, sel.folder, pos, true);
            }
            let message = st.message(i, sel.folder, pos);
            let parts: Vec<String> = items
                .iter()
                .map(|it| match it.as_str() {
                    "UID" => format!("UID {}", pos + 1),
                    "RFC822.SIZE" => {
                        format!("RFC822.SIZE {}", message.as_ref().map_or(0, |m| m.size()))
                    }
                    "INTERNALDATE" => format!(
                        "INTERNALDATE \"{}\"",
                        message
                            .as_ref()
                            .map_or_else(String::new, |m| internal_date(m.received))
                    ),
                    "ENVELOPE" => format!(
                        "ENVELOPE {}",
                        envelope(&message.as_ref().map(|m| m.mime()).unwrap_or_default())
                    ),
                    "BODYSTRUCTURE" | "BODY" => format!(
                        "{it} {}",
                        body_structure(
                            &message.as_ref().map(|m| m.mime()).unwrap_or_default(),
                            it == "BODYSTRUCTURE"
                        )
                    ),
                    other if other != "FLAGS" => {
                        let mime = message.as_ref().map(|m| m.mime()).unwrap_or_default();
                        BodyItem::parse(other).map_or_else(String::new, |b| b.answer(&mime))
                    }
                    _ => format!("FLAGS {}", self.flags_of(st, i, sel.folder, pos)),
                })
                .collect();
            let mut parts = parts;
            if newly_seen && !flags_asked {
                parts.push(format!("FLAGS {}", self.flags_of(st, i, sel.folder, pos)));
            }
            out.push_str(&line(&format!("* {} FETCH ({})", k + 1, parts.join(" "))));
        }
        let name = if uid { "UID FETCH" } else { "FETCH" };
        out.push_str(&line(&format!("{tag} OK {name} completed.")));
        Step::Reply(out)
    }

    fn search(&mut self, st: &Inner, i: u32, tag: &str, args: &[Tok], uid: bool) -> Step {
        let Some(sel) = self.selected else {
            return self.bad(tag, "Command received in Invalid state.");
        };
        let key = match crate::imap_search::parse(args) {
            Ok(k) => k,
            Err(crate::imap_search::SearchError::Charset) => {
                return Step::Reply(line(&format!(
                    "{tag} NO [BADCHARSET (US-ASCII UTF-8)] The specified charset is not supported."
                )));
            }
            Err(crate::imap_search::SearchError::Syntax) => return self.arg_error(tag),
        };
        let msgs = present(st, i, sel.folder);
        let max_seq = msgs.len() as u32;
        let max_uid = msgs.last().map_or(0, |p| p + 1);
        let hits: Vec<String> = msgs
            .iter()
            .enumerate()
            .filter(|(k, p)| {
                let pos = **p;
                let message = || st.message(i, sel.folder, pos);
                crate::imap_search::matches(
                    &key,
                    &crate::imap_search::Candidate {
                        seq: *k as u32 + 1,
                        uid: pos + 1,
                        max_seq,
                        max_uid,
                        seen: is_read(st, i, sel.folder, pos),
                        deleted: self.deleted.contains(&(sel.folder, pos)),
                        message: &message,
                    },
                )
            })
            .map(|(k, p)| if uid { p + 1 } else { k as u32 + 1 })
            .take(MAX_FETCH)
            .map(|n| n.to_string())
            .collect();
        let mut out = String::from("* SEARCH");
        for h in hits {
            out.push(' ');
            out.push_str(&h);
        }
        out.push_str("\r\n");
        let name = if uid { "UID SEARCH" } else { "SEARCH" };
        out.push_str(&line(&format!("{tag} OK {name} completed.")));
        let _ = sel.read_only;
        Step::Reply(out)
    }

    /// After `DONE` ends an IDLE.
    pub(crate) fn idle_done(&mut self, st: &Inner, tag: &str) -> String {
        let mut out = self.changes(st);
        out.push_str(&line(&format!("{tag} OK IDLE completed.")));
        out
    }
}

/// Outcome of reading one command.
enum Read {
    Command(Vec<u8>),
    /// A line or literal beyond the limits; the reply to give (the stream may go on).
    Refused(Step),
    /// Hang up (EOF, error, timeout, or a non-synchronising literal too large to skip).
    End(Option<String>),
}

/// Reads a command line and its literals (answering `+` to synchronising ones).
async fn read_command<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut BufReader<S>,
    session: &mut Session,
    d: Duration,
) -> Read {
    let mut buf = Vec::new();
    let mut literals = 0usize;
    loop {
        let l = match tokio::time::timeout(d, read_line(io, MAX_LINE)).await {
            Err(_) => return Read::End(Some(line(BYE_CLOSED))),
            Ok(Err(_) | Ok(ReadLine::Eof)) => return Read::End(None),
            Ok(Ok(ReadLine::TooLong)) => {
                let step = if buf.is_empty() {
                    session.bad("*", "Command Error. 10")
                } else {
                    session.garbage(&buf)
                };
                return Read::Refused(step);
            }
            Ok(Ok(ReadLine::Line(l))) => l,
        };
        buf.extend_from_slice(&l);
        let Some((n, plus)) = literal_marker(&l) else {
            return Read::Command(buf);
        };
        literals += 1;
        if n > MAX_LITERAL || literals > MAX_LITERALS || buf.len() + n > MAX_COMMAND {
            if plus {
                // The octets are on their way and cannot be told from commands: hang up.
                return Read::End(Some(line("* BYE Command too long.")));
            }
            return Read::Refused(session.garbage(&buf));
        }
        if !plus
            && send(io.get_mut(), "+ Ready for additional command text.\r\n")
                .await
                .is_err()
        {
            return Read::End(None);
        }
        buf.extend_from_slice(b"\r\n");
        let mut lit = Vec::with_capacity(n.min(MAX_LITERAL));
        let read = timed(d, (&mut *io).take(n as u64).read_to_end(&mut lit)).await;
        if read != Some(n) {
            return Read::End(None);
        }
        buf.extend_from_slice(&lit);
    }
}

/// Runs the dialogue on one (TLS) stream until it ends.
async fn run<S: AsyncRead + AsyncWrite + Unpin>(
    st: &Inner,
    stream: S,
    opts: &ImapOptions,
    onprem: Option<usize>,
) {
    let mut io = BufReader::new(stream);
    let d = opts.read_timeout;
    let mut session = Session::new();
    session.onprem = onprem;
    let host = onprem
        .and_then(|k| st.servers.get(k))
        .map_or(opts.host.as_str(), |s| s.host.as_str());
    if send(io.get_mut(), &greeting(host)).await.is_err() {
        return;
    }
    loop {
        let mut step = match read_command(&mut io, &mut session, d).await {
            Read::Command(raw) => session.command(st, &raw),
            Read::Refused(step) => step,
            Read::End(bye) => {
                if let Some(b) = bye {
                    let _ = send(io.get_mut(), &b).await;
                    let _ = io.get_mut().shutdown().await;
                }
                return;
            }
        };
        loop {
            match step {
                Step::Reply(r) => {
                    if send(io.get_mut(), &r).await.is_err() {
                        return;
                    }
                    break;
                }
                Step::Close(r) => {
                    let _ = send(io.get_mut(), &r).await;
                    let _ = io.get_mut().shutdown().await;
                    return;
                }
                Step::Challenge { tag, mech, text } => {
                    if send(io.get_mut(), &format!("+ {text}\r\n")).await.is_err() {
                        return;
                    }
                    step = match timed(d, read_line(&mut io, MAX_LINE)).await {
                        None | Some(ReadLine::Eof) => return,
                        Some(ReadLine::TooLong) => session.sasl(st, &tag, mech, b"!"),
                        Some(ReadLine::Line(l)) => session.sasl(st, &tag, mech, &l),
                    };
                }
                Step::Idle { tag } => {
                    if send(io.get_mut(), "+ IDLE accepted, awaiting DONE command.\r\n")
                        .await
                        .is_err()
                    {
                        return;
                    }
                    loop {
                        match timed(d, read_line(&mut io, MAX_LINE)).await {
                            None => {
                                let _ = send(io.get_mut(), &line(BYE_CLOSED)).await;
                                let _ = io.get_mut().shutdown().await;
                                return;
                            }
                            Some(ReadLine::Eof) => return,
                            Some(ReadLine::Line(l)) if l.eq_ignore_ascii_case(b"DONE") => break,
                            Some(_) => {}
                        }
                    }
                    step = Step::Reply(session.idle_done(st, &tag));
                }
            }
        }
    }
}

async fn connection(
    state: ExchangeState,
    stream: TcpStream,
    tls: tokio_rustls::TlsAcceptor,
    opts: Arc<ImapOptions>,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
) {
    let Some(secure) = crate::accept::open_tls(
        stream,
        &tls,
        opts.read_timeout,
        &opts.on_connect,
        permit.is_some(),
        "* BYE Too many concurrent connections.",
    )
    .await
    else {
        return;
    };
    let st = &state.inner;
    Counters::bump(&st.counters.imap_sessions);
    let name = secure.get_ref().1.server_name().map(str::to_owned);
    let onprem = crate::line_auth::server_by_name(st, name.as_deref());
    run(st, secure, &opts, onprem).await;
    drop(permit);
}

/// Serves IMAP4 with implicit TLS on `listener` until `stop` completes. `tls` is the
/// certificate presented (no ALPN needed). Bind the listener to loopback: the endpoint is for
/// tests.
pub async fn serve_imap(
    state: ExchangeState,
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    options: ImapOptions,
    stop: impl Future<Output = ()> + Send,
) {
    let (max, read_timeout) = (options.max_connections, options.read_timeout);
    let opts = Arc::new(options);
    crate::accept::serve_implicit_tls(
        listener,
        tls,
        max,
        read_timeout,
        stop,
        move |stream, acceptor, permit| {
            connection(state.clone(), stream, acceptor, opts.clone(), permit)
        },
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn empty_state() -> ExchangeState {
        let cfg = crate::ExchangeConfig::from_toml_str("").unwrap_or_else(|e| panic!("{e}"));
        ExchangeState::new(
            cfg,
            Arc::new(crate::InMemoryDirectory::new()),
            crate::TokenVerifier::new(Vec::new()),
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    const MIXED: &str = "From: a@b.cd\r\nSubject: s\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed;\r\n\tboundary=\"_b_\"\r\n\r\n--_b_\r\nContent-Type: text/plain; charset=\"utf-8\"\r\nContent-Transfer-Encoding: 7bit\r\n\r\nHello\r\n--_b_\r\nContent-Type: text/csv; name=\"q3.csv\"\r\nContent-Disposition: attachment; filename=\"q3.csv\"; size=8\r\nContent-Transfer-Encoding: base64\r\n\r\nYSxiCjEsMgo=\r\n--_b_--\r\n";

    /// RFC 3501 5.1.3's own example, `&` itself, and names that are not modified UTF-7.
    #[test]
    fn mailbox_names_in_modified_utf7() {
        let name = "~peter/mail/\u{53f0}\u{5317}/\u{65e5}\u{672c}\u{8a9e}";
        assert_eq!(utf7_encode(name), "~peter/mail/&U,BTFw-/&ZeVnLIqe-");
        assert_eq!(
            utf7_decode("~peter/mail/&U,BTFw-/&ZeVnLIqe-").as_deref(),
            Some(name)
        );
        assert_eq!(utf7_encode("R&D"), "R&-D");
        assert_eq!(utf7_decode("R&-D").as_deref(), Some("R&D"));
        assert_eq!(utf7_encode("Entw\u{fc}rfe"), "Entw&APw-rfe");
        for bad in ["&", "&ZeVn", "&Z-", "&2D0-"] {
            assert_eq!(utf7_decode(bad), None, "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn utf7_round_trips_and_never_panics(name in "\\PC{0,30}", wire in "\\PC{0,30}") {
            proptest::prop_assert_eq!(utf7_decode(&utf7_encode(&name)), Some(name.clone()));
            proptest::prop_assert!(utf7_encode(&name).bytes().all(|b| (0x20..0x7f).contains(&b)));
            let _ = utf7_decode(&wire);
        }
    }

    /// An enclosed message is described with its envelope and structure (RFC 3501
    /// body-type-msg); nesting deeper than the limit is described as opaque, without
    /// recursion, and a quoted `;` stays in its parameter.
    #[test]
    fn enclosed_messages_nesting_and_quoted_parameters() {
        let inner = "From: a@b.cd\r\nSubject: inner\r\n\r\nhi\r\n";
        let outer = format!(
            "Subject: s\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: message/rfc822\r\nContent-Disposition: attachment; filename=\"a;b.eml\"\r\n\r\n{inner}--b--\r\n"
        );
        let s = body_structure(&outer, true);
        assert!(
            s.contains("(\"MESSAGE\" \"RFC822\" NIL NIL NIL \"7BIT\""),
            "{s}"
        );
        assert!(s.contains("\"inner\""), "the enclosed envelope: {s}");
        assert!(s.contains("(\"FILENAME\" \"a;b.eml\")"), "{s}");
        let mut deep = String::from("x\r\n");
        for k in 0..2000 {
            deep = format!(
                "Content-Type: multipart/mixed; boundary=\"b{k}\"\r\n\r\n--b{k}\r\n{deep}\r\n--b{k}--\r\n"
            );
        }
        let s = body_structure(&deep, true);
        assert!(
            s.contains("\"APPLICATION\" \"OCTET-STREAM\""),
            "{}",
            &s[..s.len().min(300)]
        );
        let empty = "Content-Type: multipart/x; boundary=\"q\"\r\n\r\n";
        assert!(body_structure(empty, false).starts_with("((\"TEXT\""));
    }

    #[test]
    fn multipart_structure_and_parts() {
        assert_eq!(
            body_structure(MIXED, true),
            "((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"utf-8\") NIL NIL \"7BIT\" 5 1 NIL NIL NIL NIL)\
             (\"TEXT\" \"CSV\" (\"NAME\" \"q3.csv\") NIL NIL \"BASE64\" 12 1 NIL \
             (\"ATTACHMENT\" (\"FILENAME\" \"q3.csv\" \"SIZE\" \"8\")) NIL NIL) \
             \"MIXED\" (\"BOUNDARY\" \"_b_\") NIL NIL NIL)"
        );
        assert!(body_structure(MIXED, false).ends_with(" \"MIXED\")"));
        let part = |spec: &str| {
            BodyItem::parse(&format!("BODY[{spec}]"))
                .map(|b| b.answer(MIXED))
                .unwrap_or_default()
        };
        // A part's body ends before the CRLF of the next delimiter (RFC 2046 5.1.1).
        assert_eq!(part("1"), "BODY[1] {5}\r\nHello");
        assert_eq!(part("2"), "BODY[2] {12}\r\nYSxiCjEsMgo=");
        assert!(part("2.MIME").contains("Content-Disposition: attachment"));
        assert_eq!(part("3"), "BODY[3] {0}\r\n");
        assert!(BodyItem::parse("BODY[0]").is_none());
        // A single-part message: part 1 is its body.
        let single = "Subject: s\r\n\r\nbody\r\n";
        let one = BodyItem::parse("BODY[1]").map(|b| b.answer(single));
        assert_eq!(one.as_deref(), Some("BODY[1] {6}\r\nbody\r\n"));
    }

    #[test]
    fn commands_are_parsed() {
        let c = parse_command(b"a1 LOGIN \"a@b.c\" {3}\r\nx y").unwrap_or_else(|| panic!("parse"));
        assert_eq!(c.tag, "a1");
        assert_eq!(c.name, "LOGIN");
        assert_eq!(
            c.args,
            vec![Tok::Str(b"a@b.c".to_vec()), Tok::Str(b"x y".to_vec())]
        );
        let c =
            parse_command(b"b status INBOX (MESSAGES UNSEEN)").unwrap_or_else(|| panic!("parse"));
        assert_eq!(c.name, "STATUS");
        assert_eq!(
            c.args,
            vec![
                Tok::Atom("INBOX".into()),
                Tok::List(vec![
                    Tok::Atom("MESSAGES".into()),
                    Tok::Atom("UNSEEN".into())
                ])
            ]
        );
        let c = parse_command(b"c FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (FROM TO)])")
            .unwrap_or_else(|| panic!("parse"));
        assert_eq!(c.args.len(), 2);
        assert!(parse_command(b"noverb").is_none());
        assert!(parse_command(b"a LIST (").is_none());
        assert!(parse_command(b"a LIST \"x").is_none());
        assert!(parse_command(b"a LIST  x").is_none());
        assert_eq!(literal_marker(b"a LOGIN {12+}"), Some((12, true)));
        assert_eq!(literal_marker(b"a LOGIN {x}"), None);
    }

    #[test]
    fn wildcards_match_as_list_wants() {
        assert!(wildcard(b"*", b"INBOX/Project 1"));
        assert!(!wildcard(b"%", b"INBOX/Project 1"));
        assert!(wildcard(b"inbox/%", b"INBOX/Project 1"));
        assert!(wildcard(b"Sent*", b"Sent Items"));
        assert!(!wildcard(b"Sent", b"Sent Items"));
    }

    #[test]
    fn sequence_sets() {
        assert_eq!(sequence_set("1:3,5,4:*", 6), Some(vec![1, 2, 3, 4, 5, 6]));
        assert_eq!(sequence_set("*", 0), Some(vec![]));
        assert_eq!(sequence_set("0", 3), None);
        assert_eq!(sequence_set("1:4294967295", 4_294_967_295), None);
    }

    #[test]
    fn greeting_carries_the_server_name() {
        let g = greeting("localhost");
        assert!(g.starts_with("* OK The Microsoft Exchange IMAP4 service is ready. ["));
        assert!(g.ends_with("]\r\n"));
    }

    proptest::proptest! {
        #[test]
        fn parsers_never_panic(raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            let _ = parse_command(&raw);
            let _ = tokenize(&raw);
            let _ = literal_marker(&raw);
            let _ = tag_of(&raw);
            let text = String::from_utf8_lossy(&raw);
            let _ = sequence_set(&text, 50);
            let _ = wildcard(&raw, b"INBOX/Project 1");
            // Content items and what they answer, over any message text.
            if let Some(item) = BodyItem::parse(&text.to_ascii_uppercase()) {
                let _ = item.answer(&text);
            }
            let _ = envelope(&text);
            let _ = body_structure(&text, true);
            let _ = nstring(Some(&text));
        }

        /// Multipart messages of any shape: the structure and every part section answer
        /// without panicking, and a literal's announced length is what follows it.
        #[test]
        fn multiparts_of_any_shape_answer_every_section(
            boundary in "[A-Za-z0-9_=-]{1,20}",
            parts in proptest::collection::vec(("(text/plain|text/html|application/pdf|multipart/mixed)", "\\PC{0,60}"), 0..5),
            close in proptest::prelude::any::<bool>(),
            section in "([1-6](\\.[1-3]){0,2}(\\.MIME)?)",
        ) {
            let mut mime = format!("Subject: s\r\nContent-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\n");
            for (ctype, body) in &parts {
                mime.push_str(&format!("--{boundary}\r\nContent-Type: {ctype}\r\n\r\n{body}\r\n"));
            }
            if close {
                mime.push_str(&format!("--{boundary}--\r\n"));
            }
            let structure = body_structure(&mime, true);
            proptest::prop_assert!(structure.starts_with('(') && structure.ends_with(')'));
            let item = BodyItem::parse(&format!("BODY.PEEK[{section}]"));
            proptest::prop_assert!(item.is_some());
            let answer = item.map(|i| i.answer(&mime)).unwrap_or_default();
            let (head, data) = answer.split_once("}\r\n").unwrap_or_default();
            let n: usize = head.rsplit('{').next().and_then(|x| x.parse().ok()).unwrap_or(usize::MAX);
            proptest::prop_assert_eq!(n, data.len());
        }

        #[test]
        fn body_items_take_any_section_and_partial(
            section in "(|HEADER|TEXT|1|HEADER\\.FIELDS \\([A-Z-]{1,8}( [A-Z-]{1,8}){0,3}\\)|HEADER\\.FIELDS\\.NOT \\([A-Z]{1,6}\\))",
            partial in proptest::option::of((0usize..400, 0usize..400)),
            body in "\\PC{0,200}",
        ) {
            let p = partial.map_or(String::new(), |(a, b)| format!("<{a}.{b}>"));
            let item = BodyItem::parse(&format!("BODY.PEEK[{section}]{p}"));
            proptest::prop_assert!(item.is_some());
            let mime = format!("Subject: x\r\nFrom: a <a@b.c>\r\n\r\n{body}");
            let answer = item.map(|i| i.answer(&mime)).unwrap_or_default();
            // The literal's announced length is the length of what follows it.
            let (head, data) = answer.split_once("}\r\n").unwrap_or_default();
            let n: usize = head.rsplit('{').next().and_then(|x| x.parse().ok()).unwrap_or(usize::MAX);
            proptest::prop_assert_eq!(n, data.len());
        }

        #[test]
        fn any_command_sequence_gets_a_tagged_or_untagged_answer(
            lines in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::collection::vec(proptest::prelude::any::<u8>(), 0..80),
                    proptest::sample::select(vec![
                        b"a CAPABILITY".to_vec(), b"a AUTHENTICATE XOAUTH2".to_vec(),
                        b"a AUTHENTICATE PLAIN =".to_vec(), b"a LOGIN x y".to_vec(),
                        b"a SELECT INBOX".to_vec(), b"a LIST \"\" *".to_vec(),
                        b"a FETCH 1:* FLAGS".to_vec(), b"a STATUS INBOX (MESSAGES)".to_vec(),
                        b"*".to_vec(), b"a IDLE".to_vec(), b"a UID FETCH 1:* (FLAGS)".to_vec(),
                    ]),
                ],
                0..30,
            ),
        ) {
            let state = empty_state();
            let st = &state.inner;
            let mut s = Session::new();
            let mut pending: Option<(String, Mech)> = None;
            for l in &lines {
                let step = match pending.take() {
                    Some((tag, mech)) => s.sasl(st, &tag, mech, l),
                    None => s.command(st, l),
                };
                match step {
                    Step::Challenge { tag, mech, .. } => pending = Some((tag, mech)),
                    Step::Idle { tag } => {
                        let r = s.idle_done(st, &tag);
                        proptest::prop_assert!(r.ends_with("\r\n"));
                    }
                    Step::Reply(r) | Step::Close(r) => {
                        proptest::prop_assert!(r.ends_with("\r\n") && r.len() > 5);
                        let last = r.trim_end().rsplit("\r\n").next().unwrap_or_default();
                        proptest::prop_assert!(
                            last.contains(" OK ") || last.contains(" NO ") || last.contains(" BAD ") || last.starts_with("* BYE"),
                            "{}", r
                        );
                    }
                }
            }
        }
    }
}
