//! Mailbox contents: well-known folders, deterministic generated messages computed on demand,
//! items created at run time, and the opaque ids and sync states that point into them.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use time::OffsetDateTime;
use time::format_description::well_known::{Rfc2822, Rfc3339};

use crate::config::LicenseKind;

/// FNV-1a over several byte strings (with separators), used for seeds and id check values.
pub(crate) fn fnv(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.iter().chain(std::iter::once(&0xffu8)) {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// A mailbox as loaded from the configuration.
#[derive(Debug, Clone)]
pub(crate) struct Mailbox {
    /// Primary SMTP address, lower case.
    pub address: String,
    pub display_name: String,
    /// Tenant GUID.
    pub tenant_id: String,
    pub aliases: Vec<String>,
    pub provisioned: bool,
    pub licensed: bool,
    pub license: LicenseKind,
    pub ews_enabled: bool,
    /// SMTP AUTH allowed for this mailbox (`Set-CASMailbox -SmtpClientAuthenticationDisabled`).
    pub smtp_auth_enabled: bool,
    /// Index of the on-premises server, if hosted on-premises.
    pub server: Option<usize>,
    /// Lower-case group names.
    pub groups: Vec<String>,
    pub inbox: u32,
    pub sent: u32,
    /// Generated folders under the Inbox, and messages in each.
    pub extra_folders: u8,
    pub extra_folder_messages: u32,
    pub routing_address: Option<String>,
}

impl Mailbox {
    /// The user's object id (deterministic from the address).
    pub(crate) fn object_id(&self) -> uuid::Uuid {
        let a = fnv(&[b"oid", self.address.as_bytes()]);
        let b = fnv(&[b"oid2", self.address.as_bytes()]);
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&a.to_be_bytes());
        bytes[8..].copy_from_slice(&b.to_be_bytes());
        uuid::Builder::from_random_bytes(bytes).into_uuid()
    }

    /// Whether `addr` is the primary address or an alias (case-insensitive).
    pub(crate) fn has_address(&self, addr: &str) -> bool {
        self.address.eq_ignore_ascii_case(addr)
            || self.aliases.iter().any(|a| a.eq_ignore_ascii_case(addr))
    }

    /// Whether the mailbox is in a group.
    pub(crate) fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g.eq_ignore_ascii_case(group))
    }
}

/// The well-known folders every mailbox has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Folder {
    Root,
    MsgFolderRoot,
    Inbox,
    SentItems,
    DeletedItems,
    Drafts,
    Outbox,
    JunkEmail,
    Archive,
    Calendar,
    Contacts,
    Tasks,
    /// Generated folder number `k` (0-based) under the Inbox.
    Custom(u8),
    /// `Recoverable Items` under the root (the dumpster): reachable by its distinguished id,
    /// not listed by FindFolder or SyncFolderHierarchy.
    RecoverableItemsRoot,
    /// `Recoverable Items\Deletions`: where SoftDelete puts items.
    RecoverableItemsDeletions,
    /// `Recoverable Items\Purges`.
    RecoverableItemsPurges,
}

/// The dumpster folders, with their codes (after the generated folders' range).
const DUMPSTER: [(Folder, u8); 3] = [
    (Folder::RecoverableItemsRoot, 12 + MAX_CUSTOM_FOLDERS),
    (Folder::RecoverableItemsDeletions, 13 + MAX_CUSTOM_FOLDERS),
    (Folder::RecoverableItemsPurges, 14 + MAX_CUSTOM_FOLDERS),
];

/// Most generated folders a mailbox can have.
pub(crate) const MAX_CUSTOM_FOLDERS: u8 = 200;

impl Folder {
    pub(crate) const WELL_KNOWN: [Folder; 12] = [
        Folder::Root,
        Folder::MsgFolderRoot,
        Folder::Inbox,
        Folder::SentItems,
        Folder::DeletedItems,
        Folder::Drafts,
        Folder::Outbox,
        Folder::JunkEmail,
        Folder::Archive,
        Folder::Calendar,
        Folder::Contacts,
        Folder::Tasks,
    ];

    pub(crate) fn code(self) -> u8 {
        match self {
            Folder::Custom(k) => 12u8.saturating_add(k),
            f @ (Folder::RecoverableItemsRoot
            | Folder::RecoverableItemsDeletions
            | Folder::RecoverableItemsPurges) => DUMPSTER
                .iter()
                .find(|(d, _)| *d == f)
                .map_or(0, |(_, c)| *c),
            f => Folder::WELL_KNOWN
                .iter()
                .position(|w| *w == f)
                .and_then(|p| u8::try_from(p).ok())
                .unwrap_or(0),
        }
    }

    pub(crate) fn from_code(c: u8) -> Option<Folder> {
        match c.checked_sub(12) {
            None => Folder::WELL_KNOWN.get(usize::from(c)).copied(),
            Some(k) if k < MAX_CUSTOM_FOLDERS => Some(Folder::Custom(k)),
            Some(_) => DUMPSTER.iter().find(|(_, d)| *d == c).map(|(f, _)| *f),
        }
    }

