//! Near-real-time sync from Keycloak's webhooks, through the local stack: the emulator sends its
//! events (as Phase Two's extension does) to the gateway's /hooks/keycloak, the hook queues them
//! on the FIFO queue in moto, the local event source mapping runs the consumer.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use e2e::*;
use reqwest::Method;
use serde_json::json;
use user_sync::outside::store::User;

/// A delivery as the extension sends it for an admin update of `user`.
fn user_update_event(uid: &str, user: &str) -> String {
    user_update_event_at(uid, user, user_sync::base::clock::now_ms())
}

/// The same, for an event Keycloak recorded at `time` (epoch ms).
fn user_update_event_at(uid: &str, user: &str, time: i64) -> String {
    json!({
        "uid": uid, "type": "admin.USER-UPDATE", "time": time,
        "realmId": stack().realm, "resourceType": "USER", "operationType": "UPDATE",
        "resourcePath": format!("users/{user}"),
        "authDetails": {"realmId": "master", "clientId": "some-admin-console", "userId": "someone"},
        "details": {"userId": user}
    })
    .to_string()
}

/// The user's local record once `done` holds for it, waiting at most `limit`.
async fn local_within(id: &str, limit: Duration, done: impl Fn(&User) -> bool) -> Option<User> {
    let started = Instant::now();
    loop {
        if let Some(u) = local_user(id).await.filter(|u| done(u)) {
            return Some(u);
        }
        if started.elapsed() > limit {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A registered user (Keycloak and the store), and their id.
async fn registered(prefix: &str) -> String {
    let username = unique(prefix);
    let r = post("/auth/register", registration(&username)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.body["user"]["id"].as_str().unwrap().to_owned()
}

/// The first delivery of a test binary starts the hook and the consumer under `cargo lambda
/// watch` (a `cargo run` each, seconds, nothing like Lambda's cold start): one change is carried
/// through first, so that the 3-second specs time the path, not the local tooling starting up.
async fn warm() {
    static WARM: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    WARM.get_or_init(|| async {
        let id = registered("hook-warm").await;
        keycloak_admin(
            Method::PUT,
            &format!("/users/{id}"),
            Some(json!({"firstName": "Warm"})),
        )
        .await;
        let warm = local_within(&id, Duration::from_secs(60), |u| {
            u.keycloak.first_name.as_deref() == Some("Warm")
        })
        .await;
        assert!(warm.is_some(), "the webhook path does not work at all");
    })
    .await;
}

async fn last_sync_run() -> Option<String> {
    store().sync_state().await.unwrap().last_run_id
}

#[tokio::test]
async fn a_name_changed_in_keycloak_is_in_the_store_within_3_seconds_without_a_sync_run() {
    warm().await;
    let id = registered("hook-name").await;
    let runs_before = last_sync_run().await;
    let (status, _) = keycloak_admin(
        Method::PUT,
        &format!("/users/{id}"),
        Some(json!({"firstName": "Renamed"})),
    )
    .await;
    assert_eq!(status, 204);
    let local = local_within(&id, Duration::from_secs(3), |u| {
        u.keycloak.first_name.as_deref() == Some("Renamed")
    })
    .await;
    assert!(local.is_some(), "not applied within 3 s");
    assert_eq!(last_sync_run().await, runs_before, "no sync run did it");
}

#[tokio::test]
async fn a_user_disabled_in_keycloak_is_disabled_in_the_store_within_3_seconds() {
    warm().await;
    let id = registered("hook-disable").await;
    let (status, _) = keycloak_admin(
        Method::PUT,
        &format!("/users/{id}"),
        Some(json!({"enabled": false})),
    )
    .await;
    assert_eq!(status, 204);
    let local = local_within(&id, Duration::from_secs(3), |u| !u.keycloak.enabled).await;
    assert_eq!(
        local.map(|u| u.status),
        Some(user_sync::outside::store::UserStatus::Disabled)
    );
}

#[tokio::test]
async fn a_role_granted_in_keycloak_is_in_the_store_within_3_seconds() {
    warm().await;
    let id = registered("hook-role").await;
    grant_realm_role(&id, "manager").await;
    let local = local_within(&id, Duration::from_secs(3), |u| {
        u.keycloak.roles.iter().any(|r| r == "manager")
    })
    .await;
    assert!(local.is_some(), "the role was not applied within 3 s");
}

#[tokio::test]
async fn a_delivery_with_a_wrong_or_missing_signature_is_401_and_nothing_is_queued() {
    let id = registered("hook-forged").await;
    // Let the registration's own webhook be applied, then count every read of this user: a
    // queued event would make the consumer read them.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let reads =
        fault(json!({"method": "GET", "path": format!("/admin/realms/{{realm}}/users/{id}")}))
            .await;
    let body = user_update_event(&unique("forged"), &id);
    let wrong = user_sync::features::hooks::sign(b"not-the-secret", body.as_bytes());
    let of_another_body =
        user_sync::features::hooks::sign(webhook_secret().await.as_bytes(), b"{}");
    for signature in [
        Some(wrong.as_str()),
        Some(of_another_body.as_str()),
        None,
        Some(""),
    ] {
        let r = deliver_webhook(&body, signature).await;
        assert_eq!(r.status, 401, "{signature:?}: {}", r.text);
        assert_eq!(
            r.header("content-type").as_deref(),
            Some("application/problem+json")
        );
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(fault_hits(&reads).await, 0, "nothing was queued");
    // The same body correctly signed is queued and read: the count above can tell.
    let good = user_sync::features::hooks::sign(webhook_secret().await.as_bytes(), body.as_bytes());
    assert_eq!(deliver_webhook(&body, Some(&good)).await.status, 202);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(fault_hits(&reads).await, 1);
    clear_fault(&reads).await;
}

#[tokio::test]
async fn a_body_over_64_kib_is_413() {
    let body = json!({"type": "admin.USER-UPDATE", "padding": "x".repeat(70 * 1024)}).to_string();
    let signature =
        user_sync::features::hooks::sign(webhook_secret().await.as_bytes(), body.as_bytes());
    let r = deliver_webhook(&body, Some(&signature)).await;
    assert_eq!(r.status, 413, "{}", r.text);
}

#[tokio::test]
async fn an_event_that_does_not_concern_a_user_is_acknowledged_and_dropped() {
    let body = json!({"uid": unique("login"), "type": "access.LOGIN", "time": 1,
                      "authDetails": {"userId": "someone"}})
    .to_string();
    let signature =
        user_sync::features::hooks::sign(webhook_secret().await.as_bytes(), body.as_bytes());
    let r = deliver_webhook(&body, Some(&signature)).await;
    assert_eq!(
        (r.status, r.body["status"].as_str()),
        (202, Some("ignored"))
    );
}

#[tokio::test]
async fn the_same_event_delivered_twice_is_applied_once() {
    let id = registered("hook-twice").await;
    // Every read of this user by id is counted (a rule with no delay and no status).
    let reads =
        fault(json!({"method": "GET", "path": format!("/admin/realms/{{realm}}/users/{id}")}))
            .await;
    let secret = webhook_secret().await;
    let body = user_update_event(&unique("twice"), &id);
    let signature = user_sync::features::hooks::sign(secret.as_bytes(), body.as_bytes());
    for expected in ["queued", "duplicate"] {
        let r = deliver_webhook(&body, Some(&signature)).await;
        assert_eq!(
            (r.status, r.body["status"].as_str()),
            (202, Some(expected)),
            "{}",
            r.text
        );
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(fault_hits(&reads).await, 1, "one delivery applied");
    // Another event for the same user is applied: the count above can tell.
    let other = user_update_event(&unique("third"), &id);
    let signature = user_sync::features::hooks::sign(secret.as_bytes(), other.as_bytes());
    assert_eq!(deliver_webhook(&other, Some(&signature)).await.status, 202);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(fault_hits(&reads).await, 2);
    clear_fault(&reads).await;
}

#[tokio::test]
async fn with_keycloak_failing_a_change_is_retried_lands_in_the_dlq_and_the_next_incremental_sync_applies_it(
) {
    let id = registered("hook-dlq").await;
    // A first incremental run sets the event cursor (a first run reconciles fully).
    run_sync("incremental").await;
    let failing = fault(
        json!({"method": "GET", "path": format!("/admin/realms/{{realm}}/users/{id}"),
                              "status": 503}),
    )
    .await;
    keycloak_admin(
        Method::PUT,
        &format!("/users/{id}"),
        Some(json!({"lastName": "AfterTheOutage"})),
    )
    .await;
    // 5 receives, postponed 1 + 2 + 4 + 8 s locally, then the dead-letter queue.
    let started = Instant::now();
    let dead = loop {
        let dead = queue_messages("HookDlq.fifo").await;
        if let Some(m) = dead.into_iter().find(|m| m["userId"] == id.as_str()) {
            break m;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "not in the DLQ after 90 s"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    assert_eq!(dead["kind"], "admin.USER-UPDATE");
    assert!(fault_hits(&failing).await >= 5, "read at each attempt");
    assert_ne!(
        local_user(&id).await.unwrap().keycloak.last_name.as_deref(),
        Some("AfterTheOutage")
    );
    clear_fault(&failing).await;
    let run = run_sync("incremental").await;
    assert!(matches!(run["status"].as_str(), Some("succeeded")), "{run}");
    assert!(run["counts"]["drift"].as_u64().unwrap() >= 1, "{run}");
    assert_eq!(
        local_user(&id).await.unwrap().keycloak.last_name.as_deref(),
        Some("AfterTheOutage")
    );
}

#[tokio::test]
async fn a_genuine_delivery_from_two_days_ago_or_from_the_future_is_refused_and_nothing_is_queued()
{
    let id = registered("hook-stale").await;
    let reads =
        fault(json!({"method": "GET", "path": format!("/admin/realms/{{realm}}/users/{id}")}))
            .await;
    let secret = webhook_secret().await;
    let now = user_sync::base::clock::now_ms();
    for time in [now - 2 * 24 * 3600 * 1000, now + 3600 * 1000] {
        let body = user_update_event_at(&unique("stale"), &id, time);
        let signature = user_sync::features::hooks::sign(secret.as_bytes(), body.as_bytes());
        let r = deliver_webhook(&body, Some(&signature)).await;
        assert_eq!(
            (r.status, r.body["code"].as_str()),
            (400, Some("stale_event")),
            "{}",
            r.text
        );
    }
    // Still fresh: inside the sender's retry horizon.
    let body = user_update_event_at(&unique("late"), &id, now - 10 * 60 * 1000);
    let signature = user_sync::features::hooks::sign(secret.as_bytes(), body.as_bytes());
    assert_eq!(deliver_webhook(&body, Some(&signature)).await.status, 202);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        fault_hits(&reads).await,
        1,
        "only the fresh one was applied"
    );
    clear_fault(&reads).await;
}

#[tokio::test]
async fn a_replayed_delivery_after_the_queues_window_is_still_dropped() {
    let id = registered("hook-replay").await;
    let secret = webhook_secret().await;
    let body = user_update_event(&unique("replay"), &id);
    let signature = user_sync::features::hooks::sign(secret.as_bytes(), body.as_bytes());
    assert_eq!(
        deliver_webhook(&body, Some(&signature)).await.body["status"],
        "queued"
    );
    // What SQS's five-minute deduplication no longer covers is the hook's own record: it holds
    // for the whole freshness window (its TTL), whatever the queue remembers.
    let digest = user_sync::features::hooks::deduplication_id(
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["uid"]
            .as_str()
            .unwrap(),
    );
    let item = dynamodb()
        .get_item()
        .table_name(&stack().table)
        .key(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S(format!("HOOK_EVENT#{digest}")),
        )
        .key(
            "sk",
            aws_sdk_dynamodb::types::AttributeValue::S("EVENT".into()),
        )
        .send()
        .await
        .unwrap()
        .item
        .expect("the event is remembered");
    let until: i64 = item["expires_at"].as_n().unwrap().parse().unwrap();
    let now_s = user_sync::base::clock::now_ms() / 1000;
    assert!(
        until >= now_s + 20 * 60,
        "kept past the freshness window: {until}"
    );
    let r = deliver_webhook(&body, Some(&signature)).await;
    assert_eq!(
        (r.status, r.body["status"].as_str()),
        (202, Some("duplicate")),
        "{}",
        r.text
    );
}

#[tokio::test]
async fn a_signed_user_delete_for_a_live_user_changes_nothing() {
    let id = registered("hook-falsedelete").await;
    let before = local_user(&id).await.unwrap();
    let body = json!({
        "uid": unique("falsedelete"), "type": "admin.USER-DELETE",
        "time": user_sync::base::clock::now_ms(), "realmId": stack().realm, "resourceType": "USER",
        "operationType": "DELETE", "resourcePath": format!("users/{id}"),
        "authDetails": {"realmId": "master", "clientId": "console", "userId": "someone"}
    })
    .to_string();
    let signature =
        user_sync::features::hooks::sign(webhook_secret().await.as_bytes(), body.as_bytes());
    let r = deliver_webhook(&body, Some(&signature)).await;
    assert_eq!(r.status, 202, "{}", r.text);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = local_user(&id).await.unwrap();
    assert_eq!(
        (after.status, after.keycloak.enabled, after.version),
        (before.status, before.keycloak.enabled, before.version),
        "the consumer read Keycloak, which still has the user"
    );
}
