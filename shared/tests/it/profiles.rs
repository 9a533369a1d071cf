//! Configuration that changes behaviour, against DynamoDB Local and the emulator: a business
//! attribute added by configuration alone, whether a login may reveal that an account is
//! disabled, and the groups a realm gives every new user.

#![allow(clippy::unwrap_used)]

use crate::common;

use serde_json::{json, Value};
use user_sync::features::sessions::{self, LoginRequest};
use user_sync::features::users::{self, RegisterRequest, UserView};
use user_sync::http::Origin;
use user_sync::outside::keycloak::UserUpdate;
use user_sync::outside::store::Pending;
use user_sync::Error;

/// A clone of the demo realm whose user profile also declares `costCenter`, editable by users
/// and admins — what an operator adds to the realm for a fifth business attribute.
async fn realm_with_cost_center() -> common::Realm {
    const COMPONENT: &str = "org.keycloak.userprofile.UserProfileProvider";
    let export: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../infra/keycloak/realm.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let mut component = export["components"][COMPONENT][0].clone();
    let mut profile: Value = serde_json::from_str(
        component["config"]["kc.user.profile.config"][0]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    profile["attributes"].as_array_mut().unwrap().push(json!({
        "name": "costCenter", "displayName": "Cost center", "multivalued": false,
        "validations": {"length": {"max": 32}},
        "permissions": {"view": ["admin", "user"], "edit": ["admin", "user"]}
    }));
    component["config"]["kc.user.profile.config"] = json!([profile.to_string()]);
    common::realm_with(json!({"components": {COMPONENT: [component]}})).await
}

const FIVE: (&str, &str) = (
    "USER_ATTRIBUTES",
    "organization,phone,department,title,costCenter",
);

#[tokio::test]
async fn a_fifth_attribute_is_a_configuration_change() {
    let realm = realm_with_cost_center().await;
    let services = common::services(&realm, &[FIVE]).await;
    let username = common::unique("cora");
    let user = register(&services, &username, &[("costCenter", "CC-42")])
        .await
        .unwrap();
    assert_eq!(user.attributes["costCenter"], "CC-42");
    let kc = services.keycloak.get_user(&user.id).await.unwrap();
    assert_eq!(kc.attribute("costCenter"), Some("CC-42"));
    let local = services.store.get_user(&user.id).await.unwrap().unwrap();
    assert_eq!(local.attributes["costCenter"], "CC-42");

    // A user created in Keycloak brings it along when the sync imports them.
    let imported = services
        .keycloak
        .create_user(&user_sync::outside::keycloak::NewUser {
            username: common::unique("cory"),
            enabled: true,
            attributes: [("costCenter".to_owned(), vec!["CC-7".to_owned()])].into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let run = user_sync::features::sync::run(
        &services,
        user_sync::features::sync::SyncRequest {
            mode: user_sync::features::sync::Mode::Full,
            dry_run: false,
            force: false,
            run_id: None,
            deadline_ms: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(
        run.status,
        user_sync::outside::store::SyncStatus::Succeeded,
        "{:?}",
        run.errors
    );
    let local = services.store.get_user(&imported).await.unwrap().unwrap();
    assert_eq!(local.attributes["costCenter"], "CC-7");
}

#[tokio::test]
async fn an_attribute_the_deployment_does_not_keep_is_refused() {
    let realm = realm_with_cost_center().await;
    let services = common::services(&realm, &[]).await;
    let err = register(
        &services,
        &common::unique("cora"),
        &[("costCenter", "CC-42")],
    )
    .await
    .unwrap_err();
    match err {
        Error::Validation(errors) => {
            assert_eq!(errors[0].field, "attributes.costCenter");
            assert_eq!(errors[0].message, "unknown attribute");
        }
        other => panic!("{other:?}"),
    }
}

/// A realm whose new users all join `/support`, as an operator sets in Keycloak's "User
/// registration" settings (the export's `defaultGroups`).
async fn realm_with_a_default_group() -> common::Realm {
    common::realm_with(json!({"defaultGroups": ["/support"]})).await
}

#[tokio::test]
async fn a_new_account_is_stored_with_the_groups_keycloak_gave_it() {
    let realm = realm_with_a_default_group().await;
    let services = common::services(&realm, &[]).await;
    let user = register(&services, &common::unique("gina"), &[])
        .await
        .unwrap();
    assert_eq!(user.groups, vec!["/support"]);
    let local = services.store.get_user(&user.id).await.unwrap().unwrap();
    assert_eq!(local.keycloak.groups, vec!["/support"]);
    assert!(local.pending().is_empty(), "{:?}", local.pending());
}

#[tokio::test]
async fn a_new_account_whose_groups_cannot_be_read_is_kept_marked_for_a_re_read() {
    let realm = realm_with_a_default_group().await;
    let services = common::services(&realm, &[]).await;
    realm
        .fault(
            json!({"method": "GET", "path": "/admin/realms/{realm}/users/*/groups", "status": 500}),
        )
        .await;
    let user = register(&services, &common::unique("gina"), &[])
        .await
        .unwrap();
    let local = services.store.get_user(&user.id).await.unwrap().unwrap();
    assert_eq!(local.pending(), vec![Pending::KeycloakRead]);
    assert!(
        local.keycloak.groups.is_empty(),
        "unknown, not guessed: {:?}",
        local.keycloak.groups
    );
}

async fn disabled_carol(vars: &[(&str, &str)]) -> user_sync::services::Services {
    let realm = common::realm().await;
    let services = common::services(&realm, vars).await;
    let carol = services
        .keycloak
        .find_user_by_username("carol")
        .await
        .unwrap()
        .unwrap();
    let off = UserUpdate {
        enabled: Some(false),
        ..Default::default()
    };
    services
        .keycloak
        .update_user(&carol.id, &off)
        .await
        .unwrap();
    services
}

fn carol() -> LoginRequest {
    LoginRequest {
        username: "carol".into(),
        password: "carol-dev-password".into(),
    }
}

#[tokio::test]
async fn by_default_a_disabled_account_is_not_revealed() {
    let services = disabled_carol(&[]).await;
    let err = sessions::login(&services, &carol(), &Origin::default())
        .await
        .err()
        .unwrap();
    assert_eq!(err.to_problem().code, "invalid_credentials");
}

#[tokio::test]
async fn reveal_account_state_tells_a_disabled_account_apart() {
    let services = disabled_carol(&[("REVEAL_ACCOUNT_STATE", "true")]).await;
    let err = sessions::login(&services, &carol(), &Origin::default())
        .await
        .err()
        .unwrap();
    assert_eq!(err.to_problem().code, "account_disabled");
}

/// A registration of `username` with these business attributes, as the API would make it.
async fn register(
    services: &user_sync::services::Services,
    username: &str,
    attributes: &[(&str, &str)],
) -> Result<UserView, Error> {
    let req = registration(username, attributes);
    users::register(services, &req, None, &Origin::default()).await
}

fn registration(username: &str, attributes: &[(&str, &str)]) -> RegisterRequest {
    RegisterRequest {
        username: username.into(),
        email: format!("{username}@example.org"),
        password: "a-good-password".into(),
        first_name: Some("Cora".into()),
        last_name: Some("Center".into()),
        attributes: attributes
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    }
}
