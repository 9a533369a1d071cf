//! Sign-in on Keycloak's page for server-side apps (`/auth/authorize` → Keycloak's login page →
//! `/auth/callback` → the app redeems its handle), driven over HTTP as a browser would, with
//! its refusals: an unlisted target, a forged or replayed state, a code of another sign-in
//! (its PKCE verifier does not match), a replayed handle.

#![allow(clippy::unwrap_used)]

use e2e::*;
use reqwest::Method;
use serde_json::json;

/// The one place a signed-in browser may go back to: the demo app's back end.
fn target() -> String {
    format!("{}/signed-in", stack().demo)
}

fn authorize_url(target: &str) -> String {
    let base = format!("{}/auth/authorize", stack().gateway);
    reqwest::Url::parse_with_params(&base, &[("redirect", target)])
        .unwrap()
        .to_string()
}

/// `/auth/authorize` → Keycloak's URL.
async fn begin(b: &mut Browser) -> String {
    let r = b.get(&authorize_url(&target())).await;
    assert_eq!(r.status, 302, "{}", r.text);
    let to = r.header("location").unwrap();
    assert!(to.starts_with(&format!(
        "{}/realms/{}/protocol/openid-connect/auth?",
        stack().keycloak,
        stack().realm
    )));
    to
}

/// A registered user who has not signed in yet.
async fn new_user_named(prefix: &str) -> (String, String) {
    let username = unique(prefix);
    let r = post("/auth/register", registration(&username)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    (username, r.body["user"]["id"].as_str().unwrap().to_owned())
}

async fn redeem(handle: &str) -> Resp {
    post("/auth/callback/redeem", json!({"handle": handle})).await
}

#[tokio::test]
async fn a_sign_in_on_keycloaks_page_is_recorded_and_its_app_redeems_the_answer_once() {
    let (username, id) = new_user_named("sf").await;
    let mut b = Browser::new();
    let to_keycloak = begin(&mut b).await;
    for needle in [
        "client_id=user-sync",
        "response_type=code",
        "code_challenge_method=S256",
        "scope=openid",
    ] {
        assert!(to_keycloak.contains(needle), "{needle} in {to_keycloak}");
    }
    let callback = b
        .sign_in_at(&to_keycloak, &username, "a-good-password")
        .await;
    assert!(callback.starts_with(&format!("{}/auth/callback?", stack().gateway)));
    let r = b.get(&callback).await;
    assert_eq!(r.status, 302, "{}", r.text);
    let back = r.header("location").unwrap();
    assert!(back.starts_with(&format!("{}?handle=", target())), "{back}");
    assert!(!back.contains("token"), "no token in the URL: {back}");
    let handle = query_param(&back, "handle").unwrap();
    let answer = redeem(&handle).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(answer.body["user"]["id"], json!(id));
    let access = answer.body["tokens"]["accessToken"].as_str().unwrap();
    let me = call(Method::GET, "/auth/me", Some(access), None).await;
    assert_eq!(me.status, 200, "{}", me.text);
    let local = local_user(&id).await.unwrap();
    assert_eq!(local.login_count, 1);
    assert!(local.last_login_at.is_some());
    let sid = answer.body["sessionId"].as_str().unwrap();
    assert!(store().get_session(&id, sid).await.unwrap().is_some());
    let again = redeem(&handle).await;
    assert_eq!(
        (again.status, again.body["code"].as_str()),
        (400, Some("invalid_handle"))
    );
}

#[tokio::test]
async fn a_refresh_and_a_logout_work_for_a_session_signed_in_on_keycloaks_page() {
    let (username, _) = new_user_named("sf-rt").await;
    let mut b = Browser::new();
    let to_keycloak = begin(&mut b).await;
    let callback = b
        .sign_in_at(&to_keycloak, &username, "a-good-password")
        .await;
    let back = b.get(&callback).await.header("location").unwrap();
    let answer = redeem(&query_param(&back, "handle").unwrap()).await;
    let refresh_token = answer.body["tokens"]["refreshToken"].clone();
    let refreshed = post("/auth/refresh", json!({"refreshToken": refresh_token})).await;
    assert_eq!(refreshed.status, 200, "{}", refreshed.text);
    let newer = refreshed.body["tokens"]["refreshToken"].clone();
    let out = post("/auth/logout", json!({"refreshToken": newer})).await;
    assert_eq!(out.status, 204, "{}", out.text);
    let access = refreshed.body["tokens"]["accessToken"].as_str().unwrap();
    let me = call(Method::GET, "/auth/me", Some(access), None).await;
    assert_eq!(me.status, 401);
}

#[tokio::test]
async fn an_unlisted_redirect_target_is_refused() {
    let mut b = Browser::new();
    let r = b.get(&authorize_url("https://evil.example/steal")).await;
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (400, Some("redirect_not_allowed")),
        "{}",
        r.text
    );
    let r = b.get(&format!("{}/auth/authorize", stack().gateway)).await;
    assert_eq!(r.status, 400, "no target: {}", r.text);
}

