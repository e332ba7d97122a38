//! OData query options of Graph message lists: `$filter` (comparisons `eq ne gt ge lt le`, `and`,
//! `or`, `not`, parentheses, `startswith`/`endswith`/`contains`, `categories/any(c:c eq '...')`)
//! and `$orderby`, evaluated against a message's JSON resource. String comparisons ignore case,
//! as Exchange's do.

use serde_json::Value;

/// A parsed `$filter`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Filter {
    /// `a and b`.
    And(Box<Filter>, Box<Filter>),
    /// `a or b`.
    Or(Box<Filter>, Box<Filter>),
    /// `not a`.
    Not(Box<Filter>),
    /// `path op literal`.
    Compare(String, Op, Literal),
    /// `startswith(path, 'x')` and friends.
    Func(Func, String, String),
    /// `path/any(v:v eq 'x')`.
    Any(String, Op, Literal),
    /// A bare boolean property (`isRead`).
    Truthy(String),
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

/// String functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Func {
    StartsWith,
    EndsWith,
    Contains,
}

/// A literal of a comparison.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Literal {
    Str(String),
    Bool(bool),
    Num(f64),
    Null,
    /// An unquoted date or date-time (`2024-01-01T00:00:00Z`).
    Date(String),
}

/// Why a query option was refused, with Graph's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct QueryError(pub String);

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    Open,
    Close,
    Comma,
    Colon,
}

