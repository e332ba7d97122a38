//! EWS folder operations: GetFolder, FindFolder, CreateFolder, UpdateFolder, MoveFolder,
//! DeleteFolder, and the `t:Folder` element they answer with.

use super::*;

pub(super) fn folder_xml(ctx: &Ctx<'_>, i: u32, f: Folder) -> String {
    let Some(m) = ctx.st.mailbox(i) else {
        return String::new();
    };
    let mut out = String::with_capacity(512);
    let el = f.element();
    let _ = write!(
        out,
        "<t:{el}><t:FolderId Id=\"{}\" ChangeKey=\"{}\"/>",
        encode_id(b'F', i, f, 0, &m.address),
        change_key(&m.address, f, u32::MAX)
    );
    if let Some(p) = ctx.st.folder_parent(i, f) {
        let _ = write!(
            out,
            "<t:ParentFolderId Id=\"{}\" ChangeKey=\"{}\"/>",
            encode_id(b'F', i, p, 0, &m.address),
            change_key(&m.address, p, u32::MAX)
        );
    }
    if let Some(c) = f.class() {
        let _ = write!(out, "<t:FolderClass>{c}</t:FolderClass>");
    }
    let _ = write!(
        out,
        "<t:DisplayName>{}</t:DisplayName><t:TotalCount>{}</t:TotalCount><t:ChildFolderCount>{}</t:ChildFolderCount>",
        esc(&ctx.st.folder_name(i, f)),
        ctx.st.count(i, f),
        ctx.st.folder_children(i, f).len()
    );
    let _ = write!(
        out,
        "<t:EffectiveRights><t:CreateAssociated>true</t:CreateAssociated><t:CreateContents>true</t:CreateContents><t:CreateHierarchy>true</t:CreateHierarchy><t:Delete>true</t:Delete><t:Modify>true</t:Modify><t:Read>true</t:Read><t:ViewPrivateItems>true</t:ViewPrivateItems></t:EffectiveRights>"
    );
    if let Some(d) = f.distinguished() {
        let _ = write!(
            out,
            "<t:DistinguishedFolderId>{d}</t:DistinguishedFolderId>"
        );
    }
    if el == "Folder" {
        let _ = write!(
            out,
            "<t:UnreadCount>{}</t:UnreadCount>",
            ctx.st.unread(i, f)
        );
    }
    let _ = write!(out, "</t:{el}>");
    out
}

/// The answer to a folder change the store refused, with Exchange's response codes
/// (ResponseCodeType of the EWS reference).
pub(super) fn folder_change_error(e: FolderChange, op: &str) -> Msg {
    match e {
        FolderChange::Exists => err(
            "ErrorFolderExists",
            "A folder with the specified name already exists.",
        ),
        FolderChange::NotFound => err(
            "ErrorFolderNotFound",
            "The specified folder could not be found in the store.",
        ),
        FolderChange::ParentNotFound => err(
            "ErrorParentFolderNotFound",
            "The parent folder could not be found in the store.",
        ),
        FolderChange::WellKnown if op == "DeleteFolder" => err(
            "ErrorDeleteDistinguishedFolder",
            "Distinguished folders cannot be deleted.",
        ),
        FolderChange::WellKnown if op == "MoveFolder" => err(
            "ErrorMoveDistinguishedFolder",
            "Distinguished folders cannot be moved.",
        ),
        FolderChange::WellKnown => err(
            "ErrorInvalidRequest",
            "The request is invalid: a distinguished folder keeps its name.",
        ),
        FolderChange::Full => err("ErrorFolderSaveFailed", "The folder save operation failed."),
        FolderChange::InvalidName => err(
            "ErrorFolderSavePropertyError",
            "The folder save operation failed due to invalid property values.",
        ),
    }
}

/// `<m:Folders><t:Folder><t:FolderId .../></t:Folder></m:Folders>` for a created, updated or
/// moved folder.
pub(super) fn folder_id_xml(ctx: &Ctx<'_>, i: u32, f: Folder) -> String {
    let address = ctx
        .st
        .mailbox(i)
        .map(|m| m.address.clone())
        .unwrap_or_default();
    format!(
        "<m:Folders><t:{el}><t:FolderId Id=\"{}\" ChangeKey=\"{}\"/></t:{el}></m:Folders>",
        encode_id(b'F', i, f, 0, &address),
        change_key(&address, f, u32::MAX),
        el = f.element()
    )
}

