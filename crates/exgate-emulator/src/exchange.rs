//! Mounting the Exchange plane (`exgate-emulator-exchange`: EWS, Graph mail, Autodiscover) next
//! to the Entra ID plane when a scenario has an `[exchange]` section.
//!
//! The identity side is offered to the Exchange plane as a [`Directory`] over the scenario, the
//! emulator's signing key as its [`TokenVerifier`], and on-premises servers' service principal
//! names flow back into the tenants as hybrid Exchange resources.

use std::sync::Arc;

use axum::Router;
use exgate_emulator_exchange::{
    ConfigError, Directory, ExchangeConfig, ExchangeState, PasswordCheck, SecretString,
    ServedScheme, TenantInfo, TokenVerifier,
};

use crate::scenario::{Scenario, Tenant, normalize_resource};
use crate::tokens::SigningKey;

/// The scenario's tenants and users as the Exchange plane sees them.
#[derive(Clone)]
pub struct ScenarioDirectory {
    tenants: Arc<Vec<Tenant>>,
}

impl std::fmt::Debug for ScenarioDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScenarioDirectory")
            .field("tenants", &self.tenants.len())
            .finish()
    }
}

impl ScenarioDirectory {
    /// A directory over these tenants.
    pub fn new(tenants: Vec<Tenant>) -> Self {
        ScenarioDirectory {
            tenants: Arc::new(tenants),
        }
    }
}

impl Directory for ScenarioDirectory {
    fn tenant(&self, id_or_domain: &str) -> Option<TenantInfo> {
        let key = id_or_domain.trim().to_ascii_lowercase();
        self.tenants
            .iter()
            .find(|t| t.id.to_string() == key || t.domains.contains(&key))
            .map(|t| TenantInfo {
                id: t.id.to_string(),
                domains: t.domains.clone(),
                basic_auth: t.basic_auth,
            })
    }

    fn windows_password(&self, upn: &str) -> Option<SecretString> {
        let user = self
            .tenants
            .iter()
            .find_map(|t| t.user(upn).filter(|u| u.exists))?;
        if user.federated || user.password.expose().is_empty() {
            return None;
        }
        Some(SecretString::from(user.password.expose().to_owned()))
    }

    fn check_password(&self, upn: &str, password: &str) -> PasswordCheck {
        let Some((tenant, user)) = self
            .tenants
            .iter()
            .find_map(|t| t.user(upn).filter(|u| u.exists).map(|u| (t, u)))
        else {
            return PasswordCheck::UnknownUser;
        };
        if user.disabled {
            return PasswordCheck::Disabled;
        }
        if user.locked {
            return PasswordCheck::Locked;
        }
        if user.federated || user.password.expose().is_empty() || !user.password.matches(password) {
            return PasswordCheck::WrongPassword;
        }
        if user.password_expired {
            return PasswordCheck::PasswordExpired;
        }
        if user.mfa_required || user.mfa_registration_pending || tenant.security_defaults {
            return PasswordCheck::MfaRequired;
        }
        PasswordCheck::Ok
    }
}

/// Parses and validates the `[exchange]` section against the scenario's tenants.
pub(crate) fn config(
    table: &toml::Table,
    tenants: &[Tenant],
) -> Result<ExchangeConfig, ConfigError> {
    let text = toml::to_string(table).map_err(|e| ConfigError::Parse(e.to_string()))?;
    let config = ExchangeConfig::from_toml_str(&text)?;
    config.validate(&ScenarioDirectory::new(tenants.to_vec()))?;
    Ok(config)
}

/// Builds the Exchange plane for `scenario` (if it has an `[exchange]` section) and registers
/// on-premises servers' SPNs as hybrid Exchange resources of their tenants.
pub(crate) fn plane(
    scenario: &mut Scenario,
    key: &SigningKey,
    base_url: &str,
    tls: bool,
) -> Result<Option<(Router, ExchangeState)>, ConfigError> {
    let Some(table) = &scenario.exchange else {
        return Ok(None);
    };
    let config = config(table, &scenario.tenants)?;
    let directory = ScenarioDirectory::new(scenario.tenants.clone());
    for server in &config.servers {
        let Some(info) = directory.tenant(&server.tenant) else {
            continue;
        };
        if let Some(t) = scenario
            .tenants
            .iter_mut()
            .find(|t| t.id.to_string() == info.id)
        {
            for spn in &server.spns {
                let n = normalize_resource(spn);
                if !t.hybrid_exchange_urls.contains(&n) {
                    t.hybrid_exchange_urls.push(n);
                }
            }
        }
    }
    let verifier = TokenVerifier::new(vec![(key.kid().to_string(), key.decoding_key().clone())])
        .with_authority(base_url);
    let state = ExchangeState::new(config, Arc::new(directory), verifier)?;
    let scheme = if tls {
        ServedScheme::Https
    } else {
        ServedScheme::Http
    };
    let router = exgate_emulator_exchange::router(state.clone()).layer(axum::Extension(scheme));
    Ok(Some((router, state)))
}
