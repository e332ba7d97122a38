//! Raw HTTP exchanges pasted as text: a response, a request/response pair, or just header lines
//! (`Name: value` or the `Name →value` form some tools copy).

use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

/// A request as read from text. Header values are kept as given; callers must not store
/// `Authorization` values (see [`crate::Evidence::from_text`]).
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RawRequest {
    /// Method (`POST`).
    pub method: String,
    /// Request target: a path or an absolute URL.
    pub target: String,
    /// Headers in order.
    pub headers: Vec<(String, String)>,
    /// Body text.
    pub body: String,
}

impl std::fmt::Debug for RawRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawRequest")
            .field("method", &self.method)
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

/// A response as read from text.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RawResponse {
    /// Status code, when a status line was present.
    pub status: Option<u16>,
    /// Headers in order.
    pub headers: Vec<(String, String)>,
    /// Body text.
    pub body: String,
}

/// What was found in the text.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RawExchange {
    /// The request, if a request line was found.
    pub request: Option<RawRequest>,
    /// The response, if a status line or response headers were found.
    pub response: Option<RawResponse>,
}

static REQUEST_LINE: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(r"^(GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS) (\S+)(?: HTTP/\d(?:\.\d)?)?\s*$").ok()
});
static STATUS_LINE: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"^HTTP/\d(?:\.\d)? (\d{3})\b").ok());
static HEADER_LINE: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"^([A-Za-z][A-Za-z0-9-]*)[ \t]*(?::|→)[ \t]*(.*)$").ok());

const RESPONSE_HEADERS: &[&str] = &[
    "www-authenticate",
    "x-ms-diagnostics",
    "x-feserver",
    "x-backendhttpstatus",
    "request-id",
    "x-ms-request-id",
    "retry-after",
];

fn header(line: &str) -> Option<(String, String)> {
    let c = HEADER_LINE.as_ref()?.captures(line)?;
    Some((
        c.get(1)?.as_str().to_owned(),
        c.get(2).map_or("", |m| m.as_str()).trim().to_owned(),
    ))
}

/// Reads headers from `lines[i..]` until a blank line; returns the headers and the next index.
fn headers_from(lines: &[&str], mut i: usize) -> (Vec<(String, String)>, usize) {
    let mut out = Vec::new();
    while let Some(line) = lines.get(i) {
        if line.trim().is_empty() {
            i += 1;
            break;
        }
        if let Some(h) = header(line) {
            out.push(h);
        } else if line.starts_with([' ', '\t']) {
            // obs-fold continuation
            if let Some(last) = out.last_mut() {
                last.1.push(' ');
                last.1.push_str(line.trim());
            }
        } else {
            break;
        }
        i += 1;
    }
    (out, i)
}

/// Parses text that may hold a raw HTTP request and/or response. Never fails.
pub fn parse_raw_http(text: &str) -> RawExchange {
    let lines: Vec<&str> = text.lines().collect();
    let is_req = |l: &str| {
        REQUEST_LINE
            .as_ref()
            .is_some_and(|r| r.is_match(l.trim_end()))
    };
    let status_of = |l: &str| {
        STATUS_LINE
            .as_ref()
            .and_then(|r| r.captures(l.trim()))
            .and_then(|c| c.get(1))
            .and_then(|m| m.as_str().parse::<u16>().ok())
    };
    let req_at = lines.iter().position(|l| is_req(l));
    let resp_at = lines.iter().position(|l| status_of(l).is_some());
    let mut ex = RawExchange::default();
    if let Some(r) = req_at {
        let (method, target) = REQUEST_LINE
            .as_ref()
            .and_then(|re| re.captures(lines[r].trim_end()))
            .map(|c| {
                (
                    c.get(1).map_or("", |m| m.as_str()).to_owned(),
                    c.get(2).map_or("", |m| m.as_str()).to_owned(),
                )
            })
            .unwrap_or_default();
        let (headers, body_at) = headers_from(&lines, r + 1);
        let body_end = resp_at.filter(|&s| s > r).unwrap_or(lines.len());
        let body = lines
            .get(body_at.min(body_end)..body_end)
            .map(|b| b.join("\n"))
            .unwrap_or_default();
        ex.request = Some(RawRequest {
            method,
            target,
            headers,
            body: body.trim().to_owned(),
        });
    }
    if let Some(s) = resp_at {
        let (headers, body_at) = headers_from(&lines, s + 1);
        let body_end = req_at.filter(|&r| r > s).unwrap_or(lines.len());
        let body = lines
            .get(body_at.min(body_end)..body_end)
            .map(|b| b.join("\n"))
            .unwrap_or_default();
        ex.response = Some(RawResponse {
            status: status_of(lines[s]),
            headers,
            body: body.trim().to_owned(),
        });
    } else {
        // Header lines without a status line (copied from a tool's header view).
        let headers: Vec<(String, String)> = lines.iter().filter_map(|l| header(l)).collect();
        let response_like = headers
            .iter()
            .any(|(n, _)| RESPONSE_HEADERS.iter().any(|r| n.eq_ignore_ascii_case(r)));
        if response_like && headers.len() >= 2 {
            ex.response = Some(RawResponse {
                status: None,
                headers,
                body: String::new(),
            });
        }
    }
    ex
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_with_headers_and_body() {
        let t = "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nWWW-Authenticate: Bearer client_id=\"x\"\r\nWWW-Authenticate: Basic realm=\"m\"\r\n\r\n";
        let ex = parse_raw_http(t);
        let r = ex.response.unwrap();
        assert_eq!(r.status, Some(401));
        assert_eq!(r.headers.len(), 3);
        assert!(ex.request.is_none());
    }

    #[test]
    fn request_response_pair() {
        let t = "POST /EWS/Exchange.asmx HTTP/1.1\nHost: mail.contoso.com\nAuthorization: Bearer\n\n<soap/>\nHTTP/1.1 200 OK\nContent-Type: text/xml\n\n<ok/>";
        let ex = parse_raw_http(t);
        let q = ex.request.unwrap();
        assert_eq!(q.method, "POST");
        assert_eq!(q.body, "<soap/>");
        assert_eq!(ex.response.unwrap().body, "<ok/>");
    }

    #[test]
    fn arrow_headers_without_status() {
        let t = "Content-Length →0\nWWW-Authenticate →Bearer client_id=\"x\", error=\"invalid_token\"\nx-ms-diagnostics →2000003;reason=\"r\";error_category=\"invalid_resource\"";
        let r = parse_raw_http(t).response.unwrap();
        assert_eq!(r.status, None);
        assert_eq!(r.headers.len(), 3);
        assert_eq!(r.headers[2].0, "x-ms-diagnostics");
    }
}
