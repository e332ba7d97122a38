//! `exgate token inspect [JWT|FILE|-] [--for URL]`: decodes a JWT and lints it against a target.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use exgate_diagnose::jwt::{self, Finding, LintContext, Severity, TokenClaims};
use serde_json::json;

use super::explain::now_secs;
use crate::cmd::flags::JsonArgs;
use crate::exit;

const EXAMPLES: &str = "\
Examples:
  exgate token inspect token.txt --for https://outlook.office365.com/EWS/Exchange.asmx
  exgate token inspect - --for http://mail.contoso.com/EWS/Exchange.asmx < token.txt
  exgate token inspect response.json --app-only --json

Checks: audience host and scheme against --for, roles versus scp, full_access_as_app / Mail.*
permissions, exp/nbf with 5 minutes of clock skew, tid, appidacr, ver. The signature is never
verified (Microsoft tokens cannot be verified by third parties) and the token is never printed.
Exit codes: 0 no problem found, 1 the token will be rejected for the target, 2 not a readable JWT.";

/// Decode a JWT and lint it against the URL it is meant for.
#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub(crate) struct Args {
    /// The token itself, a file holding it (a token response JSON works too), or `-` for stdin.
    pub token: Option<String>,
    /// The URL the token is sent to.
    #[arg(long = "for", value_name = "URL")]
    pub target: Option<String>,
    #[command(flatten)]
    pub output: JsonArgs,
    /// The caller runs app-only (client credentials).
    #[arg(long)]
    pub app_only: bool,
    /// The tenant id the token should come from.
    #[arg(long)]
    pub tenant: Option<String>,
    /// The mailbox the token is used for.
    #[arg(long)]
    pub mailbox: Option<String>,
    /// "Now" as Unix seconds (default: the clock).
    #[arg(long, value_name = "SECONDS")]
    pub now: Option<i64>,
}

/// Finds the first JWT-shaped word in the text.
fn find_jwt(text: &str) -> Option<&str> {
    text.split(|c: char| c.is_whitespace() || "\"',;:{}[]".contains(c))
        .find(|w| jwt::looks_like_jwt(w))
}

fn read_source(arg: Option<&str>) -> anyhow::Result<String> {
    match arg {
        Some(a) if jwt::looks_like_jwt(a) => Ok(a.to_owned()),
        Some(a) if a != "-" => {
            let p = PathBuf::from(a);
            std::fs::read_to_string(&p).with_context(|| {
                format!(
                    "cannot read {}: pass a JWT, a file holding one, or -",
                    p.display()
                )
            })
        }
        _ => {
            let mut s = String::new();
            std::io::stdin()
                .lock()
                .take(16 * 1024 * 1024)
                .read_to_string(&mut s)
                .context("cannot read standard input")?;
            Ok(s)
        }
    }
}

pub(crate) async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let source = read_source(args.token.as_deref())?;
    let token = find_jwt(&source).unwrap_or(source.trim());
    let decoded = jwt::decode(token).map_err(|e| anyhow::anyhow!("{e}"))?;
    let claims = TokenClaims::from_map(&decoded.claims);
    let ctx = LintContext {
        url: args.target.clone(),
        now: Some(args.now.unwrap_or_else(now_secs)),
        skew_secs: None,
        app_only: args.app_only.then_some(true),
        tenant: args.tenant.clone(),
        mailbox: args.mailbox.clone(),
        protocol: None,
    };
    let findings = jwt::lint(&claims, &ctx);
    if args.output.json {
        let out = json!({
            "header": decoded.header,
            "claims": decoded.claims,
            "summary": claims,
            "target": args.target,
            "findings": findings,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print_text(&decoded, &claims, &findings, args.target.as_deref());
    }
    Ok(if findings.iter().any(|f| f.severity == Severity::Error) {
        exit::found_failures()
    } else {
        exit::ok()
    })
}

fn print_text(
    decoded: &jwt::DecodedJwt,
    claims: &TokenClaims,
    findings: &[Finding],
    target: Option<&str>,
) {
    println!("Header:");
    for (k, v) in &decoded.header {
        println!("  {k}: {v}");
    }
    println!("Claims:");
    for (k, v) in &decoded.claims {
        println!("  {k}: {v}");
    }
    println!("Summary: {}", claims.summary());
    match target {
        Some(t) => println!("Checked against: {t}"),
        None => {
            println!("Checked against: no target (use --for URL to check audience and permissions)")
        }
    }
    if findings.is_empty() {
        println!("No problem found.");
        return;
    }
    for f in findings {
        let tag = match f.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        };
        match &f.cause {
            Some(c) => println!("[{tag}] {} (cause: {c})", f.message),
            None => println!("[{tag}] {}", f.message),
        }
    }
}
