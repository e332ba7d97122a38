//! EWS synchronisation: SyncFolderHierarchy and SyncFolderItems with their opaque states.

use super::*;

pub(super) fn sync_folder_hierarchy(ctx: &Ctx<'_>, op: &Element) -> String {
    let Some((i, m)) = ctx.mailbox() else {
        return operation_response(
            "SyncFolderHierarchy",
            vec![err("ErrorNonExistentMailbox", NO_MAILBOX)],
        );
    };
    // The subtree under SyncFolderId (default: the whole mailbox).
    let top = match op.child("SyncFolderId").and_then(|s| s.children.first()) {
        None => Folder::Root,
        Some(el) => match folder_ref(ctx, el) {
            FolderRef::Found(j, f) if j == i => f,
            FolderRef::Found(..) => {
                return operation_response(
                    "SyncFolderHierarchy",
                    vec![err(
                        "ErrorAccessDenied",
                        "Access is denied. Check credentials and try again.",
                    )],
                );
            }
            FolderRef::Error(code, text) => {
                return operation_response(
                    "SyncFolderHierarchy",
                    vec![Msg::Err {
                        code,
                        text,
                        tail: "<m:SyncState/><m:IncludesLastFolderInRange>true</m:IncludesLastFolderInRange>".into(),
                    }],
                );
            }
        },
    };
    // The state names the subtree and, for each folder in it, a check value of its name and
    // parent: the next call reports folders created, changed (renamed or moved within the
    // subtree) and deleted since.
    let mut now: Vec<(Folder, u64)> = Vec::new();
    let mut stack = ctx.st.folder_children(i, top);
    stack.reverse();
    while let Some(f) = stack.pop() {
        let parent = ctx.st.folder_parent(i, f).map_or(0, Folder::code);
        let name = ctx.st.folder_name(i, f);
        now.push((f, crate::store::fnv(&[name.as_bytes(), &[parent]])));
        let mut kids = ctx.st.folder_children(i, f);
        kids.reverse();
        stack.extend(kids);
    }
    let head = format!("h|{}|{}|2|", m.address, top.code());
    let listing: Vec<String> = now
        .iter()
        .map(|(f, h)| format!("{}:{:08x}", f.code(), *h as u32))
        .collect();
    let fresh = format!("{head}{}", listing.join(","));
    let bad_state = || {
        operation_response(
            "SyncFolderHierarchy",
            vec![Msg::Err {
                code: "ErrorInvalidSyncStateData",
                text: "Synchronization state data is corrupt or otherwise invalid.".into(),
                tail:
                    "<m:SyncState/><m:IncludesLastFolderInRange>true</m:IncludesLastFolderInRange>"
                        .into(),
            }],
        )
    };
    // Before: folder code -> check value; `None` for a first sync.
    let before: Option<HashMap<u8, String>> =
        match op.child_text("SyncState").filter(|s| !s.is_empty()) {
            None => None,
            Some(s) => {
                let Some(list) =
                    decode_state(s).and_then(|p| p.strip_prefix(&head).map(str::to_owned))
                else {
                    return bad_state();
                };
                let mut map = HashMap::new();
                for e in list.split(',').filter(|e| !e.is_empty()) {
                    let Some((c, h)) = e
                        .split_once(':')
                        .and_then(|(c, h)| Some((c.parse::<u8>().ok()?, h)))
                    else {
                        return bad_state();
                    };
                    map.insert(c, h.to_owned());
                }
                Some(map)
            }
        };
    let mut changes = String::new();
    for ((f, _), entry) in now.iter().zip(&listing) {
        let hash = entry.split_once(':').map_or("", |(_, h)| h);
        match before.as_ref().map(|b| b.get(&f.code())) {
            None | Some(None) => {
                let _ = write!(changes, "<t:Create>{}</t:Create>", folder_xml(ctx, i, *f));
            }
            Some(Some(old)) if old != hash => {
                let _ = write!(changes, "<t:Update>{}</t:Update>", folder_xml(ctx, i, *f));
            }
            Some(Some(_)) => {}
        }
    }
    if let Some(b) = &before {
        let mut gone: Vec<u8> = b
            .keys()
            .copied()
            .filter(|c| !now.iter().any(|(f, _)| f.code() == *c))
            .collect();
        gone.sort_unstable();
        for c in gone {
            if let Some(f) = Folder::from_code(c) {
                let _ = write!(
                    changes,
                    "<t:Delete><t:FolderId Id=\"{}\" ChangeKey=\"{}\"/></t:Delete>",
                    encode_id(b'F', i, f, 0, &m.address),
                    change_key(&m.address, f, u32::MAX)
                );
            }
        }
    }
    operation_response(
        "SyncFolderHierarchy",
        vec![Msg::Ok(format!(
            "<m:SyncState>{}</m:SyncState><m:IncludesLastFolderInRange>true</m:IncludesLastFolderInRange><m:Changes>{changes}</m:Changes>",
            encode_state(&fresh)
        ))],
    )
}

