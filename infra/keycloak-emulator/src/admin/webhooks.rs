//! Phase Two's `keycloak-events` extension, as far as webhooks go (its README and
//! `WebhookSenderEventListenerProvider`; not Keycloak itself, so not in the contract): the
//! subscription API at `/realms/{realm}/webhooks` (`view-events` to read, `manage-events` to
//! change), and, while the realm's event listeners include `ext-event-webhook`, every admin and
//! user event sent to each enabled subscription whose `eventTypes` match: one JSON event per POST
//! (`type` = `admin.<RESOURCE>-<OPERATION>` or `access.<TYPE>`, a fresh `uid` per subscription),
//! signed `X-Keycloak-Signature: hex(HMAC-SHA256(secret, body))`, retried with exponential backoff
//! on anything but a 2xx (first after 500 ms, ×5 each time, at most 3 minutes apart, for 15
//! minutes), as the extension's sender does.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lc_rs::hmac;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};

use super::{require, Admin};
use crate::http::{json_response, no_content, not_found, ok_json, with_header};
use crate::realm::{new_id, strings, Realm};
use crate::Emulator;

/// The listener that must be enabled for webhooks to be sent.
pub const LISTENER: &str = "ext-event-webhook";

#[derive(Clone, Debug)]
pub struct Webhook {
    pub id: String,
    pub enabled: bool,
    pub url: String,
    pub secret: String,
    pub event_types: Vec<String>,
    pub created_by: String,
    pub created_at: String,
}

impl Webhook {
    /// The subscription as the API shows it: never its secret.
    fn to_json(&self) -> Value {
        json!({"id": self.id, "enabled": self.enabled, "url": self.url,
               "eventTypes": self.event_types, "createdBy": self.created_by,
               "createdAt": self.created_at})
    }

    /// `*`, `admin.*`, `access.*`, or the exact type.
    fn wants(&self, kind: &str) -> bool {
        self.event_types.iter().any(|t| {
            t == "*"
                || t == kind
                || t.strip_suffix('*')
                    .is_some_and(|prefix| prefix.ends_with('.') && kind.starts_with(prefix))
        })
    }
}

/// Merged into the `/realms/{realm}` routes.
pub fn router() -> Router<Arc<Emulator>> {
    Router::new()
        .route("/webhooks", get(list).post(create))
        .route("/webhooks/{id}", get(one).put(update).delete(remove))
}

fn bad_request(message: &str) -> Response {
    json_response(400, &json!({"error": message}))
}

/// A subscription from its JSON (`id`, `createdBy`, `createdAt` are ignored, as the extension
/// ignores them); `enabled` may be a boolean or the string the extension's examples send.
fn parse(body: &[u8]) -> Result<(bool, String, Option<String>, Vec<String>), Response> {
    let v: Value = serde_json::from_slice(body).map_err(|_| bad_request("invalid JSON"))?;
    let enabled = match &v["enabled"] {
        Value::Bool(b) => *b,
        Value::String(s) => s == "true",
        _ => true,
    };
    let url = v["url"].as_str().unwrap_or_default().to_owned();
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(bad_request("url must be an http(s) URL"));
    }
    let secret = v["secret"].as_str().map(str::to_owned);
    Ok((enabled, url, secret, strings(v.get("eventTypes"))))
}

async fn list(a: Admin) -> Response {
    a.read(|realm, caller| {
        require(caller.view_events())?;
        Ok(ok_json(&json!(realm
            .webhooks
            .iter()
            .map(Webhook::to_json)
            .collect::<Vec<_>>())))
    })
}

async fn one(a: Admin) -> Response {
    a.read(|realm, caller| {
        require(caller.view_events())?;
        realm
            .webhooks
            .iter()
            .find(|w| w.id == a.param("id"))
            .map(|w| ok_json(&w.to_json()))
            .ok_or_else(|| not_found("Webhook not found"))
    })
}

async fn create(a: Admin) -> Response {
    a.write(|realm, caller| {
        require(caller.view_events() && caller.has("manage-events"))?;
        let id = subscribe(realm, &a.req.body, &caller.auth.user_id)?;
        let location = format!("{}/{id}", a.req.path.trim_end_matches('/'));
        Ok(with_header(crate::http::empty(201), "location", &location))
    })
}

