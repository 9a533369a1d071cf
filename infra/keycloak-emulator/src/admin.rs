//! The admin REST API under `/admin/realms/{realm}` (contract §4–§6): users, role mappings,
//! groups, sessions, events and the user profile. Permissions come from the bearer token's
//! `resource_access.realm-management.roles`, as in Keycloak.

use std::collections::{BTreeMap, BTreeSet};

use axum::http::Method;
use axum::response::Response;
use serde::de::{self, Deserializer};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::http::{
    cannot_parse_json, error_message, field_errors, forbidden, json_response, no_content,
    not_found, oauth_error, ok_json, unauthorized, with_header, Req,
};
use crate::oidc::{active_access_token, issuer};
use crate::realm::{new_id, AuthDetails, Realm, User};
use crate::{method_not_allowed, no_such_resource, Emulator};

/// The caller of an admin request.
pub struct Caller {
    roles: BTreeSet<String>,
    auth: AuthDetails,
}

impl Caller {
    fn has(&self, role: &str) -> bool {
        self.roles.contains(role) || self.roles.contains("realm-admin")
    }
    fn any(&self, roles: &[&str]) -> bool {
        roles.iter().any(|r| self.has(r))
    }
    fn query_users(&self) -> bool {
        self.any(&["query-users", "view-users", "manage-users"])
    }
    fn view_users(&self) -> bool {
        self.any(&["view-users", "manage-users"])
    }
    fn manage_users(&self) -> bool {
        self.has("manage-users")
    }
    fn query_groups(&self) -> bool {
        self.any(&["query-groups", "view-users", "manage-users"])
    }
    fn view_events(&self) -> bool {
        self.any(&["view-events", "manage-events"])
    }
    fn view_realm(&self) -> bool {
        self.any(&["view-realm", "manage-realm"])
    }
    fn list_roles(&self) -> bool {
        self.view_realm()
            || self.roles.iter().any(|r| r.starts_with("query-"))
            || self.query_users()
    }
    fn query_clients(&self) -> bool {
        self.any(&["query-clients", "view-clients", "manage-clients"])
    }
    fn any_admin_role(&self) -> bool {
        !self.roles.is_empty()
    }
}

fn authenticate(emu: &Emulator, realm: &Realm, req: &Req) -> Result<Caller, Response> {
    let token = req
        .header("authorization")
        .and_then(|h| h.strip_prefix("Bearer "))
        .ok_or_else(unauthorized)?;
    let iss = issuer(req, &realm.name);
    let claims = active_access_token(emu, realm, token.trim(), &iss).ok_or_else(unauthorized)?;
    let roles = claims
        .pointer("/resource_access/realm-management/roles")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let azp = claims["azp"].as_str().unwrap_or("");
    Ok(Caller {
        roles,
        auth: AuthDetails {
            client_uuid: realm.client(azp).map(|c| c.id.clone()).unwrap_or_default(),
            user_id: claims["sub"].as_str().unwrap_or("").to_owned(),
            ip: req.remote_ip.clone(),
        },
    })
}

pub fn handle(emu: &Emulator, req: &Req, realm_name: &str, rest: &[&str]) -> Response {
    let Some(entry) = emu.realm(realm_name) else {
        return not_found("Realm not found.");
    };
    let caller = match authenticate(emu, &entry.realm.read(), req) {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    if req.method == Method::GET {
        read(emu, &entry.realm.read(), req, &caller, rest)
    } else {
        write(emu, &mut entry.realm.write(), req, &caller, rest)
    }
}

/// A user by id, or Keycloak's 404 (for callers who may query users) / 403 (for others).
fn find_user<'a>(realm: &'a Realm, caller: &Caller, id: &str) -> Result<&'a User, Response> {
    match realm.user(id) {
        Some(u) => Ok(u),
        None if caller.query_users() => Err(not_found("User not found")),
        None => Err(forbidden()),
    }
}

fn require(ok: bool) -> Result<(), Response> {
    if ok {
        Ok(())
    } else {
        Err(forbidden())
    }
}