fn lex(s: &str) -> Result<Vec<Tok>, QueryError> {
    let mut out = Vec::new();
    let cs: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < cs.len() {
        let c = cs[i];
        match c {
            ' ' | '\t' => i += 1,
            '(' => {
                out.push(Tok::Open);
                i += 1;
            }
            ')' => {
                out.push(Tok::Close);
                i += 1;
            }
            ',' => {
                out.push(Tok::Comma);
                i += 1;
            }
            ':' => {
                out.push(Tok::Colon);
                i += 1;
            }
            '\'' => {
                let mut v = String::new();
                i += 1;
                loop {
                    match cs.get(i) {
                        None => {
                            return Err(QueryError(
                                "Invalid filter clause: unterminated string literal.".into(),
                            ));
                        }
                        Some('\'') if cs.get(i + 1) == Some(&'\'') => {
                            v.push('\'');
                            i += 2;
                        }
                        Some('\'') => {
                            i += 1;
                            break;
                        }
                        Some(ch) => {
                            v.push(*ch);
                            i += 1;
                        }
                    }
                }
                out.push(Tok::Str(v));
            }
            _ => {
                let start = i;
                while i < cs.len() && !matches!(cs[i], ' ' | '\t' | '(' | ')' | ',' | '\'') {
                    // A colon ends a lambda variable (`c:c eq ...`), not a time (`10:00:00`).
                    if cs[i] == ':'
                        && !cs[start..i]
                            .iter()
                            .all(|c| c.is_ascii_digit() || matches!(c, '-' | 'T' | ':' | '.'))
                    {
                        break;
                    }
                    i += 1;
                }
                if i == start {
                    return Err(QueryError(format!(
                        "Invalid filter clause: unexpected '{c}'."
                    )));
                }
                out.push(Tok::Word(cs[start..i].iter().collect()));
            }
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
    depth: usize,
    /// Nodes built so far: a long `a and b and ...` chain nests as deep as it is long.
    nodes: usize,
}

/// Graph's limit on the nodes of a query (its error names it).
const MAX_NODES: usize = 100;

fn too_many_nodes() -> QueryError {
    QueryError(format!(
        "The query specified in the URI is not valid. The node count limit of '{MAX_NODES}' has been exceeded."
    ))
}

impl Parser {
    fn peek_word(&self) -> Option<String> {
        match self.toks.get(self.pos) {
            Some(Tok::Word(w)) => Some(w.to_ascii_lowercase()),
            _ => None,
        }
    }
    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }
    fn expect(&mut self, t: &Tok) -> Result<(), QueryError> {
        match self.next() {
            Some(ref x) if x == t => Ok(()),
            _ => Err(QueryError("Invalid filter clause: syntax error.".into())),
        }
    }
    fn or(&mut self) -> Result<Filter, QueryError> {
        let mut l = self.and()?;
        while self.peek_word().as_deref() == Some("or") {
            self.pos += 1;
            let r = self.and()?;
            l = Filter::Or(Box::new(l), Box::new(r));
        }
        Ok(l)
    }
    fn and(&mut self) -> Result<Filter, QueryError> {
        let mut l = self.unary()?;
        while self.peek_word().as_deref() == Some("and") {
            self.pos += 1;
            let r = self.unary()?;
            l = Filter::And(Box::new(l), Box::new(r));
        }
        Ok(l)
    }
    fn unary(&mut self) -> Result<Filter, QueryError> {
        self.depth += 1;
        self.nodes += 1;
        if self.depth > 64 || self.nodes > MAX_NODES {
            return Err(too_many_nodes());
        }
        let r = if self.peek_word().as_deref() == Some("not") {
            self.pos += 1;
            Ok(Filter::Not(Box::new(self.unary()?)))
        } else {
            self.primary()
        };
        self.depth -= 1;
        r
    }
    fn primary(&mut self) -> Result<Filter, QueryError> {
        match self.next() {
            Some(Tok::Open) => {
                let f = self.or()?;
                self.expect(&Tok::Close)?;
                Ok(f)
            }
            Some(Tok::Word(w)) => {
                let lw = w.to_ascii_lowercase();
                let func = match lw.as_str() {
                    "startswith" => Some(Func::StartsWith),
                    "endswith" => Some(Func::EndsWith),
                    "contains" => Some(Func::Contains),
                    _ => None,
                };
                if let Some(func) = func {
                    self.expect(&Tok::Open)?;
                    let Some(Tok::Word(path)) = self.next() else {
                        return Err(QueryError(
                            "Invalid filter clause: a property is expected.".into(),
                        ));
                    };
                    self.expect(&Tok::Comma)?;
                    let Some(Tok::Str(v)) = self.next() else {
                        return Err(QueryError(
                            "Invalid filter clause: a string literal is expected.".into(),
                        ));
                    };
                    self.expect(&Tok::Close)?;
                    return Ok(Filter::Func(func, path, v));
                }
                // `categories/any(c:c eq 'Red')`
                if let Some(path) = w
                    .len()
                    .checked_sub(4)
                    .filter(|&k| w.is_char_boundary(k) && w[k..].eq_ignore_ascii_case("/any"))
                    .map(|k| &w[..k])
                {
                    self.expect(&Tok::Open)?;
                    let Some(Tok::Word(var)) = self.next() else {
                        return Err(QueryError(
                            "Invalid filter clause: a lambda variable is expected.".into(),
                        ));
                    };
                    self.expect(&Tok::Colon)?;
                    let Some(Tok::Word(v2)) = self.next() else {
                        return Err(QueryError("Invalid filter clause: syntax error.".into()));
                    };
                    if !v2.eq_ignore_ascii_case(&var) {
                        return Err(QueryError(format!(
                            "Invalid filter clause: '{v2}' is not the lambda variable '{var}'."
                        )));
                    }
                    let op = self.op()?;
                    let lit = self.literal()?;
                    self.expect(&Tok::Close)?;
                    return Ok(Filter::Any(path.to_owned(), op, lit));
                }
                match self.peek_word().as_deref().and_then(op_of) {
                    Some(_) => {
                        let op = self.op()?;
                        let lit = self.literal()?;
                        Ok(Filter::Compare(w, op, lit))
                    }
                    None => Ok(Filter::Truthy(w)),
                }
            }
            _ => Err(QueryError("Invalid filter clause: syntax error.".into())),
        }
    }
    fn op(&mut self) -> Result<Op, QueryError> {
        match self.next() {
            Some(Tok::Word(w)) => op_of(&w.to_ascii_lowercase()).ok_or_else(|| {
                QueryError(format!("Invalid filter clause: '{w}' is not an operator."))
            }),
            _ => Err(QueryError(
                "Invalid filter clause: an operator is expected.".into(),
            )),
        }
    }
    fn literal(&mut self) -> Result<Literal, QueryError> {
        match self.next() {
            Some(Tok::Str(s)) => Ok(Literal::Str(s)),
            Some(Tok::Word(w)) => {
                let l = w.to_ascii_lowercase();
                Ok(match l.as_str() {
                    "true" => Literal::Bool(true),
                    "false" => Literal::Bool(false),
                    "null" => Literal::Null,
                    _ if w.len() >= 10 && w.as_bytes().get(4) == Some(&b'-') => Literal::Date(w),
                    _ => Literal::Num(w.parse::<f64>().ok().filter(|n| n.is_finite()).ok_or_else(
                        || QueryError(format!("Invalid filter clause: '{w}' is not a literal.")),
                    )?),
                })
            }
            _ => Err(QueryError(
                "Invalid filter clause: a literal is expected.".into(),
            )),
        }
    }
}

fn op_of(w: &str) -> Option<Op> {
    Some(match w {
        "eq" => Op::Eq,
        "ne" => Op::Ne,
        "gt" => Op::Gt,
        "ge" => Op::Ge,
        "lt" => Op::Lt,
        "le" => Op::Le,
        _ => return None,
    })
}

/// Parses a `$filter` value.
pub(crate) fn parse_filter(s: &str) -> Result<Filter, QueryError> {
    let toks = lex(s)?;
    let mut p = Parser {
        toks,
        pos: 0,
        depth: 0,
        nodes: 0,
    };
    let f = p.or()?;
    if p.pos != p.toks.len() {
        return Err(QueryError("Invalid filter clause: syntax error.".into()));
    }
    Ok(f)
}

/// The properties a filter or an order names (`from/emailAddress/address`), to check them
/// against the resource before evaluating.
pub(crate) fn paths(f: &Filter, out: &mut Vec<String>) {
    match f {
        Filter::And(a, b) | Filter::Or(a, b) => {
            paths(a, out);
            paths(b, out);
        }
        Filter::Not(a) => paths(a, out),
        Filter::Compare(p, _, _)
        | Filter::Func(_, p, _)
        | Filter::Any(p, _, _)
        | Filter::Truthy(p) => {
            out.push(p.clone());
        }
    }
}

/// The value at `path` (`from/emailAddress/address`), property names matched without case.
pub(crate) fn lookup<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = v;
    for seg in path.split('/') {
        let obj = cur.as_object()?;
        cur = obj
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(seg))
            .map(|(_, v)| v)?;
    }
    Some(cur)
}

