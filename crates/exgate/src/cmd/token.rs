//! `exgate token get|inspect`.

use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Acquire a token and summarise it (the token itself is printed only with --raw).
    Get(super::token_get::Args),
    /// Decode a JWT and lint it against the URL it is meant for.
    Inspect(super::token_inspect::Args),
}

pub(crate) async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Get(args) => super::token_get::run(args).await,
        Command::Inspect(args) => super::token_inspect::run(args).await,
    }
}
