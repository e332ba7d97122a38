//! Microsoft Graph mail subset under `/v1.0`: users, mailFolders, messages with `$top`,
//! `$skip`, `$select` and `@odata.nextLink`, `messages/delta`, `$value` (MIME), `sendMail`, and
//! drafts created with `POST messages` and removed with `DELETE messages/{id}` or
//! `POST messages/{id}/permanentDelete`.

use std::collections::HashMap;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use crate::auth::{self, GraphAuthError, Principal};
use crate::config::AppAccessKind;
use crate::state::{Counters, FolderChange, Inner, Plane};
use crate::store::{
    Attachment, AttachmentRefusal, Folder, Mailbox, Message, Person, decode_attachment_id,
    decode_id, decode_state, encode_id, encode_state, graph_id, iso,
};

const CONTEXT: &str = "https://graph.microsoft.com/v1.0/$metadata";
const JSON_CT: &str = "application/json; odata.metadata=minimal; odata.streaming=true; IEEE754Compatible=false; charset=utf-8";
const DEFAULT_PAGE: usize = 10;
const MAX_PAGE: usize = 1000;

/// A Graph error to answer.
#[derive(Debug)]
pub(crate) struct GraphError {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after: Option<u64>,
}

fn gerr(status: StatusCode, code: &'static str, message: impl Into<String>) -> GraphError {
    GraphError {
        status,
        code,
        message: message.into(),
        retry_after: None,
    }
}

fn request_ids(headers: &HeaderMap) -> (String, String) {
    let rid = uuid::Uuid::new_v4().to_string();
    let cid = headers
        .get("client-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| rid.clone());
    (rid, cid)
}

/// Stamps a response with its request ids (the same ones an error body carries).
fn finish(mut r: Response, (rid, cid): &(String, String)) -> Response {
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(rid) {
        h.insert("request-id", v);
    }
    if let Ok(v) = HeaderValue::from_str(cid) {
        h.insert("client-request-id", v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("private"));
    h.insert(
        "x-ms-ags-diagnostic",
        HeaderValue::from_static(
            "{\"ServerInfo\":{\"DataCenter\":\"Emulator\",\"Slice\":\"E\",\"Ring\":\"1\",\"ScaleUnit\":\"000\",\"RoleInstance\":\"EXGATE01\"}}",
        ),
    );
    r
}

fn json_response(status: StatusCode, v: &Value) -> Response {
    let mut r = (status, v.to_string()).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON_CT));
    r
}

impl GraphError {
    fn into_response(self, ids: &(String, String)) -> Response {
        let (rid, cid) = ids;
        let date = OffsetDateTime::now_utc();
        let date = format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            date.year(),
            u8::from(date.month()),
            date.day(),
            date.hour(),
            date.minute(),
            date.second()
        );
        let mut inner = json!({"date": date, "request-id": rid, "client-request-id": cid});
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            inner["code"] = json!("429");
            inner["status"] = json!("429");
            inner["message"] = json!("Please retry after");
        }
        let body =
            json!({"error": {"code": self.code, "message": self.message, "innerError": inner}});
        let mut r = finish(json_response(self.status, &body), ids);
        if let Some(s) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&s.to_string())
        {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, auth::graph_challenge());
        }
        r
    }
}

/// Handles one Graph request (`path` is what follows `/v1.0/`).
pub(crate) fn handle(
    st: &Inner,
    origin: &str,
    method: &axum::http::Method,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    Counters::bump(&st.counters.graph);
    let ids = request_ids(headers);
    // `Prefer: IdType="ImmutableId"`: message ids that stay the same when the item moves within
    // the mailbox (Microsoft Graph, "Obtain immutable identifiers for Outlook resources"). The
    // handling is synchronous, so a thread-local flag reaches every id this request writes.
    let immutable = prefers_immutable(headers);
    /// Clears the flag however the request ends (a panic included), so the thread's next
    /// request starts without it.
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            IMMUTABLE_IDS.with(|f| f.set(false));
        }
    }
    IMMUTABLE_IDS.with(|f| f.set(immutable));
    let reset = Reset;
    let mut r = match route(st, origin, method, path, query, headers, body) {
        Ok(r) => finish(r, &ids),
        Err(e) => e.into_response(&ids),
    };
    drop(reset);
    if immutable {
        r.headers_mut().insert(
            "preference-applied",
            HeaderValue::from_static("IdType=\"ImmutableId\""),
        );
    }
    r
}