    /// EWS distinguished folder id (none for generated folders).
    pub(crate) fn distinguished(self) -> Option<&'static str> {
        Some(match self {
            Folder::Root => "root",
            Folder::MsgFolderRoot => "msgfolderroot",
            Folder::Inbox => "inbox",
            Folder::SentItems => "sentitems",
            Folder::DeletedItems => "deleteditems",
            Folder::Drafts => "drafts",
            Folder::Outbox => "outbox",
            Folder::JunkEmail => "junkemail",
            Folder::Archive => "archive",
            Folder::Calendar => "calendar",
            Folder::Contacts => "contacts",
            Folder::Tasks => "tasks",
            Folder::RecoverableItemsRoot => "recoverableitemsroot",
            Folder::RecoverableItemsDeletions => "recoverableitemsdeletions",
            Folder::RecoverableItemsPurges => "recoverableitemspurges",
            Folder::Custom(_) => return None,
        })
    }

    /// By EWS distinguished id or Graph well-known name (case-insensitive).
    pub(crate) fn from_name(name: &str) -> Option<Folder> {
        let n = name.to_ascii_lowercase();
        Folder::WELL_KNOWN
            .iter()
            .chain(DUMPSTER.iter().map(|(f, _)| f))
            .copied()
            .find(|f| f.distinguished() == Some(n.as_str()))
            .or(match n.as_str() {
                "deleted" => Some(Folder::DeletedItems),
                "junk" => Some(Folder::JunkEmail),
                _ => None,
            })
    }

    pub(crate) fn display_name(self) -> std::borrow::Cow<'static, str> {
        std::borrow::Cow::Borrowed(match self {
            Folder::Root => "Root",
            Folder::MsgFolderRoot => "Top of Information Store",
            Folder::Inbox => "Inbox",
            Folder::SentItems => "Sent Items",
            Folder::DeletedItems => "Deleted Items",
            Folder::Drafts => "Drafts",
            Folder::Outbox => "Outbox",
            Folder::JunkEmail => "Junk Email",
            Folder::Archive => "Archive",
            Folder::Calendar => "Calendar",
            Folder::Contacts => "Contacts",
            Folder::Tasks => "Tasks",
            Folder::RecoverableItemsRoot => "Recoverable Items",
            Folder::RecoverableItemsDeletions => "Deletions",
            Folder::RecoverableItemsPurges => "Purges",
            Folder::Custom(k) => {
                return std::borrow::Cow::Owned(format!("Project {}", u16::from(k) + 1));
            }
        })
    }

    /// EWS folder class (`None` for the root).
    pub(crate) fn class(self) -> Option<&'static str> {
        match self {
            Folder::Root | Folder::RecoverableItemsRoot => None,
            Folder::Calendar => Some("IPF.Appointment"),
            Folder::Contacts => Some("IPF.Contact"),
            Folder::Tasks => Some("IPF.Task"),
            _ => Some("IPF.Note"),
        }
    }

    /// The EWS element name for this folder.
    pub(crate) fn element(self) -> &'static str {
        match self {
            Folder::Calendar => "CalendarFolder",
            Folder::Contacts => "ContactsFolder",
            Folder::Tasks => "TasksFolder",
            _ => "Folder",
        }
    }

    pub(crate) fn parent(self) -> Option<Folder> {
        match self {
            Folder::Root => None,
            Folder::MsgFolderRoot => Some(Folder::Root),
            Folder::Custom(_) => Some(Folder::Inbox),
            Folder::RecoverableItemsRoot => Some(Folder::Root),
            Folder::RecoverableItemsDeletions | Folder::RecoverableItemsPurges => {
                Some(Folder::RecoverableItemsRoot)
            }
            _ => Some(Folder::MsgFolderRoot),
        }
    }

    /// Whether Graph lists it among `mailFolders` (mail folders only).
    pub(crate) fn is_mail_folder(self) -> bool {
        !matches!(
            self,
            Folder::Root
                | Folder::MsgFolderRoot
                | Folder::Calendar
                | Folder::Contacts
                | Folder::Tasks
                | Folder::RecoverableItemsRoot
                | Folder::RecoverableItemsDeletions
                | Folder::RecoverableItemsPurges
        )
    }
}

/// A person on a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Person {
    pub name: String,
    pub address: String,
}

/// A message, generated or created.
#[derive(Debug, Clone)]
pub(crate) struct Message {
    pub mailbox: u32,
    pub folder: Folder,
    /// Position in creation order within the folder (0 = oldest).
    pub n: u32,
    pub subject: String,
    pub body: String,
    pub body_is_html: bool,
    pub from: Person,
    pub to: Vec<Person>,
    pub cc: Vec<Person>,
    pub received: OffsetDateTime,
    pub sent: OffsetDateTime,
    pub is_read: bool,
    pub is_draft: bool,
    pub internet_message_id: String,
    /// The item's identity in its mailbox, kept when it moves (what an immutable id names): a
    /// hash for generated items (below 2^31), a random number for created ones (above).
    pub key: u32,
    /// File attachments, in the order they were added.
    pub attachments: Vec<Attachment>,
}

