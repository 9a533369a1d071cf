//! Failure paths that disturb the whole stack (the table gone, Keycloak's clock moved): in their
//! own test binary, so with their own stack, and one at a time.

#![allow(clippy::unwrap_used)]

use e2e::*;
use reqwest::Method;
use serde_json::json;
use tokio::sync::Mutex;

static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

#[tokio::test]
async fn a_local_write_failure_during_registration_removes_the_keycloak_user() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let username = unique("orphan");
    // Warm the register function first, so the failure is the write, not a cold start.
    assert_eq!(
        post("/auth/register", registration(&unique("warm")))
            .await
            .status,
        201
    );
    let ddb = store();
    let client = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::Config::builder()
            .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
            .endpoint_url(&stack().moto)
            .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                "local", "local", None, None, "e2e",
            ))
            .build(),
    );
    let description = client
        .describe_table()
        .table_name(ddb.table_name())
        .send()
        .await
        .unwrap();
    client
        .delete_table()
        .table_name(ddb.table_name())
        .send()
        .await
        .unwrap();

    let r = post("/auth/register", registration(&username)).await;
    assert!(r.status >= 500, "{} {}", r.status, r.text);
    assert!(
        keycloak_users_named(&username).await.is_empty(),
        "no Keycloak user without its local record"
    );

    // Put the table back for whoever comes next.
    let t = description.table.unwrap();
    let mut create = client
        .create_table()
        .table_name(ddb.table_name())
        .billing_mode(aws_sdk_dynamodb::types::BillingMode::PayPerRequest)
        .set_key_schema(t.key_schema)
        .set_attribute_definitions(t.attribute_definitions);
    for g in t.global_secondary_indexes.unwrap_or_default() {
        create = create.global_secondary_indexes(
            aws_sdk_dynamodb::types::GlobalSecondaryIndex::builder()
                .index_name(g.index_name.unwrap())
                .set_key_schema(g.key_schema)
                .set_projection(g.projection)
                .build()
                .unwrap(),
        );
    }
    create.send().await.unwrap();
    assert_eq!(
        post("/auth/register", registration(&username)).await.status,
        201
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
    let set_clock = |seconds: i64| async move {
        let r = http()
            .put(format!(
                "{}/_emulator/realms/{}/clock",
                stack().keycloak,
                stack().realm
            ))
            .json(&json!({"offsetSeconds": seconds}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
    };
    // Keycloak's clock behind by 400 s: the token it issues expired 100 s ago for everyone else.
    set_clock(-400).await;
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
    set_clock(0).await;
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
