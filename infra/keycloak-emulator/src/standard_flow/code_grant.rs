//! The `authorization_code` grant (contract §10).

use axum::response::Response;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};

use crate::emulator::Emulator;
use crate::http::{oauth_error, Req};
use crate::login::issue_tokens;
use crate::logins::Code;
use crate::realm::{new_id, Client, Realm};

use super::browser::*;

pub fn code_grant(
    emu: &Emulator,
    realm: &mut Realm,
    req: &Req,
    iss: &str,
    client: &Client,
    form: &[(String, String)],
) -> Response {
    let grant_error = |d: &str| oauth_error(400, "invalid_grant", Some(d));
    let Some(code_param) = value(form, "code") else {
        return oauth_error(400, "invalid_request", Some("Missing parameter: code"));
    };
    // The code is consumed before any other check: a failed exchange burns it.
    let Some(code) = realm.logins.codes.remove(code_param) else {
        // A reused (or unknown) code: the client session it names is detached.
        let mut parts = code_param.split('.');
        if let (Some(_), Some(sid), Some(client_uuid)) = (parts.next(), parts.next(), parts.next())
        {
            if let Some(s) = realm.sessions.get_mut(sid) {
                s.clients.remove(client_uuid);
            }
        }
        return grant_error("Code not valid");
    };
    if realm.now_ms() > code.expires_ms {
        return grant_error("Code is expired");
    }
    let Some(user_id) = realm.live_session(&code.sid).map(|s| s.user_id.clone()) else {
        return grant_error("User session not found");
    };
    let Some(user) = realm.user(&user_id).cloned() else {
        return grant_error("User not found");
    };
    if !user.enabled {
        return grant_error("User disabled");
    }
    if value(form, "redirect_uri").map(str::to_owned) != code.redirect_uri_param {
        return grant_error("Incorrect redirect_uri");
    }
    if code.client_uuid != client.id {
        return grant_error("Auth error: Found different client_id in clientSession");
    }
    if !client.browser.standard_flow {
        return grant_error("Client not allowed to exchange code");
    }
    match (&code.challenge, value(form, "code_verifier")) {
        (Some(_), None) => return grant_error("PKCE code verifier not specified"),
        (None, Some(_)) => {
            return grant_error(
                "PKCE code verifier specified but challenge not present in authorization",
            )
        }
        (Some(_), Some(v)) if !pkce_shaped(v) => {
            return grant_error("PKCE verification failed: Invalid code verifier")
        }
        (Some((challenge, method)), Some(v)) => {
            let derived = if method == "S256" {
                s256(v)
            } else {
                v.to_owned()
            };
            if derived != *challenge {
                return grant_error("PKCE verification failed: Code mismatch");
            }
        }
        (None, None) => {}
    }
    realm.login_event(
        "CODE_TO_TOKEN",
        Some(&client.client_id),
        Some(&user.id),
        Some(&code.sid),
        &req.remote_ip,
        None,
        json!({"token_id": new_id(), "grant_type": "authorization_code", "code_id": code.sid,
               "client_auth_method": if client.public { "client-public" } else { "client-secret" }}),
    );
    let mut tokens = issue_tokens(
        emu,
        realm,
        iss,
        &user,
        client,
        Some(&code.sid),
        &code.scope,
        req,
    );
    add_id_token_claims(emu, realm, &mut tokens, &code);
    crate::http::ok_json(&tokens)
}

/// The ID token of a code exchange also carries `nonce` (if sent), `at_hash`, `auth_time` and
/// `acr` (`1` fresh login, `0` SSO reuse).
pub(super) fn add_id_token_claims(emu: &Emulator, realm: &Realm, tokens: &mut Value, code: &Code) {
    let Some(id) = tokens["id_token"].as_str() else {
        return;
    };
    let Some(mut claims) = emu.keys.verify_rs256(id) else {
        return;
    };
    let access = tokens["access_token"].as_str().unwrap_or("");
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, access.as_bytes());
    claims["at_hash"] = json!(URL_SAFE_NO_PAD.encode(&digest.as_ref()[..16]));
    if let Some(n) = &code.nonce {
        claims["nonce"] = json!(n);
    }
    if let Some(s) = realm.sessions.get(&code.sid) {
        claims["auth_time"] = json!(s.start_ms / 1000);
    }
    claims["acr"] = json!(if code.fresh { "1" } else { "0" });
    tokens["id_token"] = json!(emu.keys.sign_rs256(&claims));
}
