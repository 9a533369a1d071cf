//! Contract §4.1–§4.6: the admin users family.

#![allow(clippy::unwrap_used)] // test crate: a failed unwrap is a failed test

mod common;

use common::{new_user, realm};
use reqwest::Method;
use serde_json::{json, Value};

fn usernames(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn create_answers_201_with_location_of_the_new_user() {
    let kc = realm().await;
    let r = kc
        .admin(Method::POST, "/users", Some(new_user("Dave")))
        .await;
    assert_eq!(r.status(), 201);
    assert!(r.text.is_empty());
    let location = r.header("location").unwrap();
    let prefix = kc.url("/admin/realms/{realm}/users/");
    assert!(location.starts_with(&prefix), "{location}");
    let id = location.rsplit('/').next().unwrap();
    let u = kc.get(&format!("/users/{id}")).await;
    assert_eq!(u["username"], "dave", "usernames are stored lowercase");
    assert_eq!(u["email"], "dave@example.org");
    assert_eq!(u["enabled"], true);
    assert_eq!(u["requiredActions"], json!([]));
    assert!(u["createdTimestamp"].as_i64().unwrap() > 1_700_000_000_000);
}

#[tokio::test]
async fn create_without_enabled_gives_a_disabled_user() {
    let kc = realm().await;
    let mut rep = new_user("eve");
    rep.as_object_mut().unwrap().remove("enabled");
    let id = kc.create_user(rep).await;
    assert_eq!(kc.get(&format!("/users/{id}")).await["enabled"], false);
    let r = kc.login("eve", "a-good-password").await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.json()["error_description"], "Account disabled");
}

#[tokio::test]
async fn create_grants_the_default_roles() {
    let kc = realm().await;
    let id = kc.create_user(new_user("frank")).await;
    let roles = kc.get(&format!("/users/{id}/role-mappings/realm")).await;
    assert_eq!(usernames_of_roles(&roles), vec!["default-roles-demo"]);
}

fn usernames_of_roles(roles: &Value) -> Vec<String> {
    roles
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn duplicate_username_is_409_user_exists_with_same_username() {
    let kc = realm().await;
    let r = kc
        .admin(Method::POST, "/users", Some(new_user("CAROL")))
        .await;
    assert_eq!(r.status(), 409);
    assert_eq!(
        r.json(),
        json!({"errorMessage": "User exists with same username"})
    );
}

#[tokio::test]
async fn duplicate_email_is_409_user_exists_with_same_email() {
    let kc = realm().await;
    let mut rep = new_user("carol2");
    rep["email"] = json!("Carol@Example.com");
    let r = kc.admin(Method::POST, "/users", Some(rep)).await;
    assert_eq!(r.status(), 409);
    assert_eq!(
        r.json(),
        json!({"errorMessage": "User exists with same email"})
    );
}

#[tokio::test]
async fn missing_username_is_400_user_name_is_missing() {
    let kc = realm().await;
    let r = kc
        .admin(
            Method::POST,
            "/users",
            Some(json!({"email": "x@example.org"})),
        )
        .await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.json(), json!({"errorMessage": "User name is missing"}));
}

#[tokio::test]
async fn invalid_email_is_a_field_error() {
    let kc = realm().await;
    let mut rep = new_user("gina");
    rep["email"] = json!("bad@");
    let r = kc.admin(Method::POST, "/users", Some(rep)).await;
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json(),
        json!({"field": "email", "errorMessage": "error-invalid-email", "params": ["email", "bad@"]})
    );
}

#[tokio::test]
async fn several_field_errors_come_as_an_errors_list() {
    let kc = realm().await;
    let mut rep = new_user("hank");
    rep["email"] = json!("bad@");
    rep["firstName"] = json!("<script>");
    let r = kc.admin(Method::POST, "/users", Some(rep)).await;
    assert_eq!(r.status(), 400);
    let errors = r.json()["errors"].as_array().unwrap().clone();
    assert_eq!(errors.len(), 2);
    assert_eq!(
        errors[1]["errorMessage"],
        "error-person-name-invalid-character"
    );
}

