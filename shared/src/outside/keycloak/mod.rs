//! The Keycloak client: OIDC flows (password, refresh, client credentials, logout, JWKS) and the
//! admin API, following `shared/keycloak-contract.md` exactly.
//!
//! Own types rather than the `keycloak` crate: that crate generates every admin representation of
//! one server version (a large compile for the ~10 fields used here), and serializing a
//! representation with fields the running server does not know is a 400 (contract §0), so the
//! request bodies here carry only what we set. Responses are read leniently (unknown fields
//! ignored), so a newer Keycloak keeps working.

mod admin;
mod client;
mod credentials;
mod error;
mod jwt;
mod tokens;
mod types;

pub use client::{KeycloakClient, RetryPolicy};
pub use credentials::{ClientCredentials, ClientSecret};
pub use error::{classify, Endpoint, ExistsField, KeycloakError};
pub use jwt::unverified_claims;
pub use types::*;
