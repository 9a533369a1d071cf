//! What a client does with tokens it holds: introspection, userinfo, logout and revocation,
//! and the check that an access token is active right now.

use axum::http::Method;
use axum::response::Response;
use serde_json::{json, Map, Value};

use super::client_auth::{authenticate_client, client_auth_response, form_value, has_duplicates};
use super::grants::check_refresh_token;
use crate::emulator::Emulator;
use crate::http::{empty, json_response, oauth_error, ok_json, with_header, Req};
use crate::realm::Realm;

/// Claims of an access token that is valid right now: signature, expiry, issuer, live session,
/// existing enabled user, not stale. Used by introspection, userinfo and the admin API.
pub fn active_access_token(emu: &Emulator, realm: &Realm, token: &str, iss: &str) -> Option<Value> {
    let claims = emu.keys.verify_rs256(token)?;
    if claims["typ"].as_str() != Some("Bearer")
        || claims["iss"].as_str() != Some(iss)
        || claims["exp"].as_i64().unwrap_or(0) < realm.now_s()
    {
        return None;
    }
    let user = realm.user(claims["sub"].as_str()?)?;
    if !user.enabled || claims["iat"].as_i64().unwrap_or(0) < user.not_before {
        return None;
    }
    if let Some(sid) = claims.get("sid").and_then(Value::as_str) {
        let s = realm.sessions.get(sid)?;
        let now = realm.now_ms();
        if now > s.last_access_ms + realm.settings.sso_idle * 1000
            || now > s.start_ms + realm.settings.sso_max * 1000
        {
            return None;
        }
    }
    Some(claims)
}

pub(super) fn introspect(emu: &Emulator, realm: &mut Realm, req: &Req, iss: &str) -> Response {
    let form = req.form();
    let client = match authenticate_client(realm, req, &form) {
        Ok(c) => c,
        Err(_) => return oauth_error(401, "invalid_request", Some("Authentication failed.")),
    };
    if client.public {
        return oauth_error(403, "invalid_request", Some("Client not allowed."));
    }
    if has_duplicates(&form) {
        return oauth_error(400, "invalid_request", Some("duplicated parameter"));
    }
    let Some(token) = form_value(&form, "token") else {
        return oauth_error(400, "invalid_request", Some("Token not provided."));
    };
    match form_value(&form, "token_type_hint") {
        None | Some("access_token" | "refresh_token") => {}
        Some(other) => {
            return oauth_error(
                400,
                "invalid_request",
                Some(&format!("Unsupported token type [{other}].")),
            )
        }
    }
    let claims = active_access_token(emu, realm, token, iss).or_else(|| {
        let c = emu.keys.verify_hs512(token)?;
        let alive = c["exp"].as_i64().unwrap_or(0) >= realm.now_s()
            && c["iss"].as_str() == Some(iss)
            && realm.sessions.contains_key(c["sid"].as_str()?)
            && realm
                .user(c["sub"].as_str()?)
                .is_some_and(|u| u.enabled && c["iat"].as_i64().unwrap_or(0) >= u.not_before);
        alive.then_some(c)
    });
    let Some(Value::Object(mut claims)) = claims else {
        return ok_json(&json!({"active": false}));
    };
    let username = claims
        .get("preferred_username")
        .cloned()
        .or_else(|| {
            claims
                .get("sub")
                .and_then(Value::as_str)
                .and_then(|s| realm.user(s))
                .map(|u| json!(u.username))
        })
        .unwrap_or(Value::Null);
    let typ = claims.get("typ").cloned().unwrap_or(json!("Bearer"));
    claims.insert(
        "client_id".into(),
        claims.get("azp").cloned().unwrap_or(Value::Null),
    );
    claims.insert("username".into(), username);
    claims.insert("token_type".into(), typ);
    claims.insert("active".into(), json!(true));
    if claims.get("scope").and_then(Value::as_str) == Some("") {
        claims.remove("scope");
    }
    ok_json(&Value::Object(claims))
}

