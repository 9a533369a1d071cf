//! Bearer validation against real tokens from the Keycloak emulator, and forged ones.

#![allow(clippy::unwrap_used)]

use crate::common;

use std::sync::Arc;

use crate::common::realm;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::RsaKeyPair;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};
use user_sync::outside::auth::{AuthError, BearerValidator};
use user_sync::Config;

fn config(realm: &str, audience: &str) -> Config {
    Config::from_lookup(|k| {
        Some(
            match k {
                "KEYCLOAK_URL" => common::emulator(),
                "KEYCLOAK_REALM" => realm,
                "KEYCLOAK_CLIENT_ID" => "user-sync",
                "KEYCLOAK_SECRET_ID" => "unused",
                "TABLE_NAME" => "unused",
                "JWT_AUDIENCE" => audience,
                _ => return None,
            }
            .to_owned(),
        )
    })
    .unwrap()
}

async fn setup(
    audience: &str,
) -> (
    common::Realm,
    Arc<user_sync::outside::keycloak::KeycloakClient>,
    BearerValidator,
) {
    let r = realm().await;
    let kc = r.client();
    let v = BearerValidator::new(Arc::clone(&kc), &config(&r.name, audience));
    (r, kc, v)
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

fn parts(token: &str) -> (Value, Value) {
    let mut it = token.split('.');
    let h = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(it.next().unwrap()).unwrap()).unwrap();
    let c = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(it.next().unwrap()).unwrap()).unwrap();
    (h, c)
}

#[tokio::test]
async fn a_real_access_token_gives_the_principal_with_roles() {
    let (_r, kc, v) = setup("user-sync").await;
    let t = kc
        .password_grant("alice", "alice-dev-password")
        .await
        .unwrap();
    let p = v
        .authenticate(Some(&format!("Bearer {}", t.access_token)))
        .await
        .unwrap();
    assert_eq!(p.username, "alice");
    assert!(p.has_realm_role("admin"));
    assert_eq!(p.session_id, t.session_state);
    let carol = kc
        .password_grant("carol", "carol-dev-password")
        .await
        .unwrap();
    let c = v.validate(&carol.access_token).await.unwrap();
    assert!(!c.has_realm_role("admin") && !c.has_realm_role("manager"));
}

#[tokio::test]
async fn a_missing_or_non_bearer_header_is_refused() {
    let (_r, _kc, v) = setup("user-sync").await;
    assert_eq!(v.authenticate(None).await.unwrap_err(), AuthError::Missing);
    assert_eq!(
        v.authenticate(Some("Basic abc")).await.unwrap_err(),
        AuthError::Missing
    );
}

#[tokio::test]
async fn alg_none_is_refused() {
    let (_r, kc, v) = setup("user-sync").await;
    let t = kc
        .password_grant("carol", "carol-dev-password")
        .await
        .unwrap();
    let (_, claims) = parts(&t.access_token);
    let forged = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&claims)
    );
    assert!(v.validate(&forged).await.is_err());
}

#[tokio::test]
async fn hs256_signed_with_the_public_key_is_refused() {
    let (_r, kc, v) = setup("user-sync").await;
    let t = kc
        .password_grant("carol", "carol-dev-password")
        .await
        .unwrap();
    let (header, claims) = parts(&t.access_token);
    let input = format!(
        "{}.{}",
        b64(&json!({"alg": "HS256", "typ": "JWT", "kid": header["kid"]})),
        b64(&claims)
    );
    let key = aws_lc_rs::hmac::Key::new(
        aws_lc_rs::hmac::HMAC_SHA256,
        header["kid"].as_str().unwrap().as_bytes(),
    );
    let sig = aws_lc_rs::hmac::sign(&key, input.as_bytes());
    let forged = format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()));
    assert!(matches!(
        v.validate(&forged).await.unwrap_err(),
        AuthError::Algorithm(_)
    ));
}

#[tokio::test]
async fn a_token_signed_by_a_foreign_key_is_refused() {
    let (_r, kc, v) = setup("user-sync").await;
    let t = kc
        .password_grant("carol", "carol-dev-password")
        .await
        .unwrap();
    let (header, claims) = parts(&t.access_token);
    let foreign = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    let input = format!(
        "{}.{}",
        b64(&json!({"alg": "RS256", "typ": "JWT", "kid": header["kid"]})),
        b64(&claims)
    );
    let mut sig = vec![0; foreign.public_modulus_len()];
    foreign
        .sign(
            &aws_lc_rs::signature::RSA_PKCS1_SHA256,
            &SystemRandom::new(),
            input.as_bytes(),
            &mut sig,
        )
        .unwrap();
    let forged = format!("{input}.{}", URL_SAFE_NO_PAD.encode(&sig));
    assert!(matches!(
        v.validate(&forged).await.unwrap_err(),
        AuthError::Invalid(_)
    ));
}

