//! Abuse limits and session integrity, end to end, tried as an attacker would: guessing is slowed
//! without Keycloak ever seeing the excess, forged or replayed refresh tokens change nothing (or end
//! the session they came from), bearer checks fail closed, a Keycloak lockout is no disable, and a
//! slow Keycloak never makes a function miss its own answer.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use e2e::*;
use reqwest::Method;
use serde_json::{json, Value};

fn login_body(username: &str, password: &str) -> Option<Value> {
    Some(json!({"username": username, "password": password}))
}

/// Count the password grants Keycloak receives for `username`.
async fn grant_counter(username: &str) -> String {
    fault(
        json!({"method": "POST", "path": "/realms/{realm}/protocol/openid-connect/token",
                 "bodyContains": format!("username={username}&"), "latencyMs": 0}),
    )
    .await
}

fn assert_throttled(r: &Resp) {
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (429, Some("rate_limited")),
        "{}",
        r.text
    );
    let after: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=3600).contains(&after), "Retry-After {after}");
}

#[tokio::test]
async fn the_eleventh_wrong_password_is_429_and_keycloak_never_sees_it() {
    let (username, _) = signed_in_user("guess").await;
    let counter = grant_counter(&username).await;
    let attacker = http();
    for _ in 0..10 {
        let r = call_with(
            &attacker,
            Method::POST,
            "/auth/login",
            None,
            login_body(&username, "wrong-guess"),
        )
        .await;
        assert_eq!(r.status, 401, "{}", r.text);
    }
    let r = call_with(
        &attacker,
        Method::POST,
        "/auth/login",
        None,
        login_body(&username, "wrong-guess"),
    )
    .await;
    assert_throttled(&r);
    // From any address, even with the right password: the username is held back.
    let r = post(
        "/auth/login",
        json!({"username": username, "password": "a-good-password"}),
    )
    .await;
    assert_throttled(&r);
    assert_eq!(
        fault_hits(&counter).await,
        10,
        "Keycloak saw no 11th request"
    );
}

#[tokio::test]
async fn an_unknown_username_is_throttled_the_same_way() {
    let username = unique("nobody");
    let counter = grant_counter(&username).await;
    for _ in 0..10 {
        let r = post(
            "/auth/login",
            json!({"username": username, "password": "x"}),
        )
        .await;
        assert_eq!(
            (r.status, r.body["code"].as_str()),
            (401, Some("invalid_credentials"))
        );
    }
    assert_throttled(
        &post(
            "/auth/login",
            json!({"username": username, "password": "x"}),
        )
        .await,
    );
    assert_eq!(fault_hits(&counter).await, 10);
}

#[tokio::test]
async fn one_address_guessing_many_usernames_is_throttled() {
    let attacker = http();
    let mut throttled = None;
    for n in 0..=100 {
        let r = call_with(
            &attacker,
            Method::POST,
            "/auth/login",
            None,
            login_body(&unique("spray"), "x"),
        )
        .await;
        if r.status == 429 {
            throttled = Some((n, r));
            break;
        }
    }
    let (n, r) = throttled.expect("throttled by the per-IP limit");
    assert_eq!(n, 100, "the 101st failure from one address");
    assert_throttled(&r);
}

#[tokio::test]
async fn a_success_clears_the_usernames_count() {
    let (username, login) = signed_in_user("clears").await;
    let id = login["user"]["id"].as_str().unwrap().to_owned();
    for _ in 0..9 {
        assert_eq!(
            post(
                "/auth/login",
                json!({"username": username, "password": "bad"})
            )
            .await
            .status,
            401
        );
    }
    // Keycloak's own quick-login lockout does not concern this test.
    let (status, _) = keycloak_admin(
        Method::DELETE,
        &format!("/attack-detection/brute-force/users/{id}"),
        None,
    )
    .await;
    assert_eq!(status, 204);
    token_of(&username, "a-good-password").await;
    for _ in 0..10 {
        let r = post(
            "/auth/login",
            json!({"username": username, "password": "bad"}),
        )
        .await;
        assert_eq!(r.status, 401, "the count started over: {}", r.text);
    }
}

