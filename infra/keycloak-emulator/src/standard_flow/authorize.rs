//! The authorization endpoint (contract §9.1–§9.4): the request's checks in Keycloak's order.

use axum::response::Response;

use crate::emulator::Emulator;
use crate::endpoint::on_realm;
use crate::http::{Call, Req};
use crate::logins::{Login, Mode};
use crate::realm::{Client, Realm};

use super::browser::*;
use super::login_actions::{finish_login, start_login};
use super::names::*;
use super::pages::*;

pub(super) async fn authorization_endpoint(c: Call) -> Response {
    on_realm(&c, authorize)
}

pub(super) fn authorize(emu: &Emulator, realm: &mut Realm, req: &Req, iss: &str) -> Response {
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
pub(super) fn check_request(
    realm: &Realm,
    p: &[(String, String)],
    iss: &str,
) -> Result<Login, Response> {
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
pub(super) fn check_pkce(
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
