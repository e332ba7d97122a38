//! `exgate token get`: acquire a token with any configured flow and summarise it. The token is
//! printed only with `--raw`.

use crate::cmd::flags::{AuthArgs, JsonArgs, TrustArgs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use exgate_auth::{
    AssertionAlgorithm, AuthError, AuthSettings, EndpointVersion, FlowKind, StoreSettings,
    TokenProvider, TokenRequest, Url,
};

const EXAMPLES: &str = "\
Examples:
  App-only with the Azure SDK variables (AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_CLIENT_SECRET or
  AZURE_CLIENT_CERTIFICATE_PATH [+ AZURE_CLIENT_CERTIFICATE_PASSWORD], AZURE_AUTHORITY_HOST):
    exgate token get
  A profile, Graph instead of Exchange Online, JSON summary:
    exgate token get --profile daemon.toml --scope https://graph.microsoft.com/.default --json
  Certificate with PS256 and x5t#S256:
    exgate token get --tenant contoso.com --client-id ... --cert app.pfx \\
      --cert-password-env PFX_PW --ps256
  Delegated, device code, refresh tokens kept in an encrypted store:
    exgate token get --flow device_code --tenant contoso.com --client-id ... \\
      --scope https://outlook.office365.com/EWS.AccessAsUser.All \\
      --store tokens.bin --store-key-file tokens.key
  On-premises Exchange with Hybrid Modern Auth (probes the URL for the authority):
    exgate token get --hma-url https://mail.contoso.com/EWS/Exchange.asmx --client-id ... \\
      --client-secret-env SECRET
  Make a key for the token store (mode 0600):
    exgate token get --new-store-key tokens.key

Settings are read from the Azure SDK variables, then the --profile file, then flags (later wins).
Exit codes: 0 token acquired, 1 Entra ID refused (the AADSTS code is shown), 2 could not run.";

#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub(crate) struct Args {
    /// Boxed: the options are many, and the subcommand enum stays small.
    #[command(flatten)]
    options: Box<Options>,
}

#[derive(Debug, clap::Args)]
struct Options {
    #[command(flatten)]
    auth: AuthArgs,
    /// Use the v1 endpoints (`resource=`).
    #[arg(long)]
    v1: bool,
    /// Flow: client_secret, certificate, refresh_token, password, device_code, auth_code.
    #[arg(long)]
    flow: Option<String>,
    /// Sign the assertion with PS256 and send x5t#S256 (default RS256 + x5t).
    #[arg(long)]
    ps256: bool,
    /// Send the certificate chain in x5c.
    #[arg(long)]
    x5c: bool,
    /// User name (password flow; login hint for the browser flow).
    #[arg(long)]
    username: Option<String>,
    /// Environment variable holding the password (password flow).
    #[arg(long)]
    password_env: Option<String>,
    /// Environment variable holding a refresh token (refresh_token flow).
    #[arg(long)]
    refresh_token_env: Option<String>,
    /// Scope to request (repeatable). Default https://outlook.office365.com/.default.
    #[arg(long = "scope")]
    scopes: Vec<String>,
    /// User the delegated token is for (cache key).
    #[arg(long)]
    user: Option<String>,
    #[command(flatten)]
    trust: TrustArgs,
    /// Encrypted token store file (refresh tokens and app tokens).
    #[arg(long)]
    store: Option<PathBuf>,
    /// Store key file (mode 0600); default: the EXGATE_TOKEN_STORE_KEY variable.
    #[arg(long)]
    store_key_file: Option<PathBuf>,
    /// On-premises EWS URL: probe its Bearer challenge (Hybrid Modern Auth) for the authority
    /// and tenant (unless --authority-host/--tenant name them) and request a token for that host.
    #[arg(long)]
    hma_url: Option<Url>,
    /// With --hma-url: a delegated token (EWS.AccessAsUser.All) instead of app-only (.default).
    #[arg(long)]
    delegated: bool,
    /// Print the access token itself on stdout (it is a secret: handle with care).
    #[arg(long)]
    raw: bool,
    #[command(flatten)]
    output: JsonArgs,
    /// Write a new random store key to this file (mode 0600) and exit.
    #[arg(long, value_name = "FILE")]
    new_store_key: Option<PathBuf>,
}

