//! `exgate pop check`: can this ticketing system or scanner-to-mail gateway read a mailbox over
//! POP3? Takes an OAuth token (app-only from the Azure SDK variables, or one given in a
//! variable) or a password, walks TLS, CAPA, AUTH (or USER/PASS) and STAT, and explains a refusal.

use std::process::ExitCode;

use exgate_mail::pop::{PopOptions, PopTranscript, check};

const EXAMPLES: &str = "\
Examples:
  App-only OAuth (XOAUTH2) with the Azure SDK variables (AZURE_TENANT_ID, AZURE_CLIENT_ID,
  AZURE_CLIENT_SECRET or AZURE_CLIENT_CERTIFICATE_PATH); the app needs POP.AccessAsApp, a
  service principal registered in Exchange Online and FullAccess on the mailbox:
    exgate pop check --user helpdesk@contoso.com
  A token obtained elsewhere, JSON:
    exgate pop check --user helpdesk@contoso.com --token-env POP_TOKEN --json
  Against the emulator (exgate emulator --tls prints its POP3 address):
    exgate pop check --user helpdesk@contoso.com --connect 127.0.0.1:9950 --host localhost \\
      --authority-host https://localhost:8443 --ca-cert /tmp/emulator-ca.pem

Exchange answers every refused sign-in with the same `-ERR Logon failure: unknown user name or
bad password.`; the causes shown are the ones that answer has in practice, most likely first.
Exit codes: 0 every step succeeded, 1 the server or Entra ID refused (the causes and fixes are
shown), 2 could not run (unreachable server, TLS failure, no token settings).";

/// Check POP3 access (outlook.office365.com:995) step by step.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Connect in TLS, authenticate (XOAUTH2 or USER/PASS) and ask STAT.
    Check(Box<Args>),
}

#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub(crate) struct Args {
    /// The mailbox (XOAUTH2 `user=`, USER name).
    #[arg(long)]
    user: String,
    /// POP3 server.
    #[arg(long, default_value = "outlook.office365.com")]
    host: String,
    /// POP3 port (TLS from the first byte).
    #[arg(long, default_value_t = 995)]
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
        .sign_in_or_report::<PopTranscript>(&args.user, print_steps)
        .await?
    {
        Ok(auth) => auth,
        Err(code) => return Ok(code),
    };
    let options = PopOptions {
        host: args.host.clone(),
        port: args.port,
        connect_to: args.common.connect,
        extra_root_pem: ca,
        timeout: args.common.step_timeout(),
    };
    let transcript = check(&options, &auth).await;
    // A refused password: Entra ID says whether the password itself is the matter.
    let refused = transcript.failure().is_some_and(|f| f.response.is_some());
    let attempted = args
        .common
        .attempted(exgate_diagnose::Protocol::Pop, &auth, refused)
        .await;
    Ok(report(&transcript, &attempted, args.common.output.json))
}

fn print_steps(t: &PopTranscript) {
    super::app_token::print_line_steps("POP3", &t.server, &t.mechanism, &t.steps);
}

fn report(t: &PopTranscript, attempted: &super::app_token::Attempted<'_>, json: bool) -> ExitCode {
    let works = match t.messages {
        Some(n) => format!("POP3 works: the maildrop holds {n} messages."),
        None => "POP3 works.".to_owned(),
    };
    let answer = |response: &str| format!("POP3 {response}");
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
