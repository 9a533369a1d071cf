//! Back-channel logout: a session ended in Keycloak (an admin's "sign out", a logout elsewhere)
//! ends here at once, through Keycloak's own delivery to `POST /auth/backchannel-logout`; a
//! replayed, forged, confused or foreign token is refused and ends nothing.

#![allow(clippy::unwrap_used)]

use e2e::*;
use reqwest::Method;
use serde_json::{json, Value};

/// The logout tokens the emulator sent for `user_id`, with the gateway's answers.
async fn logout_tokens_sent_for(user_id: &str) -> Vec<Value> {
    let sent: Value = http()
        .get(format!(
            "{}/_emulator/backchannel-logouts",
            stack().keycloak
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    sent.as_array()
        .unwrap()
        .iter()
        .filter(|d| claims(d["logoutToken"].as_str().unwrap())["sub"] == json!(user_id))
        .cloned()
        .collect()
}

fn claims(jwt: &str) -> Value {
    user_sync::outside::keycloak::unverified_claims(jwt).unwrap()
}

async fn post_logout_token(token: &str) -> Resp {
    let r = http()
        .post(format!("{}/auth/backchannel-logout", stack().gateway))
        .form(&[("logout_token", token)])
        .send()
        .await
        .unwrap();
    read(r).await
}

async fn me(access: &str) -> u16 {
    call(Method::GET, "/auth/me", Some(access), None)
        .await
        .status
}

fn access_of(login: &Value) -> String {
    login["tokens"]["accessToken"].as_str().unwrap().to_owned()
}

/// A user signed in, whose session an admin then ends in Keycloak's console.
async fn signed_out_in_keycloak(prefix: &str) -> (Value, String) {
    let (_, login) = signed_in_user(prefix).await;
    let sid = login["sessionId"].as_str().unwrap().to_owned();
    let (status, _) = keycloak_admin(Method::DELETE, &format!("/sessions/{sid}"), None).await;
    assert_eq!(status, 204);
    (login, sid)
}

#[tokio::test]
async fn a_session_an_admin_ends_in_keycloak_is_refused_here_at_once() {
    let (login, sid) = signed_out_in_keycloak("bcl").await;
    assert_eq!(
        me(&access_of(&login)).await,
        401,
        "the next call is refused"
    );
    let id = login["user"]["id"].as_str().unwrap();
    let session = store().get_session(id, &sid).await.unwrap().unwrap();
    assert!(session.ended_at.is_some());
    assert_eq!(
        session.end_reason,
        Some(user_sync::outside::store::SessionEnd::EndedInKeycloak)
    );
    let sent = logout_tokens_sent_for(id).await;
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0]["status"],
        json!(200),
        "the gateway's answer to Keycloak"
    );
}

#[tokio::test]
async fn a_logout_elsewhere_through_keycloak_ends_the_session_here() {
    let (_, login) = signed_in_user("bcl-else").await;
    let s = stack();
    // Another application of the same session logs out at Keycloak's end-session endpoint.
    let r = http()
        .post(format!(
            "{}/realms/{}/protocol/openid-connect/logout",
            s.keycloak, s.realm
        ))
        .form(&[
            ("client_id", "user-sync"),
            (
                "client_secret",
                "dev-only-user-sync-secret-not-for-production",
            ),
            (
                "refresh_token",
                login["tokens"]["refreshToken"].as_str().unwrap(),
            ),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(me(&access_of(&login)).await, 401);
}

#[tokio::test]
async fn a_replayed_logout_token_is_refused() {
    let (login, _) = signed_out_in_keycloak("bcl-replay").await;
    let id = login["user"]["id"].as_str().unwrap();
    let token = logout_tokens_sent_for(id).await[0]["logoutToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = post_logout_token(&token).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.body["code"], json!("logout_token_replayed"));
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/problem+json")
    );
}

#[tokio::test]
async fn a_logout_token_altered_to_name_another_user_is_refused_and_ends_nothing() {
    let (victim_name, victim) = signed_in_user("bcl-victim").await;
    let (login, _) = signed_out_in_keycloak("bcl-forger").await;
    let id = login["user"]["id"].as_str().unwrap();
    let token = logout_tokens_sent_for(id).await[0]["logoutToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut forged = claims(&token);
    forged["sub"] = victim["user"]["id"].clone();
    forged["sid"] = victim["sessionId"].clone();
    forged["jti"] = json!(unique("jti"));
    let r = post_logout_token(&with_claims(&token, &forged)).await;
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (400, Some("invalid_logout_token")),
        "{}",
        r.text
    );
    assert_eq!(
        me(&access_of(&victim)).await,
        200,
        "{victim_name} is still signed in"
    );
}

#[tokio::test]
async fn an_access_token_posted_as_a_logout_token_is_refused() {
    let (_, login) = signed_in_user("bcl-confused").await;
    let r = post_logout_token(&access_of(&login)).await;
    assert_eq!(r.body["code"], json!("invalid_logout_token"), "{}", r.text);
    assert_eq!(me(&access_of(&login)).await, 200);
}

#[tokio::test]
async fn a_logout_token_that_is_not_a_form_is_refused() {
    let r = call(
        Method::POST,
        "/auth/backchannel-logout",
        None,
        Some(json!({"logout_token": "x"})),
    )
    .await;
    assert_eq!(r.status, 415, "{}", r.text);
}

#[tokio::test]
async fn a_logout_token_of_another_realm_is_refused_and_ends_nothing_here() {
    let s = stack();
    let (username, login) = signed_in_user("bcl-realm").await;
    let id = login["user"]["id"].as_str().unwrap().to_owned();
    // Another realm with the same user (same id), whose login client also points its
    // back-channel logout at this gateway.
    let other = unique("other-realm");
    let twin = json!({"id": id, "username": username, "email": format!("{username}@example.org"),
        "enabled": true, "emailVerified": true, "firstName": "Test", "lastName": "User",
        "credentials": [{"type": "password", "value": "a-good-password", "temporary": false}]});
    let r = http()
        .post(format!("{}/_emulator/realms", s.keycloak))
        .json(&json!({"name": other, "from": s.realm, "patch": {"users": [twin]}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let tokens: Value = http()
        .post(format!(
            "{}/realms/{other}/protocol/openid-connect/token",
            s.keycloak
        ))
        .form(&[
            ("grant_type", "password"),
            ("client_id", "user-sync"),
            (
                "client_secret",
                "dev-only-user-sync-secret-not-for-production",
            ),
            ("username", username.as_str()),
            ("password", "a-good-password"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let r = http()
        .post(format!(
            "{}/realms/{other}/protocol/openid-connect/logout",
            s.keycloak
        ))
        .form(&[
            ("client_id", "user-sync"),
            (
                "client_secret",
                "dev-only-user-sync-secret-not-for-production",
            ),
            (
                "refresh_token",
                tokens["refresh_token"].as_str().unwrap_or_default(),
            ),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204, "{tokens}");
    let sent = logout_tokens_sent_for(&id).await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    let iss = claims(sent[0]["logoutToken"].as_str().unwrap())["iss"].clone();
    assert!(iss.as_str().unwrap().ends_with(&format!("/realms/{other}")));
    assert_eq!(sent[0]["status"], json!(400), "the gateway refused it");
    assert_eq!(me(&access_of(&login)).await, 200, "still signed in here");
}