fn read(emu: &Emulator, realm: &Realm, req: &Req, caller: &Caller, rest: &[&str]) -> Response {
    let _ = emu;
    let result = (|| -> Result<Response, Response> {
        Ok(match rest {
            ["users"] => list_users(realm, req, caller)?,
            ["users", "count"] => {
                require(caller.query_users())?;
                let filter = UserFilter::from_req(req)?;
                let n = if !caller.view_users() {
                    0
                } else if filter.is_unfiltered() {
                    realm.listing_order().len()
                } else {
                    realm.users.values().filter(|u| filter.matches(u)).count()
                };
                json_response(200, &json!(n))
            }
            ["users", "profile"] => {
                require(caller.any_admin_role())?;
                ok_json(&realm.profile.config)
            }
            ["users", id] => {
                require(caller.query_users())?;
                let user = find_user(realm, caller, id)?;
                require(caller.view_users())?;
                let mut rep = realm.user_json(user, false, caller.manage_users());
                // `UserResource#getUser`: a user in a brute-force lockout reads as disabled.
                if realm.temporarily_locked(&user.id) {
                    rep["enabled"] = json!(false);
                }
                ok_json(&rep)
            }
            ["attack-detection", "brute-force", "users", id] => {
                require(caller.view_users())?;
                let status = match realm.login_failures.get(*id) {
                    Some(f) if realm.settings.brute_force.protected => f.status(realm.now_ms()),
                    _ => crate::brute_force::clean_status(),
                };
                ok_json(&status)
            }
            ["users", id, "role-mappings"] => {
                let user = viewable_user(realm, caller, id)?;
                role_mappings(realm, user)
            }
            ["users", id, "role-mappings", "realm"] => {
                let user = viewable_user(realm, caller, id)?;
                ok_json(&roles_json(
                    user.realm_roles
                        .iter()
                        .filter_map(|n| realm.realm_roles.get(n)),
                ))
            }
            ["users", id, "role-mappings", "realm", "composite"] => {
                let user = viewable_user(realm, caller, id)?;
                let (effective, _) = realm.effective_roles(user);
                ok_json(&roles_json(
                    effective.iter().filter_map(|n| realm.realm_roles.get(n)),
                ))
            }
            ["users", id, "role-mappings", "realm", "available"] => {
                let user = viewable_user(realm, caller, id)?;
                ok_json(&roles_json(
                    realm
                        .realm_roles
                        .values()
                        .filter(|r| !user.realm_roles.contains(&r.name)),
                ))
            }
            ["users", id, "role-mappings", "clients", cid, tail @ ..] => {
                let user = viewable_user(realm, caller, id)?;
                let client = realm
                    .client_by_uuid(cid)
                    .ok_or_else(|| not_found("Client not found"))?;
                let defined = realm.client_roles.get(&client.client_id);
                let direct = user.client_roles.get(&client.client_id);
                let roles: Vec<_> = match tail {
                    [] => defined
                        .into_iter()
                        .flat_map(|m| m.values())
                        .filter(|r| direct.is_some_and(|d| d.contains(&r.name)))
                        .collect(),
                    ["available"] => defined
                        .into_iter()
                        .flat_map(|m| m.values())
                        .filter(|r| !direct.is_some_and(|d| d.contains(&r.name)))
                        .collect(),
                    ["composite"] => {
                        let (_, eff) = realm.effective_roles(user);
                        let eff = eff.get(&client.client_id).cloned().unwrap_or_default();
                        defined
                            .into_iter()
                            .flat_map(|m| m.values())
                            .filter(|r| eff.contains(&r.name))
                            .collect()
                    }
                    _ => return Ok(no_such_resource()),
                };
                ok_json(&roles_json(roles.into_iter()))
            }
            ["users", id, "groups"] => {
                let user = viewable_user(realm, caller, id)?;
                let (first, max) = paging(req, 100);
                let brief = req.bool_param("briefRepresentation").unwrap_or(true);
                let search = req.param("search").map(str::to_lowercase);
                let groups: Vec<Value> = user_groups(realm, user)
                    .filter(|g| {
                        search
                            .as_ref()
                            .is_none_or(|s| g.name.to_lowercase().contains(s))
                    })
                    .skip(first)
                    .take(max)
                    .map(|g| g.to_json(brief))
                    .collect();
                ok_json(&json!(groups))
            }
            ["users", id, "groups", "count"] => {
                let user = viewable_user(realm, caller, id)?;
                ok_json(&json!({"count": user_groups(realm, user).count()}))
            }
            ["users", id, "sessions"] => {
                let user = viewable_user(realm, caller, id)?;
                ok_json(&json!(user_sessions(realm, user)))
            }
            ["roles"] => {
                require(caller.list_roles())?;
                let (first, max) = paging(req, 100);
                let search = req.param("search").map(str::to_lowercase);
                ok_json(&roles_json(
                    realm
                        .realm_roles
                        .values()
                        .filter(|r| {
                            search
                                .as_ref()
                                .is_none_or(|s| r.name.to_lowercase().contains(s))
                        })
                        .skip(first)
                        .take(max),
                ))
            }
            ["roles", name] => {
                require(caller.view_realm())?;
                let role = realm
                    .realm_roles
                    .get(*name)
                    .ok_or_else(|| not_found("Could not find role"))?;
                let mut v = role.to_json();
                v["attributes"] = json!({});
                ok_json(&v)
            }
            ["roles", name, "composites"] => {
                require(caller.view_realm())?;
                let role = realm
                    .realm_roles
                    .get(*name)
                    .ok_or_else(|| not_found("Could not find role"))?;
                let mut out: Vec<Value> = role
                    .composites_realm
                    .iter()
                    .filter_map(|n| realm.realm_roles.get(n))
                    .map(|r| r.to_json())
                    .collect();
                for (client, names) in &role.composites_client {
                    out.extend(
                        names
                            .iter()
                            .filter_map(|n| realm.client_roles.get(client).and_then(|m| m.get(n)))
                            .map(|r| r.to_json()),
                    );
                }
                ok_json(&json!(out))
            }
            ["roles", name, "users"] => {
                // Keycloak checks role view (view-realm) and user query for role members.
                require(caller.view_realm() && caller.query_users())?;
                if !realm.realm_roles.contains_key(*name) {
                    return Err(not_found("Could not find role"));
                }
                members(realm, req, caller, true, |u| u.realm_roles.contains(*name))
            }
            ["groups"] => {
                require(caller.query_groups())?;
                let (first, max) = paging(req, 100);
                let brief = req.bool_param("briefRepresentation").unwrap_or(true);
                let search = req.param("search").map(str::to_lowercase);
                let mut top: Vec<_> = realm
                    .groups
                    .values()
                    .filter(|g| g.parent_id.is_none())
                    .filter(|g| {
                        search
                            .as_ref()
                            .is_none_or(|s| g.name.to_lowercase().contains(s))
                    })
                    .collect();
                top.sort_by(|a, b| a.name.cmp(&b.name));
                let out: Vec<Value> = top
                    .into_iter()
                    .skip(first)
                    .take(max)
                    .map(|g| {
                        let mut v = g.to_json(brief);
                        let n = realm
                            .groups
                            .values()
                            .filter(|c| c.parent_id.as_deref() == Some(&g.id))
                            .count();
                        v["subGroupCount"] = json!(n);
                        v
                    })
                    .collect();
                ok_json(&json!(out))
            }
            ["groups", gid] => {
                require(caller.query_groups())?;
                let g = realm
                    .groups
                    .get(*gid)
                    .ok_or_else(|| not_found("Could not find group by id"))?;
                ok_json(&g.to_json(false))
            }
            ["groups", gid, "members"] => {
                require(caller.view_users())?;
                if !realm.groups.contains_key(*gid) {
                    return Err(not_found("Could not find group by id"));
                }
                members(realm, req, caller, false, |u| u.groups.contains(*gid))
            }
            ["clients"] => {
                require(caller.query_clients())?;
                let wanted = req.param("clientId");
                let out: Vec<Value> = realm
                    .clients
                    .iter()
                    .filter(|c| wanted.is_none_or(|w| c.client_id == w))
                    .map(|c| {
                        json!({"id": c.id, "clientId": c.client_id, "enabled": c.enabled,
                               "publicClient": c.public, "bearerOnly": c.bearer_only,
                               "serviceAccountsEnabled": c.service_accounts,
                               "directAccessGrantsEnabled": c.direct_grants, "protocol": "openid-connect"})
                    })
                    .collect();
                ok_json(&json!(out))
            }
            ["events"] => {
                require(caller.view_events())?;
                list_events(realm, req, false)?
            }
            ["admin-events"] => {
                require(caller.view_events())?;
                list_events(realm, req, true)?
            }
            ["events", "config"] => {
                require(caller.view_events())?;
                ok_json(&events_config(realm))
            }
            _ => no_such_resource(),
        })
    })();
    result.unwrap_or_else(|e| e)
}

