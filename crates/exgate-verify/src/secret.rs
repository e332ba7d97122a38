//! A secret value read from a project file: a password, client secret or refresh token.
//!
//! The value is held in [`secrecy::SecretString`]; `Debug` and `Display` print a fixed placeholder,
//! and serialising a [`Secret`] is impossible by construction (it implements no `Serialize`).

use secrecy::{ExposeSecret, SecretString};

/// A redacting wrapper for a secret string. Only [`Secret::expose`] reveals the value.
#[derive(Clone)]
pub struct Secret(SecretString);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(SecretString::from(value.into()))
    }

    /// The clear value, for handing to an authentication flow. Never log it.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret([REDACTED])")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[REDACTED]")
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.expose() == other.expose()
    }
}

impl Eq for Secret {}
