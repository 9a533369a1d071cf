//! Contract §4.7–§4.9, §5, §6: role mappings, groups, sessions, events and admin authorization.

#![allow(clippy::unwrap_used)] // test crate: a failed unwrap is a failed test

mod common;

use common::{new_user, realm, realm_with};
use reqwest::Method;
use serde_json::{json, Value};

fn names(list: &Value, key: &str) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|x| x[key].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn admin_call_without_or_with_a_bad_token_is_401() {
    let kc = realm().await;
    let r = kc
        .raw(Method::GET, "/admin/realms/{realm}/users", None)
        .await;
    assert_eq!(r.status(), 401);
    assert_eq!(r.json(), json!({"error": "HTTP 401 Unauthorized"}));
    let r = kc.admin_as("garbage", Method::GET, "/users", None).await;
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn admin_token_expires_with_its_exp() {
    let kc = realm().await;
    let token = kc.service_token().await;
    assert_eq!(
        kc.admin_as(&token, Method::GET, "/users", None)
            .await
            .status(),
        200
    );
    kc.advance_clock(301).await;
    assert_eq!(
        kc.admin_as(&token, Method::GET, "/users", None)
            .await
            .status(),
        401
    );
}

#[tokio::test]
async fn token_of_another_realm_is_rejected() {
    let a = realm().await;
    let b = realm().await;
    let token = a.service_token().await;
    assert_eq!(
        b.admin_as(&token, Method::GET, "/users", None)
            .await
            .status(),
        401
    );
}

#[tokio::test]
async fn admin_call_to_an_unknown_realm_is_404_realm_not_found() {
    let kc = realm().await;
    let token = kc.service_token().await;
    let r = kc
        .http
        .get(kc.url("/admin/realms/nope/users"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"error": "Realm not found."})
    );
}

#[tokio::test]
async fn a_user_without_admin_roles_gets_403_and_cannot_probe_ids() {
    let kc = realm().await;
    let t = kc.tokens("carol", "carol-dev-password").await;
    let token = t["access_token"].as_str().unwrap();
    let r = kc.admin_as(token, Method::GET, "/users", None).await;
    assert_eq!(r.status(), 403);
    assert_eq!(r.json(), json!({"error": "HTTP 403 Forbidden"}));
    let r = kc
        .admin_as(
            token,
            Method::GET,
            "/users/00000000-0000-0000-0000-000000000000",
            None,
        )
        .await;
    assert_eq!(
        r.status(),
        403,
        "unknown id is 403, not 404, for callers who cannot query users"
    );
}

#[tokio::test]
async fn query_users_alone_lists_nothing() {
    let kc = realm_with(json!({"users": [{
        "username": "service-account-user-sync-admin", "enabled": true, "serviceAccountClientId": "user-sync-admin",
        "clientRoles": {"realm-management": ["query-users"]}
    }, {"username": "someone", "enabled": true}]}))
    .await;
    assert_eq!(kc.get("/users").await, json!([]));
    assert_eq!(kc.get("/users/count").await, json!(0));
}

#[tokio::test]
async fn realm_role_mapping_needs_matching_id_and_name() {
    let kc = realm().await;
    let id = kc.user_id("carol").await;
    let available = kc
        .get(&format!("/users/{id}/role-mappings/realm/available"))
        .await;
    let manager = available
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "manager")
        .expect("manager is available")
        .clone();
    let path = format!("/users/{id}/role-mappings/realm");
    let r = kc
        .admin(Method::POST, &path, Some(json!([{"name": "manager"}])))
        .await;
    assert_eq!(r.status(), 404);
    assert_eq!(r.json(), json!({"error": "Role not found"}));
    let r = kc
        .admin(
            Method::POST,
            &path,
            Some(json!([{"id": manager["id"], "name": "manager"}])),
        )
        .await;
    assert_eq!(r.status(), 204);
    let direct = names(&kc.get(&path).await, "name");
    assert_eq!(direct, vec!["default-roles-demo", "manager"]);
    let r = kc
        .admin(
            Method::DELETE,
            &path,
            Some(json!([{"id": manager["id"], "name": "manager"}])),
        )
        .await;
    assert_eq!(r.status(), 204);
    assert_eq!(
        names(&kc.get(&path).await, "name"),
        vec!["default-roles-demo"]
    );
}

