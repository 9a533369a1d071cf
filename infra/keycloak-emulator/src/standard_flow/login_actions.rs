//! The login page's POST and the required actions (contract §9.5), then the code and the
//! redirect to the client (§9.6).

use axum::response::Response;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::json;

use crate::emulator::Emulator;
use crate::endpoint::on_realm;
use crate::http::{Call, Req};
use crate::login::{password_matches, profile_incomplete};
use crate::logins::{Code, Login, Mode};
use crate::realm::{new_id, Client, Realm, User};

use super::browser::*;
use super::names::*;
use super::pages::*;

pub(super) fn start_login(realm: &mut Realm, req: &Req, login: Login) -> Response {
    let root = cookie(req, COOKIE_AUTH_SESSION)
        .filter(|r| !r.is_empty() && r.len() <= 64)
        .map(str::to_owned)
        .unwrap_or_else(new_id);
    let tab_id = new_id()[..11].to_owned();
    let action = action_url(req, realm, "authenticate", &login, &tab_id, None);
    realm
        .logins
        .pending
        .insert(format!("{root}.{tab_id}"), login);
    let resp = login_page(&action, "", Complaint::None);
    let resp = set_cookie(resp, &realm.name, COOKIE_AUTH_SESSION, &root);
    set_cookie(resp, &realm.name, "KC_RESTART", &new_id())
}

/// A login-actions URL (`session_code` fresh at every rendering, as in Keycloak).
pub(super) fn action_url(
    req: &Req,
    realm: &Realm,
    action: &str,
    login: &Login,
    tab_id: &str,
    execution: Option<&str>,
) -> String {
    let client_data = URL_SAFE_NO_PAD.encode(
        json!({"ru": login.redirect_uri, "rt": "code",
               "rm": match login.mode { Mode::Query => "query", Mode::Fragment => "fragment", Mode::FormPost => "form_post" },
               "st": login.state})
        .to_string(),
    );
    let execution = execution.map(str::to_owned).unwrap_or_else(new_id);
    format!(
        "{}/realms/{}/login-actions/{action}?{}",
        req.base_url,
        realm.name,
        encode(&[
            ("session_code", &new_id()),
            ("execution", &execution),
            ("client_id", &login.client_id),
            ("tab_id", tab_id),
            ("client_data", &client_data),
        ])
    )
}

/// The login a login-actions request continues: from its cookie and `tab_id`.
pub(super) fn pending_login(realm: &Realm, req: &Req) -> Result<(String, Login), Response> {
    let root = cookie(req, COOKIE_AUTH_SESSION).ok_or_else(|| {
        error_page(
            400,
            "Cookie not found. Please make sure cookies are enabled in your browser.",
        )
    })?;
    let key = format!("{root}.{}", req.param("tab_id").unwrap_or(""));
    let lifespan = realm.settings.access_code_lifespan_login * 1000;
    realm
        .logins
        .pending
        .get(&key)
        .filter(|l| realm.now_ms() <= l.started_ms + lifespan)
        .map(|l| (key, l.clone()))
        .ok_or_else(|| {
            error_page(
                400,
                "An error occurred, please login again through your application.",
            )
        })
}

// ------------------------------------------------------------------------------------------

pub(super) async fn authenticate_endpoint(c: Call) -> Response {
    on_realm(&c, authenticate)
}

