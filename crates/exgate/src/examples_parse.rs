//! Every example command line of every `--help`, of the README and of `docs/` is parsed with
//! the command line definition: a renamed or removed flag, a missing value or a subcommand that
//! no longer exists fails here. (Examples that need a live service are also run end to end by
//! the tests of their commands, against the emulator.)

use clap::{CommandFactory as _, Parser as _};

use crate::Cli;

/// `exgate ...` command lines of a text: lines starting with `exgate ` (after a `$ ` prompt or
/// indentation), continuation lines joined, cut at a pipe, a redirection or a `&&`.
fn command_lines(text: &str) -> Vec<String> {
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
fn words(line: &str) -> Option<Vec<String>> {
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

fn help_texts(cmd: &clap::Command, path: &str, out: &mut Vec<(String, String)>) {
    if let Some(h) = cmd.get_after_help() {
        out.push((path.to_owned(), h.to_string()));
    }
    for sub in cmd.get_subcommands() {
        help_texts(sub, &format!("{path} {}", sub.get_name()), out);
    }
}

fn check(source: &str, text: &str, failures: &mut Vec<String>) -> usize {
    let mut n = 0;
    for line in command_lines(text) {
        let Some(w) = words(&line) else {
            failures.push(format!("{source}: cannot split `{line}`"));
            continue;
        };
        n += 1;
        if let Err(e) = Cli::try_parse_from(&w) {
            let first = e.to_string();
            let first = first.lines().next().unwrap_or("").to_owned();
            failures.push(format!("{source}: `{line}`: {first}"));
        }
    }
    n
}

#[test]
fn every_help_example_parses() {
    let mut texts = Vec::new();
    help_texts(&Cli::command(), "exgate", &mut texts);
    let mut failures = Vec::new();
    let mut n = 0;
    for (path, text) in &texts {
        n += check(&format!("{path} --help"), text, &mut failures);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Every command with an EXAMPLES section is covered, and there are many examples.
    assert!(texts.len() >= 15, "{} help texts", texts.len());
    assert!(n >= 40, "{n} examples");
}

#[test]
fn every_readme_and_docs_example_parses() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut files = vec![root.join("README.md")];
    let mut docs: Vec<_> = std::fs::read_dir(root.join("docs"))
        .expect("docs/")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    let mut failures = Vec::new();
    let mut n = 0;
    for f in &files {
        let text = std::fs::read_to_string(f).expect("read");
        // Only fenced shell blocks: prose mentions commands in passing.
        let mut block = String::new();
        // None: outside a fence; Some(shell?) inside one.
        let mut fence: Option<bool> = None;
        for line in text.lines() {
            let t = line.trim_start();
            if let Some(lang) = t.strip_prefix("```") {
                match fence {
                    Some(shell) => {
                        if shell {
                            n += check(
                                &f.strip_prefix(&root).unwrap_or(f).display().to_string(),
                                &block,
                                &mut failures,
                            );
                        }
                        block.clear();
                        fence = None;
                    }
                    None => {
                        fence = Some(matches!(
                            lang.trim(),
                            "sh" | "bash" | "console" | "shell" | ""
                        ))
                    }
                }
                continue;
            }
            if fence == Some(true) {
                block.push_str(line);
                block.push('\n');
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(n >= 15, "{n} examples");
}

#[test]
fn command_lines_are_joined_and_cut() {
    let text = "  $ exgate token get --json | jq .\n    exgate verify p.toml \\\n      --html r.html\nnot exgate here\n";
    let lines = command_lines(text);
    assert_eq!(lines[0], "exgate token get --json | jq .");
    assert_eq!(lines[1], "exgate verify p.toml --html r.html");
    assert_eq!(
        words(&lines[0]).unwrap(),
        ["exgate", "token", "get", "--json"]
    );
    // A wrong flag fails.
    let mut failures = Vec::new();
    check("t", "exgate token get --no-such-flag\n", &mut failures);
    assert_eq!(failures.len(), 1, "{failures:?}");
}
