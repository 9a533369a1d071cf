//! The account REST API a user calls with their own token (contract §2.4): only
//! `DELETE /realms/{realm}/account/sessions/{id}`, which ends one of the caller's own sessions.

use std::sync::Arc;

use axum::response::Response;
use axum::routing::delete;
use axum::Router;
use serde_json::Value;

use crate::emulator::Emulator;
use crate::endpoint::issuer;
use crate::http::{empty, forbidden, oauth_error, unauthorized, Call};
use crate::oidc::active_access_token;

pub fn router() -> Router<Arc<Emulator>> {
    Router::new()
        .route("/account/sessions/{sid}", delete(end_own_session))
        .method_not_allowed_fallback(|| async { crate::http::method_not_allowed() })
}

/// A valid access token whose audience includes `account` (401 otherwise), with the `account`
/// client's `manage-account` role (403 otherwise). A session of another user, or none, is a no-op:
/// Keycloak looks the session up among the caller's own.
async fn end_own_session(c: Call) -> Response {
    let name = c.param("realm");
    let Some(entry) = c.emu.realm(name) else {
        return oauth_error(404, "Realm does not exist", None);
    };
    let iss = issuer(&c.req, name);
    let mut realm = entry.realm.write();
    let Some(token) = c
        .req
        .header("authorization")
        .and_then(|h| h.strip_prefix("Bearer "))
    else {
        return unauthorized();
    };
    let Some(claims) = active_access_token(&c.emu, &realm, token.trim(), &iss) else {
        return unauthorized();
    };
    let has_account_audience = match &claims["aud"] {
        Value::String(a) => a == "account",
        Value::Array(list) => list.iter().any(|a| a == "account"),
        _ => false,
    };
    if !has_account_audience {
        return unauthorized();
    }
    let may_manage = claims
        .pointer("/resource_access/account/roles")
        .and_then(Value::as_array)
        .is_some_and(|roles| roles.iter().any(|r| r == "manage-account"));
    if !may_manage {
        return forbidden();
    }
    let caller = claims["sub"].as_str().unwrap_or_default();
    let sid = c.param("sid");
    let own = realm.sessions.get(sid).is_some_and(|s| s.user_id == caller);
    if own {
        realm.end_session(sid);
    }
    empty(204)
}
