//! The OIDC routes of a realm (contract §1–§3): the token endpoint, logout, introspection,
//! userinfo, revocation, JWKS, discovery and the public realm document; CORS and `no-store`.

use std::sync::Arc;

use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};

use super::client_auth::form_value;
use super::grants::token;
use super::tokens_in_use::{introspect, logout, revoke, userinfo};
use crate::emulator::Emulator;
use crate::endpoint::{on_realm, on_realm_logging_out};
use crate::http::method_not_allowed;
use crate::http::{ok_json, with_header, Call, Req};
use crate::realm::Realm;

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
