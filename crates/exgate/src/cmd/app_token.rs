//! What the mail protocol checks (`smtp check`, `imap check`) share: the app-only token (the
//! Azure SDK variables, then a profile file, then flags; scope
//! `https://outlook.office365.com/.default`) and the reporting of a failed step.

use crate::cmd::flags::{AuthArgs, JsonArgs, TrustArgs};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use exgate_auth::{AuthSettings, TokenProvider, TokenRequest};
use exgate_mail::sasl::SaslAuth;
use secrecy::SecretString;

/// Flags every mail protocol check takes besides its server's host and port.
#[derive(Debug, clap::Args)]
pub(crate) struct CheckArgs {
    /// Connect to this address instead of resolving --host (the name stays the TLS name).
    #[arg(long, value_name = "IP:PORT")]
    pub connect: Option<SocketAddr>,
    #[command(flatten)]
    pub trust: TrustArgs,
    /// Seconds allowed for each step.
    #[arg(long, default_value_t = 30)]
    pub timeout: u64,
    /// Environment variable holding an access token to use as is.
    #[arg(long, conflicts_with = "password_env")]
    pub token_env: Option<String>,
    /// Environment variable holding a password: Basic (LOGIN) instead of XOAUTH2.
    #[arg(long)]
    pub password_env: Option<String>,
    /// With --password-env: Windows authentication (NTLMv2) with the password instead of
    /// sending it, for on-premises Exchange (--user as DOMAIN\\user or a UPN).
    #[arg(long, requires = "password_env")]
    pub ntlm: bool,
    #[command(flatten)]
    pub token: AuthArgs,
    #[command(flatten)]
    pub output: JsonArgs,
}

impl CheckArgs {
    /// The extra root CA's PEM, if one was given.
    pub(crate) fn ca_pem(&self) -> anyhow::Result<Option<Vec<u8>>> {
        self.trust.pem()
    }

    /// The limit of each step.
    pub(crate) fn step_timeout(&self) -> Duration {
        Duration::from_secs(self.timeout.max(1))
    }

    /// [`CheckArgs::sign_in`], with Entra ID's refusal already reported (explained, exit code
    /// 1) as the inner `Err`.
    pub(crate) async fn sign_in_or_report<T: serde::Serialize>(
        &self,
        user: &str,
        print_steps: fn(&T),
    ) -> anyhow::Result<Result<SaslAuth, std::process::ExitCode>> {
        Ok(self
            .sign_in(user)
            .await?
            .map_err(|refusal| report_token_refusal::<T>(&refusal, self.output.json, print_steps)))
    }

    /// How `user` signs in: a password, a token given in a variable, or an app-only token; the
    /// inner `Err` is Entra ID's refusal (to be explained).
    pub(crate) async fn sign_in(
        &self,
        user: &str,
    ) -> anyhow::Result<Result<SaslAuth, Box<exgate_auth::EntraError>>> {
        let user = user.to_owned();
        if let Some(var) = &self.password_env {
            let password = env_secret(var, "--password-env")?;
            if self.ntlm {
                return Ok(Ok(SaslAuth::Ntlm(exgate_mail::ntlm::NtlmCredentials::new(
                    &user, password,
                ))));
            }
            return Ok(Ok(SaslAuth::Login { user, password }));
        }
        let token = match &self.token_env {
            Some(var) => env_secret(var, "--token-env")?,
            None => match app_token(&self.token, self.trust.ca_cert.as_ref()).await? {
                Ok(t) => t,
                Err(refusal) => return Ok(Err(refusal)),
            },
        };
        Ok(Ok(SaslAuth::Xoauth2 { user, token }))
    }
}

/// The credential settings of the mail protocol checks: the Azure SDK variables, then
/// `--profile`, then the flags.
pub(crate) fn settings(args: &AuthArgs, ca_pem: Option<&PathBuf>) -> anyhow::Result<AuthSettings> {
    args.settings_with(AuthSettings {
        ca_pem: ca_pem.cloned(),
        ..args.flags()
    })
}

/// A token, or Entra ID's refusal (to be explained), or an error (could not run).
pub(crate) async fn app_token(
    args: &AuthArgs,
    ca_pem: Option<&PathBuf>,
) -> anyhow::Result<Result<SecretString, Box<exgate_auth::EntraError>>> {
    let settings = settings(args, ca_pem)?;
    let config =
        settings.into_provider_config(Arc::new(|_| {}), Arc::new(|_: &exgate_auth::Url| {}))?;
    let provider = TokenProvider::new(config)?;
    let request = TokenRequest::scopes(["https://outlook.office365.com/.default".to_owned()]);
    match provider.token(&request).await {
        Ok(t) => Ok(Ok(SecretString::from(t.secret().to_owned()))),
        Err(exgate_auth::AuthError::Entra { body, .. }) => Ok(Err(body)),
        Err(e) => Err(anyhow::anyhow!("cannot get a token: {e}")),
    }
}