#[tokio::test]
async fn composite_realm_roles_are_expanded() {
    let kc = realm().await;
    let id = kc.user_id("carol").await;
    let effective = names(
        &kc.get(&format!("/users/{id}/role-mappings/realm/composite"))
            .await,
        "name",
    );
    for r in [
        "default-roles-demo",
        "offline_access",
        "uma_authorization",
        "user",
    ] {
        assert!(
            effective.contains(&r.to_owned()),
            "{r} missing from {effective:?}"
        );
    }
}

#[tokio::test]
async fn role_mappings_show_realm_and_client_mappings() {
    let kc = realm().await;
    let sa = kc.user_id("service-account-user-sync-admin").await;
    let m = kc.get(&format!("/users/{sa}/role-mappings")).await;
    assert_eq!(
        names(&m["realmMappings"], "name"),
        vec!["default-roles-demo"]
    );
    let rm = &m["clientMappings"]["realm-management"];
    assert_eq!(rm["client"], "realm-management");
    assert!(names(&rm["mappings"], "name").contains(&"manage-users".to_owned()));
}

#[tokio::test]
async fn roles_list_and_role_members() {
    let kc = realm().await;
    let roles = names(&kc.get("/roles").await, "name");
    for r in ["admin", "manager", "user"] {
        assert!(roles.contains(&r.to_owned()));
    }
    let admin = kc.get("/roles/admin").await;
    assert_eq!(admin["name"], "admin");
    assert_eq!(admin["composite"], false);
    assert_eq!(
        names(&kc.get("/roles/admin/users").await, "username"),
        vec!["alice"]
    );
    assert_eq!(
        names(&kc.get("/roles/manager/users").await, "username"),
        vec!["bob"]
    );
    let r = kc.admin(Method::GET, "/roles/ghost", None).await;
    assert_eq!(r.status(), 404);
    assert_eq!(r.json(), json!({"error": "Could not find role"}));
}

#[tokio::test]
async fn composites_of_a_role_include_realm_and_client_roles() {
    let kc = realm().await;
    let composites = kc.get("/roles/default-roles-demo/composites").await;
    let realm_roles: Vec<_> = composites
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["clientRole"] == false)
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(realm_roles.len(), 3);
    assert!(realm_roles.contains(&"user"));
    assert!(composites
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["clientRole"] == true && r["name"] == "view-profile"));
    assert_eq!(kc.get("/roles/admin/composites").await, json!([]));
}

#[tokio::test]
async fn role_members_are_paged() {
    let kc = realm().await;
    kc.raw(
        Method::POST,
        "/_emulator/realms/{realm}/users/bulk",
        Some(json!({"count": 30, "prefix": "m", "realmRoles": ["manager"]})),
    )
    .await;
    let page1 = names(
        &kc.get("/roles/manager/users?first=0&max=20").await,
        "username",
    );
    let page2 = names(
        &kc.get("/roles/manager/users?first=20&max=20").await,
        "username",
    );
    assert_eq!(page1.len(), 20);
    assert_eq!(page2.len(), 11);
    assert_eq!(page1[0], "bob");
}

#[tokio::test]
async fn groups_members_and_membership_changes() {
    let kc = realm().await;
    let groups = kc.get("/groups").await;
    assert_eq!(names(&groups, "name"), vec!["engineering", "support"]);
    let support = groups[1]["id"].as_str().unwrap().to_owned();
    let eng = groups[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        names(
            &kc.get(&format!("/groups/{support}/members")).await,
            "username"
        ),
        vec!["bob", "carol"]
    );
    let carol = kc.user_id("carol").await;
    assert_eq!(
        kc.admin(Method::PUT, &format!("/users/{carol}/groups/{eng}"), None)
            .await
            .status(),
        204
    );
    let mine = kc.get(&format!("/users/{carol}/groups")).await;
    assert_eq!(names(&mine, "path"), vec!["/engineering", "/support"]);
    assert_eq!(
        kc.get(&format!("/users/{carol}/groups/count")).await,
        json!({"count": 2})
    );
    assert_eq!(
        kc.admin(
            Method::DELETE,
            &format!("/users/{carol}/groups/{support}"),
            None
        )
        .await
        .status(),
        204
    );
    assert_eq!(
        names(
            &kc.get(&format!("/groups/{support}/members")).await,
            "username"
        ),
        vec!["bob"]
    );
    let r = kc
        .admin(Method::PUT, &format!("/users/{carol}/groups/nope"), None)
        .await;
    assert_eq!(
        (r.status(), r.json()),
        (404, json!({"error": "Group not found"}))
    );
}

