//! EWS operations: a pure request builder and a pure response reader for each.
//!
//! Covered: GetFolder, FindFolder, FindItem (indexed paging), GetItem (MIME content),
//! SyncFolderHierarchy, SyncFolderItems, CreateItem, DeleteItem, ConvertId, ResolveNames.
//! Reference: <https://learn.microsoft.com/exchange/client-developer/web-service-reference/ews-operations-in-exchange>.
//! Element order follows the schema, since Exchange validates requests strictly.

use base64::Engine as _;
use serde::Serialize;

use crate::xml::{Element, esc};

/// Distinguished folder ids accepted by [`FolderRef::named`].
pub const DISTINGUISHED_FOLDERS: &[&str] = &[
    "root",
    "msgfolderroot",
    "inbox",
    "sentitems",
    "deleteditems",
    "drafts",
    "outbox",
    "junkemail",
    "calendar",
    "contacts",
    "tasks",
    "notes",
    "journal",
    "archiveroot",
    "archivemsgfolderroot",
    "publicfoldersroot",
    "recoverableitemsroot",
    "recoverableitemsdeletions",
    "searchfolders",
    "voicemail",
    "conversationhistory",
];

/// A folder reference in a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FolderRef {
    /// `t:DistinguishedFolderId`, optionally in another mailbox.
    Distinguished {
        /// The id, e.g. `inbox`.
        id: String,
        /// `t:Mailbox/t:EmailAddress`.
        mailbox: Option<String>,
    },
    /// `t:FolderId`.
    Id {
        /// The EWS folder id.
        id: String,
        /// Optional change key.
        change_key: Option<String>,
    },
}

impl FolderRef {
    /// A distinguished id when `name` is one (case-insensitive), otherwise a folder id.
    pub fn named(name: &str, mailbox: Option<&str>) -> Self {
        let lower = name.to_ascii_lowercase();
        if DISTINGUISHED_FOLDERS.contains(&lower.as_str()) {
            FolderRef::Distinguished {
                id: lower,
                mailbox: mailbox.map(str::to_owned),
            }
        } else {
            FolderRef::Id {
                id: name.to_owned(),
                change_key: None,
            }
        }
    }

    /// The XML element.
    pub fn xml(&self) -> String {
        match self {
            FolderRef::Distinguished { id, mailbox: None } => {
                format!("<t:DistinguishedFolderId Id=\"{}\"/>", esc(id))
            }
            FolderRef::Distinguished {
                id,
                mailbox: Some(mb),
            } => format!(
                "<t:DistinguishedFolderId Id=\"{}\"><t:Mailbox><t:EmailAddress>{}</t:EmailAddress><t:RoutingType>SMTP</t:RoutingType><t:MailboxType>Mailbox</t:MailboxType></t:Mailbox></t:DistinguishedFolderId>",
                esc(id),
                esc(mb)
            ),
            FolderRef::Id {
                id,
                change_key: None,
            } => format!("<t:FolderId Id=\"{}\"/>", esc(id)),
            FolderRef::Id {
                id,
                change_key: Some(ck),
            } => format!("<t:FolderId Id=\"{}\" ChangeKey=\"{}\"/>", esc(id), esc(ck)),
        }
    }
}

/// An item id with its change key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ItemId {
    /// `Id`.
    pub id: String,
    /// `ChangeKey`.
    pub change_key: Option<String>,
}

impl ItemId {
    fn xml(&self) -> String {
        match &self.change_key {
            Some(ck) => format!(
                "<t:ItemId Id=\"{}\" ChangeKey=\"{}\"/>",
                esc(&self.id),
                esc(ck)
            ),
            None => format!("<t:ItemId Id=\"{}\"/>", esc(&self.id)),
        }
    }

    fn from_element(e: &Element) -> Option<Self> {
        Some(ItemId {
            id: e.attr("Id").filter(|s| !s.is_empty())?.to_owned(),
            change_key: e.attr("ChangeKey").map(str::to_owned),
        })
    }
}

