//! Pure CPU cost of reading an EWS answer: no network, no runtime.
//!
//! Run with `cargo bench -p exgate-mail --bench ews_parse`. The input is a GetFolder answer of
//! the shape Exchange Online (and the emulator) sends for `msgfolderroot`: compact XML, a
//! `ServerVersionInfo` header, one response message holding one folder. An indented copy of
//! the same answer measures what whitespace between elements costs.
//!
//! - `xml_tree`: [`exgate_mail::xml::parse`] alone.
//! - `get_folder`: what the EWS client does with a successful GetFolder body, from the bytes
//!   to the [`exgate_mail::ews::Folder`]: SOAP envelope, response messages, folder.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use exgate_mail::ews::{Folder, ops, response};

const FOLDER_ID: &str = "AAMkADk2ZjM0YzQ5LTM0NzctNGE3Ny1hZGE1LWQ5MjM2MzBhZDQ2MgAuAAAAAAC8ZlH7t/G0TJ5cQhZLZ3ZjAQBq4u0hbNHsSaHSRbIW6+V3AAAAAAEIAAA=";
const PARENT_ID: &str = "AAMkADk2ZjM0YzQ5LTM0NzctNGE3Ny1hZGE1LWQ5MjM2MzBhZDQ2MgAuAAAAAAC8ZlH7t/G0TJ5cQhZLZ3ZjAQBq4u0hbNHsSaHSRbIW6+V3AAAAAAEBAAA=";
const CHANGE_KEY: &str = "AQAAABYAAABq4u0hbNHsSaHSRbIW6+V3AAAD4Jbx";

fn get_folder_answer() -> String {
    format!(
        concat!(
            r#"<?xml version="1.0" encoding="utf-8"?>"#,
            r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/">"#,
            r#"<s:Header><h:ServerVersionInfo MajorVersion="15" MinorVersion="20" MajorBuildNumber="8466" MinorBuildNumber="32" Version="V2018_01_08" xmlns:h="http://schemas.microsoft.com/exchange/services/2006/types" xmlns="http://schemas.microsoft.com/exchange/services/2006/types" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"/></s:Header>"#,
            r#"<s:Body xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:xsd="http://www.w3.org/2001/XMLSchema">"#,
            r#"<m:GetFolderResponse xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages" xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types">"#,
            r#"<m:ResponseMessages><m:GetFolderResponseMessage ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode>"#,
            r#"<m:Folders><t:Folder><t:FolderId Id="{fid}" ChangeKey="{ck}"/><t:ParentFolderId Id="{pid}" ChangeKey="{ck}"/>"#,
            r#"<t:FolderClass>IPF.Note</t:FolderClass><t:DisplayName>Top of Information Store</t:DisplayName>"#,
            r#"<t:TotalCount>0</t:TotalCount><t:ChildFolderCount>14</t:ChildFolderCount>"#,
            r#"<t:EffectiveRights><t:CreateAssociated>true</t:CreateAssociated><t:CreateContents>true</t:CreateContents><t:CreateHierarchy>true</t:CreateHierarchy><t:Delete>true</t:Delete><t:Modify>true</t:Modify><t:Read>true</t:Read><t:ViewPrivateItems>true</t:ViewPrivateItems></t:EffectiveRights>"#,
            r#"<t:DistinguishedFolderId>msgfolderroot</t:DistinguishedFolderId><t:UnreadCount>0</t:UnreadCount>"#,
            r#"</t:Folder></m:Folders></m:GetFolderResponseMessage></m:ResponseMessages></m:GetFolderResponse>"#,
            r#"</s:Body></s:Envelope>"#
        ),
        fid = FOLDER_ID,
        pid = PARENT_ID,
        ck = CHANGE_KEY
    )
}

/// The same document with each element on its own line, indented.
fn indented(doc: &str) -> String {
    let mut out = String::with_capacity(doc.len() * 2);
    let mut depth = 0usize;
    let mut rest = doc;
    while let Some(start) = rest.find('<') {
        let text = &rest[..start];
        let Some(end) = rest[start..].find('>') else {
            break;
        };
        let tag = &rest[start..start + end + 1];
        rest = &rest[start + end + 1..];
        let closing = tag.starts_with("</");
        let opening = !closing && !tag.ends_with("/>") && !tag.starts_with("<?");
        if closing {
            depth = depth.saturating_sub(1);
        }
        if text.is_empty() {
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(&"  ".repeat(depth));
        } else {
            out.push_str(text);
        }
        out.push_str(tag);
        if opening {
            depth += 1;
        }
    }
    out
}

/// From the body bytes of a 200 answer to the folder, as the EWS client does it.
fn read_get_folder(body: &[u8]) -> Option<Folder> {
    let text = match std::str::from_utf8(body) {
        Ok(t) => std::borrow::Cow::Borrowed(t),
        Err(_) => String::from_utf8_lossy(body),
    };
    let r = response::parse_response(&text).ok()?;
    let response::SoapBody::Response(el) = r.body else {
        return None;
    };
    let first = response::first_response_message(el)?;
    if !first.is_success() {
        return None;
    }
    ops::read_get_folder(&first.element).into_iter().next()
}

fn ews_parse(c: &mut Criterion) {
    let compact = get_folder_answer();
    let pretty = indented(&compact);
    // Fail loudly rather than measure errors.
    for doc in [&compact, &pretty] {
        let f = read_get_folder(doc.as_bytes()).expect("the answer reads");
        assert_eq!(f.id, FOLDER_ID);
        assert_eq!(f.display_name.as_deref(), Some("Top of Information Store"));
        assert_eq!(f.child_folder_count, Some(14));
    }
    let mut group = c.benchmark_group("ews_parse");
    group.throughput(Throughput::Bytes(compact.len() as u64));
    for (name, doc) in [("compact", &compact), ("indented", &pretty)] {
        group.bench_function(format!("xml_tree/{name}"), |b| {
            b.iter(|| black_box(exgate_mail::xml::parse(black_box(doc)).is_ok()));
        });
        group.bench_function(format!("get_folder/{name}"), |b| {
            b.iter(|| black_box(read_get_folder(black_box(doc.as_bytes()))));
        });
    }
    group.finish();
}

criterion_group!(benches, ews_parse);
criterion_main!(benches);
