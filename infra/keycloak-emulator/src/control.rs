//! The test-control API under `/_emulator/`: health, reset, realm clones (so parallel tests never
//! share state), fault and rate-limit rules, a per-realm clock offset, bulk user creation and
//! request counters. Nothing here exists in Keycloak; clients never call it in production.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::response::Response;
use axum::routing::{delete, get, post};
use axum::Router;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::emulator::Emulator;
use crate::faults::FaultRule;
use crate::http::method_not_allowed;
use crate::http::{empty, json_response, no_content, ok_json, with_header, Call, Req};
use crate::realm::{new_id, User};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CloneRequest {
    name: String,
    from: Option<String>,
    /// RFC 7386 JSON merge patch applied to the source export (e.g. `{"eventsEnabled": false}`).
    patch: Option<Value>,
}

/// RFC 7386: objects merge recursively, `null` removes, anything else replaces.
fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    if let Value::Object(t) = target {
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ClockRequest {
    offset_seconds: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct BulkUsers {
    count: usize,
    #[serde(default = "default_prefix")]
    prefix: String,
    #[serde(default)]
    start: usize,
    password: Option<String>,
    #[serde(default = "yes")]
    enabled: bool,
    #[serde(default)]
    attributes: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    realm_roles: Vec<String>,
    #[serde(default)]
    groups: Vec<String>,
}

fn default_prefix() -> String {
    "user".into()
}
fn yes() -> bool {
    true
}

fn bad_request(msg: &str) -> Response {
    json_response(400, &json!({"error": msg}))
}

pub fn router() -> Router<Arc<Emulator>> {
    Router::new()
        .route("/health", get(health))
        .route("/reset", post(reset))
        .route("/realms", post(clone_realm))
        .route("/realms/{name}", delete(drop_realm))
        .route("/realms/{name}/reset", post(reset_realm))
        .route("/realms/{name}/clock", get(clock).put(set_clock))
        .route("/realms/{name}/users/bulk", post(bulk))
        .route("/realms/{name}/webhooks", post(webhook))
        .route(
            "/faults",
            get(list_faults).post(add_fault).delete(clear_faults),
        )
        .route("/faults/{id}", delete(remove_fault))
        .route("/stats", get(stats).delete(clear_stats))
        .route(
            "/backchannel-logouts",
            get(logouts_sent).delete(clear_logouts_sent),
        )
        .method_not_allowed_fallback(|| async { method_not_allowed() })
}

async fn health(c: Call) -> Response {
    ok_json(&json!({"status": "UP", "realms": c.emu.realm_names()}))
}

async fn reset(c: Call) -> Response {
    match c.emu.reset() {
        Ok(()) => no_content(),
        Err(e) => json_response(500, &json!({"error": e})),
    }
}

fn realm_not_found() -> Response {
    json_response(404, &json!({"error": "realm not found"}))
}

async fn clone_realm(c: Call) -> Response {
    let (emu, req) = (&c.emu, &c.req);
    let Ok(body) = serde_json::from_slice::<CloneRequest>(&req.body) else {
        return bad_request("expected {\"name\": ..., \"from\"?: ...}");
    };
    let from = body.from.or_else(|| emu.realm_names().into_iter().next());
    let Some(source) = from.as_deref().and_then(|f| emu.realm(f)) else {
        return json_response(404, &json!({"error": "source realm not found"}));
    };
    let export = match &body.patch {
        None => Arc::clone(&source.source),
        Some(patch) => {
            let mut export = (*source.source).clone();
            merge_patch(&mut export, patch);
            Arc::new(export)
        }
    };
    match emu.add_realm(export, Some(&body.name), false) {
        Ok(name) => with_header(
            json_response(201, &json!({"realm": name})),
            "location",
            &format!("{}/realms/{name}", req.base_url),
        ),
        Err(e) => json_response(409, &json!({"error": e})),
    }
}

async fn drop_realm(c: Call) -> Response {
    if c.emu.remove_realm(c.param("name")) {
        no_content()
    } else {
        realm_not_found()
    }
}

async fn reset_realm(c: Call) -> Response {
    let name = c.param("name");
    let Some(entry) = c.emu.realm(name) else {
        return realm_not_found();
    };
    match crate::realm::Realm::import(&entry.source, Some(name), &c.emu.keys) {
        Ok(fresh) => {
            *entry.realm.write() = fresh;
            no_content()
        }
        Err(e) => json_response(500, &json!({"error": e})),
    }
}

async fn clock(c: Call) -> Response {
    let Some(entry) = c.emu.realm(c.param("name")) else {
        return realm_not_found();
    };
    let offset = entry.realm.read().clock_offset_ms / 1000;
    ok_json(&json!({"offsetSeconds": offset}))
}

async fn set_clock(c: Call) -> Response {
    let Some(entry) = c.emu.realm(c.param("name")) else {
        return realm_not_found();
    };
    match serde_json::from_slice::<ClockRequest>(&c.req.body) {
        Ok(clock) => {
            entry.realm.write().clock_offset_ms = clock.offset_seconds * 1000;
            no_content()
        }
        Err(_) => bad_request("expected {\"offsetSeconds\": n}"),
    }
}

async fn bulk(c: Call) -> Response {
    bulk_users(&c.emu, &c.req, c.param("name"))
}

/// What an operator does to send this realm's events to a receiver (local stack set-up): the
/// subscription (the extension's webhook object; one per URL, so running the set-up again
/// replaces it) and the `ext-event-webhook` listener turned on.
async fn webhook(c: Call) -> Response {
    let Some(entry) = c.emu.realm(c.param("name")) else {
        return realm_not_found();
    };
    let mut realm = entry.realm.write();
    if let Ok(url) = serde_json::from_slice::<Value>(&c.req.body).map(|v| v["url"].clone()) {
        realm.webhooks.retain(|w| json!(w.url) != url);
    }
    match crate::admin::webhooks::subscribe(&mut realm, &c.req.body, "") {
        Ok(id) => {
            let listener = crate::webhook_sender::LISTENER.to_owned();
            if !realm.settings.events_listeners.contains(&listener) {
                realm.settings.events_listeners.push(listener);
            }
            json_response(201, &json!({"id": id}))
        }
        Err(refused) => refused,
    }
}

async fn add_fault(c: Call) -> Response {
    match serde_json::from_slice::<FaultRule>(&c.req.body) {
        Ok(rule) if rule.drop && !rule.after => {
            bad_request("bad fault rule: `drop` loses an answer, so it needs `after`")
        }
        Ok(mut rule) => {
            rule.id = new_id();
            rule.hits = 0;
            let id = rule.id.clone();
            c.emu.faults.lock().push(rule);
            json_response(201, &json!({"id": id}))
        }
        Err(e) => bad_request(&format!("bad fault rule: {e}")),
    }
}

async fn list_faults(c: Call) -> Response {
    ok_json(&serde_json::to_value(&*c.emu.faults.lock()).unwrap_or(json!([])))
}

async fn clear_faults(c: Call) -> Response {
    c.emu.faults.lock().clear();
    no_content()
}

async fn remove_fault(c: Call) -> Response {
    let mut rules = c.emu.faults.lock();
    let before = rules.len();
    rules.retain(|r| r.id != c.param("id"));
    if rules.len() < before {
        no_content()
    } else {
        empty(404)
    }
}

async fn stats(c: Call) -> Response {
    ok_json(&json!(c.emu.stats()))
}

async fn logouts_sent(c: Call) -> Response {
    ok_json(&json!(c.emu.logouts_sent.list()))
}

async fn clear_logouts_sent(c: Call) -> Response {
    c.emu.logouts_sent.clear();
    no_content()
}

async fn clear_stats(c: Call) -> Response {
    c.emu.clear_stats();
    no_content()
}

/// Create `count` users fast: `{prefix}{n:06}` with email, names and an optional shared password.
fn bulk_users(emu: &Emulator, req: &Req, name: &str) -> Response {
    let Some(entry) = emu.realm(name) else {
        return json_response(404, &json!({"error": "realm not found"}));
    };
    let spec: BulkUsers = match serde_json::from_slice(&req.body) {
        Ok(s) => s,
        Err(e) => return bad_request(&format!("bad bulk request: {e}")),
    };
    let hash = spec.password.as_deref().map(|p| emu.keys.hash_password(p));
    let mut realm = entry.realm.write();
    let mut groups = std::collections::BTreeSet::new();
    for path in &spec.groups {
        match realm.group_by_path(path) {
            Some(g) => {
                groups.insert(g.id.clone());
            }
            None => return bad_request(&format!("group {path} not found")),
        }
    }
    let mut roles: std::collections::BTreeSet<String> = spec.realm_roles.iter().cloned().collect();
    roles.insert(realm.settings.default_role.clone());
    let now = realm.now_ms();
    let mut created = 0;
    for n in spec.start..spec.start + spec.count {
        let username = format!("{}{n:06}", spec.prefix.to_lowercase());
        if realm.users.contains_key(&username) {
            continue;
        }
        realm.insert_user(User {
            id: new_id(),
            email: Some(format!("{username}@example.com")),
            first_name: Some(format!("First{n}")),
            last_name: Some(format!("Last{n}")),
            email_verified: true,
            enabled: spec.enabled,
            created_ms: now,
            attributes: spec.attributes.clone(),
            password_hash: hash.clone(),
            realm_roles: roles.clone(),
            groups: groups.clone(),
            username,
            ..User::default()
        });
        created += 1;
    }
    json_response(201, &json!({"created": created}))
}

#[cfg(test)]
mod tests {
    use super::merge_patch;
    use serde_json::json;

    #[test]
    fn merge_patch_merges_objects_and_replaces_the_rest() {
        let mut v = json!({"a": {"b": 1, "c": 2}, "d": [1], "e": 1});
        merge_patch(
            &mut v,
            &json!({"a": {"b": 5, "c": null}, "d": [2], "f": true}),
        );
        assert_eq!(v, json!({"a": {"b": 5}, "d": [2], "e": 1, "f": true}));
    }
}
