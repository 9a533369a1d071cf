//! Building every client from the environment, as a function's cold start does.

#![allow(clippy::unwrap_used)]

mod common;

use user_sync::services::Services;
use user_sync::store::ListQuery;
use user_sync::Config;

#[tokio::test]
async fn services_built_from_config_reach_keycloak_secrets_manager_and_dynamodb() {
    let realm = common::realm().await;
    let secret_id = common::secret(common::SECRET).await;
    let table = common::table().await.table_name().to_owned();
    // The SDK reads these from the environment, as in Lambda (AWS_ENDPOINT_URL points at moto).
    for (k, v) in [
        ("AWS_ENDPOINT_URL", common::moto()),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "local"),
        ("AWS_SECRET_ACCESS_KEY", "local"),
    ] {
        // This test binary has a single test: nothing reads the environment concurrently.
        std::env::set_var(k, v);
    }
    let config = Config::from_lookup(|k| {
        Some(match k {
            "KEYCLOAK_URL" => common::emulator().to_owned(),
            "KEYCLOAK_REALM" => realm.name.clone(),
            "KEYCLOAK_CLIENT_ID" => "user-sync".into(),
            "KEYCLOAK_SECRET_ID" => secret_id.clone(),
            "TABLE_NAME" => table.clone(),
            _ => return None,
        })
    })
    .unwrap();
    let services = Services::new(config).await.unwrap();
    services.warm_up().await;
    let tokens = services
        .keycloak
        .password_grant("alice", "alice-dev-password")
        .await
        .unwrap();
    let principal = services
        .bearer
        .validate(&tokens.access_token)
        .await
        .unwrap();
    assert_eq!(principal.username, "alice");
    let page = services
        .store
        .list_users(&ListQuery {
            limit: 5,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(page.items.is_empty());
}
