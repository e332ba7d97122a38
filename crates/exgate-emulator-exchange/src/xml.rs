//! A small namespace-tolerant XML tree for SOAP requests (elements by local name), built with
//! quick-xml's reader, and escaping helpers for writing responses.

use quick_xml::XmlVersion;
use quick_xml::events::Event;

/// Limits that keep hostile input cheap.
const MAX_DEPTH: usize = 64;
const MAX_ELEMENTS: usize = 200_000;

/// An element: local name, attributes by local name, children and text content.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Element {
    pub name: String,
    pub attrs: Vec<(String, String)>,
    pub children: Vec<Element>,
    pub text: String,
}

/// Why a request body is not acceptable XML, with the position (1-based line and column).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct XmlError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl Element {
    /// First child with this local name.
    pub(crate) fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// Children with this local name.
    pub(crate) fn children_named<'a>(
        &'a self,
        name: &'a str,
    ) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// Follows a path of local names.
    pub(crate) fn path(&self, names: &[&str]) -> Option<&Element> {
        let mut cur = self;
        for n in names {
            cur = cur.child(n)?;
        }
        Some(cur)
    }

    /// Attribute by local name.
    pub(crate) fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Trimmed text of a child.
    pub(crate) fn child_text(&self, name: &str) -> Option<&str> {
        self.child(name).map(|c| c.text.trim())
    }
}

fn position(input: &[u8], offset: u64) -> (usize, usize) {
    let end = usize::try_from(offset)
        .unwrap_or(usize::MAX)
        .min(input.len());
    let before = input.get(..end).unwrap_or_default();
    let line = before.iter().filter(|b| **b == b'\n').count() + 1;
    let col = before.iter().rev().take_while(|b| **b != b'\n').count() + 1;
    (line, col)
}

fn local(name: &str) -> String {
    name.to_owned()
}

/// Parses a document into its root element.
pub(crate) fn parse(input: &[u8]) -> Result<Element, XmlError> {
    let input = input.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(input);
    let mut reader = quick_xml::Reader::from_reader(input);
    reader.config_mut().check_end_names = true;
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let mut count = 0usize;
    let err = |reader: &quick_xml::Reader<&[u8]>, msg: String| {
        let (line, column) = position(input, reader.error_position().max(reader.buffer_position()));
        XmlError {
            line,
            column,
            message: msg,
        }
    };
    loop {
        let ev = reader
            .read_event()
            .map_err(|e| err(&reader, e.to_string()))?;
        match ev {
            Event::Start(_) | Event::Empty(_) if root.is_some() && stack.is_empty() => {
                return Err(err(&reader, "content after the root element".into()));
            }
            Event::Start(ref e) | Event::Empty(ref e) => {
                count += 1;
                if count > MAX_ELEMENTS || stack.len() >= MAX_DEPTH {
                    return Err(err(
                        &reader,
                        "document too large or too deeply nested".into(),
                    ));
                }
                let mut el = Element {
                    name: local(e.local_name().as_ref()),
                    ..Element::default()
                };
                for a in e.attributes() {
                    let a = a.map_err(|x| err(&reader, x.to_string()))?;
                    let key = a.key.local_name();
                    if a.key.as_ref().starts_with("xmlns") {
                        continue;
                    }
                    let v = a
                        .normalized_value(XmlVersion::Implicit1_0)
                        .map_err(|x| err(&reader, x.to_string()))?;
                    el.attrs.push((local(key.as_ref()), v.into_owned()));
                }
                if matches!(ev, Event::Empty(_)) {
                    match stack.last_mut() {
                        Some(parent) => parent.children.push(el),
                        None => root = Some(el),
                    }
                } else {
                    stack.push(el);
                }
            }
            Event::End(_) => {
                let el = stack
                    .pop()
                    .ok_or_else(|| err(&reader, "unexpected end tag".into()))?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => root = Some(el),
                }
            }
            Event::Text(t) => {
                let s = t.xml10_content();
                match stack.last_mut() {
                    Some(cur) => cur.text.push_str(&s),
                    None if s.trim().is_empty() => {}
                    None => return Err(err(&reader, "text outside the root element".into())),
                }
            }
            Event::CData(t) => {
                if let Some(cur) = stack.last_mut() {
                    cur.text.push_str(&t.xml10_content());
                }
            }
            Event::GeneralRef(r) => {
                let resolved = if r.is_char_ref() {
                    r.resolve_char_ref()
                        .map_err(|x| err(&reader, x.to_string()))?
                        .map(String::from)
                } else {
                    quick_xml::escape::resolve_predefined_entity(&r.xml10_content())
                        .map(str::to_owned)
                };
                let Some(text) = resolved else {
                    return Err(err(&reader, "unknown entity reference".into()));
                };
                if let Some(cur) = stack.last_mut() {
                    cur.text.push_str(&text);
                }
            }
            Event::DocType(_) => {
                return Err(err(&reader, "DTDs are not allowed".into()));
            }
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) => {}
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err(err(&reader, "unexpected end of document".into()));
    }
    root.ok_or_else(|| XmlError {
        line: 1,
        column: 1,
        message: "no root element".into(),
    })
}

/// Escapes text or an attribute value.
pub(crate) fn esc(s: &str) -> std::borrow::Cow<'_, str> {
    quick_xml::escape::escape(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_prefixed_and_default_namespaces_by_local_name() {
        let doc = br#"<?xml version="1.0"?><soap:Envelope xmlns:soap="x"><soap:Body><GetFolder xmlns="m"><a:B Id="r&amp;1"/>t&lt;x</GetFolder></soap:Body></soap:Envelope>"#;
        let root = parse(doc).expect("parses");
        assert_eq!(root.name, "Envelope");
        let op = root.path(&["Body", "GetFolder"]).expect("op");
        assert_eq!(op.child("B").and_then(|b| b.attr("Id")), Some("r&1"));
        assert_eq!(op.text, "t<x");
    }

    #[test]
    fn reports_line_and_column_of_errors() {
        let e = parse(b"<a>\n<b></c></a>").expect_err("mismatched");
        assert_eq!(e.line, 2);
    }

    #[test]
    fn rejects_doctype_and_trailing_content() {
        assert!(parse(b"<!DOCTYPE x [<!ENTITY a 'b'>]><x/>").is_err());
        assert!(parse(b"<x/><y/>").is_err());
        assert!(parse(b"").is_err());
    }
}
