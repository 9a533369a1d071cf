//! Who may act on whom, end to end: every rule of the policy in both directions, and proof that a
//! refused request changes nothing in Keycloak or DynamoDB. Also the input an attacker would try:
//! admin-only attributes at registration, look-alike usernames, ids that are not ids.

#![allow(clippy::unwrap_used)]

use base64::Engine;
use e2e::*;
use reqwest::Method;
use serde_json::{json, Value};

const PASSWORD: &str = "a-good-password";

fn sub(jwt: &str) -> String {
    let part = jwt.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .unwrap(),
    )
    .unwrap();
    claims["sub"].as_str().unwrap().to_owned()
}

/// A fresh user holding `role` in Keycloak (the local record knows nothing of it); signed in once
/// so that they have a live session. Returns (id, username, their token).
async fn privileged(role: &str) -> (String, String, String) {
    let (id, username) = created(&admin().await, role).await;
    grant_realm_role(&id, role).await;
    let token = token_of(&username, PASSWORD).await;
    (id, username, token)
}

/// Everything a refused request must leave as it was: the Keycloak user, its role mappings and
/// sessions, and every DynamoDB item of the user.
#[derive(Debug, PartialEq)]
struct Snapshot(Value, Value, Value, String);

async fn snapshot(id: &str) -> Snapshot {
    let (_, user) = keycloak_admin(Method::GET, &format!("/users/{id}"), None).await;
    let (_, roles) = keycloak_admin(Method::GET, &format!("/users/{id}/role-mappings"), None).await;
    let (_, sessions) = keycloak_admin(Method::GET, &format!("/users/{id}/sessions"), None).await;
    let mut items: Vec<String> = raw_items(id)
        .await
        .into_iter()
        .map(|i| {
            format!(
                "{:?}",
                i.into_iter().collect::<std::collections::BTreeMap<_, _>>()
            )
        })
        .collect();
    items.sort();
    Snapshot(user, roles, sessions, items.join("\n"))
}

/// Compare part by part, so a failure says which part moved.
fn unchanged(before: &Snapshot, after: &Snapshot) {
    assert_eq!(before.0, after.0, "the Keycloak user");
    assert_eq!(before.1, after.1, "its Keycloak role mappings");
    assert_eq!(before.2, after.2, "its Keycloak sessions");
    assert_eq!(before.3, after.3, "its DynamoDB items");
}

/// Every mutation a manager could try on `id` (the ETag read first).
async fn every_mutation(token: &str, id: &str) -> Vec<(String, Resp)> {
    let etag = get_user(token, id).await.header("etag");
    let mut answers = vec![
        (
            "password".to_owned(),
            call(
                Method::POST,
                &format!("/admin/users/{id}/password"),
                Some(token),
                Some(json!({"password": "taken-over-password-1"})),
            )
            .await,
        ),
        (
            "email".to_owned(),
            patch(
                token,
                id,
                etag.as_deref(),
                json!({"email": "attacker@evil.example"}),
            )
            .await,
        ),
        (
            "disable".to_owned(),
            patch(token, id, etag.as_deref(), json!({"enabled": false})).await,
        ),
        (
            "logout".to_owned(),
            call(
                Method::POST,
                &format!("/admin/users/{id}/logout"),
                Some(token),
                None,
            )
            .await,
        ),
        (
            "sync".to_owned(),
            call(
                Method::POST,
                &format!("/admin/users/{id}/sync"),
                Some(token),
                Some(json!({"direction": "to-keycloak"})),
            )
            .await,
        ),
    ];
    answers.push((
        "delete".to_owned(),
        call(
            Method::DELETE,
            &format!("/admin/users/{id}"),
            Some(token),
            None,
        )
        .await,
    ));
    answers
}

