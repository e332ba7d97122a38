//! Flag groups shared by the commands: one flag, one name, one help text everywhere.

use std::path::PathBuf;

use anyhow::Context as _;
use exgate_auth::AuthSettings;

/// TLS trust: every command that connects to a server takes `--ca-cert`.
#[derive(Debug, Clone, Default, clap::Args)]
pub(crate) struct TrustArgs {
    /// Extra trusted root CA (PEM), e.g. the emulator's (`--ca-pem` is an old name).
    #[arg(long = "ca-cert", alias = "ca-pem", value_name = "FILE")]
    pub(crate) ca_cert: Option<PathBuf>,
}

impl TrustArgs {
    /// The CA's PEM when one was given; a file that cannot be read is an error naming the flag.
    pub(crate) fn pem(&self) -> anyhow::Result<Option<Vec<u8>>> {
        self.ca_cert
            .as_ref()
            .map(|p| {
                std::fs::read(p).with_context(|| format!("cannot read --ca-cert {}", p.display()))
            })
            .transpose()
    }
}

/// Output: every command that reports takes `--json`, with one meaning everywhere.
#[derive(Debug, Clone, Copy, Default, clap::Args)]
pub(crate) struct JsonArgs {
    /// Print the result as JSON on stdout (the exit code is the same).
    #[arg(long)]
    pub(crate) json: bool,
}

/// Output of the reports that also have a page (verify, hma check, demo): `--json` and
/// `--html FILE`.
#[derive(Debug, Clone, Default, clap::Args)]
pub(crate) struct ReportArgs {
    /// Print the result as JSON on stdout (the exit code is the same).
    #[arg(long)]
    pub(crate) json: bool,
    /// Also write the report as a self-contained HTML page to FILE.
    #[arg(long, value_name = "FILE")]
    pub(crate) html: Option<PathBuf>,
}

/// The app's credential: every command that gets a token takes these flags, with the Azure SDK
/// environment variables read first and `--profile` next.
#[derive(Debug, Clone, Default, clap::Args)]
pub(crate) struct AuthArgs {
    /// Credential settings file (TOML, see docs/auth.md).
    #[arg(long, value_name = "FILE")]
    pub(crate) profile: Option<PathBuf>,
    /// Tenant GUID or verified domain.
    #[arg(long)]
    pub(crate) tenant: Option<String>,
    /// Application (client) id.
    #[arg(long)]
    pub(crate) client_id: Option<String>,
    /// Environment variable holding the client secret.
    #[arg(long, value_name = "VAR")]
    pub(crate) client_secret_env: Option<String>,
    /// Certificate: PEM (key in the same file or in --key) or PFX.
    #[arg(long, value_name = "FILE")]
    pub(crate) cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or encrypted PKCS#8), when --cert holds only the
    /// certificate.
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub(crate) key: Option<PathBuf>,
    /// Environment variable holding the PFX password or PEM passphrase.
    #[arg(long, value_name = "VAR")]
    pub(crate) cert_password_env: Option<String>,
    /// Authority host (sovereign cloud, emulator).
    #[arg(long, value_name = "URL")]
    pub(crate) authority_host: Option<String>,
}

impl AuthArgs {
    /// These flags as settings (nothing else set).
    pub(crate) fn flags(&self) -> AuthSettings {
        AuthSettings {
            tenant: self.tenant.clone(),
            client_id: self.client_id.clone(),
            authority_host: self.authority_host.clone(),
            client_secret_env: self.client_secret_env.clone(),
            certificate_path: self.cert.clone(),
            key_path: self.key.clone(),
            certificate_password_env: self.cert_password_env.clone(),
            ..AuthSettings::default()
        }
    }

