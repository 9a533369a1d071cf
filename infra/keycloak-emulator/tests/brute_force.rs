//! Contract §7.1 and the password-grant table (§1.3): brute-force detection.

#![allow(clippy::unwrap_used)] // test crate: a failed unwrap is a failed test

mod common;

use common::{new_user, realm_with, Kc};
use reqwest::Method;
use serde_json::{json, Value};

/// A realm that locks after 3 failures for 60 s × the number of lockouts (no quick-login check).
async fn protected(extra: Value) -> Kc {
    let mut patch = json!({"bruteForceProtected": true, "failureFactor": 3, "waitIncrementSeconds": 60,
                           "maxFailureWaitSeconds": 900, "quickLoginCheckMilliSeconds": 0});
    for (k, v) in extra.as_object().unwrap() {
        patch[k] = v.clone();
    }
    realm_with(patch).await
}

async fn fail(kc: &Kc, username: &str, times: usize) {
    for _ in 0..times {
        let r = kc.login(username, "wrong-password").await;
        assert_eq!(r.status(), 401, "{}", r.text);
    }
}

fn invalid_user_credentials(r: &common::Resp) {
    assert_eq!(
        (r.status(), r.json()),
        (
            401,
            json!({"error": "invalid_grant", "error_description": "Invalid user credentials"})
        )
    );
}

#[tokio::test]
async fn a_locked_user_gets_the_wrong_password_answer_even_with_the_right_one() {
    let kc = protected(json!({})).await;
    kc.create_user(new_user("dora")).await;
    fail(&kc, "dora", 3).await;
    invalid_user_credentials(&kc.login("dora", "a-good-password").await);
    kc.advance_clock(61).await;
    assert_eq!(
        kc.login("dora", "a-good-password").await.status(),
        200,
        "the lockout expires"
    );
}

#[tokio::test]
async fn get_user_reads_a_locked_user_as_disabled_and_the_status_says_why() {
    let kc = protected(json!({})).await;
    let id = kc.create_user(new_user("eli")).await;
    fail(&kc, "eli", 3).await;
    assert_eq!(
        kc.get(&format!("/users/{id}")).await["enabled"],
        json!(false)
    );
    let listed = kc.get("/users?username=eli&exact=true").await;
    assert_eq!(
        listed[0]["enabled"],
        json!(true),
        "the stored flag is unchanged"
    );
    let status = kc
        .get(&format!("/attack-detection/brute-force/users/{id}"))
        .await;
    assert_eq!(
        (
            &status["numFailures"],
            &status["disabled"],
            &status["numTemporaryLockouts"]
        ),
        (&json!(3), &json!(true), &json!(1))
    );
    assert_ne!(status["lastIPFailure"], "n/a");
}

#[tokio::test]
async fn enabling_or_clearing_ends_the_lockout() {
    let kc = protected(json!({})).await;
    let id = kc.create_user(new_user("fay")).await;
    fail(&kc, "fay", 3).await;
    let r = kc
        .admin(
            Method::PUT,
            &format!("/users/{id}"),
            Some(json!({"enabled": true})),
        )
        .await;
    assert_eq!(r.status(), 204, "{}", r.text);
    assert_eq!(kc.login("fay", "a-good-password").await.status(), 200);
    fail(&kc, "fay", 3).await;
    let r = kc
        .admin(
            Method::DELETE,
            &format!("/attack-detection/brute-force/users/{id}"),
            None,
        )
        .await;
    assert_eq!(r.status(), 204);
    let status = kc
        .get(&format!("/attack-detection/brute-force/users/{id}"))
        .await;
    assert_eq!(
        status,
        json!({"numFailures": 0, "numTemporaryLockouts": 0, "disabled": false,
               "lastIPFailure": "n/a", "lastFailure": 0, "failedLoginNotBefore": 0})
    );
    assert_eq!(kc.login("fay", "a-good-password").await.status(), 200);
}

#[tokio::test]
async fn a_success_resets_the_count() {
    let kc = protected(json!({})).await;
    kc.create_user(new_user("gil")).await;
    fail(&kc, "gil", 2).await;
    assert_eq!(kc.login("gil", "a-good-password").await.status(), 200);
    fail(&kc, "gil", 2).await;
    assert_eq!(
        kc.login("gil", "a-good-password").await.status(),
        200,
        "2 + 2 is not 3 in a row"
    );
}

#[tokio::test]
async fn two_quick_failures_lock_for_the_minimum_wait() {
    let kc = protected(
        json!({"quickLoginCheckMilliSeconds": 60_000, "minimumQuickLoginWaitSeconds": 30}),
    )
    .await;
    kc.create_user(new_user("hal")).await;
    fail(&kc, "hal", 1).await;
    // Quick, but not in the same millisecond (Keycloak ignores a zero delta too).
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    fail(&kc, "hal", 1).await;
    invalid_user_credentials(&kc.login("hal", "a-good-password").await);
    kc.advance_clock(31).await;
    assert_eq!(kc.login("hal", "a-good-password").await.status(), 200);
}

#[tokio::test]
async fn a_permanent_lockout_disables_the_user_and_still_reads_as_a_wrong_password() {
    let kc = protected(json!({"permanentLockout": true})).await;
    let id = kc.create_user(new_user("ivo")).await;
    fail(&kc, "ivo", 3).await;
    invalid_user_credentials(&kc.login("ivo", "a-good-password").await);
    let user = kc.get(&format!("/users/{id}")).await;
    assert_eq!(user["enabled"], json!(false));
    kc.advance_clock(3600).await;
    invalid_user_credentials(&kc.login("ivo", "a-good-password").await);
    let status = kc
        .get(&format!("/attack-detection/brute-force/users/{id}"))
        .await;
    assert_eq!(status["disabled"], json!(false), "not a temporary lockout");
}

#[tokio::test]
async fn without_protection_failures_are_not_counted() {
    let kc = realm_with(json!({"bruteForceProtected": false})).await;
    let id = kc.create_user(new_user("joe")).await;
    fail(&kc, "joe", 40).await;
    assert_eq!(kc.login("joe", "a-good-password").await.status(), 200);
    let status = kc
        .get(&format!("/attack-detection/brute-force/users/{id}"))
        .await;
    assert_eq!(status["numFailures"], json!(0));
}
