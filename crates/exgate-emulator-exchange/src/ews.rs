//! EWS (`POST /EWS/Exchange.asmx`): SOAP 1.1 envelopes, `ServerVersionInfo` on every response,
//! faults as HTTP 500, and the operations GetFolder, FindFolder, FindItem, GetItem,
//! SyncFolderHierarchy, SyncFolderItems, CreateItem, DeleteItem, ConvertId and ResolveNames.

use std::collections::HashMap;
use std::fmt::Write as _;

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use time::OffsetDateTime;

use crate::auth::{self, Principal, Vdir};
use crate::state::{Counters, FolderChange, Inner, Plane, Site};
use crate::store::{
    Attachment, Folder, Mailbox, Message, Person, change_key, decode_attachment_id, decode_id,
    decode_state, encode_id, encode_state, iso,
};
use crate::xml::{self, Element, esc};

const NS_SOAP: &str = "http://schemas.xmlsoap.org/soap/envelope/";
const NS_M: &str = "http://schemas.microsoft.com/exchange/services/2006/messages";
const NS_T: &str = "http://schemas.microsoft.com/exchange/services/2006/types";
const NS_E: &str = "http://schemas.microsoft.com/exchange/services/2006/errors";

/// Request server versions EWS accepts.
const VERSIONS: &[&str] = &[
    "Exchange2007",
    "Exchange2007_SP1",
    "Exchange2010",
    "Exchange2010_SP1",
    "Exchange2010_SP2",
    "Exchange2013",
    "Exchange2013_SP1",
    "Exchange2015",
    "Exchange2016",
    "V2015_10_05",
    "V2016_01_06",
    "V2016_04_13",
    "V2016_07_13",
    "V2016_10_10",
    "V2017_01_07",
    "V2017_04_14",
    "V2017_07_11",
    "V2017_10_09",
    "V2018_01_08",
];

/// Page size limit of FindItem/FindFolder.
const MAX_PAGE: usize = 1000;

fn server_version_info(site: Site) -> String {
    let (minor, major_build, minor_build, version) = match site {
        Site::Online => (20, 8466, 32, "V2018_01_08"),
        Site::OnPrem(_) => (2, 1544, 4, "V2017_07_11"),
    };
    format!(
        "<h:ServerVersionInfo MajorVersion=\"15\" MinorVersion=\"{minor}\" MajorBuildNumber=\"{major_build}\" MinorBuildNumber=\"{minor_build}\" Version=\"{version}\" xmlns:h=\"{NS_T}\" xmlns=\"{NS_T}\" xmlns:xsd=\"http://www.w3.org/2001/XMLSchema\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"/>"
    )
}

fn envelope(site: Site, body: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><s:Envelope xmlns:s=\"{NS_SOAP}\"><s:Header>{}</s:Header><s:Body xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xmlns:xsd=\"http://www.w3.org/2001/XMLSchema\">{body}</s:Body></s:Envelope>",
        server_version_info(site)
    )
}

fn xml_response(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/xml; charset=utf-8"),
    );
    r.headers_mut().insert(
        "request-id",
        HeaderValue::from_str(&uuid::Uuid::new_v4().to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("0")),
    );
    r
}

/// A request-level failure answered as a SOAP fault (HTTP 500).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fault {
    pub code: &'static str,
    pub message: String,
    /// Inner `t:Value`/`t:LineNumber`... elements of `t:MessageXml`.
    pub message_xml: Option<String>,
}

impl Fault {
    fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            message_xml: None,
        }
    }
}