/// A folder as GetFolder/FindFolder/SyncFolderHierarchy return it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Folder {
    /// `FolderId/@Id`.
    pub id: String,
    /// `FolderId/@ChangeKey`.
    pub change_key: Option<String>,
    /// `ParentFolderId/@Id`.
    pub parent_id: Option<String>,
    /// `DisplayName`.
    pub display_name: Option<String>,
    /// `FolderClass`, e.g. `IPF.Note`.
    pub folder_class: Option<String>,
    /// `TotalCount`.
    pub total_count: Option<u64>,
    /// `ChildFolderCount`.
    pub child_folder_count: Option<u64>,
    /// `UnreadCount`.
    pub unread_count: Option<u64>,
    /// `DistinguishedFolderId`, when the server sends it.
    pub distinguished_id: Option<String>,
}

const FOLDER_ELEMENTS: &[&str] = &[
    "Folder",
    "CalendarFolder",
    "ContactsFolder",
    "SearchFolder",
    "TasksFolder",
];

fn count(e: &Element, name: &str) -> Option<u64> {
    e.child_text(name).and_then(|t| t.parse().ok())
}

/// Reads one folder element (`t:Folder`, `t:CalendarFolder`, ...).
pub fn parse_folder(e: &Element) -> Option<Folder> {
    let fid = e.child("FolderId")?;
    Some(Folder {
        id: fid.attr("Id")?.to_owned(),
        change_key: fid.attr("ChangeKey").map(str::to_owned),
        parent_id: e
            .child("ParentFolderId")
            .and_then(|p| p.attr("Id"))
            .map(str::to_owned),
        display_name: e.child_text("DisplayName"),
        folder_class: e.child_text("FolderClass"),
        total_count: count(e, "TotalCount"),
        child_folder_count: count(e, "ChildFolderCount"),
        unread_count: count(e, "UnreadCount"),
        distinguished_id: e.child_text("DistinguishedFolderId"),
    })
}

fn folders_in(container: Option<&Element>) -> Vec<Folder> {
    container
        .map(|c| {
            c.children
                .iter()
                .filter(|f| FOLDER_ELEMENTS.contains(&f.name.as_str()))
                .filter_map(parse_folder)
                .collect()
        })
        .unwrap_or_default()
}

const FOLDER_SHAPE: &str = "<m:FolderShape><t:BaseShape>IdOnly</t:BaseShape><t:AdditionalProperties><t:FieldURI FieldURI=\"folder:ChildFolderCount\"/><t:FieldURI FieldURI=\"folder:DisplayName\"/><t:FieldURI FieldURI=\"folder:FolderClass\"/><t:FieldURI FieldURI=\"folder:ParentFolderId\"/><t:FieldURI FieldURI=\"folder:TotalCount\"/><t:FieldURI FieldURI=\"folder:UnreadCount\"/></t:AdditionalProperties></m:FolderShape>";

/// GetFolder request body.
pub fn get_folder(folders: &[FolderRef]) -> String {
    let ids: String = folders.iter().map(FolderRef::xml).collect();
    format!("<m:GetFolder>{FOLDER_SHAPE}<m:FolderIds>{ids}</m:FolderIds></m:GetFolder>")
}

/// Reads the folders of one GetFolder response message.
pub fn read_get_folder(message: &Element) -> Vec<Folder> {
    folders_in(message.child("Folders"))
}

/// FindFolder traversal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Traversal {
    /// Direct children.
    Shallow,
    /// All descendants.
    Deep,
}

/// FindFolder request body with indexed paging.
pub fn find_folder(parent: &FolderRef, traversal: Traversal, offset: u32, max: u32) -> String {
    let t = match traversal {
        Traversal::Shallow => "Shallow",
        Traversal::Deep => "Deep",
    };
    format!(
        "<m:FindFolder Traversal=\"{t}\">{FOLDER_SHAPE}<m:IndexedPageFolderView MaxEntriesReturned=\"{max}\" Offset=\"{offset}\" BasePoint=\"Beginning\"/><m:ParentFolderIds>{}</m:ParentFolderIds></m:FindFolder>",
        parent.xml()
    )
}

