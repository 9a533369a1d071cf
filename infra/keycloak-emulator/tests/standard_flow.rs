//! Contract §9–§12: the authorization endpoint and its login page, the `authorization_code`
//! grant with PKCE, RP-initiated logout, and back-channel logout deliveries.

#![allow(clippy::unwrap_used)] // test crate: a failed unwrap is a failed test

mod common;

use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::{claims, into_resp, new_user, realm_with, Kc, Resp, CLIENT, SECRET};
use reqwest::Method;
use serde_json::{json, Value};

const WEB: &str = "user-sync-web";
const CALLBACK: &str = "http://127.0.0.1:3000/auth/callback";
const VERIFIER: &str = "a-code-verifier-of-the-right-shape-0123456789-abcdefghij";

fn challenge(verifier: &str) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
    URL_SAFE_NO_PAD.encode(d.as_ref())
}

/// The demo realm's clients, each passed through `edit` (a merge patch replaces arrays whole).
fn clients_with(edit: impl Fn(&mut Value)) -> Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../keycloak/realm.json"
    ))
    .unwrap();
    let mut realm: Value = serde_json::from_str(&text).unwrap();
    for c in realm["clients"].as_array_mut().unwrap() {
        edit(c);
    }
    json!({"clients": realm["clients"]})
}

/// A realm whose login clients send back-channel logouts to `url`.
async fn realm_logging_out_to(url: &str) -> Kc {
    realm_with(clients_with(|c| {
        if c["attributes"]["backchannel.logout.url"].is_string() {
            c["attributes"]["backchannel.logout.url"] = json!(url);
        }
    }))
    .await
}

async fn demo() -> Kc {
    realm_with(json!({})).await
}

/// A browser: cookies kept by hand, redirects not followed.
struct Browser {
    http: reqwest::Client,
    cookies: Vec<(String, String)>,
}

impl Browser {
    fn new() -> Self {
        Browser {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookies: Vec::new(),
        }
    }