fn write(emu: &Emulator, realm: &mut Realm, req: &Req, caller: &Caller, rest: &[&str]) -> Response {
    let m = &req.method;
    let result = (|| -> Result<Response, Response> {
        Ok(match rest {
            ["users"] if m == Method::POST => create_user(emu, realm, req, caller)?,
            ["users", "profile"] if m == Method::PUT => {
                require(caller.has("manage-realm"))?;
                let config: Value = req.json()?;
                realm
                    .profile
                    .replace(config)
                    .map_err(|e| error_message(400, e))?;
                ok_json(&realm.profile.config)
            }
            ["users", id] if m == Method::PUT => update_user(emu, realm, req, caller, id)?,
            ["users", id] if m == Method::DELETE => {
                let id = managed_user(realm, caller, id)?;
                realm.delete_user(&id);
                realm.admin_event(&caller.auth, "DELETE", "USER", &format!("users/{id}"), None);
                no_content()
            }
            ["attack-detection", "brute-force", "users", id] if m == Method::DELETE => {
                require(caller.manage_users())?;
                realm.login_failures.remove(*id);
                let path = format!("attack-detection/brute-force/users/{id}");
                realm.admin_event(&caller.auth, "DELETE", "USER_LOGIN_FAILURE", &path, None);
                no_content()
            }
            ["attack-detection", "brute-force", "users"] if m == Method::DELETE => {
                require(caller.manage_users())?;
                realm.login_failures.clear();
                let path = "attack-detection/brute-force/users";
                realm.admin_event(&caller.auth, "DELETE", "USER_LOGIN_FAILURE", path, None);
                no_content()
            }
            ["users", id, "reset-password"] if m == Method::PUT => {
                reset_password(emu, realm, req, caller, id)?
            }
            ["users", id, "logout"] if m == Method::POST => {
                let id = managed_user(realm, caller, id)?;
                let now = realm.now_s();
                if let Some(u) = realm.user_mut(&id) {
                    u.not_before = now;
                }
                realm.end_user_sessions(&id);
                realm.admin_event(
                    &caller.auth,
                    "ACTION",
                    "USER",
                    &format!("users/{id}/logout"),
                    None,
                );
                no_content()
            }
            ["users", id, "role-mappings", "realm"] if m == Method::POST || m == Method::DELETE => {
                change_realm_roles(realm, req, caller, id)?
            }
            ["users", id, "role-mappings", "clients", cid]
                if m == Method::POST || m == Method::DELETE =>
            {
                change_client_roles(realm, req, caller, id, cid)?
            }
            ["users", id, "groups", gid] if m == Method::PUT || m == Method::DELETE => {
                let id = managed_user(realm, caller, id)?;
                let group = realm
                    .groups
                    .get(*gid)
                    .cloned()
                    .ok_or_else(|| not_found("Group not found"))?;
                let joining = m == Method::PUT;
                let changed = realm.user_mut(&id).is_some_and(|u| {
                    if joining {
                        u.groups.insert(group.id.clone())
                    } else {
                        u.groups.remove(&group.id)
                    }
                });
                if changed {
                    realm.admin_event(
                        &caller.auth,
                        if joining { "CREATE" } else { "DELETE" },
                        "GROUP_MEMBERSHIP",
                        &format!("users/{id}/groups/{gid}"),
                        Some(group.to_json(true)),
                    );
                }
                no_content()
            }
            ["sessions", sid] if m == Method::DELETE => {
                require(caller.manage_users())?;
                realm
                    .end_session(sid)
                    .ok_or_else(|| not_found("Sesssion not found"))?;
                realm.admin_event(
                    &caller.auth,
                    "DELETE",
                    "USER_SESSION",
                    &format!("sessions/{sid}"),
                    Some(json!({"offline": false})),
                );
                no_content()
            }
            ["events"] if m == Method::DELETE => {
                require(caller.has("manage-events"))?;
                realm.events.clear();
                no_content()
            }
            ["admin-events"] if m == Method::DELETE => {
                require(caller.has("manage-events"))?;
                realm.admin_events.clear();
                no_content()
            }
            ["events", "config"] if m == Method::PUT => {
                require(caller.has("manage-events"))?;
                update_events_config(realm, req)?
            }
            ["logout-all"] if m == Method::POST => {
                require(caller.manage_users())?;
                realm.sessions.clear();
                realm.user_sessions.clear();
                ok_json(&json!({}))
            }
            ["users"]
            | ["users", _]
            | ["users", _, "reset-password" | "logout" | "groups" | "sessions" | "role-mappings"]
            | ["users", _, "role-mappings", "realm"]
            | ["sessions", _]
            | ["events" | "admin-events" | "roles" | "groups" | "clients"]
            | ["events", "config"] => method_not_allowed(),
            _ => no_such_resource(),
        })
    })();
    result.unwrap_or_else(|e| e)
}

