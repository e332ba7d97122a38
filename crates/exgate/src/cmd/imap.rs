//! `exgate imap check`: can this archiver or sync daemon open a mailbox over IMAP? Takes an
//! OAuth token (app-only from the Azure SDK variables, or one given in a variable) or a
//! password, walks TLS, CAPABILITY, AUTHENTICATE and SELECT, and explains a refusal.

use std::process::ExitCode;

use exgate_mail::imap::{ImapOptions, ImapTranscript, check};

const EXAMPLES: &str = "\
Examples:
  App-only OAuth (XOAUTH2) with the Azure SDK variables (AZURE_TENANT_ID, AZURE_CLIENT_ID,
  AZURE_CLIENT_SECRET or AZURE_CLIENT_CERTIFICATE_PATH); the app needs IMAP.AccessAsApp, a
  service principal registered in Exchange Online and FullAccess on the mailbox:
    exgate imap check --user archive@contoso.com
  A token obtained elsewhere, another folder, JSON:
    exgate imap check --user archive@contoso.com --token-env IMAP_TOKEN --folder \"Sent Items\" --json
  Against the emulator (exgate emulator --tls prints its IMAP address):
    exgate imap check --user archive@contoso.com --connect 127.0.0.1:9930 --host localhost \\
      --authority-host https://localhost:8443 --ca-cert /tmp/emulator-ca.pem

Exchange answers every refused sign-in with the same `NO AUTHENTICATE failed.`; the causes shown
are the ones that answer has in practice, most likely first.
Exit codes: 0 every step succeeded, 1 the server or Entra ID refused (the causes and fixes are
shown), 2 could not run (unreachable server, TLS failure, no token settings).";

/// Check IMAP access (outlook.office365.com:993) step by step.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Connect in TLS, authenticate (XOAUTH2 or LOGIN) and SELECT a folder.
    Check(Box<Args>),
}

#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub(crate) struct Args {
    /// The mailbox (XOAUTH2 `user=`, LOGIN user name).
    #[arg(long)]
    user: String,
    /// The folder to SELECT.
    #[arg(long, default_value = "INBOX")]
    folder: String,
    /// IMAP server.
    #[arg(long, default_value = "outlook.office365.com")]
    host: String,
    /// IMAP port (TLS from the first byte).
    #[arg(long, default_value_t = 993)]
    port: u16,
    #[command(flatten)]
    common: super::app_token::CheckArgs,
}

pub(crate) async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Check(args) => check_command(*args).await,
    }
}

async fn check_command(args: Args) -> anyhow::Result<ExitCode> {
    let ca = args.common.ca_pem()?;
    let auth = match args
        .common
        .sign_in_or_report::<ImapTranscript>(&args.user, print_steps)
        .await?
    {
        Ok(auth) => auth,
        Err(code) => return Ok(code),
    };
    let options = ImapOptions {
        host: args.host.clone(),
        port: args.port,
        connect_to: args.common.connect,
        extra_root_pem: ca,
        timeout: args.common.step_timeout(),
    };
    let transcript = check(&options, &auth, &args.folder).await;
    // A refused password: Entra ID says whether the password itself is the matter.
    let refused = transcript.failure().is_some_and(|f| f.response.is_some());
    let attempted = args
        .common
        .attempted(exgate_diagnose::Protocol::Imap, &auth, refused)
        .await;
    Ok(report(&transcript, &attempted, args.common.output.json))
}

fn print_steps(t: &ImapTranscript) {
    super::app_token::print_line_steps("IMAP", &t.server, &t.mechanism, &t.steps);
}

fn report(t: &ImapTranscript, attempted: &super::app_token::Attempted<'_>, json: bool) -> ExitCode {
    let works = match t.exists {
        Some(n) => format!("IMAP works: {} holds {n} messages.", t.folder),
        None => "IMAP works.".to_owned(),
    };
    // The tag is the client's; diagnosis reads the status and text.
    let answer = |response: &str| {
        let text = response.split_once(' ').map_or(response, |(_, r)| r);
        format!("IMAP {text}")
    };
    super::app_token::report_line_check(
        t,
        t.failure(),
        answer,
        &works,
        attempted,
        json,
        print_steps,
    )
}