pub(super) fn sync_folder_items(ctx: &Ctx<'_>, op: &Element) -> Result<String, Fault> {
    let max: usize = op
        .child_text("MaxChangesReturned")
        .and_then(|s| s.parse().ok())
        .filter(|n| (1..=512).contains(n))
        .ok_or_else(|| schema_fault("MaxChangesReturned must be an integer from 1 to 512."))?;
    let shape = Shape::from(op, "ItemShape");
    let bad_state = || {
        operation_response(
            "SyncFolderItems",
            vec![Msg::Err {
                code: "ErrorInvalidSyncStateData",
                text: "Synchronization state data is corrupt or otherwise invalid.".into(),
                tail: "<m:SyncState/><m:IncludesLastItemInRange>true</m:IncludesLastItemInRange>"
                    .into(),
            }],
        )
    };
    let Some(fid) = op.child("SyncFolderId").and_then(|s| s.children.first()) else {
        return Err(schema_fault("SyncFolderId is required."));
    };
    let (i, f) = match folder_ref(ctx, fid) {
        FolderRef::Found(i, f) => (i, f),
        FolderRef::Error(code, text) => {
            return Ok(operation_response(
                "SyncFolderItems",
                vec![Msg::Err {
                    code,
                    text,
                    tail:
                        "<m:SyncState/><m:IncludesLastItemInRange>true</m:IncludesLastItemInRange>"
                            .into(),
                }],
            ));
        }
    };
    let Some(mbx) = ctx.st.mailbox(i) else {
        return Ok(bad_state());
    };
    let prefix = format!("i|{}|{}|", mbx.address, f.code());
    let pos: u32 = match op.child_text("SyncState").filter(|s| !s.is_empty()) {
        None => 0,
        Some(s) => match decode_state(s)
            .and_then(|p| p.strip_prefix(&prefix).and_then(|n| n.parse().ok()))
        {
            Some(n) => n,
            None => return Ok(bad_state()),
        },
    };
    let total = ctx.st.slots(i, f);
    if pos > total {
        return Ok(bad_state());
    }
    let end = pos.saturating_add(max as u32).min(total);
    let mut changes = String::new();
    for n in pos..end {
        if let Some(m) = ctx.st.message(i, f, n) {
            let _ = write!(
                changes,
                "<t:Create>{}</t:Create>",
                message_xml(&m, mbx, &shape)
            );
        }
    }
    Ok(operation_response(
        "SyncFolderItems",
        vec![Msg::Ok(format!(
            "<m:SyncState>{}</m:SyncState><m:IncludesLastItemInRange>{}</m:IncludesLastItemInRange><m:Changes>{changes}</m:Changes>",
            encode_state(&format!("{prefix}{end}")),
            end >= total
        ))],
    ))
}