/// A file attachment of a message (Graph `fileAttachment`, EWS `t:FileAttachment`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Attachment {
    /// Number of the attachment within its message, named by its id; never reused after a
    /// delete.
    pub seq: u32,
    pub name: String,
    /// Media type, e.g. `application/pdf`.
    pub content_type: String,
    pub content: std::sync::Arc<[u8]>,
    pub is_inline: bool,
    /// `Content-ID` without angle brackets, for inline parts.
    pub content_id: Option<String>,
    pub modified: OffsetDateTime,
}

/// Why an attachment was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AttachmentRefusal {
    /// No name, or one with control characters or over 255 characters.
    Name,
    /// A media type that is not `type/subtype` of token characters, or a multipart one.
    ContentType,
    /// A content id with control characters, spaces or angle brackets, or over 255 characters.
    ContentId,
}

impl Attachment {
    /// A file attachment, checked before it can reach a MIME header: the name (any text
    /// without control characters), the media type (`type/subtype` of RFC 2045 token
    /// characters, not `multipart/*`; none given: from the name's extension) and the content id
    /// (without angle brackets, spaces or control characters).
    pub(crate) fn new(
        name: &str,
        content_type: Option<&str>,
        content: Vec<u8>,
        is_inline: bool,
        content_id: Option<&str>,
    ) -> Result<Attachment, AttachmentRefusal> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 255 || name.chars().any(char::is_control) {
            return Err(AttachmentRefusal::Name);
        }
        let content_type = match content_type.map(str::trim).filter(|c| !c.is_empty()) {
            None => guess_type(name).to_owned(),
            Some(c) => {
                let c = c.to_ascii_lowercase();
                let token = |t: &str| {
                    !t.is_empty()
                        && t.bytes()
                            .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?=".contains(&b))
                };
                match c.split_once('/') {
                    Some((t, sub)) if token(t) && token(sub) && t != "multipart" => c,
                    _ => return Err(AttachmentRefusal::ContentType),
                }
            }
        };
        let content_id =
            match content_id.map(|c| c.trim().trim_start_matches('<').trim_end_matches('>')) {
                None | Some("") => None,
                Some(c)
                    if c.len() <= 255
                        && c.bytes()
                            .all(|b| b.is_ascii_graphic() && b != b'<' && b != b'>') =>
                {
                    Some(c.to_owned())
                }
                Some(_) => return Err(AttachmentRefusal::ContentId),
            };
        Ok(Attachment {
            seq: 0,
            name: name.to_owned(),
            content_type,
            content: content.into(),
            is_inline,
            content_id,
            modified: OffsetDateTime::now_utc(),
        })
    }

    /// The attachment's id: its message's id and its number (standard base64, like EWS ids;
    /// [`graph_id`] gives Graph's form).
    pub(crate) fn id(&self, msg: &Message, mbx: &Mailbox) -> String {
        let mut b = id_bytes(b'I', msg.mailbox, msg.folder, msg.n, &mbx.address);
        b.extend_from_slice(&self.seq.to_be_bytes());
        STANDARD.encode(b)
    }
}

/// Decodes an attachment id made by [`Attachment::id`] (either base64 alphabet): the message's
/// id, not yet checked against the mailbox address, and the attachment's number.
pub(crate) fn decode_attachment_id(id: &str) -> Option<(RawId, u32)> {
    let bytes = decode_b64_id(id)?;
    let (item, seq) = bytes.split_at_checked(17)?;
    let seq = u32::from_be_bytes(seq.try_into().ok()?);
    let raw = raw_id(item)?;
    (raw.kind == b'I').then_some((raw, seq))
}

impl Message {
    pub(crate) fn item_id(&self, mbx: &Mailbox) -> String {
        encode_id(b'I', self.mailbox, self.folder, self.n, &mbx.address)
    }

    pub(crate) fn change_key(&self, mbx: &Mailbox) -> String {
        change_key(&mbx.address, self.folder, self.n)
    }

    /// The length of [`Message::mime`], without encoding the attachments to measure them.
    pub(crate) fn size(&self) -> usize {
        let (text, left_out) = self.render(false);
        text.len() + left_out
    }

    /// Whether the message has attachments that are not inline (Graph's `hasAttachments`
    /// "doesn't include inline attachments"; EWS `HasAttachments` alike).
    pub(crate) fn has_attachments(&self) -> bool {
        self.attachments.iter().any(|a| !a.is_inline)
    }

    /// Plain-text preview (first 255 characters).
    pub(crate) fn preview(&self) -> String {
        self.body.chars().take(255).collect()
    }

    /// The RFC 5322 message: one text or HTML part, or `multipart/mixed` with the body first
    /// and then each attachment (base64), as Exchange writes a message with attachments.
    pub(crate) fn mime(&self) -> String {
        self.render(true).0
    }

