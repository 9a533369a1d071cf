//! What the browser sends and gets: parameters, cookies, redirects to the client in its
//! response mode, redirect-URI matching, PKCE shapes, and the SSO session of its cookie.

use axum::response::Response;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::emulator::Emulator;
use crate::http::{html, with_header, Req};
use crate::logins::Mode;
use crate::realm::{Realm, User};

use super::names::*;
use super::pages::*;

/// The request's parameters: the query, or a POSTed form.
pub(super) fn params(req: &Req) -> Vec<(String, String)> {
    if req.method == axum::http::Method::POST && req.is_form() {
        req.form()
    } else {
        req.query.clone()
    }
}

pub(super) fn value<'a>(params: &'a [(String, String)], key: &str) -> Option<&'a str> {
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

pub(super) fn set_cookie(resp: Response, realm: &str, name: &str, value: &str) -> Response {
    let mut resp = resp;
    // Over plain HTTP a browser refuses `SameSite=None` without `Secure`: like Keycloak on an
    // insecure context, no SameSite attribute (the browser's Lax serves top-level redirects).
    let header = format!("{name}={value}; Path=/realms/{realm}/; HttpOnly");
    if let Ok(v) = axum::http::HeaderValue::from_str(&header) {
        resp.headers_mut().append("set-cookie", v);
    }
    resp
}

pub(super) fn encode(pairs: &[(&str, &str)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

pub(super) fn found(location: &str) -> Response {
    with_header(crate::http::empty(302), "location", location)
}

/// The answer to the client, in the response mode it asked for (contract §9.3, §9.6).
pub(super) fn to_client(mode: Mode, redirect_uri: &str, pairs: &[(&str, &str)]) -> Response {
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
pub(super) fn error_to_client(
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
pub(super) fn redirect_allowed(registered: &[String], given: &str) -> bool {
    let bare = given.split(['?', '#']).next().unwrap_or(given);
    registered.iter().any(|r| {
        r == given
            || r == "*"
            || r.strip_suffix('*')
                .is_some_and(|prefix| bare.starts_with(prefix))
    })
}

/// RFC 7636 §4.1: 43–128 characters of `[0-9a-zA-Z-._~]`.
pub(super) fn pkce_shaped(v: &str) -> bool {
    (43..=128).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

pub(super) fn s256(verifier: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
    URL_SAFE_NO_PAD.encode(digest.as_ref())
}

/// The SSO session the browser's identity cookie names, if it is live and its user can sign in.
pub(super) fn sso_session(emu: &Emulator, realm: &mut Realm, req: &Req) -> Option<(String, User)> {
    let claims = emu.keys.verify_hs512(cookie(req, COOKIE_IDENTITY)?)?;
    if claims["typ"].as_str() != Some("Serialized-ID") {
        return None;
    }
    let sid = claims["sid"].as_str()?.to_owned();
    let user_id = realm.live_session(&sid)?.user_id.clone();
    let user = realm.user(&user_id).filter(|u| u.enabled)?.clone();
    Some((sid, user))
}