fn fault_response(site: Site, f: &Fault) -> Response {
    let mx = f
        .message_xml
        .as_ref()
        .map(|x| format!("<t:MessageXml xmlns:t=\"{NS_T}\">{x}</t:MessageXml>"))
        .unwrap_or_default();
    let body = format!(
        "<s:Fault><faultcode xmlns:a=\"{NS_T}\">a:{code}</faultcode><faultstring xml:lang=\"en-US\">{msg}</faultstring><detail><e:ResponseCode xmlns:e=\"{NS_E}\">{code}</e:ResponseCode><e:Message xmlns:e=\"{NS_E}\">{msg}</e:Message>{mx}</detail></s:Fault>",
        code = f.code,
        msg = esc(&f.message),
    );
    xml_response(StatusCode::INTERNAL_SERVER_ERROR, envelope(site, &body))
}

/// One response message.
enum Msg {
    Ok(String),
    Err {
        code: &'static str,
        text: String,
        /// Content that must appear even on errors (e.g. an empty `m:SyncState`).
        tail: String,
    },
    Warn {
        code: &'static str,
        text: String,
        content: String,
    },
}

fn err(code: &'static str, text: impl Into<String>) -> Msg {
    Msg::Err {
        code,
        text: text.into(),
        tail: String::new(),
    }
}

/// The elements of child list `name` of `op` (`m:ItemIds`, `m:FolderIds`, ...); none when it is
/// missing.
fn entries<'a>(op: &'a Element, name: &str) -> &'a [Element] {
    op.child(name)
        .map(|p| p.children.as_slice())
        .unwrap_or_default()
}

/// The response of an operation over a list (`m:ItemIds`, `m:FolderIds`, ...): one message per
/// entry, or `ErrorInvalidRequest` naming the list when it was empty.
fn answer(op: &str, mut msgs: Vec<Msg>, list: &str) -> String {
    if msgs.is_empty() {
        msgs.push(err(
            "ErrorInvalidRequest",
            format!("The request is invalid: no {list}."),
        ));
    }
    operation_response(op, msgs)
}

fn operation_response(op: &str, msgs: Vec<Msg>) -> String {
    let mut out =
        format!("<m:{op}Response xmlns:m=\"{NS_M}\" xmlns:t=\"{NS_T}\"><m:ResponseMessages>");
    for m in msgs {
        match m {
            Msg::Ok(content) => {
                let _ = write!(
                    out,
                    "<m:{op}ResponseMessage ResponseClass=\"Success\"><m:ResponseCode>NoError</m:ResponseCode>{content}</m:{op}ResponseMessage>"
                );
            }
            Msg::Err { code, text, tail } => {
                let _ = write!(
                    out,
                    "<m:{op}ResponseMessage ResponseClass=\"Error\"><m:MessageText>{}</m:MessageText><m:ResponseCode>{code}</m:ResponseCode><m:DescriptiveLinkKey>0</m:DescriptiveLinkKey>{tail}</m:{op}ResponseMessage>",
                    esc(&text)
                );
            }
            Msg::Warn {
                code,
                text,
                content,
            } => {
                let _ = write!(
                    out,
                    "<m:{op}ResponseMessage ResponseClass=\"Warning\"><m:MessageText>{}</m:MessageText><m:ResponseCode>{code}</m:ResponseCode><m:DescriptiveLinkKey>0</m:DescriptiveLinkKey>{content}</m:{op}ResponseMessage>",
                    esc(&text)
                );
            }
        }
    }
    let _ = write!(out, "</m:ResponseMessages></m:{op}Response>");
    out
}

/// The mailbox a request acts on, after impersonation.
struct Ctx<'a> {
    st: &'a Inner,
    /// Acting mailbox, if the caller has one.
    mbx: Option<u32>,
    principal: &'a Principal,
}

impl Ctx<'_> {
    fn mailbox(&self) -> Option<(u32, &Mailbox)> {
        let i = self.mbx?;
        Some((i, self.st.mailbox(i)?))
    }
}

