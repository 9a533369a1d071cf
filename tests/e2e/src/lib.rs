//! Harness of the end-to-end tests: the whole local stack (DynamoDB Local, moto, the Keycloak
//! emulator, the functions under `cargo lambda watch`, the local API Gateway) started by `infra/local/stack.py`
//! — what `make dev` runs — on free ports, once per test binary, and stopped when the test
//! process exits. Tests talk HTTP to the gateway, as a client of the deployed API would.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use user_sync::outside::aws_api::{AwsApi, Service, SECRETS_MANAGER, SQS};
use user_sync::outside::store::{Store, User};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
pub const CLIENT: &str = "user-sync";
pub const SECRET: &str = "dev-only-user-sync-secret-not-for-production";
/// The service client: its service account holds the realm-management roles.
pub const ADMIN_CLIENT: &str = "user-sync-admin";
pub const ADMIN_SECRET: &str = "dev-only-user-sync-admin-secret-not-for-production";

pub struct Stack {
    pub gateway: String,
    /// The demo app (`infra/demo`): keycloak-js, and the back end of the server-side flow.
    pub demo: String,
    pub keycloak: String,
    pub moto: String,
    pub dynamodb: String,
    pub lambda: String,
    pub table: String,
    pub realm: String,
    /// Where the stack keeps its pids and logs.
    pub dev_dir: std::path::PathBuf,
}

/// A port nothing is bound to, below the kernel's ephemeral range (as `free_port` in
/// `infra/local/aws_local.py`): an outgoing connection's port comes from that range, and one took
/// a port picked there before DynamoDB Local, which binds every interface and starts slowly,
/// could bind it.
fn free_port() -> u16 {
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .map_or(32768, u32::from)
        .max(10_001);
    (0..200)
        .map(|_| {
            let random = u32::from(fastrand_byte()) << 8 | u32::from(fastrand_byte());
            (10_000 + random % (low - 10_000)) as u16
        })
        .find(|p| std::net::TcpListener::bind(("0.0.0.0", *p)).is_ok())
        .expect("a free port below the ephemeral range")
}

static TEMPLATE_THROTTLING: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// The stack of this test binary with the template's own route throttling. Other binaries raise
/// it: their tests run in parallel from one machine, which a deployed API's route limits (all
/// clients together) are not sized for. Call before anything else starts the stack.
pub fn stack_with_template_throttling() -> &'static Stack {
    TEMPLATE_THROTTLING.store(true, Ordering::SeqCst);
    stack()
}

pub fn stack() -> &'static Stack {
    static STACK: OnceLock<Stack> = OnceLock::new();
    static CHILD: OnceLock<Mutex<Child>> = OnceLock::new();
    STACK.get_or_init(|| {
        let dev = std::env::temp_dir().join(format!("e2e-stack-{}", std::process::id()));
        let mut child = Command::new(format!("{ROOT}/.venv/bin/python"))
            .arg(format!("{ROOT}/infra/local/stack.py"))
            .arg("serve-for-tests")
            .env("DEV_DIR", &dev)
            .env("KEYCLOAK_PORT", free_port().to_string())
            .env("MOTO_PORT", free_port().to_string())
            .env("DYNAMODB_PORT", free_port().to_string())
            .env("LAMBDA_PORT", free_port().to_string())
            .env("LAMBDA_ASYNC_PORT", free_port().to_string())
            .env("GATEWAY_PORT", free_port().to_string())
            .env("DEMO_PORT", free_port().to_string())
            .env("TABLE_NAME", format!("e2e-{}", std::process::id()))
            .env("STACK_NO_RELOAD", "1")
            .env(
                "GATEWAY_PARAMETERS",
                if TEMPLATE_THROTTLING.load(Ordering::SeqCst) {
                    ""
                } else {
                    "LoginThrottleRateLimit=10000 LoginThrottleBurstLimit=10000 \
                     RegisterThrottleRateLimit=10000 RegisterThrottleBurstLimit=10000"
                },
            )
            .env_remove("KEYCLOAK_URL")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the stack (run `make tools build` first)");
        let mut reader = BufReader::new(child.stdout.take().unwrap());
        let info: Value = loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap() == 0 {
                panic!("the stack did not start; see {}", dev.display());
            }
            if line.starts_with('{') {
                break serde_json::from_str(&line).unwrap();
            }
            eprint!("{line}");
        };
        std::thread::spawn(move || for _ in reader.lines() {});
        CHILD.set(Mutex::new(child)).ok();
        let text = |k: &str| info[k].as_str().unwrap().to_owned();
        Stack {
            gateway: text("gateway"),
            demo: text("demo"),
            keycloak: text("keycloak"),
            moto: text("moto"),
            dynamodb: text("dynamodb"),
            lambda: text("lambda"),
            table: text("table"),
            realm: text("realm"),
            dev_dir: dev,
        }
    })
}