fn cmp(v: &Value, lit: &Literal) -> Option<std::cmp::Ordering> {
    match (v, lit) {
        (Value::String(a), Literal::Str(b) | Literal::Date(b)) => {
            Some(a.to_lowercase().cmp(&b.to_lowercase()))
        }
        (Value::Bool(a), Literal::Bool(b)) => Some(a.cmp(b)),
        (Value::Number(a), Literal::Num(b)) => a.as_f64()?.partial_cmp(b),
        _ => None,
    }
}

fn compare(v: Option<&Value>, op: Op, lit: &Literal) -> bool {
    use std::cmp::Ordering::*;
    let v = match v {
        None | Some(Value::Null) => {
            return match (op, lit) {
                (Op::Eq, Literal::Null) => true,
                (Op::Ne, Literal::Null) => false,
                (Op::Ne, _) => true,
                _ => false,
            };
        }
        Some(v) => v,
    };
    if matches!(lit, Literal::Null) {
        return op == Op::Ne;
    }
    match (op, cmp(v, lit)) {
        (Op::Eq, Some(o)) => o == Equal,
        (Op::Ne, o) => o != Some(Equal),
        (Op::Gt, Some(o)) => o == Greater,
        (Op::Ge, Some(o)) => o != Less,
        (Op::Lt, Some(o)) => o == Less,
        (Op::Le, Some(o)) => o != Greater,
        _ => false,
    }
}

