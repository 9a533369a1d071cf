//! Phase Two's `keycloak-events` extension, as far as webhooks go (its README; not Keycloak
//! itself, so not in the contract): the subscription API at `/realms/{realm}/webhooks`
//! (`view-events` to read, `manage-events` to change). Delivering the events is
//! `webhook_sender`'s.

use std::sync::Arc;

use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};

use super::caller::{require, Admin};
use crate::emulator::Emulator;
use crate::http::{json_response, no_content, not_found, ok_json, with_header};
use crate::realm::{new_id, strings, Realm};
use crate::webhook_sender::Webhook;

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
