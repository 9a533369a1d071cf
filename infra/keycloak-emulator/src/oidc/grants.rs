//! The token endpoint's grants: password, client_credentials and refresh_token.

use axum::response::Response;
use serde_json::{json, Value};

use super::client_auth::{authenticate_client, client_auth_response, form_value, has_duplicates};
use crate::emulator::Emulator;
use crate::http::{oauth_error, ok_json, Req};
use crate::login::{issue_tokens, password_matches, profile_incomplete};
use crate::realm::{Client, Realm};

pub(super) fn token(emu: &Emulator, realm: &mut Realm, req: &Req, iss: &str) -> Response {
    if !req.is_form() {
        return oauth_error(415, "HTTP 415 Unsupported Media Type", None);
    }
    if !realm.settings.enabled {
        return oauth_error(403, "access_denied", Some("Realm not enabled"));
    }
    let form = req.form();
    let grant = match form_value(&form, "grant_type") {
        None => {
            return oauth_error(
                400,
                "invalid_request",
                Some("Missing form parameter: grant_type"),
            )
        }
        Some(g @ ("password" | "client_credentials" | "refresh_token" | "authorization_code")) => {
            g.to_owned()
        }
        Some(_) => {
            return oauth_error(
                400,
                "unsupported_grant_type",
                Some("Unsupported grant_type"),
            )
        }
    };
    let client = match authenticate_client(realm, req, &form) {
        Ok(c) => c,
        Err(e) => return client_auth_response(e, &realm.name),
    };
    if has_duplicates(&form) {
        return oauth_error(400, "invalid_request", Some("duplicated parameter"));
    }
    let scope = form_value(&form, "scope").unwrap_or("").to_owned();
    match grant.as_str() {
        "password" => password_grant(emu, realm, req, iss, &client, &form, &scope),
        "client_credentials" => client_credentials_grant(emu, realm, req, iss, &client),
        "authorization_code" => {
            crate::standard_flow::code_grant(emu, realm, req, iss, &client, &form)
        }
        _ => refresh_grant(emu, realm, req, iss, &client, &form),
    }
}

fn password_grant(
    emu: &Emulator,
    realm: &mut Realm,
    req: &Req,
    iss: &str,
    client: &Client,
    form: &[(String, String)],
    scope: &str,
) -> Response {
    if !client.direct_grants {
        return oauth_error(
            400,
            "unauthorized_client",
            Some("Client not allowed for direct access grants"),
        );
    }
    let ip = req.remote_ip.clone();
    let Some(login) = form_value(form, "username") else {
        return oauth_error(401, "invalid_request", Some("Missing parameter: username"));
    };
    let details =
        json!({"auth_method": "openid-connect", "grant_type": "password", "username": login});
    // A refused login: the LOGIN_ERROR event, then Keycloak's answer.
    let refuse =
        |realm: &mut Realm, user_id: Option<&str>, event_error: &str, status: u16, text: &str| {
            realm.login_event(
                "LOGIN_ERROR",
                Some(&client.client_id),
                user_id,
                None,
                &ip,
                Some(event_error),
                details.clone(),
            );
            oauth_error(status, "invalid_grant", Some(text))
        };
    let found = realm
        .user_by_username_or_email(login)
        .filter(|u| u.service_account_client_id.is_none())
        .cloned();
    let Some(user) = found else {
        return refuse(
            realm,
            None,
            "user_not_found",
            401,
            "Invalid user credentials",
        );
    };
    let permanently_locked = user
        .attributes
        .get(crate::brute_force::PERMANENT_LOCKOUT_ATTRIBUTE)
        .is_some_and(|v| v.iter().any(|r| r == "permanentLockout"));
    if !user.enabled && permanently_locked {
        // A lockout is never disclosed: it reads as a wrong password (contract §1.3, §7.1).
        return refuse(
            realm,
            Some(&user.id),
            "user_disabled",
            401,
            "Invalid user credentials",
        );
    }
    if !user.enabled {
        return refuse(
            realm,
            Some(&user.id),
            "user_disabled",
            400,
            "Account disabled",
        );
    }
    if realm.temporarily_locked(&user.id) {
        return refuse(
            realm,
            Some(&user.id),
            "user_temporarily_disabled",
            401,
            "Invalid user credentials",
        );
    }
    if !password_matches(emu, realm, &user, form_value(form, "password"), &ip) {
        return refuse(
            realm,
            Some(&user.id),
            "invalid_user_credentials",
            401,
            "Invalid user credentials",
        );
    }
    if !user.required_actions.is_empty() || profile_incomplete(realm, &user) {
        return refuse(
            realm,
            Some(&user.id),
            "resolve_required_actions",
            400,
            "Account is not fully set up",
        );
    }
    let sid = realm.create_session(&user.id, client, &ip);
    if let Some(s) = realm.sessions.get_mut(&sid) {
        s.issuer = iss.to_owned();
    }
    realm.login_event(
        "LOGIN",
        Some(&client.client_id),
        Some(&user.id),
        Some(&sid),
        &ip,
        None,
        details,
    );
    ok_json(&issue_tokens(
        emu,
        realm,
        iss,
        &user,
        client,
        Some(&sid),
        scope,
        req,
    ))
}

