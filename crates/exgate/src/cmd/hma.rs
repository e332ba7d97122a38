//! `exgate hma`: Hybrid Modern Authentication readiness of on-premises Exchange, from the output
//! of the cmdlets Microsoft's HMA guide runs (`check`), and the script that collects it
//! (`collect-script`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use exgate_hma::{Report, Status};

use crate::cmd::flags::{ReportArgs, TrustArgs};
use crate::exit;

const EXAMPLES: &str = "\
Examples:
  Collect the cmdlets' output on an Exchange server, then check it:
    exgate hma collect-script > exgate-hma-collect.ps1
    exgate hma check --cmdlets exgate-hma.txt
  Several pastes, a directory of them, JSON, and an HTML report:
    exgate hma check --cmdlets vdirs.txt spns.txt evidence/ --json --html hma.html
  Probe the namespaces clients use, live (an empty Bearer to each virtual directory):
    exgate hma check --cmdlets exgate-hma.txt \\
      --url https://mail.contoso.com https://autodiscover.contoso.com
  Also sign in as a synchronised user: a token for each namespace, then one EWS call with it
  (the tenant and the authority come from the Bearer challenge):
    exgate hma check --url https://mail.contoso.com \\
      --client-id 11111111-2222-3333-4444-555555555555 \\
      --username alice@contoso.com --password-env ALICE_PASSWORD

Files are recognised by what they contain (prompts, property names), in UTF-8 or UTF-16 with a
byte order mark, any line ends; `fl` and `ft` layouts, wrapped values and several servers per
output are read. Text that is not the output of a cmdlet exgate reads is listed, not guessed at.
Exit codes: 0 ready (every check ran and passed), 1 not ready (errors, or checks that could not
run for lack of output), 2 could not run (no readable input).";

/// Hybrid Modern Authentication readiness of on-premises Exchange.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Check HMA readiness from the output of the Exchange and Graph cmdlets.
    Check(Box<Args>),
    /// Print the PowerShell script that collects what `check` reads.
    CollectScript,
}

#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub(crate) struct Args {
    /// Files or directories of pasted or redirected cmdlet output.
    #[arg(long, num_args = 1.., value_name = "PATH", required_unless_present = "url")]
    cmdlets: Vec<PathBuf>,
    /// Namespaces to probe live (`https://mail.contoso.com`): each virtual directory is asked
    /// with an empty Bearer, as Outlook does.
    #[arg(long, num_args = 1.., value_name = "URL")]
    url: Vec<String>,
    #[command(flatten)]
    trust: TrustArgs,
    /// The name clients use, when --url is another address of the same servers (a test
    /// address, a load balancer's own name): the token is asked for this resource.
    #[arg(long, value_name = "URL", requires = "url")]
    resource: Option<String>,
    /// Sign in as this user (a delegated token, EWS.AccessAsUser.All) for the sign-in probe;
    /// without it the application's own token (`.default`) is asked.
    #[arg(long, requires = "password_env")]
    username: Option<String>,
    /// Environment variable holding --username's password.
    #[arg(long, requires = "username")]
    password_env: Option<String>,
    #[command(flatten)]
    token: crate::cmd::flags::AuthArgs,
    /// Seconds to wait for each probe request.
    #[arg(long, default_value_t = 15, value_name = "SECONDS")]
    timeout: u64,
    #[command(flatten)]
    output: ReportArgs,
}

pub(crate) async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::CollectScript => {
            print!("{}", exgate_hma::COLLECT_SCRIPT);
            Ok(exit::ok())
        }
        Command::Check(args) => check(&args).await,
    }
}

/// Every file of `paths` (a directory's files, sorted), with its bytes.
fn inputs(paths: &[PathBuf]) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(p)
                .with_context(|| format!("cannot list {}", p.display()))?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect();
            files.sort();
            for f in files {
                out.push(read(&f)?);
            }
        } else {
            out.push(read(p)?);
        }
    }
    Ok(out)
}

fn read(p: &Path) -> anyhow::Result<(String, Vec<u8>)> {
    let bytes = std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?;
    Ok((p.display().to_string(), bytes))
}

