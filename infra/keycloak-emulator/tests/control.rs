//! The `/_emulator/` control API: faults, rate limits, latency, clock, clones, bulk users, stats.

#![allow(clippy::unwrap_used)] // test crate: a failed unwrap is a failed test

mod common;

use std::time::{Duration, Instant};

use common::realm;
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn fault_rule_fails_the_next_n_matching_calls_then_stops() {
    let kc = realm().await;
    kc.fault(json!({"method": "POST", "path": format!("/realms/{}/protocol/openid-connect/token", kc.realm), "status": 503, "times": 2}))
        .await;
    for _ in 0..2 {
        let r = kc.login("carol", "carol-dev-password").await;
        assert_eq!(r.status(), 503);
        assert_eq!(r.json()["error"], "unknown_error");
    }
    assert_eq!(kc.login("carol", "carol-dev-password").await.status(), 200);
}

#[tokio::test]
async fn fault_rule_can_carry_a_custom_body_and_only_matches_its_method() {
    let kc = realm().await;
    kc.fault(json!({"method": "GET", "path": format!("/admin/realms/{}/users/*", kc.realm), "status": 500, "body": {"error": "boom"}, "times": 1}))
        .await;
    let id = kc.user_id("carol").await; // list call: path has no trailing segment, not matched
    let r = kc.admin(Method::GET, &format!("/users/{id}"), None).await;
    assert_eq!((r.status(), r.json()), (500, json!({"error": "boom"})));
    assert_eq!(
        kc.admin(Method::GET, &format!("/users/{id}"), None)
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn rate_limit_rule_answers_429_with_retry_after_beyond_the_budget() {
    let kc = realm().await;
    kc.fault(json!({"path": format!("/realms/{}/protocol/openid-connect/token", kc.realm), "perSecond": 2, "retryAfter": 1}))
        .await;
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..4 {
        let r = kc.login("carol", "carol-dev-password").await;
        if r.status() == 429 {
            retry_after = r.header("retry-after");
        }
        statuses.push(r.status());
    }
    assert_eq!(&statuses[..2], &[200, 200]);
    assert!(statuses[2..].contains(&429), "{statuses:?}");
    assert_eq!(retry_after.as_deref(), Some("1"));
}

#[tokio::test]
async fn fault_rule_can_match_on_the_request_body() {
    let kc = realm().await;
    kc.fault(json!({"path": format!("/realms/{}/protocol/openid-connect/token", kc.realm), "bodyContains": "username=bob", "status": 503}))
        .await;
    assert_eq!(kc.login("bob", "bob-dev-password").await.status(), 503);
    assert_eq!(kc.login("carol", "carol-dev-password").await.status(), 200);
}

#[tokio::test]
async fn fault_rule_can_match_on_the_query_string() {
    let kc = realm().await;
    kc.fault(json!({"method": "GET", "path": format!("/admin/realms/{}/users", kc.realm), "queryContains": "first=1&", "status": 200, "body": []}))
        .await;
    assert_eq!(kc.get("/users?first=1&max=1").await, json!([]));
    assert_eq!(
        kc.get("/users?first=0&max=1")
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn latency_rule_delays_without_failing() {
    let kc = realm().await;
    kc.fault(json!({"path": format!("/realms/{}/protocol/openid-connect/certs", kc.realm), "latencyMs": 300, "times": 1}))
        .await;
    let started = Instant::now();
    let r = kc
        .raw(
            Method::GET,
            "/realms/{realm}/protocol/openid-connect/certs",
            None,
        )
        .await;
    assert_eq!(r.status(), 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn an_after_rule_does_the_work_and_answers_the_fault_instead() {
    let kc = realm().await;
    kc.fault(
        json!({"method": "POST", "path": "/admin/realms/*/users", "bodyContains": "\"late-503\"",
                    "after": true, "status": 503, "times": 1}),
    )
    .await;
    let r = kc
        .admin(Method::POST, "/users", Some(common::new_user("late-503")))
        .await;
    assert_eq!(r.status(), 503, "{}", r.text);
    let found = kc.get("/users?username=late-503&exact=true").await;
    assert_eq!(found.as_array().unwrap().len(), 1, "the user was created");
}

#[tokio::test]
async fn an_after_rule_can_lose_the_answer_of_a_request_it_let_finish() {
    let kc = realm().await;
    kc.fault(
        json!({"method": "POST", "path": "/admin/realms/*/users", "bodyContains": "\"lost-answer\"",
                    "after": true, "drop": true, "times": 1}),
    )
    .await;
    let token = kc.service_token().await;
    let sent = reqwest::Client::new()
        .post(kc.url("/admin/realms/{realm}/users"))
        .bearer_auth(token)
        .json(&common::new_user("lost-answer"))
        .timeout(Duration::from_millis(700))
        .send()
        .await;
    assert!(sent.is_err_and(|e| e.is_timeout()), "no answer comes");
    let found = kc.get("/users?username=lost-answer&exact=true").await;
    assert_eq!(found.as_array().unwrap().len(), 1, "the user was created");
}

#[tokio::test]
async fn a_slow_request_whose_caller_hung_up_is_still_handled() {
    let kc = realm().await;
    kc.fault(
        json!({"method": "POST", "path": "/admin/realms/*/users", "bodyContains": "\"hung-up\"",
                    "latencyMs": 500, "times": 1}),
    )
    .await;
    let token = kc.service_token().await;
    let sent = reqwest::Client::new()
        .post(kc.url("/admin/realms/{realm}/users"))
        .bearer_auth(token)
        .json(&common::new_user("hung-up"))
        .timeout(Duration::from_millis(100))
        .send()
        .await;
    assert!(sent.is_err_and(|e| e.is_timeout()));
    assert_eq!(
        kc.get("/users?username=hung-up&exact=true").await,
        json!([])
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    let found = kc.get("/users?username=hung-up&exact=true").await;
    assert_eq!(found.as_array().unwrap().len(), 1, "Keycloak finished it");
}

#[tokio::test]
async fn a_rule_that_drops_an_answer_needs_after() {
    let kc = realm().await;
    let r = kc
        .raw(
            Method::POST,
            "/_emulator/faults",
            Some(json!({"path": "/x", "drop": true})),
        )
        .await;
    assert_eq!(r.status(), 400, "{}", r.text);
}

#[tokio::test]
async fn clones_do_not_share_state() {
    let a = realm().await;
    let b = realm().await;
    a.create_user(common::new_user("only-in-a")).await;
    assert_eq!(
        a.get("/users?username=only-in-a")
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(b.get("/users?username=only-in-a").await, json!([]));
}

#[tokio::test]
async fn realm_reset_restores_the_imported_state() {
    let kc = realm().await;
    kc.create_user(common::new_user("temp")).await;
    kc.advance_clock(100).await;
    let r = kc
        .raw(Method::POST, "/_emulator/realms/{realm}/reset", None)
        .await;
    assert_eq!(r.status(), 204);
    assert_eq!(kc.get("/users?username=temp").await, json!([]));
    let clock = kc
        .raw(Method::GET, "/_emulator/realms/{realm}/clock", None)
        .await
        .json();
    assert_eq!(clock, json!({"offsetSeconds": 0}));
}

#[tokio::test]
async fn cloning_an_existing_name_is_409() {
    let kc = realm().await;
    let r = kc
        .raw(
            Method::POST,
            "/_emulator/realms",
            Some(json!({"name": kc.realm, "from": "demo"})),
        )
        .await;
    assert_eq!(r.status(), 409);
}

#[tokio::test]
async fn bulk_creates_users_that_can_log_in() {
    let kc = realm().await;
    let r = kc
        .raw(
            Method::POST,
            "/_emulator/realms/{realm}/users/bulk",
            Some(json!({"count": 1000, "prefix": "bulk", "password": "bulk-password", "attributes": {"organization": ["Acme"]}})),
        )
        .await;
    assert_eq!((r.status(), r.json()), (201, json!({"created": 1000})));
    assert_eq!(kc.get("/users/count").await, json!(1003));
    assert_eq!(kc.login("bulk000999", "bulk-password").await.status(), 200);
    let u = &kc.get("/users?username=bulk000001&exact=true").await[0];
    assert_eq!(u["email"], "bulk000001@example.com");
    assert_eq!(u["attributes"]["organization"], json!(["Acme"]));
}

#[tokio::test]
async fn stats_count_requests_by_endpoint() {
    let kc = realm().await;
    let token = kc.service_token().await;
    kc.admin_as(&token, Method::GET, "/users", None).await;
    let stats = kc.raw(Method::GET, "/_emulator/stats", None).await.json();
    assert!(stats["GET /admin/realms/{realm}/users"].as_u64().unwrap() >= 1);
    assert!(
        stats["POST /realms/{realm}/protocol/openid-connect/token"]
            .as_u64()
            .unwrap()
            >= 1
    );
    assert!(stats["total"].as_u64().unwrap() >= 2);
}

#[tokio::test]
async fn health_lists_realms() {
    let kc = realm().await;
    let h = kc.raw(Method::GET, "/_emulator/health", None).await.json();
    assert_eq!(h["status"], "UP");
    assert!(h["realms"].as_array().unwrap().contains(&json!(kc.realm)));
}

#[tokio::test]
async fn unknown_path_is_keycloaks_404() {
    let kc = realm().await;
    let r = kc.raw(Method::GET, "/nothing/here", None).await;
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.json(),
        json!({"error": "Unable to find matching target resource method"})
    );
}
