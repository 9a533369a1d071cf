//! The Keycloak client: OIDC flows (password, refresh, client credentials, logout, JWKS) and the
//! admin API, following `shared/keycloak-contract.md` exactly.
//!
//! Own types rather than the `keycloak` crate: that crate generates every admin representation of
//! one server version (a large compile for the ~10 fields used here), and serializing a
//! representation with fields the running server does not know is a 400 (contract §0), so the
//! request bodies here carry only what we set. Responses are read leniently (unknown fields
//! ignored), so a newer Keycloak keeps working.

mod client;
mod error;
mod types;

pub use client::{ClientCredentials, ClientSecret, KeycloakClient, RetryPolicy};
pub use error::{classify, Endpoint, ExistsField, KeycloakError};
pub use types::*;

/// The claims of a JWT, read without checking it: only for tokens this process was just handed
/// by Keycloak itself, or to know which record to look at before the token is proven.
pub fn unverified_claims(token: &str) -> Option<serde_json::Value> {
    use base64::Engine;
    let payload = token.split('.').nth(1)?;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    serde_json::from_slice(&raw).ok()
}