/// Paging values of a `m:RootFolder` (FindFolder, FindItem).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Paging {
    /// `IndexedPagingOffset`: where the next page starts.
    pub next_offset: Option<u32>,
    /// `TotalItemsInView`.
    pub total: Option<u64>,
    /// `IncludesLastItemInRange` (`true` or `1` ends paging).
    pub last: bool,
}

fn paging(root: &Element) -> Paging {
    Paging {
        next_offset: root
            .attr("IndexedPagingOffset")
            .and_then(|v| v.parse().ok()),
        total: root.attr("TotalItemsInView").and_then(|v| v.parse().ok()),
        last: matches!(
            root.attr("IncludesLastItemInRange").map(str::trim),
            Some("true" | "1") | None
        ),
    }
}

/// Reads a FindFolder response message.
pub fn read_find_folder(message: &Element) -> (Vec<Folder>, Paging) {
    let root = message.child("RootFolder");
    let folders = folders_in(root.and_then(|r| r.child("Folders")));
    (folders, root.map(paging).unwrap_or_default())
}

/// FindItem request body: ids only, newest first, indexed paging.
pub fn find_item(parent: &FolderRef, offset: u32, max: u32) -> String {
    format!(
        "<m:FindItem Traversal=\"Shallow\"><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape></m:ItemShape><m:IndexedPageItemView MaxEntriesReturned=\"{max}\" Offset=\"{offset}\" BasePoint=\"Beginning\"/><m:SortOrder><t:FieldOrder Order=\"Descending\"><t:FieldURI FieldURI=\"item:DateTimeReceived\"/></t:FieldOrder></m:SortOrder><m:ParentFolderIds>{}</m:ParentFolderIds></m:FindItem>",
        parent.xml()
    )
}

fn item_ids_in(container: Option<&Element>) -> Vec<ItemId> {
    container
        .map(|c| {
            c.children
                .iter()
                .filter_map(|item| item.child("ItemId").and_then(ItemId::from_element))
                .collect()
        })
        .unwrap_or_default()
}

/// Reads a FindItem response message.
pub fn read_find_item(message: &Element) -> (Vec<ItemId>, Paging) {
    let root = message.child("RootFolder");
    let ids = item_ids_in(root.and_then(|r| r.child("Items")));
    (ids, root.map(paging).unwrap_or_default())
}

/// GetItem request body asking for the MIME content only.
pub fn get_item_mime(ids: &[ItemId]) -> String {
    let ids: String = ids.iter().map(ItemId::xml).collect();
    format!(
        "<m:GetItem><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape><t:IncludeMimeContent>true</t:IncludeMimeContent></m:ItemShape><m:ItemIds>{ids}</m:ItemIds></m:GetItem>"
    )
}

/// Reads the decoded MIME content of one GetItem response message. `Err` names what is wrong.
pub fn read_get_item_mime(message: &Element) -> Result<Vec<u8>, &'static str> {
    let item = message
        .child("Items")
        .and_then(|i| i.children.first())
        .ok_or("no item in the GetItem response")?;
    let mime = item
        .child("MimeContent")
        .ok_or("the item has no MimeContent")?;
    let compact: String = mime.text.chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(compact.as_bytes())
        .map_err(|_| "MimeContent is not valid base64")
}

/// Changes reported by SyncFolderHierarchy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HierarchySync {
    /// The new `SyncState`.
    pub sync_state: String,
    /// `IncludesLastFolderInRange`.
    pub last: bool,
    /// Created or updated folders.
    pub changed: Vec<Folder>,
    /// Deleted folder ids.
    pub deleted: Vec<String>,
}