#[tokio::test]
async fn a_manager_cannot_touch_an_admin_and_nothing_changes() {
    let bob = manager().await;
    let (id, username, _) = privileged("admin").await;
    let before = snapshot(&id).await;
    for (what, r) in every_mutation(&bob, &id).await {
        let expected = if what == "delete" {
            "forbidden"
        } else {
            "forbidden_target"
        };
        assert_eq!(
            (r.status, r.body["code"].as_str()),
            (403, Some(expected)),
            "{what}: {}",
            r.text
        );
    }
    unchanged(&before, &snapshot(&id).await);
    // The admin still signs in with their own password, and the attacker's does not work.
    token_of(&username, PASSWORD).await;
    let r = post(
        "/auth/login",
        json!({"username": username, "password": "taken-over-password-1"}),
    )
    .await;
    assert_eq!(r.status, 401);
}

#[tokio::test]
async fn a_manager_cannot_touch_another_manager_or_a_protected_role_holder() {
    let bob = manager().await;
    let (id, _, _) = privileged("manager").await;
    let before = snapshot(&id).await;
    for (what, r) in every_mutation(&bob, &id).await {
        assert_eq!(r.status, 403, "{what}: {}", r.text);
    }
    unchanged(&before, &snapshot(&id).await);
}

#[tokio::test]
async fn a_manager_manages_plain_users() {
    let bob = manager().await;
    let (id, username) = created(&admin().await, "plain").await;
    let r = call(
        Method::POST,
        &format!("/admin/users/{id}/password"),
        Some(&bob),
        Some(json!({"password": "reset-by-manager-1"})),
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.text);
    token_of(&username, "reset-by-manager-1").await;
    let etag = get_user(&bob, &id).await.header("etag");
    let r = patch(&bob, &id, etag.as_deref(), json!({"enabled": false})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = call(
        Method::POST,
        &format!("/admin/users/{id}/logout"),
        Some(&bob),
        None,
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.text);
}

#[tokio::test]
async fn an_admin_resets_a_managers_password() {
    let alice = admin().await;
    let (id, username, _) = privileged("manager").await;
    let r = call(
        Method::POST,
        &format!("/admin/users/{id}/password"),
        Some(&alice),
        Some(json!({"password": "reset-by-admin-1"})),
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.text);
    token_of(&username, "reset-by-admin-1").await;
}

#[tokio::test]
async fn an_admin_cannot_disable_or_delete_themself() {
    let (id, _, token) = privileged("admin").await;
    let before = snapshot(&id).await;
    let etag = get_user(&token, &id).await.header("etag");
    let r = patch(&token, &id, etag.as_deref(), json!({"enabled": false})).await;
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (403, Some("forbidden_target")),
        "{}",
        r.text
    );
    let r = call(
        Method::DELETE,
        &format!("/admin/users/{id}"),
        Some(&token),
        None,
    )
    .await;
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (403, Some("forbidden_target")),
        "{}",
        r.text
    );
    unchanged(&before, &snapshot(&id).await);
    // Changing their own name is fine.
    let r = patch(&token, &id, etag.as_deref(), json!({"firstName": "Self"})).await;
    assert_eq!(r.status, 200, "{}", r.text);
}