    /// The Azure SDK variables, then `--profile`, then `extra` (these flags and any other
    /// settings of the command), each overriding the one before.
    pub(crate) fn settings_with(&self, extra: AuthSettings) -> anyhow::Result<AuthSettings> {
        let mut settings = AuthSettings::from_env();
        if let Some(p) = &self.profile {
            settings = settings.merge(AuthSettings::from_file(p)?);
        }
        Ok(settings.merge(extra.from_flags()))
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    /// Every `--ca-cert` of every command, with its help text.
    fn trust_flags(cmd: &clap::Command, path: &str, out: &mut Vec<(String, String)>) {
        for a in cmd.get_arguments() {
            // A CA to trust, under any of the names such a flag goes by (`--ca-out`, where the
            // emulator writes its own CA, is not one).
            if let Some(long) = a.get_long()
                && matches!(
                    long,
                    "ca-cert" | "ca-pem" | "ca-file" | "cacert" | "ca" | "root-ca" | "extra-ca"
                )
            {
                out.push((
                    format!("{path} --{long}"),
                    a.get_help().map(|h| h.to_string()).unwrap_or_default(),
                ));
            }
        }
        for sub in cmd.get_subcommands() {
            trust_flags(sub, &format!("{path} {}", sub.get_name()), out);
        }
    }

    #[test]
    fn one_trust_flag_with_one_name_and_one_help_everywhere() {
        let mut flags = Vec::new();
        trust_flags(&crate::Cli::command(), "exgate", &mut flags);
        assert!(flags.len() >= 6, "{flags:?}");
        let want = &flags[0].1;
        for (path, help) in &flags {
            assert!(
                path.ends_with("--ca-cert"),
                "{path}: the flag is --ca-cert everywhere"
            );
            assert_eq!(help, want, "{path}: one help text for one flag");
        }
    }

    /// Every flag of `names` across all commands, with its help text.
    fn flags_named(
        cmd: &clap::Command,
        path: &str,
        names: &[&str],
        out: &mut Vec<(String, String)>,
    ) {
        for a in cmd.get_arguments() {
            if let Some(long) = a.get_long()
                && names.contains(&long)
            {
                out.push((
                    format!("{path} --{long}"),
                    a.get_help().map(|h| h.to_string()).unwrap_or_default(),
                ));
            }
        }
        for sub in cmd.get_subcommands() {
            flags_named(sub, &format!("{path} {}", sub.get_name()), names, out);
        }
    }

    #[test]
    fn the_credential_flags_have_one_help_everywhere() {
        const AUTH: &[&str] = &[
            "profile",
            "client-secret-env",
            "cert",
            "key",
            "cert-password-env",
        ];
        let mut flags = Vec::new();
        flags_named(&crate::Cli::command(), "exgate", AUTH, &mut flags);
        for name in AUTH {
            let of: Vec<&(String, String)> = flags
                .iter()
                .filter(|(p, _)| p.ends_with(&format!(" --{name}")))
                .collect();
            assert!(of.len() >= 3, "--{name}: {of:?}");
            assert!(of.iter().all(|(_, h)| *h == of[0].1), "--{name}: {of:?}");
        }
    }

    /// `--json` and `--html` are the output group's flags everywhere: one help each, and
    /// `--html` always takes a FILE.
    #[test]
    fn the_output_flags_are_one_group_everywhere() {
        let mut flags = Vec::new();
        flags_named(
            &crate::Cli::command(),
            "exgate",
            &["json", "html"],
            &mut flags,
        );
        for (name, at_least) in [("json", 14), ("html", 3)] {
            let of: Vec<&(String, String)> = flags
                .iter()
                .filter(|(p, _)| p.ends_with(&format!(" --{name}")))
                .collect();
            assert!(of.len() >= at_least, "--{name}: {of:?}");
            assert!(of.iter().all(|(_, h)| *h == of[0].1), "--{name}: {of:?}");
        }
        fn html_takes_a_file(cmd: &clap::Command) {
            for a in cmd.get_arguments() {
                if a.get_long() == Some("html") {
                    let names: Vec<String> = a
                        .get_value_names()
                        .unwrap_or_default()
                        .iter()
                        .map(|n| n.to_string())
                        .collect();
                    assert_eq!(names, ["FILE"], "{}", cmd.get_name());
                }
            }
            cmd.get_subcommands().for_each(html_takes_a_file);
        }
        html_takes_a_file(&crate::Cli::command());
    }

    #[test]
    fn an_unreadable_ca_file_names_the_flag() {
        let args = super::TrustArgs {
            ca_cert: Some("/nonexistent/ca.pem".into()),
        };
        let e = format!("{:#}", args.pem().unwrap_err());
        assert!(e.contains("--ca-cert /nonexistent/ca.pem"), "{e}");
    }
}
