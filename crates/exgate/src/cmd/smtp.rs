//! `exgate smtp check`: can this daemon send mail through SMTP submission? Takes an OAuth token
//! (app-only from the Azure SDK variables, or one given in a variable) or a password, walks
//! connect, STARTTLS, AUTH and optionally a test message, and explains a refusal.

use std::process::ExitCode;

use exgate_mail::smtp::{SmtpOptions, SmtpSecurity, SmtpTranscript, TestMessage, check};

use crate::exit;

const EXAMPLES: &str = "\
Examples:
  App-only OAuth (XOAUTH2) with the Azure SDK variables (AZURE_TENANT_ID, AZURE_CLIENT_ID,
  AZURE_CLIENT_SECRET or AZURE_CLIENT_CERTIFICATE_PATH); the app needs SMTP.SendAsApp and the
  mailbox's permission:
    exgate smtp check --user scanner@contoso.com
  Also send a test message:
    exgate smtp check --user scanner@contoso.com --to it@contoso.com
  A token obtained elsewhere, or Basic with an app password (as long as the tenant allows it):
    exgate smtp check --user scanner@contoso.com --token-env SMTP_TOKEN
    exgate smtp check --user scanner@contoso.com --password-env SMTP_PASSWORD
  On-premises Exchange with Windows authentication (NTLM) instead of sending the password:
    exgate smtp check --host mail.contoso.com --user 'CONTOSO\\scanner' --password-env PW --ntlm
  Against the emulator (exgate emulator --tls prints its SMTP address):
    exgate smtp check --user scanner@contoso.com --connect 127.0.0.1:2525 --host localhost \\
      --authority-host https://localhost:8443 --ca-cert /tmp/emulator-ca.pem

Exit codes: 0 every step succeeded, 1 the server or Entra ID refused (the cause and fix are
shown), 2 could not run (no token settings, unreadable CA file).";

/// Check SMTP submission (smtp.office365.com:587) step by step.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Connect, STARTTLS, authenticate (XOAUTH2 or LOGIN) and optionally send a test message.
    Check(Box<Args>),
}

#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub(crate) struct Args {
    /// The mailbox that sends (XOAUTH2 `user=`, LOGIN user name, envelope sender).
    #[arg(long)]
    user: String,
    /// Also send a test message to this address.
    #[arg(long)]
    to: Option<String>,
    /// SMTP server.
    #[arg(long, default_value = "smtp.office365.com")]
    host: String,
    /// SMTP port (587 STARTTLS, 465 with --tls).
    #[arg(long, default_value_t = 587)]
    port: u16,
    /// TLS from the first byte (port 465) instead of STARTTLS.
    #[arg(long)]
    tls: bool,
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
        .sign_in_or_report::<SmtpTranscript>(&args.user, print_steps)
        .await?
    {
        Ok(auth) => auth,
        Err(code) => return Ok(code),
    };
    let options = SmtpOptions {
        host: args.host.clone(),
        port: args.port,
        connect_to: args.common.connect,
        security: if args.tls {
            SmtpSecurity::Tls
        } else {
            SmtpSecurity::StartTls
        },
        extra_root_pem: ca,
        timeout: args.common.step_timeout(),
        ehlo_name: "exgate.localhost".to_owned(),
    };
    let message = args.to.as_ref().map(|to| TestMessage {
        from: args.user.clone(),
        to: to.clone(),
        subject: "exgate smtp check".to_owned(),
        body: "This message was sent by `exgate smtp check` to test SMTP submission.".to_owned(),
    });
    let transcript = check(&options, &auth, message.as_ref()).await;
    // A refused password: Entra ID says whether the password itself is the matter.
    let refused = transcript.failure().is_some_and(|f| f.reply.is_some());
    let attempted = args
        .common
        .attempted(exgate_diagnose::Protocol::Smtp, &auth, refused)
        .await;
    Ok(report(&transcript, &attempted, args.common.output.json))
}

fn print_steps(t: &SmtpTranscript) {
    println!("SMTP {} ({})", t.server, t.mechanism);
    for s in &t.steps {
        let what = match (&s.reply, &s.error) {
            (Some(r), _) => r.text().lines().next().unwrap_or_default().to_owned(),
            (None, Some(e)) => e.clone(),
            (None, None) => String::new(),
        };
        println!(
            "  {} {:<9} {:>5} ms  {what}",
            if s.ok { "ok  " } else { "FAIL" },
            s.name,
            s.ms
        );
    }
}

fn report(t: &SmtpTranscript, attempted: &super::app_token::Attempted<'_>, json: bool) -> ExitCode {
    let Some(failure) = t.failure() else {
        if json {
            let out = serde_json::json!({ "ok": true, "transcript": t });
            println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
        } else {
            print_steps(t);
            println!("\nSMTP submission works.");
        }
        return exit::ok();
    };
    let text = match (&failure.reply, &failure.error) {
        (Some(r), _) => r.text(),
        (None, Some(e)) => e.clone(),
        (None, None) => "no reply".to_owned(),
    };
    if failure.reply.is_none() {
        // No answer (connection, TLS, timeout): no SMTP cause to rank.
        return super::app_token::report_unreachable(&failure.name, &text, t, json, print_steps);
    }
    super::app_token::report_refusal(
        &failure.name,
        &format!("SMTP {text}"),
        Some(attempted),
        Some(t),
        json,
        print_steps,
    )
}