#[tokio::test]
async fn registrations_from_one_address_are_limited() {
    let client = http();
    for n in 0..20 {
        let r = call_with(
            &client,
            Method::POST,
            "/auth/register",
            None,
            Some(registration(&unique("flood"))),
        )
        .await;
        assert_eq!(r.status, 201, "registration {n}: {}", r.text);
    }
    let username = unique("flood");
    let r = call_with(
        &client,
        Method::POST,
        "/auth/register",
        None,
        Some(registration(&username)),
    )
    .await;
    assert_throttled(&r);
    assert!(keycloak_users_named(&username).await.is_empty());
}

/// A refresh token with the victim's `sub` and `sid`, signed by nobody Keycloak knows.
fn forged(refresh_token: &str) -> String {
    let mut parts = refresh_token.split('.');
    let (header, claims) = (parts.next().unwrap(), parts.next().unwrap());
    let sig = URL_SAFE_NO_PAD.encode(b"not-keycloaks-signature-at-all-not-keycloaks-sig");
    format!("{header}.{claims}.{sig}")
}

#[tokio::test]
async fn a_forged_refresh_token_leaves_the_victims_session_working() {
    let (_, login) = signed_in_user("victim").await;
    let refresh = login["tokens"]["refreshToken"].as_str().unwrap();
    let access = login["tokens"]["accessToken"].as_str().unwrap();
    let r = post("/auth/refresh", json!({"refreshToken": forged(refresh)})).await;
    assert_eq!(r.status, 401, "{}", r.text);
    assert_eq!(
        call(Method::GET, "/auth/me", Some(access), None)
            .await
            .status,
        200
    );
    let r = post("/auth/refresh", json!({"refreshToken": refresh})).await;
    assert_eq!(
        r.status, 200,
        "the victim's own token still works: {}",
        r.text
    );
}

#[tokio::test]
async fn a_forged_refresh_token_cannot_log_the_victim_out() {
    let (_, login) = signed_in_user("logoutvictim").await;
    let refresh = login["tokens"]["refreshToken"].as_str().unwrap();
    let access = login["tokens"]["accessToken"].as_str().unwrap();
    // The victim's `sub` and `sid`, but not the token this service holds for that session.
    let r = post("/auth/logout", json!({"refreshToken": forged(refresh)})).await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert_eq!(
        call(Method::GET, "/auth/me", Some(access), None)
            .await
            .status,
        200,
        "the victim's session is still live"
    );
}

