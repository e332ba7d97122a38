//! Example command lines in help texts and Markdown: shared by the test that parses every
//! example (`examples_parse.rs`) and the one that runs them (`tests/examples_run.rs`).

/// `exgate ...` command lines of a text: lines starting with `exgate ` (after a `$ ` prompt or
/// indentation), continuation lines joined, cut at a pipe, a redirection or a `&&`.
pub(crate) fn command_lines(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for raw in text.lines() {
        let line = raw.trim();
        if let Some(mut c) = current.take() {
            let (part, more) = match line.strip_suffix('\\') {
                Some(p) => (p.trim_end(), true),
                None => (line, false),
            };
            c.push(' ');
            c.push_str(part);
            if more {
                current = Some(c);
            } else {
                out.push(c);
            }
            continue;
        }
        let line = line.strip_prefix("$ ").unwrap_or(line);
        let Some(rest) = line.strip_prefix("exgate ") else {
            continue;
        };
        match rest.strip_suffix('\\') {
            Some(p) => current = Some(format!("exgate {}", p.trim_end())),
            None => out.push(format!("exgate {rest}")),
        }
    }
    out
}

/// The words of one command line as the shell splits them, up to the first pipe, redirection,
/// `&&`, `;` or comment; environment assignments in front are not part of these lines.
pub(crate) fn words(line: &str) -> Option<Vec<String>> {
    // A table of examples puts the description after a run of spaces.
    let line = line.split("   ").next().unwrap_or(line);
    let words = shlex::split(line)?;
    let end = words
        .iter()
        .position(|w| {
            matches!(
                w.as_str(),
                "|" | ">" | ">>" | "<" | "&&" | "||" | ";" | "&" | "2>&1"
            ) || w.starts_with('#')
                || w.starts_with('>')
                || w.starts_with("2>")
        })
        .unwrap_or(words.len());
    Some(words[..end].to_vec())
}

/// The fenced shell blocks (`sh`, `bash`, `console`, `shell` or unnamed) of a Markdown text, one
/// after the other: prose mentions commands in passing, blocks hold the examples.
pub(crate) fn shell_blocks(markdown: &str) -> String {
    let mut out = String::new();
    // None: outside a fence; Some(shell?) inside one.
    let mut fence: Option<bool> = None;
    for line in markdown.lines() {
        let t = line.trim_start();
        if let Some(lang) = t.strip_prefix("```") {
            fence = match fence {
                Some(_) => None,
                None => Some(matches!(
                    lang.trim(),
                    "sh" | "bash" | "console" | "shell" | ""
                )),
            };
            continue;
        }
        if fence == Some(true) {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}