/// A client whose requests come from a loopback address of its own (127.x.y.z), as clients of a
/// deployed API come from addresses of their own: the per-IP abuse limits of one test never
/// count another test's requests.
pub fn http() -> reqwest::Client {
    let [a, b, c] = [fastrand_byte(), fastrand_byte(), fastrand_byte()];
    http_from(std::net::Ipv4Addr::new(127, a, b, c.max(2)))
}

/// A client whose requests all come from `ip`.
pub fn http_from(ip: std::net::Ipv4Addr) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(90))
        .local_address(std::net::IpAddr::V4(ip))
        .build()
        .unwrap()
}

fn fastrand_byte() -> u8 {
    use std::hash::{BuildHasher, Hasher};
    static N: AtomicUsize = AtomicUsize::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_usize(N.fetch_add(1, Ordering::SeqCst));
    h.finish() as u8
}

/// A username no other test uses.
pub fn unique(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{prefix}{}x{}",
        std::process::id() % 100_000,
        N.fetch_add(1, Ordering::SeqCst)
    )
}

#[derive(Clone, Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }
}

pub async fn call(method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> Resp {
    call_with(&http(), method, path, token, body).await
}

/// A call through the gateway with a given client (a fixed source address).
pub async fn call_with(
    client: &reqwest::Client,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Resp {
    let mut req = client.request(method, format!("{}{path}", stack().gateway));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    read(req.send().await.expect("gateway answers")).await
}

/// A response as the specs read it.
pub async fn read(r: reqwest::Response) -> Resp {
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Resp {
        status,
        headers,
        body,
        text,
    }
}

pub async fn post(path: &str, body: Value) -> Resp {
    call(Method::POST, path, None, Some(body)).await
}

/// A self-registration: only `phone` is user-editable in the demo realm's user profile.
pub fn registration(username: &str) -> Value {
    json!({"username": username, "email": format!("{username}@example.org"), "password": "a-good-password",
           "firstName": "Test", "lastName": "User", "attributes": {"phone": "+1 555 0199"}})
}

/// A user as an admin creates them, with admin-only attributes.
pub fn new_user(username: &str) -> Value {
    json!({"username": username, "email": format!("{username}@example.org"), "password": "a-good-password",
           "firstName": "Test", "lastName": "User", "attributes": {"organization": "Acme", "title": "Tester"}})
}

/// Register and log in a fresh user; returns (username, login answer).
pub async fn signed_in_user(prefix: &str) -> (String, Value) {
    let username = unique(prefix);
    let r = post("/auth/register", registration(&username)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let login = post(
        "/auth/login",
        json!({"username": username, "password": "a-good-password"}),
    )
    .await;
    assert_eq!(login.status, 200, "{}", login.text);
    (username, login.body)
}

pub fn store() -> Store {
    Store::new(dynamodb(), &stack().table, b"e2e")
}

pub async fn local_user(id: &str) -> Option<User> {
    store().get_user(id).await.unwrap()
}

/// Wait until Keycloak's webhook has brought the user into the store (it takes about a second).
pub async fn imported_by_webhook(id: &str) -> User {
    let started = std::time::Instant::now();
    loop {
        if let Some(user) = local_user(id).await {
            return user;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the webhook brought user {id} in"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Local records with this exact username.
pub async fn local_users_named(username: &str) -> usize {
    let page = store()
        .list_users(&user_sync::outside::store::ListQuery {
            limit: 50,
            prefix: Some(username.into()),
            ..Default::default()
        })
        .await
        .unwrap();
    page.items
        .iter()
        .filter(|u| u.keycloak.username == username)
        .count()
}

/// The Keycloak admin API, as the service account.
pub async fn keycloak_admin(method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let s = stack();
    let token: Value = http()
        .post(format!(
            "{}/realms/{}/protocol/openid-connect/token",
            s.keycloak, s.realm
        ))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", ADMIN_CLIENT),
            ("client_secret", ADMIN_SECRET),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut req = http()
        .request(
            method,
            format!("{}/admin/realms/{}{path}", s.keycloak, s.realm),
        )
        .bearer_auth(token["access_token"].as_str().unwrap());
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Users in Keycloak with exactly this username.
pub async fn keycloak_users_named(username: &str) -> Vec<Value> {
    let (_, found) = keycloak_admin(
        Method::GET,
        &format!("/users?username={username}&exact=true"),
        None,
    )
    .await;
    found.as_array().cloned().unwrap_or_default()
}

/// The access token of a password login through the gateway.
pub async fn token_of(username: &str, password: &str) -> String {
    let r = post(
        "/auth/login",
        json!({"username": username, "password": password}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["tokens"]["accessToken"].as_str().unwrap().to_owned()
}

/// The demo realm's admin (alice) and manager (bob).
pub async fn admin() -> String {
    token_of("alice", "alice-dev-password").await
}

pub async fn manager() -> String {
    token_of("bob", "bob-dev-password").await
}

/// A new user created through the admin API as `token`; returns (id, username).
pub async fn created(token: &str, prefix: &str) -> (String, String) {
    let username = unique(prefix);
    let r = call(
        Method::POST,
        "/admin/users",
        Some(token),
        Some(new_user(&username)),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    (r.body["user"]["id"].as_str().unwrap().to_owned(), username)
}

/// `GET /admin/users/{id}` as `token`.
pub async fn get_user(token: &str, id: &str) -> Resp {
    call(
        Method::GET,
        &format!("/admin/users/{id}"),
        Some(token),
        None,
    )
    .await
}

/// `PATCH /admin/users/{id}` as `token`, with `If-Match` when given.
pub async fn patch(token: &str, id: &str, etag: Option<&str>, body: Value) -> Resp {
    let mut req = http()
        .patch(format!("{}/admin/users/{id}", stack().gateway))
        .bearer_auth(token)
        .json(&body);
    if let Some(e) = etag {
        req = req.header("if-match", e);
    }
    read(req.send().await.unwrap()).await
}

/// Grant a realm role straight in Keycloak (as an admin would in its console).
pub async fn grant_realm_role(user_id: &str, role: &str) {
    let (status, rep) = keycloak_admin(Method::GET, &format!("/roles/{role}"), None).await;
    assert_eq!(status, 200, "{rep}");
    let (status, body) = keycloak_admin(
        Method::POST,
        &format!("/users/{user_id}/role-mappings/realm"),
        Some(json!([{"id": rep["id"], "name": role}])),
    )
    .await;
    assert_eq!(status, 204, "{body}");
}

/// The raw DynamoDB items of a user (profile and sessions), exactly as stored.
pub async fn raw_items(
    user_id: &str,
) -> Vec<std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> {
    let out = dynamodb()
        .query()
        .table_name(&stack().table)
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(
            ":pk",
            aws_sdk_dynamodb::types::AttributeValue::S(format!("USER#{user_id}")),
        )
        .consistent_read(true)
        .send()
        .await
        .unwrap();
    out.items.unwrap_or_default()
}

fn local_credentials() -> aws_sdk_dynamodb::config::Credentials {
    aws_sdk_dynamodb::config::Credentials::new("local", "local", None, None, "e2e")
}

/// A DynamoDB client for the stack's DynamoDB Local.
pub fn dynamodb() -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::Config::builder()
            .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
            .endpoint_url(&stack().dynamodb)
            .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
            .credentials_provider(local_credentials())
            .build(),
    )
}

/// One of moto's APIs (SQS, Secrets Manager), called as the functions call it
/// (`outside::aws_api`).
fn moto(service: &'static Service) -> AwsApi {
    AwsApi::new(
        service,
        &stack().moto,
        "us-east-1",
        aws_credential_types::provider::SharedCredentialsProvider::new(local_credentials()),
    )
}

/// The URL of a moto SQS queue named after its logical id in template.yaml.
async fn queue_url(queue: &str) -> String {
    let answer = moto(&SQS)
        .call("GetQueueUrl", &json!({ "QueueName": queue }))
        .await
        .unwrap();
    answer["QueueUrl"].as_str().unwrap().to_owned()
}

/// The messages waiting in a moto SQS queue (named after its logical id in template.yaml),
/// taken off the queue.
pub async fn queue_messages(queue: &str) -> Vec<Value> {
    let input = json!({ "QueueUrl": queue_url(queue).await, "MaxNumberOfMessages": 10 });
    let received = moto(&SQS).call("ReceiveMessage", &input).await.unwrap();
    received["Messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| serde_json::from_str(m["Body"].as_str()?).ok())
        .collect()
}

/// Run the bulk-sync function as a schedule does; answers the run record. A run skipped because
/// another test's run holds the lease is started again once that one is done.
pub async fn run_sync(mode: &str) -> Value {
    for _ in 0..120 {
        let r = http()
            .post(format!(
                "{}/2015-03-31/functions/bulk-sync/invocations",
                stack().lambda
            ))
            .json(&json!({ "mode": mode }))
            .send()
            .await
            .unwrap();
        let run: Value = r.json().await.unwrap();
        if run["status"] != "skipped" {
            return run;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("every {mode} run was skipped: a run held the lease for a minute");
}

/// Freeze DynamoDB Local (SIGSTOP): DynamoDB accepts connections and never answers, as a hung
/// service does. `resume_dynamodb` undoes it.
pub fn pause_dynamodb() {
    signal_dynamodb("-STOP");
}

pub fn resume_dynamodb() {
    signal_dynamodb("-CONT");
}

fn signal_dynamodb(signal: &str) {
    let pid = std::fs::read_to_string(stack().dev_dir.join("dynamodb.pid")).unwrap();
    let status = Command::new("kill")
        .arg(signal)
        .arg(pid.trim())
        .status()
        .unwrap();
    assert!(status.success());
}

/// How often a fault rule has matched (a latency-only rule with no delay just counts).
pub async fn fault_hits(rule_id: &str) -> u64 {
    let rules: Value = http()
        .get(format!("{}/_emulator/faults", stack().keycloak))
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
        .map_or(0, |r| r["hits"].as_u64().unwrap_or(0))
}

/// Remove a fault rule from the emulator (one used up by its `times` is gone already).
pub async fn clear_fault(rule_id: &str) {
    let r = http()
        .delete(format!("{}/_emulator/faults/{rule_id}", stack().keycloak))
        .send()
        .await
        .unwrap();
    assert!(
        r.status().is_success() || r.status() == 404,
        "{}",
        r.status()
    );
}

/// Add a fault rule to the emulator (`{realm}` in the path is replaced); answers its id.
pub async fn fault(mut rule: Value) -> String {
    let path = rule["path"]
        .as_str()
        .unwrap()
        .replace("{realm}", &stack().realm);
    rule["path"] = json!(path);
    let r = http()
        .post(format!("{}/_emulator/faults", stack().keycloak))
        .json(&rule)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let created: Value = r.json().await.unwrap();
    created["id"].as_str().unwrap_or_default().to_owned()
}

/// Move the realm's clock (Keycloak's time = ours + `seconds`).
pub async fn set_keycloak_clock(seconds: i64) {
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
}

/// Turn the realm's webhook deliveries to the gateway off or on again (as the stack subscribed
/// them), so a spec can see what the syncs alone do.
pub async fn set_webhooks(enabled: bool) {
    let body = json!({"enabled": enabled, "url": format!("{}/hooks/keycloak", stack().gateway),
                      "secret": webhook_secret().await, "eventTypes": ["*"]});
    let r = http()
        .post(format!(
            "{}/_emulator/realms/{}/webhooks",
            stack().keycloak,
            stack().realm
        ))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
}

/// The webhook secret the stack generated (what an operator gives Keycloak's events extension).
pub async fn webhook_secret() -> String {
    let input = json!({ "SecretId": "keycloak-user-sync/webhook" });
    let value = moto(&SECRETS_MANAGER)
        .call("GetSecretValue", &input)
        .await
        .unwrap();
    let v: Value = serde_json::from_str(value["SecretString"].as_str().unwrap()).unwrap();
    v["webhook_secret"].as_str().unwrap().to_owned()
}

/// POST a webhook delivery to the gateway's /hooks/keycloak, with this signature header if any.
pub async fn deliver_webhook(body: &str, signature: Option<&str>) -> Resp {
    let mut req = http()
        .post(format!("{}/hooks/keycloak", stack().gateway))
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(s) = signature {
        req = req.header("X-Keycloak-Signature", s);
    }
    read(req.send().await.expect("gateway answers")).await
}

/// Rotate the webhook secret as Secrets Manager's rotation does: `value` becomes the current
/// version (`AWSCURRENT`), the one it replaces `AWSPREVIOUS`.
pub async fn rotate_webhook_secret(value: &str) {
    let input = json!({
        "SecretId": "keycloak-user-sync/webhook",
        "SecretString": json!({ "webhook_secret": value }).to_string(),
    });
    moto(&SECRETS_MANAGER)
        .call("PutSecretValue", &input)
        .await
        .unwrap();
}

/// Set the hook queue's largest message (SQS refuses a message above it): a way to make the
/// hook's `SendMessage` fail for big events only.
pub async fn set_hook_queue_max_message_size(bytes: u32) {
    let input = json!({
        "QueueUrl": queue_url("HookQueue.fifo").await,
        "Attributes": { "MaximumMessageSize": bytes.to_string() },
    });
    moto(&SQS).call("SetQueueAttributes", &input).await.unwrap();
}

/// A browser for Keycloak's pages and the standard flow: cookies kept by hand, redirects not
/// followed (each one is looked at).
pub struct Browser {
    pub http: reqwest::Client,
    cookies: Vec<(String, String)>,
}

impl Default for Browser {
    fn default() -> Self {
        Self::new()
    }
}

impl Browser {
    pub fn new() -> Self {
        Browser {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookies: Vec::new(),
        }
    }

    pub async fn send(&mut self, req: reqwest::RequestBuilder) -> Resp {
        let cookie = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let r = req.header("cookie", cookie).send().await.unwrap();
        for v in r.headers().get_all("set-cookie") {
            let first = v.to_str().unwrap().split(';').next().unwrap();
            let (k, v) = first.split_once('=').unwrap();
            self.cookies.retain(|(n, _)| n != k);
            self.cookies.push((k.to_owned(), v.to_owned()));
        }
        read(r).await
    }

    pub async fn get(&mut self, url: &str) -> Resp {
        let req = self.http.get(url);
        self.send(req).await
    }

    /// Keycloak's login page at `url`, filled in and sent: Keycloak's redirect.
    pub async fn sign_in_at(&mut self, url: &str, username: &str, password: &str) -> String {
        let page = self.get(url).await;
        assert_eq!(page.status, 200, "{}", page.text);
        let form = &page.text[page.text.find("id=\"kc-form-login\"").unwrap()..];
        let start = form.find("action=\"").unwrap() + 8;
        let action = form[start..start + form[start..].find('"').unwrap()].replace("&amp;", "&");
        let req = self
            .http
            .post(action)
            .form(&[("username", username), ("password", password)]);
        let r = self.send(req).await;
        assert_eq!(r.status, 302, "{}", r.text);
        r.header("location").unwrap()
    }
}

/// A parameter of a URL's query (or, with the `#` made a `?`, of its fragment).
pub fn query_param(url: &str, name: &str) -> Option<String> {
    reqwest::Url::parse(url)
        .ok()?
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// A token with its payload replaced and its signature kept (so it no longer matches): what a
/// forger who altered a captured token sends.
pub fn with_claims(jwt: &str, claims: &Value) -> String {
    use base64::Engine;
    let mut parts: Vec<String> = jwt.split('.').map(str::to_owned).collect();
    parts[1] = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims.to_string());
    parts.join(".")
}
