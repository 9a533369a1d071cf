//! Contract §1–§3: token endpoint, refresh, logout, introspection, userinfo, JWKS, discovery.

#![allow(clippy::unwrap_used)] // test crate: a failed unwrap is a failed test

mod common;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use common::{claims, new_user, realm, ADMIN_CLIENT, ADMIN_SECRET, CLIENT, SECRET};
use reqwest::Method;
use serde_json::{json, Value};

fn assert_oauth(r: &common::Resp, status: u16, error: &str, description: &str) {
    assert_eq!(r.status(), status, "{}", r.text);
    assert_eq!(
        r.json(),
        json!({"error": error, "error_description": description})
    );
}

#[tokio::test]
async fn discovery_issuer_follows_the_request_base_url() {
    let kc = realm().await;
    let d = kc
        .raw(
            Method::GET,
            "/realms/{realm}/.well-known/openid-configuration",
            None,
        )
        .await
        .json();
    assert_eq!(d["issuer"], json!(kc.issuer()));
    assert_eq!(
        d["token_endpoint"],
        json!(format!("{}/protocol/openid-connect/token", kc.issuer()))
    );
    assert_eq!(
        d["jwks_uri"],
        json!(format!("{}/protocol/openid-connect/certs", kc.issuer()))
    );
}

#[tokio::test]
async fn unknown_realm_is_404_realm_does_not_exist() {
    let kc = realm().await;
    let r = kc
        .raw(
            Method::GET,
            "/realms/nope/.well-known/openid-configuration",
            None,
        )
        .await;
    assert_eq!(r.status(), 404);
    assert_eq!(r.json(), json!({"error": "Realm does not exist"}));
}

#[tokio::test]
async fn public_realm_document_has_the_signing_key() {
    let kc = realm().await;
    let r = kc.raw(Method::GET, "/realms/{realm}", None).await.json();
    assert_eq!(r["realm"], json!(kc.realm));
    assert!(r["public_key"].as_str().is_some_and(|k| k.len() > 300));
    assert_eq!(r["tokens-not-before"], json!(0));
}