    /// The MIME text; with `contents` false the base64 of the attachments is left out and its
    /// length returned beside the text instead.
    fn render(&self, contents: bool) -> (String, usize) {
        let mut left_out = 0;
        let mut out = String::with_capacity(512 + self.body.len());
        let people = |v: &[Person]| {
            v.iter()
                .map(|p| format!("{} <{}>", header_word(&p.name), p.address))
                .collect::<Vec<_>>()
                .join(", ")
        };
        out.push_str(&format!(
            "From: {} <{}>\r\n",
            header_word(&self.from.name),
            self.from.address
        ));
        if !self.to.is_empty() {
            out.push_str(&format!("To: {}\r\n", people(&self.to)));
        }
        if !self.cc.is_empty() {
            out.push_str(&format!("Cc: {}\r\n", people(&self.cc)));
        }
        out.push_str(&format!("Subject: {}\r\n", header_word(&self.subject)));
        out.push_str(&format!(
            "Date: {}\r\n",
            self.sent.format(&Rfc2822).unwrap_or_default()
        ));
        out.push_str(&format!("Message-ID: {}\r\n", self.internet_message_id));
        out.push_str("MIME-Version: 1.0\r\n");
        if self.attachments.is_empty() {
            self.body_part(&mut out);
            return (out, 0);
        }
        let boundary = format!("_exgate_{:08x}_", self.key);
        out.push_str(&format!(
            "Content-Type: multipart/mixed;\r\n\tboundary=\"{boundary}\"\r\n\r\n"
        ));
        out.push_str(&format!("--{boundary}\r\n"));
        self.body_part(&mut out);
        for a in &self.attachments {
            out.push_str(&format!("--{boundary}\r\n"));
            let name = header_word(&a.name).replace('"', "'");
            out.push_str(&format!(
                "Content-Type: {}; name=\"{name}\"\r\n",
                a.content_type
            ));
            out.push_str(&format!("Content-Description: {name}\r\n"));
            out.push_str(&format!(
                "Content-Disposition: {}; filename=\"{name}\"; size={};\r\n\tmodification-date=\"{}\"\r\n",
                if a.is_inline { "inline" } else { "attachment" },
                a.content.len(),
                a.modified.format(&Rfc2822).unwrap_or_default()
            ));
            if let Some(cid) = &a.content_id {
                out.push_str(&format!("Content-ID: <{cid}>\r\n"));
            }
            if a.content_type == "message/rfc822" {
                // An enclosed message is not base64 (RFC 2046 5.2.1): its text, lines in CRLF.
                out.push_str("Content-Transfer-Encoding: 8bit\r\n\r\n");
                for line in String::from_utf8_lossy(&a.content).lines() {
                    out.push_str(line);
                    out.push_str("\r\n");
                }
            } else {
                out.push_str("Content-Transfer-Encoding: base64\r\n\r\n");
                if contents {
                    push_base64_lines(&mut out, &a.content);
                } else {
                    left_out += base64_lines_len(a.content.len());
                }
            }
        }
        out.push_str(&format!("--{boundary}--\r\n"));
        (out, left_out)
    }

    /// The body's `Content-Type` and `Content-Transfer-Encoding` fields, a blank line and the
    /// encoded text.
    fn body_part(&self, out: &mut String) {
        let ctype = if self.body_is_html { "html" } else { "plain" };
        out.push_str(&format!(
            "Content-Type: text/{ctype}; charset=\"utf-8\"\r\n"
        ));
        if self.body.is_ascii() {
            out.push_str("Content-Transfer-Encoding: 7bit\r\n\r\n");
            for line in self.body.lines() {
                out.push_str(line);
                out.push_str("\r\n");
            }
        } else {
            out.push_str("Content-Transfer-Encoding: base64\r\n\r\n");
            push_base64_lines(out, self.body.as_bytes());
        }
    }

    pub(crate) fn body_text(&self) -> String {
        if self.body_is_html {
            strip_tags(&self.body)
        } else {
            self.body.clone()
        }
    }

    pub(crate) fn body_html(&self) -> String {
        if self.body_is_html {
            self.body.clone()
        } else {
            format!(
                "<html><head><meta http-equiv=\"Content-Type\" content=\"text/html; charset=utf-8\"></head><body><div>{}</div></body></html>",
                quick_xml::escape::escape(self.body.as_str())
            )
        }
    }
}

/// A media type from a file name's extension (what a store fills in when none is given).
pub(crate) fn guess_type(name: &str) -> &'static str {
    let ext = name.rsplit_once('.').map_or("", |(_, e)| e);
    match ext.to_ascii_lowercase().as_str() {
        "txt" | "log" => "text/plain",
        "csv" => "text/csv",
        "htm" | "html" => "text/html",
        "pdf" => "application/pdf",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "zip" => "application/x-zip-compressed",
        "json" => "application/json",
        "xml" => "text/xml",
        "docx" => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "xlsx" => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "eml" => "message/rfc822",
        _ => "application/octet-stream",
    }
}