/// Whether the message resource `v` passes `f`.
pub(crate) fn matches(f: &Filter, v: &Value) -> bool {
    match f {
        Filter::And(a, b) => matches(a, v) && matches(b, v),
        Filter::Or(a, b) => matches(a, v) || matches(b, v),
        Filter::Not(a) => !matches(a, v),
        Filter::Compare(p, op, lit) => compare(lookup(v, p), *op, lit),
        Filter::Truthy(p) => lookup(v, p).and_then(Value::as_bool).unwrap_or(false),
        Filter::Func(func, p, needle) => {
            let Some(hay) = lookup(v, p).and_then(Value::as_str) else {
                return false;
            };
            let (hay, needle) = (hay.to_lowercase(), needle.to_lowercase());
            match func {
                Func::StartsWith => hay.starts_with(&needle),
                Func::EndsWith => hay.ends_with(&needle),
                Func::Contains => hay.contains(&needle),
            }
        }
        Filter::Any(p, op, lit) => lookup(v, p)
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().any(|x| compare(Some(x), *op, lit))),
    }
}

/// A parsed `$orderby`: (property path, descending).
pub(crate) fn parse_orderby(s: &str) -> Result<Vec<(String, bool)>, QueryError> {
    s.split(',')
        .map(|part| {
            let mut it = part.split_whitespace();
            let path = it
                .next()
                .ok_or_else(|| QueryError("Invalid $orderby clause.".into()))?;
            let desc = match it.next().map(str::to_ascii_lowercase).as_deref() {
                None | Some("asc") => false,
                Some("desc") => true,
                Some(other) => {
                    return Err(QueryError(format!("Invalid $orderby direction '{other}'.")));
                }
            };
            if it.next().is_some() {
                return Err(QueryError("Invalid $orderby clause.".into()));
            }
            Ok((path.to_owned(), desc))
        })
        .collect()
}

/// Where a value of each JSON type sorts, for values of different types.
fn rank(v: Option<&Value>) -> u8 {
    match v {
        None | Some(Value::Null) => 0,
        Some(Value::Bool(_)) => 1,
        Some(Value::Number(_)) => 2,
        Some(Value::String(_)) => 3,
        Some(Value::Array(_)) => 4,
        Some(Value::Object(_)) => 5,
    }
}

