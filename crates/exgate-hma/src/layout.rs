//! PowerShell's output layouts, read back: `Format-List` (`Key : Value`, wrapped values on
//! indented lines, records between blank lines), `Format-Table` (a header, a line of dashes,
//! columns by the dashes' spans), bare lines (`select -ExpandProperty`), and the prompts that say
//! which cmdlet wrote what follows (`[PS] C:\>Get-AuthServer | fl`).

use std::sync::LazyLock;

use regex::Regex;

use crate::text;

/// One `Key : Value` of a record, with the line it started on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// The property name as printed.
    pub key: String,
    /// The value, wrapped lines joined.
    pub value: String,
    /// Line number (from 1) in the file.
    pub line: usize,
}

/// What one cmdlet printed about one object: a `Format-List` record or a `Format-Table` row.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Record {
    /// The cmdlet of the last prompt before it, when the paste kept its prompts.
    pub cmdlet: Option<String>,
    /// Line number of its first field.
    pub line: usize,
    /// Its fields, in order.
    pub fields: Vec<Field>,
}

impl Record {
    /// The value of `key` (case-insensitive), if printed.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|f| f.key.eq_ignore_ascii_case(key))
            .map(|f| f.value.as_str())
    }

    /// The field of `key`.
    pub fn field(&self, key: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.key.eq_ignore_ascii_case(key))
    }

    /// Whether `key` was printed.
    pub fn has(&self, key: &str) -> bool {
        self.field(key).is_some()
    }
}

/// Lines printed one value each (`select -ExpandProperty ServicePrincipalNames`, or the `True` of
/// `(Get-OrganizationConfig).OAuth2ClientProfileEnabled`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Bare {
    /// The command of the last prompt before them.
    pub cmdlet: Option<String>,
    /// Each value with its line.
    pub items: Vec<(usize, String)>,
}

/// A file read back into records and bare lists.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Layout {
    /// `Format-List` records and `Format-Table` rows.
    pub records: Vec<Record>,
    /// Runs of bare lines.
    pub bare: Vec<Bare>,
}

static PROMPT: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"^\s*(?:\[PS\]|PS)\s[^>]{0,260}>\s?(.*)$").ok());
static FIELD: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"^([A-Za-z][A-Za-z0-9_.\-]{0,80})\s*:(?:\s(.*)|$)").ok());
static DASHES: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(r"^\s*-+(?:\s+-+)*\s*$").ok());

/// The command a prompt line ran, as typed (trimmed). `None` for a prompt without a command.
fn command_of(rest: &str) -> Option<String> {
    let rest = rest.trim();
    if rest.is_empty() {
        return None;
    }
    Some(rest.to_owned())
}