fn flag_settings(args: &Options) -> anyhow::Result<AuthSettings> {
    let flow = match &args.flow {
        Some(f) => Some(
            f.parse::<FlowKind>()
                .map_err(|e| anyhow::anyhow!("--flow: {e}"))?,
        ),
        None => None,
    };
    Ok(AuthSettings {
        endpoint: args.v1.then_some(EndpointVersion::V1),
        flow,
        assertion_algorithm: args.ps256.then_some(AssertionAlgorithm::Ps256),
        send_x5c: args.x5c.then_some(true),
        username: args.username.clone(),
        password_env: args.password_env.clone(),
        refresh_token_env: args.refresh_token_env.clone(),
        scopes: (!args.scopes.is_empty()).then(|| args.scopes.clone()),
        ca_pem: args.trust.ca_cert.clone(),
        store: args.store.clone().map(|path| StoreSettings {
            path: Some(path),
            key_file: args.store_key_file.clone(),
            key_env: None,
            key_keyring: None,
        }),
        ..args.auth.flags()
    })
}

fn open_browser(url: &Url) {
    eprintln!("Open this URL in a browser to sign in:\n  {url}");
    let headless = cfg!(target_os = "linux")
        && std::env::var_os("DISPLAY").is_none()
        && std::env::var_os("WAYLAND_DISPLAY").is_none();
    if headless {
        return;
    }
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else if cfg!(windows) {
        "explorer"
    } else {
        "xdg-open"
    };
    let _ = std::process::Command::new(opener)
        .arg(url.as_str())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
}

