//! Users (contract §4.1–§4.6, §4.9, §7.1): list, count, get, create, update, delete, password
//! reset, logout, sessions; the brute-force status of a user.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::response::Response;
use axum::routing::{delete, get, post, put};
use axum::Router;
use serde::de::{self, Deserializer};
use serde::Deserialize;
use serde_json::{json, Value};

use super::caller::{find_user, managed_user, paging, require, viewable_user, Admin, Caller};
use crate::brute_force::PERMANENT_LOCKOUT_ATTRIBUTE;
use crate::emulator::Emulator;
use crate::http::{
    cannot_parse_json, error_message, field_errors, forbidden, json_response, no_content,
    not_found, oauth_error, ok_json, with_header, Req,
};
use crate::realm::{new_id, Realm, User};

pub(super) fn router() -> Router<Arc<Emulator>> {
    Router::new()
        .route("/users", get(list).post(create))
        .route("/users/count", get(count))
        .route("/users/{id}", get(get_one).put(update).delete(remove))
        .route("/users/{id}/reset-password", put(reset))
        .route("/users/{id}/logout", post(logout))
        .route("/users/{id}/sessions", get(sessions))
        .route("/sessions/{sid}", delete(delete_session))
        .route("/logout-all", post(logout_all))
        .route(
            "/attack-detection/brute-force/users",
            delete(clear_all_failures),
        )
        .route(
            "/attack-detection/brute-force/users/{id}",
            get(failures).delete(clear_failures),
        )
}

async fn list(a: Admin) -> Response {
    a.read(|realm, caller| list_users(realm, &a.req, caller))
}

async fn count(a: Admin) -> Response {
    a.read(|realm, caller| {
        require(caller.query_users())?;
        let filter = UserFilter::from_req(&a.req)?;
        let n = if !caller.view_users() {
            0
        } else if filter.is_unfiltered() {
            realm.listing_order().len()
        } else {
            realm.users.values().filter(|u| filter.matches(u)).count()
        };
        Ok(json_response(200, &json!(n)))
    })
}

async fn get_one(a: Admin) -> Response {
    a.read(|realm, caller| {
        require(caller.query_users())?;
        let user = find_user(realm, caller, a.param("id"))?;
        require(caller.view_users())?;
        let mut rep = realm.user_json(user, false, caller.manage_users());
        // `UserResource#getUser`: a user in a brute-force lockout reads as disabled.
        if realm.temporarily_locked(&user.id) {
            rep["enabled"] = json!(false);
        }
        Ok(ok_json(&rep))
    })
}

async fn create(a: Admin) -> Response {
    a.write(|realm, caller| create_user(&a.emu, realm, &a.req, caller))
}

async fn update(a: Admin) -> Response {
    a.write(|realm, caller| update_user(&a.emu, realm, &a.req, caller, a.param("id")))
}

async fn remove(a: Admin) -> Response {
    a.write(|realm, caller| {
        let id = managed_user(realm, caller, a.param("id"))?;
        realm.delete_user(&id);
        realm.admin_event(&caller.auth, "DELETE", "USER", &format!("users/{id}"), None);
        Ok(no_content())
    })
}

async fn reset(a: Admin) -> Response {
    a.write(|realm, caller| reset_password(&a.emu, realm, &a.req, caller, a.param("id")))
}

async fn logout(a: Admin) -> Response {
    let iss = a.issuer();
    a.write_logging_out(|realm, caller| {
        let id = managed_user(realm, caller, a.param("id"))?;
        let now = realm.now_s();
        if let Some(u) = realm.user_mut(&id) {
            u.not_before = now;
        }
        realm.log_out_user(&id, &iss);
        realm.admin_event(
            &caller.auth,
            "ACTION",
            "USER",
            &format!("users/{id}/logout"),
            None,
        );
        Ok(no_content())
    })
    .await
}

async fn sessions(a: Admin) -> Response {
    a.read(|realm, caller| {
        let user = viewable_user(realm, caller, a.param("id"))?;
        Ok(ok_json(&json!(user_sessions(realm, user))))
    })
}