thread_local! {
    static IMMUTABLE_IDS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether the request asks for immutable ids.
fn prefers_immutable(headers: &HeaderMap) -> bool {
    headers.get_all("prefer").iter().any(|v| {
        v.to_str().is_ok_and(|p| {
            p.to_ascii_lowercase()
                .replace(' ', "")
                .contains("idtype=\"immutableid\"")
        })
    })
}

/// A message's Graph id: the usual one, or the immutable one when the request asked for it.
fn message_graph_id(msg: &Message, m: &Mailbox) -> String {
    if IMMUTABLE_IDS.with(std::cell::Cell::get) {
        graph_id(&crate::store::immutable_id(msg, &m.address))
    } else {
        graph_id(&msg.item_id(m))
    }
}

fn has_any(list: &[String], wanted: &[&str]) -> bool {
    list.iter()
        .any(|r| wanted.iter().any(|w| r.eq_ignore_ascii_case(w)))
}

const READ_ROLES: &[&str] = &[
    "Mail.Read",
    "Mail.ReadWrite",
    "Mail.ReadBasic.All",
    "Mail.ReadBasic",
];
const DELEGATED_READ: &[&str] = &[
    "Mail.Read",
    "Mail.ReadWrite",
    "Mail.ReadBasic",
    "Mail.Read.Shared",
];
/// Delegated permissions that allow `translateExchangeIds` (Graph's reference: User.ReadBasic.All
/// and the higher User permissions).
const TRANSLATE_SCOPES: &[&str] = &[
    "User.ReadBasic.All",
    "User.Read",
    "User.Read.All",
    "User.ReadWrite",
    "User.ReadWrite.All",
];

const USER_ROLES: &[&str] = &[
    "User.Read.All",
    "User.ReadBasic.All",
    "User.ReadWrite.All",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
];

fn method_not_allowed() -> GraphError {
    gerr(
        StatusCode::METHOD_NOT_ALLOWED,
        "BadRequest",
        "Method not allowed.",
    )
}

fn access_denied() -> GraphError {
    gerr(
        StatusCode::FORBIDDEN,
        "ErrorAccessDenied",
        "Access is denied. Check credentials and try again.",
    )
}

/// Path segment: `name`, or `name('key')` / `name(key)`.
fn split_key(seg: &str) -> (String, Option<String>) {
    if let Some((name, rest)) = seg.split_once('(') {
        let key = rest.trim_end_matches(')').trim_matches('\'').to_owned();
        (name.to_ascii_lowercase(), Some(key))
    } else {
        (seg.to_ascii_lowercase(), None)
    }
}

fn decode_seg(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

#[allow(clippy::too_many_arguments)]
fn route(
    st: &Inner,
    origin: &str,
    method: &axum::http::Method,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, GraphError> {
    let principal = match auth::authenticate_graph(st, headers) {
        Ok(p) => p,
        Err(e) => {
            auth::count_failure(st);
            return Err(match e {
                GraphAuthError::Invalid(m) => {
                    gerr(StatusCode::UNAUTHORIZED, "InvalidAuthenticationToken", m)
                }
                GraphAuthError::NoPermissions => gerr(
                    StatusCode::UNAUTHORIZED,
                    "NoPermissionsInAccessToken",
                    "The token contains no permissions, or permissions can not be understood.",
                ),
            });
        }
    };
    let budget = st.budget(Plane::Graph, principal.budget_key());
    if let Err(wait) = st
        .throttle
        .take(Plane::Graph, principal.budget_key(), budget)
    {
        Counters::bump(&st.counters.throttled);
        let mut e = gerr(
            StatusCode::TOO_MANY_REQUESTS,
            "TooManyRequests",
            "Please retry again later.",
        );
        e.retry_after = Some(wait.as_secs().max(1) + u64::from(wait.subsec_nanos() > 0));
        return Err(e);
    }
    let q = Query(
        query
            .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default(),
    );
    let raw_segs: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(decode_seg)
        .collect();
    let segs: Vec<(String, Option<String>)> = raw_segs.iter().map(|s| split_key(s)).collect();
    let not_found = || {
        gerr(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            format!(
                "Resource not found for the segment '{}'.",
                raw_segs.last().map(String::as_str).unwrap_or("")
            ),
        )
    };
    // Resolve the user segment.
    let (user_key, rest, user_path): (String, &[(String, Option<String>)], String) =
        match segs.first() {
            Some((n, None)) if n == "me" => {
                let Principal::User { upn, .. } = &principal else {
                    return Err(gerr(
                        StatusCode::BAD_REQUEST,
                        "BadRequest",
                        "/me request is only valid with delegated authentication flow.",
                    ));
                };
                (
                    upn.clone(),
                    segs.get(1..).unwrap_or_default(),
                    "me".to_owned(),
                )
            }
            Some((n, Some(k))) if n == "users" => (
                k.clone(),
                segs.get(1..).unwrap_or_default(),
                format!("users/{}", enc(k)),
            ),
            Some((n, None)) if n == "users" => match raw_segs.get(1) {
                Some(k) => (
                    k.clone(),
                    segs.get(2..).unwrap_or_default(),
                    format!("users/{}", enc(k)),
                ),
                None => return Err(not_found()),
            },
            _ => return Err(not_found()),
        };
    let found = st
        .find_any(&user_key)
        .and_then(|i| st.mailbox(i).map(|m| (i, m)))
        .filter(|(_, m)| m.tenant_id == principal.tenant_id());
    if let Principal::User { upn, .. } = &principal
        && !found.is_some_and(|(_, m)| m.has_address(upn))
    {
        if found.is_none() && rest.is_empty() {
            return Err(user_not_found(&user_key));
        }
        return Err(access_denied());
    }
    if rest.is_empty() {
        if *method != axum::http::Method::GET {
            return Err(method_not_allowed());
        }
        let allowed = match &principal {
            Principal::App { roles, .. } => has_any(roles, USER_ROLES),
            Principal::User { .. } => true,
        };
        if !allowed {
            return Err(gerr(
                StatusCode::FORBIDDEN,
                "Authorization_RequestDenied",
                "Insufficient privileges to complete the operation.",
            ));
        }
        let Some((_, m)) = found else {
            return Err(user_not_found(&user_key));
        };
        return Ok(json_response(StatusCode::OK, &user_json(m)));
    }
    let Some((i, m)) = found else {
        return Err(gerr(
            StatusCode::NOT_FOUND,
            "ResourceNotFound",
            "Resource could not be discovered.",
        ));
    };
    if matches!(
        rest,
        [(n, None)] if n == "translateexchangeids" || n == "microsoft.graph.translateexchangeids"
    ) {
        if *method != axum::http::Method::POST {
            return Err(method_not_allowed());
        }
        // Delegated only (Graph's reference: application permissions are not supported).
        let permitted = match &principal {
            Principal::App { .. } => false,
            Principal::User { scopes, .. } => has_any(scopes, TRANSLATE_SCOPES),
        };
        if !permitted {
            return Err(access_denied());
        }
        return translate_exchange_ids(st, i, m, body);
    }
    let is_send = rest.first().is_some_and(|(n, _)| n == "sendmail");
    // Creating and deleting messages need Mail.ReadWrite.
    let is_write = !is_send
        && matches!(
            *method,
            axum::http::Method::POST
                | axum::http::Method::DELETE
                | axum::http::Method::PATCH
                | axum::http::Method::PUT
        );
    // Permission for mail.
    let permitted = match &principal {
        Principal::App { roles, .. } if is_send => has_any(roles, &["Mail.Send"]),
        Principal::App { roles, .. } if is_write => has_any(roles, &["Mail.ReadWrite"]),
        Principal::App { roles, .. } => has_any(roles, READ_ROLES),
        Principal::User { scopes, .. } if is_send => has_any(scopes, &["Mail.Send"]),
        Principal::User { scopes, .. } if is_write => has_any(scopes, &["Mail.ReadWrite"]),
        Principal::User { scopes, .. } => has_any(scopes, DELEGATED_READ),
    };
    if !permitted {
        return Err(access_denied());
    }
    if let Principal::App { app_id, .. } = &principal
        && let Err(kind) = st.app_may_reach(app_id, m)
    {
        return Err(match kind {
            AppAccessKind::AccessPolicy => gerr(
                StatusCode::FORBIDDEN,
                "ErrorAccessDenied",
                "Access to OData is disabled: [RAOP] : Blocked by tenant configured AppOnly AccessPolicy settings.",
            ),
            AppAccessKind::Rbac => access_denied(),
        });
    }
    if !m.provisioned || m.server.is_some() {
        return Err(gerr(
            StatusCode::NOT_FOUND,
            "MailboxNotEnabledForRESTAPI",
            "The mailbox is either inactive, soft-deleted, or is hosted on-premise.",
        ));
    }
    if !m.licensed || !m.license.allows_api_access() {
        return Err(gerr(
            StatusCode::FORBIDDEN,
            "ErrorInvalidLicense",
            "The mailbox does not have a valid license for this operation.",
        ));
    }
    let call = Call {
        st,
        origin,
        method,
        headers,
        body,
        i,
        m,
        user_key,
        user_path,
        rest: rest.to_vec(),
        raw_segs: raw_segs.clone(),
        q,
    };
    dispatch(&call)
}

/// One Graph mail request past authentication, throttling, the user's resolution and the
/// permission and mailbox checks: what [`dispatch`] routes.
struct Call<'a> {
    st: &'a Inner,
    origin: &'a str,
    method: &'a axum::http::Method,
    headers: &'a HeaderMap,
    body: &'a [u8],
    /// The mailbox (index and record).
    i: u32,
    m: &'a Mailbox,
    /// The user as the path names it, and the path to it (`me`, `users/{key}`).
    user_key: String,
    user_path: String,
    /// The segments after the user (lower-case name, key), and every segment as sent.
    rest: Vec<(String, Option<String>)>,
    raw_segs: Vec<String>,
    q: Query,
}

/// Routes a mail request by the segments after the user.
fn dispatch(call: &Call<'_>) -> Result<Response, GraphError> {
    let Call {
        st,
        origin,
        method,
        headers,
        body,
        i,
        m,
        user_key,
        user_path,
        rest,
        raw_segs,
        q,
    } = call;
    let (st, origin, headers, body, i, m) = (*st, *origin, *headers, *body, *i, *m);
    let rest = rest.as_slice();
    let not_found = || {
        gerr(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            format!(
                "Resource not found for the segment '{}'.",
                raw_segs.last().map(String::as_str).unwrap_or("")
            ),
        )
    };
    let get = **method == axum::http::Method::GET;
    let select = q.get("$select").map(|s| {
        s.split(',')
            .map(|x| x.trim().to_owned())
            .filter(|x| !x.is_empty())
            .collect::<Vec<_>>()
    });
    let names: Vec<&str> = rest.iter().map(|(n, _)| n.as_str()).collect();
    // The key of the first segment after the user, in its `name('key')` form.
    let first_key: Option<String> = rest.first().and_then(|r| r.1.clone());
    // `messages/{id}/...` or `messages('{id}')/...`: the id (as sent), and what follows it.
    let message_key = |tail: &[&str]| -> Option<(String, usize)> {
        match (&first_key, tail) {
            (Some(k), _) => Some((k.clone(), 0)),
            (None, [_, ..]) => Some((
                raw_segs
                    .get(raw_segs.len().saturating_sub(rest.len()) + 1)
                    .cloned()
                    .unwrap_or_default(),
                1,
            )),
            (None, []) => None,
        }
    };
    // `messages/{id}` followed by exactly `after` more segments: the id, else Graph's answer
    // for a segment it does not know.
    let message_id_before = |tail: &[&str], after: usize| -> Result<String, GraphError> {
        match message_key(tail) {
            Some((id, skip)) if tail.len() == skip + after => Ok(id),
            _ => Err(not_found()),
        }
    };
    match names.as_slice() {
        ["sendmail"] if *method == axum::http::Method::POST && is_text_plain(headers) => {
            send_mime(st, i, body)
        }
        ["sendmail"] if *method == axum::http::Method::POST => send_mail(st, i, m, body),
        ["messages"] if *method == axum::http::Method::POST && first_key.is_none() => {
            let msg = if is_text_plain(headers) {
                draft_from_mime(st, i, m, body)?
            } else {
                create_draft(st, i, m, body)?
            };
            let mut v = message_json(&msg, m, None, prefers_text(headers));
            if let Value::Object(o) = &mut v {
                o.insert(
                    "@odata.context".into(),
                    json!(format!("{CONTEXT}#{}/messages/$entity", ctx_user(user_key))),
                );
            }
            Ok(json_response(StatusCode::CREATED, &v))
        }
        ["messages", tail @ ..]
            if *method == axum::http::Method::POST
                && matches!(
                    tail.last().copied(),
                    Some("permanentdelete" | "microsoft.graph.permanentdelete")
                ) =>
        {
            // `{id}/action`: exactly one segment after the id.
            let id = message_id_before(tail, 1)?;
            let msg = message_by_id(st, i, m, &id)?;
            if st.delete(i, msg.folder, msg.n).is_none() {
                return Err(item_not_found());
            }
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        ["messages", tail @ ..]
            if *method == axum::http::Method::POST
                && matches!(
                    tail.last().copied(),
                    Some("move" | "copy" | "microsoft.graph.move" | "microsoft.graph.copy")
                ) =>
        {
            // `{id}/action`: exactly one segment after the id.
            let id = message_id_before(tail, 1)?;
            let moving = tail.last().is_some_and(|a| a.ends_with("move"));
            let v: Value = serde_json::from_slice(body).map(camel_keys).map_err(|e| {
                gerr(
                    StatusCode::BAD_REQUEST,
                    "ErrorInvalidRequest",
                    format!("The request body is not valid JSON: {e}"),
                )
            })?;
            let Some(dest) = v.get("destinationId").and_then(Value::as_str) else {
                return Err(gerr(
                    StatusCode::BAD_REQUEST,
                    "ErrorInvalidRequest",
                    "The 'destinationId' parameter is required.",
                ));
            };
            let to = folder_by_key(st, i, m, dest)?;
            let msg = message_by_id(st, i, m, &id)?;
            // Moved and copied items get new ids; a moved item's old id is gone.
            let mut copy = msg.clone();
            copy.folder = to;
            let stored = st.store(copy).ok_or_else(item_not_found)?;
            if moving && st.delete(i, msg.folder, msg.n).is_none() {
                return Err(item_not_found());
            }
            let mut out = message_json(&stored, m, None, prefers_text(headers));
            if let Value::Object(o) = &mut out {
                o.insert(
                    "@odata.context".into(),
                    json!(format!("{CONTEXT}#{}/messages/$entity", ctx_user(user_key))),
                );
            }
            Ok(json_response(StatusCode::CREATED, &out))
        }
        ["messages", tail @ ..]
            if *method == axum::http::Method::POST
                && tail.len() >= 2
                && tail.get(tail.len() - 2).copied() == Some("attachments")
                && matches!(
                    tail.last().copied(),
                    Some("createuploadsession" | "microsoft.graph.createuploadsession")
                ) =>
        {
            let id = message_id_before(tail, 2)?;
            let msg = message_by_id(st, i, m, &id)?;
            let v = request_json(body)?;
            let item = v.get("attachmentItem").cloned().unwrap_or(Value::Null);
            let item = camel_keys(item);
            let bad = |text: &str| gerr(StatusCode::BAD_REQUEST, "ErrorInvalidRequest", text);
            let size = item
                .get("size")
                .and_then(Value::as_u64)
                .filter(|n| (1..=crate::graph_upload::MAX_SIZE).contains(n))
                .ok_or_else(|| bad("The attachment's 'size' must be from 1 byte to 150 MB."))?;
            if item
                .get("attachmentType")
                .and_then(Value::as_str)
                .is_some_and(|t| !t.eq_ignore_ascii_case("file"))
            {
                return Err(bad("Only 'file' attachments are supported."));
            }
            let attachment = Attachment::new(
                item.get("name").and_then(Value::as_str).unwrap_or_default(),
                item.get("contentType").and_then(Value::as_str),
                Vec::new(),
                item.get("isInline")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
                item.get("contentId").and_then(Value::as_str),
            )
            .map_err(|_| bad("The attachment's name, contentType or contentId is not valid."))?;
            let token = st.uploads.open(crate::graph_upload::Session {
                mailbox: i,
                folder: msg.folder,
                n: msg.n,
                attachment,
                size,
                data: Vec::new(),
                touched: std::time::Instant::now(),
                message_url: format!("{origin}/v1.0/{user_path}/messages('{id}')"),
            });
            let expires = OffsetDateTime::now_utc() + time::Duration::minutes(15);
            Ok(json_response(
                StatusCode::CREATED,
                &json!({
                    "@odata.context": format!("{CONTEXT}#microsoft.graph.uploadSession"),
                    "uploadUrl": format!("{origin}/api/gv2.0/attachmentSessions/{token}"),
                    "expirationDateTime": iso(expires),
                    "nextExpectedRanges": ["0"],
                }),
            ))
        }
        ["messages", tail @ ..]
            if *method == axum::http::Method::POST
                && tail.last().copied() == Some("attachments") =>
        {
            let id = message_id_before(tail, 1)?;
            let msg = message_by_id(st, i, m, &id)?;
            let att = attachment_from_json(&request_json(body)?)?;
            let (msg, att) = st
                .add_attachment(i, msg.folder, msg.n, att)
                .ok_or_else(item_not_found)?;
            let mut out = attachment_json(&att, &msg, m);
            out["@odata.context"] = json!(format!(
                "{CONTEXT}#{}/messages('{}')/attachments/$entity",
                ctx_user(user_key),
                id
            ));
            Ok(json_response(StatusCode::CREATED, &out))
        }
        ["messages", tail @ ..]
            if *method == axum::http::Method::DELETE
                && tail.len() >= 2
                && tail.get(tail.len() - 2).copied() == Some("attachments") =>
        {
            let id = message_id_before(tail, 2)?;
            let key = raw_segs.last().cloned().unwrap_or_default();
            let msg = message_by_id(st, i, m, &id)?;
            let att = attachment_of(&msg, m, &key)?;
            if !st.delete_attachment(i, msg.folder, msg.n, att.seq) {
                return Err(item_not_found());
            }
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        ["messages", tail @ ..] if *method == axum::http::Method::DELETE => {
            let id = message_id_before(tail, 0)?;
            let msg = message_by_id(st, i, m, &id)?;
            let Some(mut deleted) = st.delete(i, msg.folder, msg.n) else {
                return Err(item_not_found());
            };
            // Graph's DELETE moves a message to Deleted Items (deleting it there removes it);
            // `permanentDelete` is the call that removes it at once.
            if deleted.folder != Folder::DeletedItems {
                deleted.folder = Folder::DeletedItems;
                let _ = st.store(deleted);
            }
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        ["mailfolders", rest2 @ ..] if !get => {
            let (parent_key, tail): (Option<String>, &[&str]) = match (&first_key, rest2) {
                (Some(k), t) => (Some(k.clone()), t),
                (None, []) => (None, &[]),
                (None, [_, t @ ..]) => (
                    raw_segs
                        .get(raw_segs.len().saturating_sub(rest.len()) + 1)
                        .cloned(),
                    t,
                ),
            };
            let folder = parent_key
                .as_deref()
                .map(|k| folder_by_key(st, i, m, k))
                .transpose()?;
            let v = request_json(body)?;
            let done = change_folder(st, i, method, folder, tail, &v)?;
            match done {
                None => Ok(StatusCode::NO_CONTENT.into_response()),
                Some((status, f)) => {
                    let mut out = folder_json(st, i, m, f);
                    out["@odata.context"] = json!(format!(
                        "{CONTEXT}#{}/mailFolders/$entity",
                        ctx_user(user_key)
                    ));
                    Ok(json_response(status, &out))
                }
            }
        }
        ["mailfolders"] if get && rest.first().is_some_and(|r| r.1.is_none()) => {
            let value: Vec<Value> = st
                .folder_children(i, Folder::MsgFolderRoot)
                .iter()
                .filter(|f| f.is_mail_folder())
                .map(|f| folder_json(st, i, m, *f))
                .collect();
            Ok(json_response(
                StatusCode::OK,
                &json!({"@odata.context": format!("{CONTEXT}#{}/mailFolders", ctx_user(user_key)), "value": value}),
            ))
        }
        ["mailfolders", rest2 @ ..] if get => {
            let (key, tail) = match (&first_key, rest2) {
                (Some(k), t) => (k.clone(), t),
                (None, [_, t @ ..]) => (
                    raw_segs
                        .get(raw_segs.len().saturating_sub(rest.len()) + 1)
                        .cloned()
                        .unwrap_or_default(),
                    t,
                ),
                (None, []) => return Err(not_found()),
            };
            let folder = folder_by_key(st, i, m, &key)?;
            let base = format!("{origin}/v1.0/{user_path}/mailFolders/{}", enc(&key));
            match tail {
                [] => {
                    let mut v = folder_json(st, i, m, folder);
                    v["@odata.context"] = json!(format!(
                        "{CONTEXT}#{}/mailFolders/$entity",
                        ctx_user(user_key)
                    ));
                    Ok(json_response(StatusCode::OK, &v))
                }
                ["childfolders"] => {
                    let value: Vec<Value> = st
                        .folder_children(i, folder)
                        .into_iter()
                        .filter(|c| c.is_mail_folder())
                        .map(|c| folder_json(st, i, m, c))
                        .collect();
                    Ok(json_response(
                        StatusCode::OK,
                        &json!({"@odata.context": format!("{CONTEXT}#{}/mailFolders('{}')/childFolders", ctx_user(user_key), key), "value": value}),
                    ))
                }
                ["messages"] => list_messages(
                    st,
                    i,
                    m,
                    &[folder],
                    &base,
                    user_key,
                    q,
                    select.as_deref(),
                    prefers_text(headers),
                ),
                ["messages", "delta"] => delta(st, i, m, folder, &base, q, headers, select),
                _ => Err(not_found()),
            }
        }
        ["messages"] if get && first_key.is_none() => {
            let base = format!("{origin}/v1.0/{user_path}");
            let folders: Vec<Folder> = st
                .folders(i)
                .iter()
                .copied()
                .filter(|f| f.is_mail_folder())
                .collect();
            list_messages(
                st,
                i,
                m,
                &folders,
                &base,
                user_key,
                q,
                select.as_deref(),
                prefers_text(headers),
            )
        }
        ["messages", tail @ ..] if get => {
            let Some((id, skip)) = message_key(tail) else {
                return Err(not_found());
            };
            let tail = &tail[skip..];
            let msg = message_by_id(st, i, m, &id)?;
            match tail {
                [] => {
                    let mut v = message_json(&msg, m, select.as_deref(), prefers_text(headers));
                    if let Value::Object(o) = &mut v {
                        o.insert(
                            "@odata.context".into(),
                            json!(format!("{CONTEXT}#{}/messages/$entity", ctx_user(user_key))),
                        );
                        if wants_attachments(q) {
                            o.insert("attachments".into(), attachments_json(&msg, m));
                        }
                    }
                    Ok(json_response(StatusCode::OK, &v))
                }
                ["attachments"] => Ok(json_response(
                    StatusCode::OK,
                    &json!({
                        "@odata.context": format!(
                            "{CONTEXT}#{}/messages('{}')/attachments",
                            ctx_user(user_key),
                            id
                        ),
                        "value": attachments_json(&msg, m),
                    }),
                )),
                ["attachments", _] | ["attachments", _, "$value"] => {
                    let key = raw_segs
                        .get(raw_segs.len() + 1 - tail.len())
                        .cloned()
                        .unwrap_or_default();
                    let att = attachment_of(&msg, m, &key)?;
                    if tail.len() == 3 {
                        let mut r = (StatusCode::OK, att.content.to_vec()).into_response();
                        r.headers_mut().insert(
                            header::CONTENT_TYPE,
                            HeaderValue::from_str(&att.content_type)
                                .unwrap_or(HeaderValue::from_static("application/octet-stream")),
                        );
                        return Ok(r);
                    }
                    let mut v = attachment_json(&att, &msg, m);
                    v["@odata.context"] = json!(format!(
                        "{CONTEXT}#{}/messages('{}')/attachments/$entity",
                        ctx_user(user_key),
                        id
                    ));
                    Ok(json_response(StatusCode::OK, &v))
                }
                ["$value"] => {
                    let mut r = (StatusCode::OK, msg.mime()).into_response();
                    r.headers_mut()
                        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
                    Ok(r)
                }
                _ => Err(not_found()),
            }
        }
        _ => Err(not_found()),
    }
}

/// Query parameters (names case-insensitive).
struct Query(Vec<(String, String)>);

impl Query {
    fn get(&self, k: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.as_str())
    }
}

fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC)
        .to_string()
        .replace("%40", "@")
        .replace("%2E", ".")
        .replace("%2D", "-")
        .replace("%5F", "_")
}

fn ctx_user(key: &str) -> String {
    format!("users('{}')", key.replace('@', "%40"))
}

fn user_not_found(key: &str) -> GraphError {
    gerr(
        StatusCode::NOT_FOUND,
        "Request_ResourceNotFound",
        format!(
            "Resource '{key}' does not exist or one of its queried reference-property objects are not present."
        ),
    )
}

fn user_json(m: &Mailbox) -> Value {
    let mut parts = m.display_name.splitn(2, ' ');
    let given = parts.next().unwrap_or_default();
    let sur = parts.next();
    json!({
        "@odata.context": format!("{CONTEXT}#users/$entity"),
        "businessPhones": [],
        "displayName": m.display_name,
        "givenName": given,
        "jobTitle": null,
        "mail": m.address,
        "mobilePhone": null,
        "officeLocation": null,
        "preferredLanguage": "en-US",
        "surname": sur,
        "userPrincipalName": m.address,
        "id": m.object_id().to_string(),
    })
}

fn folder_gid(i: u32, m: &Mailbox, f: Folder) -> String {
    graph_id(&encode_id(b'F', i, f, 0, &m.address))
}

fn folder_json(st: &Inner, i: u32, m: &Mailbox, f: Folder) -> Value {
    let parent = st
        .folder_parent(i, f)
        .map(|p| folder_gid(i, m, p))
        .unwrap_or_default();
    json!({
        "id": folder_gid(i, m, f),
        "displayName": st.folder_name(i, f),
        "parentFolderId": parent,
        "childFolderCount": st.folder_children(i, f).iter().filter(|c| c.is_mail_folder()).count(),
        "unreadItemCount": st.unread(i, f),
        "totalItemCount": st.count(i, f),
        "sizeInBytes": 0,
        "isHidden": false,
    })
}

/// Creating, renaming, moving and deleting mail folders (Graph's mailFolder resource):
/// `POST mailFolders` and `POST mailFolders/{id}/childFolders` with `displayName` (201),
/// `PATCH mailFolders/{id}` with `displayName` (200), `POST mailFolders/{id}/move` with
/// `destinationId` (201), `DELETE mailFolders/{id}` (204; to Deleted Items, as a deleted message
/// goes, and removed when deleted from there), `POST mailFolders/{id}/permanentDelete` (204).
/// Returns the folder to answer with and its status, or `None` for 204.
fn change_folder(
    st: &Inner,
    i: u32,
    method: &axum::http::Method,
    folder: Option<Folder>,
    tail: &[&str],
    v: &Value,
) -> Result<Option<(StatusCode, Folder)>, GraphError> {
    use axum::http::Method;
    let fail = |e: FolderChange| match e {
        FolderChange::Exists => gerr(
            StatusCode::CONFLICT,
            "ErrorFolderExists",
            "A folder with the specified name already exists.",
        ),
        FolderChange::NotFound | FolderChange::ParentNotFound => item_not_found(),
        FolderChange::WellKnown => gerr(
            StatusCode::FORBIDDEN,
            "ErrorDeleteDistinguishedFolder",
            "Distinguished folders cannot be deleted or moved.",
        ),
        FolderChange::Full => gerr(
            StatusCode::INSUFFICIENT_STORAGE,
            "ErrorFolderSaveFailed",
            "The folder save operation failed.",
        ),
        FolderChange::InvalidName => gerr(
            StatusCode::BAD_REQUEST,
            "ErrorInvalidRequest",
            "The folder's 'displayName' is required.",
        ),
    };
    let name = v.get("displayName").and_then(Value::as_str);
    match (method, folder, tail) {
        (&Method::POST, None, []) | (&Method::POST, Some(_), ["childfolders"]) => {
            let parent = folder.unwrap_or(Folder::MsgFolderRoot);
            let f = st
                .create_folder(i, parent, name.unwrap_or_default())
                .map_err(fail)?;
            Ok(Some((StatusCode::CREATED, f)))
        }
        (&Method::PATCH, Some(f), []) => {
            if let Some(n) = name.filter(|n| *n != st.folder_name(i, f)) {
                let parent = st.folder_parent(i, f).unwrap_or(Folder::MsgFolderRoot);
                st.rename_folder(i, f, parent, n).map_err(fail)?;
            }
            Ok(Some((StatusCode::OK, f)))
        }
        (&Method::POST, Some(f), ["move" | "microsoft.graph.move"]) => {
            let dest = v
                .get("destinationId")
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    gerr(
                        StatusCode::BAD_REQUEST,
                        "ErrorInvalidRequest",
                        "The 'destinationId' parameter is required.",
                    )
                })?;
            let m = st.mailbox(i).ok_or_else(item_not_found)?;
            let to = folder_by_key(st, i, m, dest)?;
            st.rename_folder(i, f, to, &st.folder_name(i, f))
                .map_err(fail)?;
            Ok(Some((StatusCode::CREATED, f)))
        }
        (&Method::DELETE, Some(f), []) => {
            let in_trash = st.folder_parent(i, f) == Some(Folder::DeletedItems);
            if in_trash {
                st.delete_folder(i, f).map_err(fail)?;
            } else {
                st.rename_folder(i, f, Folder::DeletedItems, &st.folder_name(i, f))
                    .map_err(fail)?;
            }
            Ok(None)
        }
        (&Method::POST, Some(f), ["permanentdelete" | "microsoft.graph.permanentdelete"]) => {
            st.delete_folder(i, f).map_err(fail)?;
            Ok(None)
        }
        _ => Err(method_not_allowed()),
    }
}