    fn keep(&mut self, r: &reqwest::Response) {
        for v in r.headers().get_all("set-cookie") {
            let first = v.to_str().unwrap().split(';').next().unwrap();
            let (k, v) = first.split_once('=').unwrap();
            self.cookies.retain(|(n, _)| n != k);
            if !v.is_empty() {
                self.cookies.push((k.to_owned(), v.to_owned()));
            }
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn get(&mut self, url: &str) -> Resp {
        let r = self
            .http
            .get(url)
            .header("cookie", self.cookie_header())
            .send()
            .await
            .unwrap();
        self.keep(&r);
        into_resp(r).await
    }

    async fn post(&mut self, url: &str, form: &[(&str, &str)]) -> Resp {
        let r = self
            .http
            .post(url)
            .header("cookie", self.cookie_header())
            .form(form)
            .send()
            .await
            .unwrap();
        self.keep(&r);
        into_resp(r).await
    }
}

/// The authorization URL for the confidential client with PKCE S256.
fn authorize_url(kc: &Kc, extra: &[(&str, &str)]) -> String {
    let challenge = challenge(VERIFIER);
    let mut pairs = vec![
        ("client_id", CLIENT),
        ("redirect_uri", CALLBACK),
        ("response_type", "code"),
        ("scope", "openid"),
        ("state", "st-1"),
        ("nonce", "n-1"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    for (k, v) in extra {
        pairs.retain(|(n, _)| n != k);
        if !v.is_empty() {
            pairs.push((k, v));
        }
    }
    let query = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish();
    format!("{}?{query}", kc.oidc("auth"))
}

/// The login form's action URL, as a browser reads it from the page.
fn form_action(page: &str, form_id: &str) -> String {
    let form = &page[page.find(&format!("id=\"{form_id}\"")).expect(form_id)..];
    let start = form.find("action=\"").unwrap() + 8;
    let end = start + form[start..].find('"').unwrap();
    form[start..end].replace("&amp;", "&")
}

/// The query (or fragment) parameters of a redirect.
fn redirect_params(r: &Resp, sep: char) -> Vec<(String, String)> {
    let location = r.header("location").expect("a redirect");
    let (_, q) = location.split_once(sep).expect("parameters");
    form_urlencoded::parse(q.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn param(pairs: &[(String, String)], key: &str) -> Option<String> {
    pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
}

/// Sign in on the page; returns the redirect's parameters.
async fn sign_in(kc: &Kc, b: &mut Browser, user: &str, password: &str) -> Vec<(String, String)> {
    let page = b.get(&authorize_url(kc, &[])).await;
    assert_eq!(page.status(), 200, "{}", page.text);
    let action = form_action(&page.text, "kc-form-login");
    let r = b
        .post(&action, &[("username", user), ("password", password)])
        .await;
    assert_eq!(r.status(), 302, "{}", r.text);
    redirect_params(&r, '?')
}

/// The code of a fresh browser's sign-in as `name`.
async fn code_of_a_sign_in(kc: &Kc, name: &str) -> String {
    let got = sign_in(kc, &mut Browser::new(), name, "a-good-password").await;
    param(&got, "code").unwrap()
}

async fn exchange(kc: &Kc, code: &str, verifier: &str, redirect_uri: &str) -> Resp {
    kc.token(&[
        ("grant_type", "authorization_code"),
        ("client_id", CLIENT),
        ("client_secret", SECRET),
        ("code", code),
        ("code_verifier", verifier),
        ("redirect_uri", redirect_uri),
    ])
    .await
}

async fn new_signed_up_user(kc: &Kc) -> (String, String) {
    let name = format!("sf{}", uuid::Uuid::new_v4().simple());
    let id = kc.create_user(new_user(&name)).await;
    (name, id)
}

#[tokio::test]
async fn the_login_page_is_keycloaks_form_and_sets_the_auth_session_cookie() {
    let kc = demo().await;
    let mut b = Browser::new();
    let page = b.get(&authorize_url(&kc, &[])).await;
    assert_eq!(page.status(), 200);
    assert!(page
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    assert!(page.text.contains("Sign in to your account"));
    for needle in [
        "id=\"kc-form-login\"",
        "name=\"username\"",
        "name=\"password\"",
        "id=\"kc-login\"",
    ] {
        assert!(page.text.contains(needle), "{needle}");
    }
    let action = form_action(&page.text, "kc-form-login");
    assert!(action.starts_with(&kc.url("/realms/{realm}/login-actions/authenticate?session_code=")));
    assert!(action.contains("&client_id=user-sync&tab_id="));
    assert!(b.cookies.iter().any(|(k, _)| k == "AUTH_SESSION_ID"));
}

#[tokio::test]
async fn a_sign_in_redirects_with_state_session_state_iss_and_code_in_that_order() {
    let kc = demo().await;
    let (name, _) = new_signed_up_user(&kc).await;
    let mut b = Browser::new();
    let got = sign_in(&kc, &mut b, &name, "a-good-password").await;
    let keys: Vec<&str> = got.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["state", "session_state", "iss", "code"]);
    assert_eq!(param(&got, "state").unwrap(), "st-1");
    assert_eq!(param(&got, "iss").unwrap(), kc.issuer());
    assert!(b.cookies.iter().any(|(k, _)| k == "KEYCLOAK_IDENTITY"));
}

#[tokio::test]
async fn a_code_exchanged_with_its_verifier_gives_tokens_and_an_id_token_with_the_nonce() {
    let kc = demo().await;
    let (name, id) = new_signed_up_user(&kc).await;
    let mut b = Browser::new();
    let got = sign_in(&kc, &mut b, &name, "a-good-password").await;
    let r = exchange(&kc, &param(&got, "code").unwrap(), VERIFIER, CALLBACK).await;
    assert_eq!(r.status(), 200, "{}", r.text);
    let tokens = r.json();
    let id_token = claims(tokens["id_token"].as_str().unwrap());
    assert_eq!(id_token["nonce"], json!("n-1"));
    assert_eq!(id_token["aud"], json!(CLIENT));
    assert_eq!(id_token["sub"], json!(id));
    assert_eq!(
        id_token["sid"],
        json!(param(&got, "session_state").unwrap())
    );
    assert_eq!(id_token["acr"], json!("1"));
    let digest = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        tokens["access_token"].as_str().unwrap().as_bytes(),
    );
    assert_eq!(
        id_token["at_hash"],
        json!(URL_SAFE_NO_PAD.encode(&digest.as_ref()[..16]))
    );
    assert!(tokens["refresh_token"].is_string());
}

#[tokio::test]
async fn an_unregistered_redirect_uri_is_an_error_page_not_a_redirect() {
    let kc = demo().await;
    let mut b = Browser::new();
    let r = b
        .get(&authorize_url(
            &kc,
            &[("redirect_uri", "http://127.0.0.1:3000/auth/callback/evil")],
        ))
        .await;
    assert_eq!(r.status(), 400);
    assert!(r.header("location").is_none());
    assert!(r.text.contains("We are sorry..."));
    assert!(r.text.contains("Invalid parameter: redirect_uri"));
}

#[tokio::test]
async fn an_s256_client_refuses_plain_pkce_with_a_redirect() {
    let kc = demo().await;
    let mut b = Browser::new();
    let r = b
        .get(&authorize_url(
            &kc,
            &[
                ("code_challenge", VERIFIER),
                ("code_challenge_method", "plain"),
            ],
        ))
        .await;
    assert_eq!(r.status(), 302, "{}", r.text);
    let got = redirect_params(&r, '?');
    assert_eq!(param(&got, "error").unwrap(), "invalid_request");
    assert_eq!(
        param(&got, "error_description").unwrap(),
        "Invalid parameter: code challenge method is not matching the configured one"
    );
    assert_eq!(param(&got, "state").unwrap(), "st-1");
}

#[tokio::test]
async fn an_s256_client_refuses_a_request_without_a_challenge() {
    let kc = demo().await;
    let mut b = Browser::new();
    let r = b
        .get(&authorize_url(
            &kc,
            &[("code_challenge", ""), ("code_challenge_method", "")],
        ))
        .await;
    let got = redirect_params(&r, '?');
    assert_eq!(
        param(&got, "error_description").unwrap(),
        "Missing parameter: code_challenge_method"
    );
}

#[tokio::test]
async fn a_wrong_password_shows_the_password_field_error_and_an_unknown_user_the_username_one() {
    let kc = demo().await;
    let (name, _) = new_signed_up_user(&kc).await;
    let mut b = Browser::new();
    let page = b.get(&authorize_url(&kc, &[])).await;
    let action = form_action(&page.text, "kc-form-login");
    let wrong = b
        .post(&action, &[("username", &name), ("password", "not-it")])
        .await;
    assert_eq!(wrong.status(), 200);
    assert!(wrong
        .text
        .contains("id=\"input-error-password\" class=\"kc-feedback-text\" aria-live=\"polite\">Invalid username or password."));
    let action = form_action(&wrong.text, "kc-form-login");
    let unknown = b
        .post(&action, &[("username", "nobody-here"), ("password", "x")])
        .await;
    assert!(unknown.text.contains("id=\"input-error-username\""));
    assert!(unknown.text.contains("Invalid username or password."));
}

#[tokio::test]
async fn a_disabled_user_with_the_right_password_sees_account_is_disabled() {
    let kc = demo().await;
    let (name, id) = new_signed_up_user(&kc).await;
    let r = kc
        .admin(
            Method::PUT,
            &format!("/users/{id}"),
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(r.status(), 204);
    let mut b = Browser::new();
    let page = b.get(&authorize_url(&kc, &[])).await;
    let action = form_action(&page.text, "kc-form-login");
    let r = b
        .post(
            &action,
            &[("username", &name), ("password", "a-good-password")],
        )
        .await;
    assert_eq!(r.status(), 200);
    assert!(r
        .text
        .contains("Account is disabled, contact your administrator."));
    let wrong = b
        .post(
            &form_action(&r.text, "kc-form-login"),
            &[("username", &name), ("password", "wrong")],
        )
        .await;
    assert!(
        wrong.text.contains("Invalid username or password."),
        "the password is checked first"
    );
}

#[tokio::test]
async fn a_post_without_the_auth_session_cookie_is_the_cookie_page() {
    let kc = demo().await;
    let mut b = Browser::new();
    let page = b.get(&authorize_url(&kc, &[])).await;
    let action = form_action(&page.text, "kc-form-login");
    let mut stranger = Browser::new();
    let r = stranger
        .post(&action, &[("username", "alice"), ("password", "x")])
        .await;
    assert_eq!(r.status(), 400);
    assert!(r
        .text
        .contains("Cookie not found. Please make sure cookies are enabled in your browser."));
}

#[tokio::test]
async fn a_reused_code_is_refused_and_revokes_what_the_first_exchange_issued() {
    let kc = demo().await;
    let (name, _) = new_signed_up_user(&kc).await;
    let code = code_of_a_sign_in(&kc, &name).await;
    let first = exchange(&kc, &code, VERIFIER, CALLBACK).await;
    assert_eq!(first.status(), 200);
    let again = exchange(&kc, &code, VERIFIER, CALLBACK).await;
    assert_eq!(
        (again.status(), again.json()),
        (
            400,
            json!({"error": "invalid_grant", "error_description": "Code not valid"})
        )
    );
    let refresh = kc
        .refresh(first.json()["refresh_token"].as_str().unwrap())
        .await;
    assert_eq!(refresh.status(), 400);
    assert_eq!(
        refresh.json()["error_description"],
        json!("Session doesn't have required client")
    );
}

#[tokio::test]
async fn a_wrong_verifier_is_a_code_mismatch_and_burns_the_code() {
    let kc = demo().await;
    let (name, _) = new_signed_up_user(&kc).await;
    let code = code_of_a_sign_in(&kc, &name).await;
    let other = "another-code-verifier-of-the-right-shape-0123456789-abcdef";
    let r = exchange(&kc, &code, other, CALLBACK).await;
    assert_eq!(
        r.json()["error_description"],
        json!("PKCE verification failed: Code mismatch")
    );
    let right = exchange(&kc, &code, VERIFIER, CALLBACK).await;
    assert_eq!(right.json()["error_description"], json!("Code not valid"));
}

#[tokio::test]
async fn an_exchange_with_another_redirect_uri_is_refused() {
    let kc = demo().await;
    let (name, _) = new_signed_up_user(&kc).await;
    let code = code_of_a_sign_in(&kc, &name).await;
    let r = exchange(&kc, &code, VERIFIER, "http://127.0.0.1:3000/elsewhere").await;
    assert_eq!(
        r.json(),
        json!({"error": "invalid_grant", "error_description": "Incorrect redirect_uri"})
    );
}

#[tokio::test]
async fn a_code_past_its_lifespan_is_expired() {
    let kc = demo().await;
    let (name, _) = new_signed_up_user(&kc).await;
    let code = code_of_a_sign_in(&kc, &name).await;
    kc.advance_clock(61).await;
    let r = exchange(&kc, &code, VERIFIER, CALLBACK).await;
    assert_eq!(r.json()["error_description"], json!("Code is expired"));
}

#[tokio::test]
async fn the_sso_cookie_skips_the_page_and_the_id_token_says_acr_0() {
    let kc = demo().await;
    let (name, _) = new_signed_up_user(&kc).await;
    let mut b = Browser::new();
    let first = sign_in(&kc, &mut b, &name, "a-good-password").await;
    let r = b.get(&authorize_url(&kc, &[("state", "st-2")])).await;
    assert_eq!(r.status(), 302, "no page: {}", r.text);
    let got = redirect_params(&r, '?');
    assert_eq!(param(&got, "session_state"), param(&first, "session_state"));
    let tokens = exchange(&kc, &param(&got, "code").unwrap(), VERIFIER, CALLBACK)
        .await
        .json();
    assert_eq!(
        claims(tokens["id_token"].as_str().unwrap())["acr"],
        json!("0")
    );
}

#[tokio::test]
async fn a_temporary_password_leads_through_update_password_to_the_code() {
    let kc = demo().await;
    let (name, id) = new_signed_up_user(&kc).await;
    let r = kc
        .admin(
            Method::PUT,
            &format!("/users/{id}/reset-password"),
            Some(json!({"type": "password", "value": "a-temporary-one", "temporary": true})),
        )
        .await;
    assert_eq!(r.status(), 204);
    let mut b = Browser::new();
    let page = b.get(&authorize_url(&kc, &[])).await;
    let r = b
        .post(
            &form_action(&page.text, "kc-form-login"),
            &[("username", &name), ("password", "a-temporary-one")],
        )
        .await;
    assert_eq!(r.status(), 302);
    let location = r.header("location").unwrap();
    assert!(location.contains("/login-actions/required-action?"));
    assert!(location.contains("execution=UPDATE_PASSWORD"));
    let form = b.get(&location).await;
    let action = form_action(&form.text, "kc-passwd-update-form");
    let mismatch = b
        .post(
            &action,
            &[
                ("password-new", "new-pass-1"),
                ("password-confirm", "new-pass-2"),
            ],
        )
        .await;
    assert!(mismatch.text.contains("Passwords don&#39;t match."));
    let action = form_action(&mismatch.text, "kc-passwd-update-form");
    let done = b
        .post(
            &action,
            &[
                ("password-new", "a-new-good-password"),
                ("password-confirm", "a-new-good-password"),
            ],
        )
        .await;
    assert_eq!(done.status(), 302, "{}", done.text);
    assert!(param(&redirect_params(&done, '?'), "code").is_some());
    assert_eq!(kc.login(&name, "a-new-good-password").await.status(), 200);
}

#[tokio::test]
async fn a_public_client_gets_the_answer_in_the_fragment_and_cors_headers_at_the_token_endpoint() {
    let kc = demo().await;
    let (name, _) = new_signed_up_user(&kc).await;
    let redirect = "http://127.0.0.1:3001/app/";
    let mut b = Browser::new();
    let url = authorize_url(
        &kc,
        &[
            ("client_id", WEB),
            ("redirect_uri", redirect),
            ("response_mode", "fragment"),
        ],
    );
    let page = b.get(&url).await;
    let r = b
        .post(
            &form_action(&page.text, "kc-form-login"),
            &[("username", &name), ("password", "a-good-password")],
        )
        .await;
    let got = redirect_params(&r, '#');
    let resp = kc
        .http
        .post(kc.oidc("token"))
        .header("origin", "http://127.0.0.1:3001")
        .form(&[
            ("grant_type", "authorization_code"),
            ("client_id", WEB),
            ("code", &param(&got, "code").unwrap()),
            ("code_verifier", VERIFIER),
            ("redirect_uri", redirect),
        ])
        .send()
        .await
        .unwrap();
    let resp = into_resp(resp).await;
    assert_eq!(resp.status(), 200, "{}", resp.text);
    assert_eq!(
        resp.header("access-control-allow-origin").as_deref(),
        Some("http://127.0.0.1:3001")
    );
    assert_eq!(
        claims(resp.json()["access_token"].as_str().unwrap())["azp"],
        json!(WEB)
    );
}

#[tokio::test]
async fn end_session_with_an_id_token_hint_ends_the_session_and_redirects_with_state() {
    let kc = demo().await;
    let (name, id) = new_signed_up_user(&kc).await;
    let tokens = kc.tokens(&name, "a-good-password").await;
    let hint = tokens["id_token"].as_str().unwrap();
    let url = format!(
        "{}?{}",
        kc.oidc("logout"),
        form_urlencoded::Serializer::new(String::new())
            .extend_pairs([
                ("id_token_hint", hint),
                ("post_logout_redirect_uri", CALLBACK),
                ("state", "bye"),
            ])
            .finish()
    );
    let r = Browser::new().get(&url).await;
    assert_eq!(r.status(), 302, "{}", r.text);
    assert_eq!(
        r.header("location").unwrap(),
        format!("{CALLBACK}?state=bye")
    );
    assert_eq!(kc.get(&format!("/users/{id}/sessions")).await, json!([]));
}

#[tokio::test]
async fn end_session_refuses_a_post_logout_redirect_the_client_did_not_register() {
    let kc = demo().await;
    let (name, _) = new_signed_up_user(&kc).await;
    let tokens = kc.tokens(&name, "a-good-password").await;
    let url = format!(
        "{}?{}",
        kc.oidc("logout"),
        form_urlencoded::Serializer::new(String::new())
            .extend_pairs([
                ("id_token_hint", tokens["id_token"].as_str().unwrap()),
                ("post_logout_redirect_uri", "http://evil.example/"),
            ])
            .finish()
    );
    let r = Browser::new().get(&url).await;
    assert_eq!(r.status(), 400);
    assert!(r.text.contains("Invalid redirect uri"));
}

// ------------------------------------------------------------------------------------------
// Back-channel logout

/// A receiver of back-channel logouts: the logout tokens it got, and the content types.
async fn receiver() -> (String, Arc<Mutex<Vec<(String, String)>>>) {
    let got: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let store = Arc::clone(&got);
    let app = axum::Router::new().route(
        "/logout",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let store = Arc::clone(&store);
                async move {
                    let token = form_urlencoded::parse(&body)
                        .find(|(k, _)| k == "logout_token")
                        .map(|(_, v)| v.into_owned())
                        .unwrap_or_default();
                    let ct = headers
                        .get("content-type")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned();
                    store.lock().unwrap().push((token, ct));
                    axum::http::StatusCode::OK
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/logout", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, got)
}

fn header_of(jwt: &str) -> Value {
    let part = jwt.split('.').next().unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

#[tokio::test]
async fn a_refresh_token_logout_sends_a_logout_token_before_it_answers() {
    let (url, got) = receiver().await;
    let kc = realm_logging_out_to(&url).await;
    let (name, id) = new_signed_up_user(&kc).await;
    let tokens = kc.tokens(&name, "a-good-password").await;
    let r = kc
        .form(
            "logout",
            &[
                ("client_id", CLIENT),
                ("client_secret", SECRET),
                ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
            ],
        )
        .await;
    assert_eq!(r.status(), 204);
    let got = got.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "one delivery, already made");
    let (token, content_type) = &got[0];
    assert_eq!(
        content_type,
        "application/x-www-form-urlencoded; charset=ISO-8859-1"
    );
    let header = header_of(token);
    assert_eq!(header["typ"], json!("logout+jwt"));
    assert_eq!(header["alg"], json!("RS256"));
    let c = claims(token);
    assert_eq!(c["aud"], json!(CLIENT), "a plain string");
    assert_eq!(c["iss"], json!(kc.issuer()));
    assert_eq!(c["sub"], json!(id));
    assert_eq!(
        c["sid"],
        claims(tokens["access_token"].as_str().unwrap())["sid"]
    );
    assert_eq!(c["typ"], json!("Logout"));
    assert_eq!(
        c["events"],
        json!({"http://schemas.openid.net/event/backchannel-logout": {}})
    );
    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 120);
    assert!(c.get("nonce").is_none() && c.get("azp").is_none());
}

#[tokio::test]
async fn an_admins_session_delete_and_user_logout_send_logout_tokens() {
    let (url, got) = receiver().await;
    let kc = realm_logging_out_to(&url).await;
    let (name, id) = new_signed_up_user(&kc).await;
    let first = kc.tokens(&name, "a-good-password").await;
    let sid = claims(first["access_token"].as_str().unwrap())["sid"].clone();
    let r = kc
        .admin(
            Method::DELETE,
            &format!("/sessions/{}", sid.as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(r.status(), 204);
    assert_eq!(got.lock().unwrap().len(), 1);
    assert_eq!(claims(&got.lock().unwrap()[0].0)["sid"], sid);
    kc.tokens(&name, "a-good-password").await;
    kc.tokens(&name, "a-good-password").await;
    let r = kc
        .admin(Method::POST, &format!("/users/{id}/logout"), None)
        .await;
    assert_eq!(r.status(), 204);
    assert_eq!(got.lock().unwrap().len(), 3, "one per session");
}

#[tokio::test]
async fn logout_all_deleting_or_disabling_a_user_sends_no_logout_token() {
    let (url, got) = receiver().await;
    let kc = realm_logging_out_to(&url).await;
    let (name, id) = new_signed_up_user(&kc).await;
    kc.tokens(&name, "a-good-password").await;
    let r = kc
        .admin(
            Method::PUT,
            &format!("/users/{id}"),
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(r.status(), 204);
    let (other, other_id) = new_signed_up_user(&kc).await;
    kc.tokens(&other, "a-good-password").await;
    let r = kc
        .admin(Method::DELETE, &format!("/users/{other_id}"), None)
        .await;
    assert_eq!(r.status(), 204);
    let (third, _) = new_signed_up_user(&kc).await;
    kc.tokens(&third, "a-good-password").await;
    let r = kc.admin(Method::POST, "/logout-all", None).await;
    assert_eq!(r.status(), 200);
    assert!(got.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_client_without_session_required_sends_tokens_without_sid() {
    let (url, got) = receiver().await;
    let kc = realm_with(clients_with(|c| {
        if c["clientId"] == json!(CLIENT) {
            c["attributes"]["backchannel.logout.url"] = json!(url);
            c["attributes"]
                .as_object_mut()
                .unwrap()
                .remove("backchannel.logout.session.required");
        }
    }))
    .await;
    let (name, id) = new_signed_up_user(&kc).await;
    kc.tokens(&name, "a-good-password").await;
    kc.admin(Method::POST, &format!("/users/{id}/logout"), None)
        .await;
    let c = claims(&got.lock().unwrap()[0].0);
    assert!(c.get("sid").is_none());
    assert_eq!(c["sub"], json!(id));
}

#[tokio::test]
async fn the_control_api_lists_the_logout_tokens_sent_with_the_receivers_status() {
    let (url, _) = receiver().await;
    let kc = realm_logging_out_to(&url).await;
    let (name, id) = new_signed_up_user(&kc).await;
    kc.tokens(&name, "a-good-password").await;
    kc.admin(Method::POST, &format!("/users/{id}/logout"), None)
        .await;
    let sent = kc
        .raw(Method::GET, "/_emulator/backchannel-logouts", None)
        .await
        .json();
    let ours: Vec<&Value> = sent
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["url"] == json!(url))
        .collect();
    assert_eq!(ours.len(), 1);
    assert_eq!(ours[0]["status"], json!(200));
    assert_eq!(
        claims(ours[0]["logoutToken"].as_str().unwrap())["sub"],
        json!(id)
    );
}