#[tokio::test]
async fn password_grant_returns_tokens_signed_by_the_jwks_sig_key() {
    let kc = realm().await;
    let t = kc.tokens("carol", "carol-dev-password").await;
    let access = t["access_token"].as_str().unwrap();
    assert!(access.starts_with("eyJhbGciOiJSUzI1NiIsInR5cCIgOiAiSldUIiwia2lkIiA6IC"));
    let jwks = kc
        .raw(
            Method::GET,
            "/realms/{realm}/protocol/openid-connect/certs",
            None,
        )
        .await
        .json();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    assert!(keys
        .iter()
        .any(|k| k["use"] == "enc" && k["alg"] == "RSA-OAEP"));
    let header: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(access.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    let key = keys
        .iter()
        .find(|k| k["kid"] == header["kid"] && k["use"] == "sig")
        .expect("signing key by kid");
    let n = URL_SAFE_NO_PAD.decode(key["n"].as_str().unwrap()).unwrap();
    let e = URL_SAFE_NO_PAD.decode(key["e"].as_str().unwrap()).unwrap();
    let (input, sig) = access.rsplit_once('.').unwrap();
    let public = aws_lc_rs::signature::RsaPublicKeyComponents { n: &n, e: &e };
    public
        .verify(
            &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256,
            input.as_bytes(),
            &URL_SAFE_NO_PAD.decode(sig).unwrap(),
        )
        .expect("signature verifies against the JWKS");
    assert_eq!(t["token_type"], "Bearer");
    assert_eq!(t["expires_in"], 300);
    assert_eq!(t["refresh_expires_in"], 1800);
    assert_eq!(t["not-before-policy"], 0);
    assert!(t["id_token"].is_string(), "scope=openid gives an id token");
    assert_eq!(t["scope"], "openid email profile");
}

#[tokio::test]
async fn access_token_carries_audience_roles_sid_and_business_attributes() {
    let kc = realm().await;
    let t = kc.tokens("alice", "alice-dev-password").await;
    let c = claims(t["access_token"].as_str().unwrap());
    assert_eq!(c["iss"], json!(kc.issuer()));
    assert_eq!(c["azp"], CLIENT);
    assert!(c["aud"].as_array().unwrap().contains(&json!(CLIENT)));
    assert_eq!(c["sid"], t["session_state"]);
    assert_eq!(c["preferred_username"], "alice");
    let roles = c["realm_access"]["roles"].as_array().unwrap();
    for r in ["admin", "user", "default-roles-demo", "offline_access"] {
        assert!(roles.contains(&json!(r)), "missing {r}");
    }
    assert_eq!(c["organization"], "Acme");
    assert_eq!(c["department"], "Platform");
    assert_eq!(c["title"], "Administrator");
    assert_eq!(c["phone"], "+1 555 0100");
    assert_eq!(
        c["groups"],
        json!(["/engineering"]),
        "group membership mapper, full paths"
    );
    assert!(c.get("session_state").is_none());
}

#[tokio::test]
async fn token_response_is_not_cacheable() {
    let kc = realm().await;
    let r = kc.login("carol", "carol-dev-password").await;
    assert_eq!(r.header("cache-control").as_deref(), Some("no-store"));
    assert_eq!(r.header("pragma").as_deref(), Some("no-cache"));
}

#[tokio::test]
async fn login_by_email_and_in_any_case_works() {
    let kc = realm().await;
    assert_eq!(
        kc.login("CAROL@example.com", "carol-dev-password")
            .await
            .status(),
        200
    );
    assert_eq!(kc.login("Carol", "carol-dev-password").await.status(), 200);
}

#[tokio::test]
async fn wrong_password_is_401_invalid_user_credentials() {
    let kc = realm().await;
    let r = kc.login("carol", "nope-nope").await;
    assert_oauth(&r, 401, "invalid_grant", "Invalid user credentials");
}

#[tokio::test]
async fn unknown_user_is_401_with_the_same_text_as_a_wrong_password() {
    let kc = realm().await;
    let r = kc.login("nobody", "whatever1").await;
    assert_oauth(&r, 401, "invalid_grant", "Invalid user credentials");
}

#[tokio::test]
async fn missing_username_is_401_invalid_request() {
    let kc = realm().await;
    let r = kc
        .token(&[
            ("grant_type", "password"),
            ("client_id", CLIENT),
            ("client_secret", SECRET),
            ("password", "x"),
        ])
        .await;
    assert_oauth(&r, 401, "invalid_request", "Missing parameter: username");
}

#[tokio::test]
async fn disabled_user_is_400_account_disabled() {
    let kc = realm().await;
    let id = kc.user_id("carol").await;
    let mut rep = kc.get(&format!("/users/{id}")).await;
    rep["enabled"] = json!(false);
    assert_eq!(
        kc.admin(Method::PUT, &format!("/users/{id}"), Some(rep))
            .await
            .status(),
        204
    );
    let r = kc.login("carol", "carol-dev-password").await;
    assert_oauth(&r, 400, "invalid_grant", "Account disabled");
}

#[tokio::test]
async fn temporary_password_makes_the_account_not_fully_set_up() {
    let kc = realm().await;
    let id = kc.user_id("carol").await;
    let r = kc
        .admin(
            Method::PUT,
            &format!("/users/{id}/reset-password"),
            Some(json!({"type": "password", "value": "temporary-pass", "temporary": true})),
        )
        .await;
    assert_eq!(r.status(), 204);
    let r = kc.login("carol", "temporary-pass").await;
    assert_oauth(&r, 400, "invalid_grant", "Account is not fully set up");
}

#[tokio::test]
async fn user_without_names_is_not_fully_set_up_because_of_verify_profile() {
    let kc = realm().await;
    kc.create_user(json!({
        "username": "nameless", "email": "nameless@example.org", "enabled": true,
        "credentials": [{"type": "password", "value": "a-good-password"}],
    }))
    .await;
    let r = kc.login("nameless", "a-good-password").await;
    assert_oauth(&r, 400, "invalid_grant", "Account is not fully set up");
}

#[tokio::test]
async fn missing_grant_type_and_unknown_grant_type_are_rejected_before_client_auth() {
    let kc = realm().await;
    let r = kc.token(&[("client_id", "nope")]).await;
    assert_oauth(
        &r,
        400,
        "invalid_request",
        "Missing form parameter: grant_type",
    );
    let r = kc
        .token(&[("grant_type", "magic"), ("client_id", "nope")])
        .await;
    assert_oauth(&r, 400, "unsupported_grant_type", "Unsupported grant_type");
}

#[tokio::test]
async fn client_authentication_errors_follow_keycloaks_table() {
    let kc = realm().await;
    let invalid = "Invalid client or Invalid client credentials";
    let r = kc.token(&[("grant_type", "client_credentials")]).await;
    assert_oauth(&r, 400, "invalid_client", "Missing client_id parameter");
    let r = kc
        .token(&[
            ("grant_type", "client_credentials"),
            ("client_id", "ghost"),
            ("client_secret", "x"),
        ])
        .await;
    assert_oauth(&r, 401, "invalid_client", invalid);
    let r = kc
        .token(&[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT),
            ("client_secret", "wrong"),
        ])
        .await;
    assert_oauth(&r, 401, "unauthorized_client", invalid);
    let r = kc
        .token(&[("grant_type", "client_credentials"), ("client_id", CLIENT)])
        .await;
    assert_oauth(&r, 401, "unauthorized_client", invalid);
}