fn folder_by_key(st: &Inner, i: u32, m: &Mailbox, key: &str) -> Result<Folder, GraphError> {
    if let Some(f) = Folder::from_name(key) {
        return Ok(f);
    }
    let raw = decode_id(key).ok_or_else(|| {
        gerr(
            StatusCode::BAD_REQUEST,
            "ErrorInvalidIdMalformed",
            "Id is malformed.",
        )
    })?;
    if raw.kind != b'F'
        || !st
            .mailbox(raw.mailbox)
            .is_some_and(|x| raw.verify(&x.address))
    {
        return Err(gerr(
            StatusCode::BAD_REQUEST,
            "ErrorInvalidIdMalformed",
            "Id is malformed.",
        ));
    }
    if raw.mailbox != i || !raw.verify(&m.address) || !st.folder_exists(i, raw.folder) {
        return Err(gerr(
            StatusCode::NOT_FOUND,
            "ErrorItemNotFound",
            "The specified object was not found in the store.",
        ));
    }
    Ok(raw.folder)
}

fn item_not_found() -> GraphError {
    gerr(
        StatusCode::NOT_FOUND,
        "ErrorItemNotFound",
        "The specified object was not found in the store.",
    )
}

fn message_by_id(st: &Inner, i: u32, m: &Mailbox, id: &str) -> Result<Message, GraphError> {
    let raw = decode_id(id)
        .filter(|r| matches!(r.kind, b'I' | b'M'))
        .ok_or_else(|| {
            gerr(
                StatusCode::BAD_REQUEST,
                "ErrorInvalidIdMalformed",
                "Id is malformed.",
            )
        })?;
    let missing = item_not_found;
    if raw.mailbox != i || !raw.verify(&m.address) {
        return Err(missing());
    }
    if raw.kind == b'M' {
        // An immutable id names the item wherever it is in the mailbox.
        for f in st.folders(i) {
            let c = st.count(i, f);
            for k in 0..c {
                if let Some(msg) = st.message(i, f, st.position(i, f, k))
                    && msg.key == raw.n
                {
                    return Ok(msg);
                }
            }
        }
        return Err(missing());
    }
    st.message(i, raw.folder, raw.n).ok_or_else(missing)
}