#[tokio::test]
async fn password_policy_violation_uses_the_oauth_error_shape() {
    let kc = realm().await;
    let mut rep = new_user("ivan");
    rep["credentials"] = json!([{"type": "password", "value": "short"}]);
    let r = kc.admin(Method::POST, "/users", Some(rep)).await;
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json(),
        json!({"error": "invalidPasswordMinLengthMessage", "error_description": "Invalid password: minimum length 8."})
    );
    let none = kc.get("/users?username=ivan").await;
    assert_eq!(none, json!([]), "nothing half-created");
}

#[tokio::test]
async fn unknown_json_field_is_400_and_creates_nothing() {
    let kc = realm().await;
    let mut rep = new_user("judy");
    rep["nickname"] = json!("jj");
    let r = kc.admin(Method::POST, "/users", Some(rep)).await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.json()["error"], "invalid_request");
    assert_eq!(kc.get("/users?username=judy").await, json!([]));
}

#[tokio::test]
async fn declared_attributes_are_kept_and_undeclared_ones_silently_dropped() {
    let kc = realm().await;
    let mut rep = new_user("kim");
    rep["attributes"] =
        json!({"organization": "Initech", "department": ["QA"], "shoeSize": ["44"]});
    let id = kc.create_user(rep).await;
    let u = kc.get(&format!("/users/{id}")).await;
    assert_eq!(
        u["attributes"],
        json!({"organization": ["Initech"], "department": ["QA"]})
    );
}

/// A realm whose service account is a realm admin (the demo one deliberately is not).
async fn realm_admin_realm() -> common::Kc {
    common::realm_with(json!({"users": [{
        "username": "service-account-user-sync-admin", "enabled": true, "serviceAccountClientId": "user-sync-admin",
        "clientRoles": {"realm-management": ["realm-admin"]}
    }]}))
    .await
}

#[tokio::test]
async fn changing_the_user_profile_needs_manage_realm() {
    let kc = realm().await;
    let profile = kc.get("/users/profile").await;
    let r = kc.admin(Method::PUT, "/users/profile", Some(profile)).await;
    assert_eq!(r.status(), 403);
    assert_eq!(r.json(), json!({"error": "HTTP 403 Forbidden"}));
}

#[tokio::test]
async fn unmanaged_attributes_are_kept_once_the_profile_policy_allows_admin_edits() {
    let kc = realm_admin_realm().await;
    let mut profile = kc.get("/users/profile").await;
    assert!(
        profile.get("unmanagedAttributePolicy").is_none(),
        "disabled by default"
    );
    profile["unmanagedAttributePolicy"] = json!("ADMIN_EDIT");
    let r = kc.admin(Method::PUT, "/users/profile", Some(profile)).await;
    assert_eq!(r.status(), 200, "{}", r.text);
    let mut rep = new_user("kim");
    rep["attributes"] = json!({"shoeSize": ["44"]});
    let id = kc.create_user(rep).await;
    assert_eq!(
        kc.get(&format!("/users/{id}")).await["attributes"],
        json!({"shoeSize": ["44"]})
    );
}

#[tokio::test]
async fn user_profile_put_without_attributes_is_refused() {
    let kc = realm_admin_realm().await;
    let r = kc
        .admin(
            Method::PUT,
            "/users/profile",
            Some(json!({"unmanagedAttributePolicy": "ENABLED"})),
        )
        .await;
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json(),
        json!({"errorMessage": "[UserProfile configuration without 'attributes' section is not allowed]"})
    );
}

#[tokio::test]
async fn put_with_attributes_replaces_the_whole_profile() {
    let kc = realm().await;
    let id = kc.user_id("carol").await;
    let r = kc
        .admin(
            Method::PUT,
            &format!("/users/{id}"),
            Some(json!({"attributes": {"title": ["Lead"]}})),
        )
        .await;
    assert_eq!(r.status(), 204);
    let u = kc.get(&format!("/users/{id}")).await;
    assert_eq!(u["attributes"], json!({"title": ["Lead"]}));
    assert!(u.get("firstName").is_none(), "names not sent are cleared");
    assert!(u.get("lastName").is_none());
    assert!(u.get("email").is_none());
}

