//! Token login-sync (`POST /auth/sync`): an app that runs the standard flow itself (the demo
//! realm's public `user-sync-web`, as keycloak-js does it: PKCE S256, fragment mode) signs its
//! user in here with its own access token, once per Keycloak session; tokens of other clients,
//! forged ones and sessions Keycloak ended are refused.

#![allow(clippy::unwrap_used)]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use e2e::*;
use reqwest::Method;
use serde_json::{json, Value};

const WEB: &str = "user-sync-web";
const VERIFIER: &str = "an-app-code-verifier-of-the-right-shape-0123456789-abcdefghij";

/// Sign `username` in as the web app does: Keycloak's page, then the code exchanged by the
/// browser (public client, PKCE). Returns Keycloak's token answer.
async fn app_tokens(username: &str) -> Value {
    let s = stack();
    let app = format!("{}/app/", s.demo);
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, VERIFIER.as_bytes());
    let challenge = URL_SAFE_NO_PAD.encode(digest.as_ref());
    let auth = reqwest::Url::parse_with_params(
        &format!(
            "{}/realms/{}/protocol/openid-connect/auth",
            s.keycloak, s.realm
        ),
        &[
            ("client_id", WEB),
            ("redirect_uri", app.as_str()),
            ("response_type", "code"),
            ("response_mode", "fragment"),
            ("scope", "openid"),
            ("state", "s"),
            ("nonce", "n"),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
        ],
    )
    .unwrap();
    let mut browser = Browser::new();
    let location = browser
        .sign_in_at(auth.as_str(), username, "a-good-password")
        .await;
    // keycloak-js's response mode: the answer is in the fragment.
    let code = query_param(&location.replacen('#', "?", 1), "code").unwrap();
    browser
        .http
        .post(format!(
            "{}/realms/{}/protocol/openid-connect/token",
            s.keycloak, s.realm
        ))
        .form(&[
            ("grant_type", "authorization_code"),
            ("client_id", WEB),
            ("code", code.as_str()),
            ("code_verifier", VERIFIER),
            ("redirect_uri", app.as_str()),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn sync(access: &str, body: Option<Value>) -> Resp {
    call(Method::POST, "/auth/sync", Some(access), body).await
}

async fn registered(prefix: &str) -> (String, String) {
    let username = unique(prefix);
    let r = post("/auth/register", registration(&username)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    (username, r.body["user"]["id"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn an_apps_token_signs_its_user_in_once_per_keycloak_session() {
    let (username, id) = registered("ts").await;
    let tokens = app_tokens(&username).await;
    let access = tokens["access_token"].as_str().unwrap();
    let first = sync(access, None).await;
    assert_eq!(first.status, 200, "{}", first.text);
    assert_eq!(first.body["newSession"], json!(true));
    assert_eq!(first.body["user"]["id"], json!(id));
    assert_eq!(local_user(&id).await.unwrap().login_count, 1);
    let again = sync(access, None).await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(again.body["newSession"], json!(false));
    assert_eq!(local_user(&id).await.unwrap().login_count, 1, "one sign-in");
    let sid = first.body["sessionId"].as_str().unwrap();
    let session = store().get_session(&id, sid).await.unwrap().unwrap();
    assert_eq!(session.client_id.as_deref(), Some(WEB));
    assert!(session.last_seen_at.is_some());
    let me = call(Method::GET, "/auth/me", Some(access), None).await;
    assert_eq!(me.status, 200, "{}", me.text);
    let mine = call(Method::GET, "/auth/sessions", Some(access), None).await;
    assert_eq!(mine.body["items"][0]["id"], json!(sid));
}

#[tokio::test]
async fn a_token_of_a_client_not_listed_is_refused() {
    let (_, login) = signed_in_user("ts-login").await;
    let r = sync(login["tokens"]["accessToken"].as_str().unwrap(), None).await;
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (403, Some("client_not_allowed")),
        "{}",
        r.text
    );
}

#[tokio::test]
async fn a_forged_app_token_is_refused() {
    let (username, _) = registered("ts-forged").await;
    let (_, victim) = registered("ts-victim").await;
    let tokens = app_tokens(&username).await;
    let access = tokens["access_token"].as_str().unwrap();
    let mut claims = user_sync::outside::keycloak::unverified_claims(access).unwrap();
    claims["sub"] = json!(victim);
    let r = sync(&with_claims(access, &claims), None).await;
    assert_eq!(r.status, 401, "{}", r.text);
    assert_eq!(local_user(&victim).await.unwrap().login_count, 0);
}

#[tokio::test]
async fn an_app_session_ended_in_keycloak_is_refused_here_and_cannot_be_synced_again() {
    let (username, _) = registered("ts-ended").await;
    let tokens = app_tokens(&username).await;
    let access = tokens["access_token"].as_str().unwrap();
    let first = sync(access, None).await;
    assert_eq!(first.status, 200, "{}", first.text);
    let sid = first.body["sessionId"].as_str().unwrap();
    let (status, _) = keycloak_admin(Method::DELETE, &format!("/sessions/{sid}"), None).await;
    assert_eq!(status, 204);
    let me = call(Method::GET, "/auth/me", Some(access), None).await;
    assert_eq!(me.status, 401, "ended here by back-channel logout");
    assert_eq!(sync(access, None).await.status, 401);
}

#[tokio::test]
async fn an_app_that_hands_its_refresh_token_over_refreshes_and_logs_out_through_this_api() {
    let (username, _) = registered("ts-rt").await;
    let tokens = app_tokens(&username).await;
    let access = tokens["access_token"].as_str().unwrap();
    let r = sync(
        access,
        Some(json!({"refreshToken": tokens["refresh_token"]})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let refreshed = post(
        "/auth/refresh",
        json!({"refreshToken": tokens["refresh_token"]}),
    )
    .await;
    assert_eq!(refreshed.status, 200, "{}", refreshed.text);
    let newer = refreshed.body["tokens"]["refreshToken"].clone();
    let out = post("/auth/logout", json!({"refreshToken": newer})).await;
    assert_eq!(out.status, 204, "{}", out.text);
    let newest = refreshed.body["tokens"]["accessToken"].as_str().unwrap();
    let me = call(Method::GET, "/auth/me", Some(newest), None).await;
    assert_eq!(me.status, 401);
}

#[tokio::test]
async fn a_refresh_token_of_another_session_is_not_taken_over() {
    let (username, _) = registered("ts-other").await;
    let one = app_tokens(&username).await;
    let two = app_tokens(&username).await;
    let r = sync(
        one["access_token"].as_str().unwrap(),
        Some(json!({"refreshToken": two["refresh_token"]})),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.body["errors"][0]["field"], json!("refreshToken"));
}
