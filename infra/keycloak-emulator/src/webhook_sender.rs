//! Phase Two's `keycloak-events` webhook sender (`WebhookSenderEventListenerProvider`): the
//! subscriptions a realm holds, and the delivery of one event to each that wants it — one JSON
//! event per POST with a fresh `uid`, signed `X-Keycloak-Signature: hex(HMAC-SHA256(secret,
//! body))`, retried with exponential backoff on anything but a 2xx (first after 500 ms, ×5 each
//! time, at most 3 minutes apart, for 15 minutes). The data model (`realm`) calls it; it knows
//! nothing of the realm.

use std::time::{Duration, Instant};

use aws_lc_rs::hmac;
use serde_json::{json, Value};

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
    pub fn to_json(&self) -> Value {
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

/// Send `event` (without `uid`) to every subscription that wants its `type`, if the listener is
/// on. Called under the realm's lock: each delivery runs on its own task.
pub fn dispatch(listeners: &[String], webhooks: &[Webhook], event: &Value) {
    if !listeners.iter().any(|l| l == LISTENER) {
        return;
    }
    let kind = event["type"].as_str().unwrap_or_default();
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    for hook in webhooks.iter().filter(|w| w.enabled && w.wants(kind)) {
        let mut event = event.clone();
        event["uid"] = json!(uuid::Uuid::new_v4().to_string());
        let body = event.to_string();
        let signature = (!hook.secret.is_empty()).then(|| {
            let key = hmac::Key::new(hmac::HMAC_SHA256, hook.secret.as_bytes());
            hex::encode(hmac::sign(&key, body.as_bytes()))
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