/// Handles one EWS request for a site.
pub(crate) fn handle(
    st: &Inner,
    site: Site,
    headers: &HeaderMap,
    conn: Option<crate::ConnectionId>,
    body: &Bytes,
) -> Response {
    Counters::bump(&st.counters.ews);
    let principal = match auth::authenticate(st, site, Vdir::Ews, headers, conn) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    // Organisation gates: EWSEnabled and the EWS application allow list.
    let org = st.org(principal.tenant_id());
    if !org.ews_enabled {
        return auth::forbidden(st);
    }
    if let (Some(list), Some(app)) = (&org.ews_allowed_apps, principal.app_id())
        && !list.iter().any(|a| a == app)
    {
        return auth::forbidden(st);
    }
    let budget = st.budget(Plane::Ews, principal.budget_key());
    if let Err(wait) = st.throttle.take(Plane::Ews, principal.budget_key(), budget) {
        Counters::bump(&st.counters.throttled);
        let mut f = Fault::new(
            "ErrorServerBusy",
            "The server cannot service this request right now. Try again later.",
        );
        f.message_xml = Some(format!(
            "<t:Value Name=\"BackOffMilliseconds\">{}</t:Value>",
            wait.as_millis().max(1)
        ));
        return fault_response(site, &f);
    }
    match dispatch(st, site, &principal, body) {
        Ok(Outcome::Body(b)) => xml_response(StatusCode::OK, envelope(site, &b)),
        Ok(Outcome::Forbidden) => auth::forbidden(st),
        Err(f) => fault_response(site, &f),
    }
}

enum Outcome {
    Body(String),
    Forbidden,
}

/// Parses the envelope, resolves impersonation and runs the operation.
fn dispatch(st: &Inner, site: Site, principal: &Principal, body: &[u8]) -> Result<Outcome, Fault> {
    let root = xml::parse(body).map_err(|e| {
        let mut f = Fault::new(
            "ErrorSchemaValidation",
            "The request failed schema validation.",
        );
        f.message_xml = Some(format!(
            "<t:LineNumber>{}</t:LineNumber><t:LinePosition>{}</t:LinePosition><t:Violation>{}</t:Violation>",
            e.line,
            e.column,
            esc(&e.message)
        ));
        f
    })?;
    if root.name != "Envelope" {
        return Err(schema_fault("The root element must be a SOAP Envelope."));
    }
    let hdr = root.child("Header");
    if let Some(v) = hdr
        .and_then(|h| h.child("RequestServerVersion"))
        .and_then(|r| r.attr("Version"))
        && !VERSIONS.contains(&v)
    {
        return Err(Fault::new(
            "ErrorInvalidServerVersion",
            "The specified server version is invalid.",
        ));
    }
    let op = root
        .child("Body")
        .and_then(|b| b.children.first())
        .ok_or_else(|| schema_fault("The SOAP Body has no operation element."))?;
    let imp = hdr.and_then(|h| h.child("ExchangeImpersonation"));
    let mbx = match resolve_actor(st, site, principal, imp)? {
        Actor::Mailbox(i) => Some(i),
        Actor::None => None,
        Actor::Forbidden => return Ok(Outcome::Forbidden),
    };
    let ctx = Ctx { st, mbx, principal };
    let out = match op.name.as_str() {
        "GetFolder" => get_folder(&ctx, op),
        "FindFolder" => find_folder(&ctx, op),
        "FindItem" => find_item(&ctx, op),
        "GetItem" => get_item(&ctx, op),
        "SyncFolderHierarchy" => sync_folder_hierarchy(&ctx, op),
        "SyncFolderItems" => sync_folder_items(&ctx, op)?,
        "CreateItem" => create_item(&ctx, op),
        "DeleteItem" => delete_item(&ctx, op)?,
        "MoveItem" => move_or_copy_item(&ctx, op, "MoveItem", false)?,
        "CopyItem" => move_or_copy_item(&ctx, op, "CopyItem", true)?,
        "UpdateItem" => update_item(&ctx, op)?,
        "ConvertId" => convert_id(&ctx, op),
        "CreateFolder" => create_folder(&ctx, op),
        "DeleteFolder" => delete_folder(&ctx, op),
        "UpdateFolder" => update_folder(&ctx, op),
        "MoveFolder" => move_folder(&ctx, op),
        "GetAttachment" => get_attachment(&ctx, op),
        "CreateAttachment" => create_attachment(&ctx, op),
        "DeleteAttachment" => delete_attachment(&ctx, op),
        "ResolveNames" => resolve_names(&ctx, op),
        other => {
            return Err(Fault::new(
                "ErrorInvalidRequest",
                format!("The request is invalid: operation '{other}' is not supported."),
            ));
        }
    };
    Ok(Outcome::Body(out))
}