/// Keycloak's `JpaUserProvider#addUser`: a user created through the admin API joins the
/// realm's default groups besides the ones the request names; users of the export do not.
#[tokio::test]
async fn a_created_user_joins_the_realms_default_groups() {
    let kc = realm_with(json!({"defaultGroups": ["/support"]})).await;
    let mut rep = new_user("dora");
    rep["groups"] = json!(["/engineering"]);
    let id = kc.create_user(rep).await;
    let groups = kc.get(&format!("/users/{id}/groups")).await;
    assert_eq!(names(&groups, "path"), vec!["/engineering", "/support"]);
    let alice = kc.user_id("alice").await;
    let groups = kc.get(&format!("/users/{alice}/groups")).await;
    assert_eq!(names(&groups, "path"), vec!["/engineering"]);
}

#[tokio::test]
async fn user_sessions_are_listed_and_can_be_deleted() {
    let kc = realm().await;
    let t = kc.tokens("carol", "carol-dev-password").await;
    let carol = kc.user_id("carol").await;
    let sessions = kc.get(&format!("/users/{carol}/sessions")).await;
    assert_eq!(sessions.as_array().unwrap().len(), 1);
    let s = &sessions[0];
    assert_eq!(s["id"], t["session_state"]);
    assert_eq!(s["username"], "carol");
    assert_eq!(s["ipAddress"], "127.0.0.1");
    assert!(s["clients"]
        .as_object()
        .unwrap()
        .values()
        .any(|c| c == "user-sync"));
    let sid = s["id"].as_str().unwrap();
    assert_eq!(
        kc.admin(Method::DELETE, &format!("/sessions/{sid}"), None)
            .await
            .status(),
        204
    );
    let r = kc
        .admin(Method::DELETE, &format!("/sessions/{sid}"), None)
        .await;
    assert_eq!(
        (r.status(), r.json()),
        (404, json!({"error": "Sesssion not found"}))
    );
    assert_eq!(kc.get(&format!("/users/{carol}/sessions")).await, json!([]));
    let r = kc.refresh(t["refresh_token"].as_str().unwrap()).await;
    assert_eq!(r.json()["error_description"], "Session not active");
}

#[tokio::test]
async fn disabling_a_user_ends_their_sessions() {
    let kc = realm().await;
    kc.tokens("carol", "carol-dev-password").await;
    let carol = kc.user_id("carol").await;
    let mut rep = kc.get(&format!("/users/{carol}")).await;
    rep["enabled"] = json!(false);
    kc.admin(Method::PUT, &format!("/users/{carol}"), Some(rep))
        .await;
    assert_eq!(kc.get(&format!("/users/{carol}/sessions")).await, json!([]));
}

#[tokio::test]
async fn admin_events_record_user_changes_newest_first() {
    let kc = realm().await;
    let id = kc.create_user(new_user("nora")).await;
    kc.admin(
        Method::PUT,
        &format!("/users/{id}"),
        Some(json!({"firstName": "Nora"})),
    )
    .await;
    kc.admin(Method::DELETE, &format!("/users/{id}"), None)
        .await;
    let events = kc.get("/admin-events?resourceTypes=USER").await;
    let ops = names(&events, "operationType");
    assert_eq!(ops, vec!["DELETE", "UPDATE", "CREATE"]);
    let create = &events[2];
    assert_eq!(create["resourcePath"], format!("users/{id}"));
    let rep: Value = serde_json::from_str(create["representation"].as_str().unwrap()).unwrap();
    assert_eq!(rep["username"], "nora");
    assert_eq!(
        rep["credentials"][0]["value"], "**********",
        "secrets masked"
    );
    assert!(create["authDetails"]["userId"].is_string());
    assert!(create["id"].is_string());
}