pub(super) fn authenticate(emu: &Emulator, realm: &mut Realm, req: &Req, iss: &str) -> Response {
    let (key, login) = match pending_login(realm, req) {
        Ok(found) => found,
        Err(resp) => return resp,
    };
    let form = if req.is_form() {
        req.form()
    } else {
        Vec::new()
    };
    let username = value(&form, "username").unwrap_or("").trim().to_owned();
    let tab_id = req.param("tab_id").unwrap_or("").to_owned();
    let again = |realm: &Realm, complaint: Complaint<'_>| {
        let action = action_url(req, realm, "authenticate", &login, &tab_id, None);
        login_page(&action, &username, complaint)
    };
    let details = json!({"auth_method": "openid-connect", "auth_type": "code",
                         "redirect_uri": login.redirect_uri, "username": username});
    let refuse = |realm: &mut Realm, user_id: Option<&str>, error: &str| {
        realm.login_event(
            "LOGIN_ERROR",
            Some(&login.client_id),
            user_id,
            None,
            &req.remote_ip,
            Some(error),
            details.clone(),
        );
    };
    const INVALID: &str = "Invalid username or password.";
    let known = (!username.is_empty())
        .then(|| realm.user_by_username_or_email(&username))
        .flatten()
        .filter(|u| u.service_account_client_id.is_none())
        .cloned();
    let Some(user) = known else {
        refuse(realm, None, "user_not_found");
        return again(realm, Complaint::Field("username", INVALID));
    };
    let permanently_locked = user
        .attributes
        .get(crate::brute_force::PERMANENT_LOCKOUT_ATTRIBUTE)
        .is_some_and(|v| v.iter().any(|r| r == "permanentLockout"));
    if (!user.enabled && permanently_locked) || realm.temporarily_locked(&user.id) {
        refuse(realm, Some(&user.id), "user_temporarily_disabled");
        return again(realm, Complaint::Field("username", INVALID));
    }
    if !password_matches(emu, realm, &user, value(&form, "password"), &req.remote_ip) {
        refuse(realm, Some(&user.id), "invalid_user_credentials");
        return again(realm, Complaint::Field("password", INVALID));
    }
    if !user.enabled {
        refuse(realm, Some(&user.id), "user_disabled");
        return again(
            realm,
            Complaint::Alert("Account is disabled, contact your administrator."),
        );
    }
    let mut login = login;
    login.user_id = Some(user.id.clone());
    if let Some(action) = next_required_action(realm, &user) {
        realm.logins.pending.insert(key, login.clone());
        let url = action_url(
            req,
            realm,
            "required-action",
            &login,
            &tab_id,
            Some(&action),
        );
        return found(&url);
    }
    complete(emu, realm, req, iss, &key, login, &user)
}

pub(super) fn next_required_action(realm: &Realm, user: &User) -> Option<String> {
    user.required_actions
        .first()
        .cloned()
        .or_else(|| profile_incomplete(realm, user).then(|| VERIFY_PROFILE.to_owned()))
}

pub(super) async fn required_action_endpoint(c: Call) -> Response {
    on_realm(&c, required_action)
}

pub(super) fn required_action(emu: &Emulator, realm: &mut Realm, req: &Req, iss: &str) -> Response {
    let (key, login) = match pending_login(realm, req) {
        Ok(found) => found,
        Err(resp) => return resp,
    };
    let Some(user) = login
        .user_id
        .as_deref()
        .and_then(|id| realm.user(id))
        .cloned()
    else {
        return error_page(
            400,
            "An error occurred, please login again through your application.",
        );
    };
    let tab_id = req.param("tab_id").unwrap_or("").to_owned();
    let Some(action) = next_required_action(realm, &user) else {
        return complete(emu, realm, req, iss, &key, login, &user);
    };
    let form_action = action_url(
        req,
        realm,
        "required-action",
        &login,
        &tab_id,
        Some(&action),
    );
    if action != UPDATE_PASSWORD {
        // Only UPDATE_PASSWORD can be completed here (a choice, in the README).
        return page(
            200,
            "Required action",
            &format!(
                "<div id=\"kc-info-message\"><p class=\"instruction\">The account needs the required action {}, which this emulator cannot complete in a browser.</p></div>",
                escape(&action)
            ),
        );
    }
    if req.method != axum::http::Method::POST {
        return update_password_page(&form_action, None);
    }
    let form = if req.is_form() {
        req.form()
    } else {
        Vec::new()
    };
    let new = value(&form, "password-new").unwrap_or("");
    let confirm = value(&form, "password-confirm").unwrap_or("");
    if new.is_empty() {
        return update_password_page(&form_action, Some("Please specify password."));
    }
    if new != confirm {
        return update_password_page(&form_action, Some("Passwords don't match."));
    }
    if let Some((_, message)) =
        realm
            .settings
            .password_policy
            .check(new, &user.username, user.email.as_deref())
    {
        return update_password_page(&form_action, Some(&message));
    }
    let hash = emu.keys.hash_password(new);
    if let Some(u) = realm.user_mut(&user.id) {
        u.password_hash = Some(hash);
        u.required_actions.retain(|a| a != UPDATE_PASSWORD);
    }
    if value(&form, "logout-sessions") == Some("on") {
        realm.end_user_sessions(&user.id);
    }
    realm.login_event(
        "UPDATE_PASSWORD",
        Some(&login.client_id),
        Some(&user.id),
        None,
        &req.remote_ip,
        None,
        json!({"auth_method": "openid-connect"}),
    );
    let user = realm.user(&user.id).cloned().unwrap_or(user);
    if let Some(next) = next_required_action(realm, &user) {
        let url = action_url(req, realm, "required-action", &login, &tab_id, Some(&next));
        return found(&url);
    }
    complete(emu, realm, req, iss, &key, login, &user)
}

