//! `exgate cert new|show`: make an RSA key and self-signed certificate for app-only
//! authentication, and show a certificate's thumbprints and ready `keyCredentials` entries.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::cmd::flags::JsonArgs;
use anyhow::{Context, bail};
use exgate_auth::{CertificateInfo, ExposeSecret, SecretString};

const NEW_EXAMPLES: &str = "\
Examples:
  A 2048-bit key and a certificate valid for a year (daemon.key.pem, daemon.cert.pem,
  daemon.pfx):
    exgate cert new --subject CN=exgate-daemon,O=Contoso --out daemon
  A 4096-bit key valid for two years, PFX password from an environment variable:
    EXGATE_PFX_PASSWORD=... exgate cert new --subject CN=sync --out sync --bits 4096 --days 730
  A TLS certificate `exgate gateway` presents to devices (gateway.cert.pem, gateway.key.pem),
  with an ECDSA key (cheaper handshakes; RSA is only needed for an application's certificate):
    exgate cert new --subject CN=exgate-gateway --out gateway \\
      --san localhost --san 127.0.0.1 --ecdsa

The key files are written with mode 0600. Without EXGATE_PFX_PASSWORD (or --pfx-password-env) a
random PFX password is generated and written to PREFIX.pfx.password (mode 0600).
Upload PREFIX.cert.pem to the app registration (Certificates & secrets), or use the keyCredentials
JSON printed by `exgate cert show PREFIX.cert.pem`.";

const SHOW_EXAMPLES: &str = "\
Examples:
  exgate cert show daemon.cert.pem
  exgate cert show daemon.pfx --password-env EXGATE_PFX_PASSWORD --json

Exit codes: 0 valid, 1 expired or not yet valid, 2 could not read the file.
A warning is printed when the certificate expires within 30 days.";

#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Create an RSA key and a self-signed certificate (PEM key, PEM certificate, PFX).
    #[command(after_help = NEW_EXAMPLES)]
    New(NewArgs),
    /// Show a certificate's subject, validity, thumbprints and a ready keyCredentials entry.
    #[command(after_help = SHOW_EXAMPLES)]
    Show(ShowArgs),
}

#[derive(Debug, clap::Args)]
pub(crate) struct NewArgs {
    /// Subject, e.g. CN=exgate-daemon,O=Contoso (CN, O, OU, C, L, ST).
    #[arg(long)]
    subject: String,
    /// Output prefix: writes PREFIX.key.pem, PREFIX.cert.pem and PREFIX.pfx.
    #[arg(long)]
    out: PathBuf,
    /// RSA key size: 2048, 3072 or 4096 (smaller keys are refused by Entra ID).
    #[arg(long, default_value_t = 2048)]
    bits: usize,
    /// Validity in days.
    #[arg(long, default_value_t = 365)]
    days: u32,
    /// Environment variable holding the PFX password.
    #[arg(long, default_value = "EXGATE_PFX_PASSWORD")]
    pfx_password_env: String,
    /// Also a TLS server certificate for this name (DNS name or IP address); repeat for more
    /// (what `exgate gateway` presents to devices).
    #[arg(long, value_name = "NAME")]
    san: Vec<String>,
    /// An ECDSA P-256 key instead of RSA: a TLS server certificate only (needs --san), whose
    /// handshakes cost a small fraction of RSA's; Entra ID takes only RSA for applications.
    #[arg(long, requires = "san", conflicts_with = "bits")]
    ecdsa: bool,
    /// Overwrite existing files.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    output: JsonArgs,
}

#[derive(Debug, clap::Args)]
pub(crate) struct ShowArgs {
    /// PEM or DER certificate, or PFX.
    file: PathBuf,
    /// Environment variable holding the PFX password (default: FILE.password when it exists, as
    /// `cert new` writes it).
    #[arg(long, default_value = "EXGATE_PFX_PASSWORD")]
    password_env: String,
    #[command(flatten)]
    output: JsonArgs,
}

pub(crate) async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::New(args) => new(args),
        Command::Show(args) => show(args),
    }
}

