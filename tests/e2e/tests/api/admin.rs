//! Admin user management end to end: roles, ETags, write-through to Keycloak, delete, sync.

#![allow(clippy::unwrap_used)]

use base64::Engine;
use e2e::*;
use reqwest::Method;
use serde_json::{json, Value};

fn claims(jwt: &str) -> Value {
    let part = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn a_plain_user_gets_403_everywhere_under_admin() {
    let carol = token_of("carol", "carol-dev-password").await;
    let some = "00000000-0000-0000-0000-000000000000";
    for (method, path, body) in [
        (Method::GET, "/admin/users".to_owned(), None),
        (
            Method::POST,
            "/admin/users".to_owned(),
            Some(new_user(&unique("no"))),
        ),
        (Method::GET, format!("/admin/users/{some}"), None),
        (
            Method::PATCH,
            format!("/admin/users/{some}"),
            Some(json!({})),
        ),
        (Method::DELETE, format!("/admin/users/{some}"), None),
        (
            Method::POST,
            format!("/admin/users/{some}/password"),
            Some(json!({"password": "x-new-password"})),
        ),
        (
            Method::POST,
            format!("/admin/users/{some}/sync"),
            Some(json!({"direction": "from-keycloak"})),
        ),
        (
            Method::POST,
            "/admin/sync".to_owned(),
            Some(json!({"mode": "full"})),
        ),
        (Method::GET, "/admin/sync/runs/1".to_owned(), None),
        (Method::GET, "/admin/sync/status".to_owned(), None),
    ] {
        let r = call(method.clone(), &path, Some(&carol), body).await;
        assert_eq!(
            (r.status, r.body["code"].clone()),
            (403, json!("forbidden")),
            "{method} {path}"
        );
    }
    let r = call(Method::GET, "/admin/users", None, None).await;
    assert_eq!(
        (r.status, r.body.clone()),
        (401, json!({"message": "Unauthorized"}))
    );
}

#[tokio::test]
async fn a_manager_can_create_and_update_but_not_delete() {
    let bob = manager().await;
    let (id, _) = created(&bob, "bymgr").await;
    let etag = get_user(&bob, &id).await.header("etag").unwrap();
    let r = patch(
        &bob,
        &id,
        Some(&etag),
        json!({"attributes": {"department": "Sales"}}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = call(
        Method::DELETE,
        &format!("/admin/users/{id}"),
        Some(&bob),
        None,
    )
    .await;
    assert_eq!(r.status, 403);
    let r = call(
        Method::POST,
        "/admin/sync",
        Some(&bob),
        Some(json!({"mode": "full"})),
    )
    .await;
    assert_eq!(r.status, 403, "bulk-sync control is admin only");
}

#[tokio::test]
async fn create_writes_keycloak_and_the_local_record_and_get_has_an_etag() {
    let alice = admin().await;
    let (id, username) = created(&alice, "adm").await;
    let r = get_user(&alice, &id).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["username"], json!(username));
    // The record's version: 1, unless a sync or webhook wrote Keycloak's view over it meanwhile
    // (the suite runs other specs' syncs at the same time; seen once, cause not traced).
    let version = local_user(&id).await.unwrap().version;
    assert_eq!(r.header("etag"), Some(format!("\"{version}\"")));
    let (_, kc) = keycloak_admin(Method::GET, &format!("/users/{id}"), None).await;
    assert_eq!(
        (
            kc["enabled"].clone(),
            kc["attributes"]["organization"].clone()
        ),
        (json!(true), json!(["Acme"]))
    );
    token_of(&username, "a-good-password").await;
    let dup = call(
        Method::POST,
        "/admin/users",
        Some(&alice),
        Some(new_user(&username)),
    )
    .await;
    assert_eq!(
        (dup.status, dup.body["code"].clone()),
        (409, json!("username_taken"))
    );
    assert_eq!(
        call(Method::GET, "/admin/users/not-a-user", Some(&alice), None)
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn patch_needs_if_match_and_refuses_a_stale_etag() {
    let alice = admin().await;
    let (id, _) = created(&alice, "etag").await;
    let r = patch(&alice, &id, None, json!({"firstName": "X"})).await;
    assert_eq!(
        (r.status, r.body["code"].clone()),
        (428, json!("precondition_required"))
    );
    let r = patch(&alice, &id, Some("\"1\""), json!({"firstName": "Xavier"})).await;
    assert_eq!(
        (r.status, r.header("etag").as_deref()),
        (200, Some("\"2\""))
    );
    let r = patch(&alice, &id, Some("\"1\""), json!({"firstName": "Yann"})).await;
    assert_eq!(
        (r.status, r.body["code"].clone()),
        (412, json!("precondition_failed"))
    );
    let (_, kc) = keycloak_admin(Method::GET, &format!("/users/{id}"), None).await;
    assert_eq!(kc["firstName"], "Xavier");
    assert_eq!(
        kc["lastName"], "User",
        "GET-merge-PUT keeps what the patch did not name"
    );
    assert_eq!(kc["attributes"]["title"], json!(["Tester"]));
}

#[tokio::test]
async fn two_concurrent_patches_with_the_same_etag_give_one_success_and_change_nothing_else() {
    let alice = admin().await;
    let (id, _) = created(&alice, "race").await;
    let (a, b) = tokio::join!(
        patch(&alice, &id, Some("\"1\""), json!({"lastName": "Alpha"})),
        patch(&alice, &id, Some("\"1\""), json!({"lastName": "Beta"})),
    );
    let (winner, loser) = if a.status == 200 { (&a, &b) } else { (&b, &a) };
    assert_eq!(winner.status, 200, "{}", winner.text);
    // The loser either met the winner's write in flight or its ETag was already stale.
    assert!(
        matches!(
            (loser.status, loser.body["code"].as_str()),
            (409, Some("write_in_progress")) | (412, Some("precondition_failed"))
        ),
        "{}",
        loser.text
    );
    let winner = if a.status == 200 { "Alpha" } else { "Beta" };
    let (_, kc) = keycloak_admin(Method::GET, &format!("/users/{id}"), None).await;
    assert_eq!(kc["lastName"], winner, "Keycloak holds the winner's change");
    assert_eq!(get_user(&alice, &id).await.body["lastName"], winner);
}

#[tokio::test]
async fn a_patch_keycloak_refuses_is_409_and_changes_neither_side() {
    let alice = admin().await;
    let (id, _) = created(&alice, "keep").await;
    let (_, other) = created(&alice, "taken").await;
    let before = get_user(&alice, &id).await;
    let (_, kc_before) = keycloak_admin(Method::GET, &format!("/users/{id}"), None).await;
    let r = patch(
        &alice,
        &id,
        before.header("etag").as_deref(),
        json!({"email": format!("{other}@example.org"), "attributes": {"title": "Changed"}}),
    )
    .await;
    assert_eq!(
        (r.status, r.body["code"].clone()),
        (409, json!("email_taken"))
    );
    let after = get_user(&alice, &id).await;
    assert_eq!(after.body, before.body);
    let version =
        |r: &Resp| -> u64 { r.header("etag").unwrap().trim_matches('"').parse().unwrap() };
    assert!(
        version(&after) > version(&before),
        "the undo is a newer version: an ETag never names two states"
    );
    let (_, kc_after) = keycloak_admin(Method::GET, &format!("/users/{id}"), None).await;
    assert_eq!(kc_after, kc_before);
}

#[tokio::test]
async fn delete_stops_sign_in_refresh_and_sessions() {
    let alice = admin().await;
    let (id, username) = created(&alice, "del").await;
    let login = post(
        "/auth/login",
        json!({"username": username, "password": "a-good-password"}),
    )
    .await
    .body;
    let r = call(
        Method::DELETE,
        &format!("/admin/users/{id}"),
        Some(&alice),
        None,
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.text);
    let again = post(
        "/auth/login",
        json!({"username": username, "password": "a-good-password"}),
    )
    .await;
    assert_eq!(
        (again.status, again.body["code"].clone()),
        (401, json!("invalid_credentials"))
    );
    let refresh = post(
        "/auth/refresh",
        json!({"refreshToken": login["tokens"]["refreshToken"]}),
    )
    .await;
    assert_eq!(refresh.status, 401);
    let sessions = store().list_sessions(&id).await.unwrap();
    assert!(!sessions.is_empty() && sessions.iter().all(|s| s.ended_at.is_some()));
    let user = get_user(&alice, &id).await.body;
    assert_eq!(user["status"], "deleted");
    let (status, kc) = keycloak_admin(Method::GET, &format!("/users/{id}"), None).await;
    assert_eq!((status, kc["enabled"].clone()), (200, json!(false)));
}

#[tokio::test]
async fn hard_delete_removes_the_keycloak_user_and_keeps_a_tombstone() {
    let alice = admin().await;
    let (id, _) = created(&alice, "hard").await;
    assert_eq!(
        call(
            Method::DELETE,
            &format!("/admin/users/{id}?hard=true"),
            Some(&alice),
            None
        )
        .await
        .status,
        204
    );
    assert_eq!(
        keycloak_admin(Method::GET, &format!("/users/{id}"), None)
            .await
            .0,
        404
    );
    assert_eq!(get_user(&alice, &id).await.body["status"], "deleted");
}

#[tokio::test]
async fn a_delete_whose_hard_flag_is_neither_true_nor_false_is_refused_and_changes_nothing() {
    let alice = admin().await;
    let (id, _) = created(&alice, "hardish").await;
    let r = call(
        Method::DELETE,
        &format!("/admin/users/{id}?hard=yes"),
        Some(&alice),
        None,
    )
    .await;
    assert_eq!(
        (
            r.status,
            r.body["code"].clone(),
            r.body["errors"][0]["field"].clone()
        ),
        (400, json!("validation_failed"), json!("hard"))
    );
    assert_eq!(get_user(&alice, &id).await.body["status"], "active");
    let (_, kc) = keycloak_admin(Method::GET, &format!("/users/{id}"), None).await;
    assert_eq!(kc["enabled"], json!(true));
}

#[tokio::test]
async fn password_reset_permanent_or_temporary() {
    let bob = manager().await;
    let (id, username) = created(&bob, "pw").await;
    let path = format!("/admin/users/{id}/password");
    assert_eq!(
        call(
            Method::POST,
            &path,
            Some(&bob),
            Some(json!({"password": "brand-new-pass"}))
        )
        .await
        .status,
        204
    );
    token_of(&username, "brand-new-pass").await;
    let r = call(
        Method::POST,
        &path,
        Some(&bob),
        Some(json!({"password": "short"})),
    )
    .await;
    assert_eq!(
        (r.status, r.body["code"].clone()),
        (400, json!("password_policy"))
    );
    assert_eq!(
        call(
            Method::POST,
            &path,
            Some(&bob),
            Some(json!({"password": "temp-pass-123", "temporary": true}))
        )
        .await
        .status,
        204
    );
    let r = post(
        "/auth/login",
        json!({"username": username, "password": "temp-pass-123"}),
    )
    .await;
    assert_eq!(r.body["code"], "account_not_ready");
}

#[tokio::test]
async fn a_listing_query_that_names_a_key_twice_is_refused_as_ambiguous() {
    let alice = admin().await;
    for path in [
        "/admin/users?limit=3&limit=5",
        "/admin/audit?target=a&target=b",
    ] {
        let r = call(Method::GET, path, Some(&alice), None).await;
        assert_eq!(
            (r.status, r.body["code"].as_str()),
            (400, Some("invalid_query")),
            "{path}: {}",
            r.text
        );
    }
}

#[tokio::test]
async fn list_pages_return_every_user_exactly_once_while_users_are_added() {
    let alice = admin().await;
    let prefix = unique("pg");
    let mut expected = std::collections::HashSet::new();
    for i in 0..7 {
        let r = call(
            Method::POST,
            "/admin/users",
            Some(&alice),
            Some(new_user(&format!("{prefix}n{i}"))),
        )
        .await;
        assert_eq!(r.status, 201);
        expected.insert(format!("{prefix}n{i}"));
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut added = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/admin/users?limit=3&q={prefix}&cursor={c}"),
            None => format!("/admin/users?limit=3&q={prefix}"),
        };
        let page = call(Method::GET, &path, Some(&alice), None).await;
        assert_eq!(page.status, 200, "{}", page.text);
        seen.extend(
            page.body["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|u| u["username"].as_str().unwrap().to_owned()),
        );
        if added < 2 {
            call(
                Method::POST,
                "/admin/users",
                Some(&alice),
                Some(new_user(&format!("{prefix}m{added}"))),
            )
            .await;
            added += 1;
        }
        match page.body["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let unique_seen: std::collections::HashSet<_> = seen.iter().cloned().collect();
    assert_eq!(unique_seen.len(), seen.len(), "no user twice: {seen:?}");
    assert!(
        expected.is_subset(&unique_seen),
        "every user present from the start is listed"
    );
    let bad = call(
        Method::GET,
        "/admin/users?cursor=forged",
        Some(&alice),
        None,
    )
    .await;
    assert_eq!(
        (bad.status, bad.body["code"].clone()),
        (400, json!("invalid_cursor"))
    );
}

#[tokio::test]
async fn a_business_attribute_set_by_an_admin_is_in_the_next_login_token() {
    let alice = admin().await;
    let (id, username) = created(&alice, "claim").await;
    let r = patch(
        &alice,
        &id,
        Some("\"1\""),
        json!({"attributes": {"department": "Finance", "phone": "+1 555 0199"}}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let token = token_of(&username, "a-good-password").await;
    let c = claims(&token);
    assert_eq!(
        (c["department"].clone(), c["phone"].clone()),
        (json!("Finance"), json!("+1 555 0199"))
    );
}

#[tokio::test]
async fn per_user_sync_in_both_directions_reports_changes() {
    let alice = admin().await;
    let (id, _) = created(&alice, "sync").await;
    // The two sides made to differ on the local side (a Keycloak edit would reach the store
    // through the webhooks before the call: nothing left for it to report).
    set_local_field(&id, "first_name", "Stale").await;
    let path = format!("/admin/users/{id}/sync");
    let r = call(
        Method::POST,
        &path,
        Some(&alice),
        Some(json!({"direction": "from-keycloak"})),
    )
    .await;
    assert_eq!(
        (
            r.status,
            r.body["changed"].clone(),
            r.body["user"]["firstName"].clone()
        ),
        (200, json!(true), json!("Test")),
        "Keycloak's value was pulled"
    );
    let r = call(
        Method::POST,
        &path,
        Some(&alice),
        Some(json!({"direction": "from-keycloak"})),
    )
    .await;
    assert_eq!(r.body["changed"], false, "nothing new the second time");
    set_local_field(&id, "last_name", "Pushed").await;
    let r = call(
        Method::POST,
        &path,
        Some(&alice),
        Some(json!({"direction": "to-keycloak"})),
    )
    .await;
    assert_eq!((r.status, r.body["changed"].clone()), (200, json!(true)));
    let (_, kc) = keycloak_admin(Method::GET, &format!("/users/{id}"), None).await;
    assert_eq!(kc["lastName"], "Pushed", "the local value was pushed");
    let r = call(
        Method::POST,
        &path,
        Some(&alice),
        Some(json!({"direction": "sideways"})),
    )
    .await;
    assert_eq!(r.status, 400);
}

/// Change one attribute of the user's stored profile behind the API's back.
async fn set_local_field(id: &str, attribute: &str, value: &str) {
    use aws_sdk_dynamodb::types::AttributeValue;
    dynamodb()
        .update_item()
        .table_name(&stack().table)
        .key("pk", AttributeValue::S(format!("USER#{id}")))
        .key("sk", AttributeValue::S("PROFILE".into()))
        .update_expression("SET #a = :v")
        .expression_attribute_names("#a", attribute)
        .expression_attribute_values(":v", AttributeValue::S(value.into()))
        .send()
        .await
        .unwrap();
}

/// A run started by `POST /admin/sync` (202, its `Location`), once finished. The suite's other
/// specs run syncs of their own: a run that found one of theirs holding the lease ends
/// `skipped`, as designed, and is started again.
async fn run_started_by(token: &str, body: Value) -> (String, Value) {
    for _ in 0..120 {
        let r = call(Method::POST, "/admin/sync", Some(token), Some(body.clone())).await;
        assert_eq!(r.status, 202, "{}", r.text);
        let run_id = r.body["runId"].as_str().unwrap().to_owned();
        assert_eq!(
            r.header("location"),
            Some(format!("/admin/sync/runs/{run_id}"))
        );
        let run = finished_run(token, &run_id).await;
        if run["status"] != "skipped" {
            return (run_id, run);
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    panic!("every run was skipped: another run held the lease for a minute");
}

async fn finished_run(token: &str, run_id: &str) -> Value {
    for _ in 0..120 {
        let r = call(
            Method::GET,
            &format!("/admin/sync/runs/{run_id}"),
            Some(token),
            None,
        )
        .await;
        if r.status == 200 && !matches!(r.body["status"].as_str(), Some("running")) {
            return r.body;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    panic!("run {run_id} did not finish");
}

#[tokio::test]
async fn an_admin_starts_bulk_syncs_and_reads_their_runs_and_the_status() {
    let alice = admin().await;
    let (id, _) = created(&alice, "bulk").await;
    let (_, dry_run) = run_started_by(&alice, json!({"mode": "full", "dryRun": true})).await;
    assert_eq!(dry_run["status"], "dry_run");
    let (run_id, run) = run_started_by(&alice, json!({"mode": "full"})).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert!(run["counts"]["seen"].as_u64().unwrap() >= 4);
    assert!(
        run["startedAt"].is_string() && run["counts"]["onlyInKeycloak"].is_u64(),
        "the API speaks camelCase: {run}"
    );
    assert!(
        run["counts"]["unchanged"].as_u64().unwrap() >= 1,
        "users created through the API are already in step: {run}"
    );
    assert_eq!(
        local_user(&id).await.unwrap().status,
        user_sync::outside::store::UserStatus::Active
    );
    let status = call(Method::GET, "/admin/sync/status", Some(&alice), None).await;
    assert_eq!(status.status, 200);
    assert_eq!(status.body["asOfRunId"], json!(run_id));
    assert!(status.body["lastSuccessAt"].is_string());
    assert_eq!(status.body["failureRateLast24h"], 0.0);
    let bad = call(
        Method::POST,
        "/admin/sync",
        Some(&alice),
        Some(json!({"mode": "sometimes"})),
    )
    .await;
    assert_eq!(bad.status, 400);
    assert_eq!(
        call(Method::GET, "/admin/sync/runs/nope", Some(&alice), None)
            .await
            .status,
        404
    );
}
