//! RP-initiated logout at the end-session endpoint (contract §11).

use axum::response::Response;
use serde_json::json;

use crate::emulator::Emulator;
use crate::http::Req;
use crate::realm::Realm;

use super::browser::*;
use super::names::*;
use super::pages::*;

/// `GET|POST …/logout` without a refresh token.
pub fn end_session(emu: &Emulator, realm: &mut Realm, req: &Req, iss: &str) -> Response {
    let p = params(req);
    let hint = value(&p, "id_token_hint");
    let client_id = value(&p, "client_id");
    let redirect = value(&p, "post_logout_redirect_uri");
    let state = value(&p, "state");
    if redirect.is_some() && hint.is_none() && client_id.is_none() {
        return error_page(400, "Missing parameters: id_token_hint");
    }
    let hint_claims = match hint {
        Some(h) => match emu.keys.verify_rs256(h) {
            Some(c) if c["typ"].as_str() == Some("ID") => Some(c),
            _ => return error_page(400, "Invalid parameter: id_token_hint"),
        },
        None => None,
    };
    if let (Some(c), Some(id)) = (&hint_claims, client_id) {
        if c["azp"].as_str() != Some(id) {
            return error_page(400, "Invalid parameter: id_token_hint");
        }
    }
    let client = client_id
        .or_else(|| hint_claims.as_ref().and_then(|c| c["azp"].as_str()))
        .and_then(|id| realm.client(id))
        .cloned();
    if let Some(r) = redirect {
        let allowed = client.as_ref().is_some_and(|c| {
            let b = &c.browser;
            let list = &b.post_logout_redirect_uris;
            let mut uris: Vec<String> = list.iter().filter(|u| *u != "+").cloned().collect();
            if list.is_empty() || list.iter().any(|u| u == "+") {
                uris.extend(b.redirect_uris.iter().cloned());
            }
            !list.iter().any(|u| u == "-") && redirect_allowed(&uris, r)
        });
        if !allowed {
            return error_page(400, "Invalid redirect uri");
        }
    }
    let browser_sid = sso_session(emu, realm, req).map(|(sid, _)| sid);
    let hint_sid = hint_claims
        .as_ref()
        .and_then(|c| c["sid"].as_str())
        .map(str::to_owned);
    let sid = match (&hint_sid, &browser_sid) {
        // A server calling with a hint (no cookies), or the browser of the hint's session.
        (Some(h), None) => Some(h.clone()),
        (Some(h), Some(b)) if h == b => Some(h.clone()),
        (None, _) if client.is_some() && redirect.is_some() => browser_sid.clone(),
        _ => return confirmation_page(emu, req, realm, redirect, state),
    };
    if let Some(sid) = sid {
        if let Some(session) = realm.log_out_session(&sid, iss) {
            realm.login_event(
                "LOGOUT",
                client.as_ref().map(|c| c.client_id.as_str()),
                Some(&session.user_id),
                Some(&sid),
                &req.remote_ip,
                None,
                json!({}),
            );
        }
    }
    logged_out(realm, redirect, state)
}

pub(super) fn logged_out(realm: &Realm, redirect: Option<&str>, state: Option<&str>) -> Response {
    let resp = match redirect {
        Some(r) => {
            let target = match state {
                Some(s) => format!(
                    "{r}{}{}",
                    if r.contains('?') { '&' } else { '?' },
                    encode(&[("state", s)])
                ),
                None => r.to_owned(),
            };
            found(&target)
        }
        None => info_page("You are logged out"),
    };
    // The browser's SSO cookies go with the session.
    let resp = set_cookie(resp, &realm.name, COOKIE_IDENTITY, "");
    set_cookie(resp, &realm.name, COOKIE_SESSION, "")
}

/// "Do you want to log out?": posts to `logout/logout-confirm` with a signed `session_code`.
pub(super) fn confirmation_page(
    emu: &Emulator,
    req: &Req,
    realm: &Realm,
    redirect: Option<&str>,
    state: Option<&str>,
) -> Response {
    let code = emu.keys.sign_hs512(&json!({
        "typ": "Logout-Confirm", "redirect": redirect, "state": state, "exp": realm.now_s() + 300,
    }));
    let action = format!(
        "{}/realms/{}/protocol/openid-connect/logout/logout-confirm",
        req.base_url, realm.name
    );
    page(
        200,
        "Logging out",
        &format!(
            "<p class=\"instruction\">Do you want to log out?</p>\
             <form class=\"form-actions\" action=\"{}\" method=\"POST\">\
             <input type=\"hidden\" name=\"session_code\" value=\"{}\">\
             <button name=\"confirmLogout\" id=\"kc-logout\" type=\"submit\" value=\"Logout\">Logout</button></form>",
            escape(&action),
            escape(&code)
        ),
    )
}

/// `POST …/logout/logout-confirm`: the browser's own session ends.
pub fn confirm_logout(emu: &Emulator, realm: &mut Realm, req: &Req, iss: &str) -> Response {
    let form = if req.is_form() {
        req.form()
    } else {
        Vec::new()
    };
    let confirmed = value(&form, "session_code")
        .and_then(|c| emu.keys.verify_hs512(c))
        .filter(|c| c["typ"].as_str() == Some("Logout-Confirm"))
        .filter(|c| c["exp"].as_i64().unwrap_or(0) >= realm.now_s());
    let Some(confirmed) = confirmed else {
        return error_page(400, "Logout failed");
    };
    if let Some((sid, user)) = sso_session(emu, realm, req) {
        realm.log_out_session(&sid, iss);
        realm.login_event(
            "LOGOUT",
            None,
            Some(&user.id),
            Some(&sid),
            &req.remote_ip,
            None,
            json!({}),
        );
    }
    logged_out(
        realm,
        confirmed["redirect"].as_str(),
        confirmed["state"].as_str(),
    )
}