async fn delete_session(a: Admin) -> Response {
    let iss = a.issuer();
    a.write_logging_out(|realm, caller| {
        require(caller.manage_users())?;
        let sid = a.param("sid");
        realm
            .log_out_session(sid, &iss)
            .ok_or_else(|| not_found("Sesssion not found"))?;
        realm.admin_event(
            &caller.auth,
            "DELETE",
            "USER_SESSION",
            &format!("sessions/{sid}"),
            Some(json!({"offline": false})),
        );
        Ok(no_content())
    })
    .await
}

async fn logout_all(a: Admin) -> Response {
    a.write(|realm, caller| {
        require(caller.manage_users())?;
        realm.sessions.clear();
        realm.user_sessions.clear();
        Ok(ok_json(&json!({})))
    })
}

async fn failures(a: Admin) -> Response {
    a.read(|realm, caller| {
        require(caller.view_users())?;
        let status = match realm.login_failures.get(a.param("id")) {
            Some(f) if realm.settings.brute_force.protected => f.status(realm.now_ms()),
            _ => crate::brute_force::clean_status(),
        };
        Ok(ok_json(&status))
    })
}

async fn clear_failures(a: Admin) -> Response {
    a.write(|realm, caller| {
        require(caller.manage_users())?;
        let id = a.param("id");
        realm.login_failures.remove(id);
        let path = format!("attack-detection/brute-force/users/{id}");
        realm.admin_event(&caller.auth, "DELETE", "USER_LOGIN_FAILURE", &path, None);
        Ok(no_content())
    })
}

async fn clear_all_failures(a: Admin) -> Response {
    a.write(|realm, caller| {
        require(caller.manage_users())?;
        realm.login_failures.clear();
        let path = "attack-detection/brute-force/users";
        realm.admin_event(&caller.auth, "DELETE", "USER_LOGIN_FAILURE", path, None);
        Ok(no_content())
    })
}

