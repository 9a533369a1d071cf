//! The OIDC side of a realm: token endpoint (password, client_credentials, refresh_token),
//! logout, introspection, userinfo, JWKS, discovery and the public realm document (contract §1–§3).

mod client_auth;
mod endpoints;
mod grants;
mod tokens_in_use;

pub use client_auth::{authenticate_client, ClientAuthError};
pub use endpoints::router;
pub use tokens_in_use::active_access_token;