/// The folder of `m:ParentFolderId` / `m:ToFolderId`.
pub(super) fn target_folder(ctx: &Ctx<'_>, op: &Element, name: &str) -> Result<(u32, Folder), Msg> {
    match op.child(name).and_then(|p| p.children.first()) {
        None => Err(err(
            "ErrorInvalidRequest",
            format!("The request is invalid: no {name}."),
        )),
        Some(el) => match folder_ref(ctx, el) {
            FolderRef::Found(i, f) => Ok((i, f)),
            FolderRef::Error(code, text) => Err(err(code, text)),
        },
    }
}

/// CreateFolder: each `t:Folder` (any folder element) by its `t:DisplayName` under
/// `m:ParentFolderId`.
pub(super) fn create_folder(ctx: &Ctx<'_>, op: &Element) -> String {
    let (i, parent) = match target_folder(ctx, op, "ParentFolderId") {
        Ok(v) => v,
        Err(e) => return operation_response("CreateFolder", vec![e]),
    };
    let mut msgs = Vec::new();
    for f in entries(op, "Folders") {
        let name = f.child_text("DisplayName").unwrap_or_default();
        msgs.push(match ctx.st.create_folder(i, parent, name) {
            Ok(created) => Msg::Ok(folder_id_xml(ctx, i, created)),
            Err(e) => folder_change_error(e, "CreateFolder"),
        });
    }
    answer("CreateFolder", msgs, "Folders")
}

/// DeleteFolder: `HardDelete` and `SoftDelete` remove the folder with what is under it;
/// `MoveToDeletedItems` moves it under Deleted Items.
pub(super) fn delete_folder(ctx: &Ctx<'_>, op: &Element) -> String {
    let to_trash = op.attr("DeleteType") == Some("MoveToDeletedItems");
    let mut msgs = Vec::new();
    for el in entries(op, "FolderIds") {
        msgs.push(match folder_ref(ctx, el) {
            FolderRef::Found(i, f) => {
                let done = if to_trash {
                    let name = ctx.st.folder_name(i, f);
                    ctx.st.rename_folder(i, f, Folder::DeletedItems, &name)
                } else {
                    ctx.st.delete_folder(i, f)
                };
                match done {
                    Ok(()) => Msg::Ok(String::new()),
                    Err(e) => folder_change_error(e, "DeleteFolder"),
                }
            }
            FolderRef::Error(code, text) => err(code, text),
        });
    }
    answer("DeleteFolder", msgs, "FolderIds")
}

/// UpdateFolder: `SetFolderField` of `folder:DisplayName` renames the folder; the other fields
/// are accepted and not kept (the emulator keeps a folder's name and place only).
pub(super) fn update_folder(ctx: &Ctx<'_>, op: &Element) -> String {
    let mut msgs = Vec::new();
    for change in entries(op, "FolderChanges") {
        let Some(id) = change
            .children
            .iter()
            .find(|c| c.name == "FolderId" || c.name == "DistinguishedFolderId")
        else {
            msgs.push(err("ErrorInvalidIdMalformed", "Id is malformed."));
            continue;
        };
        let (i, f) = match folder_ref(ctx, id) {
            FolderRef::Found(i, f) => (i, f),
            FolderRef::Error(code, text) => {
                msgs.push(err(code, text));
                continue;
            }
        };
        let new_name = change
            .child("Updates")
            .map(|u| u.children.as_slice())
            .unwrap_or_default()
            .iter()
            .filter(|u| u.name == "SetFolderField")
            .find(|u| {
                u.child("FieldURI").and_then(|x| x.attr("FieldURI")) == Some("folder:DisplayName")
            })
            .and_then(|u| u.children.iter().find_map(|c| c.child_text("DisplayName")));
        let done = match new_name {
            Some(n) if n != ctx.st.folder_name(i, f) => {
                let parent = ctx.st.folder_parent(i, f).unwrap_or(Folder::MsgFolderRoot);
                ctx.st.rename_folder(i, f, parent, n)
            }
            _ => Ok(()),
        };
        msgs.push(match done {
            Ok(()) => Msg::Ok(folder_id_xml(ctx, i, f)),
            Err(e) => folder_change_error(e, "UpdateFolder"),
        });
    }
    answer("UpdateFolder", msgs, "FolderChanges")
}