/// A secret from an environment variable, or an error naming the variable.
fn env_secret(var: &str, what: &str) -> anyhow::Result<SecretString> {
    std::env::var(var)
        .map(SecretString::from)
        .map_err(|_| anyhow::anyhow!("{what}: the environment variable {var} is not set"))
}

/// What a check knows of its own attempt: the protocol it spoke and how it signed in. With it,
/// diagnosis reads the check's own token (audience, roles or scopes for that protocol, expiry,
/// user) before it ranks, and never gives token advice for a password refusal.
pub(crate) struct Attempted<'a> {
    /// The protocol of the check.
    pub protocol: exgate_diagnose::Protocol,
    /// How the check signed in.
    pub auth: &'a SaslAuth,
    /// Entra ID's answer to the same user name and password, after a password refusal.
    pub signin: Option<exgate_auth::SigninCheck>,
}

impl CheckArgs {
    /// What the check attempted, for diagnosis; after the server refused (`refused`), with
    /// Entra ID's answer to the same password ([`CheckArgs::signin_check`]).
    pub(crate) async fn attempted<'a>(
        &self,
        protocol: exgate_diagnose::Protocol,
        auth: &'a SaslAuth,
        refused: bool,
    ) -> Attempted<'a> {
        let signin = if refused {
            self.signin_check(auth).await
        } else {
            None
        };
        Attempted {
            protocol,
            auth,
            signin,
        }
    }

    /// After the server refused a password: asks Entra ID to sign the same account in with the
    /// same password ([`exgate_auth::signin_check`]), at `--authority-host` (or the public
    /// cloud) for `--tenant` (or the user's domain). `None` for tokens, and when the check could
    /// not be made.
    pub(crate) async fn signin_check(&self, auth: &SaslAuth) -> Option<exgate_auth::SigninCheck> {
        let SaslAuth::Login { user, password } = auth else {
            return None;
        };
        let host = self
            .token
            .authority_host
            .clone()
            .unwrap_or_else(|| exgate_auth::PUBLIC_CLOUD_HOST.to_owned());
        let http = exgate_auth::HttpOptions {
            extra_root_ca_pem: self.ca_pem().ok().flatten(),
            timeout: self.step_timeout(),
        };
        exgate_auth::signin_check(&host, self.token.tenant.as_deref(), user, password, http).await
    }
}

/// The evidence of a refusal: the server's answer, and what the check itself sent.
fn refusal_evidence(text: &str, attempted: Option<&Attempted<'_>>) -> exgate_diagnose::Evidence {
    use secrecy::ExposeSecret as _;
    let mut ev = exgate_diagnose::Evidence::from_text(text);
    if let Some(a) = attempted {
        let signed_in = match a.auth {
            SaslAuth::Xoauth2 { user, token } => exgate_diagnose::SignedIn::Token {
                user,
                token: token.expose_secret(),
            },
            SaslAuth::Login { user, .. } => exgate_diagnose::SignedIn::Password { user },
            SaslAuth::Ntlm(c) => {
                return exgate_diagnose::Evidence::mail_refusal(
                    a.protocol,
                    text,
                    Some(exgate_diagnose::SignedIn::Windows { user: &c.account() }),
                );
            }
        };
        ev = exgate_diagnose::Evidence::mail_refusal(a.protocol, text, Some(signed_in));
        if let Some(check) = &a.signin {
            if check.password_accepted() {
                ev.attempt.password_accepted = Some(true);
            }
            if let Some(e) = check.evidence() {
                ev = ev.with_entra_error(e.clone());
            }
        }
    }
    ev.at(super::explain::now_secs())
}

/// Prints Entra ID's refusal of the app's token request, ranked from its typed body (the app
/// authenticates with client credentials); exit code 1.
fn report_token_refusal<T: serde::Serialize>(
    body: &exgate_auth::EntraError,
    json: bool,
    print_steps: fn(&T),
) -> std::process::ExitCode {
    let evidence = exgate_diagnose::Evidence::new()
        .with_protocol(exgate_diagnose::Protocol::TokenEndpoint)
        .app_only(true)
        .with_entra_error(body.clone());
    let text = format!("{}: {}", body.error, body.summary());
    print_refusal::<T>(
        "token",
        &text,
        &exgate_diagnose::diagnose(&evidence),
        None,
        json,
        print_steps,
    )
}

