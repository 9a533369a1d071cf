//! Groups (contract §4.8): the group tree, a group's members, a user's groups and changes to
//! their membership.

use std::sync::Arc;

use axum::http::Method;
use axum::response::Response;
use axum::routing::{get, put};
use axum::Router;
use serde_json::{json, Value};

use super::caller::{managed_user, members, paging, require, viewable_user, Admin};
use crate::emulator::Emulator;
use crate::http::{no_content, not_found, ok_json};
use crate::realm::{Group, Realm, User};

pub(super) fn router() -> Router<Arc<Emulator>> {
    Router::new()
        .route("/groups", get(list))
        .route("/groups/{gid}", get(one))
        .route("/groups/{gid}/members", get(group_members))
        .route("/users/{id}/groups", get(of_user))
        .route("/users/{id}/groups/count", get(count_of_user))
        .route(
            "/users/{id}/groups/{gid}",
            put(membership).delete(membership),
        )
}

async fn list(a: Admin) -> Response {
    a.read(|realm, caller| {
        require(caller.query_groups())?;
        let (first, max) = paging(&a.req, 100);
        let brief = a.req.bool_param("briefRepresentation").unwrap_or(true);
        let search = a.req.param("search").map(str::to_lowercase);
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
        Ok(ok_json(&json!(out)))
    })
}

fn group<'a>(realm: &'a Realm, gid: &str) -> Result<&'a Group, Response> {
    realm
        .groups
        .get(gid)
        .ok_or_else(|| not_found("Could not find group by id"))
}

async fn one(a: Admin) -> Response {
    a.read(|realm, caller| {
        require(caller.query_groups())?;
        Ok(ok_json(&group(realm, a.param("gid"))?.to_json(false)))
    })
}

async fn group_members(a: Admin) -> Response {
    a.read(|realm, caller| {
        require(caller.view_users())?;
        let gid = a.param("gid");
        group(realm, gid)?;
        Ok(members(realm, &a.req, caller, false, |u| {
            u.groups.contains(gid)
        }))
    })
}

async fn of_user(a: Admin) -> Response {
    a.read(|realm, caller| {
        let user = viewable_user(realm, caller, a.param("id"))?;
        let (first, max) = paging(&a.req, 100);
        let brief = a.req.bool_param("briefRepresentation").unwrap_or(true);
        let search = a.req.param("search").map(str::to_lowercase);
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
        Ok(ok_json(&json!(groups)))
    })
}

async fn count_of_user(a: Admin) -> Response {
    a.read(|realm, caller| {
        let user = viewable_user(realm, caller, a.param("id"))?;
        Ok(ok_json(&json!({"count": user_groups(realm, user).count()})))
    })
}

/// `PUT` joins the group, `DELETE` leaves it; either is a no-op when already so.
async fn membership(a: Admin) -> Response {
    a.write(|realm, caller| {
        let id = managed_user(realm, caller, a.param("id"))?;
        let gid = a.param("gid");
        let group = realm
            .groups
            .get(gid)
            .cloned()
            .ok_or_else(|| not_found("Group not found"))?;
        let joining = a.req.method == Method::PUT;
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
        Ok(no_content())
    })
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