/// Orders two message resources by `keys`.
pub(crate) fn order(a: &Value, b: &Value, keys: &[(String, bool)]) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    for (path, desc) in keys {
        let (x, y) = (lookup(a, path), lookup(b, path));
        let o = match (x, y) {
            (Some(Value::String(x)), Some(Value::String(y))) => {
                x.to_lowercase().cmp(&y.to_lowercase())
            }
            (Some(Value::Bool(x)), Some(Value::Bool(y))) => x.cmp(y),
            (Some(Value::Number(x)), Some(Value::Number(y))) => x
                .as_f64()
                .partial_cmp(&y.as_f64())
                .unwrap_or(Ordering::Equal),
            // A total order: absent and null first, then values by type, then within a type.
            (x, y) => rank(x).cmp(&rank(y)),
        };
        let o = if *desc { o.reverse() } else { o };
        if o != Ordering::Equal {
            return o;
        }
    }
    Ordering::Equal
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::Strategy as _;
    use serde_json::json;

    fn msg() -> Value {
        json!({"isRead": false, "subject": "Quarterly Report", "receivedDateTime": "2026-11-02T10:00:00Z",
               "hasAttachments": false, "importance": "normal", "categories": ["Red"],
               "from": {"emailAddress": {"address": "Bob@contoso.com", "name": "Bob"}}})
    }

    #[test]
    fn everyday_filters() {
        let m = msg();
        for (f, want) in [
            ("isRead eq false", true),
            ("isRead eq true", false),
            ("receivedDateTime ge 2026-11-01T00:00:00Z", true),
            ("receivedDateTime lt 2026-11-01", false),
            ("from/emailAddress/address eq 'bob@contoso.com'", true),
            ("startswith(subject, 'quarterly')", true),
            ("contains(subject,'report') and not(isRead)", true),
            ("hasAttachments eq true or importance eq 'normal'", true),
            ("categories/any(c:c eq 'red')", true),
            ("categories/any(c:c eq 'Blue')", false),
            ("categories/Any(c:c eq 'red')", true),
            ("subject eq 'It''s'", false),
            ("(isRead eq false) and (importance ne 'high')", true),
        ] {
            let parsed = parse_filter(f).unwrap_or_else(|e| panic!("{f}: {e:?}"));
            assert_eq!(matches(&parsed, &m), want, "{f}");
        }
    }

    #[test]
    fn bad_filters_are_refused() {
        for f in [
            "isRead eq",
            "(isRead eq false",
            "subject eq 'x",
            "isRead eq false and",
            "startswith(subject)",
        ] {
            assert!(parse_filter(f).is_err(), "{f}");
        }
    }

    #[test]
    fn the_node_limit_is_one_hundred() {
        let chain = |n: usize| vec!["isRead eq true"; n].join(" and ");
        assert!(parse_filter(&chain(100)).is_ok());
        assert!(parse_filter(&chain(101)).is_err());
    }

    #[test]
    fn orderby() {
        let keys = parse_orderby("receivedDateTime desc, subject").expect("parses");
        assert_eq!(
            keys,
            [
                ("receivedDateTime".to_owned(), true),
                ("subject".to_owned(), false)
            ]
        );
        assert!(parse_orderby("subject sideways").is_err());
        let a = json!({"receivedDateTime": "2026-01-01T00:00:00Z"});
        let b = json!({"receivedDateTime": "2026-02-01T00:00:00Z"});
        assert_eq!(order(&a, &b, &keys), std::cmp::Ordering::Greater);
    }

    proptest::proptest! {
        #[test]
        fn parsing_never_panics(s in "\\PC{0,200}") {
            if let Ok(f) = parse_filter(&s) {
                let _ = matches(&f, &msg());
            }
            let _ = parse_orderby(&s);
        }

        #[test]
        fn orderby_is_a_total_order(keys in proptest::collection::vec(proptest::option::of(proptest::prop_oneof![
            proptest::prelude::Just(serde_json::Value::Null),
            proptest::prelude::any::<bool>().prop_map(serde_json::Value::from),
            proptest::prelude::any::<i32>().prop_map(serde_json::Value::from),
            "[a-c]{0,2}".prop_map(serde_json::Value::from),
        ]), 0..40)) {
            let mut items: Vec<serde_json::Value> = keys
                .into_iter()
                .map(|k| match k { Some(v) => json!({"k": v}), None => json!({}) })
                .collect();
            let by = [("k".to_owned(), false)];
            // sort_by panics on a comparator that is not a total order.
            items.sort_by(|a, b| order(a, b, &by));
            for w in items.windows(2) {
                proptest::prop_assert_ne!(order(&w[0], &w[1], &by), std::cmp::Ordering::Greater);
            }
        }

        #[test]
        // 100 comparisons are 100 nodes, the most Graph takes; 101 exceed it.
        fn long_chains_are_refused_not_overflowed(n in 101usize..20_000) {
            let s = vec!["isRead eq true"; n].join(" and ");
            proptest::prop_assert!(parse_filter(&s).is_err());
        }

        #[test]
        fn deep_nesting_is_refused_not_overflowed(n in 60usize..2000) {
            let s = format!("{}isRead{}", "(".repeat(n), ")".repeat(n));
            let _ = parse_filter(&s);
            let s = "not ".repeat(n) + "isRead";
            let _ = parse_filter(&s);
        }
    }
}