fn schema_fault(violation: &str) -> Fault {
    let mut f = Fault::new(
        "ErrorSchemaValidation",
        "The request failed schema validation.",
    );
    f.message_xml = Some(format!(
        "<t:LineNumber>1</t:LineNumber><t:LinePosition>1</t:LinePosition><t:Violation>{}</t:Violation>",
        esc(violation)
    ));
    f
}

enum Actor {
    Mailbox(u32),
    None,
    Forbidden,
}

const IMP_MISSING: &str =
    "ExchangeImpersonation SOAP header must be present for this type of OAuth token.";
const IMP_NOT_ALLOWED: &str =
    "ExchangeImpersonation SOAP header must not exist for this type of OAuth token.";
const NO_MAILBOX: &str = "The SMTP address has no mailbox associated with it.";
const IMP_DENIED: &str = "The account does not have permission to impersonate the requested user.";

/// Works out which mailbox the request acts as.
fn resolve_actor(
    st: &Inner,
    site: Site,
    principal: &Principal,
    imp: Option<&Element>,
) -> Result<Actor, Fault> {
    let target = match imp {
        None => None,
        Some(imp) => {
            if let Principal::User {
                app_id: Some(_), ..
            } = principal
            {
                return Err(Fault::new(
                    "ErrorInvalidExchangeImpersonationHeaderData",
                    IMP_NOT_ALLOWED,
                ));
            }
            let sid = imp.child("ConnectingSID").ok_or_else(|| {
                Fault::new(
                    "ErrorInvalidExchangeImpersonationHeaderData",
                    "The impersonation header must name a user by SID, UPN or SMTP address.",
                )
            })?;
            let mut named = None;
            for (el, code) in [
                ("PrimarySmtpAddress", "ErrorNonExistentMailbox"),
                ("SmtpAddress", "ErrorNonExistentMailbox"),
                ("PrincipalName", "ErrorInvalidUserPrincipalName"),
                ("SID", "ErrorInvalidUserSid"),
            ] {
                if let Some(v) = sid.child_text(el) {
                    named = Some((el, v.to_owned(), code));
                }
            }
            let Some((kind, value, missing_code)) = named.filter(|(_, v, _)| !v.is_empty()) else {
                return Err(Fault::new(
                    "ErrorInvalidExchangeImpersonationHeaderData",
                    "The impersonation header must name a user by SID, UPN or SMTP address.",
                ));
            };
            let found = if kind == "SID" {
                st.mailboxes
                    .iter()
                    .position(|m| sid_of(m) == value)
                    .and_then(|i| u32::try_from(i).ok())
            } else {
                st.find(&value)
            };
            let message = if missing_code == "ErrorNonExistentMailbox" {
                NO_MAILBOX.to_owned()
            } else if kind == "SID" {
                "The SID is invalid or does not map to a user.".to_owned()
            } else {
                "The user principal name is invalid.".to_owned()
            };
            Some(found.ok_or(Fault {
                code: missing_code,
                message: message.clone(),
                message_xml: None,
            })?)
        }
    };
    match (principal, target) {
        (Principal::App { .. }, None) => Err(Fault::new(
            "ErrorInvalidExchangeImpersonationHeaderData",
            IMP_MISSING,
        )),
        (
            Principal::App {
                app_id, tenant_id, ..
            },
            Some(i),
        ) => {
            let m = serve_check(st, site, tenant_id, i)?;
            if st.app_may_reach(app_id, m).is_err() {
                return Err(Fault::new("ErrorImpersonateUserDenied", IMP_DENIED));
            }
            mailbox_gates(m)
                .map(|()| Actor::Mailbox(i))
                .or_else(gate_to_actor)
        }
        (Principal::User { upn, tenant_id, .. }, Some(i)) => {
            let m = serve_check(st, site, tenant_id, i)?;
            if !m.has_address(upn) && !st.may_impersonate(upn, m) {
                return Err(Fault::new("ErrorImpersonateUserDenied", IMP_DENIED));
            }
            mailbox_gates(m)
                .map(|()| Actor::Mailbox(i))
                .or_else(gate_to_actor)
        }
        (Principal::User { upn, tenant_id, .. }, None) => match st.find(upn) {
            Some(i) => {
                let m = serve_check(st, site, tenant_id, i)?;
                mailbox_gates(m)
                    .map(|()| Actor::Mailbox(i))
                    .or_else(gate_to_actor)
            }
            None => Ok(Actor::None),
        },
    }
}