#[tokio::test]
async fn put_without_attributes_keeps_existing_attributes_and_unsent_fields() {
    let kc = realm().await;
    let id = kc.user_id("carol").await;
    let r = kc
        .admin(
            Method::PUT,
            &format!("/users/{id}"),
            Some(json!({"firstName": "Caroline"})),
        )
        .await;
    assert_eq!(r.status(), 204);
    let u = kc.get(&format!("/users/{id}")).await;
    assert_eq!(u["firstName"], "Caroline");
    assert_eq!(u["lastName"], "User");
    assert_eq!(u["attributes"]["organization"], json!(["Acme"]));
}

#[tokio::test]
async fn get_modify_put_keeps_every_field_not_changed() {
    let kc = realm().await;
    let id = kc.user_id("carol").await;
    let before = kc.get(&format!("/users/{id}")).await;
    let mut rep = before.clone();
    rep["attributes"]["title"] = json!(["Senior Agent"]);
    assert_eq!(
        kc.admin(Method::PUT, &format!("/users/{id}"), Some(rep))
            .await
            .status(),
        204
    );
    let after = kc.get(&format!("/users/{id}")).await;
    let mut expected = before;
    expected["attributes"]["title"] = json!(["Senior Agent"]);
    assert_eq!(after, expected);
}

#[tokio::test]
async fn put_with_a_different_username_is_refused_as_read_only() {
    let kc = realm().await;
    let id = kc.user_id("carol").await;
    let r = kc
        .admin(
            Method::PUT,
            &format!("/users/{id}"),
            Some(json!({"username": "caroline"})),
        )
        .await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.json()["errorMessage"], "readOnlyUsernameMessage");
}

#[tokio::test]
async fn put_with_an_email_of_another_user_is_409() {
    let kc = realm().await;
    let id = kc.user_id("carol").await;
    let r = kc
        .admin(
            Method::PUT,
            &format!("/users/{id}"),
            Some(json!({"email": "bob@example.com"})),
        )
        .await;
    assert_eq!(r.status(), 409);
    assert_eq!(
        r.json(),
        json!({"errorMessage": "User exists with same email"})
    );
    assert_eq!(
        kc.get(&format!("/users/{id}")).await["email"],
        "carol@example.com"
    );
}

#[tokio::test]
async fn unknown_user_id_is_404_user_not_found() {
    let kc = realm().await;
    for method in [Method::GET, Method::PUT, Method::DELETE] {
        let body = (method == Method::PUT).then(|| json!({}));
        let r = kc
            .admin(method, "/users/00000000-0000-0000-0000-000000000000", body)
            .await;
        assert_eq!(r.status(), 404);
        assert_eq!(r.json(), json!({"error": "User not found"}));
    }
}

#[tokio::test]
async fn delete_removes_the_user() {
    let kc = realm().await;
    let id = kc.create_user(new_user("leo")).await;
    let r = kc
        .admin(Method::DELETE, &format!("/users/{id}"), None)
        .await;
    assert_eq!(r.status(), 204);
    assert_eq!(
        kc.admin(Method::GET, &format!("/users/{id}"), None)
            .await
            .status(),
        404
    );
}

#[tokio::test]
async fn list_is_ordered_by_username_and_excludes_service_accounts() {
    let kc = realm().await;
    kc.create_user(new_user("aaron")).await;
    kc.create_user(new_user("zed")).await;
    let all = kc.get("/users").await;
    assert_eq!(
        usernames(&all),
        vec!["aaron", "alice", "bob", "carol", "zed"]
    );
}

