//! A small read-only XML tree built with quick-xml, matched by local name.
//!
//! EWS and Autodiscover responses are looked up by element name the way exchangelib does it
//! (prefixes stripped, namespaces not checked), so a full namespace-aware model would buy
//! nothing here. The tree is bounded (depth and node count) so hostile input cannot exhaust
//! memory or the stack, and building it never panics.

use quick_xml::Reader;
use quick_xml::escape::resolve_xml_entity;
use quick_xml::events::{BytesStart, Event};

/// Deepest nesting accepted; EWS responses stay far below this.
const MAX_DEPTH: usize = 128;
/// Most elements accepted in one document.
const MAX_ELEMENTS: usize = 500_000;

/// Why a document could not be read as XML.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed XML at byte {position}: {reason}")]
pub struct XmlError {
    /// Byte offset where reading stopped.
    pub position: u64,
    /// What was wrong.
    pub reason: String,
}

/// One element: its local name, attributes (local names) and children.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Element {
    /// Local name (prefix removed).
    pub name: String,
    /// Attributes as (local name, unescaped value); namespace declarations are dropped.
    pub attrs: Vec<(String, String)>,
    /// Child elements in document order.
    pub children: Vec<Element>,
    /// Concatenated text content directly inside this element.
    pub text: String,
}

impl Element {
    /// The first child with this local name.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// All children with this local name.
    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// The first element with this local name at any depth (self excluded), depth first.
    pub fn find(&self, name: &str) -> Option<&Element> {
        let mut stack: Vec<&Element> = self.children.iter().rev().collect();
        while let Some(e) = stack.pop() {
            if e.name == name {
                return Some(e);
            }
            stack.extend(e.children.iter().rev());
        }
        None
    }

    /// Follows a path of child names.
    pub fn path(&self, names: &[&str]) -> Option<&Element> {
        let mut cur = self;
        for n in names {
            cur = cur.child(n)?;
        }
        Some(cur)
    }

    /// Attribute value by local name.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Trimmed text of the named child, if present and non-empty.
    pub fn child_text(&self, name: &str) -> Option<String> {
        self.child(name)
            .map(|c| c.text.trim().to_owned())
            .filter(|t| !t.is_empty())
    }
}

fn local(qname: &str) -> &str {
    qname.rsplit(':').next().unwrap_or(qname)
}

fn element_from(start: &BytesStart<'_>, position: u64) -> Result<Element, XmlError> {
    let name = local(start.name().as_ref()).to_owned();
    let mut attrs = Vec::new();
    for a in start.attributes() {
        let a = a.map_err(|e| XmlError {
            position,
            reason: e.to_string(),
        })?;
        let key = a.key.as_ref();
        if key == "xmlns" || key.starts_with("xmlns:") {
            continue;
        }
        let value = a
            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .map_err(|e| XmlError {
                position,
                reason: e.to_string(),
            })?;
        attrs.push((local(key).to_owned(), value.into_owned()));
    }
    Ok(Element {
        name,
        attrs,
        children: Vec::new(),
        text: String::new(),
    })
}

