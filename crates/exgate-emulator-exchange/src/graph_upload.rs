//! Graph's upload sessions for large attachments ("Attach large files to Outlook messages or
//! events", `attachment: createUploadSession`, the `uploadSession` resource): `POST
//! messages/{id}/attachments/createUploadSession` with an `AttachmentItem` (up to 150 MB) answers
//! an `uploadUrl` that takes the file's bytes in order with `PUT` and `Content-Range` (at most
//! 4 MB each, no `Authorization`: the URL carries its own authority); each part but the last
//! answers `200` with `nextExpectedRanges` holding the next offset, the last `201` with a
//! `Location` naming the new attachment.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::state::Inner;
use crate::store::{Attachment, Folder};

/// Largest attachment an upload session takes (Graph: 150 MB).
pub(crate) const MAX_SIZE: u64 = 150 * 1024 * 1024;
/// Largest part one `PUT` carries (Graph: 4 MB).
pub(crate) const MAX_PART: usize = 4 * 1024 * 1024;
/// How long a session waits for its next part.
const IDLE: Duration = Duration::from_secs(15 * 60);
/// Sessions open at once; the oldest is dropped beyond this.
const MAX_SESSIONS: usize = 8;

/// One upload in progress: where the attachment goes and the bytes received so far.
#[derive(Debug)]
pub(crate) struct Session {
    pub mailbox: u32,
    pub folder: Folder,
    pub n: u32,
    /// The attachment as announced (no content yet).
    pub attachment: Attachment,
    pub size: u64,
    pub data: Vec<u8>,
    pub touched: Instant,
    /// Where the finished attachment is named (`.../messages('{id}')`).
    pub message_url: String,
}

/// The sessions of the plane.
#[derive(Debug, Default)]
pub(crate) struct Sessions(Mutex<HashMap<String, Session>>);

impl Sessions {
    /// Opens a session; returns its token.
    pub(crate) fn open(&self, session: Session) -> String {
        let token = uuid::Uuid::new_v4().simple().to_string();
        if let Ok(mut all) = self.0.lock() {
            all.retain(|_, s| s.touched.elapsed() < IDLE);
            if all.len() >= MAX_SESSIONS
                && let Some(oldest) = all
                    .iter()
                    .min_by_key(|(_, s)| s.touched)
                    .map(|(k, _)| k.clone())
            {
                all.remove(&oldest);
            }
            all.insert(token.clone(), session);
        }
        token
    }

    /// Ends a session (`DELETE` of its URL); `false` when there was none.
    pub(crate) fn cancel(&self, token: &str) -> bool {
        self.0
            .lock()
            .is_ok_and(|mut all| all.remove(token).is_some())
    }
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        json!({"error": {"code": code, "message": message}}).to_string(),
    )
        .into_response()
}

/// `Content-Range: bytes {first}-{last}/{total}`.
fn content_range(headers: &HeaderMap) -> Option<(u64, u64, u64)> {
    let v = headers.get(header::CONTENT_RANGE)?.to_str().ok()?;
    let range = v.trim().strip_prefix("bytes ")?;
    let (span, total) = range.split_once('/')?;
    let (first, last) = span.split_once('-')?;
    Some((
        first.trim().parse().ok()?,
        last.trim().parse().ok()?,
        total.trim().parse().ok()?,
    ))
}

/// A `PUT` of one part to the session `token`.
pub(crate) fn put(st: &Inner, token: &str, headers: &HeaderMap, body: &[u8]) -> Response {
    let Ok(mut all) = st.uploads.0.lock() else {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "InternalServerError", "");
    };
    all.retain(|_, s| s.touched.elapsed() < IDLE);
    let Some(s) = all.get_mut(token) else {
        return error(
            StatusCode::NOT_FOUND,
            "ErrorItemNotFound",
            "The upload session was not found or has expired.",
        );
    };
    let expected = s.data.len() as u64;
    let fits = content_range(headers).filter(|(first, last, total)| {
        *first == expected
            && last >= first
            && *total == s.size
            && *last < *total
            && last - first + 1 == body.len() as u64
    });
    if fits.is_none() || body.len() > MAX_PART {
        // The emulator's wording; Graph's own text for a bad range is not documented.
        return error(
            StatusCode::BAD_REQUEST,
            "InvalidRange",
            &format!(
                "The Content-Range must continue at byte {expected} of {} with at most {MAX_PART} bytes.",
                s.size
            ),
        );
    }
    s.data.extend_from_slice(body);
    s.touched = Instant::now();
    if (s.data.len() as u64) < s.size {
        let next = s.data.len();
        let expires = time::OffsetDateTime::now_utc() + IDLE;
        return (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            json!({
                "expirationDateTime": crate::store::iso(expires),
                "nextExpectedRanges": [next.to_string()],
            })
            .to_string(),
        )
            .into_response();
    }
    let Some(s) = all.remove(token) else {
        return error(StatusCode::NOT_FOUND, "ErrorItemNotFound", "");
    };
    drop(all);
    let mut attachment = s.attachment;
    attachment.content = s.data.into();
    let Some((msg, added)) = st.add_attachment(s.mailbox, s.folder, s.n, attachment) else {
        return error(
            StatusCode::NOT_FOUND,
            "ErrorItemNotFound",
            "The specified object was not found in the store.",
        );
    };
    let Some(m) = st.mailbox(s.mailbox) else {
        return error(StatusCode::NOT_FOUND, "ErrorItemNotFound", "");
    };
    let id = crate::store::graph_id(&added.id(&msg, m));
    let location = format!("{}/attachments('{id}')", s.message_url);
    let mut r = StatusCode::CREATED.into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ranges_are_read() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_static("bytes 0-4194303/5000000"),
        );
        assert_eq!(content_range(&h), Some((0, 4_194_303, 5_000_000)));
        h.insert(header::CONTENT_RANGE, HeaderValue::from_static("bytes */5"));
        assert_eq!(content_range(&h), None);
    }
}