fn user_sessions(realm: &Realm, user: &User) -> Vec<Value> {
    let now = realm.now_ms();
    let mut sessions: Vec<_> = realm
        .user_sessions
        .get(&user.id)
        .into_iter()
        .flatten()
        .filter_map(|sid| realm.sessions.get(sid))
        .filter(|s| {
            now <= s.last_access_ms + realm.settings.sso_idle * 1000
                && now <= s.start_ms + realm.settings.sso_max * 1000
        })
        .collect();
    sessions.sort_by_key(|s| s.start_ms);
    sessions
        .into_iter()
        .map(|s| {
            json!({"id": s.id, "username": user.username, "userId": user.id, "ipAddress": s.ip,
                   "start": s.start_ms, "lastAccess": s.last_access_ms, "rememberMe": false,
                   "clients": s.clients, "transientUser": false})
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// User search (contract §4.3)

enum Term {
    Prefix(String),
    Infix(String),
    Exact(String),
}

struct UserFilter {
    search: Option<Vec<Term>>,
    ids: Option<Vec<String>>,
    fields: Vec<(&'static str, String)>,
    attributes: Vec<(String, String)>,
    fields_exact: bool,
    attributes_exact: bool,
    enabled: Option<bool>,
    email_verified: Option<bool>,
    include_service_accounts: bool,
}

impl UserFilter {
    fn from_req(req: &Req) -> Result<Self, Response> {
        let exact = req.bool_param("exact");
        let enabled = req.bool_param("enabled");
        let email_verified = req.bool_param("emailVerified");
        if let Some(search) = req.param("search") {
            let search = search.trim();
            if let Some(ids) = search.strip_prefix("id:") {
                return Ok(UserFilter {
                    search: None,
                    ids: Some(ids.split_whitespace().map(str::to_owned).collect()),
                    fields: vec![],
                    attributes: vec![],
                    fields_exact: true,
                    attributes_exact: true,
                    enabled,
                    email_verified,
                    include_service_accounts: false,
                });
            }
            let terms = search
                .split_whitespace()
                .map(|t| {
                    let t = t.to_lowercase();
                    if t.len() >= 2 && t.starts_with('"') && t.ends_with('"') {
                        Term::Exact(t[1..t.len() - 1].to_owned())
                    } else if t.len() >= 2 && t.starts_with('*') && t.ends_with('*') {
                        Term::Infix(t[1..t.len() - 1].to_owned())
                    } else {
                        Term::Prefix(t.trim_end_matches('*').to_owned())
                    }
                })
                .collect();
            return Ok(UserFilter {
                search: Some(terms),
                ids: None,
                fields: vec![],
                attributes: vec![],
                fields_exact: false,
                attributes_exact: true,
                enabled,
                email_verified,
                include_service_accounts: false,
            });
        }
        let mut fields = Vec::new();
        for name in ["username", "email", "firstName", "lastName"] {
            if let Some(v) = req.param(name) {
                fields.push((name, v.to_lowercase()));
            }
        }
        let mut attributes = Vec::new();
        if let Some(q) = req.param("q") {
            for (k, v) in parse_q(q) {
                attributes.push((k, v.to_lowercase()));
            }
        }
        let any_criteria = !fields.is_empty()
            || !attributes.is_empty()
            || enabled.is_some()
            || email_verified.is_some()
            || exact.is_some();
        Ok(UserFilter {
            search: None,
            ids: None,
            fields,
            attributes,
            // The name fields are substring matches unless exact=true; `q` is exact unless
            // exact=false (26.0.8+/26.1+).
            fields_exact: exact.unwrap_or(false),
            attributes_exact: exact.unwrap_or(true),
            enabled,
            email_verified,
            include_service_accounts: any_criteria,
        })
    }

    /// No criteria at all: every user but the service accounts.
    fn is_unfiltered(&self) -> bool {
        self.search.is_none()
            && self.ids.is_none()
            && self.fields.is_empty()
            && self.attributes.is_empty()
            && self.enabled.is_none()
            && self.email_verified.is_none()
            && !self.include_service_accounts
    }

    fn matches(&self, u: &User) -> bool {
        if self.enabled.is_some_and(|e| e != u.enabled)
            || self.email_verified.is_some_and(|e| e != u.email_verified)
        {
            return false;
        }
        if u.service_account_client_id.is_some() && !self.include_service_accounts {
            return false;
        }
        if let Some(ids) = &self.ids {
            return ids.contains(&u.id);
        }
        let lower = |x: &Option<String>| x.as_deref().map(str::to_lowercase);
        if let Some(terms) = &self.search {
            let values = [
                Some(u.username.clone()),
                lower(&u.email),
                lower(&u.first_name),
                lower(&u.last_name),
            ];
            return terms.iter().all(|t| {
                values.iter().flatten().any(|v| match t {
                    Term::Prefix(p) => v.starts_with(p.as_str()),
                    Term::Infix(p) => v.contains(p.as_str()),
                    Term::Exact(p) => v == p,
                })
            });
        }
        for (name, wanted) in &self.fields {
            let value = match *name {
                "username" => Some(u.username.clone()),
                "email" => lower(&u.email),
                "firstName" => lower(&u.first_name),
                _ => lower(&u.last_name),
            };
            let ok = value.is_some_and(|v| {
                if self.fields_exact {
                    v == *wanted
                } else {
                    v.contains(wanted.as_str())
                }
            });
            if !ok {
                return false;
            }
        }
        for (key, wanted) in &self.attributes {
            let ok = u.attributes.get(key).is_some_and(|vals| {
                vals.iter().any(|v| {
                    let v = v.to_lowercase();
                    if self.attributes_exact {
                        v == *wanted
                    } else {
                        v.contains(wanted.as_str())
                    }
                })
            });
            if !ok {
                return false;
            }
        }
        true
    }
}

/// `q=key1:value1 key2:"value with spaces"`.
fn parse_q(q: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = q.trim();
    while let Some((key, after)) = rest.split_once(':') {
        let after = after.trim_start();
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            match quoted.split_once('"') {
                Some((v, n)) => (v, n),
                None => (quoted, ""),
            }
        } else {
            match after.split_once(' ') {
                Some((v, n)) => (v, n),
                None => (after, ""),
            }
        };
        out.push((key.trim().to_owned(), value.to_owned()));
        rest = next.trim_start();
    }
    out
}

fn list_users(realm: &Realm, req: &Req, caller: &Caller) -> Result<Response, Response> {
    require(caller.query_users())?;
    let filter = UserFilter::from_req(req)?;
    let (first, max) = paging(req, 100);
    if !caller.view_users() || max == 0 {
        return Ok(ok_json(&json!([])));
    }
    let brief = req.bool_param("briefRepresentation").unwrap_or(false);
    let manage = caller.manage_users();
    let mut body = Vec::with_capacity(max.min(1000) * 400);
    body.push(b'[');
    let mut write = |i: usize, u: &User| {
        if i > 0 {
            body.push(b',');
        }
        // Writing to a Vec cannot fail.
        let _ = serde_json::to_writer(&mut body, &realm.user_view(u, brief, manage));
    };
    if filter.is_unfiltered() {
        let order = realm.listing_order();
        let end = first.saturating_add(max).min(order.len());
        for (i, name) in order.get(first..end).unwrap_or(&[]).iter().enumerate() {
            if let Some(u) = realm.users.get(name) {
                write(i, u);
            }
        }
    } else {
        for (i, u) in realm
            .users
            .values()
            .filter(|u| filter.matches(u))
            .skip(first)
            .take(max)
            .enumerate()
        {
            write(i, u);
        }
    }
    body.push(b']');
    let mut resp = Response::new(axum::body::Body::from(body));
    resp.headers_mut().insert(
        "content-type",
        axum::http::HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}

// ---------------------------------------------------------------------------------------------
// User writes

fn string_or_list<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<BTreeMap<String, Vec<String>>>, D::Error> {
    let raw: Option<BTreeMap<String, Value>> = Option::deserialize(d)?;
    let Some(raw) = raw else { return Ok(None) };
    let mut out = BTreeMap::new();
    for (k, v) in raw {
        let vals = match v {
            Value::String(s) => vec![s],
            Value::Null => vec![],
            Value::Array(items) => items
                .into_iter()
                .map(|i| match i {
                    Value::String(s) => Ok(s),
                    other => Ok(other.to_string()),
                })
                .collect::<Result<_, D::Error>>()?,
            _ => return Err(de::Error::custom("attribute values must be strings")),
        };
        out.insert(k, vals);
    }
    Ok(Some(out))
}

/// Every field of Keycloak 26's UserRepresentation; anything else is refused like Jackson does.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code)]
struct UserRep {
    id: Option<String>,
    username: Option<String>,
    first_name: Option<String>,
    last_name: Option<String>,
    email: Option<String>,
    email_verified: Option<bool>,
    #[serde(default, deserialize_with = "string_or_list")]
    attributes: Option<BTreeMap<String, Vec<String>>>,
    user_profile_metadata: Option<Value>,
    created_timestamp: Option<i64>,
    enabled: Option<bool>,
    totp: Option<bool>,
    federation_link: Option<String>,
    service_account_client_id: Option<String>,
    credentials: Option<Vec<CredentialRep>>,
    disableable_credential_types: Option<Value>,
    required_actions: Option<Vec<String>>,
    federated_identities: Option<Value>,
    realm_roles: Option<Value>,
    client_roles: Option<Value>,
    client_consents: Option<Value>,
    not_before: Option<i64>,
    groups: Option<Vec<String>>,
    access: Option<Value>,
    #[serde(rename = "self")]
    self_link: Option<String>,
    origin: Option<String>,
    application_roles: Option<Value>,
    social_links: Option<Value>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code)]
struct CredentialRep {
    id: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    user_label: Option<String>,
    created_date: Option<i64>,
    secret_data: Option<String>,
    credential_data: Option<String>,
    priority: Option<i64>,
    value: Option<String>,
    temporary: Option<bool>,
    device: Option<String>,
    hashed_salted_value: Option<String>,
    salt: Option<String>,
    hash_iterations: Option<i64>,
    counter: Option<i64>,
    algorithm: Option<String>,
    digits: Option<i64>,
    period: Option<i64>,
    config: Option<Value>,
}

const KNOWN_REQUIRED_ACTIONS: &[&str] = &[
    "CONFIGURE_TOTP",
    "TERMS_AND_CONDITIONS",
    "UPDATE_PASSWORD",
    "UPDATE_PROFILE",
    "VERIFY_EMAIL",
    "VERIFY_PROFILE",
    "delete_account",
    "update_user_locale",
    "webauthn-register",
    "webauthn-register-passwordless",
    "CONFIGURE_RECOVERY_AUTHN_CODES",
    "UPDATE_EMAIL",
    "delete_credential",
];

fn password_credential(rep: &UserRep) -> Option<CredentialRep> {
    rep.credentials
        .iter()
        .flatten()
        .find(|c| c.kind.as_deref().unwrap_or("password") == "password")
        .cloned()
}

/// Profile validation of the identity fields and custom attributes, as field errors.
fn validate_profile(realm: &Realm, user: &User) -> Result<(), Response> {
    let identity = [
        ("username", Some(user.username.as_str())),
        ("email", user.email.as_deref()),
        ("firstName", user.first_name.as_deref()),
        ("lastName", user.last_name.as_deref()),
    ];
    let custom = user
        .attributes
        .iter()
        .flat_map(|(k, vals)| vals.iter().map(move |v| (k.as_str(), Some(v.as_str()))));
    let mut errors = Vec::new();
    for (name, value) in identity.into_iter().chain(custom) {
        let Some(v) = value else { continue };
        if v.chars().count() > 2048 && !realm.profile.is_declared(name) {
            errors.push(json!({"field": name, "errorMessage": "error-invalid-length", "params": [name, 0, 2048]}));
        } else if let Some(e) = realm.profile.validate(name, v) {
            errors.push(e);
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(field_errors(errors))
    }
}

fn check_password(realm: &Realm, user: &User, password: &str) -> Result<(), Response> {
    match realm
        .settings
        .password_policy
        .check(password, &user.username, user.email.as_deref())
    {
        Some((key, message)) => Err(oauth_error(400, key, Some(&message))),
        None => Ok(()),
    }
}

/// `up-duplicate-username` (contract §13): another user has this username, or (email login on)
/// the username has an `@` after its first character and another user has it as email.
fn username_taken(realm: &Realm, username: &str, except: &str) -> bool {
    let other = |id: &str| id != except;
    realm.users.get(username).is_some_and(|u| other(&u.id))
        || (realm.settings.login_with_email_allowed
            && username.find('@').is_some_and(|i| i > 0)
            && realm.emails.get(username).is_some_and(|id| other(id)))
}

/// `up-duplicate-email` (contract §13), checked for a new or changed email only: another user
/// has this email (duplicates not allowed), or (email login on) has it as username.
fn email_taken(realm: &Realm, email: Option<&str>, except: &str) -> bool {
    let Some(e) = email else { return false };
    let other = |id: &str| id != except;
    (!realm.settings.duplicate_emails_allowed && realm.emails.get(e).is_some_and(|id| other(id)))
        || (realm.settings.login_with_email_allowed
            && realm.users.get(e).is_some_and(|u| other(&u.id)))
}

fn masked(rep: &Value) -> Value {
    let mut rep = rep.clone();
    if let Some(creds) = rep.get_mut("credentials").and_then(Value::as_array_mut) {
        for c in creds {
            if c.get("value").is_some() {
                c["value"] = json!("**********");
            }
        }
    }
    rep
}

fn create_user(
    emu: &Emulator,
    realm: &mut Realm,
    req: &Req,
    caller: &Caller,
) -> Result<Response, Response> {
    require(caller.manage_users())?;
    let raw: Value = serde_json::from_slice(&req.body).map_err(|_| cannot_parse_json())?;
    let rep: UserRep = serde_json::from_value(raw.clone()).map_err(|_| cannot_parse_json())?;
    let username = rep
        .username
        .as_deref()
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .ok_or_else(|| error_message(400, "User name is missing"))?
        .to_lowercase();
    let email = rep
        .email
        .as_deref()
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(str::to_lowercase);
    if username_taken(realm, &username, "") {
        return Err(error_message(409, "User exists with same username"));
    }
    if email_taken(realm, email.as_deref(), "") {
        return Err(error_message(409, "User exists with same email"));
    }
    let mut groups = BTreeSet::new();
    for path in rep.groups.iter().flatten() {
        let g = realm
            .group_by_path(path)
            .ok_or_else(|| error_message(400, &format!("Group {path} not found")))?;
        groups.insert(g.id.clone());
    }
    let mut required_actions: Vec<String> = rep
        .required_actions
        .iter()
        .flatten()
        .filter(|a| KNOWN_REQUIRED_ACTIONS.contains(&a.as_str()))
        .cloned()
        .collect();
    let id = new_id();
    let mut user = User {
        id: id.clone(),
        username,
        email,
        first_name: rep.first_name.clone().filter(|s| !s.is_empty()),
        last_name: rep.last_name.clone().filter(|s| !s.is_empty()),
        email_verified: rep.email_verified.unwrap_or(false),
        enabled: rep.enabled.unwrap_or(false),
        created_ms: realm.now_ms(),
        attributes: realm
            .profile
            .writable_attributes(rep.attributes.clone().unwrap_or_default()),
        realm_roles: BTreeSet::from([realm.settings.default_role.clone()]),
        groups,
        ..User::default()
    };
    validate_profile(realm, &user)?;
    if let Some(cred) = password_credential(&rep) {
        let value = cred.value.clone().unwrap_or_default();
        check_password(realm, &user, &value)?;
        user.password_hash = Some(emu.keys.hash_password(&value));
        if cred.temporary.unwrap_or(false) {
            required_actions.push("UPDATE_PASSWORD".into());
        }
    }
    required_actions.dedup();
    user.required_actions = required_actions;
    realm.insert_user(user);
    realm.admin_event(
        &caller.auth,
        "CREATE",
        "USER",
        &format!("users/{id}"),
        Some(masked(&raw)),
    );
    let location = format!("{}{}/{}", req.base_url, req.path.trim_end_matches('/'), id);
    Ok(with_header(crate::http::empty(201), "location", &location))
}

fn update_user(
    emu: &Emulator,
    realm: &mut Realm,
    req: &Req,
    caller: &Caller,
    id: &str,
) -> Result<Response, Response> {
    let id = managed_user(realm, caller, id)?;
    let raw: Value = serde_json::from_slice(&req.body).map_err(|_| cannot_parse_json())?;
    let rep: UserRep = serde_json::from_value(raw.clone()).map_err(|_| cannot_parse_json())?;
    let mut user = realm.user(&id).cloned().ok_or_else(forbidden)?;
    match rep.username.as_deref().map(str::to_lowercase) {
        None if realm.settings.edit_username_allowed => {
            return Err(error_message(400, "User name is missing"))
        }
        None => {}
        Some(u) if u == user.username => {}
        Some(u) if realm.settings.edit_username_allowed => {
            if username_taken(realm, &u, &id) {
                return Err(error_message(409, "User exists with same username"));
            }
            user.username = u;
        }
        Some(_) => {
            return Err(field_errors(vec![json!({
                "field": "username", "errorMessage": "readOnlyUsernameMessage", "params": ["username"]
            })]))
        }
    }
    let clean = |v: &Option<String>| v.clone().filter(|s| !s.trim().is_empty());
    if let Some(attrs) = &rep.attributes {
        // Full replace: whatever is not sent is removed (Keycloak 24+).
        user.email = clean(&rep.email).map(|e| e.to_lowercase());
        user.first_name = clean(&rep.first_name);
        user.last_name = clean(&rep.last_name);
        user.attributes = realm.profile.writable_attributes(attrs.clone());
    } else {
        if rep.email.is_some() {
            user.email = clean(&rep.email).map(|e| e.to_lowercase());
        }
        if rep.first_name.is_some() {
            user.first_name = clean(&rep.first_name);
        }
        if rep.last_name.is_some() {
            user.last_name = clean(&rep.last_name);
        }
    }
    let email_changed = realm
        .user(&id)
        .is_none_or(|before| before.email != user.email);
    if email_changed && email_taken(realm, user.email.as_deref(), &id) {
        return Err(error_message(409, "User exists with same email"));
    }
    validate_profile(realm, &user)?;
    if let Some(e) = rep.email_verified {
        user.email_verified = e;
    }
    if let Some(actions) = &rep.required_actions {
        user.required_actions = actions
            .iter()
            .filter(|a| KNOWN_REQUIRED_ACTIONS.contains(&a.as_str()))
            .cloned()
            .collect();
    }
    if let Some(cred) = password_credential(&rep) {
        let value = cred.value.clone().unwrap_or_default();
        check_password(realm, &user, &value)?;
        user.password_hash = Some(emu.keys.hash_password(&value));
    }
    let disabling = rep.enabled == Some(false) && user.enabled;
    if let Some(e) = rep.enabled {
        user.enabled = e;
    }
    // `enabled: true` clears brute-force failures and a permanent lockout (contract §4.5).
    let cleared = rep.enabled == Some(true)
        && (realm.login_failures.remove(&id).is_some()
            | user
                .attributes
                .remove(PERMANENT_LOCKOUT_ATTRIBUTE)
                .is_some());
    realm.replace_user(user);
    if cleared {
        let path = format!("users/{id}");
        realm.admin_event(&caller.auth, "DELETE", "USER_LOGIN_FAILURE", &path, None);
    }
    if disabling {
        realm.end_user_sessions(&id);
    }
    realm.admin_event(
        &caller.auth,
        "UPDATE",
        "USER",
        &format!("users/{id}"),
        Some(masked(&raw)),
    );
    Ok(no_content())
}

fn reset_password(
    emu: &Emulator,
    realm: &mut Realm,
    req: &Req,
    caller: &Caller,
    id: &str,
) -> Result<Response, Response> {
    let id = managed_user(realm, caller, id)?;
    let cred: CredentialRep = req.json()?;
    let value = cred
        .value
        .clone()
        .ok_or_else(|| oauth_error(400, "No password provided", None))?;
    if value.trim().is_empty() {
        return Err(oauth_error(400, "Empty password not allowed", None));
    }
    let user = realm.user(&id).cloned().ok_or_else(forbidden)?;
    check_password(realm, &user, &value)?;
    let hash = emu.keys.hash_password(&value);
    let temporary = cred.temporary.unwrap_or(false);
    if let Some(u) = realm.user_mut(&id) {
        u.password_hash = Some(hash);
        u.required_actions.retain(|a| a != "UPDATE_PASSWORD");
        if temporary {
            u.required_actions.push("UPDATE_PASSWORD".into());
        }
    }
    realm.admin_event(
        &caller.auth,
        "ACTION",
        "USER",
        &format!("users/{id}/reset-password"),
        Some(json!({"type": "password", "value": "**********", "temporary": temporary})),
    );
    Ok(no_content())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_queries_split_on_spaces_and_honour_quotes() {
        assert_eq!(
            parse_q(r#"dept:eng title:"Head of QA""#),
            vec![
                ("dept".to_owned(), "eng".to_owned()),
                ("title".to_owned(), "Head of QA".to_owned())
            ]
        );
    }
}