/// SyncFolderHierarchy request body (whole mailbox).
pub fn sync_folder_hierarchy(state: Option<&str>) -> String {
    let state = state
        .map(|s| format!("<m:SyncState>{}</m:SyncState>", esc(s)))
        .unwrap_or_default();
    format!("<m:SyncFolderHierarchy>{FOLDER_SHAPE}{state}</m:SyncFolderHierarchy>")
}

/// Reads a SyncFolderHierarchy response message.
pub fn read_sync_folder_hierarchy(message: &Element) -> HierarchySync {
    let mut out = HierarchySync {
        sync_state: message.child_text("SyncState").unwrap_or_default(),
        last: message.child_text("IncludesLastFolderInRange").as_deref() != Some("false"),
        ..HierarchySync::default()
    };
    if let Some(changes) = message.child("Changes") {
        for c in &changes.children {
            match c.name.as_str() {
                "Create" | "Update" => out.changed.extend(folders_in(Some(c))),
                "Delete" => {
                    if let Some(id) = c.child("FolderId").and_then(|f| f.attr("Id")) {
                        out.deleted.push(id.to_owned());
                    }
                }
                _ => {}
            }
        }
    }
    out
}

/// Changes reported by SyncFolderItems.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ItemSync {
    /// The new `SyncState`.
    pub sync_state: String,
    /// `IncludesLastItemInRange`.
    pub last: bool,
    /// Created items.
    pub created: Vec<ItemId>,
    /// Updated items.
    pub updated: Vec<ItemId>,
    /// Deleted items.
    pub deleted: Vec<ItemId>,
    /// Read-flag changes (id, is read).
    pub read_flag: Vec<(ItemId, bool)>,
}

/// SyncFolderItems request body (`MaxChangesReturned` clamped to 1..=512).
pub fn sync_folder_items(folder: &FolderRef, state: Option<&str>, max: u32) -> String {
    let state = state
        .map(|s| format!("<m:SyncState>{}</m:SyncState>", esc(s)))
        .unwrap_or_default();
    format!(
        "<m:SyncFolderItems><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape></m:ItemShape><m:SyncFolderId>{}</m:SyncFolderId>{state}<m:MaxChangesReturned>{}</m:MaxChangesReturned><m:SyncScope>NormalItems</m:SyncScope></m:SyncFolderItems>",
        folder.xml(),
        max.clamp(1, 512)
    )
}

/// Reads a SyncFolderItems response message (the `SyncState` is read even on errors).
pub fn read_sync_folder_items(message: &Element) -> ItemSync {
    let mut out = ItemSync {
        sync_state: message.child_text("SyncState").unwrap_or_default(),
        last: message.child_text("IncludesLastItemInRange").as_deref() != Some("false"),
        ..ItemSync::default()
    };
    if let Some(changes) = message.child("Changes") {
        for c in &changes.children {
            let nested = || {
                c.children
                    .iter()
                    .find_map(|i| i.child("ItemId").and_then(ItemId::from_element))
            };
            match c.name.as_str() {
                "Create" => out.created.extend(nested()),
                "Update" => out.updated.extend(nested()),
                "Delete" => out
                    .deleted
                    .extend(c.child("ItemId").and_then(ItemId::from_element)),
                "ReadFlagChange" => {
                    if let Some(id) = c.child("ItemId").and_then(ItemId::from_element) {
                        let read = c.child_text("IsRead").as_deref() == Some("true");
                        out.read_flag.push((id, read));
                    }
                }
                _ => {}
            }
        }
    }
    out
}

/// CreateItem request body: a plain-text message saved (not sent) in `folder`.
pub fn create_item(folder: &FolderRef, subject: &str, body: &str) -> String {
    format!(
        "<m:CreateItem MessageDisposition=\"SaveOnly\"><m:SavedItemFolderId>{}</m:SavedItemFolderId><m:Items><t:Message><t:ItemClass>IPM.Note</t:ItemClass><t:Subject>{}</t:Subject><t:Body BodyType=\"Text\">{}</t:Body></t:Message></m:Items></m:CreateItem>",
        folder.xml(),
        esc(subject),
        esc(body)
    )
}

