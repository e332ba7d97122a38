//! EWS (`POST /EWS/Exchange.asmx`): SOAP 1.1 envelopes, `ServerVersionInfo` on every response,
//! faults as HTTP 500, impersonation and the dispatch of operations; the operations live in one
//! module per concern (folders, items, attachments, sync, lookups).

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
    Attachment, AttachmentRefusal, Folder, Mailbox, Message, Person, change_key,
    decode_attachment_id, decode_id, decode_state, encode_id, encode_state, iso,
};
use crate::xml::{self, Element, esc};

mod attachments;
mod folders;
mod items;
mod lookup;
mod sync;

use attachments::*;
use folders::*;
pub(crate) use items::deliver;
use items::*;
use lookup::*;
use sync::*;

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