async fn check(args: &Args) -> anyhow::Result<ExitCode> {
    let files = inputs(&args.cmdlets)?;
    if files.is_empty() && args.url.is_empty() {
        anyhow::bail!(
            "no files in {}",
            args.cmdlets
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let org = exgate_hma::read_files(files.iter().map(|(n, b)| (n.as_str(), b.as_slice())));
    // A pasted directory URL (…/EWS/Exchange.asmx) is probed as its namespace.
    let namespaces: Vec<String> = args
        .url
        .iter()
        .map(|u| {
            let (ns, cut) = exgate_hma::probe::namespace_of(u);
            if let Some(cut) = cut
                && !args.output.json
            {
                eprintln!("note: --url {u}: probing the namespace {ns} (without {cut})");
            }
            ns
        })
        .collect();
    // The CA file is read once, for the probe and the sign-in.
    let ca = if args.url.is_empty() {
        None
    } else {
        args.trust.pem()?
    };
    let probes = if args.url.is_empty() {
        None
    } else {
        let http = exgate_auth::build_http_client(&exgate_auth::HttpOptions {
            extra_root_ca_pem: ca.clone(),
            timeout: std::time::Duration::from_secs(args.timeout),
        })
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        // Every URL is checked before any is probed; one with a user name or password is
        // refused (it would be echoed in evidence and reports).
        for u in &args.url {
            let parsed = url::Url::parse(u)
                .ok()
                .filter(|p| matches!(p.scheme(), "https" | "http"));
            match parsed {
                None => anyhow::bail!(
                    "--url {u}: not an http(s) URL (fix: give the namespace as https://mail.contoso.com)"
                ),
                Some(p) if !p.username().is_empty() || p.password().is_some() => anyhow::bail!(
                    "--url: a URL with a user name or password is refused (fix: give the namespace alone, https://mail.contoso.com)"
                ),
                Some(_) => {}
            }
        }
        if let Some(r) = &args.resource {
            let ok = url::Url::parse(r).ok().is_some_and(|p| {
                matches!(p.scheme(), "https" | "http")
                    && p.host_str().is_some()
                    && p.username().is_empty()
                    && p.password().is_none()
            });
            if !ok {
                anyhow::bail!(
                    "--resource {r}: not the scheme and host of a namespace (fix: give the name clients use, https://mail.contoso.com)"
                );
            }
        }
        let mut answers = Vec::new();
        for u in &namespaces {
            if !args.output.json {
                eprintln!("probing {u} ...");
            }
            answers.extend(exgate_hma::probe::probe_namespace(&http, u).await);
        }
        Some(answers)
    };
    let signins = match &probes {
        Some(answers) => sign_in(args, answers, ca.as_deref()).await?,
        None => None,
    };
    let report = exgate_hma::check_now(
        &org,
        &exgate_hma::Live {
            probes: probes.as_deref(),
            signins: signins.as_deref(),
        },
    );
    let ran = |c: &exgate_hma::Check| !matches!(c.status, Status::NotRun(_));
    if !files.is_empty() && probes.is_none() && !report.checks.iter().any(ran) {
        eprintln!("error: none of the given text is output of a cmdlet exgate reads");
        for u in report.unrecognised.iter().take(10) {
            eprintln!("  not read: {u}");
        }
        eprintln!(
            "  fix: run the script of `exgate hma collect-script` on an Exchange server and pass its file"
        );
        return Ok(exit::could_not_run());
    }
    if let Some(path) = &args.output.html {
        let mut title: Vec<String> = files.iter().map(|(n, _)| n.clone()).collect();
        title.extend(args.url.iter().cloned());
        std::fs::write(path, exgate_hma::html::render(&report, &title.join(", ")))
            .with_context(|| format!("cannot write --html {}", path.display()))?;
    }
    if args.output.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_text(&report);
        if let Some(path) = &args.output.html {
            println!("\nHTML report: {}", path.display());
        }
    }
    Ok(if report.ready {
        exit::ok()
    } else {
        exit::found_failures()
    })
}

/// The sign-in probe, when a credential is given: the settings (Azure SDK variables, profile,
/// flags), the authority and tenant from the first complete Bearer challenge where not set, a
/// token for each namespace and one EWS call with it.
async fn sign_in(
    args: &Args,
    answers: &[exgate_hma::probe::ProbeAnswer],
    ca: Option<&[u8]>,
) -> anyhow::Result<Option<Vec<exgate_hma::signin::SigninAnswer>>> {
    let mut settings = crate::cmd::app_token::settings(&args.token, args.trust.ca_cert.as_ref())?;
    if args.username.is_some() {
        settings = settings.merge(
            exgate_auth::AuthSettings {
                flow: Some(exgate_auth::FlowKind::Password),
                username: args.username.clone(),
                password_env: args.password_env.clone(),
                ..exgate_auth::AuthSettings::default()
            }
            .from_flags(),
        );
    }
    if settings.client_id.is_none() {
        return Ok(None);
    }
    // An application id from the environment alone (AZURE_CLIENT_ID set for another tool)
    // without a credential is not a request to sign in; given on the command line, it is.
    let asked =
        args.token.client_id.is_some() || args.token.profile.is_some() || args.username.is_some();
    if !asked && settings.flow().is_err() {
        return Ok(None);
    }
    if settings.authority_host.is_none() || settings.tenant.is_none() {
        let challenge = answers.iter().find_map(|a| {
            let challenges =
                exgate_auth::parse_www_authenticate(a.www_authenticate.iter().map(String::as_str));
            exgate_auth::HmaChallenge::from_challenges(&challenges).filter(|c| c.hma_enabled())
        });
        let Some(challenge) = challenge else {
            anyhow::bail!(
                "the sign-in probe needs the authority: no namespace answered with a Bearer challenge naming it (fix: give --tenant and --authority-host, or fix the findings of the live probe first)"
            );
        };
        challenge.fill_authority(&mut settings)?;
    }
    let delegated = settings.flow()?.is_delegated();
    let prompt = crate::cmd::device_prompt();
    let config =
        settings.into_provider_config(prompt, std::sync::Arc::new(|_: &exgate_auth::Url| {}))?;
    let provider = exgate_auth::TokenProvider::new(config)?;
    let mut http = exgate_mail::HttpClientBuilder::new()
        .timeout(std::time::Duration::from_secs(args.timeout.max(1)))
        .retry(exgate_mail::RetryPolicy::fail_fast());
    if let Some(pem) = ca {
        http = http.extra_root_pem(pem.to_vec());
    }
    let http = http.build()?;
    let mut out = Vec::new();
    for u in &args.url {
        let (u, _) = exgate_hma::probe::namespace_of(u);
        let u = &u;
        let resource = match &args.resource {
            Some(r) => r.clone(),
            None => exgate_hma::signin::resource_of(
                &url::Url::parse(u).with_context(|| format!("--url {u}: not a URL"))?,
            ),
        };
        if !args.output.json {
            eprintln!("signing in to {resource} ...");
        }
        out.push(
            exgate_hma::signin::sign_in_namespace(&provider, &http, u, &resource, delegated).await,
        );
    }
    Ok(Some(out))
}

fn print_text(r: &Report) {
    print!("{}", exgate_hma::text_report::render(r));
}
