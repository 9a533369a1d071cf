//! The standard flow (authorization code) as Keycloak 26 speaks it (contract §9–§11): the
//! authorization endpoint with its HTML login page, the credential POST and the UPDATE_PASSWORD
//! required action, single-use authorization codes with PKCE, the `authorization_code` grant,
//! and RP-initiated logout at the end-session endpoint.
//!
//! Browser state lives in cookies as in Keycloak: `AUTH_SESSION_ID` names the login in
//! progress (`Logins`), `KEYCLOAK_IDENTITY` (signed, naming the SSO session) lets a second
//! authorization skip the page.

mod authorize;
mod browser;
mod code_grant;
mod end_session;
mod login_actions;
mod names;
mod pages;

pub use code_grant::code_grant;
pub use end_session::{confirm_logout, end_session};

use authorize::authorization_endpoint;
use login_actions::{authenticate_endpoint, required_action_endpoint};

use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;

use crate::emulator::Emulator;

/// Routes under `/realms/{realm}` (the end-session endpoint and the token grant are reached
/// through `oidc`, which owns those paths).
pub fn router() -> Router<Arc<Emulator>> {
    Router::new()
        .route(
            "/protocol/openid-connect/auth",
            get(authorization_endpoint).post(authorization_endpoint),
        )
        .route("/login-actions/authenticate", post(authenticate_endpoint))
        .route(
            "/login-actions/required-action",
            get(required_action_endpoint).post(required_action_endpoint),
        )
}