fn client_credentials_grant(
    emu: &Emulator,
    realm: &mut Realm,
    req: &Req,
    iss: &str,
    client: &Client,
) -> Response {
    if client.public {
        return oauth_error(
            401,
            "unauthorized_client",
            Some("Public client not allowed to retrieve service account"),
        );
    }
    if !client.service_accounts {
        return oauth_error(
            401,
            "unauthorized_client",
            Some("Client not enabled to retrieve service account"),
        );
    }
    let Some(user) = realm.service_account_of(client).cloned() else {
        return oauth_error(
            401,
            "unauthorized_client",
            Some("Client not enabled to retrieve service account"),
        );
    };
    if !user.enabled {
        return oauth_error(
            401,
            "invalid_request",
            Some(&format!("User '{}' disabled", user.username)),
        );
    }
    realm.login_event(
        "CLIENT_LOGIN",
        Some(&client.client_id),
        Some(&user.id),
        None,
        &req.remote_ip,
        None,
        json!({"grant_type": "client_credentials", "client_auth_method": "client-secret", "username": user.username}),
    );
    ok_json(&issue_tokens(emu, realm, iss, &user, client, None, "", req))
}

fn refresh_grant(
    emu: &Emulator,
    realm: &mut Realm,
    req: &Req,
    iss: &str,
    client: &Client,
    form: &[(String, String)],
) -> Response {
    let grant_error = |d: &str| oauth_error(400, "invalid_grant", Some(d));
    let Some(token) = form_value(form, "refresh_token") else {
        return oauth_error(400, "invalid_request", Some("No refresh token"));
    };
    let claims = match check_refresh_token(emu, realm, token, iss, client, true) {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    let sid = claims["sid"].as_str().unwrap_or("").to_owned();
    let now = realm.now_ms();
    let Some(session) = realm.live_session(&sid) else {
        return grant_error("Session not active");
    };
    session.last_access_ms = now;
    let has_client = session.clients.contains_key(&client.id);
    let Some(user) = realm.user(claims["sub"].as_str().unwrap_or("")).cloned() else {
        return grant_error("Invalid refresh token");
    };
    if !user.enabled {
        return grant_error("User disabled");
    }
    if claims["iat"].as_i64().unwrap_or(0) < user.not_before {
        return grant_error("Stale token");
    }
    if !has_client {
        return grant_error("Session doesn't have required client");
    }
    let scope = claims["scope"].as_str().unwrap_or("").to_owned();
    let scope = strip_default_scopes(&scope);
    ok_json(&issue_tokens(
        emu,
        realm,
        iss,
        &user,
        client,
        Some(&sid),
        &scope,
        req,
    ))
}

/// Signature, type, issuer, expiry (unless `check_exp` is off: logout accepts expired tokens)
/// and client of a refresh token, in Keycloak's order.
pub(super) fn check_refresh_token(
    emu: &Emulator,
    realm: &Realm,
    token: &str,
    iss: &str,
    client: &Client,
    check_exp: bool,
) -> Result<Value, Response> {
    let invalid = || oauth_error(400, "invalid_grant", Some("Invalid refresh token"));
    let claims = emu.keys.verify_hs512(token).ok_or_else(invalid)?;
    if !matches!(claims["typ"].as_str(), Some("Refresh" | "Offline")) {
        return Err(invalid());
    }
    if claims["iss"].as_str() != Some(iss) {
        return Err(oauth_error(
            400,
            "invalid_grant",
            Some(&format!("Invalid token issuer. Expected '{iss}'")),
        ));
    }
    if check_exp && claims["exp"].as_i64().unwrap_or(0) < realm.now_s() {
        return Err(oauth_error(
            400,
            "invalid_grant",
            Some("Token is not active"),
        ));
    }
    if claims["azp"].as_str() != Some(client.client_id.as_str()) {
        return Err(oauth_error(
            400,
            "invalid_grant",
            Some("Invalid refresh token. Token client and authorized client don't match"),
        ));
    }
    Ok(claims)
}

/// The scopes a token carries by default are added again at issue; keep only what was asked.
fn strip_default_scopes(scope: &str) -> String {
    scope
        .split_whitespace()
        .filter(|s| !matches!(*s, "email" | "profile"))
        .collect::<Vec<_>>()
        .join(" ")
}
