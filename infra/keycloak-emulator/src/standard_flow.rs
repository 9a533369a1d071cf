//! The standard flow (authorization code) as Keycloak 26 speaks it (contract §9–§11): the
//! authorization endpoint with its HTML login page, the credential POST and the UPDATE_PASSWORD
//! required action, single-use authorization codes with PKCE, the `authorization_code` grant,
//! and RP-initiated logout at the end-session endpoint.
//!
//! Browser state lives in cookies as in Keycloak: `AUTH_SESSION_ID` names the login in
//! progress (`Logins`), `KEYCLOAK_IDENTITY` (signed, naming the SSO session) lets a second
//! authorization skip the page.

use std::collections::HashMap;
use std::sync::Arc;

use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};

use crate::emulator::Emulator;
use crate::http::{html, oauth_error, with_header, Call, Req};
use crate::oidc::{issue_tokens, on_realm, password_matches, profile_incomplete};
use crate::realm::{new_id, Client, Realm, User};

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

/// Logins in progress (by `{AUTH_SESSION_ID}.{tab_id}`) and codes not yet exchanged.
#[derive(Debug, Default)]
pub struct Logins {
    pending: HashMap<String, Login>,
    codes: HashMap<String, Code>,
}

/// One authorization request, from the endpoint to its code.
#[derive(Clone, Debug)]
struct Login {
    client_uuid: String,
    client_id: String,
    /// Where the answer goes (as sent, or the client's single registered URI).
    redirect_uri: String,
    /// `redirect_uri` as the request sent it: the exchange must send the same string.
    redirect_uri_param: Option<String>,
    mode: Mode,
    state: Option<String>,
    nonce: Option<String>,
    scope: String,
    /// (challenge, method)
    challenge: Option<(String, String)>,
    started_ms: i64,
    /// Set once the credentials are right and required actions remain.
    user_id: Option<String>,
}

#[derive(Clone, Debug)]
struct Code {
    client_uuid: String,
    sid: String,
    redirect_uri_param: Option<String>,
    nonce: Option<String>,
    scope: String,
    challenge: Option<(String, String)>,
    expires_ms: i64,
    /// A login on the page (`acr` 1), not a reused SSO session (`acr` 0).
    fresh: bool,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Query,
    Fragment,
    FormPost,
}

const COOKIE_AUTH_SESSION: &str = "AUTH_SESSION_ID";
const COOKIE_IDENTITY: &str = "KEYCLOAK_IDENTITY";
const COOKIE_SESSION: &str = "KEYCLOAK_SESSION";
const UPDATE_PASSWORD: &str = "UPDATE_PASSWORD";
const VERIFY_PROFILE: &str = "VERIFY_PROFILE";
/// Scopes a client may ask for in this realm (the default client scopes of a new realm).
const KNOWN_SCOPES: &[&str] = &[
    "openid",
    "profile",
    "email",
    "roles",
    "web-origins",
    "acr",
    "basic",
    "offline_access",
    "address",
    "phone",
    "microprofile-jwt",
    "organization",
];

// ------------------------------------------------------------------------------------------
// Pages

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn page(status: u16, title: &str, body: &str) -> Response {
    html(
        status,
        &format!(
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title></head>\
             <body><h1 id=\"kc-page-title\">{t}</h1>{body}</body></html>",
            t = escape(title)
        ),
    )
}

/// `error.ftl`: "We are sorry..." and the message (contract §9.2).
pub fn error_page(status: u16, message: &str) -> Response {
    page(
        status,
        "We are sorry...",
        &format!(
            "<div id=\"kc-error-message\"><p class=\"instruction\">{}</p></div>",
            escape(message)
        ),
    )
}

fn info_page(message: &str) -> Response {
    page(
        200,
        message,
        &format!(
            "<div id=\"kc-info-message\"><p class=\"instruction\">{}</p></div>",
            escape(message)
        ),
    )
}

/// What the login page shows besides its form.
enum Complaint<'a> {
    None,
    /// A field error (`input-error-username` or `input-error-password`).
    Field(&'static str, &'a str),
    /// The page-level alert.
    Alert(&'a str),
}

