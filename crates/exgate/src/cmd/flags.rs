//! Flag groups shared by the commands: one flag, one name, one help text everywhere.

use std::path::PathBuf;

use anyhow::Context as _;

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

    #[test]
    fn an_unreadable_ca_file_names_the_flag() {
        let args = super::TrustArgs {
            ca_cert: Some("/nonexistent/ca.pem".into()),
        };
        let e = format!("{:#}", args.pem().unwrap_err());
        assert!(e.contains("--ca-cert /nonexistent/ca.pem"), "{e}");
    }
}
