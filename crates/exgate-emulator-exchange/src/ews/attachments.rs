//! EWS file attachments: `t:FileAttachment`, GetAttachment, CreateAttachment, DeleteAttachment.

use super::*;

/// An attachment id of the caller's mailbox: the item's mailbox, folder and position, and the
/// attachment's number. Exchange's `ErrorInvalidAttachmentId` for an id that does not decode.
fn resolve_attachment_id(ctx: &Ctx<'_>, id: &str) -> AttachmentRef {
    let (raw, seq) = decode_attachment_id(id)
        .ok_or(("ErrorInvalidAttachmentId", INVALID_ATTACHMENT_ID.to_owned()))?;
    ctx.st
        .mailbox(raw.mailbox)
        .filter(|m| raw.verify(&m.address))
        .ok_or(("ErrorInvalidAttachmentId", INVALID_ATTACHMENT_ID.to_owned()))?;
    if ctx.mbx != Some(raw.mailbox) {
        return Err((
            "ErrorAccessDenied",
            "Access is denied. Check credentials and try again.".to_owned(),
        ));
    }
    Ok((raw.mailbox, raw.folder, raw.n, seq))
}

/// A `t:FileAttachment`: id, name, type, content id, size, time, inline flag, and with
/// `content` the base64 `t:Content` (GetAttachment).
pub(super) fn file_attachment_xml(
    a: &Attachment,
    m: &Message,
    mbx: &Mailbox,
    content: bool,
) -> String {
    let mut o = format!(
        "<t:FileAttachment><t:AttachmentId Id=\"{}\"/><t:Name>{}</t:Name><t:ContentType>{}</t:ContentType>",
        a.id(m, mbx),
        esc(&a.name),
        esc(&a.content_type)
    );
    if let Some(cid) = &a.content_id {
        let _ = write!(o, "<t:ContentId>{}</t:ContentId>", esc(cid));
    }
    let _ = write!(
        o,
        "<t:Size>{}</t:Size><t:LastModifiedTime>{}</t:LastModifiedTime><t:IsInline>{}</t:IsInline><t:IsContactPhoto>false</t:IsContactPhoto>",
        a.content.len(),
        iso(a.modified).trim_end_matches('Z'),
        a.is_inline
    );
    if content {
        let _ = write!(o, "<t:Content>{}</t:Content>", STANDARD.encode(&a.content));
    }
    o.push_str("</t:FileAttachment>");
    o
}

/// File attachments given in an item or a CreateAttachment (`t:FileAttachment` with `t:Name`,
/// base64 `t:Content`, optional `t:ContentType`, `t:ContentId`, `t:IsInline`).
pub(super) fn file_attachments(list: Option<&Element>) -> Result<Vec<Attachment>, Msg> {
    let Some(list) = list else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for el in &list.children {
        if el.name != "FileAttachment" {
            return Err(err(
                "ErrorInvalidRequest",
                format!(
                    "The request is invalid: attachments of type '{}' are not supported.",
                    el.name
                ),
            ));
        }
        let text: Vec<u8> = el
            .child_text("Content")
            .unwrap_or_default()
            .bytes()
            .filter(|b| !b.is_ascii_whitespace())
            .collect();
        let Ok(content) = STANDARD.decode(&text) else {
            return Err(err(
                "ErrorInvalidRequest",
                "The request is invalid: the attachment content is not base64.",
            ));
        };
        let attachment = Attachment::new(
            el.child_text("Name").unwrap_or_default(),
            el.child_text("ContentType"),
            content,
            el.child_text("IsInline")
                .is_some_and(|v| v.trim() == "true"),
            el.child_text("ContentId"),
        )
        .map_err(|e| {
            let what = match e {
                AttachmentRefusal::Name => "an attachment has no valid name",
                AttachmentRefusal::ContentType => "an attachment's ContentType is not valid",
                AttachmentRefusal::ContentId => "an attachment's ContentId is not valid",
            };
            err(
                "ErrorInvalidRequest",
                format!("The request is invalid: {what}."),
            )
        })?;
        out.push(attachment);
    }
    Ok(out)
}

/// Exchange's answer for an id that does not name an attachment.
const INVALID_ATTACHMENT_ID: &str = "The attachment id is invalid.";