fn person_json(p: &Person) -> Value {
    json!({"emailAddress": {"name": p.name, "address": p.address}})
}

/// Whether `Prefer: outlook.body-content-type="text"` asks for text bodies (default HTML).
fn prefers_text(headers: &HeaderMap) -> bool {
    headers.get_all("prefer").iter().any(|v| {
        v.to_str().is_ok_and(|p| {
            p.to_ascii_lowercase()
                .replace(' ', "")
                .contains("outlook.body-content-type=\"text\"")
        })
    })
}

fn message_json(msg: &Message, m: &Mailbox, select: Option<&[String]>, text: bool) -> Value {
    let id = message_graph_id(msg, m);
    let ck = msg.change_key(m);
    let full = json!({
        "@odata.etag": format!("W/\"{ck}\""),
        "id": id,
        "createdDateTime": iso(msg.received),
        "lastModifiedDateTime": iso(msg.received),
        "changeKey": ck,
        "categories": [],
        "receivedDateTime": iso(msg.received),
        "sentDateTime": iso(msg.sent),
        "hasAttachments": msg.has_attachments(),
        "internetMessageId": msg.internet_message_id,
        "subject": msg.subject,
        "bodyPreview": msg.preview(),
        "importance": "normal",
        "parentFolderId": graph_id(&encode_id(b'F', msg.mailbox, msg.folder, 0, &m.address)),
        "conversationId": graph_id(&crate::store::encode_id(b'F', msg.mailbox, msg.folder, u32::MAX, &msg.subject)),
        "isReadReceiptRequested": false,
        "isRead": msg.is_read,
        "isDraft": msg.is_draft,
        "webLink": format!("https://outlook.office365.com/owa/?ItemID={}&exvsurl=1&viewmodel=ReadMessageItem", enc(&msg.item_id(m))),
        "inferenceClassification": "focused",
        "body": if text {
            json!({"contentType": "text", "content": msg.body_text()})
        } else {
            json!({"contentType": "html", "content": msg.body_html()})
        },
        "sender": person_json(&msg.from),
        "from": person_json(&msg.from),
        "toRecipients": msg.to.iter().map(person_json).collect::<Vec<_>>(),
        "ccRecipients": msg.cc.iter().map(person_json).collect::<Vec<_>>(),
        "bccRecipients": [],
        "replyTo": [],
        "flag": {"flagStatus": "notFlagged"},
    });
    match (select, full) {
        (Some(sel), Value::Object(all)) => {
            let mut out = Map::new();
            for (k, v) in all {
                if k == "@odata.etag" || k == "id" || sel.iter().any(|s| s.eq_ignore_ascii_case(&k))
                {
                    out.insert(k, v);
                }
            }
            Value::Object(out)
        }
        (_, v) => v,
    }
}

