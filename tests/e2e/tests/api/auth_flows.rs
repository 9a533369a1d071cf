//! Register, login, refresh, logout and the session routes, end to end through the gateway.

#![allow(clippy::unwrap_used)]

use e2e::*;
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn register_creates_the_keycloak_user_and_its_local_record() {
    let username = unique("reg");
    let r = post("/auth/register", registration(&username)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let user = &r.body["user"];
    assert_eq!(user["username"], json!(username));
    assert_eq!(user["status"], "active");
    assert_eq!(user["attributes"], json!({"phone": "+1 555 0199"}));
    let id = user["id"].as_str().unwrap();
    let kc = keycloak_users_named(&username).await;
    assert_eq!(kc.len(), 1);
    assert_eq!(
        kc[0]["id"],
        json!(id),
        "the local record is keyed by the Keycloak id"
    );
    assert_eq!(kc[0]["attributes"]["phone"], json!(["+1 555 0199"]));
    let local = local_user(id).await.unwrap();
    assert_eq!(local.attributes["phone"], "+1 555 0199");
}

#[tokio::test]
async fn duplicate_registration_is_409_and_writes_no_second_record() {
    let username = unique("dup");
    assert_eq!(
        post("/auth/register", registration(&username)).await.status,
        201
    );
    let again = post("/auth/register", registration(&username)).await;
    assert_eq!(
        (again.status, again.body["code"].clone()),
        (409, json!("username_taken"))
    );
    assert_eq!(
        again.header("content-type").as_deref(),
        Some("application/problem+json")
    );
    assert_eq!(local_users_named(&username).await, 1);
    assert_eq!(keycloak_users_named(&username).await.len(), 1);
}

#[tokio::test]
async fn a_taken_email_is_409_email_taken() {
    let first = unique("mail");
    assert_eq!(
        post("/auth/register", registration(&first)).await.status,
        201
    );
    let mut other = registration(&unique("mail"));
    other["email"] = json!(format!("{first}@example.org"));
    let r = post("/auth/register", other).await;
    assert_eq!(
        (r.status, r.body["code"].clone()),
        (409, json!("email_taken"))
    );
}

#[tokio::test]
async fn bad_registrations_are_400_and_change_nothing() {
    let username = unique("bad");
    let mut body = registration(&username);
    body["email"] = json!("not-an-email");
    let r = post("/auth/register", body).await;
    assert_eq!(
        (r.status, r.body["code"].clone()),
        (400, json!("validation_failed"))
    );
    assert_eq!(r.body["errors"][0]["field"], "email");
    let mut body = registration(&username);
    body["nickname"] = json!("x");
    let r = post("/auth/register", body).await;
    assert_eq!(
        (r.status, r.body["errors"][0]["field"].clone()),
        (400, json!("nickname"))
    );
    let mut body = registration(&username);
    body["password"] = json!("short");
    let r = post("/auth/register", body).await;
    assert_eq!(
        (r.status, r.body["code"].clone()),
        (400, json!("password_policy"))
    );
    assert_eq!(r.body["detail"], "Invalid password: minimum length 8.");
    assert!(keycloak_users_named(&username).await.is_empty());
    assert_eq!(local_users_named(&username).await, 0);
}

#[tokio::test]
async fn wrong_content_type_and_oversized_bodies_are_refused() {
    let r = http()
        .post(format!("{}/auth/register", stack().gateway))
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    let mut big = registration(&unique("big"));
    big["firstName"] = json!("x".repeat(70 * 1024));
    assert_eq!(post("/auth/register", big).await.status, 413);
}

#[tokio::test]
async fn the_same_idempotency_key_twice_creates_one_user() {
    let username = unique("idem");
    let key = format!("key-{username}");
    let send = || {
        http()
            .post(format!("{}/auth/register", stack().gateway))
            .header("idempotency-key", key.clone())
            .json(&registration(&username))
            .send()
    };
    let first = send().await.unwrap();
    assert_eq!(first.status(), 201);
    let first: serde_json::Value = first.json().await.unwrap();
    let second = send().await.unwrap();
    assert_eq!(second.status(), 201, "a retry answers the first response");
    let second: serde_json::Value = second.json().await.unwrap();
    assert_eq!(first, second);
    assert_eq!(keycloak_users_named(&username).await.len(), 1);
    assert_eq!(local_users_named(&username).await, 1);
}

#[tokio::test]
async fn a_registration_that_failed_frees_its_idempotency_key_for_the_retry() {
    let username = unique("idem-retry");
    let key = format!("key-{username}");
    let send = || {
        http()
            .post(format!("{}/auth/register", stack().gateway))
            .header("idempotency-key", key.clone())
            .json(&registration(&username))
            .send()
    };
    // Keycloak refuses the creation once (certainly not processed: not retried by the client).
    fault(
        json!({"method": "POST", "path": "/admin/realms/{realm}/users",
        "bodyContains": username, "status": 429, "retryAfter": 30, "times": 1}),
    )
    .await;
    let first = send().await.unwrap();
    assert_eq!(first.status(), 429, "{}", first.text().await.unwrap());
    let retry = send().await.unwrap();
    assert_eq!(
        retry.status(),
        201,
        "the key was released, not left claimed"
    );
    assert_eq!(keycloak_users_named(&username).await.len(), 1);
    assert_eq!(local_users_named(&username).await, 1);
}

#[tokio::test]
async fn login_returns_tokens_and_records_the_user_and_session() {
    let (username, login) = signed_in_user("login").await;
    let user = &login["user"];
    assert_eq!(user["username"], json!(username));
    assert!(user["roles"].as_array().unwrap().contains(&json!("user")));
    assert!(login["tokens"]["accessToken"].is_string());
    assert!(login["tokens"]["refreshToken"].is_string());
    let sid = login["sessionId"].as_str().unwrap();
    let id = user["id"].as_str().unwrap();
    let local = local_user(id).await.unwrap();
    assert_eq!(local.login_count, 1);
    assert!(local.last_login_at.is_some());
    let session = store().get_session(id, sid).await.unwrap().unwrap();
    let refresh = login["tokens"]["refreshToken"].as_str().unwrap();
    assert_eq!(
        session.refresh_token_sha256,
        user_sync::outside::store::token_hash(refresh)
    );
    assert_ne!(
        session.refresh_token_sha256, refresh,
        "the token itself is never stored"
    );
    let ip: std::net::IpAddr = session.ip.as_deref().unwrap().parse().unwrap();
    assert!(
        ip.is_loopback(),
        "the caller's address, as API Gateway states it: {ip}"
    );
}

#[tokio::test]
async fn wrong_password_is_401_and_writes_nothing() {
    let username = unique("kconly");
    let (status, _) = keycloak_admin(
        Method::POST,
        "/users",
        Some(json!({"username": username, "email": format!("{username}@example.org"), "firstName": "K", "lastName": "C",
                    "enabled": true, "credentials": [{"type": "password", "value": "right-password"}]})),
    )
    .await;
    assert_eq!(status, 201);
    let r = post(
        "/auth/login",
        json!({"username": username, "password": "wrong-password"}),
    )
    .await;
    assert_eq!(
        (r.status, r.body["code"].clone()),
        (401, json!("invalid_credentials"))
    );
    // Keycloak's own create reaches the store through the webhooks (the record may be there);
    // the failed login adds nothing to it: no session, no login.
    let id = keycloak_users_named(&username).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for item in raw_items(&id).await {
        let sk = item["sk"].as_s().unwrap();
        assert_eq!(sk, "PROFILE", "a failed login wrote {sk}");
        assert!(!item.contains_key("last_login_at"), "{item:?}");
    }
    let unknown = post(
        "/auth/login",
        json!({"username": unique("ghost"), "password": "whatever1"}),
    )
    .await;
    assert_eq!(
        unknown.body, r.body,
        "an unknown user looks exactly like a wrong password"
    );
}

#[tokio::test]
async fn a_user_disabled_in_keycloak_gets_the_answer_of_a_wrong_password() {
    let username = unique("off");
    let r = post("/auth/register", registration(&username)).await;
    let id = r.body["user"]["id"].as_str().unwrap().to_owned();
    let (_, mut rep) = keycloak_admin(Method::GET, &format!("/users/{id}"), None).await;
    rep["enabled"] = json!(false);
    assert_eq!(
        keycloak_admin(Method::PUT, &format!("/users/{id}"), Some(rep))
            .await
            .0,
        204
    );
    let r = post(
        "/auth/login",
        json!({"username": username, "password": "a-good-password"}),
    )
    .await;
    // Keycloak says "disabled" before it checks the password: passing that on would tell anyone
    // which accounts are disabled (REVEAL_ACCOUNT_STATE=true turns it back on).
    assert_eq!(
        (r.status, r.body["code"].clone()),
        (401, json!("invalid_credentials"))
    );
}

#[tokio::test]
async fn a_pending_required_action_is_403_account_not_ready() {
    let username = unique("pending");
    let r = post("/auth/register", registration(&username)).await;
    let id = r.body["user"]["id"].as_str().unwrap().to_owned();
    let (status, _) = keycloak_admin(
        Method::PUT,
        &format!("/users/{id}/reset-password"),
        Some(json!({"type": "password", "value": "temporary-pass", "temporary": true})),
    )
    .await;
    assert_eq!(status, 204);
    let r = post(
        "/auth/login",
        json!({"username": username, "password": "temporary-pass"}),
    )
    .await;
    assert_eq!(
        (r.status, r.body["code"].clone()),
        (403, json!("account_not_ready"))
    );
}

#[tokio::test]
async fn keycloak_rate_limiting_is_passed_on_with_retry_after() {
    let username = unique("limited");
    assert_eq!(
        post("/auth/register", registration(&username)).await.status,
        201
    );
    fault(json!({"path": "/realms/{realm}/protocol/openid-connect/token", "bodyContains": format!("username={username}"),
                 "status": 429, "retryAfter": 30}))
    .await;
    let r = post(
        "/auth/login",
        json!({"username": username, "password": "a-good-password"}),
    )
    .await;
    assert_eq!(
        (r.status, r.body["code"].clone()),
        (429, json!("rate_limited"))
    );
    assert_eq!(r.header("retry-after").as_deref(), Some("30"));
}

#[tokio::test]
async fn keycloak_down_is_503() {
    let username = unique("down");
    assert_eq!(
        post("/auth/register", registration(&username)).await.status,
        201
    );
    fault(json!({"path": "/realms/{realm}/protocol/openid-connect/token", "bodyContains": format!("username={username}"),
                 "status": 503}))
    .await;
    let r = post(
        "/auth/login",
        json!({"username": username, "password": "a-good-password"}),
    )
    .await;
    assert_eq!(
        (r.status, r.body["code"].clone()),
        (503, json!("keycloak_unavailable"))
    );
}

#[tokio::test]
async fn refresh_rotates_tokens_and_counts_on_the_session() {
    let (_, login) = signed_in_user("refresh").await;
    let r = post(
        "/auth/refresh",
        json!({"refreshToken": login["tokens"]["refreshToken"]}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["sessionId"], login["sessionId"]);
    assert_ne!(
        r.body["tokens"]["refreshToken"],
        login["tokens"]["refreshToken"]
    );
    let id = login["user"]["id"].as_str().unwrap();
    let session = store()
        .get_session(id, login["sessionId"].as_str().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(session.refresh_count, 1);
}

#[tokio::test]
async fn refresh_after_logout_is_401_and_the_session_shows_ended() {
    let (_, login) = signed_in_user("out").await;
    let rt = login["tokens"]["refreshToken"].clone();
    assert_eq!(
        post("/auth/logout", json!({"refreshToken": rt}))
            .await
            .status,
        204
    );
    let r = post("/auth/refresh", json!({"refreshToken": rt})).await;
    assert_eq!(
        (r.status, r.body["code"].clone()),
        (401, json!("invalid_token"))
    );
    let id = login["user"]["id"].as_str().unwrap();
    let session = store()
        .get_session(id, login["sessionId"].as_str().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        session.end_reason,
        Some(user_sync::outside::store::SessionEnd::Logout)
    );
}

#[tokio::test]
async fn a_session_ended_in_keycloak_fails_refresh_and_is_ended_here() {
    let (_, login) = signed_in_user("kcend").await;
    let id = login["user"]["id"].as_str().unwrap();
    assert_eq!(
        keycloak_admin(Method::POST, &format!("/users/{id}/logout"), None)
            .await
            .0,
        204
    );
    let r = post(
        "/auth/refresh",
        json!({"refreshToken": login["tokens"]["refreshToken"]}),
    )
    .await;
    assert_eq!(
        (r.status, r.body["code"].clone()),
        (401, json!("invalid_token"))
    );
    let session = store()
        .get_session(id, login["sessionId"].as_str().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        session.end_reason,
        Some(user_sync::outside::store::SessionEnd::EndedInKeycloak)
    );
}

#[tokio::test]
async fn logout_twice_is_204_both_times() {
    let (_, login) = signed_in_user("twice").await;
    let rt = login["tokens"]["refreshToken"].clone();
    assert_eq!(
        post("/auth/logout", json!({"refreshToken": rt}))
            .await
            .status,
        204
    );
    assert_eq!(
        post("/auth/logout", json!({"refreshToken": rt}))
            .await
            .status,
        204
    );
    assert_eq!(
        post(
            "/auth/logout",
            json!({"refreshToken": "forged.token.value"})
        )
        .await
        .status,
        204
    );
    assert_eq!(post("/auth/logout", json!({})).await.status, 400);
}

#[tokio::test]
async fn me_and_my_sessions_show_the_signed_in_user() {
    let (username, login) = signed_in_user("me").await;
    let token = login["tokens"]["accessToken"].as_str().unwrap();
    let me = call(Method::GET, "/auth/me", Some(token), None).await;
    assert_eq!(me.status, 200, "{}", me.text);
    assert_eq!(
        (me.body["username"].clone(), me.body["loginCount"].clone()),
        (json!(username), json!(1))
    );
    let sessions = call(Method::GET, "/auth/sessions", Some(token), None).await;
    let items = sessions.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(
        (items[0]["id"].clone(), items[0]["current"].clone()),
        (login["sessionId"].clone(), json!(true))
    );
}

#[tokio::test]
async fn revoking_a_session_ends_it_in_keycloak_and_locally() {
    let (_, first) = signed_in_user("revoke").await;
    let username = first["user"]["username"].as_str().unwrap().to_owned();
    let second = post(
        "/auth/login",
        json!({"username": username, "password": "a-good-password"}),
    )
    .await
    .body;
    let token = second["tokens"]["accessToken"].as_str().unwrap();
    let sid = first["sessionId"].as_str().unwrap();
    let r = call(
        Method::DELETE,
        &format!("/auth/sessions/{sid}"),
        Some(token),
        None,
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.text);
    let refresh = post(
        "/auth/refresh",
        json!({"refreshToken": first["tokens"]["refreshToken"]}),
    )
    .await;
    assert_eq!(refresh.status, 401);
    let items = call(Method::GET, "/auth/sessions", Some(token), None)
        .await
        .body["items"]
        .clone();
    let revoked = items
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == json!(sid))
        .unwrap()
        .clone();
    assert_eq!(
        (revoked["active"].clone(), revoked["endReason"].clone()),
        (json!(false), json!("revoked"))
    );
    let other = call(Method::DELETE, "/auth/sessions/not-mine", Some(token), None).await;
    assert_eq!(other.status, 404);
}

#[tokio::test]
async fn validate_tells_live_tokens_from_forged_and_ended_ones() {
    let (_, login) = signed_in_user("valid").await;
    let token = login["tokens"]["accessToken"].as_str().unwrap().to_owned();
    let r = post("/auth/token/validate", json!({"token": token})).await;
    assert_eq!(r.body["active"], true);
    assert_eq!(
        r.body["claims"]["preferred_username"],
        login["user"]["username"]
    );
    let forged = format!("{}AAAA", &token[..token.len() - 4]);
    assert_eq!(
        post("/auth/token/validate", json!({"token": forged}))
            .await
            .body,
        json!({"active": false})
    );
    assert_eq!(
        post("/auth/token/validate", json!({"token": "garbage"}))
            .await
            .body,
        json!({"active": false})
    );
    assert_eq!(
        post(
            "/auth/logout",
            json!({"refreshToken": login["tokens"]["refreshToken"]})
        )
        .await
        .status,
        204
    );
    assert_eq!(
        post("/auth/token/validate", json!({"token": token}))
            .await
            .body,
        json!({"active": false})
    );
    let me = call(Method::GET, "/auth/me", Some(&token), None).await;
    assert_eq!(
        me.status, 401,
        "the gateway lets the token through; the function knows the session ended"
    );
}

#[tokio::test]
async fn bearer_routes_refuse_forged_and_missing_tokens_at_the_gateway() {
    let (_, login) = signed_in_user("forge").await;
    let token = login["tokens"]["accessToken"].as_str().unwrap();
    let forged = format!("{}AAAA", &token[..token.len() - 4]);
    for t in [Some(forged.as_str()), Some("garbage"), None] {
        let r = call(Method::GET, "/auth/me", t, None).await;
        assert_eq!(
            (r.status, r.body.clone()),
            (401, json!({"message": "Unauthorized"}))
        );
    }
}

#[tokio::test]
async fn unknown_routes_are_api_gateway_404s() {
    let r = call(Method::GET, "/auth/nothing", None, None).await;
    assert_eq!(
        (r.status, r.body.clone()),
        (404, json!({"message": "Not Found"}))
    );
    let r = call(Method::GET, "/auth/login", None, None).await;
    assert_eq!(r.status, 404, "wrong method on a known path");
}

/// The session function has no admin credentials: it asks Keycloak's account API, with the
/// caller's own token. When Keycloak cannot hear it, the session still ends here at once, and the
/// next sync run ends it in Keycloak.
#[tokio::test]
async fn a_revoke_keycloak_cannot_hear_ends_the_session_here_and_the_next_sync_ends_it_there() {
    let (_, first) = signed_in_user("revoke-down").await;
    let id = first["user"]["id"].as_str().unwrap().to_owned();
    let token = first["tokens"]["accessToken"].as_str().unwrap();
    let sid = first["sessionId"].as_str().unwrap();
    let kc_sessions = || async {
        let (_, list) = keycloak_admin(Method::GET, &format!("/users/{id}/sessions"), None).await;
        list.as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    let rule = fault(
        json!({"method": "DELETE", "path": format!("/realms/{{realm}}/account/sessions/{sid}"),
        "status": 503, "times": 20}),
    )
    .await;
    let r = call(
        Method::DELETE,
        &format!("/auth/sessions/{sid}"),
        Some(token),
        None,
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert!(fault_hits(&rule).await >= 1, "Keycloak was asked");
    assert!(
        kc_sessions().await.contains(&sid.to_owned()),
        "Keycloak still has it"
    );
    let me = call(Method::GET, "/auth/me", Some(token), None).await;
    assert_eq!(me.status, 401, "the session is ended here at once");
    run_sync("incremental").await;
    assert!(
        !kc_sessions().await.contains(&sid.to_owned()),
        "the sync ended it in Keycloak"
    );
}

#[tokio::test]
async fn a_user_the_sync_marked_missing_who_is_back_in_keycloak_can_sign_in_at_once() {
    let (username, login) = signed_in_user("back").await;
    let id = login["user"]["id"].as_str().unwrap().to_owned();
    // As a sync run that read the user as gone (say, while Keycloak lost them for a moment).
    assert!(store()
        .mark_missing(&id, user_sync::base::clock::now_ms())
        .await
        .unwrap());
    let r = post(
        "/auth/login",
        json!({"username": username, "password": "a-good-password"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let local = local_user(&id).await.unwrap();
    assert_eq!(
        (local.status, local.deleted_reason),
        (user_sync::outside::store::UserStatus::Active, None)
    );
    let token = r.body["tokens"]["accessToken"].as_str().unwrap();
    assert_eq!(
        call(Method::GET, "/auth/me", Some(token), None)
            .await
            .status,
        200
    );
}
