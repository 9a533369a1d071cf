//! Building every client from the environment, as a function's cold start does: each function is
//! given only the Keycloak client it uses.

#![allow(clippy::unwrap_used)]

use crate::common;

use user_sync::outside::keycloak::KeycloakError;
use user_sync::outside::store::ListQuery;
use user_sync::services::Services;
use user_sync::Config;

/// A function's configuration: the realm, a table, and the given client variables.
fn config(realm: &common::Realm, table: &str, clients: &[(&str, String)]) -> Config {
    Config::from_lookup(|k| {
        let base = match k {
            "KEYCLOAK_URL" => Some(common::emulator().to_owned()),
            "KEYCLOAK_REALM" => Some(realm.name.clone()),
            "TABLE_NAME" => Some(table.to_owned()),
            "JWT_AUDIENCE" => Some(common::CLIENT.to_owned()),
            _ => None,
        };
        base.or_else(|| {
            clients
                .iter()
                .find(|(name, _)| *name == k)
                .map(|(_, v)| v.clone())
        })
    })
    .unwrap()
}

// One test per binary: it sets the process environment the SDK reads.
#[tokio::test]
async fn services_built_from_config_reach_keycloak_secrets_manager_and_dynamodb_with_one_client_each(
) {
    let realm = common::realm().await;
    let login_secret = common::secret(common::SECRET).await;
    let admin_secret = common::secret(common::ADMIN_SECRET).await;
    let table = common::table().await.table_name().to_owned();
    // The SDK reads these from the environment, as in Lambda: DynamoDB (DynamoDB Local) and
    // Lambda at their service-specific endpoints, every other service at AWS_ENDPOINT_URL (moto).
    for (k, v) in [
        ("AWS_ENDPOINT_URL", common::moto()),
        ("AWS_ENDPOINT_URL_DYNAMODB", common::dynamodb_local()),
        (
            "AWS_ENDPOINT_URL_LAMBDA",
            "http://127.0.0.1:9/lambda-of-the-test",
        ),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "local"),
        ("AWS_SECRET_ACCESS_KEY", "local"),
    ] {
        // This test binary has a single test: nothing reads the environment concurrently.
        std::env::set_var(k, v);
    }

    // A public auth function: the login client only.
    let public = Services::new(config(
        &realm,
        &table,
        &[
            ("KEYCLOAK_CLIENT_ID", common::CLIENT.into()),
            ("KEYCLOAK_SECRET_ID", login_secret),
        ],
    ))
    .await
    .unwrap();
    public.warm_up().await;
    assert_eq!(
        public.lambda.endpoint(),
        "http://127.0.0.1:9/lambda-of-the-test",
        "Lambda at its service-specific endpoint, as an SDK client would be"
    );
    let tokens = public
        .keycloak
        .password_grant("alice", "alice-dev-password")
        .await
        .unwrap();
    let principal = public.bearer.validate(&tokens.access_token).await.unwrap();
    assert_eq!(principal.username, "alice");
    assert_eq!(
        public.keycloak.count_users().await.unwrap_err(),
        KeycloakError::NotConfigured("service client"),
        "a public function cannot reach the admin API whatever its bug"
    );
    let page = public
        .store
        .list_users(&ListQuery {
            limit: 5,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(page.items.is_empty());

    // The admin function: the service client only.
    let admin = Services::new(config(
        &realm,
        &table,
        &[
            ("KEYCLOAK_ADMIN_CLIENT_ID", common::ADMIN_CLIENT.into()),
            ("KEYCLOAK_ADMIN_SECRET_ID", admin_secret),
        ],
    ))
    .await
    .unwrap();
    admin.warm_up().await;
    assert_eq!(admin.keycloak.count_users().await.unwrap(), 3);
    assert_eq!(
        admin
            .keycloak
            .password_grant("alice", "alice-dev-password")
            .await
            .unwrap_err(),
        KeycloakError::NotConfigured("login client")
    );
    // It still verifies the login client's tokens (JWT_AUDIENCE), without that client's secret.
    let principal = admin.bearer.validate(&tokens.access_token).await.unwrap();
    assert_eq!(principal.username, "alice");
}