#[allow(clippy::too_many_arguments)]
fn list_messages(
    st: &Inner,
    i: u32,
    m: &Mailbox,
    folders: &[Folder],
    base: &str,
    user_key: &str,
    q: &Query,
    select: Option<&[String]>,
    text: bool,
) -> Result<Response, GraphError> {
    let top = match q.get("$top") {
        Some(t) => t
            .parse::<usize>()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| {
                gerr(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    format!("Invalid $top value '{t}'."),
                )
            })?
            .min(MAX_PAGE),
        None => DEFAULT_PAGE,
    };
    let skip = match q.get("$skip") {
        Some(s) => s.parse::<usize>().map_err(|_| {
            gerr(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                format!("Invalid $skip value '{s}'."),
            )
        })?,
        None => 0,
    };
    let count = q
        .get("$count")
        .is_some_and(|c| c.eq_ignore_ascii_case("true"));
    if q.get("$search").is_some() {
        // Graph: "You can't use $filter or $orderby in a search request" (Microsoft Graph,
        // "Use the $search query parameter", messages).
        for other in ["$filter", "$orderby"] {
            if q.get(other).is_some() {
                return Err(gerr(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    format!("The query parameter '{other}' is not supported with '$search'."),
                ));
            }
        }
    }
    if q.get("$filter").is_some() || q.get("$orderby").is_some() || q.get("$search").is_some() {
        return list_queried(
            st, i, m, folders, base, user_key, q, select, text, top, skip, count,
        );
    }
    // Newest first, folder by folder.
    let counts: Vec<(Folder, usize)> = folders
        .iter()
        .map(|f| (*f, st.count(i, *f) as usize))
        .collect();
    let total: usize = counts.iter().map(|(_, c)| *c).sum();
    let mut value = Vec::new();
    let mut pos = skip;
    let end = skip.saturating_add(top).min(total);
    while pos < end {
        let mut k = pos;
        for (f, c) in &counts {
            if k < *c {
                let n = st.position(i, *f, (*c - 1 - k) as u32);
                if let Some(msg) = st.message(i, *f, n) {
                    value.push(message_json(&msg, m, select, text));
                }
                break;
            }
            k -= c;
        }
        pos += 1;
    }
    let folder_ctx = if folders.len() == 1 {
        format!(
            "/mailFolders('{}')",
            folders
                .first()
                .and_then(|f| f.distinguished())
                .unwrap_or("")
        )
    } else {
        String::new()
    };
    expand_attachments(st, i, m, q, &mut value);
    let body = page_body(
        &format!("{}{folder_ctx}", ctx_user(user_key)),
        base,
        value,
        select,
        q,
        (top, end, total),
        count,
    );
    Ok(json_response(StatusCode::OK, &body))
}

/// Graph's rule for `$filter` with `$orderby` on messages ("List messages", "Using filter and
/// orderby in the same query"): the properties of `$orderby` must appear in `$filter`, in the
/// same order, before any other property; otherwise 400 `InefficientFilter` "The restriction or
/// sort order is too complex for this operation." (the body quoted in msgraph-sdk-dotnet
/// issue 183).
fn sort_fits_filter(filter: &crate::odata::Filter, orderby: &[(String, bool)]) -> bool {
    let mut seen: Vec<String> = Vec::new();
    let mut names = Vec::new();
    crate::odata::paths(filter, &mut names);
    for n in names {
        if !seen.iter().any(|s| s.eq_ignore_ascii_case(&n)) {
            seen.push(n);
        }
    }
    orderby.len() <= seen.len()
        && orderby
            .iter()
            .zip(&seen)
            .all(|((o, _), f)| o.eq_ignore_ascii_case(f))
}

/// The terms of a `$search` value (`"pizza"`, `"subject:quarterly report"` quoted or not), ANDed
/// as KQL does between bare terms: (property, text), property `None` for the default search
/// properties of a message (from, subject, body).
fn search_terms(value: &str) -> Vec<(Option<String>, String)> {
    let v = value.trim();
    let v = v
        .strip_prefix('"')
        .and_then(|x| x.strip_suffix('"'))
        .unwrap_or(v);
    let mut out = Vec::new();
    let mut rest = v.trim();
    while !rest.is_empty() {
        // A term: `prop:value`, `prop:'quoted value'`, or a word.
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let word = &rest[..end];
        let (prop, text, used) = match word.split_once(':') {
            Some((p, t)) if !p.is_empty() && p.chars().all(|c| c.is_ascii_alphabetic()) => {
                let after = &rest[p.len() + 1..];
                match after.chars().next() {
                    Some(q @ ('\'' | '"')) => {
                        let inner = &after[1..];
                        match inner.find(q) {
                            Some(close) => (
                                Some(p.to_ascii_lowercase()),
                                inner[..close].to_owned(),
                                p.len() + 1 + close + 2,
                            ),
                            None => (Some(p.to_ascii_lowercase()), inner.to_owned(), rest.len()),
                        }
                    }
                    _ => (Some(p.to_ascii_lowercase()), t.to_owned(), end),
                }
            }
            _ => (None, word.to_owned(), end),
        };
        let and_keyword = prop.is_none() && text.eq_ignore_ascii_case("AND");
        if !and_keyword && !text.is_empty() {
            out.push((prop, text));
        }
        rest = rest.get(used..).unwrap_or("").trim_start();
    }
    out
}