/// The length [`push_base64_lines`] writes for `n` bytes.
fn base64_lines_len(n: usize) -> usize {
    let encoded = n.div_ceil(3) * 4;
    encoded + 2 * encoded.div_ceil(76)
}

/// Base64 of `data` in lines of 76 characters, each ended by CRLF.
fn push_base64_lines(out: &mut String, data: &[u8]) {
    let enc = STANDARD.encode(data);
    for chunk in enc.as_bytes().chunks(76) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push_str("\r\n");
    }
}

fn strip_tags(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_tag = false;
    for c in s.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out
}

/// RFC 2047 encoded word when needed.
fn header_word(s: &str) -> String {
    if s.is_ascii() && !s.contains(['\r', '\n']) {
        s.to_owned()
    } else {
        format!("=?utf-8?B?{}?=", STANDARD.encode(s.as_bytes()))
    }
}

/// Prefix bytes that make ids start with `AAMk`, like real Exchange ids.
const ID_PREFIX: [u8; 3] = [0x00, 0x03, 0x24];

/// Encodes an item (`kind` b'I') or folder (`kind` b'F') id.
pub(crate) fn encode_id(kind: u8, mailbox: u32, folder: Folder, n: u32, address: &str) -> String {
    STANDARD.encode(id_bytes(kind, mailbox, folder, n, address))
}

/// The 17 bytes of an id (see [`encode_id`]).
fn id_bytes(kind: u8, mailbox: u32, folder: Folder, n: u32, address: &str) -> Vec<u8> {
    let mut b = Vec::with_capacity(21);
    b.extend_from_slice(&ID_PREFIX);
    b.push(kind);
    b.extend_from_slice(&mailbox.to_be_bytes());
    b.push(folder.code());
    b.extend_from_slice(&n.to_be_bytes());
    let check = fnv(&[
        b"id",
        &[kind, folder.code()],
        &n.to_be_bytes(),
        address.as_bytes(),
    ]);
    b.extend_from_slice(&check.to_be_bytes()[..4]);
    b
}

/// A decoded id, not yet checked against the mailbox address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RawId {
    pub kind: u8,
    pub mailbox: u32,
    pub folder: Folder,
    pub n: u32,
    check: [u8; 4],
}

impl RawId {
    /// Whether the id's check value matches the mailbox's address.
    pub(crate) fn verify(&self, address: &str) -> bool {
        let check = fnv(&[
            b"id",
            &[self.kind, self.folder.code()],
            &self.n.to_be_bytes(),
            address.as_bytes(),
        ]);
        check.to_be_bytes()[..4] == self.check
    }
}

/// Decodes an EWS (standard base64) or Graph (URL-safe base64) id.
pub(crate) fn decode_id(id: &str) -> Option<RawId> {
    raw_id(&decode_b64_id(id)?)
}

/// The bytes of an id in either base64 alphabet.
fn decode_b64_id(id: &str) -> Option<Vec<u8>> {
    let normal: String = id
        .chars()
        .map(|c| match c {
            '-' => '+',
            '_' => '/',
            c => c,
        })
        .collect();
    STANDARD.decode(normal.as_bytes()).ok()
}

/// The 17 bytes of an id, read.
fn raw_id(bytes: &[u8]) -> Option<RawId> {
    if bytes.len() != 17 || bytes.get(..3)? != ID_PREFIX {
        return None;
    }
    let kind = *bytes.get(3)?;
    if !matches!(kind, b'I' | b'F' | b'M') {
        return None;
    }
    let mailbox = u32::from_be_bytes(bytes.get(4..8)?.try_into().ok()?);
    let folder = Folder::from_code(*bytes.get(8)?)?;
    let n = u32::from_be_bytes(bytes.get(9..13)?.try_into().ok()?);
    let check: [u8; 4] = bytes.get(13..17)?.try_into().ok()?;
    Some(RawId {
        kind,
        mailbox,
        folder,
        n,
        check,
    })
}

/// Graph form of an id (URL-safe alphabet, padding kept, as Graph does).
pub(crate) fn graph_id(ews_id: &str) -> String {
    ews_id.replace('+', "-").replace('/', "_")
}

pub(crate) fn change_key(address: &str, folder: Folder, n: u32) -> String {
    let mut b = vec![0x09, 0, 0, 0, 0x16, 0, 0, 0];
    b.extend_from_slice(
        &fnv(&[
            b"ck",
            address.as_bytes(),
            &[folder.code()],
            &n.to_be_bytes(),
        ])
        .to_be_bytes(),
    );
    STANDARD.encode(b)
}

/// Encodes an opaque state (sync state, delta token): text payload plus a check value.
pub(crate) fn encode_state(payload: &str) -> String {
    let check = fnv(&[b"state", payload.as_bytes()]);
    URL_SAFE_NO_PAD.encode(format!("{payload}|{check:016x}"))
}

