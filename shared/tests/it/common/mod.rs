//! Harness for the shared library's integration tests: AWS's DynamoDB Local, a moto server (Secrets
//! Manager) and a real Keycloak emulator, all over HTTP on loopback, one of each per test binary;
//! every test gets its own table, secret and realm clone, so tests run in parallel.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use aws_credential_types::provider::SharedCredentialsProvider;
use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use serde_json::{json, Value};
use user_sync::outside::aws_api::{AwsApi, SECRETS_MANAGER};
use user_sync::outside::keycloak::{ClientCredentials, ClientSecret, KeycloakClient, RetryPolicy};
use user_sync::outside::secrets::{ClientSecretCache, Secret};
use user_sync::outside::store::Store;

pub const CLIENT: &str = "user-sync";
pub const SECRET: &str = "dev-only-user-sync-secret-not-for-production";
/// The service client: its service account holds the realm-management roles.
pub const ADMIN_CLIENT: &str = "user-sync-admin";
pub const ADMIN_SECRET: &str = "dev-only-user-sync-admin-secret-not-for-production";
const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

static N: AtomicUsize = AtomicUsize::new(0);

pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// A local AWS service started for this test binary by `infra/local/aws_local.py` (stopped when
/// the process exits): `"dynamodb"` (DynamoDB Local) or `"moto"` (Secrets Manager). An endpoint in
/// `TEST_DYNAMODB_ENDPOINT_URL` / `TEST_MOTO_ENDPOINT_URL` is used instead when set.
fn local_service(name: &str, url: &'static OnceLock<String>) -> &'static str {
    static CHILDREN: Mutex<Vec<Child>> = Mutex::new(Vec::new());
    url.get_or_init(|| {
        let var = format!("TEST_{}_ENDPOINT_URL", name.to_uppercase());
        if let Ok(url) = std::env::var(var) {
            return url;
        }
        let mut child = Command::new(format!("{ROOT}/.venv/bin/python"))
            .arg(format!("{ROOT}/infra/local/aws_local.py"))
            .args(["for-tests", name])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start a local AWS service (run `make tools` first)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .strip_prefix("PORT ")
            .unwrap_or_else(|| panic!("{name} did not start: {line}"))
            .to_owned();
        CHILDREN.lock().unwrap().push(child);
        format!("http://127.0.0.1:{port}")
    })
}

/// DynamoDB Local's endpoint.
pub fn dynamodb_local() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    local_service("dynamodb", &URL)
}

/// moto's endpoint (Secrets Manager).
pub fn moto() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    local_service("moto", &URL)
}

fn credentials() -> Credentials {
    Credentials::new("local", "local", None, None, "tests")
}

pub fn dynamodb() -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(dynamodb_local())
            .region(Region::new("us-east-1"))
            .credentials_provider(credentials())
            .build(),
    )
}

/// Secrets Manager's API in moto, as the functions call it (`outside::aws_api`).
pub fn secretsmanager() -> AwsApi {
    AwsApi::new(
        &SECRETS_MANAGER,
        moto(),
        "us-east-1",
        SharedCredentialsProvider::new(credentials()),
    )
}

/// A secret `id` holding `text` in moto.
pub async fn create_secret(id: &str, text: &str) {
    secretsmanager()
        .call("CreateSecret", &json!({ "Name": id, "SecretString": text }))
        .await
        .unwrap();
}

/// A new table with the definition of `infra/local/table.json`.
pub async fn table() -> Store {
    let spec: Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{ROOT}/infra/local/table.json")).unwrap(),
    )
    .unwrap();
    let name = unique("table");
    let client = dynamodb();
    user_sync::outside::store::create_table_from_spec(&client, &name, &spec)
        .await
        .expect("create table");
    Store::new(client, name, b"test cursor key")
}

/// A secret `{"client_secret": value}` in moto; returns its id.
pub async fn secret(value: &str) -> String {
    let id = unique("kc-secret");
    create_secret(&id, &json!({"client_secret": value}).to_string()).await;
    id
}

