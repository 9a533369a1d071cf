//! Failure paths that disturb the whole stack (DynamoDB hanging, Keycloak's clock moved) and the
//! fault matrix (`matrix`): in their own test binary, so with their own stack, and one at a time.

#![allow(clippy::unwrap_used)]

use e2e::*;
use reqwest::Method;
use serde_json::json;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

mod matrix;

static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

/// Start `flow`, freeze DynamoDB Local `after` into it (it then accepts connections and never
/// answers, as a hung service does), and give it back once the flow has answered. Returns the
/// answer and how long it took.
async fn with_dynamodb_hanging_after<F>(after: Duration, flow: F) -> (Resp, Duration)
where
    F: std::future::Future<Output = Resp> + Send + 'static,
{
    let started = Instant::now();
    let task = tokio::spawn(flow);
    tokio::time::sleep(after).await;
    pause_dynamodb();
    let answer = task.await;
    resume_dynamodb();
    (answer.unwrap(), started.elapsed())
}

/// The public routes' function timeout (template.yaml), and the admin API's.
const PUBLIC_TIMEOUT: Duration = Duration::from_secs(10);
const ADMIN_TIMEOUT: Duration = Duration::from_secs(20);

fn assert_own_503(r: &Resp, took: Duration, timeout: Duration, code: &str) {
    assert!(
        took < timeout,
        "answered after {took:?}, past the function timeout"
    );
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (503, Some(code)),
        "{}",
        r.text
    );
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/problem+json")
    );
    assert!(r.header("retry-after").is_some());
}

#[tokio::test]
async fn with_dynamodb_hanging_a_login_answers_its_own_503_before_calling_keycloak() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let (username, _) = signed_in_user("hung").await;
    let counter = fault(
        json!({"method": "POST", "path": "/realms/{realm}/protocol/openid-connect/token",
                               "bodyContains": format!("username={username}&"), "latencyMs": 0}),
    )
    .await;
    let body = json!({"username": username, "password": "a-good-password"});
    let (r, took) =
        with_dynamodb_hanging_after(
            Duration::ZERO,
            async move { post("/auth/login", body).await },
        )
        .await;
    assert_own_503(&r, took, PUBLIC_TIMEOUT, "store_unavailable");
    assert_eq!(
        fault_hits(&counter).await,
        0,
        "the throttle could not count: Keycloak is not asked"
    );
}

#[tokio::test]
async fn with_dynamodb_hanging_after_keycloak_a_login_ends_the_new_keycloak_session() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let (username, login) = signed_in_user("hungsess").await;
    let id = login["user"]["id"].as_str().unwrap().to_owned();
    let (status, _) = keycloak_admin(Method::POST, &format!("/users/{id}/logout"), None).await;
    assert_eq!(status, 204);
    // Keycloak answers the grant after a second; by then DynamoDB hangs.
    fault(
        json!({"method": "POST", "path": "/realms/{realm}/protocol/openid-connect/token",
                 "bodyContains": format!("username={username}&"), "latencyMs": 1000, "times": 1}),
    )
    .await;
    let body = json!({"username": username, "password": "a-good-password"});
    let (r, took) = with_dynamodb_hanging_after(Duration::from_millis(400), async move {
        post("/auth/login", body).await
    })
    .await;
    assert_own_503(&r, took, PUBLIC_TIMEOUT, "store_unavailable");
    let (_, sessions) = keycloak_admin(Method::GET, &format!("/users/{id}/sessions"), None).await;
    assert_eq!(
        sessions,
        json!([]),
        "no Keycloak session the store does not know"
    );
}

#[tokio::test]
async fn with_dynamodb_hanging_after_keycloak_a_registration_removes_the_keycloak_user() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let username = unique("hungreg");
    fault(json!({"method": "POST", "path": "/admin/realms/{realm}/users",
                 "bodyContains": format!("\"username\":\"{username}\""), "latencyMs": 1000, "times": 1}))
    .await;
    let body = registration(&username);
    let (r, took) = with_dynamodb_hanging_after(Duration::from_millis(400), async move {
        post("/auth/register", body).await
    })
    .await;
    assert_own_503(&r, took, PUBLIC_TIMEOUT, "store_unavailable");
    assert!(
        keycloak_users_named(&username).await.is_empty(),
        "no Keycloak user without its local record"
    );
    assert_eq!(
        post("/auth/register", registration(&username)).await.status,
        201,
        "a retry works"
    );
}

