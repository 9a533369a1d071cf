//! Phase Two's keycloak-events webhooks (emulator README, "webhooks"): the subscription API and the signed
//! deliveries, received here by a small HTTP server of the test's own.

#![allow(clippy::unwrap_used)] // test crate: a failed unwrap is a failed test

mod common;

use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::hmac;
use axum::http::HeaderMap;
use common::{realm, realm_with, Kc};
use reqwest::Method;
use serde_json::{json, Value};
use tokio::sync::Mutex;

/// The demo realm with the service account allowed to manage events, and the listener on.
async fn realm_with_webhooks(listener: bool) -> Kc {
    realm_with(json!({
        "eventsListeners": if listener { json!(["jboss-logging", "ext-event-webhook"]) } else { json!(["jboss-logging"]) },
        "users": [{"username": "service-account-user-sync-admin", "enabled": true,
                   "serviceAccountClientId": "user-sync-admin", "realmRoles": ["default-roles-demo"],
                   "clientRoles": {"realm-management": ["manage-users", "view-users", "view-events", "manage-events"]}},
                  {"username": "carol", "enabled": true, "firstName": "Carol",
                   "credentials": [{"type": "password", "value": "carol-dev-password"}]}]
    }))
    .await
}

type Received = Arc<Mutex<Vec<(HeaderMap, String)>>>;

/// A receiver on a free port: records every POST; answers 500 to the first `fail_first`.
async fn receiver(fail_first: usize) -> (String, Received) {
    let received: Received = Arc::default();
    let store = Arc::clone(&received);
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let store = Arc::clone(&store);
            async move {
                let mut all = store.lock().await;
                all.push((headers, body));
                if all.len() <= fail_first {
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    axum::http::StatusCode::OK
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

async fn webhooks(kc: &Kc, method: Method, path: &str, body: Option<Value>) -> common::Resp {
    let token = kc.service_token().await;
    let mut req = reqwest::Client::new()
        .request(method, kc.url(&format!("/realms/{{realm}}/webhooks{path}")))
        .bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    common::into_resp(req.send().await.unwrap()).await
}

/// What the receiver got, once it has at least `n` deliveries (or after 5 s).
async fn deliveries(received: &Received, n: usize) -> Vec<(HeaderMap, Value)> {
    for _ in 0..100 {
        if received.lock().await.len() >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    received
        .lock()
        .await
        .iter()
        .map(|(h, b)| (h.clone(), serde_json::from_str(b).unwrap()))
        .collect()
}

fn hex_hmac(secret: &str, body: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    hmac::sign(&key, body.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test]
async fn reading_webhooks_needs_view_events_and_changing_them_manage_events() {
    let kc = realm().await; // the service account has view-events, not manage-events
    let r = webhooks(&kc, Method::GET, "", None).await;
    assert_eq!((r.status(), r.json()), (200, json!([])));
    let body = json!({"enabled": true, "url": "http://127.0.0.1:9/x", "eventTypes": ["*"]});
    assert_eq!(
        webhooks(&kc, Method::POST, "", Some(body)).await.status(),
        403
    );
}

#[tokio::test]
async fn a_subscription_is_listed_without_its_secret_and_can_be_changed_and_removed() {
    let kc = realm_with_webhooks(true).await;
    let body = json!({"enabled": "true", "url": "http://127.0.0.1:9/x", "secret": "s3cret",
                      "eventTypes": ["admin.*"]});
    let r = webhooks(&kc, Method::POST, "", Some(body)).await;
    assert_eq!(r.status(), 201, "{}", r.text);
    let id = r
        .header("location")
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    let listed = webhooks(&kc, Method::GET, "", None).await.json();
    assert_eq!(listed[0]["id"], id.as_str());
    assert_eq!(listed[0]["enabled"], true);
    assert!(listed[0].get("secret").is_none());
    let update = json!({"enabled": false, "url": "http://127.0.0.1:9/y", "eventTypes": ["*"]});
    assert_eq!(
        webhooks(&kc, Method::PUT, &format!("/{id}"), Some(update))
            .await
            .status(),
        204
    );
    let one = webhooks(&kc, Method::GET, &format!("/{id}"), None)
        .await
        .json();
    assert_eq!(
        (one["enabled"].clone(), one["url"].clone()),
        (json!(false), json!("http://127.0.0.1:9/y"))
    );
    assert_eq!(
        webhooks(&kc, Method::DELETE, &format!("/{id}"), None)
            .await
            .status(),
        204
    );
    assert_eq!(
        webhooks(&kc, Method::GET, &format!("/{id}"), None)
            .await
            .status(),
        404
    );
    let bad = json!({"url": "ftp://x", "eventTypes": ["*"]});
    assert_eq!(
        webhooks(&kc, Method::POST, "", Some(bad)).await.status(),
        400
    );
}

#[tokio::test]
async fn an_admin_change_is_sent_as_a_signed_unified_event() {
    let kc = realm_with_webhooks(true).await;
    let (url, received) = receiver(0).await;
    let body = json!({"enabled": true, "url": url, "secret": "s3cret", "eventTypes": ["admin.*"]});
    assert_eq!(
        webhooks(&kc, Method::POST, "", Some(body)).await.status(),
        201
    );
    let carol = kc.user_id("carol").await;
    let r = kc
        .admin(
            Method::PUT,
            &format!("/users/{carol}"),
            Some(json!({"firstName": "C"})),
        )
        .await;
    assert_eq!(r.status(), 204);
    let got = deliveries(&received, 1).await;
    assert_eq!(got.len(), 1, "one event, admin.* only");
    let (headers, event) = &got[0];
    assert_eq!(event["type"], "admin.USER-UPDATE");
    assert_eq!(event["resourcePath"], format!("users/{carol}"));
    assert_eq!(event["details"]["userId"], carol.as_str());
    assert!(event["uid"].as_str().is_some_and(|u| !u.is_empty()));
    let raw = received.lock().await[0].1.clone();
    assert_eq!(
        headers["x-keycloak-signature"].to_str().unwrap(),
        hex_hmac("s3cret", &raw)
    );
}

#[tokio::test]
async fn a_receiver_that_fails_gets_the_same_delivery_again() {
    let kc = realm_with_webhooks(true).await;
    let (url, received) = receiver(1).await;
    let body = json!({"enabled": true, "url": url, "secret": "s", "eventTypes": ["admin.*"]});
    webhooks(&kc, Method::POST, "", Some(body)).await;
    let carol = kc.user_id("carol").await;
    kc.admin(
        Method::PUT,
        &format!("/users/{carol}"),
        Some(json!({"lastName": "D"})),
    )
    .await;
    let got = deliveries(&received, 2).await;
    assert_eq!(got.len(), 2, "retried after the 500");
    assert_eq!(got[0].1["type"], "admin.USER-UPDATE");
    assert_eq!(got[0].1, got[1].1, "the same delivery, uid included");
}

#[tokio::test]
async fn without_the_listener_nothing_is_sent() {
    let kc = realm_with_webhooks(false).await;
    let (url, received) = receiver(0).await;
    let body = json!({"enabled": true, "url": url, "secret": "s", "eventTypes": ["*"]});
    webhooks(&kc, Method::POST, "", Some(body)).await;
    let carol = kc.user_id("carol").await;
    kc.admin(
        Method::PUT,
        &format!("/users/{carol}"),
        Some(json!({"lastName": "E"})),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(received.lock().await.is_empty());
}
