//! `exgate emulator`: serves the Entra ID (and Exchange) emulator described by a scenario file
//! until Ctrl-C or SIGTERM.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use exgate_emulator::{Emulator, EmulatorOptions, Scenario};

const EXAMPLES: &str = "\
Examples:
  Serve the demo scenario over HTTPS on a free port (prints the base URL and the CA file):
    exgate emulator --scenario scenarios/demo.toml --tls
  Fixed port, state written for scripts and test fixtures:
    exgate emulator --scenario scenarios/demo.toml --tls --listen 127.0.0.1:8443 \\
      --state-file /tmp/emulator.json --ca-out /tmp/emulator-ca.pem
  Short-lived tokens to test renewal:
    exgate emulator --scenario scenarios/demo.toml --token-lifetime 120

The state file is JSON: {\"base_url\": ..., \"ca_file\": ... or null, \"smtp\":
\"127.0.0.1:PORT\" or null, \"imap\": ... or null, \"pop\": ... or null, \"pid\": ...,
\"tenants\": [{\"name\", \"id\", \"domains\"}]}.
The state file is written once the emulator accepts connections and removed when it stops.
The token endpoint of a tenant is {base_url}/{tenant}/oauth2/v2.0/token. With --tls and an
[exchange] section, SMTP submission (STARTTLS, AUTH XOAUTH2/LOGIN/PLAIN, as
smtp.office365.com:587) listens on the printed smtp address and IMAP4 (implicit TLS,
AUTHENTICATE XOAUTH2/PLAIN and LOGIN, as outlook.office365.com:993) on the printed imap
address, and POP3 (implicit TLS, AUTH XOAUTH2/PLAIN and USER/PASS, as
outlook.office365.com:995) on the printed pop address. The scenario format is described in
docs/scenarios.md.";

/// Serve the Entra ID emulator described by a scenario file.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub(crate) struct Args {
    /// Scenario file (TOML) with tenants, applications, consent and users.
    #[arg(long, value_name = "FILE")]
    pub scenario: PathBuf,

    /// Address to listen on. Port 0 picks a free port.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,

    /// Address of SMTP submission (with --tls and an [exchange] section); default a free port.
    #[arg(long, value_name = "ADDR")]
    pub smtp_listen: Option<SocketAddr>,

    /// Address of IMAP4 (with --tls and an [exchange] section); default a free port.
    #[arg(long, value_name = "ADDR")]
    pub imap_listen: Option<SocketAddr>,

    /// Address of POP3 (with --tls and an [exchange] section); default a free port.
    #[arg(long, value_name = "ADDR")]
    pub pop_listen: Option<SocketAddr>,

    /// Allow listening on an address other than loopback (the emulator has no real security).
    #[arg(long)]
    pub allow_remote: bool,

    /// Serve HTTPS with a generated certificate authority (required by azure-identity).
    #[arg(long)]
    pub tls: bool,

    /// With --tls, the certificate also names login.microsoftonline.com, login.windows.net,
    /// graph.microsoft.com, outlook.office365.com, outlook.office.com and smtp.office365.com, for
    /// clients that hard-code them (point the names at 127.0.0.1 in the hosts file).
    #[arg(long, requires = "tls")]
    pub microsoft_names: bool,

    /// Write the base URL, CA file, process id and tenants as JSON to FILE once listening.
    #[arg(long, value_name = "FILE")]
    pub state_file: Option<PathBuf>,

    /// Where to write the CA certificate (PEM) with --tls. Default: next to the state file, or
    /// in the temporary directory.
    #[arg(long, value_name = "FILE")]
    pub ca_out: Option<PathBuf>,

    /// Lifetime of issued access tokens in seconds (default 3599, or the scenario's).
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub token_lifetime: Option<u64>,
}

