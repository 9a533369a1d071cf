//! The Keycloak client against the Keycloak emulator (and Secrets Manager in moto), including its
//! failure paths: rate limits, outages, expired tokens, secret rotation.

#![allow(clippy::unwrap_used)]

use crate::common;

use std::time::{Duration, Instant};

use crate::common::{realm, secret, set_secret};
use serde_json::json;
use user_sync::outside::keycloak::{
    ExistsField, KeycloakError, NewUser, PasswordCredential, UserUpdate,
};

fn new_user(username: &str) -> NewUser {
    NewUser {
        username: username.into(),
        email: Some(format!("{username}@example.org")),
        first_name: Some("New".into()),
        last_name: Some("User".into()),
        enabled: true,
        credentials: vec![PasswordCredential::new("a-good-password", false)],
        ..Default::default()
    }
}

#[tokio::test]
async fn password_grant_returns_tokens_with_a_session() {
    let r = realm().await;
    let t = r
        .client()
        .password_grant("carol", "carol-dev-password")
        .await
        .unwrap();
    assert!(t.refresh_token.is_some());
    assert!(t.session_state.is_some());
    assert_eq!(t.expires_in, 300);
}

#[tokio::test]
async fn password_grant_failures_are_typed() {
    let r = realm().await;
    let kc = r.client();
    assert_eq!(
        kc.password_grant("carol", "wrong").await.unwrap_err(),
        KeycloakError::InvalidCredentials
    );
    assert_eq!(
        kc.password_grant("nobody", "wrong").await.unwrap_err(),
        KeycloakError::InvalidCredentials
    );
    let id = kc
        .create_user(&NewUser {
            enabled: false,
            ..new_user("off")
        })
        .await
        .unwrap();
    assert!(!id.is_empty());
    assert_eq!(
        kc.password_grant("off", "a-good-password")
            .await
            .unwrap_err(),
        KeycloakError::AccountDisabled
    );
    let bare = NewUser {
        first_name: None,
        last_name: None,
        ..new_user("bare")
    };
    kc.create_user(&bare).await.unwrap();
    assert_eq!(
        kc.password_grant("bare", "a-good-password")
            .await
            .unwrap_err(),
        KeycloakError::AccountNotReady
    );
}

#[tokio::test]
async fn refresh_and_logout_follow_the_session() {
    let r = realm().await;
    let kc = r.client();
    let t = kc
        .password_grant("carol", "carol-dev-password")
        .await
        .unwrap();
    let rt = t.refresh_token.unwrap();
    let n = kc.refresh(&rt, None).await.unwrap();
    assert_eq!(n.session_state, t.session_state);
    kc.logout(&rt).await.unwrap();
    kc.logout(&rt).await.unwrap(); // an ended session still logs out fine
    assert_eq!(
        kc.refresh(&rt, None).await.unwrap_err(),
        KeycloakError::InvalidGrant {
            description: "Session not active".into()
        }
    );
}

#[tokio::test]
async fn create_reads_the_id_from_location_and_maps_conflicts() {
    let r = realm().await;
    let kc = r.client();
    let id = kc.create_user(&new_user("dave")).await.unwrap();
    assert_eq!(kc.get_user(&id).await.unwrap().username, "dave");
    assert_eq!(
        kc.create_user(&new_user("dave")).await.unwrap_err(),
        KeycloakError::UserExists {
            field: ExistsField::Username
        }
    );
    let same_email = NewUser {
        email: Some("carol@example.com".into()),
        ..new_user("carol2")
    };
    assert_eq!(
        kc.create_user(&same_email).await.unwrap_err(),
        KeycloakError::UserExists {
            field: ExistsField::Email
        }
    );
}