#[tokio::test]
async fn an_expired_token_is_inactive_and_refused_by_bearer_routes() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let username = unique("expired");
    assert_eq!(
        post("/auth/register", registration(&username)).await.status,
        201
    );
    // Keycloak's clock behind by 400 s: the token it issues expired 100 s ago for everyone else.
    set_keycloak_clock(-400).await;
    let login = http()
        .post(format!(
            "{}/realms/{}/protocol/openid-connect/token",
            stack().keycloak,
            stack().realm
        ))
        .form(&[
            ("grant_type", "password"),
            ("client_id", CLIENT),
            ("client_secret", SECRET),
            ("username", username.as_str()),
            ("password", "a-good-password"),
        ])
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    set_keycloak_clock(0).await;
    let token = login["access_token"].as_str().unwrap();
    assert_eq!(
        post("/auth/token/validate", json!({"token": token}))
            .await
            .body,
        json!({"active": false})
    );
    let me = call(Method::GET, "/auth/me", Some(token), None).await;
    assert_eq!(
        (me.status, me.body),
        (401, json!({"message": "Unauthorized"}))
    );
}

#[tokio::test]
async fn with_keycloaks_clock_behind_ours_a_change_after_a_full_run_is_read_by_the_incremental_one()
{
    let _serial = ONE_AT_A_TIME.lock().await;
    // Keycloak's clock runs 2 minutes behind for the whole spec (as a real skew would).
    set_keycloak_clock(-120).await;
    let alice = admin().await;
    let (id, _) = created(&alice, "skew").await;
    // Only the syncs: no webhook applies the change first.
    set_webhooks(false).await;
    let full = run_sync("full").await;
    let skew = full["keycloak_clock_skew_ms"].as_i64().unwrap_or_default();
    let measured = (-123_000..=-117_000).contains(&skew);
    let cursor = store().sync_state().await.unwrap().event_cursor_ms;
    // A change in the minute after the full run, stamped by Keycloak's clock.
    let (status, _) = keycloak_admin(
        Method::PUT,
        &format!("/users/{id}"),
        Some(json!({"lastName": "Skewed"})),
    )
    .await;
    let incremental = run_sync("incremental").await;
    let local = local_user(&id).await.unwrap();
    set_keycloak_clock(0).await;
    set_webhooks(true).await;
    assert!(measured, "the run measured {skew} ms: {full}");
    let now = user_sync::base::clock::now_ms();
    assert!(
        cursor.is_some_and(|c| c <= now - 110_000),
        "the cursor {cursor:?} is in Keycloak's time"
    );
    assert_eq!(status, 204);
    assert_eq!(
        local.keycloak.last_name.as_deref(),
        Some("Skewed"),
        "the incremental run read the change: {incremental}"
    );
}

/// Asynchronous invocations follow template.yaml's EventInvokeConfig (lambda_async.py plays
/// Lambda's part): a run that fails (here: Keycloak cannot list the realm's roles, so no
/// membership can be trusted) is retried once, then the event lands in the failure queue, and the
/// run record says failed.
#[tokio::test]
async fn a_sync_run_failing_after_its_retry_is_recorded_failed_and_lands_in_the_failure_queue() {
    let _one = ONE_AT_A_TIME.lock().await;
    let alice = admin().await;
    let roles = fault(
        json!({"method": "GET", "path": "/admin/realms/{realm}/roles",
        "status": 500, "times": 100000}),
    )
    .await;
    let r = call(
        Method::POST,
        "/admin/sync",
        Some(&alice),
        Some(json!({"mode": "full"})),
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.text);
    let run_id = r.body["runId"].as_str().unwrap().to_owned();
    let mut messages = Vec::new();
    for _ in 0..240 {
        messages = queue_messages("AsyncFailureQueue").await;
        if !messages.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    clear_fault(&roles).await;
    assert_eq!(messages.len(), 1, "{messages:?}");
    let record = &messages[0];
    assert_eq!(
        (
            record["requestContext"]["condition"].as_str(),
            record["requestContext"]["approximateInvokeCount"].as_u64(),
            record["requestPayload"]["runId"].as_str()
        ),
        (Some("RetriesExhausted"), Some(2), Some(run_id.as_str())),
        "{record}"
    );
    let run = call(
        Method::GET,
        &format!("/admin/sync/runs/{run_id}"),
        Some(&alice),
        None,
    )
    .await;
    assert_eq!(run.body["status"], "failed", "{}", run.text);
}

/// A signed admin update of `user` as the extension delivers it, with a representation of
/// `size` bytes.
fn signed_update(secret: &str, user: &str, size: usize) -> (String, String) {
    let body = json!({
        "uid": unique("fault-hook"), "type": "admin.USER-UPDATE",
        "time": user_sync::base::clock::now_ms(), "realmId": stack().realm, "resourceType": "USER",
        "operationType": "UPDATE", "resourcePath": format!("users/{user}"),
        "representation": json!({"firstName": "x".repeat(size)}).to_string(),
        "authDetails": {"realmId": "master", "clientId": "console", "userId": "someone"}
    })
    .to_string();
    let signature = user_sync::features::hooks::sign(secret.as_bytes(), body.as_bytes());
    (body, signature)
}

#[tokio::test]
async fn a_delivery_the_queue_refused_is_taken_again_when_the_sender_retries() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let (_, login) = signed_in_user("hookretry").await;
    let id = login["user"]["id"].as_str().unwrap().to_owned();
    let (body, signature) = signed_update(&webhook_secret().await, &id, 4000);
    set_hook_queue_max_message_size(1024).await;
    let refused = deliver_webhook(&body, Some(&signature)).await;
    set_hook_queue_max_message_size(262_144).await;
    assert_eq!(
        (refused.status, refused.body["code"].as_str()),
        (503, Some("queue_unavailable")),
        "{}",
        refused.text
    );
    let retried = deliver_webhook(&body, Some(&signature)).await;
    assert_eq!(
        (retried.status, retried.body["status"].as_str()),
        (202, Some("queued")),
        "not dropped as a replay: {}",
        retried.text
    );
}