/// Reads the created item ids of a CreateItem response message.
pub fn read_create_item(message: &Element) -> Vec<ItemId> {
    item_ids_in(message.child("Items"))
}

/// DeleteItem request body (`HardDelete`).
pub fn delete_item(ids: &[ItemId]) -> String {
    let ids: String = ids.iter().map(ItemId::xml).collect();
    format!("<m:DeleteItem DeleteType=\"HardDelete\"><m:ItemIds>{ids}</m:ItemIds></m:DeleteItem>")
}

/// ConvertId request body (exchangelib's version probe uses `DUMMY` values).
pub fn convert_id(id: &str, format: &str, mailbox: &str, destination: &str) -> String {
    format!(
        "<m:ConvertId DestinationFormat=\"{}\"><m:SourceIds><t:AlternateId Id=\"{}\" Format=\"{}\" Mailbox=\"{}\"/></m:SourceIds></m:ConvertId>",
        esc(destination),
        esc(id),
        esc(format),
        esc(mailbox)
    )
}

/// Reads the converted id of a ConvertId response message.
pub fn read_convert_id(message: &Element) -> Option<String> {
    message
        .child("AlternateId")
        .and_then(|a| a.attr("Id"))
        .map(str::to_owned)
}

/// One ResolveNames match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Resolution {
    /// `Mailbox/Name`.
    pub name: Option<String>,
    /// `Mailbox/EmailAddress`.
    pub email_address: Option<String>,
    /// `Mailbox/RoutingType`.
    pub routing_type: Option<String>,
    /// `Mailbox/MailboxType`.
    pub mailbox_type: Option<String>,
}

/// ResolveNames request body.
pub fn resolve_names(entry: &str) -> String {
    format!(
        "<m:ResolveNames ReturnFullContactData=\"false\"><m:UnresolvedEntry>{}</m:UnresolvedEntry></m:ResolveNames>",
        esc(entry)
    )
}