#[tokio::test]
async fn http_basic_client_auth_is_url_decoded() {
    let kc = realm().await;
    let basic = STANDARD.encode(format!("{ADMIN_CLIENT}:{ADMIN_SECRET}"));
    let r = kc
        .http
        .post(kc.oidc("token"))
        .header("authorization", format!("Basic {basic}"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let wrong = STANDARD.encode(format!("{ADMIN_CLIENT}:{}", ADMIN_SECRET.replace('-', "+")));
    let r = kc
        .http
        .post(kc.oidc("token"))
        .header("authorization", format!("Basic {wrong}"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        401,
        "a raw + decodes to a space, so the secret no longer matches"
    );
}

#[tokio::test]
async fn duplicated_form_parameter_is_400() {
    let kc = realm().await;
    let r = kc
        .token(&[
            ("grant_type", "password"),
            ("client_id", CLIENT),
            ("client_secret", SECRET),
            ("username", "carol"),
            ("username", "bob"),
            ("password", "carol-dev-password"),
        ])
        .await;
    assert_oauth(&r, 400, "invalid_request", "duplicated parameter");
}

#[tokio::test]
async fn client_credentials_token_is_transient_and_carries_admin_roles() {
    let kc = realm().await;
    let r = kc
        .token(&[
            ("grant_type", "client_credentials"),
            ("client_id", ADMIN_CLIENT),
            ("client_secret", ADMIN_SECRET),
        ])
        .await
        .json();
    assert!(r.get("refresh_token").is_none());
    assert!(r.get("session_state").is_none());
    assert_eq!(r["refresh_expires_in"], 0);
    let c = claims(r["access_token"].as_str().unwrap());
    assert!(c.get("sid").is_none());
    assert_eq!(c["preferred_username"], "service-account-user-sync-admin");
    assert_eq!(c["client_id"], ADMIN_CLIENT);
    let admin_roles = c["resource_access"]["realm-management"]["roles"]
        .as_array()
        .unwrap();
    for role in [
        "manage-users",
        "view-users",
        "view-events",
        "query-groups",
        "query-users",
    ] {
        assert!(admin_roles.contains(&json!(role)), "missing {role}");
    }
}

#[tokio::test]
async fn refresh_rotates_tokens_and_keeps_the_session() {
    let kc = realm().await;
    let t = kc.tokens("carol", "carol-dev-password").await;
    let r = kc.refresh(t["refresh_token"].as_str().unwrap()).await;
    assert_eq!(r.status(), 200, "{}", r.text);
    let n = r.json();
    assert_ne!(n["refresh_token"], t["refresh_token"]);
    assert_eq!(n["session_state"], t["session_state"]);
    assert_eq!(n["scope"], "openid email profile");
}

#[tokio::test]
async fn refresh_after_logout_is_session_not_active() {
    let kc = realm().await;
    let t = kc.tokens("carol", "carol-dev-password").await;
    let rt = t["refresh_token"].as_str().unwrap();
    let r = kc
        .form(
            "logout",
            &[
                ("client_id", CLIENT),
                ("client_secret", SECRET),
                ("refresh_token", rt),
            ],
        )
        .await;
    assert_eq!(r.status(), 204);
    assert!(r.text.is_empty());
    assert_oauth(
        &kc.refresh(rt).await,
        400,
        "invalid_grant",
        "Session not active",
    );
}

#[tokio::test]
async fn logout_twice_is_204_both_times() {
    let kc = realm().await;
    let t = kc.tokens("carol", "carol-dev-password").await;
    let rt = t["refresh_token"].as_str().unwrap();
    for _ in 0..2 {
        let r = kc
            .form(
                "logout",
                &[
                    ("client_id", CLIENT),
                    ("client_secret", SECRET),
                    ("refresh_token", rt),
                ],
            )
            .await;
        assert_eq!(r.status(), 204);
    }
}

#[tokio::test]
async fn logout_without_refresh_token_answers_the_html_logout_page() {
    let kc = realm().await;
    let r = kc
        .form(
            "logout",
            &[("client_id", CLIENT), ("client_secret", SECRET)],
        )
        .await;
    assert_eq!(r.status(), 200);
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
}

#[tokio::test]
async fn logout_accepts_an_expired_refresh_token() {
    let kc = realm().await;
    let t = kc.tokens("carol", "carol-dev-password").await;
    kc.advance_clock(4000).await;
    let r = kc
        .form(
            "logout",
            &[
                ("client_id", CLIENT),
                ("client_secret", SECRET),
                ("refresh_token", t["refresh_token"].as_str().unwrap()),
            ],
        )
        .await;
    assert_eq!(r.status(), 204);
}

#[tokio::test]
async fn expired_refresh_token_is_token_not_active() {
    let kc = realm().await;
    let t = kc.tokens("carol", "carol-dev-password").await;
    kc.advance_clock(1801).await;
    let r = kc.refresh(t["refresh_token"].as_str().unwrap()).await;
    assert_oauth(&r, 400, "invalid_grant", "Token is not active");
}

#[tokio::test]
async fn refreshing_extends_the_idle_window_past_the_first_timeout() {
    let kc = realm().await;
    let t = kc.tokens("carol", "carol-dev-password").await;
    kc.advance_clock(1000).await;
    let n = kc
        .refresh(t["refresh_token"].as_str().unwrap())
        .await
        .json();
    kc.advance_clock(2700).await;
    assert_eq!(
        kc.refresh(n["refresh_token"].as_str().unwrap())
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn session_past_its_max_lifespan_is_not_active() {
    let kc = realm().await;
    let t = kc.tokens("carol", "carol-dev-password").await;
    let mut rt = t["refresh_token"].as_str().unwrap().to_owned();
    for step in 1..=25 {
        kc.advance_clock(step * 1700).await;
        let r = kc.refresh(&rt).await;
        if r.status() != 200 {
            assert!(
                step * 1700 > 36000,
                "refresh failed early at {}s",
                step * 1700
            );
            assert_oauth(&r, 400, "invalid_grant", "Token is not active");
            return;
        }
        rt = r.json()["refresh_token"].as_str().unwrap().to_owned();
    }
    panic!("session outlived ssoSessionMaxLifespan");
}

#[tokio::test]
async fn refresh_token_of_another_issuer_is_rejected() {
    let kc = realm().await;
    let t = kc.tokens("carol", "carol-dev-password").await;
    let other = reqwest::Client::new()
        .post(kc.oidc("token").replace("127.0.0.1", "localhost"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("client_id", CLIENT),
            ("client_secret", SECRET),
            ("refresh_token", t["refresh_token"].as_str().unwrap()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 400);
    let body: Value = other.json().await.unwrap();
    assert_eq!(body["error"], "invalid_grant");
    assert!(body["error_description"]
        .as_str()
        .unwrap()
        .starts_with("Invalid token issuer. Expected 'http://localhost:"));
}

#[tokio::test]
async fn garbage_refresh_token_is_invalid_refresh_token() {
    let kc = realm().await;
    assert_oauth(
        &kc.refresh("not-a-jwt").await,
        400,
        "invalid_grant",
        "Invalid refresh token",
    );
    let r = kc
        .token(&[
            ("grant_type", "refresh_token"),
            ("client_id", CLIENT),
            ("client_secret", SECRET),
        ])
        .await;
    assert_oauth(&r, 400, "invalid_request", "No refresh token");
}

#[tokio::test]
async fn deleting_the_user_ends_their_sessions() {
    let kc = realm().await;
    let t = kc.tokens("carol", "carol-dev-password").await;
    let id = kc.user_id("carol").await;
    assert_eq!(
        kc.admin(Method::DELETE, &format!("/users/{id}"), None)
            .await
            .status(),
        204
    );
    let r = kc.refresh(t["refresh_token"].as_str().unwrap()).await;
    assert_oauth(&r, 400, "invalid_grant", "Session not active");
}

#[tokio::test]
async fn admin_logout_of_a_user_makes_old_tokens_stale_and_ends_sessions() {
    let kc = realm().await;
    let t = kc.tokens("carol", "carol-dev-password").await;
    let id = kc.user_id("carol").await;
    assert_eq!(
        kc.admin(Method::POST, &format!("/users/{id}/logout"), None)
            .await
            .status(),
        204
    );
    let r = kc.refresh(t["refresh_token"].as_str().unwrap()).await;
    assert_oauth(&r, 400, "invalid_grant", "Session not active");
    let intro = kc
        .form(
            "token/introspect",
            &[
                ("client_id", CLIENT),
                ("client_secret", SECRET),
                ("token", t["access_token"].as_str().unwrap()),
            ],
        )
        .await;
    assert_eq!(intro.json(), json!({"active": false}));
}

#[tokio::test]
async fn introspection_of_a_live_token_is_active_with_username_and_client() {
    let kc = realm().await;
    let t = kc.tokens("carol", "carol-dev-password").await;
    let r = kc
        .form(
            "token/introspect",
            &[
                ("client_id", CLIENT),
                ("client_secret", SECRET),
                ("token", t["access_token"].as_str().unwrap()),
            ],
        )
        .await
        .json();
    assert_eq!(r["active"], true);
    assert_eq!(r["username"], "carol");
    assert_eq!(r["client_id"], CLIENT);
    assert_eq!(r["token_type"], "Bearer");
}

#[tokio::test]
async fn introspection_of_expired_or_forged_tokens_is_inactive() {
    let kc = realm().await;
    let t = kc.tokens("carol", "carol-dev-password").await;
    let access = t["access_token"].as_str().unwrap().to_owned();
    let forged = format!("{}AAAA", &access[..access.len() - 4]);
    for token in [forged.as_str(), "garbage"] {
        let r = kc
            .form(
                "token/introspect",
                &[
                    ("client_id", CLIENT),
                    ("client_secret", SECRET),
                    ("token", token),
                ],
            )
            .await;
        assert_eq!(r.json(), json!({"active": false}));
    }
    kc.advance_clock(301).await;
    let r = kc
        .form(
            "token/introspect",
            &[
                ("client_id", CLIENT),
                ("client_secret", SECRET),
                ("token", &access),
            ],
        )
        .await;
    assert_eq!(r.json(), json!({"active": false}));
}

#[tokio::test]
async fn introspection_errors_use_their_own_wording() {
    let kc = realm().await;
    let r = kc
        .form(
            "token/introspect",
            &[
                ("client_id", CLIENT),
                ("client_secret", "wrong"),
                ("token", "x"),
            ],
        )
        .await;
    assert_oauth(&r, 401, "invalid_request", "Authentication failed.");
    let r = kc
        .form(
            "token/introspect",
            &[("client_id", CLIENT), ("client_secret", SECRET)],
        )
        .await;
    assert_oauth(&r, 400, "invalid_request", "Token not provided.");
    let r = kc
        .form(
            "token/introspect",
            &[
                ("client_id", CLIENT),
                ("client_secret", SECRET),
                ("token", "x"),
                ("token_type_hint", "id_token"),
            ],
        )
        .await;
    assert_oauth(
        &r,
        400,
        "invalid_request",
        "Unsupported token type [id_token].",
    );
}

#[tokio::test]
async fn userinfo_needs_the_openid_scope() {
    let kc = realm().await;
    let with = kc.tokens("carol", "carol-dev-password").await;
    let r = kc
        .http
        .get(kc.oidc("userinfo"))
        .bearer_auth(with["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap()["preferred_username"],
        "carol"
    );
    let without = kc
        .token(&[
            ("grant_type", "password"),
            ("client_id", CLIENT),
            ("client_secret", SECRET),
            ("username", "carol"),
            ("password", "carol-dev-password"),
        ])
        .await
        .json();
    let r = kc
        .http
        .get(kc.oidc("userinfo"))
        .bearer_auth(without["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let h = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(
        h.contains("insufficient_scope") && h.contains("Missing openid scope"),
        "{h}"
    );
    assert!(r.text().await.unwrap().is_empty());
}

#[tokio::test]
async fn userinfo_without_a_token_is_401_with_an_empty_body() {
    let kc = realm().await;
    let r = kc.http.get(kc.oidc("userinfo")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.headers()["www-authenticate"].to_str().unwrap(),
        format!("Bearer realm=\"{}\"", kc.realm)
    );
}

#[tokio::test]
async fn password_grant_is_refused_for_a_client_without_direct_grants() {
    let kc = realm().await;
    let r = kc
        .token(&[
            ("grant_type", "password"),
            ("client_id", "account"),
            ("username", "carol"),
            ("password", "carol-dev-password"),
        ])
        .await;
    assert_oauth(
        &r,
        400,
        "unauthorized_client",
        "Client not allowed for direct access grants",
    );
}

#[tokio::test]
async fn newly_created_user_can_log_in() {
    let kc = realm().await;
    kc.create_user(new_user("dave")).await;
    assert_eq!(kc.login("dave", "a-good-password").await.status(), 200);
}

#[tokio::test]
async fn the_login_client_has_no_service_account() {
    let kc = realm().await;
    let r = kc
        .token(&[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT),
            ("client_secret", SECRET),
        ])
        .await;
    assert_oauth(
        &r,
        401,
        "unauthorized_client",
        "Client not enabled to retrieve service account",
    );
}

#[tokio::test]
async fn the_service_client_makes_no_user_grants() {
    let kc = realm().await;
    let r = kc
        .token(&[
            ("grant_type", "password"),
            ("client_id", ADMIN_CLIENT),
            ("client_secret", ADMIN_SECRET),
            ("username", "carol"),
            ("password", "carol-dev-password"),
        ])
        .await;
    assert_oauth(
        &r,
        400,
        "unauthorized_client",
        "Client not allowed for direct access grants",
    );
}
