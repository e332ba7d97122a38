//! EWS lookups: ConvertId and ResolveNames.

use super::*;

pub(super) fn convert_id(ctx: &Ctx<'_>, op: &Element) -> String {
    let dest = op.attr("DestinationFormat").unwrap_or("EwsId");
    let mut msgs = Vec::new();
    for el in entries(op, "SourceIds") {
        let id = el.attr("Id").unwrap_or_default();
        let format = el.attr("Format").unwrap_or("EwsId");
        let raw_id = match format {
            "EwsId" | "EwsLegacyId" => Some(id.to_owned()),
            "EntryId" => STANDARD
                .decode(id.as_bytes())
                .ok()
                .map(|b| STANDARD.encode(b)),
            "HexEntryId" => hex_decode(id).map(|b| STANDARD.encode(b)),
            _ => None,
        };
        let decoded = raw_id.as_deref().and_then(decode_id).and_then(|r| {
            ctx.st
                .mailbox(r.mailbox)
                .filter(|m| r.verify(&m.address))
                .map(|m| (r, m))
        });
        msgs.push(match decoded {
            Some((r, m)) if ctx.mbx == Some(r.mailbox) => {
                let ews = encode_id(r.kind, r.mailbox, r.folder, r.n, &m.address);
                let out = match dest {
                    "HexEntryId" => STANDARD
                        .decode(ews.as_bytes())
                        .map(|b| b.iter().map(|x| format!("{x:02X}")).collect::<String>())
                        .unwrap_or_default(),
                    _ => ews,
                };
                Msg::Ok(format!(
                    "<m:AlternateId xsi:type=\"t:AlternateIdType\" Format=\"{}\" Id=\"{}\" Mailbox=\"{}\"/>",
                    esc(dest),
                    esc(&out),
                    esc(&m.address)
                ))
            }
            Some(_) => err("ErrorAccessDenied", "Access is denied. Check credentials and try again."),
            None => err("ErrorInvalidIdMalformed", "Id is malformed."),
        });
    }
    answer("ConvertId", msgs, "SourceIds")
}

pub(super) fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect()
}

pub(super) fn resolve_names(ctx: &Ctx<'_>, op: &Element) -> String {
    let entry = op
        .child_text("UnresolvedEntry")
        .unwrap_or_default()
        .trim_start_matches("smtp:")
        .trim_start_matches("SMTP:")
        .to_ascii_lowercase();
    if entry.is_empty() {
        return operation_response(
            "ResolveNames",
            vec![err(
                "ErrorNameResolutionNoResults",
                "No results were found.",
            )],
        );
    }
    let tenant = ctx.principal.tenant_id();
    let matches: Vec<&Mailbox> = ctx
        .st
        .mailboxes
        .iter()
        .filter(|m| m.tenant_id == tenant && m.provisioned)
        .filter(|m| {
            m.has_address(&entry)
                || m.address.starts_with(&entry)
                || m.display_name.to_ascii_lowercase().contains(&entry)
        })
        .take(100)
        .collect();
    let set = |ms: &[&Mailbox]| {
        let mut x = format!(
            "<m:ResolutionSet TotalItemsInView=\"{}\" IncludesLastItemInRange=\"true\">",
            ms.len()
        );
        for m in ms {
            let _ = write!(
                x,
                "<t:Resolution><t:Mailbox><t:Name>{}</t:Name><t:EmailAddress>{}</t:EmailAddress><t:RoutingType>SMTP</t:RoutingType><t:MailboxType>Mailbox</t:MailboxType></t:Mailbox><t:Contact><t:DisplayName>{}</t:DisplayName><t:EmailAddresses><t:Entry Key=\"EmailAddress1\">SMTP:{}</t:Entry></t:EmailAddresses><t:ContactSource>ActiveDirectory</t:ContactSource></t:Contact></t:Resolution>",
                esc(&m.display_name),
                esc(&m.address),
                esc(&m.display_name),
                esc(&m.address)
            );
        }
        x.push_str("</m:ResolutionSet>");
        x
    };
    let msg = match matches.len() {
        0 => err("ErrorNameResolutionNoResults", "No results were found."),
        1 => Msg::Ok(set(&matches)),
        _ => Msg::Warn {
            code: "ErrorNameResolutionMultipleResults",
            text: "Multiple results were found.".into(),
            content: set(&matches),
        },
    };
    operation_response("ResolveNames", vec![msg])
}
