//! The OIDC side of a realm: token endpoint (password, client_credentials, refresh_token),
//! logout, introspection, userinfo, JWKS, discovery and the public realm document (contract §1–§3).

use std::sync::Arc;

use axum::http::Method;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Map, Value};

use crate::emulator::Emulator;
use crate::endpoint::{on_realm, on_realm_logging_out};
use crate::http::method_not_allowed;
use crate::http::{empty, json_response, oauth_error, ok_json, with_header, Call, Req};
use crate::login::{issue_tokens, password_matches, profile_incomplete};
use crate::realm::{Client, Realm};

pub fn router() -> Router<Arc<Emulator>> {
    Router::new()
        .route("/", get(realm_document))
        .route("/.well-known/openid-configuration", get(discovery_document))
        .route("/protocol/openid-connect/certs", get(certs))
        .route("/protocol/openid-connect/token", post(token_endpoint))
        .route(
            "/protocol/openid-connect/token/introspect",
            post(introspect_endpoint),
        )
        .route(
            "/protocol/openid-connect/logout",
            get(logout_endpoint).post(logout_endpoint),
        )
        .route(
            "/protocol/openid-connect/logout/logout-confirm",
            post(logout_confirm_endpoint),
        )
        .route(
            "/protocol/openid-connect/userinfo",
            get(userinfo_endpoint).post(userinfo_endpoint),
        )
        .route("/protocol/openid-connect/revoke", post(revoke_endpoint))
        .method_not_allowed_fallback(|| async { method_not_allowed() })
}

async fn realm_document(c: Call) -> Response {
    on_realm(&c, |emu, realm, _, iss| {
        ok_json(&json!({
            "realm": realm.name, "public_key": emu.keys.sig.spki_b64,
            "token-service": format!("{iss}/protocol/openid-connect"),
            "account-service": format!("{iss}/account"), "tokens-not-before": 0,
        }))
    })
}

async fn discovery_document(c: Call) -> Response {
    on_realm(&c, |_, _, _, iss| ok_json(&discovery(iss)))
}

async fn certs(c: Call) -> Response {
    on_realm(&c, |emu, _, _, _| {
        with_header(
            ok_json(&emu.keys.jwks()),
            "access-control-allow-origin",
            "*",
        )
    })
}

async fn token_endpoint(c: Call) -> Response {
    on_realm(&c, |emu, realm, req, iss| {
        let resp = no_store(token(emu, realm, req, iss));
        cors(realm, req, resp)
    })
}

/// A browser's call from one of the client's web origins gets the CORS headers Keycloak adds
/// (`webOrigins`; `+` stands for the redirect URIs' origins, `*` for any).
fn cors(realm: &Realm, req: &Req, resp: Response) -> Response {
    let Some(origin) = req.header("origin") else {
        return resp;
    };
    let form = if req.is_form() {
        req.form()
    } else {
        Vec::new()
    };
    let Some(client) = form_value(&form, "client_id").and_then(|id| realm.client(id)) else {
        return resp;
    };
    let origin_of = |uri: &str| -> Option<String> {
        let (scheme, rest) = uri.split_once("://")?;
        let host = rest.split(['/', '?', '#']).next()?;
        Some(format!("{scheme}://{host}"))
    };
    let b = &client.browser;
    let allowed = b.web_origins.iter().any(|w| {
        w == "*"
            || w == origin
            || (w == "+"
                && b.redirect_uris
                    .iter()
                    .filter_map(|u| origin_of(u))
                    .any(|o| o == origin))
    });
    if !allowed {
        return resp;
    }
    let resp = with_header(resp, "access-control-allow-origin", origin);
    with_header(resp, "access-control-allow-credentials", "true")
}

async fn introspect_endpoint(c: Call) -> Response {
    on_realm(&c, introspect)
}

async fn logout_endpoint(c: Call) -> Response {
    on_realm_logging_out(&c, logout).await
}

async fn logout_confirm_endpoint(c: Call) -> Response {
    on_realm_logging_out(&c, crate::standard_flow::confirm_logout).await
}

async fn userinfo_endpoint(c: Call) -> Response {
    on_realm(&c, userinfo)
}

async fn revoke_endpoint(c: Call) -> Response {
    on_realm(&c, revoke)
}

fn no_store(resp: Response) -> Response {
    with_header(
        with_header(resp, "cache-control", "no-store"),
        "pragma",
        "no-cache",
    )
}