enum Gate {
    Fault(Fault),
    Forbidden,
}

fn gate_to_actor(g: Gate) -> Result<Actor, Fault> {
    match g {
        Gate::Fault(f) => Err(f),
        Gate::Forbidden => Ok(Actor::Forbidden),
    }
}

/// Licence and per-mailbox EWS checks.
fn mailbox_gates(m: &Mailbox) -> Result<(), Gate> {
    if !m.licensed || !m.license.allows_api_access() {
        return Err(Gate::Fault(Fault::new(
            "ErrorInvalidLicense",
            "The mailbox does not have a valid license for this operation.",
        )));
    }
    if !m.ews_enabled {
        return Err(Gate::Forbidden);
    }
    Ok(())
}

/// The mailbox must exist on this site, in the caller's tenant, and be provisioned.
fn serve_check<'a>(
    st: &'a Inner,
    site: Site,
    tenant_id: &str,
    i: u32,
) -> Result<&'a Mailbox, Fault> {
    let missing = || Fault::new("ErrorNonExistentMailbox", NO_MAILBOX);
    let m = st.mailbox(i).ok_or_else(missing)?;
    if m.tenant_id != tenant_id || st.site_of(m) != site || !m.provisioned {
        return Err(missing());
    }
    Ok(m)
}

/// A deterministic SID for a mailbox user.
pub(crate) fn sid_of(m: &Mailbox) -> String {
    let h = crate::store::fnv(&[b"sid", m.address.as_bytes()]);
    let t = crate::store::fnv(&[b"sid-domain", m.tenant_id.as_bytes()]);
    format!(
        "S-1-5-21-{}-{}-{}-{}",
        (t >> 32) as u32,
        t as u32 & 0x7fff_ffff,
        (t >> 16) as u32 & 0x3fff_ffff,
        1000 + (h % 1_000_000) as u32
    )
}