/// MoveFolder: each folder of `m:FolderIds` under `m:ToFolderId`, keeping its name and id.
pub(super) fn move_folder(ctx: &Ctx<'_>, op: &Element) -> String {
    let (j, to) = match target_folder(ctx, op, "ToFolderId") {
        Ok(v) => v,
        Err(e) => return operation_response("MoveFolder", vec![e]),
    };
    let mut msgs = Vec::new();
    for el in entries(op, "FolderIds") {
        msgs.push(match folder_ref(ctx, el) {
            FolderRef::Found(i, f) if i == j => {
                let name = ctx.st.folder_name(i, f);
                match ctx.st.rename_folder(i, f, to, &name) {
                    Ok(()) => Msg::Ok(folder_id_xml(ctx, i, f)),
                    Err(e) => folder_change_error(e, "MoveFolder"),
                }
            }
            FolderRef::Found(..) => err(
                "ErrorAccessDenied",
                "Access is denied. Check credentials and try again.",
            ),
            FolderRef::Error(code, text) => err(code, text),
        });
    }
    answer("MoveFolder", msgs, "FolderIds")
}

pub(super) fn get_folder(ctx: &Ctx<'_>, op: &Element) -> String {
    let mut msgs = Vec::new();
    if let Some(ids) = op.child("FolderIds") {
        for el in &ids.children {
            msgs.push(match folder_ref(ctx, el) {
                FolderRef::Found(i, f) => {
                    Msg::Ok(format!("<m:Folders>{}</m:Folders>", folder_xml(ctx, i, f)))
                }
                FolderRef::Error(code, text) => err(code, text),
            });
        }
    }
    answer("GetFolder", msgs, "FolderIds")
}

pub(super) fn paging(view: Option<&Element>, total: usize) -> Result<(usize, usize), &'static str> {
    let Some(v) = view else {
        return Ok((0, total.min(MAX_PAGE)));
    };
    let max = match v.attr("MaxEntriesReturned") {
        Some(s) => s
            .trim()
            .parse::<usize>()
            .map_err(|_| "MaxEntriesReturned")?,
        None => MAX_PAGE,
    }
    .min(MAX_PAGE);
    let offset = match v.attr("Offset") {
        Some(s) => s.trim().parse::<usize>().map_err(|_| "Offset")?,
        None => 0,
    };
    let start = if v.attr("BasePoint") == Some("End") {
        total.saturating_sub(offset.saturating_add(max))
    } else {
        offset
    };
    Ok((start, max))
}

pub(super) fn find_folder(ctx: &Ctx<'_>, op: &Element) -> String {
    let deep = op.attr("Traversal") == Some("Deep");
    let mut msgs = Vec::new();
    for el in entries(op, "ParentFolderIds") {
        msgs.push(match folder_ref(ctx, el) {
            FolderRef::Found(i, f) => {
                let mut all = Vec::new();
                let mut stack: Vec<Folder> = ctx.st.folder_children(i, f);
                stack.reverse();
                while let Some(c) = stack.pop() {
                    all.push(c);
                    if deep {
                        let mut kids: Vec<Folder> = ctx.st.folder_children(i, c);
                        kids.reverse();
                        stack.extend(kids);
                    }
                }
                match paging(op.child("IndexedPageFolderView"), all.len()) {
                    Ok((start, max)) => {
                        let page: Vec<&Folder> = all.iter().skip(start).take(max).collect();
                        let end = start + page.len();
                        let mut x = format!(
                            "<m:RootFolder IndexedPagingOffset=\"{end}\" TotalItemsInView=\"{}\" IncludesLastItemInRange=\"{}\"><t:Folders>",
                            all.len(),
                            end >= all.len()
                        );
                        for c in page {
                            x.push_str(&folder_xml(ctx, i, *c));
                        }
                        x.push_str("</t:Folders></m:RootFolder>");
                        Msg::Ok(x)
                    }
                    Err(a) => err("ErrorInvalidRequest", format!("The request is invalid: bad {a}.")),
                }
            }
            FolderRef::Error(code, text) => err(code, text),
        });
    }
    answer("FindFolder", msgs, "ParentFolderIds")
}