fn with_suffix(prefix: &Path, suffix: &str) -> PathBuf {
    let mut s = prefix.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn new(args: NewArgs) -> anyhow::Result<ExitCode> {
    if args.bits < 2048 {
        bail!(
            "--bits {}: Entra ID refuses RSA keys under 2048 bits (fix: use 2048, 3072 or 4096)",
            args.bits
        );
    }
    let key_path = with_suffix(&args.out, ".key.pem");
    let cert_path = with_suffix(&args.out, ".cert.pem");
    let pfx_path = with_suffix(&args.out, ".pfx");
    let pw_path = with_suffix(&args.out, ".pfx.password");
    let env_pw = std::env::var(&args.pfx_password_env)
        .ok()
        .filter(|p| !p.is_empty());
    let mut outputs = vec![&key_path, &cert_path, &pfx_path];
    if env_pw.is_none() {
        outputs.push(&pw_path);
    }
    if !args.force {
        for p in &outputs {
            if p.exists() {
                bail!(
                    "{} exists (fix: choose another --out, or pass --force to overwrite)",
                    p.display()
                );
            }
        }
    }
    let (password, generated_pw) = match env_pw {
        Some(p) => (SecretString::from(p), false),
        None => (exgate_auth::random_password()?, true),
    };
    let algorithm = if args.ecdsa {
        exgate_auth::KeyAlgorithm::EcdsaP256
    } else {
        exgate_auth::KeyAlgorithm::Rsa { bits: args.bits }
    };
    let generated = exgate_auth::generate_certificate(
        &args.subject,
        algorithm,
        args.days,
        &password,
        &args.san,
    )?;
    exgate_auth::write_atomic_private(&key_path, generated.key_pem.expose_secret().as_bytes())?;
    std::fs::write(&cert_path, generated.cert_pem.as_bytes())
        .with_context(|| format!("cannot write {}", cert_path.display()))?;
    exgate_auth::write_atomic_private(&pfx_path, &generated.pfx)?;
    if generated_pw {
        exgate_auth::write_atomic_private(&pw_path, password.expose_secret().as_bytes())?;
    }
    let info = &generated.info;
    if args.output.json {
        let out = serde_json::json!({
            "key": key_path,
            "certificate": cert_path,
            "pfx": pfx_path,
            "pfx_password_file": generated_pw.then_some(&pw_path),
            "certificate_info": info,
            "keyCredential": info.key_credential(),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("key          {} (mode 0600)", key_path.display());
        println!("certificate  {}", cert_path.display());
        println!("pfx          {} (mode 0600)", pfx_path.display());
        if generated_pw {
            println!("pfx password {} (mode 0600)", pw_path.display());
        } else {
            println!("pfx password from ${}", args.pfx_password_env);
        }
        println!();
        print_info(info);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_info(info: &CertificateInfo) {
    println!("subject      {}", info.subject);
    println!("issuer       {}", info.issuer);
    println!("not before   {}", crate::exit::rfc3339(info.not_before));
    println!(
        "not after    {} ({} days left)",
        crate::exit::rfc3339(info.not_after),
        info.days_left_now()
    );
    match info.key_bits {
        Some(bits) => println!("key          RSA {bits} bits"),
        None => println!("key          {}", info.key_algorithm),
    }
    println!("serial       {}", info.serial);
    println!("SHA-1        {}", info.sha1_hex);
    println!("  x5t        {}", info.x5t);
    println!("SHA-256      {}", info.sha256_hex);
    println!("  x5t#S256   {}", info.x5t_s256);
}

fn warnings(info: &CertificateInfo) -> (Vec<String>, bool) {
    let w = info.warnings(exgate_auth::reexports::time::OffsetDateTime::now_utc());
    let invalid = w.iter().any(|w| w.invalid);
    (w.into_iter().map(|w| w.message).collect(), invalid)
}

fn show(args: ShowArgs) -> anyhow::Result<ExitCode> {
    // The variable first; else the FILE.password file `cert new` writes beside a PFX.
    let beside = {
        let mut p = args.file.clone().into_os_string();
        p.push(".password");
        PathBuf::from(p)
    };
    let password = std::env::var(&args.password_env)
        .ok()
        .filter(|p| !p.is_empty())
        .or_else(|| {
            std::fs::read_to_string(&beside)
                .ok()
                .map(|p| p.trim_end_matches(['\r', '\n']).to_owned())
        })
        .map(SecretString::from);
    let info = exgate_auth::load_certificate_info(&args.file, password.as_ref())?;
    let (warns, invalid) = warnings(&info);
    if args.output.json {
        let out = serde_json::json!({
            "file": args.file,
            "certificate": info,
            "days_left": info.days_left_now(),
            "sha1_base64url": info.x5t,
            "sha256_base64url": info.x5t_s256,
            "keyCredential": info.key_credential(),
            "graph_body": info.graph_key_credentials_body(),
            "warnings": warns,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print_info(&info);
        println!();
        println!("keyCredentials entry (application manifest):");
        println!("{}", serde_json::to_string_pretty(&info.key_credential())?);
        println!();
        println!(
            "Microsoft Graph: PATCH https://graph.microsoft.com/v1.0/applications/{{object-id}}"
        );
        println!("(replaces the app's keyCredentials: include the ones to keep)");
        println!(
            "{}",
            serde_json::to_string_pretty(&info.graph_key_credentials_body())?
        );
        for w in &warns {
            eprintln!("warning: {w}");
        }
    }
    Ok(if invalid {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