#[tokio::test]
async fn during_a_secret_rotation_deliveries_signed_with_either_secret_are_taken() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let (_, login) = signed_in_user("rotation").await;
    let id = login["user"]["id"].as_str().unwrap().to_owned();
    let old = webhook_secret().await;
    let new = format!("rotated-{}", unique("secret"));
    rotate_webhook_secret(&new).await;
    for secret in [new.as_str(), old.as_str()] {
        let (body, signature) = signed_update(secret, &id, 10);
        let r = deliver_webhook(&body, Some(&signature)).await;
        assert_eq!(
            (r.status, r.body["status"].as_str()),
            (202, Some("queued")),
            "{}",
            r.text
        );
    }
    let (body, signature) = signed_update("neither-of-them", &id, 10);
    assert_eq!(deliver_webhook(&body, Some(&signature)).await.status, 401);
}

#[tokio::test]
async fn a_login_failing_in_keycloak_leaves_the_users_later_sessions_alone() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let (username, login) = signed_in_user("scopedrepair").await;
    let id = login["user"]["id"].as_str().unwrap().to_owned();
    // An attacker's guess while Keycloak's token endpoint fails: Keycloak never judged it.
    let outage = fault(json!({"method": "POST", "times": 1000, "status": 500,
        "path": "/realms/{realm}/protocol/openid-connect/token",
        "bodyContains": format!("username={username}&")}))
    .await;
    let r = post(
        "/auth/login",
        json!({"username": username, "password": "any-guess"}),
    )
    .await;
    clear_fault(&outage).await;
    assert_eq!(r.status, 503, "{}", r.text);
    // After that request's window (its deadline, plus the time Keycloak may still take to handle
    // a request we gave up on), the user signs in at Keycloak itself (another app of the realm,
    // through the same client): a session this API never saw.
    tokio::time::sleep(Duration::from_secs(27)).await;
    let s = stack();
    let direct = http()
        .post(format!(
            "{}/realms/{}/protocol/openid-connect/token",
            s.keycloak, s.realm
        ))
        .form(&[
            ("grant_type", "password"),
            ("client_id", CLIENT),
            ("client_secret", SECRET),
            ("username", username.as_str()),
            ("password", "a-good-password"),
            ("scope", "openid"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(direct.status(), 200);
    let run = run_sync("incremental").await;
    assert!(run["status"].is_string(), "{run}");
    let (_, sessions) = keycloak_admin(Method::GET, &format!("/users/{id}/sessions"), None).await;
    assert_eq!(
        sessions.as_array().unwrap().len(),
        2,
        "the repair left the sessions it could not have made: {sessions}"
    );
}

#[tokio::test]
async fn with_dynamodb_hanging_after_a_password_reset_keycloaks_sessions_end_and_the_answer_says_it_is_set(
) {
    let _serial = ONE_AT_A_TIME.lock().await;
    let alice = admin().await;
    let (username, login) = signed_in_user("hungpw").await;
    let id = login["user"]["id"].as_str().unwrap().to_owned();
    let access = login["tokens"]["accessToken"].as_str().unwrap().to_owned();
    // Keycloak answers the reset after a second; by then DynamoDB hangs.
    fault(json!({"method": "PUT", "path": format!("/admin/realms/{{realm}}/users/{id}/reset-password"),
                 "latencyMs": 1000, "times": 1}))
    .await;
    let path = format!("/admin/users/{id}/password");
    let body = json!({"password": "another-good-password"});
    let (r, took) = with_dynamodb_hanging_after(Duration::from_millis(400), {
        let (alice, path) = (alice.clone(), path.clone());
        async move { call(Method::POST, &path, Some(&alice), Some(body)).await }
    })
    .await;
    assert_own_503(&r, took, ADMIN_TIMEOUT, "unfinished");
    assert!(
        r.body["detail"]
            .as_str()
            .unwrap()
            .starts_with("the password is set in Keycloak"),
        "{}",
        r.text
    );
    let (_, sessions) = keycloak_admin(Method::GET, &format!("/users/{id}/sessions"), None).await;
    assert_eq!(sessions, json!([]), "Keycloak's sessions of the user ended");
    let new_password_works = !token_of(&username, "another-good-password")
        .await
        .is_empty();
    assert!(new_password_works);
    // Repeating the request finishes it: the session here ends too.
    let again = call(
        Method::POST,
        &path,
        Some(&alice),
        Some(json!({"password": "another-good-password"})),
    )
    .await;
    assert_eq!(again.status, 204, "{}", again.text);
    let me = call(Method::GET, "/auth/me", Some(&access), None).await;
    assert_eq!(me.status, 401, "{}", me.text);
}

#[tokio::test]
async fn with_dynamodb_hanging_after_a_hard_delete_the_answer_says_keycloaks_user_is_gone_and_a_repeat_erases(
) {
    let _serial = ONE_AT_A_TIME.lock().await;
    let alice = admin().await;
    let (_, login) = signed_in_user("hungdel").await;
    let id = login["user"]["id"].as_str().unwrap().to_owned();
    fault(
        json!({"method": "DELETE", "path": format!("/admin/realms/{{realm}}/users/{id}"),
                 "latencyMs": 1000, "times": 1}),
    )
    .await;
    let path = format!("/admin/users/{id}?hard=true");
    let (r, took) = with_dynamodb_hanging_after(Duration::from_millis(400), {
        let (alice, path) = (alice.clone(), path.clone());
        async move { call(Method::DELETE, &path, Some(&alice), None).await }
    })
    .await;
    assert_own_503(&r, took, ADMIN_TIMEOUT, "unfinished");
    let (status, _) = keycloak_admin(Method::GET, &format!("/users/{id}"), None).await;
    assert_eq!(status, 404, "gone from Keycloak");
    let again = call(Method::DELETE, &path, Some(&alice), None).await;
    assert_eq!(again.status, 204, "{}", again.text);
    assert_eq!(store().list_sessions(&id).await.unwrap(), vec![], "erased");
    assert_eq!(
        local_user(&id).await.unwrap().keycloak.username,
        "",
        "a tombstone"
    );
}

/// `cargo lambda watch`'s instances of each function (`--concurrency` in infra/local/stack.py).
const INSTANCES: usize = 4;

#[tokio::test]
async fn a_request_that_waited_for_a_free_instance_is_answered_by_the_function_before_the_gateway_gives_up(
) {
    let _serial = ONE_AT_A_TIME.lock().await;
    // Keycloak never handles these registrations' creates: each one holds an instance of the
    // register function until its deadline, and the last two wait for an instance to be free.
    let marker = unique("queued");
    let rule = fault(
        json!({"method": "POST", "path": "/admin/realms/{realm}/users",
                            "bodyContains": marker, "status": 504, "latencyMs": 25_000}),
    )
    .await;
    let started = Instant::now();
    let requests: Vec<_> = (0..INSTANCES + 2)
        .map(|i| {
            let body = registration(&format!("{marker}n{i}"));
            tokio::spawn(async move {
                let r = post("/auth/register", body).await;
                (r, started.elapsed())
            })
        })
        .collect();
    let mut answers = Vec::new();
    for request in requests {
        answers.push(request.await.unwrap());
    }
    clear_fault(&rule).await;
    for (r, took) in &answers {
        assert_eq!(
            (r.status, r.header("content-type").as_deref()),
            (503, Some("application/problem+json")),
            "the function's own answer, not the gateway's, after {took:?}: {}",
            r.text
        );
        assert!(r.header("retry-after").is_some(), "{}", r.text);
        assert!(*took < PUBLIC_TIMEOUT, "answered after {took:?}");
    }
}