#[tokio::test]
async fn only_an_admin_may_vouch_for_an_email() {
    let (id, _) = created(&admin().await, "vouch").await;
    let bob = manager().await;
    let etag = get_user(&bob, &id).await.header("etag");
    let r = patch(
        &bob,
        &id,
        etag.as_deref(),
        json!({"email": "v@example.org", "emailVerified": true}),
    )
    .await;
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (403, Some("forbidden")),
        "{}",
        r.text
    );
    let alice = admin().await;
    let r = patch(
        &alice,
        &id,
        etag.as_deref(),
        json!({"email": "v@example.org", "emailVerified": true}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let (_, kc) = keycloak_admin(Method::GET, &format!("/users/{id}"), None).await;
    assert_eq!(
        (kc["email"].as_str(), kc["emailVerified"].as_bool()),
        (Some("v@example.org"), Some(true))
    );
}

#[tokio::test]
async fn an_email_change_is_unverified_in_keycloak_and_locally() {
    let alice = admin().await;
    let (id, _) = created(&alice, "mailchg").await;
    let (status, body) = keycloak_admin(
        Method::PUT,
        &format!("/users/{id}"),
        Some(json!({"emailVerified": true})),
    )
    .await;
    assert_eq!(status, 204, "{body}");
    let sync = call(
        Method::POST,
        &format!("/admin/users/{id}/sync"),
        Some(&alice),
        Some(json!({"direction": "from-keycloak"})),
    )
    .await;
    assert_eq!(
        sync.body["user"]["emailVerified"],
        json!(true),
        "{}",
        sync.text
    );
    let etag = get_user(&alice, &id).await.header("etag");
    let r = patch(
        &alice,
        &id,
        etag.as_deref(),
        json!({"email": "moved@example.org"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["emailVerified"], json!(false));
    let (_, kc) = keycloak_admin(Method::GET, &format!("/users/{id}"), None).await;
    assert_eq!(
        (kc["email"].as_str(), kc["emailVerified"].as_bool()),
        (Some("moved@example.org"), Some(false))
    );
    assert!(!local_user(&id).await.unwrap().keycloak.email_verified);
}

#[tokio::test]
async fn service_accounts_do_not_exist_for_the_admin_api() {
    let alice = admin().await;
    let (_, found) = keycloak_admin(
        Method::GET,
        "/users?username=service-account-user-sync-admin&exact=true",
        None,
    )
    .await;
    let id = found[0]["id"].as_str().unwrap().to_owned();
    let before = snapshot(&id).await;
    for (method, path, body) in [
        (Method::GET, format!("/admin/users/{id}"), None),
        (
            Method::PATCH,
            format!("/admin/users/{id}"),
            Some(json!({"firstName": "x"})),
        ),
        (Method::DELETE, format!("/admin/users/{id}"), None),
        (
            Method::POST,
            format!("/admin/users/{id}/password"),
            Some(json!({"password": "x-password-1"})),
        ),
        (Method::POST, format!("/admin/users/{id}/logout"), None),
        (
            Method::POST,
            format!("/admin/users/{id}/sync"),
            Some(json!({"direction": "from-keycloak"})),
        ),
    ] {
        let r = call(method.clone(), &path, Some(&alice), body).await;
        assert_eq!(
            (r.status, r.body["code"].as_str()),
            (404, Some("not_found")),
            "{method} {path}: {}",
            r.text
        );
    }
    unchanged(&before, &snapshot(&id).await);
    assert!(local_user(&id).await.is_none(), "never imported");
}

#[tokio::test]
async fn ids_that_are_not_uuids_are_404_before_anything_is_called() {
    let alice = admin().await;
    for id in [
        "not-a-uuid",
        "..%2F..%2Froles",
        "00000000-0000-0000-0000-00000000000g",
    ] {
        let r = get_user(&alice, id).await;
        assert_eq!(
            (r.status, r.body["code"].as_str()),
            (404, Some("not_found")),
            "{id}: {}",
            r.text
        );
        let r = call(
            Method::POST,
            &format!("/admin/users/{id}/password"),
            Some(&alice),
            Some(json!({"password": "x-password-1"})),
        )
        .await;
        assert_eq!(r.status, 404, "{id}: {}", r.text);
    }
}

#[tokio::test]
async fn registration_refuses_attributes_only_admins_may_set() {
    let username = unique("claims");
    let mut body = registration(&username);
    body["attributes"] = json!({"organization": "Acme", "title": "CFO"});
    let r = post("/auth/register", body).await;
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (400, Some("validation_failed")),
        "{}",
        r.text
    );
    let fields: Vec<&str> = r.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["attributes.organization", "attributes.title"]);
    assert!(keycloak_users_named(&username).await.is_empty());
    assert_eq!(local_users_named(&username).await, 0);
}

#[tokio::test]
async fn look_alike_usernames_are_refused_before_keycloak_is_called() {
    let base = unique("alice");
    for (label, username) in [
        ("Cyrillic a", format!("\u{430}{}", &base[1..])),
        ("zero-width space", format!("{base}\u{200b}")),
        (
            "right-to-left override",
            format!("al\u{202e}{}", &base[2..]),
        ),
    ] {
        let r = post("/auth/register", registration(&username)).await;
        assert_eq!(
            (r.status, r.body["code"].as_str()),
            (400, Some("validation_failed")),
            "{label}: {}",
            r.text
        );
        assert_eq!(r.body["errors"][0]["field"], "username", "{label}");
        // Keycloak's own user profile refuses it too.
        let (status, body) = keycloak_admin(
            Method::POST,
            "/users",
            Some(json!({"username": username, "email": format!("{}@example.org", unique("x")), "enabled": true})),
        )
        .await;
        assert_eq!(status, 400, "{label}: {body}");
    }
}

#[tokio::test]
async fn a_hard_delete_leaves_no_personal_data_in_the_store() {
    let alice = admin().await;
    let (id, username) = created(&alice, "erase").await;
    token_of(&username, PASSWORD).await;
    let r = call(
        Method::DELETE,
        &format!("/admin/users/{id}?hard=true"),
        Some(&alice),
        None,
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.text);
    let profile = raw_items(&id)
        .await
        .into_iter()
        .find(|i| i["sk"].as_s().unwrap() == "PROFILE")
        .unwrap();
    let text = format!("{profile:?}");
    for personal in [
        username.as_str(),
        "example.org",
        "Test",
        "User",
        "Acme",
        "Tester",
    ] {
        assert!(!text.contains(personal), "{personal} left in {text}");
    }
    assert_eq!(profile["deleted_by"].as_s().unwrap(), &sub(&alice));
    assert!(profile.contains_key("deleted_at"));
}

#[tokio::test]
async fn concurrent_patches_with_keycloak_slow_leave_keycloak_and_the_store_agreeing() {
    let alice = admin().await;
    let (id, _) = created(&alice, "slowkc").await;
    fault(json!({"method": "PUT", "path": format!("/admin/realms/{{realm}}/users/{id}"), "latencyMs": 1500, "times": 1})).await;
    let first = tokio::spawn({
        let (alice, id) = (alice.clone(), id.clone());
        async move { patch(&alice, &id, Some("\"1\""), json!({"lastName": "First"})).await }
    });
    // While the first write waits on Keycloak, its reserved version is visible: a second writer
    // using that ETag must not slip in between Keycloak's GET and PUT.
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    let etag = get_user(&alice, &id).await.header("etag").unwrap();
    let second = patch(&alice, &id, Some(&etag), json!({"lastName": "Second"})).await;
    assert_eq!(
        (second.status, second.body["code"].as_str()),
        (409, Some("write_in_progress")),
        "{}",
        second.text
    );
    let first = first.await.unwrap();
    assert_eq!(first.status, 200, "{}", first.text);
    let (_, kc) = keycloak_admin(Method::GET, &format!("/users/{id}"), None).await;
    let local = local_user(&id).await.unwrap();
    assert_eq!(
        (kc["lastName"].as_str(), local.keycloak.last_name.as_deref()),
        (Some("First"), Some("First"))
    );
    // Once the first is done, the same ETag works.
    let third = patch(&alice, &id, Some(&etag), json!({"lastName": "Third"})).await;
    assert_eq!(third.status, 200, "{}", third.text);
    let (_, kc) = keycloak_admin(Method::GET, &format!("/users/{id}"), None).await;
    assert_eq!(kc["lastName"], "Third");
}

#[tokio::test]
async fn every_admin_action_is_in_the_audit_trail_with_the_real_actor() {
    let alice = admin().await;
    let alice_id = sub(&alice);
    let (id, _) = created(&alice, "audited").await;
    let etag = get_user(&alice, &id).await.header("etag");
    assert_eq!(
        patch(
            &alice,
            &id,
            etag.as_deref(),
            json!({"attributes": {"title": "Lead"}})
        )
        .await
        .status,
        200
    );
    let pw = call(
        Method::POST,
        &format!("/admin/users/{id}/password"),
        Some(&alice),
        Some(json!({"password": "audited-password-2"})),
    )
    .await;
    assert_eq!(pw.status, 204);
    assert_eq!(
        call(
            Method::POST,
            &format!("/admin/users/{id}/logout"),
            Some(&alice),
            None
        )
        .await
        .status,
        204
    );
    let sync = call(
        Method::POST,
        &format!("/admin/users/{id}/sync"),
        Some(&alice),
        Some(json!({"direction": "from-keycloak"})),
    )
    .await;
    assert_eq!(sync.status, 200);
    let (admin_id, _, _) = privileged("admin").await;
    let bob = manager().await;
    let refused = call(
        Method::POST,
        &format!("/admin/users/{admin_id}/logout"),
        Some(&bob),
        None,
    )
    .await;
    assert_eq!(refused.status, 403);
    assert_eq!(
        call(
            Method::DELETE,
            &format!("/admin/users/{id}"),
            Some(&alice),
            None
        )
        .await
        .status,
        204
    );

    let r = call(
        Method::GET,
        &format!("/admin/audit?target={id}"),
        Some(&alice),
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let items = r.body["items"].as_array().unwrap();
    let actions: Vec<&str> = items
        .iter()
        .map(|i| i["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "user.delete",
            "user.sync",
            "user.logout",
            "user.reset_password",
            "user.update",
            "user.create"
        ],
        "newest first"
    );
    for item in items {
        assert_eq!(
            (item["actorId"].as_str(), item["actorUsername"].as_str()),
            (Some(alice_id.as_str()), Some("alice"))
        );
        assert_eq!(item["outcome"], "succeeded");
    }
    assert_eq!(items[4]["fields"], json!(["attributes.title"]));
    assert_eq!(
        items[3]["fields"],
        json!(["password"]),
        "the field's name, never its value"
    );
    assert!(!r.text.contains("audited-password-2"));

    let bob_id = sub(&bob);
    let r = call(
        Method::GET,
        &format!("/admin/audit?actor={bob_id}&target={admin_id}"),
        Some(&alice),
        None,
    )
    .await;
    assert_eq!(r.body["items"][0]["outcome"], "forbidden", "{}", r.text);
    assert_eq!(r.body["items"][0]["action"], "user.logout");

    let r = call(
        Method::GET,
        "/admin/audit?limit=1&actor=".to_owned().as_str(),
        Some(&alice),
        None,
    )
    .await;
    assert_eq!(r.status, 400, "a target or an actor is needed");
    let r = call(
        Method::GET,
        &format!("/admin/audit?target={id}"),
        Some(&bob),
        None,
    )
    .await;
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (403, Some("forbidden")),
        "managers do not read the audit"
    );
}

#[tokio::test]
async fn the_audit_trail_pages_with_signed_cursors() {
    let alice = admin().await;
    let (id, _) = created(&alice, "pages").await;
    for n in 0..3 {
        let etag = get_user(&alice, &id).await.header("etag");
        let r = patch(
            &alice,
            &id,
            etag.as_deref(),
            json!({"firstName": format!("N{n}")}),
        )
        .await;
        assert_eq!(r.status, 200);
    }
    let first = call(
        Method::GET,
        &format!("/admin/audit?target={id}&limit=2"),
        Some(&alice),
        None,
    )
    .await;
    assert_eq!(first.body["items"].as_array().unwrap().len(), 2);
    let cursor = first.body["nextCursor"].as_str().unwrap();
    let second = call(
        Method::GET,
        &format!("/admin/audit?target={id}&limit=2&cursor={cursor}"),
        Some(&alice),
        None,
    )
    .await;
    assert_eq!(
        second.body["items"].as_array().unwrap().len(),
        2,
        "{}",
        second.text
    );
    let mut tampered = cursor.to_owned();
    tampered.insert(3, 'x');
    let r = call(
        Method::GET,
        &format!("/admin/audit?target={id}&cursor={tampered}"),
        Some(&alice),
        None,
    )
    .await;
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (400, Some("invalid_cursor"))
    );
}

