//! The test-control API under `/_emulator/`: health, reset, realm clones (so parallel tests never
//! share state), fault and rate-limit rules, a per-realm clock offset, bulk user creation and
//! request counters. Nothing here exists in Keycloak; clients never call it in production.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::response::Response;
use axum::routing::{delete, get, post};
use axum::Router;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::http::{empty, json_response, no_content, ok_json, with_header, Call, Req};
use crate::realm::{new_id, User};
use crate::{method_not_allowed, Emulator};

/// A rule applied to matching requests before Keycloak logic runs.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FaultRule {
    #[serde(default)]
    pub id: String,
    /// HTTP method to match; any when absent.
    pub method: Option<String>,
    /// Path glob, `*` matching any run of characters (slashes included).
    pub path: String,
    /// Only requests whose body contains this text (e.g. `username=dave` on the token endpoint).
    pub body_contains: Option<String>,
    /// Only requests whose raw query string contains this text (e.g. `first=100&`).
    pub query_contains: Option<String>,
    /// Status to answer with; absent means "only add latency".
    pub status: Option<u16>,
    /// JSON body of the fault response (default: a Keycloak-style error for the status).
    pub body: Option<Value>,
    /// How many matching requests the rule affects; unlimited when absent.
    pub times: Option<u64>,
    #[serde(default)]
    pub latency_ms: u64,
    /// Rate limit: requests per second let through before the rule answers (429 by default).
    pub per_second: Option<u64>,
    /// `Retry-After` seconds on the fault response.
    pub retry_after: Option<u64>,
    #[serde(default)]
    pub hits: u64,
    #[serde(skip)]
    window: Option<(Instant, u64)>,
}

pub enum FaultOutcome {
    None,
    Delay(Duration),
    Respond(Response, Duration),
}

fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || !text[first.len()..].ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

pub fn apply_faults(emu: &Emulator, req: &Req) -> FaultOutcome {
    let mut rules = emu.faults.lock();
    let Some(idx) = rules.iter().position(|r| {
        r.method
            .as_deref()
            .is_none_or(|m| m.eq_ignore_ascii_case(req.method.as_str()))
            && glob(&r.path, &req.path)
            && r.body_contains
                .as_deref()
                .is_none_or(|needle| String::from_utf8_lossy(&req.body).contains(needle))
            && r.query_contains
                .as_deref()
                .is_none_or(|needle| req.raw_query.contains(needle))
    }) else {
        return FaultOutcome::None;
    };
    let rule = &mut rules[idx];
    if let Some(limit) = rule.per_second {
        let now = Instant::now();
        let (start, count) = match rule.window {
            Some((s, c)) if now.duration_since(s) < Duration::from_secs(1) => (s, c + 1),
            _ => (now, 1),
        };
        rule.window = Some((start, count));
        if count <= limit {
            return FaultOutcome::None;
        }
    }
    rule.hits += 1;
    let delay = Duration::from_millis(rule.latency_ms);
    let outcome = if rule.status.is_none() && rule.per_second.is_none() {
        FaultOutcome::Delay(delay)
    } else {
        let status = rule.status.unwrap_or(429);
        let body = rule.body.clone().unwrap_or_else(|| default_body(status));
        let mut resp = json_response(status, &body);
        if let Some(secs) = rule.retry_after {
            resp = with_header(resp, "retry-after", &secs.to_string());
        }
        FaultOutcome::Respond(resp, delay)
    };
    if let Some(t) = rule.times.as_mut() {
        *t = t.saturating_sub(1);
        if *t == 0 {
            rules.remove(idx);
        }
    }
    outcome
}

fn default_body(status: u16) -> Value {
    match status {
        429 => json!({"error": "too_many_requests"}),
        500..=599 => {
            json!({"error": "unknown_error", "error_description": "For more on this error consult the server log."})
        }
        s => json!({"error": format!("HTTP {s}")}),
    }
}

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
            let listener = crate::admin::webhooks::LISTENER.to_owned();
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

async fn clear_stats(c: Call) -> Response {
    c.emu.clear_stats();
    no_content()
}

impl serde::Serialize for FaultRule {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        json!({
            "id": self.id, "method": self.method, "path": self.path, "bodyContains": self.body_contains, "queryContains": self.query_contains, "status": self.status,
            "body": self.body, "times": self.times, "latencyMs": self.latency_ms,
            "perSecond": self.per_second, "retryAfter": self.retry_after, "hits": self.hits,
        })
        .serialize(s)
    }
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
    use super::{glob, merge_patch};
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

    #[test]
    fn glob_matches_stars_across_slashes() {
        assert!(glob("/admin/realms/*/users", "/admin/realms/t1/users"));
        assert!(glob("*/users*", "/admin/realms/t1/users/abc"));
        assert!(!glob("/admin/realms/*/users", "/admin/realms/t1/users/abc"));
        assert!(glob(
            "/realms/t1/protocol/openid-connect/token",
            "/realms/t1/protocol/openid-connect/token"
        ));
    }
}