#[tokio::test]
async fn admin_events_support_ascending_order_and_epoch_millis_dates() {
    let kc = realm().await;
    let before = kc.get("/admin-events").await;
    assert_eq!(before, json!([]));
    kc.create_user(new_user("olga")).await;
    kc.create_user(new_user("paul")).await;
    let asc = kc.get("/admin-events?direction=asc").await;
    let paths: Vec<_> = asc
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["time"].as_i64().unwrap())
        .collect();
    assert!(paths.windows(2).all(|w| w[0] <= w[1]));
    let first_time = asc[0]["time"].as_i64().unwrap();
    let after = kc
        .get(&format!(
            "/admin-events?dateFrom={}",
            first_time + 1_000_000
        ))
        .await;
    assert_eq!(after, json!([]));
    let all = kc
        .get(&format!("/admin-events?dateFrom={first_time}"))
        .await;
    assert_eq!(all.as_array().unwrap().len(), 2);
    let r = kc
        .admin(Method::GET, "/admin-events?direction=up", None)
        .await;
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json(),
        json!({"error": "Invalid value for sortDirection, expected value is asc or desc"})
    );
    let r = kc
        .admin(Method::GET, "/admin-events?dateFrom=22/11/2026", None)
        .await;
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn day_granularity_date_from_includes_the_whole_day() {
    let kc = realm().await;
    kc.create_user(new_user("quinn")).await;
    let events = kc.get("/admin-events").await;
    let t = events[0]["time"].as_i64().unwrap();
    let date = time::OffsetDateTime::from_unix_timestamp(t / 1000)
        .unwrap()
        .date()
        .to_string();
    assert_eq!(
        kc.get(&format!("/admin-events?dateFrom={date}&dateTo={date}"))
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn login_events_are_stored_when_events_are_enabled() {
    let kc = realm().await;
    kc.login("carol", "wrong-password").await;
    kc.tokens("carol", "carol-dev-password").await;
    let events = kc.get("/events?type=LOGIN&type=LOGIN_ERROR").await;
    assert_eq!(names(&events, "type"), vec!["LOGIN", "LOGIN_ERROR"]);
    assert_eq!(events[1]["error"], "invalid_user_credentials");
    assert_eq!(events[0]["details"]["username"], "carol");
}

#[tokio::test]
async fn events_are_not_stored_when_disabled_in_the_realm() {
    let kc = realm_with(json!({"eventsEnabled": false, "adminEventsEnabled": false})).await;
    kc.tokens("carol", "carol-dev-password").await;
    kc.create_user(new_user("rita")).await;
    assert_eq!(kc.get("/events").await, json!([]));
    assert_eq!(kc.get("/admin-events").await, json!([]));
    let config = kc.get("/events/config").await;
    assert_eq!(config["eventsEnabled"], false);
    assert_eq!(config["adminEventsEnabled"], false);
}

#[tokio::test]
async fn events_older_than_the_expiration_are_gone() {
    let kc = realm().await;
    kc.create_user(new_user("sam")).await;
    assert_eq!(kc.get("/admin-events").await.as_array().unwrap().len(), 1);
    kc.advance_clock(604_801).await;
    assert_eq!(kc.get("/admin-events").await, json!([]));
}

#[tokio::test]
async fn events_config_update_needs_manage_events() {
    let kc = realm().await;
    let r = kc
        .admin(
            Method::PUT,
            "/events/config",
            Some(json!({"adminEventsEnabled": false})),
        )
        .await;
    assert_eq!(r.status(), 403);
}

#[tokio::test]
async fn clients_lookup_by_client_id() {
    let kc = realm_with(json!({"users": [{
        "username": "service-account-user-sync-admin", "enabled": true, "serviceAccountClientId": "user-sync-admin",
        "clientRoles": {"realm-management": ["view-users", "query-clients"]}
    }]}))
    .await;
    let found = kc.get("/clients?clientId=user-sync").await;
    assert_eq!(found.as_array().unwrap().len(), 1);
    assert_eq!(found[0]["clientId"], "user-sync");
}