/// Prints a refusal (an SMTP/IMAP answer or Entra ID's) with its ranked causes; exit code 1.
pub(crate) fn report_refusal<T: serde::Serialize>(
    step: &str,
    text: &str,
    attempted: Option<&Attempted<'_>>,
    transcript: Option<&T>,
    json: bool,
    print_steps: fn(&T),
) -> std::process::ExitCode {
    let diagnosis = exgate_diagnose::diagnose(&refusal_evidence(text, attempted));
    if !json && let Some(check) = attempted.and_then(|a| a.signin.as_ref()) {
        eprintln!("sign-in check: {}", check.summary());
    }
    print_refusal(step, text, &diagnosis, transcript, json, print_steps)
}

fn print_refusal<T: serde::Serialize>(
    step: &str,
    text: &str,
    diagnosis: &exgate_diagnose::Diagnosis,
    transcript: Option<&T>,
    json: bool,
    print_steps: fn(&T),
) -> std::process::ExitCode {
    if json {
        let out = serde_json::json!({
            "ok": false,
            "failed_step": step,
            "error": text,
            "transcript": transcript,
            "causes": diagnosis.causes,
            "token_checks": diagnosis.token_checks,
        });
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    } else {
        if let Some(t) = transcript {
            print_steps(t);
        }
        println!("\n{step} failed: {text}\n");
        super::explain::print_diagnosis(diagnosis, crate::exit::color_enabled(), "");
    }
    crate::exit::found_failures()
}

/// Prints a step that got no answer (connection, TLS); exit code 2.
pub(crate) fn report_unreachable<T: serde::Serialize>(
    step: &str,
    text: &str,
    transcript: &T,
    json: bool,
    print_steps: fn(&T),
) -> std::process::ExitCode {
    let diagnosis = exgate_diagnose::explain_text(text, None);
    // exgate made this connection itself, so its own trust option is the first thing to name.
    let hint = diagnosis
        .causes
        .first()
        .filter(|c| c.id == "tls_untrusted")
        .map(|_| {
            "the server's certificate is not trusted here: if it comes from a private CA (the \
             emulator's, a test server's), pass that CA with --ca-cert FILE"
        });
    if json {
        let out = serde_json::json!({
            "ok": false,
            "failed_step": step,
            "error": text,
            "transcript": transcript,
            "causes": diagnosis.causes,
            "hint": hint,
        });
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    } else {
        print_steps(transcript);
        eprintln!("\nerror: {step} failed: {text}");
        if let Some(h) = hint {
            eprintln!("hint: {h}");
        } else if let Some(c) = diagnosis.causes.first() {
            eprintln!("likely: {} ({})", c.id, c.title);
        }
    }
    crate::exit::could_not_run()
}

/// Prints the steps of an IMAP or POP3 check.
pub(crate) fn print_line_steps(
    label: &str,
    server: &str,
    mechanism: &str,
    steps: &[exgate_mail::imap::ImapStep],
) {
    println!("{label} {server} ({mechanism})");
    for s in steps {
        let what = s
            .response
            .clone()
            .or_else(|| s.error.clone())
            .unwrap_or_default();
        println!(
            "  {} {:<12} {:>5} ms  {what}",
            if s.ok { "ok  " } else { "FAIL" },
            s.name,
            s.ms
        );
    }
}

/// Reports an IMAP or POP3 check: success (`works` after the steps), no answer (exit 2), or
/// the refusal ranked (exit 1). `answer` turns the refusing line into the text diagnosed
/// (IMAP drops the client's tag).
pub(crate) fn report_line_check<T: serde::Serialize>(
    t: &T,
    failure: Option<&exgate_mail::imap::ImapStep>,
    answer: impl Fn(&str) -> String,
    works: &str,
    attempted: &Attempted<'_>,
    json: bool,
    print_steps: fn(&T),
) -> std::process::ExitCode {
    let Some(failure) = failure else {
        if json {
            let out = serde_json::json!({ "ok": true, "transcript": t });
            println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
        } else {
            print_steps(t);
            println!("\n{works}");
        }
        return crate::exit::ok();
    };
    let Some(response) = &failure.response else {
        let text = failure
            .error
            .clone()
            .unwrap_or_else(|| "no answer".to_owned());
        return report_unreachable(&failure.name, &text, t, json, print_steps);
    };
    report_refusal(
        &failure.name,
        &answer(response),
        Some(attempted),
        Some(t),
        json,
        print_steps,
    )
}
