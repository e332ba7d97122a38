//! Exit codes and terminal conventions shared by every subcommand.
//!
//! `0` everything checked was fine; `1` the command ran and found failures (a verify with failed
//! mailboxes, an explain that found causes); `2` the command could not run (bad input, bad
//! configuration, unreachable set-up).

use std::io::IsTerminal;
use std::process::ExitCode;

/// Everything checked was fine.
pub(crate) fn ok() -> ExitCode {
    ExitCode::SUCCESS
}

/// The command ran and found failures.
#[allow(dead_code)]
pub(crate) fn found_failures() -> ExitCode {
    ExitCode::from(1)
}

/// The command could not run: bad input, bad configuration, unreachable set-up.
pub(crate) fn could_not_run() -> ExitCode {
    ExitCode::from(2)
}

/// Colour only on a terminal, and never when `NO_COLOR` is set (https://no-color.org).
pub(crate) fn color_enabled() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stderr().is_terminal()
}

/// Whether an error comes from writing to a pipe whose reader has gone (`exgate … | head`).
pub(crate) fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Makes a closed standard output end the process quietly with exit code 0, as a shell pipeline
/// expects, instead of the panic that `println!` raises when the reader has gone: the one place
/// where broken pipes are handled for every command.
pub(crate) fn quiet_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(0);
        }
        default(info);
    }));
}

/// An error and its causes on one line, each cause once: an error whose message already quotes
/// its source (`cannot read x: No such file or directory`) does not repeat it.
pub(crate) fn describe(err: &anyhow::Error) -> String {
    let mut out = err.to_string();
    for cause in err.chain().skip(1) {
        let c = cause.to_string();
        if !out.contains(&c) {
            out.push_str(": ");
            out.push_str(&c);
        }
    }
    out
}

/// A moment as RFC 3339 in UTC (`2026-12-07T09:43:33Z`), the one form every command prints.
pub(crate) fn rfc3339(t: exgate_auth::reexports::time::OffsetDateTime) -> String {
    use exgate_auth::reexports::time::{UtcOffset, format_description::well_known::Rfc3339};
    t.to_offset(UtcOffset::UTC)
        .replace_nanosecond(0)
        .unwrap_or(t)
        .format(&Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}