#[tokio::test]
async fn a_managers_password_reset_of_an_admin_is_refused_while_keycloak_cannot_read_the_admins_roles(
) {
    let (target, target_name, _) = privileged("admin").await;
    let before = snapshot(&target).await;
    let bob = manager().await;
    // One 404 to the read of the target's role mappings: an error, never "no roles".
    fault(json!({"method": "GET", "times": 1, "status": 404,
        "path": format!("/admin/realms/{{realm}}/users/{target}/role-mappings/realm/composite")}))
    .await;
    let r = call(
        Method::POST,
        &format!("/admin/users/{target}/password"),
        Some(&bob),
        Some(json!({"password": "taken-over-password-1"})),
    )
    .await;
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (503, Some("keycloak_unavailable")),
        "{}",
        r.text
    );
    unchanged(&before, &snapshot(&target).await);
    token_of(&target_name, PASSWORD).await;
    // Once Keycloak answers, the policy decides as ever.
    let r = call(
        Method::POST,
        &format!("/admin/users/{target}/password"),
        Some(&bob),
        Some(json!({"password": "taken-over-password-1"})),
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.text);
}

#[tokio::test]
async fn a_service_account_name_is_refused_at_registration_and_admin_create() {
    let name = unique("service-account-");
    let r = post("/auth/register", registration(&name)).await;
    assert_eq!(
        (r.status, r.body["errors"][0]["field"].as_str()),
        (400, Some("username")),
        "{}",
        r.text
    );
    let r = call(
        Method::POST,
        "/admin/users",
        Some(&admin().await),
        Some(new_user(&name)),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(keycloak_users_named(&name).await.is_empty());
}

#[tokio::test]
async fn a_user_named_like_a_service_account_in_keycloak_is_no_service_account_here() {
    // Keycloak does not reserve the prefix: such a user can be made there, and an admin of
    // this API must still see, disable and delete them.
    let name = unique("service-account-");
    let (status, _) = keycloak_admin(
        Method::POST,
        "/users",
        Some(json!({"username": name, "enabled": true, "email": format!("{name}@example.org")})),
    )
    .await;
    assert_eq!(status, 201);
    let id = keycloak_users_named(&name).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    imported_by_webhook(&id).await;
    let alice = admin().await;
    let r = get_user(&alice, &id).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let listed = call(
        Method::GET,
        &format!("/admin/users?q={name}"),
        Some(&alice),
        None,
    )
    .await;
    assert_eq!(listed.body["items"][0]["id"], json!(id), "{}", listed.text);
    let r = call(
        Method::DELETE,
        &format!("/admin/users/{id}"),
        Some(&alice),
        None,
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.text);
}

#[tokio::test]
async fn a_refused_patch_is_in_the_audit_trail() {
    let alice = admin().await;
    let (id, _) = created(&alice, "refusedpatch").await;
    let bob = manager().await;
    let etag = get_user(&bob, &id).await.header("etag");
    let r = patch(
        &bob,
        &id,
        etag.as_deref(),
        json!({"realmRoles": ["admin"], "groups": ["/staff"]}),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text);
    let trail = call(
        Method::GET,
        &format!("/admin/audit?target={id}"),
        Some(&alice),
        None,
    )
    .await;
    let newest = &trail.body["items"][0];
    assert_eq!(newest["action"], "user.update", "{}", trail.text);
    assert_eq!(newest["outcome"], "refused:validation_failed");
    assert_eq!(newest["actorId"], json!(sub(&bob)));
    let mut fields: Vec<&str> = newest["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    fields.sort();
    assert_eq!(fields, ["groups", "realmRoles"], "names, never values");
}

#[tokio::test]
async fn a_password_reset_ends_the_users_sessions_unless_asked_to_keep_them() {
    let alice = admin().await;
    let (id, username) = created(&alice, "resetends").await;
    let login = post(
        "/auth/login",
        json!({"username": username, "password": PASSWORD}),
    )
    .await;
    let old_access = login.body["tokens"]["accessToken"].as_str().unwrap();
    let old_refresh = login.body["tokens"]["refreshToken"].as_str().unwrap();
    let r = call(
        Method::POST,
        &format!("/admin/users/{id}/password"),
        Some(&alice),
        Some(json!({"password": "a-new-good-password"})),
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.text);
    let me = call(Method::GET, "/auth/me", Some(old_access), None).await;
    assert_eq!(me.status, 401, "the old access token is dead: {}", me.text);
    let refreshed = post("/auth/refresh", json!({"refreshToken": old_refresh})).await;
    assert_eq!(refreshed.status, 401, "{}", refreshed.text);
    let (_, sessions) = keycloak_admin(Method::GET, &format!("/users/{id}/sessions"), None).await;
    assert_eq!(sessions, json!([]), "ended in Keycloak too");
    // Kept on request, and the audit record says so.
    let token = token_of(&username, "a-new-good-password").await;
    let r = call(
        Method::POST,
        &format!("/admin/users/{id}/password"),
        Some(&alice),
        Some(json!({"password": "a-third-good-password", "keepSessions": true})),
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert_eq!(
        call(Method::GET, "/auth/me", Some(&token), None)
            .await
            .status,
        200
    );
    let trail = call(
        Method::GET,
        &format!("/admin/audit?target={id}"),
        Some(&alice),
        None,
    )
    .await;
    assert_eq!(
        trail.body["items"][0]["fields"],
        json!(["password", "keepSessions"])
    );
}

#[tokio::test]
async fn after_a_hard_delete_no_item_in_the_table_holds_the_persons_data() {
    let username = unique("wholetable");
    let email = format!("{username}@example.org");
    let agent = format!("agent-of-{username}");
    let ip = std::net::Ipv4Addr::new(127, 77, 7, 7);
    let client = reqwest::Client::builder()
        .user_agent(agent.clone())
        .local_address(std::net::IpAddr::V4(ip))
        .build()
        .unwrap();
    let key = format!("key-{username}");
    let register = client
        .post(format!("{}/auth/register", stack().gateway))
        .header("idempotency-key", &key)
        .json(&registration(&username))
        .send()
        .await
        .unwrap();
    assert_eq!(register.status(), 201);
    let id = register.json::<Value>().await.unwrap()["user"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let login = call_with(
        &client,
        Method::POST,
        "/auth/login",
        None,
        Some(json!({"username": username, "password": PASSWORD})),
    )
    .await;
    assert_eq!(login.status, 200, "{}", login.text);
    let r = call(
        Method::DELETE,
        &format!("/admin/users/{id}?hard=true"),
        Some(&admin().await),
        None,
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.text);
    let mut start = None;
    loop {
        let page = dynamodb()
            .scan()
            .table_name(&stack().table)
            .set_exclusive_start_key(start)
            .send()
            .await
            .unwrap();
        for item in page.items() {
            let text = format!("{item:?}");
            for personal in [
                username.as_str(),
                email.as_str(),
                agent.as_str(),
                "127.77.7.7",
            ] {
                assert!(!text.contains(personal), "{personal} left in {text}");
            }
        }
        match page.last_evaluated_key {
            Some(k) if !k.is_empty() => start = Some(k),
            _ => break,
        }
    }
    // A replay of the registration answers no data of the person, and creates nobody.
    let replay = client
        .post(format!("{}/auth/register", stack().gateway))
        .header("idempotency-key", &key)
        .json(&registration(&username))
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), 410);
    let text = replay.text().await.unwrap();
    assert!(!text.contains(&username), "{text}");
    assert!(keycloak_users_named(&username).await.is_empty());
}

#[tokio::test]
async fn an_admins_access_token_is_dead_on_admin_routes_after_logout() {
    let login = post(
        "/auth/login",
        json!({"username": "alice", "password": "alice-dev-password"}),
    )
    .await;
    let access = login.body["tokens"]["accessToken"].as_str().unwrap();
    assert_eq!(
        call(Method::GET, "/admin/users", Some(access), None)
            .await
            .status,
        200
    );
    let out = post(
        "/auth/logout",
        json!({"refreshToken": login.body["tokens"]["refreshToken"]}),
    )
    .await;
    assert_eq!(out.status, 204, "{}", out.text);
    for (method, path) in [
        (Method::GET, "/admin/users".to_owned()),
        (Method::GET, "/admin/sync/status".to_owned()),
        (Method::GET, format!("/admin/audit?actor={}", sub(access))),
    ] {
        let r = call(method, &path, Some(access), None).await;
        assert_eq!(
            (r.status, r.body["code"].as_str()),
            (401, Some("unauthenticated")),
            "{path}: {}",
            r.text
        );
    }
}

#[tokio::test]
async fn a_manager_cannot_reach_an_admin_through_sync_control_or_the_audit_trail() {
    let bob = manager().await;
    let alice_id = sub(&admin().await);
    for (method, path, body) in [
        (
            Method::POST,
            "/admin/sync".to_owned(),
            Some(json!({"mode": "full"})),
        ),
        (
            Method::POST,
            "/admin/sync".to_owned(),
            Some(json!({"mode": "incremental", "force": true})),
        ),
        (Method::GET, "/admin/sync/status".to_owned(), None),
        (Method::GET, format!("/admin/audit?target={alice_id}"), None),
        (Method::GET, format!("/admin/audit?actor={alice_id}"), None),
    ] {
        let r = call(method.clone(), &path, Some(&bob), body).await;
        assert_eq!(
            (r.status, r.body["code"].as_str()),
            (403, Some("forbidden")),
            "{method} {path}: {}",
            r.text
        );
    }
}

#[tokio::test]
async fn no_password_or_token_lands_in_the_table_or_the_logs() {
    let username = unique("nosecret");
    let password = format!("pw-{username}-secret");
    let mut body = registration(&username);
    body["password"] = json!(password);
    assert_eq!(post("/auth/register", body).await.status, 201);
    let login = post(
        "/auth/login",
        json!({"username": username, "password": password}),
    )
    .await;
    assert_eq!(login.status, 200, "{}", login.text);
    let refreshed = post(
        "/auth/refresh",
        json!({"refreshToken": login.body["tokens"]["refreshToken"]}),
    )
    .await;
    assert_eq!(refreshed.status, 200, "{}", refreshed.text);
    let mut secrets = vec![password.clone()];
    for tokens in [&login.body["tokens"], &refreshed.body["tokens"]] {
        for name in ["accessToken", "refreshToken", "idToken"] {
            if let Some(t) = tokens[name].as_str() {
                // A token's signature part is enough to find it anywhere.
                secrets.push(t.rsplit('.').next().unwrap().to_owned());
            }
        }
    }
    let mut start = None;
    loop {
        let page = dynamodb()
            .scan()
            .table_name(&stack().table)
            .set_exclusive_start_key(start)
            .send()
            .await
            .unwrap();
        for item in page.items() {
            let text = format!("{item:?}");
            for s in &secrets {
                assert!(!text.contains(s.as_str()), "a secret in {text}");
            }
        }
        match page.last_evaluated_key {
            Some(k) if !k.is_empty() => start = Some(k),
            _ => break,
        }
    }
    let mut logs = 0;
    for entry in std::fs::read_dir(&stack().dev_dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "log") {
            logs += 1;
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            for s in &secrets {
                assert!(!text.contains(s.as_str()), "a secret in {}", path.display());
            }
        }
    }
    assert!(logs >= 3, "the stack's logs were read ({logs})");
}
