//! `exgate gateway`: the Basic-to-OAuth gateway. `run` serves devices, `passwd` sets a local
//! account's password, `status` shows the spool with the diagnosed cause of every delay.

use std::io::{BufRead as _, IsTerminal as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use exgate_gateway::Gateway;
use exgate_gateway::accounts::{PasswordFile, hash_password};
use exgate_gateway::config::GatewayConfig;
use exgate_gateway::spool::{Envelope, Spool};
use secrecy::{ExposeSecret as _, SecretString};

use crate::cmd::flags::JsonArgs;
use crate::exit;

const RUN_EXAMPLES: &str = "\
Examples:
  Serve devices with the configuration in gateway.toml (docs/gateway.md), in the foreground:
    exgate gateway run --config gateway.toml
  Check the configuration, the password file, the certificate and the auth profiles, then exit:
    exgate gateway run --config gateway.toml --check

SIGHUP re-reads accounts, passwords and profiles; SIGINT or SIGTERM stops accepting connections,
lets open sessions finish (up to --grace seconds) and keeps undelivered mail in the spool.
Logs go to stderr (EXGATE_LOG=info by default here; --log-json for one JSON object per line);
audit lines have the target exgate::audit.
Exit codes: 0 stopped cleanly (or --check passed), 2 could not start.";

const PASSWD_EXAMPLES: &str = "\
Examples:
  Set the scanner's password from a variable, or let exgate make a strong one and print it once:
    SCANNER_PASSWORD=... exgate gateway passwd scanner --config gateway.toml \\
      --password-env SCANNER_PASSWORD
    exgate gateway passwd scanner --config gateway.toml --generate
  From standard input (one line):
    printf '%s\\n' \"$PW\" | exgate gateway passwd scanner --config gateway.toml

The password file (`passwords` in [gateway], default gateway.passwd beside the configuration)
holds argon2id hashes only and is written with mode 0600. A running gateway reads it again on
SIGHUP. Exit codes: 0 set, 2 could not (unknown account, no password given).";

const LOGIN_EXAMPLES: &str = "\
Examples:
  Sign in once as the account's mailbox with a device code, headless (open the printed address on
  any device); the refresh token goes to the profile's encrypted store and `gateway run` renews
  it silently from then on:
    exgate gateway login frontdesk --config gateway.toml

The account's profile must use flow = \"device_code\" (or \"auth_code\") and have a [store]
(docs/auth.md). Exit codes: 0 signed in, 1 Entra ID refused (the cause is shown), 2 could not run.";

const STATUS_EXAMPLES: &str = "\
Examples:
  exgate gateway status --config gateway.toml
  exgate gateway status --config gateway.toml --json

Lists the messages waiting in the spool (with the cause of the last failure and its fix) and
those returned to their senders. Exit codes: 0 nothing waiting on a failure, 1 messages deferred
after a refusal or returned, 2 could not read the configuration or the spool.";

/// The Basic-to-OAuth gateway for devices and legacy apps.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Serve SMTP and IMAP to devices with local passwords; sign in to Exchange with OAuth.
    #[command(after_help = RUN_EXAMPLES)]
    Run(RunArgs),
    /// Set a local account's password (argon2id hash in the password file).
    #[command(after_help = PASSWD_EXAMPLES)]
    Passwd(PasswdArgs),
    /// Sign in once for a delegated account (device code) and keep its refresh token.
    #[command(after_help = LOGIN_EXAMPLES)]
    Login(LoginArgs),
    /// Show the spool: messages waiting, why, and what was returned to senders.
    #[command(after_help = STATUS_EXAMPLES)]
    Status(StatusArgs),
}

#[derive(Debug, clap::Args)]
pub(crate) struct RunArgs {
    /// The gateway's configuration file.
    #[arg(long, value_name = "FILE", default_value = "gateway.toml")]
    config: PathBuf,
    /// Check everything the gateway needs, then exit without serving.
    #[arg(long)]
    check: bool,
    /// Seconds open sessions get to finish at shutdown.
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    grace: u64,
    /// Logs as one JSON object per line.
    #[arg(long)]
    pub(crate) log_json: bool,
}

#[derive(Debug, clap::Args)]
pub(crate) struct PasswdArgs {
    /// The account (a `name` in [[accounts]]).
    name: String,
    /// The gateway's configuration file.
    #[arg(long, value_name = "FILE", default_value = "gateway.toml")]
    config: PathBuf,
    /// Environment variable holding the new password.
    #[arg(long, value_name = "VAR", conflicts_with = "generate")]
    password_env: Option<String>,
    /// Make a random password, set it and print it once.
    #[arg(long)]
    generate: bool,
}

#[derive(Debug, clap::Args)]
pub(crate) struct LoginArgs {
    /// The account (a `name` in [[accounts]]).
    name: String,
    /// The gateway's configuration file.
    #[arg(long, value_name = "FILE", default_value = "gateway.toml")]
    config: PathBuf,
}