#[tokio::test]
async fn a_replayed_callback_is_refused_and_records_no_second_session() {
    let (username, id) = new_user_named("sf-replay").await;
    let mut b = Browser::new();
    let to_keycloak = begin(&mut b).await;
    let callback = b
        .sign_in_at(&to_keycloak, &username, "a-good-password")
        .await;
    assert_eq!(b.get(&callback).await.status, 302);
    let again = b.get(&callback).await;
    assert_eq!(
        (again.status, again.body["code"].as_str()),
        (400, Some("invalid_state")),
        "{}",
        again.text
    );
    assert_eq!(store().list_sessions(&id).await.unwrap().len(), 1);
    assert_eq!(local_user(&id).await.unwrap().login_count, 1);
}

#[tokio::test]
async fn a_forged_state_is_refused() {
    let mut b = Browser::new();
    let r = b
        .get(&format!(
            "{}/auth/callback?state=made-up&code=x.y.z",
            stack().gateway
        ))
        .await;
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (400, Some("invalid_state"))
    );
}

#[tokio::test]
async fn a_code_of_another_sign_in_fails_its_pkce_check_and_records_nothing() {
    let (username, id) = new_user_named("sf-inject").await;
    // The victim starts a sign-in; the attacker signs in on their own and injects the code.
    let mut victim = Browser::new();
    let victims = begin(&mut victim).await;
    let mut attacker = Browser::new();
    let attackers = begin(&mut attacker).await;
    let callback = attacker
        .sign_in_at(&attackers, &username, "a-good-password")
        .await;
    let code = query_param(&callback, "code").unwrap();
    let victim_state = query_param(&victims, "state").unwrap();
    let injected = format!(
        "{}/auth/callback?state={victim_state}&code={code}",
        stack().gateway
    );
    let r = victim.get(&injected).await;
    assert_eq!(r.status, 302, "{}", r.text);
    assert_eq!(
        r.header("location").unwrap(),
        format!("{}?error=sign_in_failed", target())
    );
    assert!(store().list_sessions(&id).await.unwrap().is_empty());
    assert_eq!(local_user(&id).await.unwrap().login_count, 0);
}

#[tokio::test]
async fn an_error_keycloak_sends_back_reaches_the_app_and_records_nothing() {
    let mut b = Browser::new();
    let to_keycloak = begin(&mut b).await;
    let state = query_param(&to_keycloak, "state").unwrap();
    let r = b
        .get(&format!(
            "{}/auth/callback?error=access_denied&state={state}",
            stack().gateway
        ))
        .await;
    assert_eq!(
        r.header("location").unwrap(),
        format!("{}?error=access_denied", target())
    );
}

#[tokio::test]
async fn a_made_up_handle_is_refused() {
    let r = redeem("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").await;
    assert_eq!(r.body["code"], json!("invalid_handle"), "{}", r.text);
    let r = redeem("not base64 at all!").await;
    assert_eq!(r.body["code"], json!("invalid_handle"), "{}", r.text);
}

#[tokio::test]
async fn a_callback_an_attacker_completed_signs_no_one_in_in_another_browser() {
    // Login CSRF: the attacker signs in as themself and sends the callback URL to a victim.
    let (attacker_name, attacker_id) = new_user_named("sf-csrf").await;
    let mut attacker = Browser::new();
    let to_keycloak = begin(&mut attacker).await;
    let callback = attacker
        .sign_in_at(&to_keycloak, &attacker_name, "a-good-password")
        .await;
    let mut victim = Browser::new();
    let r = victim.get(&callback).await;
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (400, Some("invalid_state")),
        "{}",
        r.text
    );
    assert!(store()
        .list_sessions(&attacker_id)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        attacker.get(&callback).await.status,
        400,
        "the state is spent"
    );
}
