//! Exit codes and terminal conventions shared by every subcommand.
//!
//! `0` everything checked was fine; `1` the command ran and found failures (a verify with failed
//! mailboxes, an explain that found causes); `2` the command could not run (bad input, bad
//! configuration, unreachable set-up).

use std::io::IsTerminal;
use std::process::ExitCode;

/// Everything checked was fine.
#[allow(dead_code)]
pub fn ok() -> ExitCode {
    ExitCode::SUCCESS
}

/// The command ran and found failures.
#[allow(dead_code)]
pub fn found_failures() -> ExitCode {
    ExitCode::from(1)
}

/// The command could not run: bad input, bad configuration, unreachable set-up.
pub fn could_not_run() -> ExitCode {
    ExitCode::from(2)
}

/// Colour only on a terminal, and never when `NO_COLOR` is set (https://no-color.org).
pub fn color_enabled() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stderr().is_terminal()
}