#[tokio::test]
async fn list_pages_with_first_and_max() {
    let kc = realm().await;
    let r = kc
        .raw(
            Method::POST,
            "/_emulator/realms/{realm}/users/bulk",
            Some(json!({"count": 250, "prefix": "p"})),
        )
        .await;
    assert_eq!(r.status(), 201);
    let page = kc
        .get("/users?first=0&max=100&briefRepresentation=true")
        .await;
    assert_eq!(page.as_array().unwrap().len(), 100);
    assert!(
        page[0].get("attributes").is_none(),
        "brief items have no attributes"
    );
    let mut seen = Vec::new();
    let mut first = 0;
    loop {
        let page = kc.get(&format!("/users?first={first}&max=100")).await;
        let names = usernames(&page);
        seen.extend(names.iter().cloned());
        if names.len() < 100 {
            break;
        }
        first += 100;
    }
    assert_eq!(seen.len(), 253);
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(seen, sorted);
    assert_eq!(kc.get("/users?max=0").await, json!([]));
    assert_eq!(
        kc.get("/users").await.as_array().unwrap().len(),
        100,
        "max defaults to 100"
    );
    assert_eq!(kc.get("/users?max=-1").await.as_array().unwrap().len(), 253);
}

#[tokio::test]
async fn count_is_a_bare_integer_without_service_accounts() {
    let kc = realm().await;
    let r = kc.admin(Method::GET, "/users/count", None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text, "3");
    assert_eq!(kc.get("/users/count?search=service").await, json!(0));
    assert_eq!(
        kc.get("/users/count?username=service-account").await,
        json!(1)
    );
}

#[tokio::test]
async fn username_search_is_substring_unless_exact() {
    let kc = realm().await;
    assert_eq!(
        usernames(&kc.get("/users?username=aro").await),
        vec!["carol"]
    );
    assert_eq!(kc.get("/users?username=aro&exact=true").await, json!([]));
    assert_eq!(
        usernames(&kc.get("/users?username=CAROL&exact=true").await),
        vec!["carol"]
    );
    assert_eq!(
        usernames(&kc.get("/users?email=example.com&exact=false").await).len(),
        3
    );
}

#[tokio::test]
async fn an_exact_username_lookup_still_applies_every_other_criterion() {
    let kc = realm().await;
    assert_eq!(
        usernames(
            &kc.get("/users?username=carol&exact=true&lastName=nobody")
                .await
        ),
        Vec::<String>::new()
    );
    assert_eq!(
        usernames(
            &kc.get("/users?username=carol&exact=true&enabled=false")
                .await
        ),
        Vec::<String>::new()
    );
    assert_eq!(
        usernames(
            &kc.get("/users?username=carol&exact=true&enabled=true")
                .await
        ),
        vec!["carol"]
    );
    assert_eq!(
        kc.get("/users/count?username=CAROL&exact=true").await,
        json!(1)
    );
    assert_eq!(
        kc.get("/users/count?username=carol&exact=true&first=1")
            .await,
        json!(1)
    );
    assert_eq!(
        usernames(
            &kc.get("/users?username=service-account-user-sync-admin&exact=true")
                .await
        ),
        vec!["service-account-user-sync-admin"]
    );
    assert_eq!(
        kc.get("/users?username=carol&exact=true&first=1").await,
        json!([])
    );
}

#[tokio::test]
async fn ids_searched_together_answer_once_each_in_username_order() {
    let kc = realm().await;
    let (alice, carol) = (kc.user_id("alice").await, kc.user_id("carol").await);
    let found = kc
        .get(&format!(
            "/users?search=id:{carol}%20{alice}%20{carol}%20no-such-id"
        ))
        .await;
    assert_eq!(usernames(&found), vec!["alice", "carol"]);
    assert_eq!(
        kc.get(&format!("/users/count?search=id:{carol}%20{alice}"))
            .await,
        json!(2)
    );
}

#[tokio::test]
async fn field_criteria_include_service_accounts_but_search_does_not() {
    let kc = realm().await;
    assert_eq!(
        usernames(&kc.get("/users?username=service").await),
        vec!["service-account-user-sync-admin"]
    );
    assert_eq!(kc.get("/users?search=service").await, json!([]));
}

