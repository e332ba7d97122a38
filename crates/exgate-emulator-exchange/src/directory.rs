//! The identity side as the Exchange plane sees it: tenants and Basic-auth password checks.

use std::collections::HashMap;

use secrecy::{ExposeSecret, SecretString};

/// What the Exchange plane needs to know about a tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantInfo {
    /// The tenant id (a GUID, lower case).
    pub id: String,
    /// Verified domains of the tenant (lower case), e.g. `contoso.com`.
    pub domains: Vec<String>,
    /// Whether Basic authentication is allowed for Exchange Online in this tenant.
    pub basic_auth: bool,
}

/// Outcome of a Basic-auth password check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordCheck {
    /// The password is right and nothing blocks a password sign-in.
    Ok,
    /// The password is wrong.
    WrongPassword,
    /// No such user.
    UnknownUser,
    /// The account is disabled.
    Disabled,
    /// The account is locked out.
    Locked,
    /// The password is right, but the account needs a second factor: Basic cannot give one.
    MfaRequired,
    /// The password has expired.
    PasswordExpired,
}

/// What the Exchange plane needs to know about the identity side.
pub trait Directory: Send + Sync + 'static {
    /// Tenant by GUID or verified domain: its GUID, domains, whether Basic auth is enabled.
    fn tenant(&self, id_or_domain: &str) -> Option<TenantInfo>;
    /// Basic-auth password check for a user (UPN).
    fn check_password(&self, upn: &str, password: &str) -> PasswordCheck;
    /// The password of a user (UPN) for Windows (NTLM) authentication, which recomputes the
    /// client's proof from it; `None` when the user is unknown or has no password. The sign-in
    /// itself is then judged by [`Directory::check_password`], as for Basic. Without an
    /// implementation NTLM never succeeds.
    fn windows_password(&self, upn: &str) -> Option<SecretString> {
        let _ = upn;
        None
    }
}

/// A user of [`InMemoryDirectory`].
#[derive(Clone)]
struct MemUser {
    password: SecretString,
    state: PasswordCheck,
}

/// A simple in-memory [`Directory`], used by tests, benchmarks and the example server.
#[derive(Default, Clone)]
pub struct InMemoryDirectory {
    tenants: Vec<TenantInfo>,
    users: HashMap<String, MemUser>,
}

impl std::fmt::Debug for InMemoryDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InMemoryDirectory")
            .field("tenants", &self.tenants)
            .field("users", &self.users.len())
            .finish()
    }
}

impl InMemoryDirectory {
    /// An empty directory.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a tenant.
    pub fn with_tenant(mut self, id: &str, domains: &[&str], basic_auth: bool) -> Self {
        self.tenants.push(TenantInfo {
            id: id.to_ascii_lowercase(),
            domains: domains.iter().map(|d| d.to_ascii_lowercase()).collect(),
            basic_auth,
        });
        self
    }

    /// Adds a user whose password sign-in ends in `state` when the password is right
    /// (`PasswordCheck::Ok` for a normal user).
    pub fn with_user(mut self, upn: &str, password: &str, state: PasswordCheck) -> Self {
        self.users.insert(
            upn.to_ascii_lowercase(),
            MemUser {
                password: SecretString::from(password.to_owned()),
                state,
            },
        );
        self
    }
}

impl Directory for InMemoryDirectory {
    fn tenant(&self, id_or_domain: &str) -> Option<TenantInfo> {
        let key = id_or_domain.to_ascii_lowercase();
        self.tenants
            .iter()
            .find(|t| t.id == key || t.domains.contains(&key))
            .cloned()
    }

    fn windows_password(&self, upn: &str) -> Option<SecretString> {
        self.users
            .get(&upn.to_ascii_lowercase())
            .map(|u| u.password.clone())
    }

    fn check_password(&self, upn: &str, password: &str) -> PasswordCheck {
        let Some(user) = self.users.get(&upn.to_ascii_lowercase()) else {
            return PasswordCheck::UnknownUser;
        };
        match user.state {
            PasswordCheck::Disabled | PasswordCheck::Locked => user.state,
            _ if user.password.expose_secret() != password => PasswordCheck::WrongPassword,
            other => other,
        }
    }
}
