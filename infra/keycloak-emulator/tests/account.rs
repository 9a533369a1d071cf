//! Contract §2.4: the account API ends a user's own session with the user's own token.

#![allow(clippy::unwrap_used)] // test crate: a failed unwrap is a failed test

mod common;

use common::{claims, realm, realm_with, Kc};
use reqwest::Method;

async fn end(kc: &Kc, token: &str, sid: &str) -> u16 {
    kc.http
        .request(
            Method::DELETE,
            kc.url(&format!("/realms/{{realm}}/account/sessions/{sid}")),
        )
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn session_of(tokens: &serde_json::Value) -> (String, String) {
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let sid = claims(&access)["sid"].as_str().unwrap().to_owned();
    (access, sid)
}

#[tokio::test]
async fn a_user_ends_their_own_other_session() {
    let kc = realm().await;
    let (phone, phone_sid) = session_of(&kc.tokens("carol", "carol-dev-password").await);
    let laptop = kc.tokens("carol", "carol-dev-password").await;
    let (_, laptop_sid) = session_of(&laptop);
    assert_eq!(end(&kc, &phone, &laptop_sid).await, 204);
    let r = kc.refresh(laptop["refresh_token"].as_str().unwrap()).await;
    assert_eq!(r.status(), 400, "the ended session's refresh token dies");
    let carol = kc.user_id("carol").await;
    let left = kc.get(&format!("/users/{carol}/sessions")).await;
    assert_eq!(left.as_array().unwrap().len(), 1);
    assert_eq!(left[0]["id"], phone_sid.as_str());
}

#[tokio::test]
async fn another_users_session_is_left_alone_and_the_answer_is_the_same() {
    let kc = realm().await;
    let (carol, _) = session_of(&kc.tokens("carol", "carol-dev-password").await);
    let bob = kc.tokens("bob", "bob-dev-password").await;
    let (_, bob_sid) = session_of(&bob);
    assert_eq!(end(&kc, &carol, &bob_sid).await, 204);
    assert_eq!(end(&kc, &carol, "no-such-session").await, 204);
    let r = kc.refresh(bob["refresh_token"].as_str().unwrap()).await;
    assert_eq!(r.status(), 200, "bob's session lives on");
}

#[tokio::test]
async fn without_a_valid_user_token_the_account_api_is_401() {
    let kc = realm().await;
    let (_, sid) = session_of(&kc.tokens("carol", "carol-dev-password").await);
    assert_eq!(end(&kc, "not-a-token", &sid).await, 401);
    let no_bearer = kc
        .http
        .delete(kc.url(&format!("/realms/{{realm}}/account/sessions/{sid}")))
        .send()
        .await
        .unwrap();
    assert_eq!(no_bearer.status(), 401);
}

#[tokio::test]
async fn without_manage_account_the_account_api_is_403() {
    let kc = realm_with_user_without_account_roles().await;
    let (token, sid) = session_of(&kc.tokens("carol", "carol-dev-password").await);
    assert_eq!(end(&kc, &token, &sid).await, 403);
}

/// The demo realm with `view-profile` as the only account role of default users: tokens still
/// carry the `account` audience, but not `manage-account`.
async fn realm_with_user_without_account_roles() -> Kc {
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/../keycloak/realm.json");
    let export: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    let mut roles = export["roles"]["realm"].clone();
    for role in roles.as_array_mut().unwrap() {
        if role["name"] == "default-roles-demo" {
            role["composites"]["client"]["account"] = serde_json::json!(["view-profile"]);
        }
    }
    realm_with(serde_json::json!({"roles": {"realm": roles}})).await
}
