//! `exgate smtp check`: can this daemon send mail through SMTP submission? Takes an OAuth token
//! (app-only from the Azure SDK variables, or one given in a variable) or a password, walks
//! connect, STARTTLS, AUTH and optionally a test message, and explains a refusal.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use exgate_auth::{AuthSettings, TokenProvider, TokenRequest};
use exgate_mail::smtp::{SmtpAuth, SmtpOptions, SmtpSecurity, SmtpTranscript, TestMessage, check};
use secrecy::SecretString;

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
  Against the emulator (exgate emulator --tls prints its SMTP address):
    exgate smtp check --user scanner@contoso.com --connect 127.0.0.1:2525 --host localhost \\
      --authority-host https://localhost:8443 --ca-cert /tmp/emulator-ca.pem

Exit codes: 0 every step succeeded, 1 the server or Entra ID refused (the cause and fix are
shown), 2 could not run (no token settings, unreadable CA file).";

/// Check SMTP submission (smtp.office365.com:587) step by step.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Connect, STARTTLS, authenticate (XOAUTH2 or LOGIN) and optionally send a test message.
    Check(Box<Args>),
}

#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {
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
    /// Connect to this address instead of resolving --host (the name stays the TLS name).
    #[arg(long, value_name = "IP:PORT")]
    connect: Option<SocketAddr>,
    /// Extra root CA (PEM) to trust, e.g. the emulator's.
    #[arg(long)]
    ca_cert: Option<PathBuf>,
    /// Seconds allowed for each step.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
    /// Environment variable holding an access token to use as is.
    #[arg(long, conflicts_with = "password_env")]
    token_env: Option<String>,
    /// Environment variable holding a password: AUTH LOGIN instead of XOAUTH2.
    #[arg(long)]
    password_env: Option<String>,
    /// Token settings file (see docs/auth.md); the Azure SDK variables are read first.
    #[arg(long)]
    profile: Option<PathBuf>,
    /// Tenant GUID or domain (token).
    #[arg(long)]
    tenant: Option<String>,
    /// Application (client) id (token).
    #[arg(long)]
    client_id: Option<String>,
    /// Environment variable holding the client secret (token).
    #[arg(long)]
    client_secret_env: Option<String>,
    /// Certificate, PEM or PFX (token).
    #[arg(long)]
    cert: Option<PathBuf>,
    /// Environment variable holding the PFX password (token).
    #[arg(long)]
    cert_password_env: Option<String>,
    /// Authority host (sovereign cloud, emulator) (token).
    #[arg(long)]
    authority_host: Option<String>,
    /// Print the transcript as JSON.
    #[arg(long)]
    json: bool,
}

pub async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Check(args) => check_command(*args).await,
    }
}

fn env_secret(var: &str, what: &str) -> anyhow::Result<SecretString> {
    std::env::var(var)
        .map(SecretString::from)
        .map_err(|_| anyhow::anyhow!("{what}: the environment variable {var} is not set"))
}

async fn check_command(args: Args) -> anyhow::Result<ExitCode> {
    let ca = match &args.ca_cert {
        Some(p) => Some(
            std::fs::read(p).with_context(|| format!("cannot read the CA file {}", p.display()))?,
        ),
        None => None,
    };
    let auth = if let Some(var) = &args.password_env {
        SmtpAuth::Login {
            user: args.user.clone(),
            password: env_secret(var, "--password-env")?,
        }
    } else if let Some(var) = &args.token_env {
        SmtpAuth::Xoauth2 {
            user: args.user.clone(),
            token: env_secret(var, "--token-env")?,
        }
    } else {
        let mut settings = AuthSettings::from_env();
        if let Some(p) = &args.profile {
            settings = settings.merge(AuthSettings::from_file(p)?);
        }
        settings = settings.merge(
            AuthSettings {
                tenant: args.tenant.clone(),
                client_id: args.client_id.clone(),
                authority_host: args.authority_host.clone(),
                client_secret_env: args.client_secret_env.clone(),
                certificate_path: args.cert.clone(),
                certificate_password_env: args.cert_password_env.clone(),
                ca_pem: args.ca_cert.clone(),
                ..AuthSettings::default()
            }
            .from_flags(),
        );
        let config =
            settings.into_provider_config(Arc::new(|_| {}), Arc::new(|_: &exgate_auth::Url| {}))?;
        let provider = TokenProvider::new(config)?;
        let request = TokenRequest::scopes(["https://outlook.office365.com/.default".to_owned()]);
        match provider.token(&request).await {
            Ok(t) => SmtpAuth::Xoauth2 {
                user: args.user.clone(),
                token: SecretString::from(t.secret().to_owned()),
            },
            Err(e) if e.entra().is_some() => {
                let text = e.to_string();
                return Ok(report_refusal("token", &text, None, args.json));
            }
            Err(e) => return Err(anyhow::anyhow!("cannot get a token: {e}")),
        }
    };

    let options = SmtpOptions {
        host: args.host.clone(),
        port: args.port,
        connect_to: args.connect,
        security: if args.tls {
            SmtpSecurity::Tls
        } else {
            SmtpSecurity::StartTls
        },
        extra_root_pem: ca,
        timeout: Duration::from_secs(args.timeout.max(1)),
        ehlo_name: "exgate.localhost".to_owned(),
    };
    let message = args.to.as_ref().map(|to| TestMessage {
        from: args.user.clone(),
        to: to.clone(),
        subject: "exgate smtp check".to_owned(),
        body: "This message was sent by `exgate smtp check` to test SMTP submission.".to_owned(),
    });
    let transcript = check(&options, &auth, message.as_ref()).await;
    Ok(report(&transcript, args.json))
}

/// The ranked causes of a refusal's text (an SMTP reply or an Entra error).
fn diagnose(text: &str) -> exgate_diagnose::Diagnosis {
    exgate_diagnose::explain_text(text, Some(super::explain::now_secs()))
}

fn report_refusal(
    step: &str,
    text: &str,
    transcript: Option<&SmtpTranscript>,
    json: bool,
) -> ExitCode {
    let diagnosis = diagnose(text);
    if json {
        let out = serde_json::json!({
            "ok": false,
            "failed_step": step,
            "error": text,
            "transcript": transcript,
            "causes": diagnosis.causes,
        });
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    } else {
        if let Some(t) = transcript {
            print_steps(t);
        }
        println!("\n{step} failed: {text}\n");
        super::explain::print_diagnosis(&diagnosis, exit::color_enabled(), "");
    }
    exit::found_failures()
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

fn report(t: &SmtpTranscript, json: bool) -> ExitCode {
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
    if failure.reply.is_none() && matches!(failure.name.as_str(), "connect" | "starttls") {
        // Could not reach the server at all: no SMTP cause to rank.
        if json {
            let out = serde_json::json!({ "ok": false, "failed_step": failure.name, "error": text, "transcript": t });
            println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
        } else {
            print_steps(t);
            eprintln!("\nerror: {} failed: {text}", failure.name);
        }
        return exit::could_not_run();
    }
    report_refusal(&failure.name, &format!("SMTP {text}"), Some(t), json)
}
