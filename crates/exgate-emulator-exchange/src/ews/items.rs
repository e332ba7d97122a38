//! EWS item operations: FindItem, GetItem, CreateItem (fields or MIME), DeleteItem, MoveItem,
//! CopyItem, UpdateItem, and the `t:Message` element written in schema order for a shape.

use super::*;

/// Which item properties to write.
pub(super) struct Shape {
    all: bool,
    props: Vec<String>,
    mime: bool,
    body_text: bool,
    /// `t:ExtendedFieldURI` property tags asked for (`PropertyTag`), as numbers.
    extended: Vec<u32>,
}

/// A MAPI property tag as EWS writes it: `0x0E08`, `0xe08` or decimal `3592`.
pub(super) fn property_tag(s: &str) -> Option<u32> {
    let s = s.trim();
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

/// The value and type of a common MAPI property of a message, for `t:ExtendedProperty`; `None`
/// for a property the item does not have (Exchange leaves those out).
pub(super) fn extended_value(
    tag: u32,
    m: &Message,
    mbx: &Mailbox,
) -> Option<(&'static str, String)> {
    Some(match tag {
        // PR_MESSAGE_SIZE
        0x0E08 => ("Integer", m.size().to_string()),
        // PR_MESSAGE_FLAGS: MSGFLAG_READ 0x1, MSGFLAG_UNSENT 0x8
        0x0E07 => (
            "Integer",
            (u32::from(m.is_read) | if m.is_draft { 8 } else { 0 }).to_string(),
        ),
        // PR_INTERNET_ARTICLE_NUMBER: the IMAP UID
        0x0E23 => ("Integer", (m.n + 1).to_string()),
        // PR_INTERNET_MESSAGE_ID
        0x1035 => ("String", esc(&m.internet_message_id).into_owned()),
        // PR_LAST_MODIFICATION_TIME, PR_CREATION_TIME, PR_MESSAGE_DELIVERY_TIME
        0x3008 | 0x3007 | 0x0E06 => ("SystemTime", iso(m.received)),
        // PR_CLIENT_SUBMIT_TIME
        0x0039 => ("SystemTime", iso(m.sent)),
        // PR_SUBJECT
        0x0037 => ("String", esc(&m.subject).into_owned()),
        // PR_ENTRYID: the item id's bytes
        0x0FFF => ("Binary", STANDARD.encode(m.item_id(mbx).as_bytes())),
        _ => return None,
    })
}

impl Shape {
    pub(super) fn from(op: &Element, shape_name: &str) -> Shape {
        let shape = op.child(shape_name);
        let base = shape
            .and_then(|s| s.child_text("BaseShape"))
            .unwrap_or("IdOnly");
        let props: Vec<String> = shape
            .and_then(|s| s.child("AdditionalProperties"))
            .map(|a| {
                a.children
                    .iter()
                    .filter_map(|p| p.attr("FieldURI").map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let mime = props.iter().any(|p| p == "item:MimeContent")
            || shape
                .and_then(|s| s.child_text("IncludeMimeContent"))
                .is_some_and(|v| v == "true" || v == "1");
        let body_text = shape.and_then(|s| s.child_text("BodyType")) == Some("Text");
        let extended = shape
            .and_then(|s| s.child("AdditionalProperties"))
            .map(|a| {
                a.children_named("ExtendedFieldURI")
                    .filter_map(|p| p.attr("PropertyTag").and_then(property_tag))
                    .collect()
            })
            .unwrap_or_default();
        Shape {
            all: base == "Default" || base == "AllProperties",
            props,
            mime,
            body_text,
            extended,
        }
    }

    pub(super) fn want(&self, p: &str) -> bool {
        self.all || self.props.iter().any(|x| x == p)
    }
}

pub(super) fn mailbox_xml(tag: &str, p: &Person) -> String {
    format!(
        "<t:{tag}><t:Mailbox><t:Name>{}</t:Name><t:EmailAddress>{}</t:EmailAddress><t:RoutingType>SMTP</t:RoutingType><t:MailboxType>OneOff</t:MailboxType></t:Mailbox></t:{tag}>",
        esc(&p.name),
        esc(&p.address)
    )
}

pub(super) fn people_xml(tag: &str, v: &[Person]) -> String {
    if v.is_empty() {
        return String::new();
    }
    let mut out = format!("<t:{tag}>");
    for p in v {
        let _ = write!(
            out,
            "<t:Mailbox><t:Name>{}</t:Name><t:EmailAddress>{}</t:EmailAddress><t:RoutingType>SMTP</t:RoutingType><t:MailboxType>OneOff</t:MailboxType></t:Mailbox>",
            esc(&p.name),
            esc(&p.address)
        );
    }
    let _ = write!(out, "</t:{tag}>");
    out
}

/// Writes a `t:Message` in schema order with the properties the shape asks for.
pub(super) fn message_xml(m: &Message, mbx: &Mailbox, shape: &Shape) -> String {
    let mut o = String::with_capacity(1024);
    o.push_str("<t:Message>");
    if shape.mime {
        let _ = write!(
            o,
            "<t:MimeContent CharacterSet=\"UTF-8\">{}</t:MimeContent>",
            STANDARD.encode(m.mime().as_bytes())
        );
    }
    let _ = write!(
        o,
        "<t:ItemId Id=\"{}\" ChangeKey=\"{}\"/>",
        m.item_id(mbx),
        m.change_key(mbx)
    );
    if shape.want("item:ParentFolderId") {
        let _ = write!(
            o,
            "<t:ParentFolderId Id=\"{}\" ChangeKey=\"{}\"/>",
            encode_id(b'F', m.mailbox, m.folder, 0, &mbx.address),
            change_key(&mbx.address, m.folder, u32::MAX)
        );
    }
    if shape.want("item:ItemClass") {
        o.push_str("<t:ItemClass>IPM.Note</t:ItemClass>");
    }
    if shape.want("item:Subject") {
        let _ = write!(o, "<t:Subject>{}</t:Subject>", esc(&m.subject));
    }
    if shape.want("item:Sensitivity") {
        o.push_str("<t:Sensitivity>Normal</t:Sensitivity>");
    }
    if shape.want("item:Body") {
        if shape.body_text {
            let _ = write!(
                o,
                "<t:Body BodyType=\"Text\">{}</t:Body>",
                esc(&m.body_text())
            );
        } else {
            let _ = write!(
                o,
                "<t:Body BodyType=\"HTML\">{}</t:Body>",
                esc(&m.body_html())
            );
        }
    }
    if shape.want("item:Attachments") && !m.attachments.is_empty() {
        o.push_str("<t:Attachments>");
        for a in &m.attachments {
            o.push_str(&file_attachment_xml(a, m, mbx, false));
        }
        o.push_str("</t:Attachments>");
    }
    if shape.want("item:DateTimeReceived") {
        let _ = write!(
            o,
            "<t:DateTimeReceived>{}</t:DateTimeReceived>",
            iso(m.received)
        );
    }
    if shape.want("item:Size") {
        let _ = write!(o, "<t:Size>{}</t:Size>", m.size());
    }
    if shape.want("item:Importance") {
        o.push_str("<t:Importance>Normal</t:Importance>");
    }
    if shape.want("item:IsSubmitted") {
        let _ = write!(
            o,
            "<t:IsSubmitted>{}</t:IsSubmitted>",
            m.folder == Folder::SentItems
        );
    }
    if shape.want("item:IsDraft") {
        let _ = write!(o, "<t:IsDraft>{}</t:IsDraft>", m.is_draft);
    }
    if shape.want("item:IsFromMe") {
        let _ = write!(
            o,
            "<t:IsFromMe>{}</t:IsFromMe>",
            mbx.has_address(&m.from.address)
        );
    }
    if shape.want("item:DateTimeSent") {
        let _ = write!(o, "<t:DateTimeSent>{}</t:DateTimeSent>", iso(m.sent));
    }
    if shape.want("item:DateTimeCreated") {
        let _ = write!(
            o,
            "<t:DateTimeCreated>{}</t:DateTimeCreated>",
            iso(m.received)
        );
    }
    // DisplayCc and DisplayTo: the names, separated by "; ".
    for (tag, people) in [("DisplayCc", &m.cc), ("DisplayTo", &m.to)] {
        if shape.want(&format!("item:{tag}")) {
            let names: Vec<&str> = people.iter().map(|p| p.name.as_str()).collect();
            let _ = write!(o, "<t:{tag}>{}</t:{tag}>", esc(&names.join("; ")));
        }
    }
    if shape.want("item:HasAttachments") {
        let _ = write!(
            o,
            "<t:HasAttachments>{}</t:HasAttachments>",
            m.has_attachments()
        );
    }
    // Extended properties come after HasAttachments in the schema's order; the tag is echoed as
    // Exchange writes it (lower-case hex without leading zeros).
    for tag in &shape.extended {
        if let Some((kind, value)) = extended_value(*tag, m, mbx) {
            let _ = write!(
                o,
                "<t:ExtendedProperty><t:ExtendedFieldURI PropertyTag=\"{tag:#x}\" PropertyType=\"{kind}\"/><t:Value>{value}</t:Value></t:ExtendedProperty>"
            );
        }
    }
    if shape.want("item:Culture") {
        o.push_str("<t:Culture>en-US</t:Culture>");
    }
    if shape.want("item:LastModifiedTime") {
        let _ = write!(
            o,
            "<t:LastModifiedTime>{}</t:LastModifiedTime>",
            iso(m.received)
        );
    }
    if shape.want("item:IsAssociated") {
        o.push_str("<t:IsAssociated>false</t:IsAssociated>");
    }
    if shape.want("item:ConversationId") {
        let cid =
            STANDARD.encode(crate::store::fnv(&[b"conv", m.subject.as_bytes()]).to_be_bytes());
        let _ = write!(o, "<t:ConversationId Id=\"{cid}\"/>");
    }
    if shape.props.iter().any(|p| p == "item:TextBody") {
        let _ = write!(
            o,
            "<t:TextBody BodyType=\"Text\">{}</t:TextBody>",
            esc(&m.body_text())
        );
    }
    if shape.want("message:Sender") {
        o.push_str(&mailbox_xml("Sender", &m.from));
    }
    if shape.want("message:ToRecipients") {
        o.push_str(&people_xml("ToRecipients", &m.to));
    }
    if shape.want("message:CcRecipients") {
        o.push_str(&people_xml("CcRecipients", &m.cc));
    }
    if shape.want("message:IsReadReceiptRequested") {
        o.push_str("<t:IsReadReceiptRequested>false</t:IsReadReceiptRequested>");
    }
    if shape.want("message:IsDeliveryReceiptRequested") {
        o.push_str("<t:IsDeliveryReceiptRequested>false</t:IsDeliveryReceiptRequested>");
    }
    if shape.want("message:ConversationTopic") {
        let _ = write!(
            o,
            "<t:ConversationTopic>{}</t:ConversationTopic>",
            esc(&m.subject)
        );
    }
    if shape.want("message:From") {
        o.push_str(&mailbox_xml("From", &m.from));
    }
    if shape.want("message:InternetMessageId") {
        let _ = write!(
            o,
            "<t:InternetMessageId>{}</t:InternetMessageId>",
            esc(&m.internet_message_id)
        );
    }
    if shape.want("message:IsRead") {
        let _ = write!(o, "<t:IsRead>{}</t:IsRead>", m.is_read);
    }
    o.push_str("</t:Message>");
    o
}

pub(super) fn find_item(ctx: &Ctx<'_>, op: &Element) -> String {
    let shape = Shape::from(op, "ItemShape");
    let descending = op
        .path(&["SortOrder", "FieldOrder"])
        .and_then(|f| f.attr("Order"))
        .is_none_or(|o| o != "Ascending");
    let mut msgs = Vec::new();
    for el in entries(op, "ParentFolderIds") {
        if op.child("Restriction").is_some() || op.child("QueryString").is_some() {
            msgs.push(err(
                "ErrorUnsupportedQueryFilter",
                "Restrictions and query strings are not supported by this server.",
            ));
            continue;
        }
        msgs.push(match folder_ref(ctx, el) {
            FolderRef::Found(i, f) => {
                let total = ctx.st.count(i, f) as usize;
                match paging(op.child("IndexedPageItemView"), total) {
                    Ok((start, max)) => {
                        let end = start.saturating_add(max).min(total);
                        let mut x = String::new();
                        let mut returned = 0usize;
                        if let Some(mbx) = ctx.st.mailbox(i) {
                            for pos in start..end {
                                // Received order follows creation order; descending = newest first.
                                let k = if descending { total - 1 - pos } else { pos };
                                let n = ctx.st.position(i, f, k as u32);
                                if let Some(m) = ctx.st.message(i, f, n) {
                                    x.push_str(&message_xml(&m, mbx, &shape));
                                    returned += 1;
                                }
                            }
                        }
                        let next = start + returned;
                        Msg::Ok(format!(
                            "<m:RootFolder IndexedPagingOffset=\"{next}\" TotalItemsInView=\"{total}\" IncludesLastItemInRange=\"{}\"><t:Items>{x}</t:Items></m:RootFolder>",
                            next >= total
                        ))
                    }
                    Err(a) => err("ErrorInvalidRequest", format!("The request is invalid: bad {a}.")),
                }
            }
            FolderRef::Error(code, text) => err(code, text),
        });
    }
    answer("FindItem", msgs, "ParentFolderIds")
}

pub(super) fn get_item(ctx: &Ctx<'_>, op: &Element) -> String {
    let shape = Shape::from(op, "ItemShape");
    let mut msgs = Vec::new();
    for el in entries(op, "ItemIds") {
        let Some(id) = el.attr("Id") else {
            msgs.push(err("ErrorInvalidIdMalformed", "Id is malformed."));
            continue;
        };
        msgs.push(match resolve_id(ctx, id, b'I') {
            Ok((i, f, n)) => match (ctx.st.message(i, f, n), ctx.st.mailbox(i)) {
                (Some(m), Some(mbx)) => Msg::Ok(format!(
                    "<m:Items>{}</m:Items>",
                    message_xml(&m, mbx, &shape)
                )),
                _ => err(
                    "ErrorItemNotFound",
                    "The specified object was not found in the store.",
                ),
            },
            Err((code, text)) => err(code, text),
        });
    }
    answer("GetItem", msgs, "ItemIds")
}

pub(super) fn persons(el: Option<&Element>) -> Vec<Person> {
    el.map(|e| {
        e.children_named("Mailbox")
            .filter_map(|m| {
                let address = m.child_text("EmailAddress")?.to_owned();
                let name = m
                    .child_text("Name")
                    .map(str::to_owned)
                    .unwrap_or_else(|| address.clone());
                Some(Person { name, address })
            })
            .collect()
    })
    .unwrap_or_default()
}

/// Delivers a copy of `msg` to every local recipient's Inbox.
pub(crate) fn deliver(st: &Inner, msg: &Message) {
    let mut seen = Vec::new();
    for p in msg.to.iter().chain(msg.cc.iter()) {
        if let Some(i) = st.find(&p.address)
            && !seen.contains(&i)
            && st.mailbox(i).is_some_and(|m| m.provisioned)
        {
            seen.push(i);
            let mut copy = msg.clone();
            copy.mailbox = i;
            copy.folder = Folder::Inbox;
            copy.is_read = false;
            copy.is_draft = false;
            let _ = st.store(copy);
        }
    }
}

pub(super) fn create_item(ctx: &Ctx<'_>, op: &Element) -> String {
    let Some((i, mbx)) = ctx.mailbox() else {
        return operation_response(
            "CreateItem",
            vec![err("ErrorNonExistentMailbox", NO_MAILBOX)],
        );
    };
    let disposition = op.attr("MessageDisposition").unwrap_or("SaveOnly");
    let saved_folder = op
        .child("SavedItemFolderId")
        .and_then(|s| s.children.first())
        .map(|el| folder_ref(ctx, el));
    let mut msgs = Vec::new();
    for item in entries(op, "Items") {
        if item.name != "Message" {
            msgs.push(err(
                "ErrorInvalidItemForOperationCreateItem",
                "Only messages can be created on this server.",
            ));
            continue;
        }
        let now = OffsetDateTime::now_utc();
        // The folder asked for: this mailbox's, else the answer for this item.
        let target = match &saved_folder {
            Some(FolderRef::Found(j, f)) if *j == i => Some(*f),
            Some(FolderRef::Found(..)) => {
                msgs.push(err(
                    "ErrorAccessDenied",
                    "Access is denied. Check credentials and try again.",
                ));
                continue;
            }
            Some(FolderRef::Error(code, text)) => {
                msgs.push(Msg::Err {
                    code,
                    text: text.clone(),
                    tail: "<m:Items/>".into(),
                });
                continue;
            }
            None => None,
        };
        // A message given as MIME (an import): its fields come from the MIME.
        if let Some(mime) = item.child("MimeContent") {
            match message_from_mime(i, mbx, &mime.text, item) {
                Ok(msg) => {
                    let mut msg = msg;
                    msg.folder = target.unwrap_or(Folder::Drafts);
                    if disposition != "SaveOnly" {
                        msgs.push(err(
                            "ErrorInvalidRequest",
                            "The request is invalid: a MIME item is created with SaveOnly.",
                        ));
                        continue;
                    }
                    match ctx.st.store(msg) {
                        Some(stored) => msgs.push(Msg::Ok(format!(
                            "<m:Items><t:Message><t:ItemId Id=\"{}\" ChangeKey=\"{}\"/></t:Message></m:Items>",
                            stored.item_id(mbx),
                            stored.change_key(mbx)
                        ))),
                        None => msgs.push(err(
                            "ErrorInternalServerError",
                            "The item could not be saved.",
                        )),
                    }
                }
                Err(e) => msgs.push(e),
            }
            continue;
        }
        let body_el = item.child("Body");
        let attachments = match file_attachments(item.child("Attachments")) {
            Ok(a) => a,
            Err(e) => {
                msgs.push(e);
                continue;
            }
        };
        let msg = Message {
            mailbox: i,
            folder: Folder::Drafts,
            n: 0,
            subject: item.child_text("Subject").unwrap_or_default().to_owned(),
            body: body_el.map(|b| b.text.clone()).unwrap_or_default(),
            body_is_html: body_el.and_then(|b| b.attr("BodyType")) == Some("HTML"),
            from: Person {
                name: mbx.display_name.clone(),
                address: mbx.address.clone(),
            },
            to: persons(item.child("ToRecipients")),
            cc: persons(item.child("CcRecipients")),
            received: now,
            sent: now,
            is_read: true,
            is_draft: disposition == "SaveOnly",
            internet_message_id: format!("<{}@emulator.exgate>", uuid::Uuid::new_v4().simple()),
            key: crate::store::new_key(),
            attachments,
        };
        match disposition {
            "SendOnly" | "SendAndSaveCopy" => {
                if msg.to.is_empty() && msg.cc.is_empty() {
                    msgs.push(Msg::Err {
                        code: "ErrorInvalidRecipients",
                        text: "At least one recipient isn't valid.".into(),
                        tail: "<m:Items/>".into(),
                    });
                    continue;
                }
                deliver(ctx.st, &msg);
                if disposition == "SendAndSaveCopy" {
                    let mut copy = msg.clone();
                    copy.folder = target.unwrap_or(Folder::SentItems);
                    let _ = ctx.st.store(copy);
                }
                msgs.push(Msg::Ok("<m:Items/>".into()));
            }
            "SaveOnly" => {
                let mut copy = msg;
                copy.folder = target.unwrap_or(Folder::Drafts);
                match ctx.st.store(copy) {
                    Some(stored) => msgs.push(Msg::Ok(format!(
                        "<m:Items><t:Message><t:ItemId Id=\"{}\" ChangeKey=\"{}\"/></t:Message></m:Items>",
                        stored.item_id(mbx),
                        stored.change_key(mbx)
                    ))),
                    None => msgs.push(err("ErrorInternalServerError", "The item could not be saved.")),
                }
            }
            _ => msgs.push(err(
                "ErrorInvalidRequest",
                "The request is invalid: bad MessageDisposition.",
            )),
        }
    }
    answer("CreateItem", msgs, "Items")
}

/// `PidTagMessageFlags`: read, and unsent (a draft).
pub(super) const MESSAGE_FLAGS: u32 = 0x0E07;
pub(super) const MSGFLAG_READ: i64 = 0x1;
pub(super) const MSGFLAG_UNSENT: i64 = 0x8;

/// A message imported as MIME (`t:MimeContent`, base64): subject, sender, recipients, body and
/// Internet message id from the MIME; read and draft state from `PidTagMessageFlags` when the
/// item sets it (as Microsoft's "Import items by using EWS" has importers do), else an unsent,
/// read draft.
pub(super) fn message_from_mime(
    i: u32,
    mbx: &Mailbox,
    b64: &str,
    item: &Element,
) -> Result<Message, Msg> {
    let text: Vec<u8> = b64.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    let Ok(mime) = STANDARD.decode(&text) else {
        return Err(err(
            "ErrorMimeContentInvalidBase64String",
            "Invalid base64 string for MIME content.",
        ));
    };
    let parsed = crate::smtp::parse_message(&mime);
    let flags = item
        .children_named("ExtendedProperty")
        .find(|p| {
            p.child("ExtendedFieldURI")
                .and_then(|u| u.attr("PropertyTag"))
                .and_then(property_tag)
                == Some(MESSAGE_FLAGS)
        })
        .and_then(|p| p.child_text("Value"))
        .and_then(|v| v.trim().parse::<i64>().ok());
    Ok(parsed.into_message(
        i,
        mbx,
        Folder::Drafts,
        flags.is_none_or(|f| f & MSGFLAG_READ != 0),
        flags.is_none_or(|f| f & MSGFLAG_UNSENT != 0),
    ))
}

/// DeleteItem: `HardDelete` removes the item (counts, FindItem, GetItem); `SoftDelete` moves it
/// to Recoverable Items\Deletions; `MoveToDeletedItems` to Deleted Items (each removes it when it
/// already is there).
pub(super) fn delete_item(ctx: &Ctx<'_>, op: &Element) -> Result<String, Fault> {
    let kind = match op.attr("DeleteType") {
        Some(k @ ("HardDelete" | "SoftDelete" | "MoveToDeletedItems")) => k,
        Some(other) => {
            return Err(schema_fault(&format!(
                "The 'DeleteType' attribute is invalid - The value '{other}' is invalid according to its datatype 'http://schemas.microsoft.com/exchange/services/2006/types:DisposalType' - The Enumeration constraint failed."
            )));
        }
        None => {
            return Err(schema_fault(
                "The required attribute 'DeleteType' is missing.",
            ));
        }
    };
    let Some(ids) = op.child("ItemIds") else {
        return Err(schema_fault(
            "The element 'DeleteItem' has incomplete content. List of possible elements expected: 'ItemIds'.",
        ));
    };
    let mut msgs = Vec::new();
    for el in &ids.children {
        let Some(id) = el.attr("Id") else {
            msgs.push(err("ErrorInvalidIdMalformed", "Id is malformed."));
            continue;
        };
        msgs.push(match resolve_id(ctx, id, b'I') {
            Ok((i, f, n)) => match ctx.st.delete(i, f, n) {
                Some(mut msg) => {
                    let to = match kind {
                        "MoveToDeletedItems" if f != Folder::DeletedItems => {
                            Some(Folder::DeletedItems)
                        }
                        "SoftDelete" if f != Folder::RecoverableItemsDeletions => {
                            Some(Folder::RecoverableItemsDeletions)
                        }
                        _ => None,
                    };
                    if let Some(to) = to {
                        msg.folder = to;
                        let _ = ctx.st.store(msg);
                    }
                    Msg::Ok(String::new())
                }
                None => err(
                    "ErrorItemNotFound",
                    "The specified object was not found in the store.",
                ),
            },
            Err((code, text)) => err(code, text),
        });
    }
    if msgs.is_empty() {
        return Err(schema_fault(
            "The element 'ItemIds' has incomplete content. List of possible elements expected: 'ItemId'.",
        ));
    }
    Ok(operation_response("DeleteItem", msgs))
}

/// MoveItem and CopyItem: each item (or a copy) goes to `ToFolderId` of the same mailbox; the
/// answer carries the new item's id (Exchange 2010 SP1 and later) unless `ReturnNewItemIds` is
/// false. Ids of moved items change, as Exchange's do (they carry the folder).
pub(super) fn move_or_copy_item(
    ctx: &Ctx<'_>,
    op: &Element,
    name: &str,
    copy: bool,
) -> Result<String, Fault> {
    let Some(to_el) = op.child("ToFolderId").and_then(|t| t.children.first()) else {
        return Err(schema_fault(&format!(
            "The element '{name}' has incomplete content. List of possible elements expected: 'ToFolderId'."
        )));
    };
    let Some(ids) = op.child("ItemIds") else {
        return Err(schema_fault(&format!(
            "The element '{name}' has incomplete content. List of possible elements expected: 'ItemIds'."
        )));
    };
    let return_ids = op.child_text("ReturnNewItemIds") != Some("false");
    let target = folder_ref(ctx, to_el);
    let mut msgs = Vec::new();
    for el in &ids.children {
        let Some(id) = el.attr("Id") else {
            msgs.push(err("ErrorInvalidIdMalformed", "Id is malformed."));
            continue;
        };
        let (i, f, n) = match resolve_id(ctx, id, b'I') {
            Ok(x) => x,
            Err((code, text)) => {
                msgs.push(err(code, text));
                continue;
            }
        };
        let to = match &target {
            FolderRef::Found(j, t) if *j == i => *t,
            FolderRef::Found(..) => {
                msgs.push(err(
                    "ErrorAccessDenied",
                    "Access is denied. Check credentials and try again.",
                ));
                continue;
            }
            FolderRef::Error(code, text) => {
                msgs.push(Msg::Err {
                    code,
                    text: text.clone(),
                    tail: "<m:Items/>".into(),
                });
                continue;
            }
        };
        // A copy is another item (another key); a moved item keeps its key.
        let taken = if copy {
            ctx.st.message(i, f, n).map(|mut m| {
                m.key = crate::store::new_key();
                m
            })
        } else {
            ctx.st.delete(i, f, n)
        };
        let Some(mut msg) = taken else {
            msgs.push(err(
                "ErrorItemNotFound",
                "The specified object was not found in the store.",
            ));
            continue;
        };
        msg.folder = to;
        let Some(mbx) = ctx.st.mailbox(i) else {
            msgs.push(err("ErrorNonExistentMailbox", NO_MAILBOX));
            continue;
        };
        match ctx.st.store(msg) {
            Some(stored) if return_ids => msgs.push(Msg::Ok(format!(
                "<m:Items><t:Message><t:ItemId Id=\"{}\" ChangeKey=\"{}\"/></t:Message></m:Items>",
                stored.item_id(mbx),
                stored.change_key(mbx)
            ))),
            Some(_) => msgs.push(Msg::Ok("<m:Items/>".into())),
            None => msgs.push(err(
                "ErrorInternalServerError",
                "The item could not be saved.",
            )),
        }
    }
    if msgs.is_empty() {
        return Err(schema_fault(
            "The element 'ItemIds' has incomplete content. List of possible elements expected: 'ItemId'.",
        ));
    }
    Ok(operation_response(name, msgs))
}

/// UpdateItem of `message:IsRead` (what mail clients and sync tools send to mark messages read
/// or unread). Other fields are refused with `ErrorInvalidRequest` naming them: the emulator
/// keeps only the read state of an item.
pub(super) fn update_item(ctx: &Ctx<'_>, op: &Element) -> Result<String, Fault> {
    let Some(changes) = op.child("ItemChanges") else {
        return Err(schema_fault(
            "The element 'UpdateItem' has incomplete content. List of possible elements expected: 'ItemChanges'.",
        ));
    };
    let mut msgs = Vec::new();
    for change in &changes.children {
        let Some(id) = change.child("ItemId").and_then(|e| e.attr("Id")) else {
            msgs.push(err("ErrorInvalidIdMalformed", "Id is malformed."));
            continue;
        };
        let (i, f, n) = match resolve_id(ctx, id, b'I') {
            Ok(x) => x,
            Err((code, text)) => {
                msgs.push(err(code, text));
                continue;
            }
        };
        let mut read = None;
        let mut other = None;
        for u in change
            .child("Updates")
            .map(|u| u.children.as_slice())
            .unwrap_or_default()
        {
            let field = u
                .child("FieldURI")
                .and_then(|f| f.attr("FieldURI"))
                .unwrap_or_default();
            match (u.name.as_str(), field) {
                ("SetItemField", "message:IsRead") => {
                    let value = u
                        .child("Message")
                        .and_then(|m| m.child_text("IsRead"))
                        .unwrap_or_default();
                    read = match value {
                        "true" | "1" => Some(true),
                        "false" | "0" => Some(false),
                        _ => {
                            other = Some("message:IsRead (not a boolean)".to_owned());
                            None
                        }
                    };
                }
                (kind, f) => other = Some(format!("{kind} {f}")),
            }
        }
        if let Some(o) = other {
            msgs.push(err(
                "ErrorInvalidRequest",
                format!(
                    "The request is invalid: the emulator updates only message:IsRead, not {o}."
                ),
            ));
            continue;
        }
        let Some(msg) = ctx.st.message(i, f, n) else {
            msgs.push(err(
                "ErrorItemNotFound",
                "The specified object was not found in the store.",
            ));
            continue;
        };
        if let Some(r) = read {
            ctx.st.overlay.set_read(i, f, n, r);
        }
        let Some(mbx) = ctx.st.mailbox(i) else {
            msgs.push(err("ErrorNonExistentMailbox", NO_MAILBOX));
            continue;
        };
        msgs.push(Msg::Ok(format!(
            "<m:Items><t:Message><t:ItemId Id=\"{}\" ChangeKey=\"{}\"/></t:Message></m:Items><m:ConflictResults><t:Count>0</t:Count></m:ConflictResults>",
            msg.item_id(mbx),
            msg.change_key(mbx)
        )));
    }
    if msgs.is_empty() {
        return Err(schema_fault(
            "The element 'ItemChanges' has incomplete content. List of possible elements expected: 'ItemChange'.",
        ));
    }
    Ok(operation_response("UpdateItem", msgs))
}
