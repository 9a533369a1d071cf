//! The client-secret cache against Secrets Manager in moto.

#![allow(clippy::unwrap_used)]

use crate::common;

use std::time::Duration;

use crate::common::{secret, secretsmanager, set_secret};
use user_sync::outside::secrets::{ClientSecretCache, SecretError};

#[tokio::test]
async fn the_secret_is_cached_for_its_ttl_and_refresh_reads_it_again() {
    let id = secret("first").await;
    let cache = ClientSecretCache::new(secretsmanager(), &id, Duration::from_secs(300));
    let first = cache.get().await.unwrap();
    assert_eq!(first.expose(), "first");
    set_secret(&id, "second").await;
    assert_eq!(
        cache.get().await.unwrap().expose(),
        "first",
        "served from the cache"
    );
    assert_eq!(cache.refresh(&first).await.unwrap().expose(), "second");
    assert_eq!(cache.get().await.unwrap().expose(), "second");
}

#[tokio::test]
async fn an_expired_ttl_reads_the_rotated_value() {
    let id = secret("first").await;
    let cache = ClientSecretCache::new(secretsmanager(), &id, Duration::from_millis(50));
    cache.get().await.unwrap();
    set_secret(&id, "rotated").await;
    tokio::time::sleep(Duration::from_millis(80)).await;
    assert_eq!(cache.get().await.unwrap().expose(), "rotated");
}

#[tokio::test]
async fn a_missing_or_malformed_secret_is_an_error() {
    let cache = ClientSecretCache::new(secretsmanager(), "does-not-exist", Duration::from_secs(1));
    assert!(matches!(
        cache.get().await.unwrap_err(),
        SecretError::Unavailable { .. }
    ));
    let id = common::unique("bad");
    common::create_secret(&id, "not json").await;
    let cache = ClientSecretCache::new(secretsmanager(), &id, Duration::from_secs(1));
    assert!(matches!(
        cache.get().await.unwrap_err(),
        SecretError::Malformed { .. }
    ));
}