/// A page of the users matching `is_member`, in username order (role and group members).
fn members(
    realm: &Realm,
    req: &Req,
    caller: &Caller,
    brief_default: bool,
    is_member: impl Fn(&User) -> bool,
) -> Response {
    let (first, max) = paging(req, 100);
    let brief = req
        .bool_param("briefRepresentation")
        .unwrap_or(brief_default);
    let page: Vec<Value> = realm
        .users
        .values()
        .filter(|u| is_member(u))
        .skip(first)
        .take(max)
        .map(|u| realm.user_json(u, brief, caller.manage_users()))
        .collect();
    ok_json(&json!(page))
}

fn viewable_user<'a>(realm: &'a Realm, caller: &Caller, id: &str) -> Result<&'a User, Response> {
    let user = find_user(realm, caller, id)?;
    require(caller.view_users())?;
    Ok(user)
}

fn managed_user(realm: &Realm, caller: &Caller, id: &str) -> Result<String, Response> {
    let user = find_user(realm, caller, id)?;
    require(caller.manage_users())?;
    Ok(user.id.clone())
}

/// `first`/`max` with Keycloak's defaults: no offset, `max` 100, `max=0` empty, negative unlimited.
fn paging(req: &Req, default_max: i64) -> (usize, usize) {
    let first = req.int_param("first").unwrap_or(0).max(0) as usize;
    let max = req.int_param("max").unwrap_or(default_max);
    let max = if max < 0 { usize::MAX } else { max as usize };
    (first, max)
}