#[derive(Debug, clap::Args)]
pub(crate) struct StatusArgs {
    /// The gateway's configuration file.
    #[arg(long, value_name = "FILE", default_value = "gateway.toml")]
    config: PathBuf,
    #[command(flatten)]
    output: JsonArgs,
}

pub(crate) async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Run(args) => serve(args).await,
        Command::Passwd(args) => passwd(args),
        Command::Status(args) => status(args),
        Command::Login(args) => login(args).await,
    }
}

async fn login(args: LoginArgs) -> anyhow::Result<ExitCode> {
    use exgate_auth::FlowKind;
    let config = load(&args.config)?;
    let Some(account) = config.account(&args.name) else {
        anyhow::bail!(
            "{}: no account `{}`\n  fix: name an account of [[accounts]]",
            args.config.display(),
            args.name
        );
    };
    let profile_name = account.profile.clone().unwrap_or_default();
    let Some(settings) = config.profiles.get(&profile_name) else {
        anyhow::bail!("{}: the account names no profile", args.config.display());
    };
    let flow = settings.flow()?;
    if !matches!(flow, FlowKind::DeviceCode | FlowKind::AuthCode) {
        anyhow::bail!(
            "{}: profile `{profile_name}` signs in with {flow:?}, which needs no interactive login\n  fix: `exgate gateway login` is for profiles with flow = \"device_code\" or \"auth_code\"",
            args.config.display()
        );
    }
    if settings.store.is_none() {
        anyhow::bail!(
            "{}: profile `{profile_name}` has no [profiles.{profile_name}.store]: the refresh token would be lost when this command ends\n  fix: add [profiles.{profile_name}.store] with path and key_file (docs/auth.md)",
            args.config.display()
        );
    }
    let mailbox = account.mailbox.clone();
    let prompt: exgate_auth::DevicePrompt = std::sync::Arc::new(move |info| {
        eprintln!(
            "To sign in as {mailbox}: open {} and enter the code {} (within {} minutes).",
            info.verification_uri,
            info.user_code,
            info.expires_in / 60
        );
    });
    let open: exgate_auth::OpenUrl = std::sync::Arc::new(|url| {
        eprintln!("Open this address in a browser to sign in: {url}");
    });
    let provider =
        exgate_auth::TokenProvider::new(settings.clone().into_provider_config(prompt, open)?)?;
    let request = match &settings.scopes {
        Some(s) if !s.is_empty() => exgate_auth::TokenRequest::scopes(s.clone()),
        _ => exgate_auth::TokenRequest::exchange_online(),
    }
    .for_user(account.mailbox.clone());
    match provider.token(&request).await {
        Ok(_) => {
            eprintln!(
                "signed in as {}; the refresh token is in the profile's store, and `exgate gateway run` renews it from there",
                account.mailbox
            );
            Ok(exit::ok())
        }
        Err(e) => {
            eprintln!("sign-in failed: {e}");
            Ok(exit::found_failures())
        }
    }
}

fn load(path: &std::path::Path) -> anyhow::Result<GatewayConfig> {
    Ok(GatewayConfig::load(path)?)
}

async fn serve(args: RunArgs) -> anyhow::Result<ExitCode> {
    let config = load(&args.config)?;
    if args.check {
        return check(config);
    }
    let gateway = Gateway::start(config).await?;
    for w in gateway.warnings() {
        tracing::warn!("{w}");
    }
    let a = gateway.addresses();
    let lines = [
        ("smtp (STARTTLS)", &a.smtp),
        ("smtps (TLS)", &a.smtps),
        ("smtp (no TLS)", &a.smtp_plain),
        ("imap (STARTTLS)", &a.imap),
        ("imaps (TLS)", &a.imaps),
        ("pop3 (STLS)", &a.pop3),
        ("pop3s (TLS)", &a.pop3s),
    ];
    // A service keeps running when whoever started it stops reading its standard output.
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    for (what, addrs) in lines {
        for addr in addrs {
            let _ = writeln!(out, "{what:<16} {addr}");
        }
    }
    if let Some(m) = a.metrics {
        let _ = writeln!(out, "{:<16} http://{m}/metrics", "metrics");
    }
    let _ = out.flush();
    drop(out);
    wait_for_signals(&gateway).await;
    tracing::info!("stopping: draining sessions, keeping the spool");
    gateway.shutdown(Duration::from_secs(args.grace)).await;
    Ok(exit::ok())
}

#[cfg(unix)]
async fn wait_for_signals(gateway: &Gateway) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return,
            _ = term.recv() => return,
            _ = hup.recv() => match gateway.reload() {
                Ok(()) => {}
                Err(e) => tracing::error!("reload refused, the previous configuration stays: {e}"),
            },
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signals(_gateway: &Gateway) {
    let _ = tokio::signal::ctrl_c().await;
}