fn login_page(action: &str, username: &str, complaint: Complaint<'_>) -> Response {
    let field_error = |field: &str| {
        match complaint {
        Complaint::Field(f, text) if f == field => format!(
            "<span id=\"input-error-{field}\" class=\"kc-feedback-text\" aria-live=\"polite\">{}</span>",
            escape(text)
        ),
        _ => String::new(),
    }
    };
    let alert = match complaint {
        Complaint::Alert(text) => format!(
            "<div class=\"alert-error\"><span class=\"kc-feedback-text\">{}</span></div>",
            escape(text)
        ),
        _ => String::new(),
    };
    let body = format!(
        "{alert}<form id=\"kc-form-login\" onsubmit=\"login.disabled = true; return true;\" action=\"{action}\" method=\"post\" novalidate=\"novalidate\">\
         <label for=\"username\">Username or email</label>\
         <input id=\"username\" name=\"username\" value=\"{username}\" type=\"text\" autocomplete=\"username\" autofocus/>{ue}\
         <label for=\"password\">Password</label>\
         <input id=\"password\" name=\"password\" value=\"\" type=\"password\" autocomplete=\"current-password\"/>{pe}\
         <input type=\"hidden\" id=\"id-hidden-input\" name=\"credentialId\"/>\
         <button name=\"login\" id=\"kc-login\" type=\"submit\">Sign In</button></form>",
        action = escape(action),
        username = escape(username),
        ue = field_error("username"),
        pe = field_error("password"),
    );
    page(200, "Sign in to your account", &body)
}

fn update_password_page(action: &str, error: Option<&str>) -> Response {
    let error = error
        .map(|e| {
            format!(
                "<span id=\"input-error-password\" class=\"kc-feedback-text\">{}</span>",
                escape(e)
            )
        })
        .unwrap_or_default();
    let body = format!(
        "<div class=\"alert-warning\"><span class=\"kc-feedback-text\">You need to change your password to activate your account.</span></div>\
         <form id=\"kc-passwd-update-form\" action=\"{action}\" method=\"post\">\
         <label for=\"password-new\">New Password</label>\
         <input type=\"password\" id=\"password-new\" name=\"password-new\" autocomplete=\"new-password\" autofocus/>{error}\
         <label for=\"password-confirm\">Confirm password</label>\
         <input type=\"password\" id=\"password-confirm\" name=\"password-confirm\" autocomplete=\"new-password\"/>\
         <input type=\"checkbox\" id=\"logout-sessions\" name=\"logout-sessions\" value=\"on\" checked/>\
         <label for=\"logout-sessions\">Sign out from other devices</label>\
         <button type=\"submit\" id=\"kc-submit\">Submit</button></form>",
        action = escape(action),
    );
    page(200, "Update password", &body)
}

// ------------------------------------------------------------------------------------------
// Request plumbing

/// The request's parameters: the query, or a POSTed form.
fn params(req: &Req) -> Vec<(String, String)> {
    if req.method == axum::http::Method::POST && req.is_form() {
        req.form()
    } else {
        req.query.clone()
    }
}

fn value<'a>(params: &'a [(String, String)], key: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

pub fn cookie<'a>(req: &'a Req, name: &str) -> Option<&'a str> {
    req.headers
        .get_all("cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn set_cookie(resp: Response, realm: &str, name: &str, value: &str) -> Response {
    let mut resp = resp;
    let header = format!("{name}={value}; Path=/realms/{realm}/; HttpOnly; SameSite=None");
    if let Ok(v) = axum::http::HeaderValue::from_str(&header) {
        resp.headers_mut().append("set-cookie", v);
    }
    resp
}

