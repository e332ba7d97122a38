//! The sign-in check: after a mail server refuses a password, ask Entra ID to sign the same
//! account in with the same password. Exchange answers a wrong password, MFA, a locked or
//! disabled account and Basic being off alike; Entra ID names which it is.

use secrecy::SecretString;

use crate::authority::{Authority, EndpointVersion};
use crate::client::{ClientAuth, HttpOptions};
use crate::error::{AuthError, EntraError};
use crate::provider::{Credential, ProviderConfig, TokenProvider};
use crate::token::TokenRequest;

/// The public client the check signs in with: Microsoft's Azure CLI, present in every tenant and
/// allowed the password grant.
pub const SIGNIN_CHECK_CLIENT_ID: &str = "04b07795-8ddb-461a-bbee-02f9e1bf7b46";

/// Entra ID errors that are only given once the password has been verified: a second factor or
/// its registration (50072, 50074, 50076, 50079, 50158), Conditional Access and device state
/// (53000-53004, 50097), and the consent or resource of the check's own app (65001, 65002,
/// 65004, 500011). Meanings from
/// <https://learn.microsoft.com/entra/identity-platform/reference-error-codes>.
pub const AFTER_PASSWORD_CODES: &[u32] = &[
    50072, 50074, 50076, 50079, 50097, 50158, 53000, 53001, 53002, 53003, 53004, 65001, 65002,
    65004, 500011,
];

/// Refusals of the check's own app (its consent, its resource), after the password.
pub const CHECK_APP_CODES: &[u32] = &[65001, 65002, 65004, 500011];

/// What Entra ID said of the password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SigninCheck {
    /// The password is right: Entra ID issued a token, or refused only after verifying the
    /// password (`then`: MFA, Conditional Access, consent of the check's app;
    /// [`AFTER_PASSWORD_CODES`]). The mail server refused it for another reason (Basic or SMTP
    /// AUTH off, a protocol disabled for the mailbox).
    Accepted {
        /// What Entra ID asked for after the password, when it did not issue a token.
        then: Option<Box<EntraError>>,
    },
    /// Entra ID refused the password or the account (wrong password, locked, disabled, expired,
    /// unknown user), and said why.
    Refused(Box<EntraError>),
}

impl SigninCheck {
    /// Classifies Entra ID's refusal of the check: after the password, or of it.
    pub fn from_refusal(body: Box<EntraError>) -> SigninCheck {
        if body
            .error_codes
            .iter()
            .any(|c| AFTER_PASSWORD_CODES.contains(c))
        {
            SigninCheck::Accepted { then: Some(body) }
        } else {
            SigninCheck::Refused(body)
        }
    }

    /// Entra ID's answer as evidence of why the mail server refused: a refusal of the password or
    /// the account, or what was asked after it (MFA, Conditional Access). `None` when the
    /// password was accepted outright, or only the check's own app was refused (consent,
    /// resource: [`CHECK_APP_CODES`]), which says nothing of the mail server.
    pub fn evidence(&self) -> Option<&EntraError> {
        match self {
            SigninCheck::Refused(e) => Some(e),
            SigninCheck::Accepted { then: Some(e) }
                if !e.error_codes.iter().all(|c| CHECK_APP_CODES.contains(c)) =>
            {
                Some(e)
            }
            SigninCheck::Accepted { .. } => None,
        }
    }

    /// Whether Entra ID verified the password.
    pub fn password_accepted(&self) -> bool {
        matches!(self, SigninCheck::Accepted { .. })
    }

    /// One line for people: what the check found.
    pub fn summary(&self) -> String {
        let codes = |e: &EntraError| {
            e.error_codes
                .iter()
                .map(|c| format!("AADSTS{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        match self {
            SigninCheck::Accepted { then: None } => {
                "Entra ID accepted the same user name and password".to_owned()
            }
            SigninCheck::Accepted { then: Some(e) } => format!(
                "Entra ID verified the same user name and password (then answered {})",
                codes(e)
            ),
            SigninCheck::Refused(e) => format!("Entra ID refused it: {}", codes(e)),
        }
    }
}

/// Signs `username` in with `password` (ROPC, [`SIGNIN_CHECK_CLIENT_ID`], one attempt, no
/// retry) at `host` for the user's tenant (`tenant`, or the domain of the user name). `None`
/// when the check itself could not be made (network, configuration).
pub async fn signin_check(
    host: &str,
    tenant: Option<&str>,
    username: &str,
    password: &SecretString,
    http: HttpOptions,
) -> Option<SigninCheck> {
    let tenant = match tenant {
        Some(t) => t.to_owned(),
        None => username.rsplit_once('@')?.1.to_owned(),
    };
    let authority = Authority::new(host, &tenant, EndpointVersion::V2).ok()?;
    let mut config = ProviderConfig::new(
        authority,
        SIGNIN_CHECK_CLIENT_ID.to_owned(),
        Credential::Password {
            client: ClientAuth::Public,
            username: username.to_owned(),
            password: password.clone(),
        },
    );
    config.http = http;
    config.retry.max_attempts = 1;
    let provider = TokenProvider::new(config).ok()?;
    let request =
        TokenRequest::scopes(["https://outlook.office365.com/EWS.AccessAsUser.All".to_owned()]);
    match provider.token(&request).await {
        Ok(_) => Some(SigninCheck::Accepted { then: None }),
        Err(AuthError::Entra { body, .. }) => Some(SigninCheck::from_refusal(body)),
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(codes: &[u32]) -> Box<EntraError> {
        let text = format!(
            r#"{{"error":"invalid_grant","error_description":"AADSTS{}: x","error_codes":{:?}}}"#,
            codes[0], codes
        );
        Box::new(EntraError::parse(text.as_bytes()).expect("parses"))
    }

    #[test]
    fn refusals_after_the_password_count_as_accepted() {
        for code in [65001, 65002, 50076, 53003, 50079] {
            assert!(
                matches!(
                    SigninCheck::from_refusal(body(&[code])),
                    SigninCheck::Accepted { then: Some(_) }
                ),
                "{code}"
            );
        }
        for code in [50126, 50053, 50057, 50055, 50034, 7000218] {
            assert!(
                matches!(
                    SigninCheck::from_refusal(body(&[code])),
                    SigninCheck::Refused(_)
                ),
                "{code}"
            );
        }
    }

    #[test]
    fn only_the_mail_relevant_answer_is_evidence() {
        assert!(
            SigninCheck::from_refusal(body(&[65001]))
                .evidence()
                .is_none()
        );
        assert!(SigninCheck::Accepted { then: None }.evidence().is_none());
        let mfa = SigninCheck::from_refusal(body(&[50076]));
        assert!(mfa.password_accepted());
        assert_eq!(
            mfa.evidence().map(|e| e.error_codes.clone()),
            Some(vec![50076])
        );
        let wrong = SigninCheck::from_refusal(body(&[50126]));
        assert!(!wrong.password_accepted() && wrong.evidence().is_some());
    }

    #[test]
    fn the_summary_names_the_codes_and_never_the_password() {
        let s = SigninCheck::from_refusal(body(&[65001])).summary();
        assert!(s.contains("AADSTS65001") && s.contains("verified"), "{s}");
        let s = SigninCheck::from_refusal(body(&[50126])).summary();
        assert!(s.contains("refused") && s.contains("AADSTS50126"), "{s}");
    }
}
