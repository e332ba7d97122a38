//! `exgate`: the thin command-line front end.
//!
//! Every subcommand lives in its own module under `cmd/` and owns its arguments; this file only
//! parses the command line, sets up logging and the TLS provider, and maps results to exit codes.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd;
#[cfg(test)]
mod example_lines;
#[cfg(test)]
mod examples_parse;
mod exit;

/// Unattended access to Microsoft Exchange mailboxes: authenticate, reach, verify, explain.
#[derive(Debug, Parser)]
#[command(name = "exgate", version, about, long_about = None, after_help = EXAMPLES)]
struct Cli {
    /// More log output on stderr (repeat for more). Secrets are never logged.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,

    #[command(subcommand)]
    command: Command,
}

const EXAMPLES: &str = "\
Examples:
  Run the built-in demonstration on the embedded emulator:
    exgate demo
  Verify every mailbox of a migration project and write an HTML report:
    exgate verify project.toml --html report.html
  Serve the Entra ID and Exchange emulator until stopped:
    exgate emulator --scenario scenarios/demo.toml --tls
  Name the cause and the fix of a failure (error text, HTTP response, HAR, JWT):
    exgate explain error.txt
  Acquire a token with the Azure SDK variables and summarise it (never prints it):
    exgate token get
  Check Hybrid Modern Authentication readiness from collected cmdlet output:
    exgate hma check --cmdlets exgate-hma.txt
  Let a scanner that only knows a password send through OAuth (docs/gateway.md):
    exgate gateway run --config gateway.toml

Exit codes: 0 success, 1 the command ran and found failures, 2 could not run.
Set NO_COLOR=1 to turn off colour.";

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the demonstration: the embedded emulator, a ready project, a report.
    Demo(cmd::demo::Args),
    /// Verify that every mailbox of a migration or sync project can be reached, and explain why not.
    Verify(cmd::verify::Args),
    /// Serve the Entra ID and Exchange emulator described by a scenario file.
    Emulator(cmd::emulator::Args),
    /// Acquire and inspect access tokens.
    #[command(subcommand)]
    Token(cmd::token::Command),
    /// Create and inspect certificates for app-only authentication.
    #[command(subcommand)]
    Cert(cmd::cert::Command),
    /// Build admin-consent URLs and receive the consent redirect.
    #[command(subcommand)]
    Consent(cmd::consent::Command),
    /// Check IMAP access (OAuth XOAUTH2 or Basic) step by step, and explain a refusal.
    #[command(subcommand)]
    Imap(cmd::imap::Command),
    /// Check POP3 access (OAuth XOAUTH2 or Basic) step by step, and explain a refusal.
    #[command(subcommand)]
    Pop(cmd::pop::Command),
    /// Check SMTP submission (OAuth XOAUTH2 or Basic) step by step, and explain a refusal.
    #[command(subcommand)]
    Smtp(cmd::smtp::Command),
    /// Explain a failure: error text, HTTP response, Entra JSON, SOAP body, JWT or HAR file.
    Explain(cmd::explain::Args),
    /// Remove secrets from a HAR file or a raw capture before sharing it.
    Redact(cmd::redact::Args),
    /// Check Hybrid Modern Authentication readiness of on-premises Exchange.
    #[command(subcommand)]
    Hma(cmd::hma::Command),
    /// Run the Basic-to-OAuth gateway for devices and apps that only know a password.
    #[command(subcommand)]
    Gateway(cmd::gateway::Command),
}

fn main() -> ExitCode {
    exit::quiet_on_broken_pipe();
    let cli = Cli::parse();
    // A service logs what it does by default; a command only its warnings.
    let (service, json) = match &cli.command {
        Command::Gateway(cmd::gateway::Command::Run(args)) => (true, args.log_json),
        _ => (false, false),
    };
    init_logging(cli.verbose, service, json);
    // One rustls crypto provider, installed before any TLS client or server is built.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return exit::could_not_run();
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Demo(args) => cmd::demo::run(args).await,
            Command::Verify(args) => cmd::verify::run(args).await,
            Command::Emulator(args) => cmd::emulator::run(args).await,
            Command::Token(command) => cmd::token::run(command).await,
            Command::Cert(command) => cmd::cert::run(command).await,
            Command::Consent(command) => cmd::consent::run(command).await,
            Command::Imap(command) => cmd::imap::run(command).await,
            Command::Pop(command) => cmd::pop::run(command).await,
            Command::Smtp(command) => cmd::smtp::run(command).await,
            Command::Explain(args) => cmd::explain::run(args).await,
            Command::Redact(args) => cmd::redact::run(args).await,
            Command::Hma(command) => cmd::hma::run(command).await,
            Command::Gateway(command) => cmd::gateway::run(command).await,
        }
    });
    match result {
        Ok(code) => code,
        // The reader went away (`exgate … | head`): nothing is wrong with what was done.
        Err(err) if exit::is_broken_pipe(&err) => exit::ok(),
        Err(err) => {
            eprintln!("error: {}", exit::describe(&err));
            exit::could_not_run()
        }
    }
}

fn init_logging(verbose: u8, service: bool, json: bool) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 if service => "info",
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_env("EXGATE_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    if json {
        let _ = tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .try_init();
        return;
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(exit::color_enabled())
        .try_init();
}
