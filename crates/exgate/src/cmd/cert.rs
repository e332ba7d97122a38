//! `exgate cert new|show`.

use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Create an RSA key and a self-signed certificate (PEM key, PEM certificate, PFX).
    New,
    /// Show a certificate's subject, validity, thumbprints and a ready keyCredentials entry.
    Show,
}

pub async fn run(_command: Command) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`exgate cert` is not available in this build yet")
}