fn roles_json<'a>(roles: impl Iterator<Item = &'a crate::realm::Role>) -> Value {
    json!(roles.map(|r| r.to_json()).collect::<Vec<_>>())
}

fn role_mappings(realm: &Realm, user: &User) -> Response {
    let mut out = json!({});
    let realm_roles: Vec<Value> = user
        .realm_roles
        .iter()
        .filter_map(|n| realm.realm_roles.get(n))
        .map(|r| r.to_json())
        .collect();
    if !realm_roles.is_empty() {
        out["realmMappings"] = json!(realm_roles);
    }
    let mut clients = serde_json::Map::new();
    for (client_id, names) in &user.client_roles {
        let Some(client) = realm.client(client_id) else {
            continue;
        };
        let mappings: Vec<Value> = names
            .iter()
            .filter_map(|n| realm.client_roles.get(client_id).and_then(|m| m.get(n)))
            .map(|r| r.to_json())
            .collect();
        if !mappings.is_empty() {
            clients.insert(
                client_id.clone(),
                json!({"id": client.id, "client": client_id, "mappings": mappings}),
            );
        }
    }
    if !clients.is_empty() {
        out["clientMappings"] = Value::Object(clients);
    }
    ok_json(&out)
}

fn user_groups<'a>(
    realm: &'a Realm,
    user: &'a User,
) -> impl Iterator<Item = &'a crate::realm::Group> + 'a {
    let mut groups: Vec<_> = user
        .groups
        .iter()
        .filter_map(|g| realm.groups.get(g))
        .collect();
    groups.sort_by(|a, b| a.name.cmp(&b.name));
    groups.into_iter()
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

/// Set on a user that a permanent brute-force lockout disabled.
pub const PERMANENT_LOCKOUT_ATTRIBUTE: &str = "disabledReason";

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

fn email_taken(realm: &Realm, email: Option<&str>, except: &str) -> bool {
    !realm.settings.duplicate_emails_allowed
        && email.is_some_and(|e| realm.emails.get(e).is_some_and(|owner| owner != except))
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
    if realm.users.contains_key(&username) {
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
            if realm.users.contains_key(&u) {
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
    if email_taken(realm, user.email.as_deref(), &id) {
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code)]
struct RoleRep {
    id: Option<String>,
    name: Option<String>,
    description: Option<String>,
    scope_param_required: Option<bool>,
    composite: Option<bool>,
    composites: Option<Value>,
    client_role: Option<bool>,
    container_id: Option<String>,
    attributes: Option<Value>,
}

fn role_list(req: &Req) -> Result<Option<Vec<RoleRep>>, Response> {
    if req.body.is_empty() {
        return Ok(None);
    }
    req.json().map(Some)
}

fn change_realm_roles(
    realm: &mut Realm,
    req: &Req,
    caller: &Caller,
    id: &str,
) -> Result<Response, Response> {
    let id = managed_user(realm, caller, id)?;
    let adding = req.method == Method::POST;
    let reps = role_list(req)?;
    let names: Vec<String> = match &reps {
        None if !adding => realm
            .user(&id)
            .map(|u| u.realm_roles.iter().cloned().collect())
            .unwrap_or_default(),
        None => vec![],
        Some(reps) => {
            let mut names = Vec::new();
            for r in reps {
                // Both id and name must be given and must match (contract §4.7).
                let role = r
                    .name
                    .as_ref()
                    .and_then(|n| realm.realm_roles.get(n))
                    .filter(|role| Some(&role.id) == r.id.as_ref())
                    .ok_or_else(|| not_found("Role not found"))?;
                names.push(role.name.clone());
            }
            names
        }
    };
    if let Some(u) = realm.user_mut(&id) {
        for n in &names {
            if adding {
                u.realm_roles.insert(n.clone());
            } else {
                u.realm_roles.remove(n);
            }
        }
    }
    if !names.is_empty() {
        let rep = json!(names
            .iter()
            .filter_map(|n| realm.realm_roles.get(n))
            .map(|r| r.to_json())
            .collect::<Vec<_>>());
        realm.admin_event(
            &caller.auth,
            if adding { "CREATE" } else { "DELETE" },
            "REALM_ROLE_MAPPING",
            &format!("users/{id}/role-mappings/realm"),
            Some(rep),
        );
    }
    Ok(no_content())
}

fn change_client_roles(
    realm: &mut Realm,
    req: &Req,
    caller: &Caller,
    id: &str,
    client_uuid: &str,
) -> Result<Response, Response> {
    let id = managed_user(realm, caller, id)?;
    let client = realm
        .client_by_uuid(client_uuid)
        .cloned()
        .ok_or_else(|| not_found("Client not found"))?;
    let adding = req.method == Method::POST;
    let reps = role_list(req)?.unwrap_or_default();
    let mut names = Vec::new();
    for r in &reps {
        let role = r
            .name
            .as_ref()
            .and_then(|n| realm.client_roles.get(&client.client_id)?.get(n))
            .filter(|role| Some(&role.id) == r.id.as_ref())
            .ok_or_else(|| not_found("Role not found"))?;
        names.push(role.name.clone());
    }
    if let Some(u) = realm.user_mut(&id) {
        let set = u.client_roles.entry(client.client_id.clone()).or_default();
        for n in &names {
            if adding {
                set.insert(n.clone());
            } else {
                set.remove(n);
            }
        }
    }
    if !names.is_empty() {
        realm.admin_event(
            &caller.auth,
            if adding { "CREATE" } else { "DELETE" },
            "CLIENT_ROLE_MAPPING",
            &format!("users/{id}/role-mappings/clients/{client_uuid}"),
            None,
        );
    }
    Ok(no_content())
}

// ---------------------------------------------------------------------------------------------
// Events (contract §5)

/// `yyyy-MM-dd` (UTC day) or epoch milliseconds. `end_of_day` for `dateTo`.
fn parse_date(v: &str, end_of_day: bool) -> Option<i64> {
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        return v.parse().ok();
    }
    let mut parts = v.splitn(3, '-');
    let y: i64 = parts.next()?.parse().ok()?;
    let m: i64 = parts.next()?.parse().ok()?;
    let d: i64 = parts.next()?.parse().ok()?;
    if v.len() != 10 || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let start = days_from_civil(y, m, d) * 86_400_000;
    Some(if end_of_day {
        start + 86_400_000 - 1
    } else {
        start
    })
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn list_events(realm: &Realm, req: &Req, admin: bool) -> Result<Response, Response> {
    let date = |key: &str, end: bool| -> Result<Option<i64>, Response> {
        match req.param(key) {
            None => Ok(None),
            Some(v) => parse_date(v, end).map(Some).ok_or_else(|| {
                oauth_error(
                    400,
                    &format!(
                        "Invalid value for '{key}', expected format is yyyy-MM-dd or an Epoch timestamp"
                    ),
                    None,
                )
            }),
        }
    };
    let from = date("dateFrom", false)?;
    let to = date("dateTo", true)?;
    let ascending = match req.param("direction") {
        None | Some("desc") => false,
        Some("asc") => true,
        Some(_) => {
            return Err(oauth_error(
                400,
                "Invalid value for sortDirection, expected value is asc or desc",
                None,
            ))
        }
    };
    let (first, max) = paging(req, 100);
    let retention = if admin {
        realm.settings.admin_events_expiration
    } else {
        realm.settings.events_expiration
    };
    let oldest = retention
        .filter(|r| *r > 0)
        .map(|r| realm.now_ms() - r * 1000);
    let source = if admin {
        &realm.admin_events
    } else {
        &realm.events
    };
    let field_in = |e: &Value, ptr: &str, key: &str| -> bool {
        let wanted: Vec<&str> = req.params(key).collect();
        wanted.is_empty()
            || e.pointer(ptr)
                .and_then(Value::as_str)
                .is_some_and(|v| wanted.contains(&v))
    };
    let keep = |e: &&Value| {
        let t = e["time"].as_i64().unwrap_or(0);
        if from.is_some_and(|f| t < f) || to.is_some_and(|x| t > x) || oldest.is_some_and(|o| t < o)
        {
            return false;
        }
        if admin {
            field_in(e, "/operationType", "operationTypes")
                && field_in(e, "/resourceType", "resourceTypes")
                && field_in(e, "/resourcePath", "resourcePath")
                && field_in(e, "/authDetails/realmId", "authRealm")
                && field_in(e, "/authDetails/clientId", "authClient")
                && field_in(e, "/authDetails/userId", "authUser")
                && field_in(e, "/authDetails/ipAddress", "authIpAddress")
        } else {
            field_in(e, "/type", "type")
                && field_in(e, "/clientId", "client")
                && field_in(e, "/userId", "user")
                && field_in(e, "/ipAddress", "ipAddress")
        }
    };
    let mut matching: Vec<&Value> = source.iter().filter(keep).collect();
    // Stable sort by time keeps insertion order among equal times.
    matching.sort_by_key(|e| e["time"].as_i64().unwrap_or(0));
    if !ascending {
        matching.reverse();
    }
    let page: Vec<&Value> = matching.into_iter().skip(first).take(max).collect();
    Ok(ok_json(&json!(page)))
}

fn events_config(realm: &Realm) -> Value {
    let s = &realm.settings;
    let mut v = json!({
        "eventsEnabled": s.events_enabled, "eventsListeners": s.events_listeners,
        "enabledEventTypes": s.enabled_event_types, "adminEventsEnabled": s.admin_events_enabled,
        "adminEventsDetailsEnabled": s.admin_events_details_enabled,
    });
    if let Some(e) = s.events_expiration {
        v["eventsExpiration"] = json!(e);
    }
    v
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct EventsConfigRep {
    events_enabled: Option<bool>,
    events_expiration: Option<i64>,
    events_listeners: Option<Vec<String>>,
    enabled_event_types: Option<Vec<String>>,
    admin_events_enabled: Option<bool>,
    admin_events_details_enabled: Option<bool>,
}

fn update_events_config(realm: &mut Realm, req: &Req) -> Result<Response, Response> {
    let rep: EventsConfigRep = req.json()?;
    let s = &mut realm.settings;
    if let Some(v) = rep.events_enabled {
        s.events_enabled = v;
    }
    if rep.events_expiration.is_some() {
        s.events_expiration = rep.events_expiration;
    }
    if let Some(v) = rep.events_listeners {
        s.events_listeners = v;
    }
    if let Some(v) = rep.enabled_event_types {
        s.enabled_event_types = v;
    }
    if let Some(v) = rep.admin_events_enabled {
        s.admin_events_enabled = v;
    }
    if let Some(v) = rep.admin_events_details_enabled {
        s.admin_events_details_enabled = v;
    }
    Ok(no_content())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_parse_as_utc_days_or_epoch_millis() {
        assert_eq!(parse_date("1970-01-02", false), Some(86_400_000));
        assert_eq!(parse_date("1970-01-01", true), Some(86_399_999));
        assert_eq!(parse_date("1735000000123", false), Some(1_735_000_000_123));
        assert_eq!(parse_date("2024-13-01", false), None);
        assert_eq!(parse_date("yesterday", false), None);
    }

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