/// Parses a whole document and returns its root element.
pub fn parse(input: &str) -> Result<Element, XmlError> {
    let input = input.strip_prefix('\u{feff}').unwrap_or(input);
    let mut reader = Reader::from_str(input);
    let config = reader.config_mut();
    config.check_end_names = true;
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let mut count = 0usize;
    loop {
        let position = reader.buffer_position();
        let err = |reason: String| XmlError { position, reason };
        let event = reader.read_event().map_err(|e| err(e.to_string()))?;
        match event {
            Event::Start(s) | Event::Empty(s) if root.is_some() => {
                let _ = s;
                return Err(err("content after the root element".into()));
            }
            Event::Start(s) => {
                count += 1;
                if stack.len() >= MAX_DEPTH || count > MAX_ELEMENTS {
                    return Err(err("document too deep or too large".into()));
                }
                stack.push(element_from(&s, position)?);
            }
            Event::Empty(s) => {
                count += 1;
                if count > MAX_ELEMENTS {
                    return Err(err("document too large".into()));
                }
                let e = element_from(&s, position)?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(e),
                    None => root = Some(e),
                }
            }
            Event::End(_) => {
                let Some(done) = stack.pop() else {
                    return Err(err("unexpected closing tag".into()));
                };
                match stack.last_mut() {
                    Some(parent) => parent.children.push(done),
                    None => root = Some(done),
                }
            }
            Event::Text(t) => {
                if let Some(cur) = stack.last_mut() {
                    cur.text.push_str(&t.xml10_content());
                } else if !t.xml10_content().trim().is_empty() {
                    return Err(err("text outside the root element".into()));
                }
            }
            Event::CData(c) => {
                if let Some(cur) = stack.last_mut() {
                    cur.text.push_str(&c.xml10_content());
                }
            }
            Event::GeneralRef(r) => {
                let resolved = if r.is_char_ref() {
                    r.resolve_char_ref()
                        .map_err(|e| err(e.to_string()))?
                        .map(String::from)
                } else {
                    resolve_xml_entity(&r.xml10_content()).map(str::to_owned)
                };
                let Some(text) = resolved else {
                    return Err(err(format!("unknown entity &{};", r.xml10_content())));
                };
                if let Some(cur) = stack.last_mut() {
                    cur.text.push_str(&text);
                }
            }
            Event::Eof => break,
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) | Event::DocType(_) => {}
        }
    }
    if !stack.is_empty() {
        return Err(XmlError {
            position: reader.buffer_position(),
            reason: "document ended inside an element".into(),
        });
    }
    root.ok_or(XmlError {
        position: 0,
        reason: "no root element".into(),
    })
}

/// Escapes text for element content or a double-quoted attribute value.
pub fn esc(s: &str) -> std::borrow::Cow<'_, str> {
    quick_xml::escape::escape(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_prefixed_elements_by_local_name_and_unescapes() {
        let doc = r#"<?xml version="1.0"?><s:Envelope xmlns:s="x"><s:Body><m:A t:Id="1&amp;2">x &lt; y&#33;<![CDATA[<z>]]></m:A><m:B/></s:Body></s:Envelope>"#;
        let root = parse(doc).unwrap();
        assert_eq!(root.name, "Envelope");
        let a = root.find("A").unwrap();
        assert_eq!(a.attr("Id"), Some("1&2"));
        assert_eq!(a.text, "x < y!<z>");
        assert!(root.path(&["Body", "B"]).is_some());
        assert!(root.attrs.is_empty(), "xmlns declarations are dropped");
    }

    #[test]
    fn rejects_mismatched_and_truncated_documents() {
        assert!(parse("<a><b></a>").is_err());
        assert!(parse("<a><b>").is_err());
        assert!(parse("").is_err());
        assert!(parse("<a/><b/>").is_err());
        assert!(parse("<a>&bogus;</a>").is_err());
    }

    #[test]
    fn rejects_excessive_depth() {
        let doc = "<a>".repeat(MAX_DEPTH + 1) + &"</a>".repeat(MAX_DEPTH + 1);
        assert!(parse(&doc).is_err());
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_input(s in ".{0,300}") {
            let _ = parse(&s);
        }

        #[test]
        fn never_panics_on_xmlish_input(s in "[<>/a-c:=\"' &;#x0-9!\\[\\]CDATA?-]{0,200}") {
            let _ = parse(&s);
        }

        #[test]
        fn escaped_text_round_trips(s in "[^\u{0}-\u{8}\u{b}\u{c}\u{e}-\u{1f}\r]{0,100}") {
            let doc = format!("<r a=\"{}\">{}</r>", esc(&s), esc(&s));
            let root = parse(&doc).unwrap();
            prop_assert_eq!(&root.text, &s);
            // Attribute values are normalised by XML rules only for whitespace characters.
            if !s.contains(['\t', '\n']) {
                prop_assert_eq!(root.attr("a"), Some(s.as_str()));
            }
        }
    }
}