/// Decodes a state made by [`encode_state`]; `None` when it is corrupt.
pub(crate) fn decode_state(token: &str) -> Option<String> {
    let bytes = URL_SAFE_NO_PAD.decode(token.trim().as_bytes()).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (payload, check) = text.rsplit_once('|')?;
    let expect = format!("{:016x}", fnv(&[b"state", payload.as_bytes()]));
    (check == expect).then(|| payload.to_owned())
}

const FIRST: &[&str] = &[
    "Megan",
    "Alex",
    "Lynne",
    "Diego",
    "Isaiah",
    "Joni",
    "Lee",
    "Miriam",
    "Nestor",
    "Patti",
    "Pradeep",
    "Grady",
    "Johanna",
    "Henrietta",
    "Irvin",
    "Lidia",
];
const LAST: &[&str] = &[
    "Bowen",
    "Wilber",
    "Robbins",
    "Siciliani",
    "Langer",
    "Sherman",
    "Gu",
    "Graham",
    "Wilke",
    "Fernandez",
    "Gupta",
    "Archie",
    "Lorenz",
    "Mueller",
    "Sink",
    "Holloway",
];
const SENDER_DOMAINS: &[&str] = &[
    "fabrikam.com",
    "northwindtraders.com",
    "adatum.com",
    "litware.com",
];
const TOPICS: &[&str] = &[
    "Quarterly report",
    "Project Falcon status",
    "Invoice",
    "Meeting notes",
    "Travel plans",
    "Budget review",
    "Customer feedback",
    "Release schedule",
    "Team offsite",
    "Contract renewal",
    "Security update",
    "Onboarding checklist",
];