#[tokio::test]
async fn replaying_a_rotated_refresh_token_ends_the_session() {
    let (_, login) = signed_in_user("replay").await;
    let id = login["user"]["id"].as_str().unwrap().to_owned();
    let first = login["tokens"]["refreshToken"].as_str().unwrap().to_owned();
    let r = post("/auth/refresh", json!({"refreshToken": first})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let second = r.body["tokens"]["refreshToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let access = r.body["tokens"]["accessToken"].as_str().unwrap().to_owned();

    let r = post("/auth/refresh", json!({"refreshToken": first})).await;
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (401, Some("refresh_token_reused")),
        "{}",
        r.text
    );
    let r = post("/auth/refresh", json!({"refreshToken": second})).await;
    assert_eq!(
        r.status, 401,
        "the thief's rotation is dead too: {}",
        r.text
    );
    assert_eq!(
        call(Method::GET, "/auth/me", Some(&access), None)
            .await
            .status,
        401
    );
    let (_, sessions) = keycloak_admin(Method::GET, &format!("/users/{id}/sessions"), None).await;
    assert_eq!(sessions, json!([]), "ended in Keycloak");
}

/// The refresh function has no admin credentials: it ends a replayed session through Keycloak's
/// logout with the presented token. When Keycloak cannot hear it, the session ends here at once
/// and the next sync run ends it in Keycloak.
#[tokio::test]
async fn a_replay_keycloak_cannot_hear_ends_the_session_here_and_the_next_sync_ends_it_there() {
    let (_, login) = signed_in_user("replay-down").await;
    let id = login["user"]["id"].as_str().unwrap().to_owned();
    let first = login["tokens"]["refreshToken"].as_str().unwrap().to_owned();
    let r = post("/auth/refresh", json!({"refreshToken": first})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let access = r.body["tokens"]["accessToken"].as_str().unwrap().to_owned();
    // Keycloak's logout of this very token fails (the signature part is unique to it).
    let signature = first.rsplit('.').next().unwrap();
    let rule = fault(
        json!({"method": "POST", "path": "/realms/{realm}/protocol/openid-connect/logout",
        "bodyContains": signature, "status": 503, "times": 20}),
    )
    .await;
    let r = post("/auth/refresh", json!({"refreshToken": first})).await;
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (401, Some("refresh_token_reused")),
        "{}",
        r.text
    );
    assert!(fault_hits(&rule).await >= 1, "Keycloak was asked");
    let sessions = || async {
        keycloak_admin(Method::GET, &format!("/users/{id}/sessions"), None)
            .await
            .1
    };
    assert_eq!(
        sessions().await.as_array().unwrap().len(),
        1,
        "Keycloak still has it"
    );
    assert_eq!(
        call(Method::GET, "/auth/me", Some(&access), None)
            .await
            .status,
        401
    );
    run_sync("incremental").await;
    assert_eq!(sessions().await, json!([]), "the sync ended it in Keycloak");
}

#[tokio::test]
async fn a_refresh_token_two_rotations_old_is_reuse_as_well() {
    let (_, login) = signed_in_user("stale").await;
    let mut token = login["tokens"]["refreshToken"].as_str().unwrap().to_owned();
    let oldest = token.clone();
    for _ in 0..2 {
        let r = post("/auth/refresh", json!({"refreshToken": token})).await;
        assert_eq!(r.status, 200, "{}", r.text);
        token = r.body["tokens"]["refreshToken"]
            .as_str()
            .unwrap()
            .to_owned();
    }
    let r = post("/auth/refresh", json!({"refreshToken": oldest})).await;
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (401, Some("refresh_token_reused")),
        "{}",
        r.text
    );
    assert_eq!(
        post("/auth/refresh", json!({"refreshToken": token}))
            .await
            .status,
        401
    );
}

#[tokio::test]
async fn a_token_whose_session_is_gone_here_is_refused() {
    let (_, login) = signed_in_user("gone").await;
    let id = login["user"]["id"].as_str().unwrap();
    let sid = login["sessionId"].as_str().unwrap();
    let access = login["tokens"]["accessToken"].as_str().unwrap();
    assert_eq!(
        call(Method::GET, "/auth/me", Some(access), None)
            .await
            .status,
        200
    );
    let (status, _) = keycloak_admin(Method::DELETE, &format!("/sessions/{sid}"), None).await;
    assert_eq!(status, 204);
    dynamodb()
        .delete_item()
        .table_name(&stack().table)
        .key(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S(format!("USER#{id}")),
        )
        .key(
            "sk",
            aws_sdk_dynamodb::types::AttributeValue::S(format!("SESSION#{sid}")),
        )
        .send()
        .await
        .unwrap();
    let r = call(Method::GET, "/auth/me", Some(access), None).await;
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (401, Some("unauthenticated")),
        "{}",
        r.text
    );
    let r = post("/auth/token/validate", json!({"token": access})).await;
    assert_eq!(r.body, json!({"active": false}));
}

