//! The test-control API under `/_emulator/`: health, reset, realm clones (so parallel tests never
//! share state), fault and rate-limit rules, a per-realm clock offset, bulk user creation and
//! request counters. Nothing here exists in Keycloak; clients never call it in production.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::Method;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::http::{empty, json_response, no_content, ok_json, with_header, Req};
use crate::realm::{new_id, User};
use crate::{method_not_allowed, no_such_resource, Emulator};

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

pub fn handle(emu: &Emulator, req: &Req, rest: &[&str]) -> Response {
    let m = &req.method;
    match rest {
        ["health"] => ok_json(&json!({"status": "UP", "realms": emu.realm_names()})),
        ["reset"] if m == Method::POST => match emu.reset() {
            Ok(()) => no_content(),
            Err(e) => json_response(500, &json!({"error": e})),
        },
        ["realms"] if m == Method::POST => {
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
        ["realms", name] if m == Method::DELETE => {
            if emu.remove_realm(name) {
                no_content()
            } else {
                json_response(404, &json!({"error": "realm not found"}))
            }
        }
        ["realms", name, "reset"] if m == Method::POST => {
            let Some(entry) = emu.realm(name) else {
                return json_response(404, &json!({"error": "realm not found"}));
            };
            match crate::realm::Realm::import(&entry.source, Some(name), &emu.keys) {
                Ok(fresh) => {
                    *entry.realm.write() = fresh;
                    no_content()
                }
                Err(e) => json_response(500, &json!({"error": e})),
            }
        }
        ["realms", name, "clock"] => {
            let Some(entry) = emu.realm(name) else {
                return json_response(404, &json!({"error": "realm not found"}));
            };
            if m == Method::GET {
                let offset = entry.realm.read().clock_offset_ms / 1000;
                return ok_json(&json!({"offsetSeconds": offset}));
            }
            if m != Method::PUT {
                return method_not_allowed();
            }
            match serde_json::from_slice::<ClockRequest>(&req.body) {
                Ok(c) => {
                    entry.realm.write().clock_offset_ms = c.offset_seconds * 1000;
                    no_content()
                }
                Err(_) => bad_request("expected {\"offsetSeconds\": n}"),
            }
        }
        ["realms", name, "users", "bulk"] if m == Method::POST => bulk_users(emu, req, name),
        ["faults"] if m == Method::POST => match serde_json::from_slice::<FaultRule>(&req.body) {
            Ok(mut rule) => {
                rule.id = new_id();
                rule.hits = 0;
                let id = rule.id.clone();
                emu.faults.lock().push(rule);
                json_response(201, &json!({"id": id}))
            }
            Err(e) => bad_request(&format!("bad fault rule: {e}")),
        },
        ["faults"] if m == Method::GET => {
            ok_json(&serde_json::to_value(&*emu.faults.lock()).unwrap_or(json!([])))
        }
        ["faults"] if m == Method::DELETE => {
            emu.faults.lock().clear();
            no_content()
        }
        ["faults", id] if m == Method::DELETE => {
            let mut rules = emu.faults.lock();
            let before = rules.len();
            rules.retain(|r| r.id != *id);
            if rules.len() < before {
                no_content()
            } else {
                empty(404)
            }
        }
        ["stats"] if m == Method::GET => ok_json(&json!(emu.stats())),
        ["stats"] if m == Method::DELETE => {
            emu.clear_stats();
            no_content()
        }
        _ => no_such_resource(),
    }
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