/// Whether a message (as its Graph resource) holds a search term: a case-insensitive
/// substring of the property (an approximation of Exchange's word and prefix matching).
fn search_term_matches((prop, text): &(Option<String>, String), v: &Value) -> bool {
    let needle = text.to_lowercase();
    let has = |s: &str| s.to_lowercase().contains(&needle);
    let str_at = |path: &[&str]| -> String {
        let mut cur = v;
        for p in path {
            match cur.get(*p) {
                Some(x) => cur = x,
                None => return String::new(),
            }
        }
        cur.as_str().unwrap_or_default().to_owned()
    };
    let people = |key: &str| -> String {
        let mut out = String::new();
        let list: Vec<&Value> = match v.get(key) {
            Some(Value::Array(a)) => a.iter().collect(),
            Some(o @ Value::Object(_)) => vec![o],
            _ => Vec::new(),
        };
        for p in list {
            if let Some(e) = p.get("emailAddress") {
                for k in ["name", "address"] {
                    out.push_str(e.get(k).and_then(Value::as_str).unwrap_or_default());
                    out.push(' ');
                }
            }
        }
        out
    };
    let body = || {
        let b = str_at(&["body", "content"]);
        if b.is_empty() {
            str_at(&["bodyPreview"])
        } else {
            b
        }
    };
    match prop.as_deref() {
        Some("subject") => has(&str_at(&["subject"])),
        Some("body") => has(&body()),
        Some("from") => has(&people("from")),
        Some("to") => has(&people("toRecipients")),
        Some("cc") => has(&people("ccRecipients")),
        Some("participants") => {
            has(&people("from")) || has(&people("toRecipients")) || has(&people("ccRecipients"))
        }
        // Unknown properties and bare words: the default search properties.
        _ => has(&str_at(&["subject"])) || has(&body()) || has(&people("from")),
    }
}

/// One page of a message list: its context, values, `@odata.count` when asked, and the next link
/// keeping the query options (`$filter`, `$orderby`, `$select`, `$count`).
fn page_body(
    context: &str,
    base: &str,
    value: Vec<Value>,
    select: Option<&[String]>,
    q: &Query,
    (top, end, total): (usize, usize, usize),
    count: bool,
) -> Value {
    let sel_ctx = select
        .map(|s| format!("({})", s.join(",")))
        .unwrap_or_default();
    let mut body = json!({
        "@odata.context": format!("{CONTEXT}#{context}/messages{sel_ctx}"),
        "value": value,
    });
    if count {
        body["@odata.count"] = json!(total);
    }
    if end < total {
        let mut link = format!("{base}/messages?%24top={top}&%24skip={end}");
        if q.get("$select").is_none()
            && let Some(s) = select
        {
            link.push_str(&format!("&%24select={}", enc(&s.join(","))));
        }
        for key in ["$filter", "$orderby", "$select", "$count", "$search"] {
            if let Some(v) = q.get(key) {
                link.push_str(&format!("&%24{}={}", &key[1..], enc(v)));
            }
        }
        body["@odata.nextLink"] = json!(link);
    }
    body
}

/// A message list with `$filter` and/or `$orderby`: every message of the folders is read as its
/// Graph resource, filtered, ordered (newest first when no `$orderby`), then paged.
#[allow(clippy::too_many_arguments)]
fn list_queried(
    st: &Inner,
    i: u32,
    m: &Mailbox,
    folders: &[Folder],
    base: &str,
    user_key: &str,
    q: &Query,
    select: Option<&[String]>,
    text: bool,
    top: usize,
    skip: usize,
    count: bool,
) -> Result<Response, GraphError> {
    let bad = |e: crate::odata::QueryError| gerr(StatusCode::BAD_REQUEST, "BadRequest", e.0);
    let filter = q
        .get("$filter")
        .map(crate::odata::parse_filter)
        .transpose()
        .map_err(bad)?;
    let orderby = q
        .get("$orderby")
        .map(crate::odata::parse_orderby)
        .transpose()
        .map_err(bad)?;
    let mut all: Vec<Value> = Vec::new();
    for f in folders {
        let c = st.count(i, *f);
        for k in 0..c {
            let n = st.position(i, *f, c - 1 - k);
            if let Some(msg) = st.message(i, *f, n) {
                all.push(message_json(&msg, m, None, text));
            }
        }
    }
    // Properties are checked against the resource, as Graph checks them against its model.
    let mut names = Vec::new();
    if let Some(f) = &filter {
        crate::odata::paths(f, &mut names);
    }
    if let Some(o) = &orderby {
        names.extend(o.iter().map(|(p, _)| p.clone()));
    }
    let model = all.first().cloned().unwrap_or_else(|| json!({
        "receivedDateTime": "", "sentDateTime": "", "subject": "", "isRead": false, "isDraft": false,
        "hasAttachments": false, "importance": "", "categories": [], "from": {}, "sender": {},
        "parentFolderId": "", "internetMessageId": "", "conversationId": "", "flag": {},
        "toRecipients": [], "ccRecipients": [], "bodyPreview": "", "inferenceClassification": ""
    }));
    for name in names {
        let first = name.split('/').next().unwrap_or_default();
        if crate::odata::lookup(&model, first).is_none() {
            return Err(gerr(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                format!(
                    "Could not find a property named '{first}' on type 'microsoft.graph.message'."
                ),
            ));
        }
    }
    if let (Some(f), Some(o)) = (&filter, &orderby)
        && !sort_fits_filter(f, o)
    {
        return Err(gerr(
            StatusCode::BAD_REQUEST,
            "InefficientFilter",
            "The restriction or sort order is too complex for this operation.",
        ));
    }
    if let Some(f) = &filter {
        all.retain(|v| crate::odata::matches(f, v));
    }
    if let Some(s) = q.get("$search") {
        let terms = search_terms(s);
        if terms.is_empty() {
            return Err(gerr(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "Syntax error: the $search value is empty.",
            ));
        }
        all.retain(|v| terms.iter().all(|t| search_term_matches(t, v)));
    }
    if let Some(keys) = &orderby {
        all.sort_by(|a, b| crate::odata::order(a, b, keys));
    }
    let total = all.len();
    let end = skip.saturating_add(top).min(total);
    let mut page: Vec<Value> = all
        .into_iter()
        .skip(skip)
        .take(end.saturating_sub(skip))
        .map(|v| match (select, v) {
            (Some(sel), Value::Object(obj)) => Value::Object(
                obj.into_iter()
                    .filter(|(k, _)| {
                        k == "@odata.etag"
                            || k == "id"
                            || sel.iter().any(|s| s.eq_ignore_ascii_case(k))
                    })
                    .collect(),
            ),
            (_, v) => v,
        })
        .collect();
    expand_attachments(st, i, m, q, &mut page);
    let body = page_body(
        &ctx_user(user_key),
        base,
        page,
        select,
        q,
        (top, end, total),
        count,
    );
    Ok(json_response(StatusCode::OK, &body))
}