/// Reads the matches of a ResolveNames response message (also for the `Warning` class that
/// `ErrorNameResolutionMultipleResults` uses).
pub fn read_resolve_names(message: &Element) -> Vec<Resolution> {
    message
        .child("ResolutionSet")
        .map(|set| {
            set.children_named("Resolution")
                .filter_map(|r| r.child("Mailbox"))
                .map(|m| Resolution {
                    name: m.child_text("Name"),
                    email_address: m.child_text("EmailAddress"),
                    routing_type: m.child_text("RoutingType"),
                    mailbox_type: m.child_text("MailboxType"),
                })
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::parse;
    use proptest::prelude::*;

    #[test]
    fn folder_ref_xml_shapes() {
        assert_eq!(
            FolderRef::named("Inbox", Some("u@x")).xml(),
            "<t:DistinguishedFolderId Id=\"inbox\"><t:Mailbox><t:EmailAddress>u@x</t:EmailAddress><t:RoutingType>SMTP</t:RoutingType><t:MailboxType>Mailbox</t:MailboxType></t:Mailbox></t:DistinguishedFolderId>"
        );
        assert_eq!(
            FolderRef::named("AAMk=", None).xml(),
            "<t:FolderId Id=\"AAMk=\"/>"
        );
    }

    /// Exact request bodies: Exchange validates element order strictly, so any change here
    /// must be deliberate.
    #[test]
    fn request_bodies_are_stable() {
        let inbox = FolderRef::named("inbox", None);
        assert_eq!(
            find_item(&inbox, 10, 5),
            "<m:FindItem Traversal=\"Shallow\"><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape></m:ItemShape><m:IndexedPageItemView MaxEntriesReturned=\"5\" Offset=\"10\" BasePoint=\"Beginning\"/><m:SortOrder><t:FieldOrder Order=\"Descending\"><t:FieldURI FieldURI=\"item:DateTimeReceived\"/></t:FieldOrder></m:SortOrder><m:ParentFolderIds><t:DistinguishedFolderId Id=\"inbox\"/></m:ParentFolderIds></m:FindItem>"
        );
        assert_eq!(
            sync_folder_items(&inbox, Some("S1"), 100),
            "<m:SyncFolderItems><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape></m:ItemShape><m:SyncFolderId><t:DistinguishedFolderId Id=\"inbox\"/></m:SyncFolderId><m:SyncState>S1</m:SyncState><m:MaxChangesReturned>100</m:MaxChangesReturned><m:SyncScope>NormalItems</m:SyncScope></m:SyncFolderItems>"
        );
        assert_eq!(
            convert_id("DUMMY", "EwsId", "DUMMY", "EntryId"),
            "<m:ConvertId DestinationFormat=\"EntryId\"><m:SourceIds><t:AlternateId Id=\"DUMMY\" Format=\"EwsId\" Mailbox=\"DUMMY\"/></m:SourceIds></m:ConvertId>"
        );
        assert_eq!(
            delete_item(&[ItemId {
                id: "A".into(),
                change_key: Some("C".into())
            }]),
            "<m:DeleteItem DeleteType=\"HardDelete\"><m:ItemIds><t:ItemId Id=\"A\" ChangeKey=\"C\"/></m:ItemIds></m:DeleteItem>"
        );
        assert_eq!(
            get_item_mime(&[ItemId {
                id: "A".into(),
                change_key: None
            }]),
            "<m:GetItem><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape><t:IncludeMimeContent>true</t:IncludeMimeContent></m:ItemShape><m:ItemIds><t:ItemId Id=\"A\"/></m:ItemIds></m:GetItem>"
        );
        assert!(get_folder(&[inbox]).starts_with("<m:GetFolder><m:FolderShape><t:BaseShape>IdOnly</t:BaseShape><t:AdditionalProperties><t:FieldURI FieldURI=\"folder:ChildFolderCount\"/>"));
    }

    #[test]
    fn reads_find_item_paging() {
        let m = parse(r#"<m:FindItemResponseMessage ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode>
 <m:RootFolder IndexedPagingOffset="2" TotalItemsInView="5" IncludesLastItemInRange="false">
  <t:Items><t:Message><t:ItemId Id="A1" ChangeKey="C1"/></t:Message><t:MeetingRequest><t:ItemId Id="A2"/></t:MeetingRequest></t:Items>
 </m:RootFolder></m:FindItemResponseMessage>"#).unwrap();
        let (ids, p) = read_find_item(&m);
        assert_eq!(
            ids.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(),
            ["A1", "A2"]
        );
        assert_eq!(ids[0].change_key.as_deref(), Some("C1"));
        assert_eq!(
            p,
            Paging {
                next_offset: Some(2),
                total: Some(5),
                last: false
            }
        );
    }

    #[test]
    fn reads_sync_folder_items_changes() {
        let m = parse(r#"<m:SyncFolderItemsResponseMessage ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode>
<m:SyncState>H4sI</m:SyncState><m:IncludesLastItemInRange>false</m:IncludesLastItemInRange><m:Changes>
<t:Create><t:Message><t:ItemId Id="N1"/></t:Message></t:Create><t:Update><t:Message><t:ItemId Id="U1"/></t:Message></t:Update>
<t:Delete><t:ItemId Id="D1"/></t:Delete><t:ReadFlagChange><t:ItemId Id="R1"/><t:IsRead>true</t:IsRead></t:ReadFlagChange>
</m:Changes></m:SyncFolderItemsResponseMessage>"#).unwrap();
        let s = read_sync_folder_items(&m);
        assert_eq!(s.sync_state, "H4sI");
        assert!(!s.last);
        assert_eq!(s.created[0].id, "N1");
        assert_eq!(s.updated[0].id, "U1");
        assert_eq!(s.deleted[0].id, "D1");
        assert_eq!(s.read_flag[0].0.id, "R1");
        assert!(s.read_flag[0].1);
    }

    #[test]
    fn reads_hierarchy_sync() {
        let m = parse(r#"<m:X><m:SyncState>S</m:SyncState><m:IncludesLastFolderInRange>true</m:IncludesLastFolderInRange><m:Changes>
<t:Create><t:Folder><t:FolderId Id="F1"/><t:DisplayName>Inbox</t:DisplayName></t:Folder></t:Create>
<t:Update><t:CalendarFolder><t:FolderId Id="F2"/></t:CalendarFolder></t:Update><t:Delete><t:FolderId Id="F3"/></t:Delete></m:Changes></m:X>"#).unwrap();
        let h = read_sync_folder_hierarchy(&m);
        assert_eq!(h.changed.len(), 2);
        assert_eq!(h.changed[0].display_name.as_deref(), Some("Inbox"));
        assert_eq!(h.deleted, ["F3"]);
        assert!(h.last);
    }

    #[test]
    fn decodes_mime_with_line_breaks() {
        let m = parse("<m:R><m:Items><t:Message><t:MimeContent CharacterSet=\"UTF-8\">U3ViamVj\r\ndDogSGk=</t:MimeContent></t:Message></m:Items></m:R>").unwrap();
        assert_eq!(read_get_item_mime(&m).unwrap(), b"Subject: Hi");
        let bad = parse("<m:R><m:Items><t:Message><t:MimeContent>***</t:MimeContent></t:Message></m:Items></m:R>").unwrap();
        assert!(read_get_item_mime(&bad).is_err());
        assert!(read_get_item_mime(&parse("<m:R/>").unwrap()).is_err());
    }

    #[test]
    fn reads_resolutions() {
        let m = parse(r#"<m:R ResponseClass="Warning"><m:ResolutionSet TotalItemsInView="2" IncludesLastItemInRange="true">
<t:Resolution><t:Mailbox><t:Name>User One</t:Name><t:EmailAddress>user@example.com</t:EmailAddress><t:RoutingType>SMTP</t:RoutingType><t:MailboxType>Mailbox</t:MailboxType></t:Mailbox></t:Resolution>
<t:Resolution><t:Mailbox><t:Name>User Two</t:Name></t:Mailbox></t:Resolution></m:ResolutionSet></m:R>"#).unwrap();
        let r = read_resolve_names(&m);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].email_address.as_deref(), Some("user@example.com"));
    }

    #[test]
    fn request_bodies_escape_user_values() {
        let b = create_item(&FolderRef::named("drafts", None), "a<b", "c&d");
        assert!(b.contains("<t:Subject>a&lt;b</t:Subject>"));
        assert!(b.contains("c&amp;d"));
        assert!(resolve_names("x\"<y").contains("x&quot;&lt;y"));
        assert!(
            sync_folder_items(&FolderRef::named("inbox", None), None, 9999)
                .contains("<m:MaxChangesReturned>512<")
        );
    }

    proptest! {
        #[test]
        fn readers_never_panic(s in ".{0,300}") {
            if let Ok(e) = parse(&s) {
                let _ = read_find_item(&e);
                let _ = read_find_folder(&e);
                let _ = read_get_folder(&e);
                let _ = read_get_item_mime(&e);
                let _ = read_sync_folder_items(&e);
                let _ = read_sync_folder_hierarchy(&e);
                let _ = read_resolve_names(&e);
                let _ = read_create_item(&e);
                let _ = read_convert_id(&e);
            }
        }

        #[test]
        fn folder_ids_round_trip(id in "[ -~]{1,40}", total in 0u64..1_000_000) {
            let doc = format!("<t:Folder><t:FolderId Id=\"{}\"/><t:TotalCount>{total}</t:TotalCount></t:Folder>", esc(&id));
            let f = parse_folder(&parse(&doc).unwrap()).unwrap();
            prop_assert_eq!(f.id, id);
            prop_assert_eq!(f.total_count, Some(total));
        }
    }
}