pub async fn set_secret(id: &str, value: &str) {
    let text = json!({"client_secret": value}).to_string();
    secretsmanager()
        .call(
            "PutSecretValue",
            &json!({ "SecretId": id, "SecretString": text }),
        )
        .await
        .unwrap();
}

/// The Keycloak emulator's base URL (one per test binary, in this process).
pub fn emulator() -> &'static str {
    static BASE: OnceLock<String> = OnceLock::new();
    BASE.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let emu = keycloak_emulator::Emulator::from_file(&format!(
                    "{ROOT}/infra/keycloak/realm.json"
                ))
                .unwrap();
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(listener.local_addr().unwrap().port()).unwrap();
                keycloak_emulator::serve(listener, emu, std::future::pending())
                    .await
                    .unwrap();
            });
        });
        format!("http://127.0.0.1:{}", rx.recv().unwrap())
    })
}

/// Test retries: quick, so failure paths do not make the suite slow.
pub fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        max_retries: 3,
        base_delay: std::time::Duration::from_millis(10),
        max_delay: std::time::Duration::from_millis(50),
        max_retry_after: std::time::Duration::from_secs(2),
        request_timeout: std::time::Duration::from_secs(5),
    }
}

/// A fresh clone of the demo realm.
pub struct Realm {
    pub name: String,
    pub http: reqwest::Client,
}

pub async fn realm() -> Realm {
    realm_with(json!({})).await
}

