//! Who calls the admin API and on what: the `Admin` extractor (the request, its realm, the
//! authenticated caller), the caller's permissions, and the lookups every resource shares.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::response::Response;
use serde_json::{json, Value};

use crate::emulator::Emulator;
use crate::endpoint::issuer;
use crate::http::{forbidden, not_found, ok_json, unauthorized, Call, Req};
use crate::oidc::active_access_token;
use crate::realm::{strings, AuthDetails, Realm, User};

/// An admin request: the emulator, the request, its realm and path parameters.
pub struct Admin {
    pub(super) emu: Arc<Emulator>,
    pub(super) req: Arc<Req>,
    pub(super) realm: String,
    pub(super) call: Call,
}

impl FromRequestParts<Arc<Emulator>> for Admin {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, emu: &Arc<Emulator>) -> Result<Self, Response> {
        let call = Call::from_request_parts(parts, emu).await?;
        // `/admin/realms/{realm}/...`: the realm is known even where no route matched;
        // `/realms/{realm}/webhooks` (the events extension) names it as a route parameter.
        let realm = match call.param("realm") {
            "" => call.req.segments.get(2).cloned().unwrap_or_default(),
            named => named.to_owned(),
        };
        Ok(Admin {
            emu: Arc::clone(&call.emu),
            req: Arc::clone(&call.req),
            realm,
            call,
        })
    }
}

impl Admin {
    /// A path parameter of the route (`id`, `name`, `gid`, `cid`, `sid`).
    pub(super) fn param(&self, name: &str) -> &str {
        self.call.param(name)
    }

    /// Run `f` on the realm (read lock) as its authenticated caller.
    pub(super) fn read(
        &self,
        f: impl FnOnce(&Realm, &Caller) -> Result<Response, Response>,
    ) -> Response {
        let Some(entry) = self.emu.realm(&self.realm) else {
            return not_found("Realm not found.");
        };
        let realm = entry.realm.read();
        match authenticate(&self.emu, &realm, &self.req) {
            Ok(caller) => f(&realm, &caller).unwrap_or_else(|e| e),
            Err(resp) => resp,
        }
    }

    /// Run `f` on the realm (write lock) as its authenticated caller.
    pub(super) fn write(
        &self,
        f: impl FnOnce(&mut Realm, &Caller) -> Result<Response, Response>,
    ) -> Response {
        self.write_collecting(f).0
    }

    /// As `write`, for a change that logs sessions out: the back-channel logout tokens it left
    /// are sent once the lock is released, before the answer (as Keycloak sends them inside
    /// the request).
    pub(super) async fn write_logging_out(
        &self,
        f: impl FnOnce(&mut Realm, &Caller) -> Result<Response, Response>,
    ) -> Response {
        let (resp, outbox) = self.write_collecting(f);
        crate::backchannel::deliver(&self.emu.keys, &self.emu.logouts_sent, outbox).await;
        resp
    }

    pub(super) fn write_collecting(
        &self,
        f: impl FnOnce(&mut Realm, &Caller) -> Result<Response, Response>,
    ) -> (Response, Vec<crate::backchannel::Delivery>) {
        let Some(entry) = self.emu.realm(&self.realm) else {
            return (not_found("Realm not found."), Vec::new());
        };
        let mut realm = entry.realm.write();
        let resp = match authenticate(&self.emu, &realm, &self.req) {
            Ok(caller) => f(&mut realm, &caller).unwrap_or_else(|e| e),
            Err(resp) => resp,
        };
        (resp, std::mem::take(&mut realm.backchannel_outbox))
    }

    /// The realm's issuer as this request names it.
    pub(super) fn issuer(&self) -> String {
        issuer(&self.req, &self.realm)
    }
}

/// The caller of an admin request.
pub struct Caller {
    pub(super) roles: BTreeSet<String>,
    pub(super) auth: AuthDetails,
}

impl Caller {
    pub(super) fn has(&self, role: &str) -> bool {
        self.roles.contains(role) || self.roles.contains("realm-admin")
    }
    pub(super) fn any(&self, roles: &[&str]) -> bool {
        roles.iter().any(|r| self.has(r))
    }
    pub(super) fn query_users(&self) -> bool {
        self.any(&["query-users", "view-users", "manage-users"])
    }
    pub(super) fn view_users(&self) -> bool {
        self.any(&["view-users", "manage-users"])
    }
    pub(super) fn manage_users(&self) -> bool {
        self.has("manage-users")
    }
    pub(super) fn query_groups(&self) -> bool {
        self.any(&["query-groups", "view-users", "manage-users"])
    }
    pub(super) fn view_events(&self) -> bool {
        self.any(&["view-events", "manage-events"])
    }
    pub(super) fn view_realm(&self) -> bool {
        self.any(&["view-realm", "manage-realm"])
    }
    pub(super) fn list_roles(&self) -> bool {
        self.view_realm()
            || self.roles.iter().any(|r| r.starts_with("query-"))
            || self.query_users()
    }
    pub(super) fn view_clients(&self) -> bool {
        self.any(&["view-clients", "manage-clients"])
    }
    pub(super) fn query_clients(&self) -> bool {
        self.any(&["query-clients", "view-clients", "manage-clients"])
    }
    pub(super) fn any_admin_role(&self) -> bool {
        !self.roles.is_empty()
    }
}

pub(super) fn authenticate(emu: &Emulator, realm: &Realm, req: &Req) -> Result<Caller, Response> {
    let token = req
        .header("authorization")
        .and_then(|h| h.strip_prefix("Bearer "))
        .ok_or_else(unauthorized)?;
    let iss = issuer(req, &realm.name);
    let claims = active_access_token(emu, realm, token.trim(), &iss).ok_or_else(unauthorized)?;
    let roles = strings(claims.pointer("/resource_access/realm-management/roles"))
        .into_iter()
        .collect();
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

/// A user by id, or Keycloak's 404 (for callers who may query users) / 403 (for others).
pub(super) fn find_user<'a>(
    realm: &'a Realm,
    caller: &Caller,
    id: &str,
) -> Result<&'a User, Response> {
    match realm.user(id) {
        Some(u) => Ok(u),
        None if caller.query_users() => Err(not_found("User not found")),
        None => Err(forbidden()),
    }
}

pub(super) fn require(ok: bool) -> Result<(), Response> {
    if ok {
        Ok(())
    } else {
        Err(forbidden())
    }
}

/// A page of the users matching `is_member`, in username order (role and group members).
pub(super) fn members(
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

pub(super) fn viewable_user<'a>(
    realm: &'a Realm,
    caller: &Caller,
    id: &str,
) -> Result<&'a User, Response> {
    let user = find_user(realm, caller, id)?;
    require(caller.view_users())?;
    Ok(user)
}

pub(super) fn managed_user(realm: &Realm, caller: &Caller, id: &str) -> Result<String, Response> {
    let user = find_user(realm, caller, id)?;
    require(caller.manage_users())?;
    Ok(user.id.clone())
}

/// `first`/`max` with Keycloak's defaults: no offset, `max` 100, `max=0` empty, negative unlimited.
pub(super) fn paging(req: &Req, default_max: i64) -> (usize, usize) {
    let first = req.int_param("first").unwrap_or(0).max(0) as usize;
    let max = req.int_param("max").unwrap_or(default_max);
    let max = if max < 0 { usize::MAX } else { max as usize };
    (first, max)
}

pub(super) fn roles_json<'a>(roles: impl Iterator<Item = &'a crate::realm::Role>) -> Value {
    json!(roles.map(|r| r.to_json()).collect::<Vec<_>>())
}