/// Add a subscription from its JSON; its id.
pub fn subscribe(realm: &mut Realm, body: &[u8], created_by: &str) -> Result<String, Response> {
    let (enabled, url, secret, event_types) = parse(body)?;
    let id = new_id();
    realm.webhooks.push(Webhook {
        id: id.clone(),
        enabled,
        url,
        secret: secret.unwrap_or_default(),
        event_types,
        created_by: created_by.to_owned(),
        created_at: time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
    });
    Ok(id)
}

async fn update(a: Admin) -> Response {
    a.write(|realm, caller| {
        require(caller.view_events() && caller.has("manage-events"))?;
        let (enabled, url, secret, event_types) = parse(&a.req.body)?;
        let hook = realm
            .webhooks
            .iter_mut()
            .find(|w| w.id == a.param("id"))
            .ok_or_else(|| not_found("Webhook not found"))?;
        (hook.enabled, hook.url, hook.event_types) = (enabled, url, event_types);
        // The secret is not shown, so an update that leaves it out keeps it.
        if let Some(secret) = secret {
            hook.secret = secret;
        }
        Ok(no_content())
    })
}

async fn remove(a: Admin) -> Response {
    a.write(|realm, caller| {
        require(caller.view_events() && caller.has("manage-events"))?;
        let before = realm.webhooks.len();
        realm.webhooks.retain(|w| w.id != a.param("id"));
        if realm.webhooks.len() == before {
            return Err(not_found("Webhook not found"));
        }
        Ok(no_content())
    })
}

/// Send `event` (without `uid`) to every subscription that wants its `type`, if the listener is
/// on. Called under the realm's lock: each delivery runs on its own task.
pub fn dispatch(realm: &Realm, event: &Value) {
    if !realm
        .settings
        .events_listeners
        .iter()
        .any(|l| l == LISTENER)
    {
        return;
    }
    let kind = event["type"].as_str().unwrap_or_default();
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    for hook in realm.webhooks.iter().filter(|w| w.enabled && w.wants(kind)) {
        let mut event = event.clone();
        event["uid"] = json!(new_id());
        let body = event.to_string();
        let signature = (!hook.secret.is_empty()).then(|| {
            let key = hmac::Key::new(hmac::HMAC_SHA256, hook.secret.as_bytes());
            hmac::sign(&key, body.as_bytes())
                .as_ref()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        });
        runtime.spawn(deliver(hook.url.clone(), body, signature));
    }
}

async fn deliver(url: String, body: String, signature: Option<String>) {
    let client = reqwest::Client::new();
    let started = Instant::now();
    let mut wait = Duration::from_millis(500);
    loop {
        let mut request = client
            .post(&url)
            .header("content-type", "application/json")
            .body(body.clone())
            .timeout(Duration::from_secs(10));
        if let Some(s) = &signature {
            request = request.header("X-Keycloak-Signature", s);
        }
        match request.send().await {
            Ok(r) if r.status().is_success() => return,
            Ok(r) => eprintln!("keycloak-emulator: webhook {url} answered {}", r.status()),
            Err(e) => eprintln!("keycloak-emulator: webhook {url} failed: {e}"),
        }
        if started.elapsed() + wait > Duration::from_secs(15 * 60) {
            eprintln!("keycloak-emulator: webhook {url}: giving up");
            return;
        }
        // ±50 % randomization, as the extension's backoff has.
        let jitter = 0.5 + (uuid::Uuid::new_v4().as_u128() % 1000) as f64 / 1000.0;
        tokio::time::sleep(wait.mul_f64(jitter)).await;
        wait = (wait * 5).min(Duration::from_secs(180));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_types_match_everything_a_prefix_or_one_type() {
        let hook = |types: &[&str]| Webhook {
            id: String::new(),
            enabled: true,
            url: String::new(),
            secret: String::new(),
            event_types: types.iter().map(|t| t.to_string()).collect(),
            created_by: String::new(),
            created_at: String::new(),
        };
        assert!(hook(&["*"]).wants("admin.USER-UPDATE"));
        assert!(hook(&["admin.*"]).wants("admin.USER-UPDATE"));
        assert!(!hook(&["admin.*"]).wants("access.LOGIN"));
        assert!(hook(&["access.LOGIN"]).wants("access.LOGIN"));
        assert!(!hook(&["access.LOGIN"]).wants("access.LOGOUT"));
        assert!(!hook(&[]).wants("access.LOGIN"));
    }
}
