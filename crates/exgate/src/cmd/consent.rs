//! `exgate consent url|listen`: the admin-consent URL of an application, and a loopback listener
//! that receives the consent redirect and reports the tenant and the outcome.

use std::process::ExitCode;
use std::time::Duration;

use crate::cmd::flags::JsonArgs;
use exgate_auth::{Authority, EndpointVersion, PUBLIC_CLOUD_HOST};

const URL_EXAMPLES: &str = "\
Examples:
  Any tenant's administrator (multi-tenant app), redirect to a local listener:
    exgate consent url --client-id aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee \\
      --redirect-uri http://localhost:8400/
  One tenant, v1 endpoint, against the emulator:
    exgate consent url --tenant contoso.com --client-id ... --redirect-uri http://localhost:8400/ \\
      --authority-host http://127.0.0.1:41234 --v1

The redirect URI must be registered on the application. Run `exgate consent listen --port 8400`
first to receive the answer.";

const LISTEN_EXAMPLES: &str = "\
Examples:
  exgate consent listen --port 8400
  exgate consent listen --port 8400 --state 7c1f --timeout 600 --json

Exit codes: 0 consent granted, 1 consent refused or failed, 2 no answer (timeout) or bad input.";

#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Print the admin-consent URL for a tenant (or `common`).
    #[command(after_help = URL_EXAMPLES)]
    Url(UrlArgs),
    /// Listen on loopback for the consent redirect and report the tenant and the outcome.
    #[command(after_help = LISTEN_EXAMPLES)]
    Listen(ListenArgs),
}

#[derive(Debug, clap::Args)]
pub(crate) struct UrlArgs {
    /// Application (client) id.
    #[arg(long, env = "AZURE_CLIENT_ID")]
    client_id: String,
    /// Tenant GUID or domain; `common` lets any tenant's administrator consent.
    #[arg(long, default_value = "common")]
    tenant: String,
    /// Redirect URI registered on the application.
    #[arg(long)]
    redirect_uri: String,
    /// Authority host (sovereign cloud, emulator).
    #[arg(long, env = "AZURE_AUTHORITY_HOST", default_value = PUBLIC_CLOUD_HOST)]
    authority_host: String,
    /// Use the v1 endpoint (`/{tenant}/adminconsent`).
    #[arg(long)]
    v1: bool,
    /// Scope for the v2 endpoint (default: https://graph.microsoft.com/.default).
    #[arg(long)]
    scope: Option<String>,
    /// `state` value echoed in the redirect (default: random).
    #[arg(long)]
    state: Option<String>,
    #[command(flatten)]
    output: JsonArgs,
}

#[derive(Debug, clap::Args)]
pub(crate) struct ListenArgs {
    /// Port on 127.0.0.1 (the redirect URI's port).
    #[arg(long, default_value_t = 8400)]
    port: u16,
    /// Seconds to wait.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
    /// Expected `state` (checked when given).
    #[arg(long)]
    state: Option<String>,
    #[command(flatten)]
    output: JsonArgs,
}

pub(crate) async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Url(args) => url(args),
        Command::Listen(args) => listen(args).await,
    }
}

fn url(args: UrlArgs) -> anyhow::Result<ExitCode> {
    let version = if args.v1 {
        EndpointVersion::V1
    } else {
        EndpointVersion::V2
    };
    let authority = Authority::new(&args.authority_host, &args.tenant, version)?;
    let state = args.state.unwrap_or_else(|| {
        exgate_auth::Pkce::generate()
            .challenge
            .chars()
            .take(12)
            .collect()
    });
    let url = exgate_auth::admin_consent_url(
        &authority,
        &args.client_id,
        &args.redirect_uri,
        &state,
        args.scope.as_deref(),
    );
    if args.output.json {
        let out = serde_json::json!({ "url": url.as_str(), "state": state });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("{url}");
        eprintln!(
            "Open this URL as an administrator{}. Check the answer with: exgate consent listen --state {state}",
            if authority.is_multi_tenant_alias() {
                " of the tenant that should use the app"
            } else {
                ""
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn listen(args: ListenArgs) -> anyhow::Result<ExitCode> {
    let listener = exgate_auth::RedirectListener::bind(args.port).await?;
    eprintln!(
        "Listening on http://localhost:{}/ (and http://127.0.0.1:{}/) for {} s...",
        listener.port(),
        listener.port(),
        args.timeout
    );
    let params = listener.receive(Duration::from_secs(args.timeout)).await?;
    let outcome = exgate_auth::consent_outcome(&params, args.state.as_deref());
    let ok = outcome.granted && outcome.state_matches != Some(false);
    if args.output.json {
        println!("{}", serde_json::to_string_pretty(&outcome)?);
    } else {
        println!(
            "consent granted  {}",
            if outcome.granted { "yes" } else { "no" }
        );
        println!(
            "tenant (tid)     {}",
            outcome.tenant.as_deref().unwrap_or("(not given)")
        );
        if let Some(e) = &outcome.error {
            println!("error            {e}");
        }
        if let Some(d) = &outcome.error_description {
            println!("description      {}", d.lines().next().unwrap_or(d));
        }
        match outcome.state_matches {
            Some(false) => {
                println!("state            does not match: the answer is not for this request")
            }
            Some(true) => println!("state            matches"),
            None => {}
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
