//! Sign-in paths the e2e suites cannot reach with the demo realm and the local stack's settings,
//! against DynamoDB Local and the emulator: a logout token without `sid` (a client without
//! `backchannel.logout.session.required`) ends every session of its user, and a login with the
//! password grant switched off.

#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use user_sync::features::backchannel::{self, LogoutRequest};
use user_sync::features::sessions::{self, LoginRequest};
use user_sync::rules::request::Origin;

use crate::common;

/// A receiver of back-channel logouts: the tokens it got.
async fn receiver() -> (String, Arc<Mutex<Vec<String>>>) {
    let got: Arc<Mutex<Vec<String>>> = Arc::default();
    let kept = Arc::clone(&got);
    let app = axum::Router::new().route(
        "/logout",
        axum::routing::post(move |body: axum::body::Bytes| {
            let kept = Arc::clone(&kept);
            async move {
                if let Some((_, t)) =
                    form_urlencoded::parse(&body).find(|(k, _)| k == "logout_token")
                {
                    kept.lock().unwrap().push(t.into_owned());
                }
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/logout", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, got)
}

/// The demo realm with the login client's back-channel logouts sent to `url`, without `sid`.
async fn realm_without_sid(url: &str) -> common::Realm {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../infra/keycloak/realm.json"
    ))
    .unwrap();
    let mut export: Value = serde_json::from_str(&text).unwrap();
    for c in export["clients"].as_array_mut().unwrap() {
        if c["clientId"] == json!(common::CLIENT) {
            let attributes = c["attributes"].as_object_mut().unwrap();
            attributes.insert("backchannel.logout.url".into(), json!(url));
            attributes.remove("backchannel.logout.session.required");
        }
    }
    common::realm_with(json!({"clients": export["clients"]})).await
}

#[tokio::test]
async fn a_logout_token_without_sid_ends_every_session_of_the_user() {
    let (url, got) = receiver().await;
    let realm = realm_without_sid(&url).await;
    let services = common::services(&realm, &[]).await;
    let carol = LoginRequest {
        username: "carol".into(),
        password: "carol-dev-password".into(),
    };
    let first = sessions::login(&services, &carol, &Origin::default())
        .await
        .unwrap();
    let second = sessions::login(&services, &carol, &Origin::default())
        .await
        .unwrap();
    let id = first.user.id.clone();
    // Keycloak's own "sign out" of one session: its token names the user only.
    services
        .keycloak
        .delete_session(&first.session_id)
        .await
        .unwrap();
    let token = got.lock().unwrap()[0].clone();
    let ended = backchannel::logout(
        &services,
        &LogoutRequest {
            logout_token: token,
        },
    )
    .await
    .unwrap();
    assert_eq!((ended.sid, ended.sessions), (None, 2));
    for sid in [&first.session_id, &second.session_id] {
        let session = services.store.get_session(&id, sid).await.unwrap().unwrap();
        assert!(session.ended_at.is_some(), "{sid} ended");
    }
}

/// With the password grant switched off (`PASSWORD_LOGIN_ENABLED=false`), `POST /auth/login` is
/// a 404 and Keycloak is never asked.
#[tokio::test]
async fn with_the_password_grant_switched_off_a_login_is_not_found_and_keycloak_is_not_asked() {
    let realm = common::realm().await;
    let services = common::services(&realm, &[("PASSWORD_LOGIN_ENABLED", "false")]).await;
    let counter = realm
        .fault(
            json!({"method": "POST", "path": "/realms/{realm}/protocol/openid-connect/token",
                      "latencyMs": 0}),
        )
        .await;
    let carol = LoginRequest {
        username: "carol".into(),
        password: "carol-dev-password".into(),
    };
    let refused = sessions::login(&services, &carol, &Origin::default()).await;
    assert!(matches!(refused, Err(user_sync::Error::NotFound)));
    assert_eq!(realm.hits(&counter).await, 0);
}
