//! A variable that is missing or malformed, named.

use std::fmt;

#[derive(Debug, PartialEq)]
pub struct ConfigError {
    pub variable: &'static str,
    pub reason: String,
}

impl ConfigError {
    pub(crate) fn missing(variable: &'static str) -> Self {
        ConfigError {
            variable,
            reason: "is required".into(),
        }
    }

    pub(crate) fn no_client() -> Self {
        ConfigError {
            variable: "KEYCLOAK_CLIENT_ID",
            reason: "a function needs the login client, the service client \
                     (KEYCLOAK_ADMIN_CLIENT_ID), or both"
                .into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "configuration: {}: {}", self.variable, self.reason)
    }
}

impl std::error::Error for ConfigError {}
