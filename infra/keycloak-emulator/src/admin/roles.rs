//! Roles (contract §4.7): realm roles, their composites and members; a user's role mappings
//! (realm and client roles: direct, effective, available) and changes to them; the clients.

use std::sync::Arc;

use axum::http::Method;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use serde_json::{json, Value};

use super::caller::{
    managed_user, members, paging, require, roles_json, viewable_user, Admin, Caller,
};
use crate::emulator::Emulator;
use crate::http::{error_message, no_content, not_found, ok_json, Req};
use crate::realm::{Realm, Role, User};

pub(super) fn router() -> Router<Arc<Emulator>> {
    Router::new()
        .route("/roles", get(list))
        .route("/roles/{name}", get(one))
        .route("/roles/{name}/composites", get(composites))
        .route("/roles/{name}/users", get(role_users))
        .route("/users/{id}/role-mappings", get(mappings))
        .route(
            "/users/{id}/role-mappings/realm",
            get(realm_direct).post(change_realm).delete(change_realm),
        )
        .route(
            "/users/{id}/role-mappings/realm/composite",
            get(realm_effective),
        )
        .route(
            "/users/{id}/role-mappings/realm/available",
            get(realm_available),
        )
        .route(
            "/users/{id}/role-mappings/clients/{cid}",
            get(client_direct).post(change_client).delete(change_client),
        )
        .route(
            "/users/{id}/role-mappings/clients/{cid}/available",
            get(client_available),
        )
        .route(
            "/users/{id}/role-mappings/clients/{cid}/composite",
            get(client_effective),
        )
        .route("/clients", get(clients))
        .route(
            "/clients/{cid}/service-account-user",
            get(service_account_user),
        )
}

/// `GET /clients/{id}/service-account-user` (`ClientResource#getServiceAccountUser`): needs
/// view rights on clients; a client without service accounts is a 400.
async fn service_account_user(a: Admin) -> Response {
    a.read(|realm, caller| {
        require(caller.view_clients())?;
        let cid = a.param("cid");
        let client = realm
            .clients
            .iter()
            .find(|c| c.id == cid)
            .ok_or_else(|| not_found("Could not find client"))?;
        match realm.service_account_of(client) {
            Some(user) if client.service_accounts => Ok(ok_json(&realm.user_json(
                user,
                false,
                caller.manage_users(),
            ))),
            _ => Err(error_message(
                400,
                &format!(
                    "Service account not enabled for the client '{}'",
                    client.client_id
                ),
            )),
        }
    })
}

async fn list(a: Admin) -> Response {
    a.read(|realm, caller| {
        require(caller.list_roles())?;
        let (first, max) = paging(&a.req, 100);
        let search = a.req.param("search").map(str::to_lowercase);
        Ok(ok_json(&roles_json(
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
        )))
    })
}

fn role<'a>(realm: &'a Realm, name: &str) -> Result<&'a Role, Response> {
    realm
        .realm_roles
        .get(name)
        .ok_or_else(|| not_found("Could not find role"))
}

async fn one(a: Admin) -> Response {
    a.read(|realm, caller| {
        require(caller.view_realm())?;
        let mut v = role(realm, a.param("name"))?.to_json();
        v["attributes"] = json!({});
        Ok(ok_json(&v))
    })
}

async fn composites(a: Admin) -> Response {
    a.read(|realm, caller| {
        require(caller.view_realm())?;
        let role = role(realm, a.param("name"))?;
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
        Ok(ok_json(&json!(out)))
    })
}

async fn role_users(a: Admin) -> Response {
    a.read(|realm, caller| {
        // Keycloak checks role view (view-realm) and user query for role members.
        require(caller.view_realm() && caller.query_users())?;
        let name = a.param("name");
        role(realm, name)?;
        Ok(members(realm, &a.req, caller, true, |u| {
            u.realm_roles.contains(name)
        }))
    })
}

async fn mappings(a: Admin) -> Response {
    a.read(|realm, caller| {
        let user = viewable_user(realm, caller, a.param("id"))?;
        Ok(role_mappings(realm, user))
    })
}

async fn realm_direct(a: Admin) -> Response {
    a.read(|realm, caller| {
        let user = viewable_user(realm, caller, a.param("id"))?;
        Ok(ok_json(&roles_json(
            user.realm_roles
                .iter()
                .filter_map(|n| realm.realm_roles.get(n)),
        )))
    })
}

async fn realm_effective(a: Admin) -> Response {
    a.read(|realm, caller| {
        let user = viewable_user(realm, caller, a.param("id"))?;
        let (effective, _) = realm.effective_roles(user);
        Ok(ok_json(&roles_json(
            effective.iter().filter_map(|n| realm.realm_roles.get(n)),
        )))
    })
}

async fn realm_available(a: Admin) -> Response {
    a.read(|realm, caller| {
        let user = viewable_user(realm, caller, a.param("id"))?;
        Ok(ok_json(&roles_json(
            realm
                .realm_roles
                .values()
                .filter(|r| !user.realm_roles.contains(&r.name)),
        )))
    })
}

/// Which of a client's roles to list for a user.
#[derive(Clone, Copy)]
enum ClientView {
    Direct,
    Available,
    Effective,
}

fn client_roles(a: &Admin, view: ClientView) -> Response {
    a.read(|realm, caller| {
        let user = viewable_user(realm, caller, a.param("id"))?;
        let client = realm
            .client_by_uuid(a.param("cid"))
            .ok_or_else(|| not_found("Client not found"))?;
        let defined = realm.client_roles.get(&client.client_id);
        let direct = user.client_roles.get(&client.client_id);
        let (_, effective) = realm.effective_roles(user);
        let effective = effective
            .get(&client.client_id)
            .cloned()
            .unwrap_or_default();
        let shown = |r: &&Role| match view {
            ClientView::Direct => direct.is_some_and(|d| d.contains(&r.name)),
            ClientView::Available => !direct.is_some_and(|d| d.contains(&r.name)),
            ClientView::Effective => effective.contains(&r.name),
        };
        Ok(ok_json(&roles_json(
            defined.into_iter().flat_map(|m| m.values()).filter(shown),
        )))
    })
}

async fn client_direct(a: Admin) -> Response {
    client_roles(&a, ClientView::Direct)
}

async fn client_available(a: Admin) -> Response {
    client_roles(&a, ClientView::Available)
}

async fn client_effective(a: Admin) -> Response {
    client_roles(&a, ClientView::Effective)
}

async fn change_realm(a: Admin) -> Response {
    a.write(|realm, caller| change_realm_roles(realm, &a.req, caller, a.param("id")))
}

async fn change_client(a: Admin) -> Response {
    a.write(|realm, caller| {
        change_client_roles(realm, &a.req, caller, a.param("id"), a.param("cid"))
    })
}

async fn clients(a: Admin) -> Response {
    a.read(|realm, caller| {
        require(caller.query_clients())?;
        let wanted = a.req.param("clientId");
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
        Ok(ok_json(&json!(out)))
    })
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