#[tokio::test]
async fn a_token_of_a_user_deleted_here_is_refused() {
    let (_, login) = signed_in_user("deleted").await;
    let id = login["user"]["id"].as_str().unwrap();
    let access = login["tokens"]["accessToken"].as_str().unwrap();
    dynamodb()
        .update_item()
        .table_name(&stack().table)
        .key(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S(format!("USER#{id}")),
        )
        .key(
            "sk",
            aws_sdk_dynamodb::types::AttributeValue::S("PROFILE".into()),
        )
        .update_expression("SET #s = :d")
        .expression_attribute_names("#s", "status")
        .expression_attribute_values(
            ":d",
            aws_sdk_dynamodb::types::AttributeValue::S("deleted".into()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        call(Method::GET, "/auth/me", Some(access), None)
            .await
            .status,
        401
    );
}

#[tokio::test]
async fn a_wrong_password_for_a_disabled_account_reads_like_any_wrong_password() {
    let (username, login) = signed_in_user("disabled").await;
    let id = login["user"]["id"].as_str().unwrap();
    let (status, _) = keycloak_admin(
        Method::PUT,
        &format!("/users/{id}"),
        Some(json!({"enabled": false})),
    )
    .await;
    assert_eq!(status, 204);
    let wrong = post(
        "/auth/login",
        json!({"username": username, "password": "wrong"}),
    )
    .await;
    let unknown = post(
        "/auth/login",
        json!({"username": unique("none"), "password": "wrong"}),
    )
    .await;
    assert_eq!((wrong.status, &wrong.body), (unknown.status, &unknown.body));
    assert_eq!(wrong.body["code"], "invalid_credentials");
}

/// The account `registration(username)` asks for, as registration validates it.
fn registered_account(username: &str) -> user_sync::features::users::NewAccount {
    user_sync::features::users::NewAccount {
        username: username.to_owned(),
        email: format!("{username}@example.org"),
        first_name: Some("Test".into()),
        last_name: Some("User".into()),
        attributes: [("phone".to_owned(), "+1 555 0199".to_owned())].into(),
        enabled: true,
        temporary_password: false,
    }
}

/// Register `username` with an idempotency key through the gateway.
async fn register_with(key: &str, username: &str) -> reqwest::Response {
    http()
        .post(format!("{}/auth/register", stack().gateway))
        .header("idempotency-key", key)
        .json(&registration(username))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_retry_after_a_dead_invocation_registers_the_user() {
    let username = unique("dead");
    let key = unique("key");
    let account = registered_account(&username);
    // The claim an invocation left when it died 30 s ago, mid-registration.
    let now = user_sync::base::clock::now_ms();
    let claim = store()
        .claim_idempotency(
            &key,
            &user_sync::features::users::fingerprint(&account),
            user_sync::base::clock::EpochSecs::of_ms(now).after(86_400),
            now - 30_000,
            now - 40_000,
        )
        .await
        .unwrap();
    assert_eq!(claim, user_sync::outside::store::Claim::New);
    let r = register_with(&key, &username).await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
}

/// An invocation claimed the key, created the Keycloak user, and died before its store write;
/// answers the Keycloak user's id.
async fn died_after_creating_the_keycloak_user(username: &str, key: &str) -> String {
    let account = registered_account(username);
    let now = user_sync::base::clock::now_ms();
    let claim = store()
        .claim_idempotency(
            key,
            &user_sync::features::users::fingerprint(&account),
            user_sync::base::clock::EpochSecs::of_ms(now).after(86_400),
            now - 1,
            now - 5_000,
        )
        .await
        .unwrap();
    assert_eq!(claim, user_sync::outside::store::Claim::New);
    let (status, created) = keycloak_admin(
        Method::POST,
        "/users",
        Some(
            json!({"username": username, "email": format!("{username}@example.org"),
                    "firstName": "Test", "lastName": "User", "enabled": true,
                    "attributes": {"phone": ["+1 555 0199"]},
                    "credentials": [{"type": "password", "value": "a-good-password"}]}),
        ),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    keycloak_users_named(username).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_retry_after_a_dead_invocation_adopts_the_keycloak_user_it_created() {
    let (username, key) = (unique("deadkc"), unique("key"));
    let id = died_after_creating_the_keycloak_user(&username, &key).await;
    let r = register_with(&key, &username).await;
    assert_eq!(r.status(), 201, "not 409 for the caller's own account");
    let body: Value = r.json().await.unwrap();
    assert_eq!(keycloak_users_named(&username).await.len(), 1);
    assert_eq!(body["user"]["id"], json!(id), "the same user");
    assert!(local_user(&id).await.is_some());
    assert!(!token_of(&username, "a-good-password").await.is_empty());
}

#[tokio::test]
async fn a_retry_after_a_dead_invocation_adopts_its_keycloak_user_that_a_webhook_imported_first() {
    let (username, key) = (unique("deadhook"), unique("key"));
    let id = died_after_creating_the_keycloak_user(&username, &key).await;
    // Keycloak's webhook brings the user in within a second, long before a client retries.
    imported_by_webhook(&id).await;
    let r = register_with(&key, &username).await;
    assert_eq!(
        r.status(),
        201,
        "the caller's own account, imported meanwhile"
    );
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["user"]["id"], json!(id), "the same user");
    // Now the registration's: a later request with another key for the same name is refused.
    let again = register_with(&unique("key"), &username).await;
    assert_eq!(again.status(), 409);
}

#[tokio::test]
async fn a_retry_never_adopts_an_account_that_has_its_local_record() {
    let (username, _) = signed_in_user("older").await;
    let key = unique("key");
    let account = registered_account(&username);
    let now = user_sync::base::clock::now_ms();
    store()
        .claim_idempotency(
            &key,
            &user_sync::features::users::fingerprint(&account),
            user_sync::base::clock::EpochSecs::of_ms(now).after(86_400),
            now - 1,
            now - 1,
        )
        .await
        .unwrap();
    let r = register_with(&key, &username).await;
    assert_eq!(
        r.status(),
        409,
        "an existing account is someone's, never adopted"
    );
}

#[tokio::test]
async fn a_user_locked_by_keycloaks_brute_force_detection_stays_active_through_the_syncs() {
    let (username, login) = signed_in_user("lockout").await;
    let id = login["user"]["id"].as_str().unwrap().to_owned();
    let access = login["tokens"]["accessToken"].as_str().unwrap().to_owned();
    // Two quick failures straight at Keycloak: its quick-login check locks the user for a minute.
    for _ in 0..2 {
        let r = http()
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
                ("password", "wrong"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (_, kc) = keycloak_admin(Method::GET, &format!("/users/{id}"), None).await;
    assert_eq!(
        kc["enabled"],
        json!(false),
        "Keycloak reads a locked user as disabled"
    );
    // An admin event names the user, so the incremental run reads it by id.
    grant_realm_role(&id, "user").await;
    for mode in ["full", "incremental", "incremental"] {
        let run = run_sync(mode).await;
        assert!(
            run["status"] == "succeeded" || run["status"] == "needs_approval",
            "{run}"
        );
        let local = local_user(&id).await.unwrap();
        assert_eq!(
            (local.status, local.keycloak.enabled),
            (user_sync::outside::store::UserStatus::Active, true),
            "after {mode}: {run}"
        );
    }
    assert_eq!(
        call(Method::GET, "/auth/me", Some(&access), None)
            .await
            .status,
        200,
        "sessions kept"
    );
}

#[tokio::test]
async fn with_keycloak_hanging_login_answers_its_own_503_before_the_timeout() {
    let (username, _) = signed_in_user("slowlogin").await;
    fault(
        json!({"method": "POST", "path": "/realms/{realm}/protocol/openid-connect/token",
                 "bodyContains": format!("username={username}&"), "latencyMs": 15_000}),
    )
    .await;
    let started = Instant::now();
    let r = post(
        "/auth/login",
        json!({"username": username, "password": "a-good-password"}),
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (503, Some("keycloak_unavailable")),
        "{}",
        r.text
    );
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/problem+json")
    );
    assert!(r.header("retry-after").is_some());
    no_session_without_its_record(&username).await;
}

#[tokio::test]
async fn with_keycloak_hanging_registration_answers_its_own_503_and_leaves_no_orphan() {
    let username = unique("slowreg");
    fault(
        json!({"method": "POST", "path": "/admin/realms/{realm}/users",
                 "bodyContains": format!("\"username\":\"{username}\""), "latencyMs": 15_000}),
    )
    .await;
    let started = Instant::now();
    let r = post("/auth/register", registration(&username)).await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (503, Some("keycloak_unavailable")),
        "{}",
        r.text
    );
    assert!(r.header("retry-after").is_some());
    // Whatever Keycloak does with the abandoned request, once it could have landed the next sync
    // leaves no Keycloak user without its local record.
    tokio::time::sleep(Duration::from_secs(16).saturating_sub(started.elapsed())).await;
    run_sync("incremental").await;
    for u in keycloak_users_named(&username).await {
        let id = u["id"].as_str().unwrap();
        assert!(
            local_user(id).await.is_some(),
            "a Keycloak user without its local record: {u}"
        );
    }
}

/// Once an abandoned password grant could have landed, the next sync leaves the user no Keycloak
/// session the store does not know.
async fn no_session_without_its_record(username: &str) {
    tokio::time::sleep(Duration::from_secs(16)).await;
    run_sync("incremental").await;
    let user = &keycloak_users_named(username).await[0];
    let id = user["id"].as_str().unwrap();
    let (_, sessions) = keycloak_admin(Method::GET, &format!("/users/{id}/sessions"), None).await;
    for s in sessions.as_array().unwrap() {
        let sid = s["id"].as_str().unwrap();
        let known = store().get_session(id, sid).await.unwrap();
        assert!(
            known.is_some_and(|k| k.ended_at.is_none()),
            "Keycloak session {sid} unknown here"
        );
    }
}

#[tokio::test]
async fn guesses_by_username_and_by_email_share_one_budget() {
    let (username, _) = signed_in_user("bothnames").await;
    let email = format!("{username}@example.org");
    let by_name = grant_counter(&username).await;
    let by_email = grant_counter(&email.replace('@', "%40")).await;
    for n in 0..10 {
        let identifier = if n % 2 == 0 { &username } else { &email };
        let r = post(
            "/auth/login",
            json!({"username": identifier, "password": "wrong-guess"}),
        )
        .await;
        assert_eq!(r.status, 401, "guess {n}: {}", r.text);
    }
    for identifier in [&username, &email] {
        assert_throttled(
            &post(
                "/auth/login",
                json!({"username": identifier, "password": "wrong-guess"}),
            )
            .await,
        );
    }
    assert_eq!(
        fault_hits(&by_name).await + fault_hits(&by_email).await,
        10,
        "Keycloak saw ten guesses in all"
    );
}

#[tokio::test]
async fn an_unknown_email_is_throttled_the_same_way() {
    let email = format!("{}@example.org", unique("noone"));
    for _ in 0..10 {
        let r = post("/auth/login", json!({"username": email, "password": "x"})).await;
        assert_eq!(
            (r.status, r.body["code"].as_str()),
            (401, Some("invalid_credentials"))
        );
    }
    assert_throttled(&post("/auth/login", json!({"username": email, "password": "x"})).await);
}

#[tokio::test]
async fn a_username_that_is_another_users_email_is_refused_and_the_victims_email_login_stays_theirs(
) {
    let (victim, login) = signed_in_user("victim").await;
    let victim_id = login["user"]["id"].as_str().unwrap().to_owned();
    let victim_email = format!("{victim}@example.org");
    // A username with @ that is not the account's own email.
    let mut attack = registration(&victim_email);
    attack["email"] = json!(format!("{}@example.org", unique("attacker")));
    let r = post("/auth/register", attack).await;
    assert_eq!(
        (r.status, r.body["errors"][0]["field"].as_str()),
        (400, Some("username")),
        "{}",
        r.text
    );
    // Even as the account's own email, the address is the victim's: Keycloak's 409, the
    // username check first (contract §13).
    let mut own = registration(&victim_email);
    own["email"] = json!(victim_email);
    let r = post("/auth/register", own).await;
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (409, Some("username_taken")),
        "{}",
        r.text
    );
    assert!(keycloak_users_named(&victim_email).await.is_empty());
    let r = post(
        "/auth/login",
        json!({"username": victim_email, "password": "a-good-password"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["user"]["id"], json!(victim_id));
}

#[tokio::test]
async fn an_email_that_is_another_users_username_is_409() {
    // A username that is an address, held as its own email by its account.
    let named = format!("{}@example.org", unique("mailname"));
    let mut own = registration(&named);
    own["email"] = json!(named);
    let r = post("/auth/register", own).await;
    assert_eq!(r.status, 201, "{}", r.text);
    // Keycloak 26 refuses that address as anyone else's email.
    let (status, body) = keycloak_admin(
        Method::PUT,
        &format!("/users/{}", r.body["user"]["id"].as_str().unwrap()),
        Some(json!({"username": named, "email": format!("{}@example.org", unique("moved"))})),
    )
    .await;
    assert_eq!(status, 204, "{body}");
    let mut other = registration(&unique("other"));
    other["email"] = json!(named);
    let r = post("/auth/register", other).await;
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (409, Some("email_taken")),
        "{}",
        r.text
    );
}

#[tokio::test]
async fn keycloaks_own_text_for_an_unmapped_refusal_stays_in_the_log() {
    let username = unique("kc400");
    fault(json!({"method": "POST", "path": "/admin/realms/{realm}/users",
        "bodyContains": username, "status": 400, "times": 1,
        "body": {"errorMessage": "org.hibernate.exception.ConstraintViolationException: USER_ENTITY"}}))
    .await;
    let r = post("/auth/register", registration(&username)).await;
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (400, Some("rejected_by_keycloak")),
        "{}",
        r.text
    );
    assert!(!r.text.contains("hibernate"), "{}", r.text);
    assert!(!r.text.contains("USER_ENTITY"), "{}", r.text);
    assert_eq!(local_users_named(&username).await, 0);
}

#[tokio::test]
async fn nobody_can_revoke_another_users_session() {
    let (_, victim) = signed_in_user("victimsess").await;
    let (_, attacker) = signed_in_user("revoker").await;
    let sid = victim["sessionId"].as_str().unwrap();
    let token = attacker["tokens"]["accessToken"].as_str().unwrap();
    let r = call(
        Method::DELETE,
        &format!("/auth/sessions/{sid}"),
        Some(token),
        None,
    )
    .await;
    assert_eq!(r.status, 404, "{}", r.text);
    let victim_token = victim["tokens"]["accessToken"].as_str().unwrap();
    assert_eq!(
        call(Method::GET, "/auth/me", Some(victim_token), None)
            .await
            .status,
        200,
        "the victim's session lives on"
    );
}

#[tokio::test]
async fn the_repair_of_a_failed_registration_leaves_a_later_registration_of_the_name_alone() {
    let username = unique("relay");
    run_sync("incremental").await; // warm: the repair below must run within seconds
    let create = |extra: Value| {
        let mut rule = json!({"method": "POST", "path": "/admin/realms/{realm}/users",
                              "bodyContains": username, "times": 1});
        for (k, v) in extra.as_object().unwrap() {
            rule[k] = v.clone();
        }
        rule
    };
    // Keycloak refuses the first registration's create (500, nothing made): its outcome is
    // unknown to the function, which leaves a repair for the name.
    let refused = fault(create(json!({"status": 500}))).await;
    let first = register_with(&unique("key"), &username).await;
    clear_fault(&refused).await;
    assert_eq!(first.status(), 503);
    // A later registration's user is made in Keycloak, and its answer takes a while.
    let slow = fault(create(json!({"after": true, "latencyMs": 6000}))).await;
    let later = tokio::spawn({
        let username = username.clone();
        async move { register_with(&unique("key"), &username).await }
    });
    let made = Instant::now();
    while keycloak_users_named(&username).await.is_empty() {
        assert!(
            made.elapsed() < Duration::from_secs(5),
            "the create never landed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Before it has its local record, a sync runs the repairs.
    run_sync("incremental").await;
    let later = later.await.unwrap();
    clear_fault(&slow).await;
    assert_eq!(later.status(), 201);
    let body: Value = later.json().await.unwrap();
    let in_keycloak = keycloak_users_named(&username).await;
    assert_eq!(
        in_keycloak.len(),
        1,
        "the later registration's Keycloak user is kept: {in_keycloak:?}"
    );
    assert_eq!(in_keycloak[0]["id"], body["user"]["id"]);
}