#[allow(clippy::too_many_arguments)]
fn delta(
    st: &Inner,
    i: u32,
    m: &Mailbox,
    folder: Folder,
    base: &str,
    q: &Query,
    headers: &HeaderMap,
    select: Option<Vec<String>>,
) -> Result<Response, GraphError> {
    let gone = || {
        gerr(
            StatusCode::GONE,
            "syncStateNotFound",
            "The sync state is invalid or has expired. Synchronize again without a token.",
        )
    };
    let prefer = headers
        .get("prefer")
        .and_then(|v| v.to_str().ok())
        .and_then(|p| {
            p.split(',')
                .filter_map(|x| x.trim().strip_prefix("odata.maxpagesize="))
                .next()
                .and_then(|n| n.trim().parse::<usize>().ok())
        });
    let (pos, page, select) = if let Some(tok) = q.get("$skiptoken").or(q.get("$deltatoken")) {
        let payload = decode_state(tok).ok_or_else(gone)?;
        let parts: Vec<&str> = payload.split('|').collect();
        match parts.as_slice() {
            ["d", addr, code, pos, page, sel]
                if *addr == m.address && *code == folder.code().to_string() =>
            {
                let pos: usize = pos.parse().map_err(|_| gone())?;
                let page: usize = page.parse().map_err(|_| gone())?;
                let sel = (!sel.is_empty())
                    .then(|| sel.split(',').map(str::to_owned).collect::<Vec<_>>());
                (pos, page.clamp(1, MAX_PAGE), sel)
            }
            _ => return Err(gone()),
        }
    } else {
        let page = prefer
            .or_else(|| q.get("$top").and_then(|t| t.parse().ok()))
            .unwrap_or(DEFAULT_PAGE)
            .clamp(1, MAX_PAGE);
        (0, page, select)
    };
    let total = st.slots(i, folder) as usize;
    if pos > total {
        return Err(gone());
    }
    let end = pos.saturating_add(page).min(total);
    let mut value = Vec::new();
    for n in pos..end {
        if let Some(msg) = st.message(i, folder, n as u32) {
            let mut v = message_json(&msg, m, select.as_deref(), prefers_text(headers));
            if let Value::Object(o) = &mut v {
                o.insert("@odata.type".into(), json!("#microsoft.graph.message"));
            }
            value.push(v);
        }
    }
    let sel_text: String = select
        .as_ref()
        .map(|s| {
            s.iter()
                .map(|x| {
                    x.chars()
                        .filter(|c| c.is_ascii_alphanumeric() || *c == '.')
                        .collect::<String>()
                })
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    let token = encode_state(&format!(
        "d|{}|{}|{end}|{page}|{sel_text}",
        m.address,
        folder.code()
    ));
    let mut body = json!({
        "@odata.context": format!("{CONTEXT}#Collection(message)"),
        "value": value,
    });
    if end < total {
        body["@odata.nextLink"] = json!(format!("{base}/messages/delta?%24skiptoken={token}"));
    } else {
        body["@odata.deltaLink"] = json!(format!("{base}/messages/delta?%24deltatoken={token}"));
    }
    Ok(json_response(StatusCode::OK, &body))
}

fn people(v: Option<&Value>) -> Vec<Person> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|r| {
                    let e = r.get("emailAddress")?;
                    let address = e.get("address")?.as_str()?.to_owned();
                    let name = e
                        .get("name")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                        .unwrap_or_else(|| address.clone());
                    Some(Person { name, address })
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Request-body property names as Graph reads them: without regard to the case of their first
/// letter (the Microsoft Graph SDKs send `Message` and `SaveToSentItems` to `sendMail`), so every
/// key is turned to lower camel case, recursively.
fn camel_keys(v: Value) -> Value {
    match v {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let mut c = k.chars();
                    let key = match c.next() {
                        Some(f) => f.to_lowercase().chain(c).collect(),
                        None => k,
                    };
                    (key, camel_keys(v))
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(camel_keys).collect()),
        other => other,
    }
}

/// A request body as JSON with its property names read as Graph reads them (first letter
/// without regard to case); an empty body is `{}`, one that is not JSON `400 RequestBodyRead`.
fn request_json(body: &[u8]) -> Result<Value, GraphError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    serde_json::from_slice(body).map(camel_keys).map_err(|e| {
        gerr(
            StatusCode::BAD_REQUEST,
            "RequestBodyRead",
            format!("The request body is not valid JSON: {e}"),
        )
    })
}

/// `POST /users/{id}/messages`: a draft in Drafts built from the message JSON.
fn create_draft(st: &Inner, i: u32, m: &Mailbox, body: &[u8]) -> Result<Message, GraphError> {
    let v = request_json(body)?;
    if !v.is_object() {
        return Err(gerr(
            StatusCode::BAD_REQUEST,
            "RequestBodyRead",
            "The request body must be a JSON object describing a message.",
        ));
    }
    let to = people(v.get("toRecipients"));
    let cc = people(v.get("ccRecipients"));
    if to
        .iter()
        .chain(cc.iter())
        .any(|p| !crate::config::valid_address(&p.address))
    {
        return Err(gerr(
            StatusCode::BAD_REQUEST,
            "ErrorInvalidRecipients",
            "At least one recipient isn't valid.",
        ));
    }
    let msg = message_from_json(&v, i, m, Folder::Drafts, to, cc)?;
    st.store(msg).ok_or_else(|| {
        gerr(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ErrorInternalServerError",
            "The item could not be saved.",
        )
    })
}

/// A message of mailbox `i` from a Graph message resource (`subject`, `body`), with its
/// recipients already read: a draft in Drafts, or a sent message in Sent Items.
fn message_from_json(
    v: &Value,
    i: u32,
    m: &Mailbox,
    folder: Folder,
    to: Vec<Person>,
    cc: Vec<Person>,
) -> Result<Message, GraphError> {
    let text = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or_default().to_owned();
    let body_v = v.get("body");
    let now = OffsetDateTime::now_utc();
    let attachments = match v.get("attachments") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(list)) => list
            .iter()
            .map(attachment_from_json)
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(gerr(
                StatusCode::BAD_REQUEST,
                "RequestBodyRead",
                "The property 'attachments' must be an array of attachments.",
            ));
        }
    };
    Ok(Message {
        mailbox: i,
        folder,
        n: 0,
        subject: text(v.get("subject")),
        body: text(body_v.and_then(|b| b.get("content"))),
        body_is_html: body_v
            .and_then(|b| b.get("contentType"))
            .and_then(Value::as_str)
            .is_some_and(|t| t.eq_ignore_ascii_case("html")),
        from: Person {
            name: m.display_name.clone(),
            address: m.address.clone(),
        },
        to,
        cc,
        received: now,
        sent: now,
        is_read: true,
        is_draft: folder == Folder::Drafts,
        internet_message_id: format!("<{}@emulator.exgate>", uuid::Uuid::new_v4().simple()),
        key: crate::store::new_key(),
        attachments,
    })
}

/// Whether `$expand` names `attachments`.
fn wants_attachments(q: &Query) -> bool {
    q.get("$expand").is_some_and(|e| {
        e.split(',')
            .any(|x| x.trim().eq_ignore_ascii_case("attachments"))
    })
}

/// `$expand=attachments` on a list: each listed message gets its `attachments`.
fn expand_attachments(st: &Inner, i: u32, m: &Mailbox, q: &Query, value: &mut [Value]) {
    if !wants_attachments(q) {
        return;
    }
    // Immutable ids name an item by its key, wherever it is: one walk of the mailbox finds
    // every item of the page, instead of one walk per item.
    let mut by_key: Option<HashMap<u32, Message>> = None;
    for v in value {
        let Some(id) = v.get("id").and_then(Value::as_str) else {
            continue;
        };
        let msg = match decode_id(id) {
            Some(raw) if raw.kind == b'M' && raw.mailbox == i && raw.verify(&m.address) => by_key
                .get_or_insert_with(|| {
                    let mut all = HashMap::new();
                    for f in st.folders(i) {
                        let c = st.count(i, f);
                        for k in 0..c {
                            if let Some(msg) = st.message(i, f, st.position(i, f, k)) {
                                all.insert(msg.key, msg);
                            }
                        }
                    }
                    all
                })
                .get(&raw.n)
                .cloned(),
            _ => message_by_id(st, i, m, id).ok(),
        };
        if let (Some(msg), Value::Object(o)) = (msg, v) {
            o.insert("attachments".into(), attachments_json(&msg, m));
        }
    }
}

/// A `fileAttachment` resource (Graph's attachment resource and its fileAttachment type).
fn attachment_json(a: &Attachment, msg: &Message, m: &Mailbox) -> Value {
    use base64::Engine as _;
    json!({
        "@odata.type": "#microsoft.graph.fileAttachment",
        "@odata.mediaContentType": a.content_type,
        "id": graph_id(&a.id(msg, m)),
        "lastModifiedDateTime": iso(a.modified),
        "name": a.name,
        "contentType": a.content_type,
        "size": a.content.len(),
        "isInline": a.is_inline,
        "contentId": a.content_id,
        "contentLocation": null,
        "contentBytes": base64::engine::general_purpose::STANDARD.encode(&a.content),
    })
}

fn attachments_json(msg: &Message, m: &Mailbox) -> Value {
    Value::Array(
        msg.attachments
            .iter()
            .map(|a| attachment_json(a, msg, m))
            .collect(),
    )
}

/// The attachment `key` of `msg`; Graph's `ErrorItemNotFound` for an id that does not name
/// one of its attachments.
fn attachment_of(msg: &Message, m: &Mailbox, key: &str) -> Result<Attachment, GraphError> {
    let (raw, seq) = decode_attachment_id(key).ok_or_else(|| {
        gerr(
            StatusCode::BAD_REQUEST,
            "ErrorInvalidIdMalformed",
            "Id is malformed.",
        )
    })?;
    if raw.mailbox != msg.mailbox
        || raw.folder != msg.folder
        || raw.n != msg.n
        || !raw.verify(&m.address)
    {
        return Err(item_not_found());
    }
    msg.attachments
        .iter()
        .find(|a| a.seq == seq)
        .cloned()
        .ok_or_else(item_not_found)
}

/// A file attachment from its Graph resource: `@odata.type` `#microsoft.graph.fileAttachment`
/// (the only type the emulator keeps), `name`, `contentBytes` (base64), optional
/// `contentType`, `isInline`, `contentId`.
fn attachment_from_json(v: &Value) -> Result<Attachment, GraphError> {
    use base64::Engine as _;
    let bad = |msg: String| gerr(StatusCode::BAD_REQUEST, "ErrorInvalidRequest", msg);
    let kind = v.get("@odata.type").and_then(Value::as_str).unwrap_or("");
    if !kind
        .trim_start_matches('#')
        .eq_ignore_ascii_case("microsoft.graph.fileAttachment")
    {
        return Err(bad(format!(
            "The attachment type '{kind}' is not supported: the '@odata.type' of an attachment \
             must be '#microsoft.graph.fileAttachment'."
        )));
    }
    let name = v
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.trim().is_empty())
        .ok_or_else(|| bad("The attachment's 'name' is required.".into()))?;
    let bytes = v
        .get("contentBytes")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("The attachment's 'contentBytes' is required.".into()))?;
    let content = base64::engine::general_purpose::STANDARD
        .decode(bytes.trim())
        .map_err(|_| {
            gerr(
                StatusCode::BAD_REQUEST,
                "RequestBodyRead",
                "Cannot convert the literal to the expected type 'Edm.Binary'.",
            )
        })?;
    let refused = |what: &str| bad(format!("The attachment's '{what}' is not valid."));
    Attachment::new(
        name,
        v.get("contentType").and_then(Value::as_str),
        content,
        v.get("isInline").and_then(Value::as_bool).unwrap_or(false),
        v.get("contentId").and_then(Value::as_str),
    )
    .map_err(|e| match e {
        AttachmentRefusal::Name => refused("name"),
        AttachmentRefusal::ContentType => refused("contentType"),
        AttachmentRefusal::ContentId => refused("contentId"),
    })
}