/// Reads `text` (already decoded) into records and bare lists.
pub fn read(text: &str) -> Layout {
    let lines: Vec<(usize, &str)> = text::lines(text).collect();
    let mut out = Layout::default();
    let mut cmdlet: Option<String> = None;
    let mut record: Option<Record> = None;
    let mut bare: Option<Bare> = None;
    let mut i = 0;
    let flush_record = |out: &mut Layout, r: &mut Option<Record>| {
        if let Some(r) = r.take()
            && !r.fields.is_empty()
        {
            out.records.push(r);
        }
    };
    let flush_bare = |out: &mut Layout, b: &mut Option<Bare>| {
        if let Some(b) = b.take()
            && !b.items.is_empty()
        {
            out.bare.push(b);
        }
    };
    while i < lines.len() {
        let (n, line) = lines[i];
        i += 1;
        if let Some(c) = PROMPT.as_ref().and_then(|r| r.captures(line)) {
            flush_record(&mut out, &mut record);
            flush_bare(&mut out, &mut bare);
            cmdlet = command_of(c.get(1).map_or("", |m| m.as_str()));
            continue;
        }
        // Blank lines end a record; `#` lines are comments (the collection script's notes).
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            flush_record(&mut out, &mut record);
            flush_bare(&mut out, &mut bare);
            continue;
        }
        // A table: this line is the header when the next one is its dashes.
        if let Some(&(_, next)) = lines.get(i)
            && DASHES.as_ref().is_some_and(|r| r.is_match(next))
            && !line.trim().is_empty()
        {
            flush_record(&mut out, &mut record);
            flush_bare(&mut out, &mut bare);
            let columns = spans(next);
            let bounds: Vec<(usize, Option<usize>)> = columns
                .iter()
                .enumerate()
                .map(|(k, &(s, _))| (s, columns.get(k + 1).map(|&(n, _)| n)))
                .collect();
            let header_chars: Vec<char> = line.chars().collect();
            let headers: Vec<String> = bounds
                .iter()
                .map(|&(s, e)| cell(&header_chars, s, e))
                .collect();
            i += 1;
            while let Some(&(rn, row)) = lines.get(i) {
                if row.trim().is_empty() || PROMPT.as_ref().is_some_and(|r| r.is_match(row)) {
                    break;
                }
                i += 1;
                let row_chars: Vec<char> = row.chars().collect();
                let fields = headers
                    .iter()
                    .zip(&bounds)
                    .filter(|(h, _)| !h.is_empty())
                    .map(|(h, &(s, e))| Field {
                        key: h.clone(),
                        value: cell(&row_chars, s, e),
                        line: rn,
                    })
                    .collect();
                out.records.push(Record {
                    cmdlet: cmdlet.clone(),
                    line: rn,
                    fields,
                });
            }
            continue;
        }
        let field = FIELD.as_ref().and_then(|r| r.captures(line));
        let field = field.filter(|c| {
            // `https://host/` is a value, not a key.
            !c.get(2).is_some_and(|v| v.as_str().starts_with("//"))
                && !line[c.get(1).map_or(0, |m| m.end())..]
                    .trim_start()
                    .starts_with(":/")
        });
        if let Some(c) = field {
            flush_bare(&mut out, &mut bare);
            let r = record.get_or_insert_with(|| Record {
                cmdlet: cmdlet.clone(),
                line: n,
                fields: Vec::new(),
            });
            r.fields.push(Field {
                key: c.get(1).map_or("", |m| m.as_str()).to_owned(),
                value: c.get(2).map_or("", |m| m.as_str()).trim().to_owned(),
                line: n,
            });
            continue;
        }
        // An indented line inside a record continues the last value (PowerShell wraps at the
        // console's width, mid-word, or after a list's comma).
        if line.starts_with([' ', '\t'])
            && let Some(last) = record.as_mut().and_then(|r| r.fields.last_mut())
        {
            let more = line.trim();
            if last.value.ends_with(',') {
                last.value.push(' ');
            }
            last.value.push_str(more);
            continue;
        }
        flush_record(&mut out, &mut record);
        bare.get_or_insert_with(|| Bare {
            cmdlet: cmdlet.clone(),
            items: Vec::new(),
        })
        .items
        .push((n, line.trim().to_owned()));
    }
    flush_record(&mut out, &mut record);
    flush_bare(&mut out, &mut bare);
    out
}