/// Runs the emulator until interrupted.
pub(crate) async fn run(args: Args) -> anyhow::Result<ExitCode> {
    for addr in [
        Some(args.listen),
        args.smtp_listen,
        args.imap_listen,
        args.pop_listen,
    ]
    .into_iter()
    .flatten()
    {
        if !addr.ip().is_loopback() && !args.allow_remote {
            anyhow::bail!(
                "refusing to listen on {addr}: the emulator accepts any client; use a loopback \
                 address such as 127.0.0.1:0, or pass --allow-remote if you really mean it"
            );
        }
    }
    let scenario = Scenario::load(&args.scenario)?;
    let tenants: Vec<serde_json::Value> = scenario
        .tenants
        .iter()
        .map(|t| {
            serde_json::json!({
                "name": t.name,
                "id": t.id.to_string(),
                "domains": t.domains,
            })
        })
        .collect();
    let options = EmulatorOptions {
        listen: args.listen,
        tls: args.tls,
        token_lifetime: args.token_lifetime.map(Duration::from_secs),
        smtp_listen: args.smtp_listen,
        imap_listen: args.imap_listen,
        pop_listen: args.pop_listen,
        microsoft_names: args.microsoft_names,
        ..EmulatorOptions::default()
    };
    let emulator = Emulator::start(scenario, options)
        .await
        .context("cannot start the emulator")?;

    let ca_file = match emulator.ca_pem() {
        None => None,
        Some(pem) => {
            let path = args
                .ca_out
                .clone()
                .unwrap_or_else(|| match &args.state_file {
                    Some(s) => s.with_extension("ca.pem"),
                    None => std::env::temp_dir()
                        .join(format!("exgate-emulator-{}-ca.pem", std::process::id())),
                });
            write_atomically(&path, pem.as_bytes())
                .with_context(|| format!("cannot write the CA file {}", path.display()))?;
            Some(path)
        }
    };

    let mut out = std::io::stdout().lock();
    writeln!(out, "base_url: {}", emulator.base_url())?;
    if let Some(ca) = &ca_file {
        writeln!(out, "ca_file: {}", ca.display())?;
    }
    if let Some(smtp) = emulator.smtp_addr() {
        writeln!(
            out,
            "smtp: {smtp} (STARTTLS, then AUTH XOAUTH2/LOGIN/PLAIN)"
        )?;
    }
    if let Some(imap) = emulator.imap_addr() {
        writeln!(
            out,
            "imap: {imap} (implicit TLS, then AUTHENTICATE XOAUTH2/PLAIN or LOGIN)"
        )?;
    }
    if let Some(pop) = emulator.pop_addr() {
        writeln!(
            out,
            "pop: {pop} (implicit TLS, then AUTH XOAUTH2/PLAIN or USER/PASS)"
        )?;
    }
    for (service, url) in emulator.endpoints() {
        writeln!(out, "{service}: {url}")?;
    }
    writeln!(
        out,
        "token endpoint: {}/{{tenant}}/oauth2/v2.0/token (Ctrl-C stops)",
        emulator.base_url()
    )?;
    out.flush()?;
    drop(out);

    if let Some(state) = &args.state_file {
        let doc = serde_json::json!({
            "base_url": emulator.base_url(),
            "ca_file": ca_file.as_ref().map(|p| p.display().to_string()),
            "smtp": emulator.smtp_addr().map(|a| a.to_string()),
            "imap": emulator.imap_addr().map(|a| a.to_string()),
            "pop": emulator.pop_addr().map(|a| a.to_string()),
            "endpoints": emulator
                .endpoints()
                .into_iter()
                .map(|(service, url)| serde_json::json!({ "service": service, "url": url }))
                .collect::<Vec<_>>(),
            "pid": std::process::id(),
            "tenants": tenants,
        });
        write_atomically(state, serde_json::to_string_pretty(&doc)?.as_bytes())
            .with_context(|| format!("cannot write the state file {}", state.display()))?;
    }

    wait_for_stop().await;
    emulator.shutdown().await;
    if let Some(state) = &args.state_file {
        let _ = std::fs::remove_file(state);
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes through a temporary file and a rename, so readers never see a partial file.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

async fn wait_for_stop() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