/// `POST messages` with `Content-Type: text/plain`: a draft in Drafts from a MIME message in
/// base64 (Graph's "Create message", MIME format): its fields and attachments from the MIME.
fn draft_from_mime(st: &Inner, i: u32, m: &Mailbox, body: &[u8]) -> Result<Message, GraphError> {
    let msg =
        crate::smtp::parse_message(&mime_of(body)?).into_message(i, m, Folder::Drafts, true, true);
    st.store(msg).ok_or_else(|| {
        gerr(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ErrorInternalServerError",
            "The item could not be saved.",
        )
    })
}

/// A MIME message sent in base64 (`sendMail` and `POST messages` with `text/plain`).
fn mime_of(body: &[u8]) -> Result<Vec<u8>, GraphError> {
    use base64::Engine as _;
    let text: Vec<u8> = body
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(&text)
        .map_err(|_| {
            gerr(
                StatusCode::BAD_REQUEST,
                "ErrorMimeContentInvalidBase64String",
                "Invalid base64 string for MIME content.",
            )
        })
}

/// `Content-Type: text/plain`: the body of `sendMail` is a MIME message in base64.
fn is_text_plain(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("text/plain"))
        })
}

/// `sendMail` with MIME content (Graph's "send a message using MIME format"): the body is the
/// message in base64; recipients come from its `To`, `Cc` and `Bcc` headers. Content that is
/// not base64 gets Graph's documented `400` "Invalid base64 string for MIME content."; a message
/// without recipients gets `ErrorInvalidRecipients` as the JSON form does.
fn send_mime(st: &Inner, i: u32, body: &[u8]) -> Result<Response, GraphError> {
    let mime = mime_of(body)?;
    let parsed = crate::smtp::parse_message(&mime);
    let mut rcpts: Vec<String> = parsed
        .to
        .iter()
        .chain(parsed.cc.iter())
        .map(|p| p.address.clone())
        .collect();
    rcpts.extend(
        crate::smtp::header_values(&mime, "bcc")
            .iter()
            .flat_map(|v| crate::smtp::addresses(v))
            .map(|p| p.address),
    );
    if rcpts.is_empty() || rcpts.iter().any(|a| !crate::config::valid_address(a)) {
        return Err(gerr(
            StatusCode::BAD_REQUEST,
            "ErrorInvalidRecipients",
            "At least one recipient isn't valid., A message can't be sent because it contains no recipients.",
        ));
    }
    let from = st.mailbox(i).map(|m| m.address.clone()).unwrap_or_default();
    crate::smtp::deliver(st, i, &from, &rcpts, &mime);
    Ok(StatusCode::ACCEPTED.into_response())
}

fn send_mail(st: &Inner, i: u32, m: &Mailbox, body: &[u8]) -> Result<Response, GraphError> {
    let v: Value = serde_json::from_slice(body).map(camel_keys).map_err(|e| {
        gerr(
            StatusCode::BAD_REQUEST,
            "ErrorInvalidRequest",
            format!("The request body is not valid JSON: {e}"),
        )
    })?;
    let msg = v.get("message").ok_or_else(|| {
        gerr(
            StatusCode::BAD_REQUEST,
            "ErrorInvalidRequest",
            "The 'message' property is required.",
        )
    })?;
    let to = people(msg.get("toRecipients"));
    let cc = people(msg.get("ccRecipients"));
    if to.is_empty() && cc.is_empty()
        || to
            .iter()
            .chain(cc.iter())
            .any(|p| !crate::config::valid_address(&p.address))
    {
        return Err(gerr(
            StatusCode::BAD_REQUEST,
            "ErrorInvalidRecipients",
            "At least one recipient isn't valid., A message can't be sent because it contains no recipients.",
        ));
    }
    let message = message_from_json(msg, i, m, Folder::SentItems, to, cc)?;
    crate::ews::deliver(st, &message);
    if v.get("saveToSentItems")
        .and_then(Value::as_bool)
        .unwrap_or(true)
    {
        let _ = st.store(message);
    }
    Ok(StatusCode::ACCEPTED.into_response())
}

/// The identifier formats of `translateExchangeIds` (Graph's `exchangeIdFormat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IdFormat {
    Entry,
    Ews,
    ImmutableEntry,
    Rest,
    RestImmutableEntry,
}

impl IdFormat {
    fn parse(s: &str) -> Option<IdFormat> {
        Some(match s.to_ascii_lowercase().as_str() {
            "entryid" => IdFormat::Entry,
            "ewsid" => IdFormat::Ews,
            "immutableentryid" => IdFormat::ImmutableEntry,
            "restid" => IdFormat::Rest,
            "restimmutableentryid" => IdFormat::RestImmutableEntry,
            _ => return None,
        })
    }
}

/// Graph's URL-safe form of a binary id: base64 with `+` as `-`, `/` as `_`, the padding
/// removed and its length (0, 1 or 2) appended.
fn binary_id(standard_b64: &str) -> String {
    let trimmed = standard_b64.trim_end_matches('=');
    let pad = standard_b64.len() - trimmed.len();
    format!("{}{pad}", trimmed.replace('+', "-").replace('/', "_"))
}

/// The standard base64 of a binary id in Graph's URL-safe form (see [`binary_id`]).
fn from_binary_id(id: &str) -> Option<String> {
    // The last character is the padding count (any other last character, multi-byte ones
    // included, makes the id malformed).
    let last = id.chars().last()?;
    let pad = usize::try_from(last.to_digit(10)?)
        .ok()
        .filter(|p| *p <= 2)?;
    let body = &id[..id.len() - last.len_utf8()];
    Some(format!(
        "{}{}",
        body.replace('-', "+").replace('_', "/"),
        "=".repeat(pad)
    ))
}

/// `POST /users/{id}/translateExchangeIds`: ids of one format to another. Every id of the
/// collection has the one source format and belongs to this mailbox; one that does not is
/// answered in its entry with `errorDetails`. The binary formats are the item's id bytes (what
/// `ConvertId`'s `EntryId` gives) in Graph's URL-safe form.
fn translate_exchange_ids(
    st: &Inner,
    i: u32,
    m: &Mailbox,
    body: &[u8],
) -> Result<Response, GraphError> {
    let bad = |msg: String| gerr(StatusCode::BAD_REQUEST, "ErrorInvalidRequest", msg);
    let v: Value = serde_json::from_slice(body)
        .map(camel_keys)
        .map_err(|e| bad(format!("The request body is not valid JSON: {e}")))?;
    let Some(ids) = v.get("inputIds").and_then(Value::as_array) else {
        return Err(bad("The 'inputIds' parameter is required.".into()));
    };
    if ids.len() > 1000 {
        return Err(bad(
            "The 'inputIds' collection holds more than 1000 identifiers.".into(),
        ));
    }
    let format = |key: &str| -> Result<IdFormat, GraphError> {
        let raw = v.get(key).and_then(Value::as_str).unwrap_or_default();
        IdFormat::parse(raw).ok_or_else(|| {
            bad(format!(
                "The '{key}' parameter is not a valid exchangeIdFormat: '{raw}'."
            ))
        })
    };
    let (source, target) = (format("sourceIdType")?, format("targetIdType")?);
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let id = id.as_str().unwrap_or_default();
        let canonical = match source {
            IdFormat::Ews | IdFormat::Rest | IdFormat::RestImmutableEntry => Some(id.to_owned()),
            IdFormat::Entry | IdFormat::ImmutableEntry => from_binary_id(id),
        };
        let found = canonical
            .as_deref()
            .map(|c| message_by_id(st, i, m, c))
            .unwrap_or_else(|| Err(item_not_found()));
        out.push(match found {
            Ok(msg) => {
                let ews = msg.item_id(m);
                let immutable = crate::store::immutable_id(&msg, &m.address);
                let target_id = match target {
                    IdFormat::Ews => ews,
                    IdFormat::Rest => graph_id(&ews),
                    IdFormat::Entry => binary_id(&ews),
                    IdFormat::RestImmutableEntry => graph_id(&immutable),
                    IdFormat::ImmutableEntry => binary_id(&immutable),
                };
                json!({"sourceId": id, "targetId": target_id})
            }
            Err(e) => json!({
                "sourceId": id,
                "errorDetails": {"code": e.code, "message": e.message},
            }),
        });
    }
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "@odata.context": format!("{CONTEXT}#Collection(microsoft.graph.convertIdResult)"),
            "value": out,
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_ids_round_trip_and_odd_input_is_malformed_not_a_panic() {
        for raw in ["QUJD", "QUI=", "QQ==", "a+b/c+d/"] {
            let url = binary_id(raw);
            assert!(!url.contains(['+', '/', '=']), "{url}");
            assert_eq!(from_binary_id(&url).as_deref(), Some(raw));
        }
        for odd in ["", "€", "ab€", "abc3", "abc-", "é1"] {
            let _ = from_binary_id(odd);
        }
        assert_eq!(from_binary_id("ab€"), None);
        assert_eq!(from_binary_id("abc3"), None);
    }
}