#[tokio::test]
async fn a_token_of_another_realm_has_the_wrong_issuer() {
    let (_r, _kc, v) = setup("user-sync").await;
    let other = realm().await;
    let t = other
        .client()
        .password_grant("carol", "carol-dev-password")
        .await
        .unwrap();
    assert!(matches!(
        v.validate(&t.access_token).await.unwrap_err(),
        AuthError::Invalid(_)
    ));
}

#[tokio::test]
async fn a_token_for_another_audience_is_refused() {
    let (_r, kc, v) = setup("some-other-api").await;
    let t = kc
        .password_grant("carol", "carol-dev-password")
        .await
        .unwrap();
    assert_eq!(
        v.validate(&t.access_token).await.unwrap_err(),
        AuthError::Audience
    );
}

#[tokio::test]
async fn an_expired_token_is_refused() {
    let (r, kc, v) = setup("user-sync").await;
    r.clock(-400).await; // Keycloak's clock is behind: its token expired 100 s ago for us
    let t = kc
        .password_grant("carol", "carol-dev-password")
        .await
        .unwrap();
    assert!(matches!(
        v.validate(&t.access_token).await.unwrap_err(),
        AuthError::Invalid(_)
    ));
}

#[tokio::test]
async fn a_refresh_or_id_token_is_not_an_access_token() {
    let (_r, kc, v) = setup("user-sync").await;
    let t = kc
        .password_grant("carol", "carol-dev-password")
        .await
        .unwrap();
    // The refresh token is HS512: refused before any key lookup.
    assert!(v
        .validate(t.refresh_token.as_deref().unwrap())
        .await
        .is_err());
}

#[tokio::test]
async fn an_unknown_kid_refetches_the_jwks_at_most_once_per_interval() {
    let (r, kc, v) = setup("user-sync").await;
    let certs = r
        .fault(json!({"method": "GET", "path": "/realms/{realm}/protocol/openid-connect/certs"}))
        .await;
    let t = kc
        .password_grant("carol", "carol-dev-password")
        .await
        .unwrap();
    v.validate(&t.access_token).await.unwrap();
    let (mut header, claims) = parts(&t.access_token);
    header["kid"] = json!("rotated-key-we-never-saw");
    let sig = t.access_token.rsplit('.').next().unwrap();
    let unknown = format!("{}.{}.{sig}", b64(&header), b64(&claims));
    for _ in 0..5 {
        assert_eq!(
            v.validate(&unknown).await.unwrap_err(),
            AuthError::UnknownKey
        );
    }
    assert_eq!(
        r.hits(&certs).await,
        1,
        "one fetch at first use; unknown kids within 30 s do not refetch"
    );
}

#[tokio::test]
async fn a_keycloak_outage_is_not_multiplied_by_the_requests_during_it() {
    let (r, kc, v) = setup("user-sync").await;
    let t = kc
        .password_grant("carol", "carol-dev-password")
        .await
        .unwrap();
    let failing = r
        .fault(json!({"method": "GET", "path": "/realms/{realm}/protocol/openid-connect/certs", "status": 503}))
        .await;
    // A cold instance during the outage: every request needs the keys, one fetch is tried.
    for _ in 0..20 {
        assert!(matches!(
            v.validate(&t.access_token).await.unwrap_err(),
            AuthError::KeysUnavailable(_)
        ));
    }
    let fetches = r.hits(&failing).await;
    assert!(
        fetches <= 4,
        "one fetch (with its retries) for 20 requests, not 20: {fetches}"
    );
}

#[tokio::test]
async fn the_last_good_keys_keep_working_while_keycloak_is_down() {
    let (r, kc, v) = setup("user-sync").await;
    let t = kc
        .password_grant("carol", "carol-dev-password")
        .await
        .unwrap();
    v.validate(&t.access_token).await.unwrap();
    r.fault(json!({"path": "/realms/{realm}/*", "status": 503}))
        .await;
    assert_eq!(v.validate(&t.access_token).await.unwrap().username, "carol");
}