/// Which mailbox a folder reference points at and which folder.
enum FolderRef {
    Found(u32, Folder),
    Error(&'static str, String),
}

fn folder_ref(ctx: &Ctx<'_>, el: &Element) -> FolderRef {
    let not_found = || {
        FolderRef::Error(
            "ErrorFolderNotFound",
            "The specified folder could not be found in the store.".into(),
        )
    };
    match el.name.as_str() {
        "DistinguishedFolderId" => {
            let Some(folder) = el.attr("Id").and_then(Folder::from_name) else {
                return not_found();
            };
            let addr = el
                .child("Mailbox")
                .and_then(|m| m.child_text("EmailAddress"))
                .filter(|a| !a.is_empty());
            match (addr, ctx.mailbox()) {
                (Some(a), Some((i, m))) if m.has_address(a) => FolderRef::Found(i, folder),
                (Some(a), _) => match ctx.st.find(a) {
                    Some(_) => FolderRef::Error(
                        "ErrorAccessDenied",
                        "Access is denied. Check credentials and try again.".into(),
                    ),
                    None => FolderRef::Error("ErrorNonExistentMailbox", NO_MAILBOX.into()),
                },
                (None, Some((i, _))) => FolderRef::Found(i, folder),
                (None, None) => FolderRef::Error("ErrorNonExistentMailbox", NO_MAILBOX.into()),
            }
        }
        "FolderId" => {
            let Some(id) = el.attr("Id") else {
                return FolderRef::Error("ErrorInvalidIdMalformed", "Id is malformed.".into());
            };
            match resolve_id(ctx, id, b'F') {
                Ok((i, f, _)) if ctx.st.folder_exists(i, f) => FolderRef::Found(i, f),
                Ok(_) => not_found(),
                Err((code, text)) => FolderRef::Error(code, text),
            }
        }
        _ => FolderRef::Error("ErrorInvalidRequest", "The request is invalid.".into()),
    }
}

/// Decodes an id and checks it belongs to the acting mailbox.
fn resolve_id(
    ctx: &Ctx<'_>,
    id: &str,
    kind: u8,
) -> Result<(u32, Folder, u32), (&'static str, String)> {
    let raw = decode_id(id)
        .filter(|r| r.kind == kind)
        .ok_or(("ErrorInvalidIdMalformed", "Id is malformed.".to_owned()))?;
    let m = ctx
        .st
        .mailbox(raw.mailbox)
        .filter(|m| raw.verify(&m.address))
        .ok_or(("ErrorInvalidIdMalformed", "Id is malformed.".to_owned()))?;
    if ctx.mbx != Some(raw.mailbox) {
        let _ = m;
        return Err((
            "ErrorAccessDenied",
            "Access is denied. Check credentials and try again.".to_owned(),
        ));
    }
    Ok((raw.mailbox, raw.folder, raw.n))
}

/// An attachment id of the caller's mailbox: the item's mailbox, folder and position, and the
/// attachment's number. Exchange's `ErrorInvalidAttachmentId` for an id that does not decode.
fn resolve_attachment_id(
    ctx: &Ctx<'_>,
    id: &str,
) -> Result<(u32, Folder, u32, u32), (&'static str, String)> {
    let (raw, seq) = decode_attachment_id(id).ok_or((
        "ErrorInvalidAttachmentId",
        "The attachment id is invalid.".to_owned(),
    ))?;
    ctx.st
        .mailbox(raw.mailbox)
        .filter(|m| raw.verify(&m.address))
        .ok_or((
            "ErrorInvalidAttachmentId",
            "The attachment id is invalid.".to_owned(),
        ))?;
    if ctx.mbx != Some(raw.mailbox) {
        return Err((
            "ErrorAccessDenied",
            "Access is denied. Check credentials and try again.".to_owned(),
        ));
    }
    Ok((raw.mailbox, raw.folder, raw.n, seq))
}

fn folder_xml(ctx: &Ctx<'_>, i: u32, f: Folder) -> String {
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
fn folder_change_error(e: FolderChange, op: &str) -> Msg {
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
fn folder_id_xml(ctx: &Ctx<'_>, i: u32, f: Folder) -> String {
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
fn target_folder(ctx: &Ctx<'_>, op: &Element, name: &str) -> Result<(u32, Folder), Msg> {
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
fn create_folder(ctx: &Ctx<'_>, op: &Element) -> String {
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
fn delete_folder(ctx: &Ctx<'_>, op: &Element) -> String {
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
fn update_folder(ctx: &Ctx<'_>, op: &Element) -> String {
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
fn move_folder(ctx: &Ctx<'_>, op: &Element) -> String {
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

fn get_folder(ctx: &Ctx<'_>, op: &Element) -> String {
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

fn paging(view: Option<&Element>, total: usize) -> Result<(usize, usize), &'static str> {
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

fn find_folder(ctx: &Ctx<'_>, op: &Element) -> String {
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

/// Which item properties to write.
struct Shape {
    all: bool,
    props: Vec<String>,
    mime: bool,
    body_text: bool,
    /// `t:ExtendedFieldURI` property tags asked for (`PropertyTag`), as numbers.
    extended: Vec<u32>,
}

/// A MAPI property tag as EWS writes it: `0x0E08`, `0xe08` or decimal `3592`.
fn property_tag(s: &str) -> Option<u32> {
    let s = s.trim();
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

/// The value and type of a common MAPI property of a message, for `t:ExtendedProperty`; `None`
/// for a property the item does not have (Exchange leaves those out).
fn extended_value(tag: u32, m: &Message, mbx: &Mailbox) -> Option<(&'static str, String)> {
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
    fn from(op: &Element, shape_name: &str) -> Shape {
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

    fn want(&self, p: &str) -> bool {
        self.all || self.props.iter().any(|x| x == p)
    }
}

fn mailbox_xml(tag: &str, p: &Person) -> String {
    format!(
        "<t:{tag}><t:Mailbox><t:Name>{}</t:Name><t:EmailAddress>{}</t:EmailAddress><t:RoutingType>SMTP</t:RoutingType><t:MailboxType>OneOff</t:MailboxType></t:Mailbox></t:{tag}>",
        esc(&p.name),
        esc(&p.address)
    )
}

fn people_xml(tag: &str, v: &[Person]) -> String {
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
fn message_xml(m: &Message, mbx: &Mailbox, shape: &Shape) -> String {
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
    if shape.want("item:DisplayCc") {
        let _ = write!(
            o,
            "<t:DisplayCc>{}</t:DisplayCc>",
            esc(&m
                .cc
                .iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>()
                .join("; "))
        );
    }
    if shape.want("item:DisplayTo") {
        let _ = write!(
            o,
            "<t:DisplayTo>{}</t:DisplayTo>",
            esc(&m
                .to
                .iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>()
                .join("; "))
        );
    }
    if shape.want("item:HasAttachments") {
        let _ = write!(
            o,
            "<t:HasAttachments>{}</t:HasAttachments>",
            m.attachments.iter().any(|a| !a.is_inline)
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

fn find_item(ctx: &Ctx<'_>, op: &Element) -> String {
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

fn get_item(ctx: &Ctx<'_>, op: &Element) -> String {
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

/// A `t:FileAttachment`: id, name, type, content id, size, time, inline flag, and with
/// `content` the base64 `t:Content` (GetAttachment).
fn file_attachment_xml(a: &Attachment, m: &Message, mbx: &Mailbox, content: bool) -> String {
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
fn file_attachments(list: Option<&Element>) -> Result<Vec<Attachment>, Msg> {
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
        let name = el.child_text("Name").unwrap_or_default().trim().to_owned();
        if name.is_empty() {
            return Err(err(
                "ErrorInvalidRequest",
                "The request is invalid: an attachment has no name.",
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
        let content_type = el
            .child_text("ContentType")
            .map(str::trim)
            .filter(|c| c.contains('/'))
            .map_or_else(|| crate::graph::guess_type(&name).to_owned(), str::to_owned);
        out.push(Attachment {
            seq: 0,
            name,
            content_type,
            content: content.into(),
            is_inline: el
                .child_text("IsInline")
                .is_some_and(|v| v.trim() == "true"),
            content_id: el.child_text("ContentId").map(|c| c.trim().to_owned()),
            modified: OffsetDateTime::now_utc(),
        });
    }
    Ok(out)
}

/// The `t:AttachmentId` elements of an operation's `m:AttachmentIds`.
fn attachment_ids(op: &Element) -> Vec<Option<&str>> {
    op.child("AttachmentIds")
        .map(|p| p.children.iter().map(|e| e.attr("Id")).collect())
        .unwrap_or_default()
}

/// GetAttachment: each file attachment with its content.
fn get_attachment(ctx: &Ctx<'_>, op: &Element) -> String {
    let mut msgs = Vec::new();
    for id in attachment_ids(op) {
        let found = id
            .ok_or((
                "ErrorInvalidAttachmentId",
                "The attachment id is invalid.".to_owned(),
            ))
            .and_then(|id| resolve_attachment_id(ctx, id));
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
                        None => err("ErrorInvalidAttachmentId", "The attachment id is invalid."),
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
/// message per attachment, with its id and the item's new change key.
fn create_attachment(ctx: &Ctx<'_>, op: &Element) -> String {
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
fn delete_attachment(ctx: &Ctx<'_>, op: &Element) -> String {
    let mut msgs = Vec::new();
    for id in attachment_ids(op) {
        let found = id
            .ok_or((
                "ErrorInvalidAttachmentId",
                "The attachment id is invalid.".to_owned(),
            ))
            .and_then(|id| resolve_attachment_id(ctx, id));
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
            Ok(_) => err("ErrorInvalidAttachmentId", "The attachment id is invalid."),
            Err((code, text)) => err(code, text),
        });
    }
    answer("DeleteAttachment", msgs, "AttachmentIds")
}

fn sync_folder_hierarchy(ctx: &Ctx<'_>, op: &Element) -> String {
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

fn sync_folder_items(ctx: &Ctx<'_>, op: &Element) -> Result<String, Fault> {
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

fn persons(el: Option<&Element>) -> Vec<Person> {
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

fn create_item(ctx: &Ctx<'_>, op: &Element) -> String {
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
const MESSAGE_FLAGS: u32 = 0x0E07;
const MSGFLAG_READ: i64 = 0x1;
const MSGFLAG_UNSENT: i64 = 0x8;

/// A message imported as MIME (`t:MimeContent`, base64): subject, sender, recipients, body and
/// Internet message id from the MIME; read and draft state from `PidTagMessageFlags` when the
/// item sets it (as Microsoft's "Import items by using EWS" has importers do), else an unsent,
/// read draft.
fn message_from_mime(i: u32, mbx: &Mailbox, b64: &str, item: &Element) -> Result<Message, Msg> {
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
    let now = OffsetDateTime::now_utc();
    Ok(Message {
        mailbox: i,
        folder: Folder::Drafts,
        n: 0,
        subject: parsed.subject,
        body: parsed.body,
        body_is_html: parsed.html,
        from: parsed.from.unwrap_or_else(|| Person {
            name: mbx.display_name.clone(),
            address: mbx.address.clone(),
        }),
        to: parsed.to,
        cc: parsed.cc,
        received: now,
        sent: now,
        is_read: flags.is_none_or(|f| f & MSGFLAG_READ != 0),
        is_draft: flags.is_none_or(|f| f & MSGFLAG_UNSENT != 0),
        internet_message_id: parsed
            .message_id
            .unwrap_or_else(|| format!("<{}@emulator.exgate>", uuid::Uuid::new_v4().simple())),
        key: crate::store::new_key(),
        attachments: parsed.attachments,
    })
}

/// DeleteItem: `HardDelete` removes the item (counts, FindItem, GetItem); `SoftDelete` moves it
/// to Recoverable Items\Deletions; `MoveToDeletedItems` to Deleted Items (each removes it when it
/// already is there).
fn delete_item(ctx: &Ctx<'_>, op: &Element) -> Result<String, Fault> {
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
fn move_or_copy_item(ctx: &Ctx<'_>, op: &Element, name: &str, copy: bool) -> Result<String, Fault> {
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
fn update_item(ctx: &Ctx<'_>, op: &Element) -> Result<String, Fault> {
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

fn convert_id(ctx: &Ctx<'_>, op: &Element) -> String {
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

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect()
}

fn resolve_names(ctx: &Ctx<'_>, op: &Element) -> String {
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