/// An attachment an id names: its item (mailbox, folder, position) and its number, or the code
/// and text to answer.
type AttachmentRef = Result<(u32, Folder, u32, u32), (&'static str, String)>;

/// The attachments an operation's `m:AttachmentIds` name, one per `t:AttachmentId`.
fn attachment_refs(ctx: &Ctx<'_>, op: &Element) -> Vec<AttachmentRef> {
    entries(op, "AttachmentIds")
        .iter()
        .map(|e| {
            e.attr("Id")
                .ok_or(("ErrorInvalidAttachmentId", INVALID_ATTACHMENT_ID.to_owned()))
                .and_then(|id| resolve_attachment_id(ctx, id))
        })
        .collect()
}

/// GetAttachment: each file attachment with its content.
pub(super) fn get_attachment(ctx: &Ctx<'_>, op: &Element) -> String {
    let mut msgs = Vec::new();
    for found in attachment_refs(ctx, op) {
        msgs.push(match found {
            Ok((i, f, n, seq)) => {
                let msg = ctx.st.message(i, f, n);
                let mbx = ctx.st.mailbox(i);
                match (msg, mbx) {
                    (Some(m), Some(mbx)) => match m.attachments.iter().find(|a| a.seq == seq) {
                        Some(a) => Msg::Ok(format!(
                            "<m:Attachments>{}</m:Attachments>",
                            file_attachment_xml(a, &m, mbx, true)
                        )),
                        None => err("ErrorInvalidAttachmentId", INVALID_ATTACHMENT_ID),
                    },
                    _ => err(
                        "ErrorItemNotFound",
                        "The specified object was not found in the store.",
                    ),
                }
            }
            Err((code, text)) => err(code, text),
        });
    }
    answer("GetAttachment", msgs, "AttachmentIds")
}

/// CreateAttachment: file attachments added to the item `m:ParentItemId` names; one response
/// message per attachment, with its id and the item's id and change key (the emulator's change
/// keys follow an item's place, not its edits).
pub(super) fn create_attachment(ctx: &Ctx<'_>, op: &Element) -> String {
    let parent = op.child("ParentItemId").and_then(|p| p.attr("Id"));
    let found = parent
        .ok_or(("ErrorInvalidIdMalformed", "Id is malformed.".to_owned()))
        .and_then(|id| resolve_id(ctx, id, b'I'));
    let (i, f, n) = match found {
        Ok(v) => v,
        Err((code, text)) => return operation_response("CreateAttachment", vec![err(code, text)]),
    };
    let (Some(mbx), Some(_)) = (ctx.st.mailbox(i), ctx.st.message(i, f, n)) else {
        return operation_response(
            "CreateAttachment",
            vec![err(
                "ErrorItemNotFound",
                "The specified object was not found in the store.",
            )],
        );
    };
    let atts = match file_attachments(op.child("Attachments")) {
        Ok(a) if !a.is_empty() => a,
        Ok(_) => {
            return operation_response(
                "CreateAttachment",
                vec![err(
                    "ErrorInvalidRequest",
                    "The request is invalid: no Attachments.",
                )],
            );
        }
        Err(e) => return operation_response("CreateAttachment", vec![e]),
    };
    let mut msgs = Vec::new();
    for a in atts {
        msgs.push(match ctx.st.add_attachment(i, f, n, a) {
            Some((m, a)) => Msg::Ok(format!(
                "<m:Attachments><t:FileAttachment><t:AttachmentId Id=\"{}\" RootItemId=\"{}\" RootItemChangeKey=\"{}\"/></t:FileAttachment></m:Attachments>",
                a.id(&m, mbx),
                m.item_id(mbx),
                m.change_key(mbx)
            )),
            None => err(
                "ErrorItemNotFound",
                "The specified object was not found in the store.",
            ),
        });
    }
    operation_response("CreateAttachment", msgs)
}

/// DeleteAttachment: each attachment removed; the answer names its item.
pub(super) fn delete_attachment(ctx: &Ctx<'_>, op: &Element) -> String {
    let mut msgs = Vec::new();
    for found in attachment_refs(ctx, op) {
        msgs.push(match found {
            Ok((i, f, n, seq)) if ctx.st.delete_attachment(i, f, n, seq) => {
                match (ctx.st.message(i, f, n), ctx.st.mailbox(i)) {
                    (Some(m), Some(mbx)) => Msg::Ok(format!(
                        "<m:RootItemId RootItemId=\"{}\" RootItemChangeKey=\"{}\"/>",
                        m.item_id(mbx),
                        m.change_key(mbx)
                    )),
                    _ => err(
                        "ErrorItemNotFound",
                        "The specified object was not found in the store.",
                    ),
                }
            }
            Ok(_) => err("ErrorInvalidAttachmentId", INVALID_ATTACHMENT_ID),
            Err((code, text)) => err(code, text),
        });
    }
    answer("DeleteAttachment", msgs, "AttachmentIds")
}