#[tokio::test]
async fn search_is_a_prefix_match_over_names_and_email_with_infix_and_exact_forms() {
    let kc = realm().await;
    assert_eq!(usernames(&kc.get("/users?search=car").await), vec!["carol"]);
    assert_eq!(usernames(&kc.get("/users?search=Manag").await), vec!["bob"]);
    assert_eq!(kc.get("/users?search=arol").await, json!([]));
    assert_eq!(
        usernames(&kc.get("/users?search=*arol*").await),
        vec!["carol"]
    );
    assert_eq!(kc.get("/users?search=%22caro%22").await, json!([]));
    assert_eq!(
        usernames(&kc.get("/users?search=%22carol%22").await),
        vec!["carol"]
    );
    assert_eq!(
        usernames(&kc.get("/users?search=a%20admin").await),
        vec!["alice"]
    );
}

#[tokio::test]
async fn search_by_id_finds_exactly_that_user() {
    let kc = realm().await;
    let id = kc.user_id("bob").await;
    assert_eq!(
        usernames(&kc.get(&format!("/users?search=id:{id}")).await),
        vec!["bob"]
    );
}

#[tokio::test]
async fn q_searches_attributes_exactly_by_default() {
    let kc = realm().await;
    assert_eq!(
        usernames(&kc.get("/users?q=department:support").await),
        vec!["bob", "carol"]
    );
    assert_eq!(kc.get("/users?q=department:supp").await, json!([]));
    assert_eq!(
        usernames(&kc.get("/users?q=department:supp&exact=false").await),
        vec!["bob", "carol"]
    );
    assert_eq!(
        usernames(&kc.get("/users?q=department:support%20title:agent").await),
        vec!["carol"]
    );
}

#[tokio::test]
async fn enabled_filter_applies_to_lists() {
    let kc = realm().await;
    let mut rep = new_user("off");
    rep["enabled"] = json!(false);
    kc.create_user(rep).await;
    assert_eq!(
        usernames(&kc.get("/users?enabled=false").await),
        vec!["off"]
    );
    assert_eq!(
        usernames(&kc.get("/users?search=o&enabled=false").await),
        vec!["off"]
    );
}

#[tokio::test]
async fn reset_password_changes_the_password() {
    let kc = realm().await;
    let id = kc.user_id("carol").await;
    let r = kc
        .admin(
            Method::PUT,
            &format!("/users/{id}/reset-password"),
            Some(json!({"type": "password", "value": "brand-new-pass", "temporary": false})),
        )
        .await;
    assert_eq!(r.status(), 204);
    assert_eq!(kc.login("carol", "carol-dev-password").await.status(), 401);
    assert_eq!(kc.login("carol", "brand-new-pass").await.status(), 200);
}

#[tokio::test]
async fn reset_password_errors_follow_keycloak() {
    let kc = realm().await;
    let id = kc.user_id("carol").await;
    let path = format!("/users/{id}/reset-password");
    let r = kc
        .admin(Method::PUT, &path, Some(json!({"type": "password"})))
        .await;
    assert_eq!(
        (r.status(), r.json()),
        (400, json!({"error": "No password provided"}))
    );
    let r = kc
        .admin(Method::PUT, &path, Some(json!({"value": "  "})))
        .await;
    assert_eq!(
        (r.status(), r.json()),
        (400, json!({"error": "Empty password not allowed"}))
    );
    let r = kc
        .admin(Method::PUT, &path, Some(json!({"value": "carol"})))
        .await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.json()["error"], "invalidPasswordMinLengthMessage");
    let r = kc
        .admin(
            Method::PUT,
            &path,
            Some(json!({"value": "long-enough-1", "federationLink": "x"})),
        )
        .await;
    assert_eq!(
        r.status(),
        400,
        "unknown credential fields are refused (keycloak#40152)"
    );
}

#[tokio::test]
async fn temporary_false_reset_clears_a_pending_update_password() {
    let kc = realm().await;
    let id = kc.user_id("carol").await;
    let path = format!("/users/{id}/reset-password");
    kc.admin(
        Method::PUT,
        &path,
        Some(json!({"value": "temp-password", "temporary": true})),
    )
    .await;
    assert_eq!(
        kc.get(&format!("/users/{id}")).await["requiredActions"],
        json!(["UPDATE_PASSWORD"])
    );
    kc.admin(
        Method::PUT,
        &path,
        Some(json!({"value": "final-password", "temporary": false})),
    )
    .await;
    assert_eq!(
        kc.get(&format!("/users/{id}")).await["requiredActions"],
        json!([])
    );
    assert_eq!(kc.login("carol", "final-password").await.status(), 200);
}

