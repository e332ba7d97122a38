//! Every example command line of every `--help`, of the README and of `docs/` is parsed with
//! the command line definition: a renamed or removed flag, a missing value or a subcommand that
//! no longer exists fails here. (`tests/examples_run.rs` runs them.)

use clap::{CommandFactory as _, Parser as _};

use crate::Cli;
use crate::example_lines::{command_lines, shell_blocks, words};

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

/// clap wraps help at 100 columns: a longer example line would be shown broken in two, without
/// the `\` that lets it be pasted as one command.
#[test]
fn no_help_line_is_wrapped() {
    let mut texts = Vec::new();
    help_texts(&Cli::command(), "exgate", &mut texts);
    let long: Vec<String> = texts
        .iter()
        .flat_map(|(path, text)| {
            text.lines()
                .filter(|l| l.chars().count() > 100)
                .map(move |l| format!("{path}: {l}"))
        })
        .collect();
    assert!(long.is_empty(), "{}", long.join("\n"));
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
        n += check(
            &f.strip_prefix(&root).unwrap_or(f).display().to_string(),
            &shell_blocks(&text),
            &mut failures,
        );
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