pub(crate) async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let args = *args.options;
    if let Some(path) = &args.new_store_key {
        exgate_auth::StoreKey::generate()?.write_new_file(path)?;
        eprintln!(
            "wrote a new store key to {} (mode 0600); use it with --store-key-file",
            path.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let mut settings = args.auth.settings_with(flag_settings(&args)?)?;

    let mut request = TokenRequest::scopes(settings.scopes());
    let mut hma_summary = None;
    if let Some(ews) = &args.hma_url {
        let mut http = exgate_auth::HttpOptions::default();
        if let Some(ca) = &settings.ca_pem {
            http.extra_root_ca_pem = Some(std::fs::read(ca)?);
        }
        let client = exgate_auth::build_http_client(&http)?;
        let challenge = exgate_auth::probe(&client, ews).await?;
        challenge.fill_authority(&mut settings)?;
        request = exgate_auth::on_prem_request(ews, args.delegated);
        hma_summary = Some(challenge);
    }
    if let Some(u) = &args.user {
        request = request.for_user(u.clone());
    }

    let device_prompt = super::device_prompt();
    let open_url: exgate_auth::OpenUrl = Arc::new(open_browser);
    let config = settings.into_provider_config(device_prompt, open_url)?;
    let flow = config.credential.flow_name();
    let authority = config.authority.to_string();
    let client_id = config.client_id.clone();
    let provider = TokenProvider::new(config)?;

    let token = match provider.token(&request).await {
        Ok(t) => t,
        Err(err) => return report_error(&err, flow, args.output.json),
    };

    // The authority after tenant resolution (a domain becomes the tenant GUID).
    let authority = match provider.token_client().await {
        Ok(c) => c.authority().to_string(),
        Err(_) => authority,
    };
    let claims = exgate_auth::jwt_claims(token.secret()).unwrap_or_default();
    let claim = |k: &str| claims.get(k).cloned().unwrap_or(serde_json::Value::Null);
    let seconds_left = token.seconds_left(exgate_auth::reexports::time::OffsetDateTime::now_utc());
    if args.output.json {
        let mut out = serde_json::json!({
            "flow": flow,
            "authority": authority,
            "client_id": client_id,
            "scopes": token.scopes(),
            "expires_at": token.expires_at().unix_timestamp(),
            "seconds_left": seconds_left,
            "claims": {
                "aud": claim("aud"), "iss": claim("iss"), "tid": claim("tid"),
                "appid": claim("appid"), "azp": claim("azp"), "appidacr": claim("appidacr"),
                "idtyp": claim("idtyp"), "roles": claim("roles"), "scp": claim("scp"),
                "upn": claim("upn"), "oid": claim("oid"), "ver": claim("ver"),
            },
        });
        if let Some(h) = &hma_summary {
            out["hma"] = serde_json::to_value(h)?;
        }
        if args.raw {
            out["access_token"] = serde_json::Value::String(token.secret().to_string());
        }
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        if args.raw {
            println!("{}", token.secret());
        }
        let text = |v: serde_json::Value| match v {
            serde_json::Value::Null => "-".to_string(),
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        };
        let out: &mut dyn std::io::Write = if args.raw {
            &mut std::io::stderr()
        } else {
            &mut std::io::stdout()
        };
        let mut lines = vec![
            format!("token acquired ({flow})"),
            format!("authority   {authority}"),
            format!("client id   {client_id}"),
            format!("scopes      {}", token.scopes().join(" ")),
            format!(
                "expires     {} ({seconds_left} s left)",
                crate::exit::rfc3339(token.expires_at())
            ),
            format!("aud         {}", text(claim("aud"))),
            format!("iss         {}", text(claim("iss"))),
            format!("tid         {}", text(claim("tid"))),
            format!(
                "app         {} (appidacr {})",
                text(
                    claims
                        .get("appid")
                        .or(claims.get("azp"))
                        .cloned()
                        .unwrap_or_default()
                ),
                text(claim("appidacr"))
            ),
        ];
        if claims.contains_key("roles") {
            lines.push(format!("roles       {}", text(claim("roles"))));
        }
        if claims.contains_key("scp") {
            lines.push(format!("scp         {}", text(claim("scp"))));
        }
        if claims.contains_key("upn") {
            lines.push(format!("upn         {}", text(claim("upn"))));
        }
        if let Some(h) = &hma_summary {
            lines.push(format!(
                "hma         authorization_uri {}",
                h.authorization_uri.as_deref().unwrap_or("-")
            ));
        }
        if !args.raw {
            lines.push("(the token itself is printed only with --raw)".into());
        }
        for l in lines {
            let _ = writeln!(out, "{l}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn report_error(err: &AuthError, flow: &str, json: bool) -> anyhow::Result<ExitCode> {
    let Some(body) = err.entra() else {
        // Transport, configuration, store: the command could not run.
        return Err(anyhow::anyhow!("{err}"));
    };
    // Entra ID's typed answer, with what this command knows of its own request (the grant and
    // the client credential), ranked directly.
    let mut evidence = exgate_diagnose::Evidence::new()
        .with_protocol(exgate_diagnose::Protocol::TokenEndpoint)
        .with_entra_error(body.clone());
    if let Some(mode) = auth_mode_of_flow(flow) {
        evidence = evidence.with_auth(mode);
        if matches!(
            mode,
            exgate_diagnose::AuthMode::ClientSecret | exgate_diagnose::AuthMode::ClientAssertion
        ) {
            evidence = evidence.app_only(true);
        }
    }
    let diagnosis = exgate_diagnose::diagnose(&evidence);
    if json {
        let out = serde_json::json!({
            "error": body.error,
            "error_codes": body.error_codes,
            "error_description": body.summary(),
            "trace_id": body.trace_id,
            "correlation_id": body.correlation_id,
            "timestamp": body.timestamp,
            "suberror": body.suberror,
            "causes": diagnosis.causes,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        eprintln!("error: {err}");
        if !body.error_codes.is_empty() {
            let codes: Vec<String> = body
                .error_codes
                .iter()
                .map(|c| format!("AADSTS{c}"))
                .collect();
            eprintln!("codes: {}", codes.join(", "));
        }
        if !body.trace_id.is_empty() {
            eprintln!(
                "trace id {}  correlation id {}  at {}",
                body.trace_id, body.correlation_id, body.timestamp
            );
        }
        eprintln!();
        super::explain::print_diagnosis(&diagnosis, crate::exit::color_enabled(), "");
    }
    Ok(ExitCode::from(1))
}

/// The diagnosis vocabulary's name for a credential flow of `exgate-auth`.
fn auth_mode_of_flow(flow: &str) -> Option<exgate_diagnose::AuthMode> {
    use exgate_diagnose::AuthMode;
    Some(match flow {
        "client_secret" => AuthMode::ClientSecret,
        "client_assertion" | "certificate" => AuthMode::ClientAssertion,
        "password" => AuthMode::Password,
        "refresh_token" => AuthMode::RefreshToken,
        "device_code" => AuthMode::DeviceCode,
        "authorization_code" => AuthMode::AuthorizationCode,
        _ => return None,
    })
}