/// A fresh clone of the demo realm with a JSON merge patch applied to its export.
pub async fn realm_with(patch: Value) -> Realm {
    let name = unique("r");
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{}/_emulator/realms", emulator()))
        .json(&json!({"name": name, "from": "demo", "patch": patch}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    Realm { name, http }
}

impl Realm {
    /// A client with no Keycloak client configured yet.
    pub fn bare_client(&self) -> KeycloakClient {
        KeycloakClient::new(emulator(), &self.name, fast_retries()).unwrap()
    }

    /// Both Keycloak clients, the login client's secret from `login_secret`.
    pub fn client_with(&self, login_secret: ClientSecret) -> KeycloakClient {
        self.bare_client()
            .with_login_client(ClientCredentials::new(CLIENT, login_secret))
            .with_service_client(ClientCredentials::new(
                ADMIN_CLIENT,
                ClientSecret::Fixed(Secret::new(ADMIN_SECRET)),
            ))
    }

    /// Both clients with the realm's secrets, given directly.
    pub fn client(&self) -> Arc<KeycloakClient> {
        Arc::new(self.client_with(ClientSecret::Fixed(Secret::new(SECRET))))
    }

    /// Both clients, the login client reading its secret from Secrets Manager (moto), as the
    /// functions do.
    pub async fn client_via_secrets_manager(
        &self,
        secret_id: &str,
    ) -> (Arc<KeycloakClient>, Arc<ClientSecretCache>) {
        let cache = Arc::new(ClientSecretCache::new(
            secretsmanager(),
            secret_id,
            user_sync::outside::secrets::DEFAULT_TTL,
        ));
        (
            Arc::new(self.client_with(ClientSecret::SecretsManager(Arc::clone(&cache)))),
            cache,
        )
    }

    /// Add a fault rule on a path under this realm (`{realm}` is replaced); returns its id.
    pub async fn fault(&self, mut rule: Value) -> String {
        let path = rule["path"]
            .as_str()
            .unwrap()
            .replace("{realm}", &self.name);
        rule["path"] = json!(path);
        let r: Value = self
            .http
            .post(format!("{}/_emulator/faults", emulator()))
            .json(&rule)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        r["id"].as_str().unwrap().to_owned()
    }

    /// How many requests a fault rule has affected.
    pub async fn hits(&self, rule_id: &str) -> u64 {
        self.fault_rule(rule_id)
            .await
            .map_or(0, |r| r["hits"].as_u64().unwrap())
    }

    /// Whether a rule with `times` has been used up (the emulator drops it then).
    pub async fn spent(&self, rule_id: &str) -> bool {
        self.fault_rule(rule_id).await.is_none()
    }

    async fn fault_rule(&self, rule_id: &str) -> Option<Value> {
        let rules: Value = self
            .http
            .get(format!("{}/_emulator/faults", emulator()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        rules
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == rule_id)
            .cloned()
    }

    /// Grant (`POST`) or take back (`DELETE`) a realm role, as an admin would in Keycloak.
    pub async fn role_mapping(
        &self,
        method: reqwest::Method,
        user_id: &str,
        role: &user_sync::outside::keycloak::RoleRepresentation,
    ) {
        let token = self
            .client()
            .client_credentials()
            .await
            .unwrap()
            .access_token;
        let r = self
            .http
            .request(
                method,
                format!(
                    "{}/admin/realms/{}/users/{user_id}/role-mappings/realm",
                    emulator(),
                    self.name
                ),
            )
            .bearer_auth(token)
            .json(&json!([{"id": role.id, "name": role.name}]))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
    }

    pub async fn clock(&self, seconds: i64) {
        let r = self
            .http
            .put(format!(
                "{}/_emulator/realms/{}/clock",
                emulator(),
                self.name
            ))
            .json(&json!({"offsetSeconds": seconds}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
    }
}

/// Everything a function builds at cold start, against moto (a fresh table and secret) and the
/// emulator realm `realm`; `vars` add or override configuration variables.
pub async fn services(realm: &Realm, vars: &[(&str, &str)]) -> user_sync::services::Services {
    services_with_lambda(realm, vars).await.0
}

/// Asynchronous invocations the functions asked the Lambda API for: (function name, payload).
pub type Invocations = Arc<std::sync::Mutex<Vec<(String, Value)>>>;

/// `services`, with the Lambda API played by a local server that records every invocation.
pub async fn services_with_lambda(
    realm: &Realm,
    vars: &[(&str, &str)],
) -> (user_sync::services::Services, Invocations) {
    let store = table().await;
    let (login_secret, admin_secret) = (secret(SECRET).await, secret(ADMIN_SECRET).await);
    let mut env: Vec<(String, String)> = vec![
        ("KEYCLOAK_URL".into(), emulator().into()),
        ("KEYCLOAK_REALM".into(), realm.name.clone()),
        ("KEYCLOAK_CLIENT_ID".into(), CLIENT.into()),
        ("KEYCLOAK_SECRET_ID".into(), login_secret),
        ("KEYCLOAK_ADMIN_CLIENT_ID".into(), ADMIN_CLIENT.into()),
        ("KEYCLOAK_ADMIN_SECRET_ID".into(), admin_secret),
        ("TABLE_NAME".into(), store.table_name().to_owned()),
    ];
    for (k, v) in vars {
        env.retain(|(key, _)| key != k);
        env.push(((*k).into(), (*v).into()));
    }
    let config = user_sync::Config::from_lookup(|k| {
        env.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone())
    })
    .unwrap();
    let (endpoint, invocations) = lambda_api().await;
    let lambda = user_sync::outside::lambda::LambdaClient::new(
        &endpoint,
        "us-east-1",
        aws_credential_types::provider::SharedCredentialsProvider::new(
            aws_credential_types::Credentials::new("local", "local", None, None, "tests"),
        ),
    );
    let services = user_sync::services::Services::from_parts(config, realm.client(), store, lambda);
    (services, invocations)
}

/// A local Lambda Invoke API (`POST /2015-03-31/functions/{name}/invocations`) answering 202.
async fn lambda_api() -> (String, Invocations) {
    let invocations: Invocations = Arc::default();
    let seen = Arc::clone(&invocations);
    let app = axum::Router::new().route(
        "/2015-03-31/functions/{name}/invocations",
        axum::routing::post(
            move |axum::extract::Path(name): axum::extract::Path<String>,
                  body: axum::body::Bytes| {
                let seen = Arc::clone(&seen);
                async move {
                    let payload = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    seen.lock().unwrap().push((name, payload));
                    axum::http::StatusCode::ACCEPTED
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (endpoint, invocations)
}