fn encode(pairs: &[(&str, &str)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

fn found(location: &str) -> Response {
    with_header(crate::http::empty(302), "location", location)
}

/// The answer to the client, in the response mode it asked for (contract §9.3, §9.6).
fn to_client(mode: Mode, redirect_uri: &str, pairs: &[(&str, &str)]) -> Response {
    match mode {
        Mode::Query => {
            let sep = if redirect_uri.contains('?') { '&' } else { '?' };
            found(&format!("{redirect_uri}{sep}{}", encode(pairs)))
        }
        Mode::Fragment => found(&format!("{redirect_uri}#{}", encode(pairs))),
        Mode::FormPost => {
            let inputs: String = pairs
                .iter()
                .map(|(k, v)| {
                    format!(
                        "<input type=\"hidden\" name=\"{}\" value=\"{}\"/>",
                        escape(k),
                        escape(v)
                    )
                })
                .collect();
            html(
                200,
                &format!(
                    "<html><head><title>Submit This Form</title></head><body onload=\"javascript:document.forms[0].submit()\">\
                     <form method=\"post\" action=\"{}\">{inputs}</form></body></html>",
                    escape(redirect_uri)
                ),
            )
        }
    }
}

/// An error sent to the client's redirect URI: `error`, `error_description`, `state`, `iss`.
fn error_to_client(
    mode: Mode,
    redirect_uri: &str,
    error: &str,
    description: Option<&str>,
    state: Option<&str>,
    iss: &str,
) -> Response {
    let mut pairs = vec![("error", error)];
    if let Some(d) = description {
        pairs.push(("error_description", d));
    }
    if let Some(s) = state {
        pairs.push(("state", s));
    }
    pairs.push(("iss", iss));
    to_client(mode, redirect_uri, &pairs)
}

/// `RedirectUtils#matchesRedirects`: exact, or a registered value ending in `*` as a prefix
/// (query and fragment ignored), or `*` alone.
fn redirect_allowed(registered: &[String], given: &str) -> bool {
    let bare = given.split(['?', '#']).next().unwrap_or(given);
    registered.iter().any(|r| {
        r == given
            || r == "*"
            || r.strip_suffix('*')
                .is_some_and(|prefix| bare.starts_with(prefix))
    })
}

/// RFC 7636 §4.1: 43–128 characters of `[0-9a-zA-Z-._~]`.
fn pkce_shaped(v: &str) -> bool {
    (43..=128).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

fn s256(verifier: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
    URL_SAFE_NO_PAD.encode(digest.as_ref())
}

// ------------------------------------------------------------------------------------------
// The authorization endpoint

async fn authorization_endpoint(c: Call) -> Response {
    on_realm(&c, authorize)
}

fn authorize(emu: &Emulator, realm: &mut Realm, req: &Req, iss: &str) -> Response {
    let p = params(req);
    match check_request(realm, &p, iss) {
        Ok(login) => {
            let client = realm.client_by_uuid(&login.client_uuid).cloned();
            let sso = (value(&p, "prompt") != Some("login"))
                .then(|| sso_session(emu, realm, req))
                .flatten();
            match (client, sso) {
                (Some(client), Some((sid, user))) => {
                    finish_login(emu, realm, req, iss, &client, login, &user, Some(sid))
                }
                _ if value(&p, "prompt") == Some("none") => error_to_client(
                    login.mode,
                    &login.redirect_uri,
                    "login_required",
                    None,
                    login.state.as_deref(),
                    iss,
                ),
                _ => start_login(realm, req, login),
            }
        }
        Err(resp) => resp,
    }
}

/// The request's checks in Keycloak's order (contract §9.1–§9.4): pages before the redirect URI
/// is known good, redirects to the client after.
fn check_request(realm: &Realm, p: &[(String, String)], iss: &str) -> Result<Login, Response> {
    if !realm.settings.enabled {
        return Err(error_page(400, "Realm not enabled"));
    }
    let client_id = value(p, "client_id")
        .filter(|c| !c.is_empty())
        .ok_or_else(|| error_page(400, "Missing parameters: client_id"))?;
    let client = realm
        .client(client_id)
        .ok_or_else(|| error_page(400, "Client not found."))?;
    if !client.enabled {
        return Err(error_page(400, "Client disabled."));
    }
    if client.bearer_only {
        return Err(error_page(
            403,
            "Bearer-only applications are not allowed to initiate browser login",
        ));
    }
    let scope = value(p, "scope").unwrap_or("").to_owned();
    let openid = scope.split_whitespace().any(|s| s == "openid");
    let registered = &client.browser.redirect_uris;
    let invalid_redirect = || error_page(400, "Invalid parameter: redirect_uri");
    let redirect_uri_param = value(p, "redirect_uri").map(str::to_owned);
    let redirect_uri = match &redirect_uri_param {
        Some(given) if redirect_allowed(registered, given) => given.clone(),
        Some(_) => return Err(invalid_redirect()),
        None if openid => return Err(invalid_redirect()),
        None => match registered.as_slice() {
            [only] => only.trim_end_matches("/*").to_owned(),
            _ => return Err(invalid_redirect()),
        },
    };
    let state = value(p, "state").map(str::to_owned);
    let mode = match value(p, "response_mode") {
        None | Some("query") => Mode::Query,
        Some("fragment") => Mode::Fragment,
        Some("form_post") => Mode::FormPost,
        Some(_) => {
            return Err(error_to_client(
                Mode::Query,
                &redirect_uri,
                "invalid_request",
                Some("Invalid parameter: response_mode"),
                state.as_deref(),
                iss,
            ))
        }
    };
    let refuse = |error: &str, description: Option<&str>| {
        error_to_client(
            mode,
            &redirect_uri,
            error,
            description,
            state.as_deref(),
            iss,
        )
    };
    match value(p, "response_type") {
        None => {
            return Err(refuse(
                "invalid_request",
                Some("Missing parameter: response_type"),
            ))
        }
        Some("code") => {}
        Some("token" | "id_token" | "id_token token" | "code id_token" | "code token"
            | "code id_token token") => {
            return Err(refuse(
                "unauthorized_client",
                Some("Client is not allowed to initiate browser login with given response_type. Implicit flow is disabled for the client."),
            ))
        }
        Some(_) => return Err(refuse("unsupported_response_type", None)),
    }
    if !client.browser.standard_flow {
        return Err(refuse(
            "unauthorized_client",
            Some("Client is not allowed to initiate browser login with given response_type. Standard flow is disabled for the client."),
        ));
    }
    if scope.split_whitespace().any(|s| !KNOWN_SCOPES.contains(&s)) {
        return Err(refuse(
            "invalid_scope",
            Some(&format!("Invalid scopes: {scope}")),
        ));
    }
    let challenge = check_pkce(client, p).map_err(|d| refuse("invalid_request", Some(d)))?;
    Ok(Login {
        client_uuid: client.id.clone(),
        client_id: client.client_id.clone(),
        redirect_uri,
        redirect_uri_param,
        mode,
        state,
        nonce: value(p, "nonce").map(str::to_owned),
        scope,
        challenge,
        started_ms: realm.now_ms(),
        user_id: None,
    })
}

/// PKCE per the client's policy (contract §9.4): the accepted (challenge, method), or the
/// error description.
fn check_pkce(
    client: &Client,
    p: &[(String, String)],
) -> Result<Option<(String, String)>, &'static str> {
    let method = value(p, "code_challenge_method");
    let challenge = value(p, "code_challenge");
    match &client.browser.pkce_method {
        Some(required) => {
            let method = method.ok_or("Missing parameter: code_challenge_method")?;
            if method != required {
                return Err(
                    "Invalid parameter: code challenge method is not matching the configured one",
                );
            }
            let challenge = challenge.ok_or("Missing parameter: code_challenge")?;
            if !pkce_shaped(challenge) {
                return Err("Invalid parameter: code_challenge");
            }
            Ok(Some((challenge.to_owned(), method.to_owned())))
        }
        None => match (challenge, method) {
            (None, Some(_)) => Err("Missing parameter: code_challenge"),
            (None, None) => Ok(None),
            (Some(_), Some(m)) if m != "S256" && m != "plain" => {
                Err("Invalid parameter: code_challenge_method")
            }
            (Some(c), _) if !pkce_shaped(c) => Err("Invalid parameter: code_challenge"),
            (Some(c), m) => Ok(Some((c.to_owned(), m.unwrap_or("plain").to_owned()))),
        },
    }
}

/// The SSO session the browser's identity cookie names, if it is live and its user can sign in.
fn sso_session(emu: &Emulator, realm: &mut Realm, req: &Req) -> Option<(String, User)> {
    let claims = emu.keys.verify_hs512(cookie(req, COOKIE_IDENTITY)?)?;
    if claims["typ"].as_str() != Some("Serialized-ID") {
        return None;
    }
    let sid = claims["sid"].as_str()?.to_owned();
    let user_id = realm.live_session(&sid)?.user_id.clone();
    let user = realm.user(&user_id).filter(|u| u.enabled)?.clone();
    Some((sid, user))
}

fn start_login(realm: &mut Realm, req: &Req, login: Login) -> Response {
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
fn action_url(
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
fn pending_login(realm: &Realm, req: &Req) -> Result<(String, Login), Response> {
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
// The credential POST and required actions

async fn authenticate_endpoint(c: Call) -> Response {
    on_realm(&c, authenticate)
}

fn authenticate(emu: &Emulator, realm: &mut Realm, req: &Req, iss: &str) -> Response {
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
    realm.logins.pending.remove(&key);
    let Some(client) = realm.client_by_uuid(&login.client_uuid).cloned() else {
        return error_page(400, "Client not found.");
    };
    finish_login(emu, realm, req, iss, &client, login, &user, None)
}

fn next_required_action(realm: &Realm, user: &User) -> Option<String> {
    user.required_actions
        .first()
        .cloned()
        .or_else(|| profile_incomplete(realm, user).then(|| VERIFY_PROFILE.to_owned()))
}

async fn required_action_endpoint(c: Call) -> Response {
    on_realm(&c, required_action)
}

fn required_action(emu: &Emulator, realm: &mut Realm, req: &Req, iss: &str) -> Response {
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
        realm.logins.pending.remove(&key);
        let Some(client) = realm.client_by_uuid(&login.client_uuid).cloned() else {
            return error_page(400, "Client not found.");
        };
        return finish_login(emu, realm, req, iss, &client, login, &user, None);
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
    realm.logins.pending.remove(&key);
    let Some(client) = realm.client_by_uuid(&login.client_uuid).cloned() else {
        return error_page(400, "Client not found.");
    };
    finish_login(emu, realm, req, iss, &client, login, &user, None)
}

/// The user is authenticated: open the session (or join the SSO one), issue the code and send
/// the browser back to the client (contract §9.6).
#[allow(clippy::too_many_arguments)]
fn finish_login(
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

// ------------------------------------------------------------------------------------------
// The authorization_code grant (contract §10)

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
fn add_id_token_claims(emu: &Emulator, realm: &Realm, tokens: &mut Value, code: &Code) {
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

// ------------------------------------------------------------------------------------------
// RP-initiated logout (contract §11)

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

fn logged_out(realm: &Realm, redirect: Option<&str>, state: Option<&str>) -> Response {
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
fn confirmation_page(
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