/// Nothing left to do on the pages: the login in progress is done, and the browser goes back.
fn complete(
    emu: &Emulator,
    realm: &mut Realm,
    req: &Req,
    iss: &str,
    key: &str,
    login: Login,
    user: &User,
) -> Response {
    realm.logins.pending.remove(key);
    let Some(client) = realm.client_by_uuid(&login.client_uuid).cloned() else {
        return error_page(400, "Client not found.");
    };
    finish_login(emu, realm, req, iss, &client, login, user, None)
}

/// The user is authenticated: open the session (or join the SSO one), issue the code and send
/// the browser back to the client (contract §9.6).
#[allow(clippy::too_many_arguments)]
pub(super) fn finish_login(
    emu: &Emulator,
    realm: &mut Realm,
    req: &Req,
    iss: &str,
    client: &Client,
    login: Login,
    user: &User,
    sso: Option<String>,
) -> Response {
    let fresh = sso.is_none();
    let sid = match sso {
        Some(sid) => {
            if let Some(s) = realm.sessions.get_mut(&sid) {
                s.clients
                    .insert(client.id.clone(), client.client_id.clone());
            }
            sid
        }
        None => {
            let sid = realm.create_session(&user.id, client, &req.remote_ip);
            if let Some(s) = realm.sessions.get_mut(&sid) {
                s.issuer = iss.to_owned();
            }
            sid
        }
    };
    let code = format!("{}.{sid}.{}", new_id(), client.id);
    let expires_ms = realm.now_ms() + realm.settings.access_code_lifespan * 1000;
    realm.logins.codes.insert(
        code.clone(),
        Code {
            client_uuid: client.id.clone(),
            sid: sid.clone(),
            redirect_uri_param: login.redirect_uri_param.clone(),
            nonce: login.nonce.clone(),
            scope: login.scope.clone(),
            challenge: login.challenge.clone(),
            expires_ms,
            fresh,
        },
    );
    realm.login_event(
        "LOGIN",
        Some(&client.client_id),
        Some(&user.id),
        Some(&sid),
        &req.remote_ip,
        None,
        json!({"auth_method": "openid-connect", "auth_type": "code",
               "redirect_uri": login.redirect_uri, "code_id": sid, "username": user.username}),
    );
    let mut pairs: Vec<(&str, &str)> = Vec::new();
    if let Some(s) = &login.state {
        pairs.push(("state", s));
    }
    pairs.extend([
        ("session_state", sid.as_str()),
        ("iss", iss),
        ("code", &code),
    ]);
    let resp = to_client(login.mode, &login.redirect_uri, &pairs);
    let identity = emu.keys.sign_hs512(&json!({
        "typ": "Serialized-ID", "sid": sid, "sub": user.id, "iat": realm.now_s(),
    }));
    let resp = set_cookie(resp, &realm.name, COOKIE_IDENTITY, &identity);
    let session_cookie = s256(&sid);
    set_cookie(resp, &realm.name, COOKIE_SESSION, &session_cookie)
}