fn discovery(iss: &str) -> Value {
    let oc = format!("{iss}/protocol/openid-connect");
    json!({
        "issuer": iss,
        "authorization_endpoint": format!("{oc}/auth"),
        "token_endpoint": format!("{oc}/token"),
        "introspection_endpoint": format!("{oc}/token/introspect"),
        "userinfo_endpoint": format!("{oc}/userinfo"),
        "end_session_endpoint": format!("{oc}/logout"),
        "jwks_uri": format!("{oc}/certs"),
        "revocation_endpoint": format!("{oc}/revoke"),
        "grant_types_supported": ["authorization_code", "implicit", "refresh_token", "password", "client_credentials", "urn:openid:params:grant-type:ciba"],
        "response_types_supported": ["code", "none", "id_token", "token", "id_token token", "code id_token", "code token", "code id_token token"],
        "subject_types_supported": ["public", "pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "token_endpoint_auth_methods_supported": ["private_key_jwt", "client_secret_basic", "client_secret_post", "tls_client_auth", "client_secret_jwt"],
        "scopes_supported": ["openid", "profile", "email", "roles", "web-origins", "acr", "basic", "offline_access"],
        "claims_supported": ["aud", "sub", "iss", "auth_time", "name", "given_name", "family_name", "preferred_username", "email", "acr"],
        "response_modes_supported": ["query", "fragment", "form_post", "query.jwt", "fragment.jwt", "form_post.jwt", "jwt"],
        "code_challenge_methods_supported": ["plain", "S256"],
        "authorization_response_iss_parameter_supported": true,
        "backchannel_logout_supported": true,
        "backchannel_logout_session_supported": true,
        "frontchannel_logout_supported": true,
        "frontchannel_logout_session_supported": true,
    })
}

/// Why client authentication failed; each endpoint words it its own way.
#[derive(Debug, PartialEq)]
pub enum ClientAuthError {
    MissingClientId,
    InvalidClient,
    BadSecret,
    BearerOnly,
    Unparsable,
}

/// Client auth as Keycloak does it: HTTP Basic with URL-decoded parts, or form
/// `client_id`/`client_secret`; form values win over the header.
pub fn authenticate_client(
    realm: &Realm,
    req: &Req,
    form: &[(String, String)],
) -> Result<Client, ClientAuthError> {
    let field = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let mut id = field("client_id");
    let mut secret = field("client_secret");
    if let Some(auth) = req.header("authorization") {
        match auth
            .strip_prefix("Basic ")
            .and_then(|b| STANDARD.decode(b.trim()).ok())
            .and_then(|raw| String::from_utf8(raw).ok())
            .and_then(|s| {
                s.split_once(':')
                    .map(|(a, b)| (decode_form_part(a), decode_form_part(b)))
            }) {
            Some((hid, hsecret)) => {
                if id.is_none() {
                    id = Some(hid);
                }
                if secret.is_none() {
                    secret = Some(hsecret);
                }
            }
            None if id.is_none() => return Err(ClientAuthError::Unparsable),
            None => {}
        }
    }
    let id = id
        .filter(|i| !i.is_empty())
        .ok_or(ClientAuthError::MissingClientId)?;
    let client = realm
        .client(&id)
        .filter(|c| c.enabled)
        .ok_or(ClientAuthError::InvalidClient)?;
    if client.bearer_only {
        return Err(ClientAuthError::BearerOnly);
    }
    if !client.public {
        match (&client.secret, secret) {
            (Some(expected), Some(given)) if constant_time_eq(expected, &given) => {}
            _ => return Err(ClientAuthError::BadSecret),
        }
    }
    Ok(client.clone())
}

fn decode_form_part(s: &str) -> String {
    form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The token endpoint's (and logout's) wording of a client auth failure (contract §1.1).
fn client_auth_response(err: ClientAuthError, realm: &str) -> Response {
    const INVALID: &str = "Invalid client or Invalid client credentials";
    match err {
        ClientAuthError::MissingClientId => {
            oauth_error(400, "invalid_client", Some("Missing client_id parameter"))
        }
        ClientAuthError::InvalidClient => oauth_error(401, "invalid_client", Some(INVALID)),
        ClientAuthError::BadSecret => oauth_error(401, "unauthorized_client", Some(INVALID)),
        ClientAuthError::BearerOnly => {
            oauth_error(400, "invalid_client", Some("Bearer-only not allowed"))
        }
        ClientAuthError::Unparsable => with_header(
            empty(401),
            "www-authenticate",
            &format!("Basic realm=\"{realm}\""),
        ),
    }
}

fn has_duplicates(form: &[(String, String)]) -> bool {
    let mut seen = std::collections::HashSet::new();
    form.iter().any(|(k, _)| !seen.insert(k.as_str()))
}

fn form_value<'a>(form: &'a [(String, String)], key: &str) -> Option<&'a str> {
    form.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

fn token(emu: &Emulator, realm: &mut Realm, req: &Req, iss: &str) -> Response {
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
fn check_refresh_token(
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

fn introspect(emu: &Emulator, realm: &mut Realm, req: &Req, iss: &str) -> Response {
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

fn logout(emu: &Emulator, realm: &mut Realm, req: &Req, iss: &str) -> Response {
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

fn userinfo(emu: &Emulator, realm: &mut Realm, req: &Req, iss: &str) -> Response {
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

fn revoke(emu: &Emulator, realm: &mut Realm, req: &Req, iss: &str) -> Response {
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