#[tokio::test]
async fn password_policy_and_validation_errors_carry_keycloaks_words() {
    let r = realm().await;
    let kc = r.client();
    let weak = NewUser {
        credentials: vec![PasswordCredential::new("short", false)],
        ..new_user("erin")
    };
    assert_eq!(
        kc.create_user(&weak).await.unwrap_err(),
        KeycloakError::PasswordPolicy {
            message: "Invalid password: minimum length 8.".into()
        }
    );
    let bad_email = NewUser {
        email: Some("bad@".into()),
        ..new_user("fred")
    };
    match kc.create_user(&bad_email).await.unwrap_err() {
        KeycloakError::Validation { field, key, .. } => assert_eq!(
            (field.as_str(), key.as_str()),
            ("email", "error-invalid-email")
        ),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn update_keeps_every_field_it_did_not_change() {
    let r = realm().await;
    let kc = r.client();
    let carol = kc.find_user_by_username("carol").await.unwrap().unwrap();
    let mut update = UserUpdate {
        last_name: Some("Changed".into()),
        ..Default::default()
    };
    update
        .attributes
        .insert("title".into(), Some(vec!["Lead".into()]));
    kc.update_user(&carol.id, &update).await.unwrap();
    let after = kc.get_user(&carol.id).await.unwrap();
    assert_eq!(after.first_name.as_deref(), Some("Carol"));
    assert_eq!(after.last_name.as_deref(), Some("Changed"));
    assert_eq!(after.email, carol.email);
    assert_eq!(after.attribute("title"), Some("Lead"));
    for kept in ["organization", "department", "phone"] {
        assert_eq!(after.attribute(kept), carol.attribute(kept), "{kept}");
    }
}

#[tokio::test]
async fn reset_password_delete_and_not_found() {
    let r = realm().await;
    let kc = r.client();
    let id = kc.create_user(&new_user("gail")).await.unwrap();
    kc.reset_password(&id, "another-good-one", false)
        .await
        .unwrap();
    assert!(kc.password_grant("gail", "another-good-one").await.is_ok());
    kc.delete_user(&id).await.unwrap();
    assert_eq!(kc.get_user(&id).await.unwrap_err(), KeycloakError::NotFound);
}

#[tokio::test]
async fn listing_counting_roles_groups_sessions_and_events() {
    let r = realm().await;
    let kc = r.client();
    let page = kc.list_users(0, 2, false).await.unwrap();
    assert_eq!(
        page.iter().map(|u| u.username.as_str()).collect::<Vec<_>>(),
        ["alice", "bob"]
    );
    assert_eq!(kc.count_users().await.unwrap(), 3);
    let roles = kc.realm_roles().await.unwrap();
    let manager = roles.iter().find(|r| r.name == "manager").unwrap().clone();
    let carol = kc.find_user_by_username("carol").await.unwrap().unwrap();
    r.role_mapping(reqwest::Method::POST, &carol.id, &manager)
        .await;
    let bob = kc.find_user_by_username("bob").await.unwrap().unwrap();
    let members = kc.role_members("manager", 0, 100).await.unwrap();
    assert_eq!(
        members.iter().map(|u| u.id.as_str()).collect::<Vec<_>>(),
        [bob.id.as_str(), carol.id.as_str()],
        "in username order"
    );
    r.role_mapping(reqwest::Method::DELETE, &carol.id, &manager)
        .await;
    assert!(kc
        .user_effective_realm_roles(&carol.id)
        .await
        .unwrap()
        .iter()
        .all(|r| r.name != "manager"));
    let groups = kc.groups().await.unwrap();
    let support = groups.iter().find(|g| g.name == "support").unwrap();
    let in_support = kc.group_members(&support.id, 0, 100).await.unwrap();
    assert_eq!(in_support.len(), 2);
    assert_eq!(kc.user_groups(&carol.id).await.unwrap()[0].path, "/support");
    kc.password_grant("carol", "carol-dev-password")
        .await
        .unwrap();
    let sessions = kc.user_sessions(&carol.id).await.unwrap();
    assert_eq!(sessions.len(), 1);
    kc.delete_session(&sessions[0].id).await.unwrap();
    assert!(kc.user_sessions(&carol.id).await.unwrap().is_empty());
    let events = kc
        .admin_events(&user_sync::outside::keycloak::EventQuery {
            types: vec!["REALM_ROLE_MAPPING".into()],
            max: 10,
            ascending: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        events
            .iter()
            .map(|e| e.operation_type.as_str())
            .collect::<Vec<_>>(),
        ["CREATE", "DELETE"]
    );
    assert_eq!(events[0].user_id(), Some(carol.id.as_str()));
    let logins = kc
        .user_events(&user_sync::outside::keycloak::EventQuery {
            types: vec!["LOGIN".into()],
            max: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(logins[0].user_id.as_deref(), Some(carol.id.as_str()));
}

#[tokio::test]
async fn rate_limit_with_retry_after_is_waited_out_and_retried() {
    let r = realm().await;
    let kc = r.client();
    kc.warm_up().await.unwrap();
    r.fault(json!({"method": "GET", "path": "/admin/realms/{realm}/users/count", "status": 429, "retryAfter": 1, "times": 1})).await;
    let started = Instant::now();
    assert_eq!(kc.count_users().await.unwrap(), 3);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "waited {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_long_retry_after_is_surfaced_as_rate_limited() {
    let r = realm().await;
    let kc = r.client();
    kc.warm_up().await.unwrap();
    r.fault(json!({"method": "GET", "path": "/admin/realms/{realm}/users/count", "status": 429, "retryAfter": 60, "times": 1})).await;
    assert_eq!(
        kc.count_users().await.unwrap_err(),
        KeycloakError::RateLimited {
            retry_after: Some(60)
        }
    );
}

#[tokio::test]
async fn a_503_is_retried_then_surfaced_as_unavailable() {
    let r = realm().await;
    let kc = r.client();
    kc.warm_up().await.unwrap();
    let rule = r
        .fault(json!({"method": "GET", "path": "/admin/realms/{realm}/users/count", "status": 503}))
        .await;
    assert!(matches!(
        kc.count_users().await.unwrap_err(),
        KeycloakError::Unavailable { .. }
    ));
    assert_eq!(r.hits(&rule).await, 4, "one try and three retries");
}

#[tokio::test]
async fn a_passing_503_is_retried_transparently() {
    let r = realm().await;
    let kc = r.client();
    kc.warm_up().await.unwrap();
    r.fault(json!({"method": "GET", "path": "/admin/realms/{realm}/users/count", "status": 503, "times": 2})).await;
    assert_eq!(kc.count_users().await.unwrap(), 3);
}

#[tokio::test]
async fn a_create_is_not_retried_after_a_503() {
    let r = realm().await;
    let kc = r.client();
    kc.warm_up().await.unwrap();
    let rule = r
        .fault(json!({"method": "POST", "path": "/admin/realms/{realm}/users", "status": 503}))
        .await;
    assert!(matches!(
        kc.create_user(&new_user("once")).await.unwrap_err(),
        KeycloakError::Unavailable { .. }
    ));
    assert_eq!(r.hits(&rule).await, 1);
}

#[tokio::test]
async fn keycloak_down_is_unavailable() {
    let kc = user_sync::outside::keycloak::KeycloakClient::new(
        "http://127.0.0.1:9",
        "demo",
        common::fast_retries(),
    )
    .unwrap()
    .with_service_client(user_sync::outside::keycloak::ClientCredentials::new(
        "user-sync-admin",
        user_sync::outside::keycloak::ClientSecret::Fixed(
            user_sync::outside::secrets::Secret::new("x"),
        ),
    ));
    assert!(matches!(
        kc.count_users().await.unwrap_err(),
        KeycloakError::Unavailable { .. }
    ));
}

#[tokio::test]
async fn an_expired_service_account_token_is_replaced_without_the_caller_noticing() {
    let r = realm().await;
    let kc = r.client();
    assert_eq!(kc.count_users().await.unwrap(), 3);
    r.clock(301).await; // the cached token is now expired for Keycloak
    let tokens = r
        .fault(json!({"method": "POST", "path": "/realms/{realm}/protocol/openid-connect/token"}))
        .await;
    assert_eq!(kc.count_users().await.unwrap(), 3);
    assert_eq!(r.hits(&tokens).await, 1, "exactly one new token");
}

#[tokio::test]
async fn ten_concurrent_callers_on_a_cold_cache_cause_one_token_request() {
    let r = realm().await;
    let kc = r.client();
    let tokens = r
        .fault(json!({"method": "POST", "path": "/realms/{realm}/protocol/openid-connect/token", "latencyMs": 200}))
        .await;
    let calls: Vec<_> = (0..10)
        .map(|_| {
            let kc = kc.clone();
            tokio::spawn(async move { kc.count_users().await })
        })
        .collect();
    for c in calls {
        assert_eq!(c.await.unwrap().unwrap(), 3);
    }
    assert_eq!(r.hits(&tokens).await, 1);
}

#[tokio::test]
async fn a_rotated_client_secret_is_picked_up_after_one_unauthorized_client() {
    let r = realm().await;
    let id = secret("the-old-secret").await;
    let (kc, cache) = r.client_via_secrets_manager(&id).await;
    assert_eq!(cache.get().await.unwrap().expose(), "the-old-secret"); // cached for 5 minutes
    set_secret(&id, common::SECRET).await; // rotated in Secrets Manager (and Keycloak)
    let tokens = r
        .fault(json!({"method": "POST", "path": "/realms/{realm}/protocol/openid-connect/token"}))
        .await;
    let t = kc
        .password_grant("carol", "carol-dev-password")
        .await
        .unwrap();
    assert!(!t.access_token.is_empty());
    assert_eq!(
        r.hits(&tokens).await,
        2,
        "refused once with the old secret, then accepted"
    );
    assert_eq!(cache.get().await.unwrap().expose(), common::SECRET);
}

#[tokio::test]
async fn a_wrong_secret_that_does_not_rotate_is_invalid_client() {
    let r = realm().await;
    let id = secret("simply-wrong").await;
    let (kc, _) = r.client_via_secrets_manager(&id).await;
    assert_eq!(
        kc.password_grant("carol", "carol-dev-password")
            .await
            .unwrap_err(),
        KeycloakError::InvalidClient
    );
}

#[tokio::test]
async fn a_missing_secret_is_secret_unavailable() {
    let r = realm().await;
    let (kc, _) = r.client_via_secrets_manager("no-such-secret").await;
    assert!(matches!(
        kc.password_grant("carol", "carol-dev-password")
            .await
            .unwrap_err(),
        KeycloakError::SecretUnavailable(_)
    ));
}

#[tokio::test]
async fn no_password_token_or_secret_reaches_the_logs() {
    use std::sync::{Arc, Mutex};
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let r = realm().await;
    let id = secret("the-old-secret").await;
    let (kc, cache) = r.client_via_secrets_manager(&id).await;
    cache.get().await.unwrap();
    set_secret(&id, common::SECRET).await;
    r.fault(json!({"method": "GET", "path": "/admin/realms/{realm}/users/count", "status": 503, "times": 1})).await;
    let t = kc
        .password_grant("carol", "carol-dev-password")
        .await
        .unwrap();
    kc.count_users().await.unwrap();
    let rt = t.refresh_token.clone().unwrap();
    kc.refresh(&rt, None).await.unwrap();
    let _ = kc.password_grant("carol", "wrong-password-xyz").await;
    tracing::info!(tokens = ?t, "a token set logged by mistake stays opaque");

    let logs = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("retrying") && logs.contains("re-read"),
        "the flows did log: {logs}"
    );
    for secret in [
        common::SECRET,
        "the-old-secret",
        "carol-dev-password",
        "wrong-password-xyz",
        &t.access_token,
        &rt,
    ] {
        assert!(!logs.contains(secret), "leaked into logs");
    }
}
