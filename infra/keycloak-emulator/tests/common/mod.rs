//! Test harness: one emulator per test binary, served over real HTTP on a free loopback port,
//! and a fresh clone of the demo realm per test so tests never share state.

#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

pub const CLIENT: &str = "user-sync";
pub const SECRET: &str = "dev-only-user-sync-secret-not-for-production";
/// The service client: its service account holds the realm-management roles.
pub const ADMIN_CLIENT: &str = "user-sync-admin";
pub const ADMIN_SECRET: &str = "dev-only-user-sync-admin-secret-not-for-production";

fn server() -> &'static str {
    static BASE: OnceLock<String> = OnceLock::new();
    BASE.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let realm = concat!(env!("CARGO_MANIFEST_DIR"), "/../keycloak/realm.json");
                let emu = keycloak_emulator::Emulator::from_file(realm).expect("realm loads");
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind");
                tx.send(listener.local_addr().expect("addr").port())
                    .expect("send");
                keycloak_emulator::serve(listener, emu, std::future::pending())
                    .await
                    .expect("serve");
            });
        });
        format!("http://127.0.0.1:{}", rx.recv().expect("server port"))
    })
}

pub struct Kc {
    pub base: String,
    pub realm: String,
    pub http: reqwest::Client,
}

pub struct Resp {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.text))
    }
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }
    pub fn status(&self) -> u16 {
        self.status.as_u16()
    }
}

pub async fn into_resp(r: reqwest::Response) -> Resp {
    Resp {
        status: r.status(),
        headers: r.headers().clone(),
        text: r.text().await.expect("body"),
    }
}

/// A fresh realm cloned from the demo realm, with a name unique to this test.
pub async fn realm() -> Kc {
    realm_with(json!({})).await
}

/// Like `realm`, with a JSON merge patch applied to the demo realm export first.
pub async fn realm_with(patch: Value) -> Kc {
    static N: AtomicUsize = AtomicUsize::new(0);
    let name = format!(
        "t{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    );
    let kc = Kc {
        base: server().to_owned(),
        realm: name.clone(),
        http: reqwest::Client::new(),
    };
    let r = kc
        .raw(
            Method::POST,
            "/_emulator/realms",
            Some(json!({"name": name, "from": "demo", "patch": patch})),
        )
        .await;
    assert_eq!(r.status(), 201, "{}", r.text);
    kc
}

impl Kc {
    /// `path` may contain `{realm}`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path.replace("{realm}", &self.realm))
    }

    pub fn oidc(&self, endpoint: &str) -> String {
        self.url(&format!(
            "/realms/{{realm}}/protocol/openid-connect/{endpoint}"
        ))
    }

    pub fn issuer(&self) -> String {
        self.url("/realms/{realm}")
    }

    pub async fn raw(&self, method: Method, path: &str, body: Option<Value>) -> Resp {
        let mut req = self.http.request(method, self.url(path));
        if let Some(b) = body {
            req = req.json(&b);
        }
        into_resp(req.send().await.expect("request")).await
    }

    pub async fn form(&self, endpoint: &str, form: &[(&str, &str)]) -> Resp {
        into_resp(
            self.http
                .post(self.oidc(endpoint))
                .form(form)
                .send()
                .await
                .expect("request"),
        )
        .await
    }

    pub async fn token(&self, form: &[(&str, &str)]) -> Resp {
        self.form("token", form).await
    }

    pub async fn login(&self, username: &str, password: &str) -> Resp {
        self.token(&[
            ("grant_type", "password"),
            ("client_id", CLIENT),
            ("client_secret", SECRET),
            ("username", username),
            ("password", password),
            ("scope", "openid"),
        ])
        .await
    }

    /// A successful password grant's token response.
    pub async fn tokens(&self, username: &str, password: &str) -> Value {
        let r = self.login(username, password).await;
        assert_eq!(r.status(), 200, "{}", r.text);
        r.json()
    }

    pub async fn refresh(&self, refresh_token: &str) -> Resp {
        self.token(&[
            ("grant_type", "refresh_token"),
            ("client_id", CLIENT),
            ("client_secret", SECRET),
            ("refresh_token", refresh_token),
        ])
        .await
    }

    pub async fn service_token(&self) -> String {
        let r = self
            .token(&[
                ("grant_type", "client_credentials"),
                ("client_id", ADMIN_CLIENT),
                ("client_secret", ADMIN_SECRET),
            ])
            .await;
        assert_eq!(r.status(), 200, "{}", r.text);
        r.json()["access_token"]
            .as_str()
            .expect("access token")
            .to_owned()
    }

    /// An admin API call as the service client's service account.
    pub async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> Resp {
        let token = self.service_token().await;
        self.admin_as(&token, method, path, body).await
    }

    pub async fn admin_as(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Resp {
        let url = self.url(&format!("/admin/realms/{{realm}}{path}"));
        let mut req = self.http.request(method, url).bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        into_resp(req.send().await.expect("request")).await
    }

    pub async fn get(&self, path: &str) -> Value {
        let r = self.admin(Method::GET, path, None).await;
        assert_eq!(r.status(), 200, "GET {path}: {}", r.text);
        r.json()
    }

    /// Create a user through the admin API; returns its id (from `Location`).
    pub async fn create_user(&self, rep: Value) -> String {
        let r = self.admin(Method::POST, "/users", Some(rep)).await;
        assert_eq!(r.status(), 201, "{}", r.text);
        let location = r.header("location").expect("Location header");
        location.rsplit('/').next().expect("id").to_owned()
    }

    pub async fn user_id(&self, username: &str) -> String {
        let found = self
            .get(&format!("/users?username={username}&exact=true"))
            .await;
        found[0]["id"].as_str().expect("user id").to_owned()
    }

    pub async fn fault(&self, rule: Value) {
        let r = self
            .raw(Method::POST, "/_emulator/faults", Some(rule))
            .await;
        assert_eq!(r.status(), 201, "{}", r.text);
    }

    pub async fn advance_clock(&self, seconds: i64) {
        let r = self
            .raw(
                Method::PUT,
                "/_emulator/realms/{realm}/clock",
                Some(json!({"offsetSeconds": seconds})),
            )
            .await;
        assert_eq!(r.status(), 204, "{}", r.text);
    }
}

/// The claims of a JWT, without checking anything.
pub fn claims(jwt: &str) -> Value {
    use base64::Engine;
    let part = jwt.split('.').nth(1).expect("JWT payload");
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .expect("base64url");
    serde_json::from_slice(&raw).expect("claims JSON")
}

/// A valid new-user body with a password, enabled, with the names and email login needs.
pub fn new_user(username: &str) -> Value {
    json!({
        "username": username, "email": format!("{username}@example.org"), "enabled": true,
        "firstName": "New", "lastName": "User",
        "credentials": [{"type": "password", "value": "a-good-password", "temporary": false}],
    })
}