#[tokio::test]
async fn a_username_that_is_another_users_email_is_409_same_username() {
    // contract §13: up-duplicate-username checks emails too when email login is on.
    let kc = realm().await;
    let mut rep = new_user("carol@example.com");
    rep["email"] = json!("someone-else@example.org");
    let r = kc.admin(Method::POST, "/users", Some(rep)).await;
    assert_eq!(r.status(), 409);
    assert_eq!(
        r.json(),
        json!({"errorMessage": "User exists with same username"})
    );
}

#[tokio::test]
async fn an_email_that_is_another_users_username_is_409_same_email() {
    let kc = realm().await;
    // Keycloak lets a username be an address other than the user's email.
    let mut dave = new_user("dave@example.org");
    dave["email"] = json!("dave.elsewhere@example.org");
    kc.create_user(dave).await;
    let mut rep = new_user("erin");
    rep["email"] = json!("DAVE@example.org");
    let r = kc.admin(Method::POST, "/users", Some(rep)).await;
    assert_eq!(r.status(), 409);
    assert_eq!(
        r.json(),
        json!({"errorMessage": "User exists with same email"})
    );
}

#[tokio::test]
async fn an_unchanged_email_is_not_checked_again_on_update() {
    let kc = realm().await;
    let id = kc.create_user(new_user("frank")).await;
    let mut rep = kc.get(&format!("/users/{id}")).await;
    rep["firstName"] = json!("Franky");
    let r = kc
        .admin(Method::PUT, &format!("/users/{id}"), Some(rep))
        .await;
    assert_eq!(r.status(), 204);
}

#[tokio::test]
async fn an_identifier_with_an_at_sign_is_looked_up_by_email_first() {
    // An older realm may hold a user named like another user's email (Keycloak 26 refuses to
    // create one): the email wins the lookup (contract §13).
    let user = |username: &str, email: &str, password: &str| {
        json!({"username": username, "email": email, "enabled": true, "firstName": "A",
               "lastName": "B", "credentials": [{"type": "password", "value": password}]})
    };
    let kc = common::realm_with(json!({"users": [
        user("owner", "shared@example.org", "owner-password"),
        user("shared@example.org", "impostor@example.org", "impostor-password"),
        {"username": "service-account-user-sync-admin", "enabled": true,
         "serviceAccountClientId": "user-sync-admin",
         "clientRoles": {"realm-management": ["view-users"]}}
    ]}))
    .await;
    let r = kc.login("shared@example.org", "owner-password").await;
    assert_eq!(r.status(), 200, "{:?}", r.json());
    let sub = common::claims(r.json()["access_token"].as_str().unwrap())["sub"].clone();
    assert_eq!(sub, json!(kc.user_id("owner").await));
    let r = kc.login("shared@example.org", "impostor-password").await;
    assert_eq!(r.status(), 401, "the username is not reached");
}

#[tokio::test]
async fn the_admin_api_marks_no_user_as_a_service_account_and_the_client_names_its_own() {
    let kc = realm_admin_realm().await;
    let sa = kc.user_id("service-account-user-sync-admin").await;
    let rep = kc.get(&format!("/users/{sa}")).await;
    assert!(rep.get("serviceAccountClientId").is_none(), "{rep}");
    // A user who merely took the prefix is no service account.
    kc.create_user(new_user("service-account-mallory")).await;
    let clients = kc.get("/clients?clientId=user-sync-admin").await;
    let cid = clients[0]["id"].as_str().unwrap().to_owned();
    let user = kc
        .get(&format!("/clients/{cid}/service-account-user"))
        .await;
    assert_eq!(user["id"], json!(sa));
    let login = kc.get("/clients?clientId=user-sync").await;
    let cid = login[0]["id"].as_str().unwrap().to_owned();
    let r = kc
        .admin(
            Method::GET,
            &format!("/clients/{cid}/service-account-user"),
            None,
        )
        .await;
    assert_eq!(r.status(), 400);
}