fn check(config: GatewayConfig) -> anyhow::Result<ExitCode> {
    let passwords = PasswordFile::load(&config.gateway.passwords)?;
    if let Some(files) = &config.tls {
        for p in [&files.certificate, &files.key] {
            std::fs::metadata(p).with_context(|| format!("{}: cannot read", p.display()))?;
        }
    }
    exgate_gateway::upstream::Upstreams::new(&config)?;
    println!("{}: configuration is usable", config.source.display());
    for a in &config.accounts {
        let protocols: Vec<&str> = a.protocols.iter().map(|p| p.name()).collect();
        println!(
            "  account {:<16} -> {} ({}){}",
            a.name,
            a.mailbox,
            protocols.join(", "),
            if passwords.hash(&a.name).is_some() {
                ""
            } else {
                "  [no password yet: exgate gateway passwd]"
            }
        );
    }
    Ok(exit::ok())
}

fn passwd(args: PasswdArgs) -> anyhow::Result<ExitCode> {
    let config = load(&args.config)?;
    let Some(account) = config.account(&args.name) else {
        anyhow::bail!(
            "{}: no account `{}`\n  fix: add [[accounts]] name = \"{}\" first (accounts: {})",
            args.config.display(),
            args.name,
            args.name,
            config
                .accounts
                .iter()
                .map(|a| a.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    };
    let password = if args.generate {
        exgate_auth::random_password()?
    } else if let Some(var) = &args.password_env {
        match std::env::var(var) {
            Ok(v) if !v.is_empty() => SecretString::from(v),
            _ => anyhow::bail!("{var} is not set\n  fix: export {var} with the new password"),
        }
    } else {
        if std::io::stdin().is_terminal() {
            eprintln!(
                "New password for {} (the line is shown as typed):",
                account.name
            );
        }
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            anyhow::bail!(
                "no password on standard input\n  fix: pipe one line, or use --password-env VAR or --generate"
            );
        }
        SecretString::from(line.to_owned())
    };
    if password.expose_secret().chars().count() < 12 {
        anyhow::bail!(
            "the password is shorter than 12 characters\n  fix: use a longer one, or --generate"
        );
    }
    let path = &config.gateway.passwords;
    let mut file = PasswordFile::load(path)?;
    file.set(
        &account.name,
        hash_password(&password).map_err(anyhow::Error::msg)?,
    );
    exgate_auth::write_atomic_private(path, file.to_text().as_bytes())?;
    if args.generate {
        println!("{}", password.expose_secret());
        eprintln!(
            "password set for {} in {} (shown once above)",
            account.name,
            path.display()
        );
    } else {
        eprintln!("password set for {} in {}", account.name, path.display());
    }
    eprintln!("a running gateway reads it on SIGHUP (systemctl reload exgate-gateway)");
    Ok(exit::ok())
}

fn cause_fix(id: Option<&str>) -> (String, String) {
    let Some(id) = id else {
        return (String::new(), String::new());
    };
    let Ok(catalog) = exgate_diagnose::builtin_catalog() else {
        return (id.to_owned(), String::new());
    };
    match catalog.cause(id) {
        Some(c) => (
            c.title.clone(),
            catalog
                .primary_entry(id)
                .and_then(|e| e.fix.first().cloned())
                .unwrap_or_default(),
        ),
        None => (id.to_owned(), String::new()),
    }
}

fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let config = load(&args.config)?;
    let spool = Spool::open(&config.spool.path)
        .with_context(|| format!("opening the spool {}", config.spool.path.display()))?;
    let queue = spool.list()?;
    let failed = spool.failed()?;
    let troubled = queue.iter().any(|e| e.last_error.is_some()) || !failed.is_empty();
    let row = |e: &Envelope| {
        let (title, fix) = cause_fix(e.last_cause.as_deref());
        serde_json::json!({
            "id": e.id, "account": e.account, "from": e.from, "to": e.to,
            "received": e.received, "attempts": e.attempts, "next_attempt": e.next_attempt,
            "last_error": e.last_error, "cause": e.last_cause, "cause_title": title, "fix": fix,
        })
    };
    if args.output.json {
        let out = serde_json::json!({
            "spool": spool.dir(),
            "queued": queue.iter().map(row).collect::<Vec<_>>(),
            "returned": failed.iter().map(row).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        let at = std::fs::canonicalize(spool.dir()).unwrap_or_else(|_| spool.dir().to_owned());
        println!(
            "spool at {}: {} waiting, {} returned to their senders",
            at.display(),
            queue.len(),
            failed.len()
        );
        for (label, list) in [("waiting", &queue), ("returned", &failed)] {
            for e in list.iter().rev().take(50) {
                println!(
                    "\n{label} {} from {} ({}) to {}; {} attempt(s)",
                    e.id,
                    e.from,
                    e.account,
                    e.to.join(", "),
                    e.attempts
                );
                if let Some(err) = &e.last_error {
                    println!("  last answer: {err}");
                }
                let (title, fix) = cause_fix(e.last_cause.as_deref());
                if !title.is_empty() {
                    println!("  cause: {title}");
                }
                if !fix.is_empty() {
                    println!("  fix: {fix}");
                }
            }
        }
    }
    Ok(if troubled {
        exit::found_failures()
    } else {
        exit::ok()
    })
}