/// Start of generated time: messages are spread after this instant.
fn epoch() -> OffsetDateTime {
    // 2025-01-06T08:00:00Z
    OffsetDateTime::from_unix_timestamp(1_736_150_400).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn seed_of(mbx: &Mailbox, folder: Folder, n: u32) -> u64 {
    fnv(&[mbx.address.as_bytes(), &[folder.code()], &n.to_be_bytes()])
}

/// Whether generated message `n` is read (without building the message).
pub(crate) fn generated_is_read(mbx: &Mailbox, folder: Folder, n: u32) -> bool {
    !seed_of(mbx, folder, n).is_multiple_of(3)
}

/// Deterministic message number `n` of `folder` in the mailbox.
pub(crate) fn generated_message(mbx_index: u32, mbx: &Mailbox, folder: Folder, n: u32) -> Message {
    let seed = seed_of(mbx, folder, n);
    let pick = |list: &[&'static str], shift: u32| -> &'static str {
        let len = list.len().max(1) as u64;
        list.get(((seed >> shift) % len) as usize)
            .copied()
            .unwrap_or("x")
    };
    let first = pick(FIRST, 0);
    let last = pick(LAST, 8);
    let domain = pick(SENDER_DOMAINS, 16);
    let topic = pick(TOPICS, 24);
    let other = Person {
        name: format!("{first} {last}"),
        address: format!(
            "{}.{}@{domain}",
            first.to_ascii_lowercase(),
            last.to_ascii_lowercase()
        ),
    };
    let me = Person {
        name: mbx.display_name.clone(),
        address: mbx.address.clone(),
    };
    let (from, to) = if folder == Folder::SentItems {
        (me, vec![other])
    } else {
        (other, vec![me])
    };
    let received = epoch() + time::Duration::minutes(i64::from(n) * 37 + (seed % 30) as i64);
    let sent = received - time::Duration::seconds(2 + (seed % 50) as i64);
    let subject = format!("{topic} #{}", n + 1);
    let body = format!(
        "Hello {},\r\n\r\nThis is message {} in {} about {}.\r\nReference {:016x}.\r\n\r\nRegards,\r\n{}",
        to.first().map(|p| p.name.as_str()).unwrap_or(""),
        n + 1,
        folder.display_name(),
        topic.to_ascii_lowercase(),
        seed,
        from.name
    );
    Message {
        mailbox: mbx_index,
        folder,
        n,
        subject,
        body,
        body_is_html: false,
        internet_message_id: format!(
            "<{seed:016x}.{n}@{}>",
            from.address.rsplit('@').next().unwrap_or("x")
        ),
        from,
        to,
        cc: Vec::new(),
        received,
        sent,
        is_read: generated_is_read(mbx, folder, n),
        is_draft: false,
        attachments: Vec::new(),
        key: (fnv(&[
            b"key",
            &[folder.code()],
            &n.to_be_bytes(),
            mbx.address.as_bytes(),
        ]) as u32)
            & 0x7fff_ffff,
    }
}

/// A new item's key (see [`Message::key`]).
pub(crate) fn new_key() -> u32 {
    0x8000_0000 | (uuid::Uuid::new_v4().as_u128() as u32)
}

/// The immutable id of an item (`Prefer: IdType="ImmutableId"`): its mailbox and key, the
/// same wherever the item moves within the mailbox; a copy is another item with another id.
pub(crate) fn immutable_id(msg: &Message, address: &str) -> String {
    encode_id(b'M', msg.mailbox, Folder::Root, msg.key, address)
}

/// Items created at run time, per (mailbox, folder), in creation order, and the positions of
/// deleted items (generated or created). Positions never move: a deleted item leaves a hole, so
/// the ids and sync states of the other items stay valid.
#[derive(Debug, Default)]
pub(crate) struct Overlay {
    items: Mutex<HashMap<(u32, Folder), Vec<Message>>>,
    deleted: Mutex<HashMap<(u32, Folder), BTreeSet<u32>>>,
    /// Read state changed at run time (IMAP STORE, FETCH of a body), by position.
    read: Mutex<HashMap<(u32, Folder, u32), bool>>,
    /// Attachments of items, by position (generated items have none until one is added).
    attachments: Mutex<HashMap<(u32, Folder, u32), Attachments>>,
    /// Folders created, renamed, moved, deleted or unsubscribed at run time, per mailbox.
    folders: Mutex<HashMap<u32, FolderEdits>>,
}

/// The file attachments of one item and the number the next one gets (numbers only grow, so
/// the id of a removed attachment never names another).
#[derive(Debug, Default, Clone)]
pub(crate) struct Attachments {
    pub next: u32,
    pub list: Vec<Attachment>,
}

/// The run-time changes to a mailbox's folder tree. Created folders are `Folder::Custom(k)`
/// numbers after the generated ones, never reused, so an id of a deleted folder never names
/// another.
#[derive(Debug, Default, Clone)]
pub(crate) struct FolderEdits {
    /// Name and parent of custom folders created, or renamed or moved, at run time.
    pub meta: std::collections::BTreeMap<u8, (String, Folder)>,
    /// Custom folders deleted.
    pub deleted: BTreeSet<u8>,
    /// The next number for a created folder (`None`: right after the generated ones).
    pub next: Option<u8>,
    /// Folders (by code) an IMAP client unsubscribed from; every folder starts subscribed.
    pub unsubscribed: BTreeSet<u8>,
}

impl Overlay {
    /// Sets the read state of position `n`.
    pub(crate) fn set_read(&self, mailbox: u32, folder: Folder, n: u32, read: bool) {
        if let Ok(mut r) = self.read.lock() {
            r.insert((mailbox, folder, n), read);
        }
    }

    /// The read state set at run time for position `n`, if any.
    pub(crate) fn read_state(&self, mailbox: u32, folder: Folder, n: u32) -> Option<bool> {
        self.read
            .lock()
            .ok()
            .and_then(|r| r.get(&(mailbox, folder, n)).copied())
    }

    /// The attachments of position `n`.
    pub(crate) fn attachments(&self, mailbox: u32, folder: Folder, n: u32) -> Vec<Attachment> {
        self.attachments
            .lock()
            .ok()
            .and_then(|a| a.get(&(mailbox, folder, n)).map(|e| e.list.clone()))
            .unwrap_or_default()
    }

    /// Changes the attachments of position `n` with `f`; returns what `f` returns.
    pub(crate) fn edit_attachments<T>(
        &self,
        mailbox: u32,
        folder: Folder,
        n: u32,
        f: impl FnOnce(&mut Attachments) -> T,
    ) -> Option<T> {
        let mut a = self.attachments.lock().ok()?;
        let list = a.entry((mailbox, folder, n)).or_default();
        Some(f(list))
    }

    /// The folder changes of a mailbox.
    /// Reads the folder changes of a mailbox with `f`, under the lock and without copying them
    /// (every item lookup in a generated or created folder asks whether it still exists).
    pub(crate) fn read_folders<T>(&self, mailbox: u32, f: impl FnOnce(&FolderEdits) -> T) -> T {
        static NONE: std::sync::LazyLock<FolderEdits> =
            std::sync::LazyLock::new(FolderEdits::default);
        match self.folders.lock() {
            Ok(all) => f(all.get(&mailbox).unwrap_or(&NONE)),
            Err(_) => f(&NONE),
        }
    }

    /// Changes the folder tree of a mailbox with `f` (under one lock, so checks and changes are
    /// atomic); returns what `f` returns.
    pub(crate) fn edit_folders<T>(
        &self,
        mailbox: u32,
        f: impl FnOnce(&mut FolderEdits) -> T,
    ) -> Option<T> {
        let mut all = self.folders.lock().ok()?;
        Some(f(all.entry(mailbox).or_default()))
    }

    /// Marks position `n` deleted; `false` when it already was.
    pub(crate) fn delete(&self, mailbox: u32, folder: Folder, n: u32) -> bool {
        // The position is gone for good: its attachments go with it.
        if let Ok(mut a) = self.attachments.lock() {
            a.remove(&(mailbox, folder, n));
        }
        self.deleted
            .lock()
            .map(|mut d| d.entry((mailbox, folder)).or_default().insert(n))
            .unwrap_or(false)
    }

    /// Whether position `n` was deleted.
    pub(crate) fn is_deleted(&self, mailbox: u32, folder: Folder, n: u32) -> bool {
        self.deleted
            .lock()
            .map(|d| d.get(&(mailbox, folder)).is_some_and(|s| s.contains(&n)))
            .unwrap_or(false)
    }

    /// Number of deleted positions in a folder.
    pub(crate) fn deleted_count(&self, mailbox: u32, folder: Folder) -> u32 {
        self.deleted
            .lock()
            .map(|d| d.get(&(mailbox, folder)).map_or(0, |s| s.len() as u32))
            .unwrap_or(0)
    }

    /// Deleted positions of a folder, ascending.
    pub(crate) fn deleted_in(&self, mailbox: u32, folder: Folder) -> Vec<u32> {
        self.deleted
            .lock()
            .map(|d| {
                d.get(&(mailbox, folder))
                    .map(|s| s.iter().copied().collect())
                    .unwrap_or_default()
            })
            .unwrap_or_default()
    }

    pub(crate) fn count(&self, mailbox: u32, folder: Folder) -> u32 {
        self.items
            .lock()
            .map(|m| m.get(&(mailbox, folder)).map_or(0, |v| v.len() as u32))
            .unwrap_or(0)
    }

    pub(crate) fn get(&self, mailbox: u32, folder: Folder, k: u32) -> Option<Message> {
        self.items
            .lock()
            .ok()?
            .get(&(mailbox, folder))?
            .get(k as usize)
            .cloned()
    }

    /// Appends a message; `base` is the number of generated messages in the folder. Returns the
    /// stored message with its position set.
    /// Its attachments (numbered from 0) are in place before the item can be seen: the items'
    /// lock is held while they are set (the only place both locks are held, always in this
    /// order).
    pub(crate) fn push(&self, base: u32, mut msg: Message) -> Option<Message> {
        let mut map = self.items.lock().ok()?;
        let list = map.entry((msg.mailbox, msg.folder)).or_default();
        msg.n = base.checked_add(list.len() as u32)?;
        for (k, a) in msg.attachments.iter_mut().enumerate() {
            a.seq = u32::try_from(k).unwrap_or(u32::MAX);
        }
        if !msg.attachments.is_empty() {
            let mut all = self.attachments.lock().ok()?;
            all.insert(
                (msg.mailbox, msg.folder, msg.n),
                Attachments {
                    next: u32::try_from(msg.attachments.len()).unwrap_or(u32::MAX),
                    list: msg.attachments.clone(),
                },
            );
        }
        // The list keeps the fields only; attachments are read from their own map.
        let mut kept = msg.clone();
        kept.attachments = Vec::new();
        list.push(kept);
        Some(msg)
    }
}

/// Formats an instant as EWS/Graph want it (`2025-01-06T08:00:00Z`).
pub(crate) fn iso(t: OffsetDateTime) -> String {
    t.replace_nanosecond(0)
        .unwrap_or(t)
        .format(&Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// Any text given as an attachment id decodes to an item and a number, or to nothing.
        #[test]
        fn attachment_ids_decode_or_are_refused(id in "\\PC{0,60}") {
            let _ = decode_attachment_id(&id);
            let _ = decode_id(&id);
        }
    }

    proptest::proptest! {
        /// The size is the MIME's length, measured without encoding the attachments.
        #[test]
        fn the_size_is_the_length_of_the_mime(
            sizes in proptest::collection::vec(0usize..500, 0..4),
            body in "\\PC{0,80}",
        ) {
            let mbx = Mailbox {
                address: "adele@contoso.com".into(),
                display_name: "Adele".into(),
                tenant_id: "t".into(),
                aliases: Vec::new(),
                provisioned: true,
                licensed: true,
                license: crate::config::LicenseKind::default(),
                ews_enabled: true,
                smtp_auth_enabled: true,
                server: None,
                groups: Vec::new(),
                inbox: 1,
                sent: 0,
                extra_folders: 0,
                extra_folder_messages: 0,
                routing_address: None,
            };
            let mut msg = generated_message(0, &mbx, Folder::Inbox, 0);
            msg.body = body;
            msg.attachments = sizes
                .iter()
                .enumerate()
                .filter_map(|(k, n)| {
                    Attachment::new(&format!("f{k}.bin"), None, vec![7u8; *n], false, None).ok()
                })
                .collect();
            proptest::prop_assert_eq!(msg.size(), msg.mime().len());
        }
    }

    #[test]
    fn an_attachment_id_names_its_item_and_number() {
        let mbx_address = "adele@contoso.com";
        let mut b = id_bytes(b'I', 3, Folder::Drafts, 42, mbx_address);
        b.extend_from_slice(&7u32.to_be_bytes());
        let id = STANDARD.encode(b);
        let (raw, seq) = decode_attachment_id(&graph_id(&id)).expect("decodes");
        assert_eq!(
            (raw.mailbox, raw.folder, raw.n, seq),
            (3, Folder::Drafts, 42, 7)
        );
        assert!(raw.verify(mbx_address));
        assert!(!raw.verify("bob@contoso.com"));
        // An item id is not an attachment id.
        assert!(
            decode_attachment_id(&encode_id(b'I', 3, Folder::Drafts, 42, mbx_address)).is_none()
        );
    }
}