/// The spans (in characters) of the runs of dashes.
fn spans(dashes: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = None;
    for (k, c) in dashes.chars().enumerate() {
        match (c == '-', start) {
            (true, None) => start = Some(k),
            (false, Some(s)) => {
                out.push((s, k));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push((s, dashes.chars().count()));
    }
    out
}

/// The text of a row under a column: from the column's start to the next column's (the last one
/// to the end of the line); PowerShell pads and truncates every cell to its column.
fn cell(chars: &[char], start: usize, end: Option<usize>) -> String {
    let s = start.min(chars.len());
    let e = end.map_or(chars.len(), |e| e.min(chars.len())).max(s);
    chars[s..e].iter().collect::<String>().trim().to_owned()
}

/// The items of a PowerShell list value: `{Ntlm, OAuth, Negotiate}` -> `["Ntlm", "OAuth",
/// "Negotiate"]`; a single value -> itself; `{}` -> nothing. A list PowerShell cut short (`...`)
/// keeps what was printed.
pub fn list(value: &str) -> Vec<String> {
    let v = value.trim();
    let v = v.strip_prefix('{').unwrap_or(v);
    let v = v.strip_suffix('}').unwrap_or(v);
    v.split(',')
        .map(|s| s.trim().trim_end_matches("...").trim())
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_list_with_prompts_and_wrapped_values() {
        let text = "[PS] C:\\Windows\\system32>Get-MapiVirtualDirectory | fl server,*url*,*auth*\r\n\
                    \r\n\
                    Server                        : EX1\r\n\
                    InternalUrl                   : https://mail.contoso.com/mapi\r\n\
                    IISAuthenticationMethods      : {Ntlm, OAuth,\r\n\
                    \x20                               Negotiate}\r\n\
                    \r\n\
                    Server                        : EX2\r\n\
                    InternalUrl                   : https://mail.contoso.com/ma\r\n\
                    \x20                               pi\r\n";
        let l = read(text);
        assert_eq!(l.records.len(), 2);
        let r = &l.records[0];
        assert_eq!(
            r.cmdlet.as_deref(),
            Some("Get-MapiVirtualDirectory | fl server,*url*,*auth*")
        );
        assert_eq!(
            r.get("iisauthenticationmethods"),
            Some("{Ntlm, OAuth, Negotiate}")
        );
        assert_eq!(r.line, 3);
        assert_eq!(
            l.records[1].get("InternalUrl"),
            Some("https://mail.contoso.com/mapi")
        );
    }

    #[test]
    fn format_table() {
        let text = "Name                              Enabled IsDefaultAuthorizationEndpoint\n\
                    ----                              ------- ------------------------------\n\
                    ACS - 8a8f7c84-0000               True    False\n\
                    EvoSts - 8a8f7c84-0000            True    True\n";
        let l = read(text);
        assert_eq!(l.records.len(), 2);
        assert_eq!(l.records[1].get("Name"), Some("EvoSts - 8a8f7c84-0000"));
        assert_eq!(
            l.records[1].get("IsDefaultAuthorizationEndpoint"),
            Some("True")
        );
        assert_eq!(l.records[0].get("Enabled"), Some("True"));
    }

    #[test]
    fn bare_lines_are_not_fields() {
        let text = "PS C:\\> Get-MsolServicePrincipal -AppPrincipalId 00000002-0000-0ff1-ce00-000000000000 | select -ExpandProperty ServicePrincipalNames\n\
                    https://autodiscover.contoso.com/\n\
                    https://mail.contoso.com/\n\
                    00000002-0000-0ff1-ce00-000000000000/mail.contoso.com\n";
        let l = read(text);
        assert!(l.records.is_empty());
        assert_eq!(l.bare.len(), 1);
        assert_eq!(l.bare[0].items.len(), 3);
        assert_eq!(
            l.bare[0].items[0],
            (2, "https://autodiscover.contoso.com/".to_owned())
        );
    }

    #[test]
    fn lists() {
        assert_eq!(
            list("{Ntlm, OAuth, Negotiate}"),
            ["Ntlm", "OAuth", "Negotiate"]
        );
        assert_eq!(list("{}"), Vec::<String>::new());
        assert_eq!(list("True"), ["True"]);
        assert_eq!(list("{a, b...}"), ["a", "b"]);
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,400}") {
            let _ = read(&s);
            let _ = list(&s);
        }

        #[test]
        fn never_panics_on_layout_like_text(s in "([A-Za-z ]{0,12}( : |-{1,5}| {1,3}|\\{|\\}|, |\r?\n|\\[PS\\] C:>)){0,40}") {
            let _ = read(&s);
        }
    }
}