pub(super) fn logout(emu: &Emulator, realm: &mut Realm, req: &Req, iss: &str) -> Response {
    let form = if req.method == Method::POST && req.is_form() {
        req.form()
    } else {
        Vec::new()
    };
    if form_value(&form, "refresh_token").is_none() {
        // No refresh_token: browser (RP-initiated) logout (contract §11).
        return crate::standard_flow::end_session(emu, realm, req, iss);
    }
    let client = match authenticate_client(realm, req, &form) {
        Ok(c) => c,
        Err(e) => return client_auth_response(e, &realm.name),
    };
    let token = form_value(&form, "refresh_token").unwrap_or("");
    let claims = match check_refresh_token(emu, realm, token, iss, &client, false) {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    if let Some(sid) = claims["sid"].as_str() {
        if let Some(session) = realm.log_out_session(sid, iss) {
            realm.login_event(
                "LOGOUT",
                Some(&client.client_id),
                Some(&session.user_id),
                Some(sid),
                &req.remote_ip,
                None,
                json!({}),
            );
        }
    }
    empty(204)
}

fn userinfo_error(code: u16, realm: &str, error: Option<(&str, &str)>) -> Response {
    let header = match error {
        Some((e, d)) => {
            format!("Bearer realm=\"{realm}\", error=\"{e}\", error_description=\"{d}\"")
        }
        None => format!("Bearer realm=\"{realm}\""),
    };
    let mut resp = with_header(empty(code), "www-authenticate", &header);
    resp.headers_mut().insert(
        "content-type",
        axum::http::HeaderValue::from_static("text/plain"),
    );
    resp
}

pub(super) fn userinfo(emu: &Emulator, realm: &mut Realm, req: &Req, iss: &str) -> Response {
    let bearer = req
        .header("authorization")
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::to_owned);
    let form_token = if req.method == Method::POST && req.is_form() {
        form_value(&req.form(), "access_token").map(str::to_owned)
    } else {
        None
    };
    let token = match (bearer, form_token) {
        (Some(_), Some(_)) => return oauth_error(400, "invalid_request", None),
        (Some(t), None) | (None, Some(t)) => t,
        (None, None) => return userinfo_error(401, &realm.name, None),
    };
    let Some(claims) = active_access_token(emu, realm, &token, iss) else {
        return userinfo_error(
            401,
            &realm.name,
            Some(("invalid_token", "Token verification failed")),
        );
    };
    let scopes = claims["scope"].as_str().unwrap_or("");
    if !scopes.split_whitespace().any(|s| s == "openid") {
        return userinfo_error(
            403,
            &realm.name,
            Some(("insufficient_scope", "Missing openid scope")),
        );
    }
    let mut out = Map::new();
    for k in [
        "sub",
        "email_verified",
        "name",
        "preferred_username",
        "given_name",
        "family_name",
        "email",
    ] {
        if let Some(v) = claims.get(k) {
            out.insert(k.into(), v.clone());
        }
    }
    json_response(200, &Value::Object(out))
}

pub(super) fn revoke(emu: &Emulator, realm: &mut Realm, req: &Req, iss: &str) -> Response {
    let form = req.form();
    let client = match authenticate_client(realm, req, &form) {
        Ok(c) => c,
        Err(e) => return client_auth_response(e, &realm.name),
    };
    let Some(token) = form_value(&form, "token") else {
        return oauth_error(400, "invalid_request", Some("Token not provided"));
    };
    match check_refresh_token(emu, realm, token, iss, &client, true) {
        Ok(claims) => {
            if let Some(sid) = claims["sid"].as_str() {
                realm.end_session(sid);
            }
            empty(200)
        }
        Err(_) if active_access_token(emu, realm, token, iss).is_some() => empty(200),
        Err(_) => ok_json(&json!({"error": "invalid_token", "error_description": "Invalid token"})),
    }
}
