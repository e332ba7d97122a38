//! `exgate consent url|listen`.

use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Print the admin-consent URL for a tenant (or `common`).
    Url,
    /// Listen on loopback for the consent redirect and report the tenant and the outcome.
    Listen,
}

pub async fn run(_command: Command) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`exgate consent` is not available in this build yet")
}
