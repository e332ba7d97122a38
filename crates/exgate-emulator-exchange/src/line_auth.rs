//! Sign-in on the mail protocols of an on-premises server (SMTP, IMAP, POP reached at the
//! server's own name, told apart by the TLS server name): a password (AUTH LOGIN, IMAP LOGIN,
//! POP USER/PASS) or Windows authentication (NTLM, the exchange of [MS-SMTPNTLM] for SMTP and
//! the same three messages as SASL `NTLM` for IMAP and POP), checked against the directory as
//! the server's Windows authentication on HTTP is.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use secrecy::{ExposeSecret, SecretString};

use crate::directory::PasswordCheck;
use crate::ntlm;
use crate::state::Inner;

/// Where an NTLM exchange on a line protocol stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NtlmStep {
    /// The NEGOTIATE_MESSAGE is expected next.
    Start,
    /// The CHALLENGE_MESSAGE was sent; the AUTHENTICATE_MESSAGE is expected next.
    Challenged {
        negotiate: Vec<u8>,
        challenge: Vec<u8>,
        server_challenge: [u8; 8],
    },
}

/// What one NTLM message leads to.
#[derive(Debug)]
pub(crate) enum NtlmOutcome {
    /// Send this base64 CHALLENGE_MESSAGE and wait for the client's next message.
    Challenge(NtlmStep, String),
    /// The exchange is over: the mailbox signed in, or `None` (refused).
    Done(Option<u32>),
}

/// The on-premises server a TLS server name (SNI) names, by its public host name.
pub(crate) fn server_by_name(st: &Inner, sni: Option<&str>) -> Option<usize> {
    let name = sni?.trim_end_matches('.');
    st.servers
        .iter()
        .position(|s| s.host.eq_ignore_ascii_case(name))
}

/// The mailbox `upn` signs in to on server `server`: provisioned and hosted there.
fn mailbox_on(st: &Inner, server: usize, upn: &str) -> Option<u32> {
    let i = st.find(upn)?;
    let m = st.mailbox(i)?;
    (m.provisioned && m.server == Some(server)).then_some(i)
}

/// A password sign-in (`DOMAIN\user` or a UPN) on server `server`.
pub(crate) fn password(
    st: &Inner,
    server: usize,
    user: &str,
    password: &SecretString,
) -> Option<u32> {
    let s = st.servers.get(server)?;
    crate::auth::ntlm_upns(st, s, user, "")
        .into_iter()
        .find(|upn| st.directory.check_password(upn, password.expose_secret()) == PasswordCheck::Ok)
        .and_then(|upn| mailbox_on(st, server, &upn))
}

/// One NTLM message (decoded from its base64) on server `server`.
pub(crate) fn ntlm_step(st: &Inner, server: usize, step: NtlmStep, message: &[u8]) -> NtlmOutcome {
    let Some(s) = st.servers.get(server) else {
        return NtlmOutcome::Done(None);
    };
    match (step, ntlm::message_type(message)) {
        (NtlmStep::Start, Some(1)) => {
            let Some(msg) = ntlm::parse_negotiate(message) else {
                return NtlmOutcome::Done(None);
            };
            let server_challenge = ntlm::server_challenge();
            let challenge = ntlm::challenge_message(
                msg.flags,
                server_challenge,
                &crate::auth::server_names(st, s),
                ntlm::filetime_now(),
            );
            let text = B64.encode(&challenge);
            NtlmOutcome::Challenge(
                NtlmStep::Challenged {
                    negotiate: message.to_vec(),
                    challenge,
                    server_challenge,
                },
                text,
            )
        }
        (
            NtlmStep::Challenged {
                negotiate,
                challenge,
                server_challenge,
            },
            Some(3),
        ) => {
            let Some(msg) = ntlm::parse_authenticate(message) else {
                return NtlmOutcome::Done(None);
            };
            let Some((upn, secret)) = crate::auth::ntlm_upns(st, s, &msg.user, &msg.domain)
                .into_iter()
                .find_map(|u| st.directory.windows_password(&u).map(|p| (u, p)))
            else {
                return NtlmOutcome::Done(None);
            };
            let proof = ntlm::verify(
                &msg,
                secret.expose_secret(),
                &server_challenge,
                [&negotiate, &challenge, message],
            );
            if proof.is_err()
                || st.directory.check_password(&upn, secret.expose_secret()) != PasswordCheck::Ok
            {
                return NtlmOutcome::Done(None);
            }
            NtlmOutcome::Done(mailbox_on(st, server, &upn))
        }
        _ => NtlmOutcome::Done(None),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn state() -> crate::ExchangeState {
        let cfg = crate::ExchangeConfig::from_toml_str(
            "[[servers]]\nname = \"ex01\"\ntenant = \"contoso.com\"\npublic_url = \"https://mail.contoso.com\"\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        crate::ExchangeState::new(
            cfg,
            Arc::new(crate::InMemoryDirectory::new().with_tenant(
                "11111111-2222-3333-4444-555555555555",
                &["contoso.com"],
                true,
            )),
            crate::TokenVerifier::new(Vec::new()),
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn the_server_is_found_by_its_name_without_regard_to_case() {
        let st = state();
        assert_eq!(
            server_by_name(&st.inner, Some("MAIL.contoso.com.")),
            Some(0)
        );
        assert_eq!(server_by_name(&st.inner, Some("localhost")), None);
        assert_eq!(server_by_name(&st.inner, None), None);
    }

    proptest::proptest! {
        /// Any bytes at any step of the exchange end it or ask for the next message; never a
        /// sign-in without a verified proof.
        #[test]
        fn any_ntlm_message_is_answered_without_signing_in(
            first in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
            second in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
            negotiate in proptest::prelude::any::<bool>(),
        ) {
            let st = state();
            let mut first = first;
            if negotiate {
                // A well-formed NEGOTIATE_MESSAGE header, so the second step is reached.
                let mut m = b"NTLMSSP\0".to_vec();
                m.extend_from_slice(&1u32.to_le_bytes());
                m.extend_from_slice(&0x6208_8215u32.to_le_bytes());
                m.extend_from_slice(&[0; 16]);
                first = m;
            }
            match ntlm_step(&st.inner, 0, NtlmStep::Start, &first) {
                NtlmOutcome::Challenge(next, text) => {
                    proptest::prop_assert!(!text.is_empty());
                    let done = ntlm_step(&st.inner, 0, next, &second);
                    proptest::prop_assert!(matches!(done, NtlmOutcome::Done(None)));
                }
                NtlmOutcome::Done(signed_in) => proptest::prop_assert!(signed_in.is_none()),
            }
            // An unknown server index is refused.
            proptest::prop_assert!(matches!(
                ntlm_step(&st.inner, 7, NtlmStep::Start, &first),
                NtlmOutcome::Done(None)
            ));
        }
    }
}
